//! 1,000 alternating hot reloads: memory, threads and file descriptors stay
//! bounded. A test binary of its own, so that no other test shares the
//! process whose figures it reads.

#![allow(
    clippy::print_stdout,
    reason = "the test prints the figures it measures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::status::StatusBoard;
use weir_tests::resources::{open_fds, rss_kib, threads};
use weir_tests::{
    ModulesDir, Producer, Send, Topics, Weir, consume, digest, init_logging, install_atomically,
    module_status, test_guest, wait_running,
};

/// The test process's RSS in KiB, its thread count and its open fds.
fn process_figures() -> (u64, usize, usize) {
    (rss_kib(), threads(), open_fds())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alternating_reloads_keep_memory_threads_and_fds_bounded() {
    init_logging();
    let t = Topics::create("churn").await;
    let modules = ModulesDir::new();
    modules.manifest("echo", t.manifest());
    let wasm = modules.file("echo.wasm");
    let versions = [test_guest("echo-v1"), test_guest("echo-v2")];
    let digests: Vec<String> = versions.iter().map(|p| digest(p)).collect();
    install_atomically(&versions[0], &wasm);
    let (weir, status): (Weir, Arc<StatusBoard>) =
        Weir::start_watching(modules.path(), Duration::from_millis(20));
    wait_running(&status, "echo", &digests[0]).await;
    let producer = Producer::new();

    let reloads = 1_000;
    let warmup = 50;
    let mut before = (0, 0, 0);
    let started = Instant::now();
    let mut sent = 0;
    for i in 1..=reloads {
        if i == warmup {
            before = process_figures();
        }
        install_atomically(&versions[i % 2], &wasm);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !status
            .snapshot()
            .iter()
            .any(|m| m.name == "echo" && m.digest.as_deref() == Some(digests[i % 2].as_str()))
        {
            assert!(Instant::now() < deadline, "reload {i} did not happen");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i % 100 == 0 {
            // Traffic now and then, so instances of new versions are made.
            let record = Send::kv(&format!("k{sent}"), &format!(r#"{{"n":{sent}}}"#));
            producer.send(&t.input, &[record]).await;
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    let out = consume(
        &t.output,
        sent,
        Duration::from_secs(90),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(out.len(), sent);
    let after = process_figures();
    println!(
        "{reloads} reloads in {:.1} s: RSS {} -> {} KiB, threads {} -> {}, fds {} -> {}",
        elapsed.as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    let echo = module_status(&status, "echo").unwrap();
    assert_eq!(echo.loads, reloads as u64 + 1);
    assert!(
        after.0 < before.0 + 64 * 1024,
        "RSS grew by more than 64 MiB"
    );
    assert!(after.1 <= before.1 + 4, "threads grew");
    assert!(after.2 <= before.2 + 8, "file descriptors grew");
    weir.stop().await.unwrap();
}
