//! weir against brokers these tests start themselves (`scripts/kafka.sh`):
//!
//! - a broker with a SASL_SSL listener: weir consumes and produces through
//!   it with SCRAM-SHA-512 and with PLAIN; a wrong password stops weir with
//!   an authentication error, an untrusted broker certificate with a TLS
//!   error; the password shows nowhere in weir's log, errors, `/status` or
//!   `/metrics`;
//! - a three-node cluster (replication factor 3, `min.insync.replicas=2`):
//!   weir copies 20,000 events while the leader of an input partition is
//!   SIGKILLed and later restarted; nothing is lost or duplicated.
//!
//! Each test prints produced / consumed / missing / duplicate counts. They
//! run when `WEIR_TEST_BROKERS` is set (CI) or `WEIR_TEST_OWN_BROKERS=1`;
//! see `weir_tests::cluster`.

#![allow(
    clippy::print_stdout,
    reason = "the tests print the counts and times they measure"
)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use weir::config::RunConfig;
use weir_tests::cluster::{
    Cluster, Counts, SecureBroker, create_topics, high_watermarks, leader_of, own_brokers_enabled,
    produce_range, read_values,
};
use weir_tests::kafka::client_config;
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    Manifest, ModulesDir, Producer, Weir, http_get, init_logging, run_config, test_guest, unique,
};

fn skipped(test: &str) -> bool {
    if own_brokers_enabled() {
        return false;
    }
    println!(
        "{test}: skipped (starts its own Kafka brokers: set WEIR_TEST_OWN_BROKERS=1, \
         or WEIR_TEST_BROKERS as scripts/test.sh does)"
    );
    true
}

/// A modules folder with the identity fixture copying `input` to `output`.
fn identity_modules(input: &str, output: &str) -> ModulesDir {
    let modules = ModulesDir::new();
    modules.install(
        "copy",
        &test_guest("identity"),
        Manifest::pipe(input, output, &unique("g-copy")),
    );
    modules
}

/// `weir run --config` on the secure listener of `broker` with `kafka` as
/// its `[kafka]` table, logging text with debug logging of weir and
/// librdkafka.
fn start_weir(
    name: &str,
    broker: &SecureBroker,
    modules: &ModulesDir,
    kafka: Vec<(String, String)>,
) -> WeirProcess {
    let config = ProcessConfig {
        brokers: Some(broker.secure.clone()),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(10),
        kafka,
        log_filter: "info,weir=debug,librdkafka=debug,wasmtime=warn,cranelift=warn".into(),
        json_log: false,
        ..ProcessConfig::new(modules.path())
    };
    WeirProcess::start(name, &config)
}

/// Produces `n` records (`0..n`) to `input` through the secure listener
/// with `props`, and reads `output` back: what got through.
async fn copy_counts(
    broker: &SecureBroker,
    props: &[(String, String)],
    (input, output): (&str, &str),
    n: u64,
) -> Counts {
    let produced = produce_range(&Producer::connect(&broker.secure, props), input, 0, n).await;
    let consumed = read_values(
        &broker.secure,
        props,
        output,
        n as usize,
        Duration::from_secs(90),
        Duration::from_secs(1),
    )
    .await;
    Counts::of(&produced, &consumed)
}

/// Creates a topic pair on the secure broker (over PLAINTEXT: setup only).
async fn secure_topics(broker: &SecureBroker, prefix: &str) -> (String, String) {
    let (input, output) = (
        unique(&format!("{prefix}-in")),
        unique(&format!("{prefix}-out")),
    );
    create_topics(&broker.plaintext, &[&input, &output], 1, 1).await;
    (input, output)
}

/// One broker for the four scenarios (a start costs 10-20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_plain_wrong_password_and_untrusted_ca() {
    if skipped("sasl_ssl") {
        return;
    }
    init_logging();
    let broker = SecureBroker::start();
    println!("secure broker started in {:.1?}", broker.startup);
    scram_copies_everything_and_never_shows_the_password(&broker).await;
    plain_copies_everything_in_process(&broker).await;
    wrong_password_stops_weir_with_an_authentication_error(&broker).await;
    untrusted_certificate_stops_weir_with_a_tls_error(&broker).await;
}

/// SCRAM-SHA-512 through `weir run --config`: N in, N out; the password
/// is nowhere in the log (librdkafka security debugging on), `/status` or
/// `/metrics`.
async fn scram_copies_everything_and_never_shows_the_password(broker: &SecureBroker) {
    let (input, output) = secure_topics(broker, "scram").await;
    let modules = identity_modules(&input, &output);
    let props = broker.client_props("SCRAM-SHA-512", &broker.password);
    // librdkafka's own security debug lines go to weir's log too.
    let mut weir_props = props.clone();
    weir_props.push(("debug".into(), "security".into()));
    let mut weir = start_weir("scram", broker, &modules, weir_props);

    const N: u64 = 2_000;
    let counts = copy_counts(broker, &props, (&input, &output), N).await;
    println!("SASL_SSL SCRAM-SHA-512 via `weir run`: {counts}");

    let mut served = String::new();
    for path in ["/status", "/metrics"] {
        let (code, _, body) = http_get(weir.http(), path).expect("http get");
        assert_eq!(code, 200, "{path}: {body}");
        served.push_str(&body);
    }
    tokio::task::block_in_place(|| weir.stop(Duration::from_secs(60)));
    let log = weir.log();

    assert_eq!(
        counts,
        Counts {
            produced: N as usize,
            consumed: N as usize,
            missing: 0,
            duplicates: 0
        },
        "log:\n{log}"
    );
    assert!(
        log.contains("SCRAM-SHA-512"),
        "librdkafka's security debug lines are in the log:\n{log}"
    );
    assert!(served.contains("\"state\":\"running\""), "{served}");
    for (what, text) in [("log", &log), ("/status and /metrics", &served)] {
        assert!(
            !text.contains(&broker.password),
            "the password appears in weir's {what}:\n{text}"
        );
    }
    println!(
        "password absent from {} log bytes ({} lines mention SASL or SCRAM) and {} bytes of \
         /status + /metrics",
        log.len(),
        log.lines()
            .filter(|l| l.contains("SASL") || l.contains("SCRAM"))
            .count(),
        served.len()
    );
}

/// PLAIN with weir in process: N in, N out.
async fn plain_copies_everything_in_process(broker: &SecureBroker) {
    let (input, output) = secure_topics(broker, "plain").await;
    let modules = identity_modules(&input, &output);
    let props = broker.client_props("PLAIN", &broker.password);
    let config = RunConfig {
        shutdown_timeout: Duration::from_secs(10),
        watch: false,
        kafka: props.iter().cloned().collect(),
        ..run_config(&broker.secure, modules.path(), &[])
    };
    let (weir, _) = Weir::start_config(config);
    const N: u64 = 500;
    let counts = copy_counts(broker, &props, (&input, &output), N).await;
    println!("SASL_SSL PLAIN in process: {counts}");
    weir.stop().await.expect("weir stops cleanly");
    assert_eq!((counts.produced, counts.consumed), (N as usize, N as usize));
    assert_eq!((counts.missing, counts.duplicates), (0, 0));
}

/// Runs `weir run` with `kafka` until it exits by itself; returns its exit
/// code, its log and its `weir failed` line.
async fn refused_run(
    broker: &SecureBroker,
    what: &str,
    kafka: &[(String, String)],
) -> (Option<i32>, String, String) {
    let (input, output) = secure_topics(broker, "refused").await;
    let modules = identity_modules(&input, &output);
    let t0 = Instant::now();
    let mut weir = start_weir("refused", broker, &modules, kafka.to_vec());
    let status = tokio::task::block_in_place(|| weir.wait_exit(Duration::from_secs(90)));
    let log = weir.log();
    let failure = log
        .lines()
        .find(|l| l.contains("weir failed"))
        .unwrap_or_else(|| panic!("{what}: no `weir failed` line in:\n{log}"))
        .to_owned();
    println!(
        "{what}: weir exited with {status} after {:.1?}; its error:\n{failure}",
        t0.elapsed()
    );
    (status.code(), log, failure)
}

/// A wrong password: `weir run` exits 1 with an error naming the brokers,
/// mechanism and user, and never prints the password.
async fn wrong_password_stops_weir_with_an_authentication_error(broker: &SecureBroker) {
    let wrong = format!("Wr0ng{}", std::process::id());
    let props = broker.client_props("SCRAM-SHA-512", &wrong);
    let (code, log, failure) = refused_run(broker, "wrong password", &props).await;
    assert_eq!(code, Some(1), "log:\n{log}");
    for part in [
        "rejected weir's credentials",
        &broker.secure,
        "sasl.mechanism=SCRAM-SHA-512",
        "sasl.username=weir-test",
        "Authentication failed",
    ] {
        assert!(failure.contains(part), "`{part}` missing from: {failure}");
    }
    assert!(
        !log.contains(&wrong),
        "the password appears in the log:\n{log}"
    );
    assert!(!log.contains(&broker.password), "{log}");
}

/// The right password but a CA that did not sign the broker's certificate:
/// `weir run` exits 1 saying the certificate cannot be verified.
async fn untrusted_certificate_stops_weir_with_a_tls_error(broker: &SecureBroker) {
    let dir = ModulesDir::new();
    let other_ca = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not-the-broker-ca", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {made:?}");
    let mut props = broker.client_props("SCRAM-SHA-512", &broker.password);
    for (k, v) in &mut props {
        if k == "ssl.ca.location" {
            *v = other_ca.display().to_string();
        }
    }
    let (code, log, failure) = refused_run(broker, "untrusted CA", &props).await;
    assert_eq!(code, Some(1), "log:\n{log}");
    for part in [
        "cannot verify the TLS certificate",
        &broker.secure,
        "certificate verify failed",
        "ssl.ca.location",
    ] {
        assert!(failure.contains(part), "`{part}` missing from: {failure}");
    }
    assert!(!log.contains(&broker.password), "{log}");
}

/// 20,000 events through weir on three brokers; the leader of input
/// partition 0 is SIGKILLed once a fifth of the outputs are written and
/// restarted later. Inputs are produced while it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_run_loses_and_duplicates_nothing() {
    if skipped("leader_failover") {
        return;
    }
    init_logging();
    let cluster = Cluster::start();
    println!("3-node cluster started in {:.1?}", cluster.startup);
    let (input, output) = (unique("fail-in"), unique("fail-out"));
    create_topics(&cluster.bootstrap, &[&input, &output], 3, 2).await;
    let modules = identity_modules(&input, &output);
    let (weir, _) = Weir::start_config(RunConfig {
        watch: false,
        ..run_config(&cluster.bootstrap, modules.path(), &[])
    });

    // Inputs at about 2,500/s, so that the kill lands mid-run.
    const N: u64 = 20_000;
    const BATCH: u64 = 500;
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (bootstrap, input, sent) = (cluster.bootstrap.clone(), input.clone(), sent.clone());
        tokio::spawn(async move {
            let producer = Producer::connect(&bootstrap, &[]);
            let mut acked = Vec::new();
            for from in (0..N).step_by(BATCH as usize) {
                acked.extend(produce_range(&producer, &input, from, from + BATCH).await);
                sent.store(from + BATCH, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            acked
        })
    };

    let watcher: BaseConsumer = client_config(&cluster.bootstrap, &[])
        .create()
        .expect("watcher");
    let written = |w: &BaseConsumer| high_watermarks(w, &output).unwrap_or(0);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    while written(&watcher) < (N / 5) as i64 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = leader_of(&watcher, &input, 0);
    let out_leaders: Vec<i32> = (0..3).map(|p| leader_of(&watcher, &output, p)).collect();
    println!(
        "killing node {victim} (leader of {input}[0]; output leaders {out_leaders:?}) at {:.1?}, \
         {} outputs written, {} inputs sent",
        t0.elapsed(),
        written(&watcher),
        sent.load(Ordering::Relaxed)
    );
    cluster.kill_node(victim);
    let killed = Instant::now();
    while written(&watcher) < (N * 3 / 5) as i64 && killed.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "restarting node {victim} after {:.1?} down, {} outputs written",
        killed.elapsed(),
        written(&watcher)
    );
    let restart = Instant::now();
    let cl = &cluster;
    tokio::task::block_in_place(|| cl.start_node(victim));
    println!("node {victim} serves again after {:.1?}", restart.elapsed());

    let produced = feeder.await.expect("feeder");
    let consumed = read_values(
        &cluster.bootstrap,
        &[],
        &output,
        N as usize,
        Duration::from_secs(120),
        Duration::from_secs(3),
    )
    .await;
    let counts = Counts::of(&produced, &consumed);
    println!(
        "leader failover (RF 3, min ISR 2, acks=all, idempotent): {counts} in {:.1?}",
        t0.elapsed()
    );
    weir.stop().await.expect("weir stops cleanly");
    assert_eq!(counts.produced, N as usize, "every input acknowledged");
    assert_eq!(
        (counts.consumed, counts.missing, counts.duplicates),
        (N as usize, 0, 0),
        "{counts}"
    );
}
