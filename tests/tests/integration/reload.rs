//! Hot reload from the watched folder: add, replace and remove modules live
//! without losing or duplicating events.

#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

use weir::http::HttpListen;
use weir::status::{ModuleState, StatusBoard};
use weir_tests::{
    ModulesDir, Received, Weir, broker, committed, consume, eventually, free_port, http_get,
    init_logging, install_atomically, test_guest, unique,
};

fn echo_manifest(input: &str, output: &str, group: &str) -> String {
    format!(
        "input-topics = [\"{input}\"]\noutput-topics = [\"{output}\"]\ngroup-id = \"{group}\"\n\
         [config]\noutput = \"{output}\"\n"
    )
}

fn digest(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Waits until module `name` runs the component with `digest`.
async fn running(status: &StatusBoard, name: &str, digest: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{name} running {digest}"),
        || {
            status
                .snapshot()
                .into_iter()
                .find(|m| m.name == name && m.digest.as_deref() == Some(digest))
                .filter(|m| m.state == ModuleState::Running)
                .map(|_| ())
        },
    )
    .await;
}

struct Topics {
    input: String,
    output: String,
    group: String,
}

async fn setup(prefix: &str) -> (Topics, ModulesDir) {
    let t = Topics {
        input: unique(&format!("{prefix}-in")),
        output: unique(&format!("{prefix}-out")),
        group: unique(&format!("g-{prefix}")),
    };
    broker().create_topic(&t.input).await;
    broker().create_topic(&t.output).await;
    let modules = ModulesDir::new();
    modules.write(
        "echo.toml",
        echo_manifest(&t.input, &t.output, &t.group).as_bytes(),
    );
    (t, modules)
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Produces `{"n":n}` to partition `n % 3` and waits for the ack.
async fn send(producer: &FutureProducer, topic: &str, n: usize) {
    let value = format!(r#"{{"n":{n}}}"#);
    let key = format!("k{n}");
    let record = FutureRecord::to(topic)
        .partition((n % 3) as i32)
        .key(&key)
        .payload(&value);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap();
}

async fn read(topic: &str, n: usize, quiet: Duration) -> Vec<Received> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume(&topic, n, Duration::from_secs(90), quiet))
        .await
        .unwrap()
}

/// Sends event 0 and waits until it comes out, so the module's consumer
/// has joined its group before the test goes on.
async fn warm_up(producer: &FutureProducer, t: &Topics) {
    send(producer, &t.input, 0).await;
    assert_eq!(read(&t.output, 1, Duration::ZERO).await.len(), 1);
}

fn n_of(r: &Received) -> usize {
    r.json()["n"].as_u64().unwrap() as usize
}

/// Per input partition, the versions that handled its events in offset
/// order, collapsed to runs (e.g. `["v1", "v2"]`).
fn version_runs(out: &[Received]) -> BTreeMap<i64, Vec<String>> {
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
    let (t, modules) = setup("swap").await;
    let wasm = modules.path().join("echo.wasm");
    install_atomically(&test_guest("echo-v1"), &wasm);
    let (weir, status) = Weir::start_watching(modules.path(), Duration::from_millis(200));
    running(&status, "echo", &digest(&test_guest("echo-v1"))).await;

    // A steady 60 events/s over three partitions; v2 arrives a third of the way in.
    let producer = producer();
    warm_up(&producer, &t).await;
    let total = 240;
    let mut renamed_at_ms = 0;
    for n in 1..total {
        if n == total / 3 {
            install_atomically(&test_guest("echo-v2"), &wasm);
            renamed_at_ms = now_ms();
        }
        send(&producer, &t.input, n).await;
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    running(&status, "echo", &digest(&test_guest("echo-v2"))).await;

    let out = read(&t.output, total, Duration::from_secs(2)).await;
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
    let echo = status
        .snapshot()
        .into_iter()
        .find(|m| m.name == "echo")
        .unwrap();
    assert_eq!((echo.loads, echo.failures), (2, 0));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_rejected_while_the_old_version_keeps_serving() {
    init_logging();
    let (t, modules) = setup("bad").await;
    let wasm = modules.path().join("echo.wasm");
    install_atomically(&test_guest("echo-v1"), &wasm);
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (weir, status) = Weir::start_watching_with_http(
        modules.path(),
        Duration::from_millis(100),
        HttpListen::Addr(http),
    );
    let v1 = digest(&test_guest("echo-v1"));
    running(&status, "echo", &v1).await;
    let producer = producer();

    let garbage = modules.path().join("garbage.bin");
    std::fs::write(&garbage, b"this is not a component").unwrap();
    let cases = [
        (garbage.clone(), "not a WebAssembly component"),
        (
            test_guest("wrong-world"),
            "exports neither `weir:consumer/handler@0.1.0`",
        ),
    ];
    let mut sent = 0;
    for (i, (bad, why)) in cases.iter().enumerate() {
        install_atomically(bad, &wasm);
        let failed = eventually(Duration::from_secs(30), "the reload failure", || {
            let echo = status.snapshot().into_iter().find(|m| m.name == "echo")?;
            (echo.failures == i as u64 + 1).then_some(echo)
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
        let echo = &json.as_array().unwrap()[0];
        assert_eq!(echo["name"], "echo");
        assert_eq!(echo["state"], "reload-failed", "{body}");
        assert_eq!(echo["digest"], v1.as_str());
        assert!(echo["reason"].as_str().unwrap().contains(why), "{body}");
        for _ in 0..3 {
            send(&producer, &t.input, sent).await;
            sent += 1;
        }
        let out = read(&t.output, sent, Duration::from_millis(500)).await;
        assert_eq!(out.len(), sent);
        assert!(
            out.iter()
                .all(|r| r.header("weir-version").as_deref() == Some("v1"))
        );
    }

    install_atomically(&test_guest("echo-v2"), &wasm);
    running(&status, "echo", &digest(&test_guest("echo-v2"))).await;
    send(&producer, &t.input, sent).await;
    let out = read(&t.output, sent + 1, Duration::from_millis(500)).await;
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
    let (t, modules) = setup("chunks").await;
    let wasm = modules.path().join("echo.wasm");
    install_atomically(&test_guest("echo-v1"), &wasm);
    let debounce = Duration::from_millis(150);
    let (weir, status) = Weir::start_watching(modules.path(), debounce);
    running(&status, "echo", &digest(&test_guest("echo-v1"))).await;
    let producer = producer();
    warm_up(&producer, &t).await;
    for n in 1..6 {
        send(&producer, &t.input, n).await;
    }

    // Overwrite in place, in three chunks, pausing 4x the debounce between
    // them, while events flow.
    let v2 = std::fs::read(test_guest("echo-v2")).unwrap();
    let writer = {
        let wasm = wasm.clone();
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
        send(&producer, &t.input, sent).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.await.unwrap();
    running(&status, "echo", &digest(&test_guest("echo-v2"))).await;
    for _ in 0..6 {
        send(&producer, &t.input, sent).await;
        sent += 1;
    }
    let out = read(&t.output, sent, Duration::from_secs(1)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..sent).collect::<Vec<_>>(), "nothing lost or doubled");
    for (partition, runs) in version_runs(&out) {
        assert_eq!(runs, ["v1", "v2"], "partition {partition}");
    }
    let echo = status
        .snapshot()
        .into_iter()
        .find(|m| m.name == "echo")
        .unwrap();
    assert_eq!(
        echo.loads, 2,
        "only v1 and the complete v2 were ever loaded"
    );
    println!(
        "chunked write: {} failed loads of partial content were refused",
        echo.failures
    );
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_module_commits_and_adding_it_back_resumes_from_there() {
    init_logging();
    let (t, modules) = setup("del").await;
    let wasm = modules.path().join("echo.wasm");
    install_atomically(&test_guest("echo-v1"), &wasm);
    let (weir, status) = Weir::start_watching(modules.path(), Duration::from_millis(100));
    running(&status, "echo", &digest(&test_guest("echo-v1"))).await;
    let producer = producer();
    for n in 0..12 {
        send(&producer, &t.input, n).await;
    }
    assert_eq!(read(&t.output, 12, Duration::ZERO).await.len(), 12);

    std::fs::remove_file(&wasm).unwrap();
    eventually(Duration::from_secs(30), "echo unloaded", || {
        status
            .snapshot()
            .iter()
            .all(|m| m.name != "echo")
            .then_some(())
    })
    .await;
    let committed_total: i64 = committed(&t.group, &t.input)
        .iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert_eq!(committed_total, 12, "unloading commits everything handled");

    for n in 12..24 {
        send(&producer, &t.input, n).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        read(&t.output, 12, Duration::from_millis(500)).await.len(),
        12,
        "nothing runs while removed"
    );

    install_atomically(&test_guest("echo-v1"), &wasm);
    let out = read(&t.output, 24, Duration::from_secs(2)).await;
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
    let (t, modules) = setup("cm").await;
    let dir = modules.path();
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
    running(&status, "echo", &digest(&test_guest("echo-v1"))).await;
    let producer = producer();
    warm_up(&producer, &t).await;

    version_dir("..2026_11_25_v2", "echo-v2");
    std::os::unix::fs::symlink("..2026_11_25_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_25_v1")).unwrap();
    running(&status, "echo", &digest(&test_guest("echo-v2"))).await;
    send(&producer, &t.input, 1).await;
    let out = read(&t.output, 2, Duration::from_millis(500)).await;
    let second = out.iter().find(|r| n_of(r) == 1).expect("event 1");
    assert_eq!(second.header("weir-version").as_deref(), Some("v2"));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_loads_at_most_twice_and_the_last_content_wins() {
    init_logging();
    let (_t, modules) = setup("burst").await;
    let wasm = modules.path().join("echo.wasm");
    install_atomically(&test_guest("echo-v1"), &wasm);
    let (weir, status) = Weir::start_watching(modules.path(), Duration::from_millis(300));
    running(&status, "echo", &digest(&test_guest("echo-v1"))).await;

    // 21 replacements, 10 ms apart: well inside one debounce window.
    for i in 0..21 {
        let version = if i % 2 == 0 { "echo-v2" } else { "echo-v1" };
        install_atomically(&test_guest(version), &wasm);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running(&status, "echo", &digest(&test_guest("echo-v2"))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let echo = status
        .snapshot()
        .into_iter()
        .find(|m| m.name == "echo")
        .unwrap();
    assert_eq!(
        echo.digest.as_deref(),
        Some(digest(&test_guest("echo-v2")).as_str())
    );
    assert!(
        echo.loads <= 3,
        "the burst was loaded {} times",
        echo.loads - 1
    );
    weir.stop().await.unwrap();
}
