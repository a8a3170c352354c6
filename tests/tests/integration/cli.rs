//! The `weir` binary: graceful shutdown on SIGTERM, and the embedded demo.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{
    ModulesDir, Send, broker, committed, consume, eventually, init_logging, produce, unique,
    weir_binary,
};

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit, killing it after `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_file(dir: &Path) -> (std::fs::File, std::path::PathBuf) {
    let path = dir.join("weir.log");
    (std::fs::File::create(&path).unwrap(), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_commits_and_exits_zero() {
    init_logging();
    let (input, output, group) = (unique("term-in"), unique("term-out"), unique("g-term"));
    broker().create_topic(&input).await;
    broker().create_topic(&output).await;
    let modules = ModulesDir::new();
    modules.add(
        "enrich",
        "json-enrich",
        format!(
            "input-topics = [\"{input}\"]\noutput-topics = [\"{output}\"]\ngroup-id = \"{group}\"\n\
             [config]\nregion = \"r\"\noutput = \"{output}\"\n"
        ),
    );
    let logs = ModulesDir::new();
    let (log, log_path) = stderr_file(logs.path());
    let mut child = Command::new(weir_binary())
        .args(["run", "--brokers", &broker().bootstrap(), "--modules"])
        .arg(modules.path())
        .env("NO_COLOR", "1")
        .stderr(log)
        .spawn()
        .unwrap();

    let records: Vec<Send> = (0..40)
        .map(|i| Send::kv(&format!("k{i}"), &format!(r#"{{"i":{i}}}"#)))
        .collect();
    produce(&input, &records).await;
    let out = consume(&output, 40, Duration::from_secs(60), Duration::ZERO).await;
    assert_eq!(out.len(), 40);

    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(40)))
            .await
            .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    let total: i64 = committed(&group, &input)
        .iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert_eq!(total, 40, "everything handled is committed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_command_runs_the_examples_on_the_embedded_broker() {
    init_logging();
    let modules = weir_tests::repo_root().join("target/modules");
    let work = ModulesDir::new();
    let bootstrap_file = work.path().join("bootstrap");
    let (log, log_path) = stderr_file(work.path());
    let mut child = Command::new(weir_binary())
        .args(["dev", "--modules"])
        .arg(&modules)
        .arg("--bootstrap-file")
        .arg(&bootstrap_file)
        .env("NO_COLOR", "1")
        .stderr(log)
        .spawn()
        .unwrap();
    let bootstrap = eventually(Duration::from_secs(60), "the bootstrap file", || {
        std::fs::read_to_string(&bootstrap_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .map(|s| s.trim().to_owned())
    })
    .await;

    let mut produce = Command::new(weir_binary())
        .args([
            "produce",
            "--brokers",
            &bootstrap,
            "--topic",
            "orders",
            "--key-separator",
            "|",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"o-1|{\"id\":1,\"price\":3,\"quantity\":4,\"status\":\"paid\",\"country\":\"FR\"}\n",
        )
        .unwrap();
    assert!(produce.wait().unwrap().success());

    let consumed = Command::new(weir_binary())
        .args([
            "consume",
            "--brokers",
            &bootstrap,
            "--topic",
            "orders-enriched",
            "--count",
            "1",
            "--idle",
            "60s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&consumed.stdout);
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert!(stdout.contains("o-1"), "{stdout}");
    assert!(stdout.contains("\"total\":12"), "{stdout}");
    assert!(stdout.contains("weir-enriched-by=json-enrich"), "{stdout}");

    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(30)))
            .await
            .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("in memory only"), "{log}");
}
