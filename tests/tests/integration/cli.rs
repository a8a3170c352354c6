//! The `weir` binary: graceful shutdown on SIGTERM, and the embedded demo.

use std::ffi::OsStr;
use std::time::Duration;

use weir_tests::devtools::{weir, weir_with_input};
use weir_tests::process::WeirProcess;
use weir_tests::{
    ModulesDir, Send, Topics, broker, committed_total, consume, eventually, init_logging, produce,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_commits_and_exits_zero() {
    init_logging();
    let t = Topics::create("term").await;
    let modules = ModulesDir::new();
    modules.add("enrich", "json-enrich", t.manifest().config("region", "r"));
    let mut child = WeirProcess::spawn(
        "term",
        &[
            "run".as_ref(),
            "--brokers".as_ref(),
            broker().bootstrap().as_ref(),
            "--modules".as_ref(),
            modules.path().as_os_str(),
        ],
    );

    produce(&t.input, &Send::numbered(0..40)).await;
    let out = consume(&t.output, 40, Duration::from_secs(60), Duration::ZERO).await;
    assert_eq!(out.len(), 40);

    tokio::task::block_in_place(|| child.stop(Duration::from_secs(40)));
    let log = child.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert_eq!(
        committed_total(&t.group, &t.input),
        40,
        "everything handled is committed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_compile_stops_without_waiting_for_it() {
    init_logging();
    let t = Topics::create("compile-stop").await;
    let modules = ModulesDir::new();
    // The Python component takes seconds to compile (~5 s on these 2 cores,
    // docs/BENCHMARKS.md), longer than a stop may take.
    modules.add(
        "py",
        "python-json-enrich",
        t.manifest().config("region", "r"),
    );
    let mut child = WeirProcess::spawn(
        "compile-stop",
        &[
            "run".as_ref(),
            "--brokers".as_ref(),
            broker().bootstrap().as_ref(),
            "--modules".as_ref(),
            modules.path().as_os_str(),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = tokio::task::block_in_place(|| child.stop(Duration::from_secs(30)));
    let log = child.log();
    let signal = log.find("SIGTERM received").expect("the signal is logged");
    if let Some(loaded) = log.find("module loaded") {
        assert!(
            loaded > signal,
            "the compile had ended before the signal; nothing was tested:\n{log}"
        );
    }
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(
        after < Duration::from_secs(2),
        "exited {after:?} after SIGTERM: the stop waited for the compile:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_command_runs_the_examples_on_the_embedded_broker() {
    init_logging();
    let modules = weir_tests::repo_root().join("target/modules");
    let work = ModulesDir::new();
    let (mut child, bootstrap) =
        start_dev("dev", &work, &["--modules".as_ref(), modules.as_os_str()]).await;

    weir_with_input(
        work.path(),
        &[
            "produce",
            "--brokers",
            &bootstrap,
            "--topic",
            "orders",
            "--key-separator",
            "|",
        ],
        b"o-1|{\"id\":1,\"price\":3,\"quantity\":4,\"status\":\"paid\",\"country\":\"FR\"}\n",
    )
    .success();

    let consumed = weir(
        work.path(),
        &[
            "consume",
            "--brokers",
            &bootstrap,
            "--topic",
            "orders-enriched",
            "--count",
            "1",
            "--idle",
            "60s",
        ],
    )
    .success();
    let stdout = &consumed.stdout;
    assert!(stdout.contains("o-1"), "{stdout}");
    assert!(stdout.contains("\"total\":12"), "{stdout}");
    assert!(stdout.contains("weir-enriched-by=json-enrich"), "{stdout}");

    tokio::task::block_in_place(|| child.stop(Duration::from_secs(30)));
    let log = child.log();
    assert!(log.contains("in memory only"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_takes_a_config_file_and_answers_the_operators_commands() {
    init_logging();
    let modules = ModulesDir::new();
    let manifest = std::fs::read_to_string(weir_tests::guest("json-enrich").with_extension("toml"))
        .expect("json-enrich.toml beside the built example");
    modules.install("json-enrich", &weir_tests::guest("json-enrich"), manifest);
    let work = ModulesDir::new();
    let http = weir_tests::free_addr();
    let config = format!(
        "brokers = \"replaced-by-dev:9092\"\nmodules = {:?}\nhttp-listen = \"{http}\"\n\
         admin-token = \"dev-token\"\n",
        modules.path().display().to_string()
    );
    work.write("weir.toml", config.as_bytes());
    let config_path = work.file("weir.toml");
    let (mut child, bootstrap) = start_dev(
        "dev-config",
        &work,
        &["--config".as_ref(), config_path.as_os_str()],
    )
    .await;
    assert!(!bootstrap.contains("replaced-by-dev"), "{bootstrap}");
    let url = format!("http://{http}");
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", url.as_str()]);
        weir_tests::devtools::weir_with_env(
            work.path(),
            &all,
            &[("WEIR_ADMIN_TOKEN", OsStr::new("dev-token"))],
        )
    };
    let status = eventually(
        Duration::from_secs(60),
        "json-enrich in weir status",
        || {
            let run = cli(&["status"]);
            (run.code == Some(0) && run.stdout.contains("json-enrich")).then_some(run.stdout)
        },
    )
    .await;
    assert!(status.starts_with("MODULE"), "{status}");
    let paused = tokio::task::block_in_place(|| cli(&["pause", "json-enrich"])).success();
    assert!(paused.stdout.contains("paused"), "{paused}");
    let dry = tokio::task::block_in_place(|| {
        cli(&[
            "offsets",
            "json-enrich",
            "--reset-to",
            "earliest",
            "--dry-run",
        ])
    })
    .success();
    assert!(dry.stdout.contains("orders[0]"), "{dry}");
    tokio::task::block_in_place(|| cli(&["offsets", "json-enrich", "--reset-to", "earliest"]))
        .failure(&["409", "embedded broker"]);
    tokio::task::block_in_place(|| cli(&["resume", "json-enrich"])).success();

    tokio::task::block_in_place(|| child.stop(Duration::from_secs(30)));
}

/// Starts `weir dev` with `args` and `--bootstrap-file` in `work`; returns
/// the process and the embedded broker's bootstrap address once written.
async fn start_dev(name: &str, work: &ModulesDir, args: &[&OsStr]) -> (WeirProcess, String) {
    let bootstrap_file = work.file("bootstrap");
    let mut all = vec![OsStr::new("dev")];
    all.extend_from_slice(args);
    all.extend([OsStr::new("--bootstrap-file"), bootstrap_file.as_os_str()]);
    let child = WeirProcess::spawn(name, &all);
    let bootstrap = eventually(Duration::from_secs(60), "the bootstrap file", || {
        std::fs::read_to_string(&bootstrap_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .map(|s| s.trim().to_owned())
    })
    .await;
    (child, bootstrap)
}
