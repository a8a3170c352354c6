//! Hot reload from the watched folder: add, replace and remove modules live
//! without losing or duplicating events.

#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir::http::HttpListen;
use weir::status::{ModuleState, StatusBoard};
use weir_tests::{
    ModulesDir, Producer, Received, Send, Topics, Weir, broker, committed_total, consume, digest,
    eventually, free_addr, http_get, init_logging, install_atomically, module_status, test_guest,
    wait_running,
};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Waits until module `echo` runs the fixture `version` (`echo-v1`,
/// `echo-v2`).
async fn running(status: &StatusBoard, version: &str) {
    wait_running(status, "echo", &digest(&test_guest(version))).await;
}

/// The `echo` fixture's topics, and a modules folder with its manifest
/// (`echo.toml`) where the tests put `echo.wasm`.
struct Echo {
    t: Topics,
    modules: ModulesDir,
    wasm: PathBuf,
    producer: Producer,
}

impl Echo {
    async fn new(prefix: &str) -> Self {
        let t = Topics::create(prefix).await;
        let modules = ModulesDir::new();
        modules.manifest("echo", t.manifest());
        let wasm = modules.file("echo.wasm");
        let producer =
            Producer::connect(&broker().bootstrap(), &[("linger.ms".into(), "1".into())]);
        Self {
            t,
            modules,
            wasm,
            producer,
        }
    }

    /// Installs `echo-v1`, starts weir watching the folder with `debounce`
    /// and the HTTP endpoint on `http`, and waits until v1 runs.
    async fn start_v1(&self, debounce: Duration, http: HttpListen) -> (Weir, Arc<StatusBoard>) {
        install_atomically(&test_guest("echo-v1"), &self.wasm);
        let (weir, status) = Weir::start_watching_with_http(self.modules.path(), debounce, http);
        running(&status, "echo-v1").await;
        (weir, status)
    }

    /// Produces `{"n":n}` to partition `n % 3` and waits for the ack.
    async fn send(&self, n: usize) {
        let record = Send::on((n % 3) as i32, &format!("k{n}"), &format!(r#"{{"n":{n}}}"#));
        self.producer.send(&self.t.input, &[record]).await;
    }

    /// Reads the output topic until `n` records arrived, then `quiet`
    /// longer.
    async fn read(&self, n: usize, quiet: Duration) -> Vec<Received> {
        consume(&self.t.output, n, Duration::from_secs(90), quiet).await
    }

    /// Sends event 0 and waits until it comes out, so the module's consumer
    /// has joined its group before the test goes on.
    async fn warm_up(&self) {
        self.send(0).await;
        assert_eq!(self.read(1, Duration::ZERO).await.len(), 1);
    }
}

fn n_of(r: &Received) -> usize {
    r.json()["n"].as_u64().unwrap() as usize
}

/// Per input partition, the versions that handled its events in offset
/// order, collapsed to runs (e.g. `["v1", "v2"]`).
pub(crate) fn version_runs(out: &[Received]) -> BTreeMap<i64, Vec<String>> {
    let mut by_partition: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for r in out {
        let p = r.header("weir-in-partition").unwrap().parse().unwrap();
        let o = r.header("weir-in-offset").unwrap().parse().unwrap();
        by_partition
            .entry(p)
            .or_default()
            .push((o, r.header("weir-version").unwrap()));
    }
    by_partition
        .into_iter()
        .map(|(p, mut v)| {
            v.sort();
            let mut runs: Vec<String> = Vec::new();
            for (_, version) in v {
                if runs.last() != Some(&version) {
                    runs.push(version);
                }
            }
            (p, runs)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_module_under_traffic_switches_each_partition_once_without_loss() {
    init_logging();
    let echo = Echo::new("swap").await;
    let (weir, status) = echo
        .start_v1(Duration::from_millis(200), HttpListen::Disabled)
        .await;

    // A steady 60 events/s over three partitions; v2 arrives a third of the way in.
    echo.warm_up().await;
    let total = 240;
    let mut renamed_at_ms = 0;
    for n in 1..total {
        if n == total / 3 {
            install_atomically(&test_guest("echo-v2"), &echo.wasm);
            renamed_at_ms = now_ms();
        }
        echo.send(n).await;
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    running(&status, "echo-v2").await;

    let out = echo.read(total, Duration::from_secs(2)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..total).collect::<Vec<_>>(),
        "every event exactly once across the swap"
    );
    for (partition, runs) in version_runs(&out) {
        assert_eq!(
            runs,
            ["v1", "v2"],
            "partition {partition} switches once, from v1 to v2"
        );
    }
    let first_v2 = out
        .iter()
        .filter(|r| r.header("weir-version").as_deref() == Some("v2"))
        .map(|r| {
            r.header("weir-handled-at-ms")
                .unwrap()
                .parse::<u128>()
                .unwrap()
        })
        .min()
        .unwrap();
    println!(
        "reload latency: rename -> first event handled by v2 = {} ms (debounce 200 ms)",
        first_v2.saturating_sub(renamed_at_ms)
    );
    let module = module_status(&status, "echo").unwrap();
    assert_eq!((module.loads, module.failures), (2, 0));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_rejected_while_the_old_version_keeps_serving() {
    init_logging();
    let echo = Echo::new("bad").await;
    let http = free_addr();
    let (weir, status) = echo
        .start_v1(Duration::from_millis(100), HttpListen::Addr(http))
        .await;
    let v1 = digest(&test_guest("echo-v1"));

    let garbage = echo.modules.file("garbage.bin");
    std::fs::write(&garbage, b"this is not a component").unwrap();
    let cases = [
        (garbage.clone(), "not a WebAssembly component"),
        (
            test_guest("wrong-world"),
            "exports neither `weir:consumer/handler@0.2.0`",
        ),
    ];
    let mut sent = 0;
    for (i, (bad, why)) in cases.iter().enumerate() {
        install_atomically(bad, &echo.wasm);
        let failed = eventually(Duration::from_secs(30), "the reload failure", || {
            module_status(&status, "echo").filter(|m| m.failures == i as u64 + 1)
        })
        .await;
        assert_eq!(
            failed.digest.as_deref(),
            Some(v1.as_str()),
            "v1 still serves"
        );
        match &failed.state {
            ModuleState::ReloadFailed { reason } => {
                assert!(reason.contains("echo.wasm"), "{reason}");
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("expected reload-failed, got {other:?}"),
        }
        // What an operator sees at /status.
        let (code, _, body) = tokio::task::spawn_blocking(move || http_get(http, "/status"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let shown = &json.as_array().unwrap()[0];
        assert_eq!(shown["name"], "echo");
        assert_eq!(shown["state"], "reload-failed", "{body}");
        assert_eq!(shown["digest"], v1.as_str());
        assert!(shown["reason"].as_str().unwrap().contains(why), "{body}");
        for _ in 0..3 {
            echo.send(sent).await;
            sent += 1;
        }
        let out = echo.read(sent, Duration::from_millis(500)).await;
        assert_eq!(out.len(), sent);
        assert!(
            out.iter()
                .all(|r| r.header("weir-version").as_deref() == Some("v1"))
        );
    }

    install_atomically(&test_guest("echo-v2"), &echo.wasm);
    running(&status, "echo-v2").await;
    echo.send(sent).await;
    let out = echo.read(sent + 1, Duration::from_millis(500)).await;
    let last = out
        .iter()
        .find(|r| n_of(r) == sent)
        .expect("the last event");
    assert_eq!(last.header("weir-version").as_deref(), Some("v2"));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_chunks_is_never_loaded_half_written() {
    init_logging();
    let echo = Echo::new("chunks").await;
    let debounce = Duration::from_millis(150);
    let (weir, status) = echo.start_v1(debounce, HttpListen::Disabled).await;
    echo.warm_up().await;
    for n in 1..6 {
        echo.send(n).await;
    }

    // Overwrite in place, in three chunks, pausing 4x the debounce between
    // them, while events flow.
    let v2 = std::fs::read(test_guest("echo-v2")).unwrap();
    let writer = {
        let wasm = echo.wasm.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&wasm).unwrap();
            for chunk in v2.chunks(v2.len() / 3 + 1) {
                file.write_all(chunk).unwrap();
                file.flush().unwrap();
                std::thread::sleep(debounce * 4);
            }
        })
    };
    let mut sent = 6;
    while !writer.is_finished() {
        echo.send(sent).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.await.unwrap();
    running(&status, "echo-v2").await;
    for _ in 0..6 {
        echo.send(sent).await;
        sent += 1;
    }
    let out = echo.read(sent, Duration::from_secs(1)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..sent).collect::<Vec<_>>(), "nothing lost or doubled");
    for (partition, runs) in version_runs(&out) {
        assert_eq!(runs, ["v1", "v2"], "partition {partition}");
    }
    let module = module_status(&status, "echo").unwrap();
    assert_eq!(
        module.loads, 2,
        "only v1 and the complete v2 were ever loaded"
    );
    println!(
        "chunked write: {} failed loads of partial content were refused",
        module.failures
    );
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_module_commits_and_adding_it_back_resumes_from_there() {
    init_logging();
    let echo = Echo::new("del").await;
    let (weir, status) = echo
        .start_v1(Duration::from_millis(100), HttpListen::Disabled)
        .await;
    for n in 0..12 {
        echo.send(n).await;
    }
    assert_eq!(echo.read(12, Duration::ZERO).await.len(), 12);

    std::fs::remove_file(&echo.wasm).unwrap();
    eventually(Duration::from_secs(30), "echo unloaded", || {
        module_status(&status, "echo").is_none().then_some(())
    })
    .await;
    assert_eq!(
        committed_total(&echo.t.group, &echo.t.input),
        12,
        "unloading commits everything handled"
    );

    for n in 12..24 {
        echo.send(n).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        echo.read(12, Duration::from_millis(500)).await.len(),
        12,
        "nothing runs while removed"
    );

    install_atomically(&test_guest("echo-v1"), &echo.wasm);
    let out = echo.read(24, Duration::from_secs(2)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..24).collect::<Vec<_>>(),
        "resumed from the committed offsets: no loss, no repeat"
    );
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_reloads_the_module() {
    init_logging();
    let echo = Echo::new("cm").await;
    let dir = echo.modules.path();
    // Kubernetes' layout: files are links into `..data`, itself a link to a
    // timestamped folder; an update swaps `..data` atomically.
    let manifest = std::fs::read(dir.join("echo.toml")).unwrap();
    std::fs::remove_file(dir.join("echo.toml")).unwrap();
    let version_dir = |name: &str, guest: &str| {
        let d = dir.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(test_guest(guest), d.join("echo.wasm")).unwrap();
        std::fs::write(d.join("echo.toml"), &manifest).unwrap();
    };
    version_dir("..2026_11_25_v1", "echo-v1");
    std::os::unix::fs::symlink("..2026_11_25_v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/echo.wasm", dir.join("echo.wasm")).unwrap();
    std::os::unix::fs::symlink("..data/echo.toml", dir.join("echo.toml")).unwrap();
    let (weir, status) = Weir::start_watching(dir, Duration::from_millis(100));
    running(&status, "echo-v1").await;
    echo.warm_up().await;

    version_dir("..2026_11_25_v2", "echo-v2");
    std::os::unix::fs::symlink("..2026_11_25_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_25_v1")).unwrap();
    running(&status, "echo-v2").await;
    echo.send(1).await;
    let out = echo.read(2, Duration::from_millis(500)).await;
    let second = out.iter().find(|r| n_of(r) == 1).expect("event 1");
    assert_eq!(second.header("weir-version").as_deref(), Some("v2"));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_loads_at_most_twice_and_the_last_content_wins() {
    init_logging();
    let echo = Echo::new("burst").await;
    let (weir, status) = echo
        .start_v1(Duration::from_millis(300), HttpListen::Disabled)
        .await;

    // 21 replacements, 10 ms apart: well inside one debounce window.
    for i in 0..21 {
        let version = if i % 2 == 0 { "echo-v2" } else { "echo-v1" };
        install_atomically(&test_guest(version), &echo.wasm);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running(&status, "echo-v2").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let module = module_status(&status, "echo").unwrap();
    assert_eq!(
        module.digest.as_deref(),
        Some(digest(&test_guest("echo-v2")).as_str())
    );
    assert!(
        module.loads <= 3,
        "the burst was loaded {} times",
        module.loads - 1
    );
    weir.stop().await.unwrap();
}
