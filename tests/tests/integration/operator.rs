//! The operator's CLI (`weir status|pause|resume|offsets`) against a
//! running weir (a child process) on a real broker: a pause stops outputs
//! while input keeps arriving and a resume delivers everything; offsets
//! reset to earliest, to a time and to exact offsets replay what they
//! should; tokens and unknown modules are refused with a reason.

#![allow(clippy::print_stdout, reason = "tests print what they measure")]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use weir_tests::devtools::{Run, weir_with_env};
use weir_tests::process::audit::{read_all, wait_all_committed};
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    ModulesDir, Producer, Send, Topics, broker, http_get, init_logging, sample, test_guest,
};

const PARTITIONS: i32 = 3;
const TOKEN: &str = "test-admin-token-1";

/// The identity guest as module `ident`, and a weir process running it
/// with [`TOKEN`] as its admin token.
struct Setup {
    rt: tokio::runtime::Runtime,
    t: Topics,
    _modules: ModulesDir,
    weir: WeirProcess,
    producer: Producer,
}

impl Setup {
    fn start(label: &str) -> Self {
        let rt = weir_tests::runtime();
        let t = rt.block_on(Topics::create_with(label, PARTITIONS));
        let modules = ModulesDir::new();
        modules.install(
            "ident",
            &test_guest("identity"),
            t.manifest().set("offset-reset", "earliest"),
        );
        let mut config = ProcessConfig::new(modules.path());
        // Static membership too: the resets must work with it.
        config.extra_toml = format!("admin-token = {TOKEN:?}\ninstance-id = \"{label}-0\"\n");
        let mut weir = WeirProcess::start(label, &config);
        weir.wait_ready(Duration::from_secs(90));
        let producer = rt.block_on(async { Producer::new() });
        Self {
            rt,
            t,
            _modules: modules,
            weir,
            producer,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.weir.http())
    }

    /// `weir <args> --url <this weir>` with `token` in WEIR_ADMIN_TOKEN.
    fn cli(&self, args: &[&str], token: Option<&str>) -> Run {
        let url = self.url();
        let mut all = args.to_vec();
        all.extend(["--url", url.as_str()]);
        let dir = tempfile::tempdir().expect("temp dir");
        let env: Vec<(&str, &OsStr)> = token
            .map(|t| ("WEIR_ADMIN_TOKEN", OsStr::new(t)))
            .into_iter()
            .collect();
        weir_with_env(dir.path(), &all, &env)
    }

    fn produce(&self, ids: std::ops::Range<usize>) {
        let events: Vec<Send> = ids
            .map(|i| {
                let p = i32::try_from(i).expect("small") % PARTITIONS;
                Send::on(p, &format!("k{i}"), &format!("e{i}"))
            })
            .collect();
        self.rt.block_on(self.producer.send(&self.t.input, &events));
    }

    /// Records in the output topic, all partitions together.
    fn outputs(&self) -> i64 {
        weir_tests::end_offsets(&self.t.output, PARTITIONS)
            .iter()
            .sum()
    }

    /// Waits (60 s at most) until the output topic holds `n` records.
    fn wait_outputs(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.outputs();
            if got == n {
                return;
            }
            assert!(
                got < n && Instant::now() < deadline,
                "{got} outputs, expected {n}; log tail:\n{}",
                self.weir.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_committed(&self) {
        wait_all_committed(
            &self.t.group,
            &self.t.input,
            PARTITIONS,
            Duration::from_secs(60),
        );
    }

    fn module_status(&self) -> serde_json::Value {
        let status = self.weir.status().expect("/status");
        status
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == "ident"))
            .cloned()
            .unwrap_or_else(|| panic!("no `ident` in /status: {status}"))
    }
}

#[test]
fn pause_stops_outputs_while_input_arrives_and_resume_delivers_all() {
    init_logging();
    if !broker().is_real() {
        println!("skipped: needs a real broker (WEIR_TEST_BROKERS)");
        return;
    }
    let s = Setup::start("pause");
    s.produce(0..90);
    s.wait_outputs(90);

    let run = s.cli(&["pause", "ident"], Some(TOKEN)).success();
    assert!(
        run.stdout
            .contains("paused; events in flight finished and their offsets are committed"),
        "{run}"
    );
    let m = s.module_status();
    assert_eq!(m["paused"], true, "{m}");
    assert_eq!(m["pause-state"]["paused"]["drained"], true, "{m}");
    s.wait_committed();
    let (_, _, metrics) = http_get(s.weir.http(), "/metrics").expect("/metrics");
    assert_eq!(
        sample(&metrics, r#"weir_module_paused{module="ident"}"#),
        Some(1.0)
    );

    // Input keeps arriving; nothing comes out, nothing is committed.
    let committed = weir_tests::committed(&s.t.group, &s.t.input);
    s.produce(90..180);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.outputs(), 90, "outputs while paused");
    assert_eq!(weir_tests::committed(&s.t.group, &s.t.input), committed);
    // The lag shows what waits, though paused partitions are not fetched.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = s.module_status();
        let lag: i64 = m["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["lag"].as_i64())
            .sum();
        if lag == 90 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {lag} while paused, not 90: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = s.cli(&["status"], None).success().stdout;
    println!("weir status while paused:\n{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ident") && l.contains(" yes ")),
        "{table}"
    );
    let json = s.cli(&["status", "--json"], None).success().stdout;
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("status --json");
    assert_eq!(parsed[0]["paused"], true);

    let run = s.cli(&["resume", "ident"], Some(TOKEN)).success();
    assert!(run.stdout.contains("resumed"), "{run}");
    s.wait_outputs(180);
    s.wait_committed();
    let values: BTreeSet<String> = read_all(&s.t.output, PARTITIONS)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let want: BTreeSet<String> = (0..180).map(|i| format!("e{i}")).collect();
    assert_eq!(values, want, "every event's output, once");
    assert_eq!(s.module_status()["paused"], false);
    let (_, _, metrics) = http_get(s.weir.http(), "/metrics").expect("/metrics");
    assert_eq!(
        sample(&metrics, r#"weir_module_paused{module="ident"}"#),
        Some(0.0)
    );
}

#[test]
fn offsets_reset_to_earliest_a_time_and_exact_offsets_replay_what_they_should() {
    init_logging();
    if !broker().is_real() {
        println!("skipped: needs a real broker (WEIR_TEST_BROKERS)");
        return;
    }
    let s = Setup::start("reset");
    let input = s.t.input.clone();
    s.produce(0..30);
    s.wait_outputs(30);
    std::thread::sleep(Duration::from_millis(1100));
    let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(1100));
    s.produce(30..60);
    s.wait_outputs(60);
    s.wait_committed();

    // A dry run shows the plan and moves nothing.
    let run = s
        .cli(
            &["offsets", "ident", "--reset-to", "earliest", "--dry-run"],
            Some(TOKEN),
        )
        .success();
    println!("{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("{input}[0]  20 -> 0")),
        "{run}"
    );
    assert!(run.stdout.contains("dry run"), "{run}");
    assert_eq!(
        weir_tests::committed(&s.t.group, &input),
        [Some(20), Some(20), Some(20)]
    );

    // To a time: the second batch again.
    let run = s
        .cli(&["offsets", "ident", "--reset-to", &at], Some(TOKEN))
        .success();
    assert!(
        run.stdout.contains(&format!("{input}[1]  20 -> 10")),
        "{run}"
    );
    s.wait_outputs(90);
    s.wait_committed();

    // To the beginning: everything again.
    let t0 = Instant::now();
    s.cli(&["offsets", "ident", "--reset-to", "earliest"], Some(TOKEN))
        .success();
    println!("reset to earliest answered in {:?}", t0.elapsed());
    s.wait_outputs(150);
    s.wait_committed();

    // Exact offsets, on two partitions: 5 + 2 events again.
    let (p1, p2) = (format!("{input}:1:15"), format!("{input}:2:18"));
    s.cli(
        &["offsets", "ident", "--reset-to", &p1, "--reset-to", &p2],
        Some(TOKEN),
    )
    .success();
    s.wait_outputs(157);
    s.wait_committed();
    assert_eq!(s.module_status()["state"], "running");
    println!(
        "outputs after the resets: {} (as expected: 157)",
        s.outputs()
    );

    // To the end: nothing replays, nothing is skipped later.
    s.cli(&["offsets", "ident", "--reset-to", "latest"], Some(TOKEN))
        .success();
    s.produce(60..63);
    s.wait_outputs(160);
}

#[test]
fn admin_requests_need_the_token_and_a_known_module() {
    init_logging();
    if !broker().is_real() {
        println!("skipped: needs a real broker (WEIR_TEST_BROKERS)");
        return;
    }
    let s = Setup::start("admin");
    s.cli(&["pause", "ident"], None)
        .failure(&["401", "missing admin token"]);
    s.cli(&["pause", "ident"], Some("not-the-token"))
        .failure(&["401", "wrong admin token"]);
    s.cli(&["pause", "nope"], Some(TOKEN))
        .failure(&["404", "no module `nope` runs here"]);
    s.cli(&["offsets", "nope", "--reset-to", "earliest"], Some(TOKEN))
        .failure(&["404", "no module `nope` runs here"]);
    s.cli(&["offsets", "ident", "--reset-to", "soon"], Some(TOKEN))
        .failure(&["400", "`soon` is not earliest, latest"]);
    s.cli(
        &["offsets", "ident", "--reset-to", "other-topic:0:1"],
        Some(TOKEN),
    )
    .failure(&["400", "`other-topic` is not an input topic"]);
    assert_eq!(s.module_status()["paused"], false, "nothing was paused");

    // A process without a token refuses every mutating request.
    let empty = ModulesDir::new();
    let mut bare = WeirProcess::start("admin-bare", &ProcessConfig::new(empty.path()));
    let url = format!("http://{}", bare.http());
    let dir = tempfile::tempdir().expect("temp dir");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(bare.http(), "/livez").is_err() {
        assert!(Instant::now() < deadline, "no /livez");
        std::thread::sleep(Duration::from_millis(100));
    }
    weir_with_env(
        dir.path(),
        &["resume", "ident", "--url", &url],
        &[("WEIR_ADMIN_TOKEN", OsStr::new(TOKEN))],
    )
    .failure(&["403", "no admin token is configured"]);
    bare.stop(Duration::from_secs(30));
}

/// Outputs while paused: none may appear for a few seconds.
async fn assert_no_outputs_beyond(topic: &str, n: i64) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: i64 = weir_tests::end_offsets(topic, PARTITIONS).iter().sum();
    assert_eq!(got, n, "outputs while paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_reload_in_place_and_one_with_a_new_consumer() {
    init_logging();
    let t = Topics::create_with("pause-reload", PARTITIONS).await;
    let modules = ModulesDir::new();
    let manifest = |offset_reset: &str, note: &str| {
        t.manifest()
            .set("offset-reset", offset_reset)
            .config("note", note)
    };
    modules.install("ident", &test_guest("identity"), manifest("earliest", "v1"));
    let http = weir_tests::free_addr();
    let (weir, status) = weir_tests::Weir::start_config(weir::config::RunConfig {
        http_listen: weir::http::HttpListen::Addr(http),
        watch: true,
        reload_debounce: Duration::from_millis(200),
        admin_token: Some(TOKEN.to_owned()),
        ..weir_tests::test_config(modules.path(), &[])
    });
    let producer = Producer::new();
    let send = |ids: std::ops::Range<usize>| -> Vec<Send> {
        ids.map(|i| {
            Send::on(
                i32::try_from(i % 3).expect("small"),
                &format!("k{i}"),
                &format!("e{i}"),
            )
        })
        .collect()
    };
    producer.send(&t.input, &send(0..30)).await;
    weir_tests::consume(&t.output, 30, Duration::from_secs(60), Duration::ZERO).await;
    let cli = |args: &[&str]| {
        let url = format!("http://{http}");
        let mut all = args.to_vec();
        all.extend(["--url", url.as_str()]);
        let dir = tempfile::tempdir().expect("temp dir");
        tokio::task::block_in_place(|| {
            weir_with_env(dir.path(), &all, &[("WEIR_ADMIN_TOKEN", OsStr::new(TOKEN))])
        })
    };
    cli(&["pause", "ident"]).success();
    let loads = |n: u64| {
        let status = status.clone();
        move || {
            weir_tests::module_status(&status, "ident").filter(|m| {
                m.loads == n
                    && m.pause_state == weir::ops::control::PauseState::Paused { drained: true }
            })
        }
    };

    // A reload in place keeps the consumer, and its pause.
    modules.install("ident", &test_guest("identity"), manifest("earliest", "v2"));
    let m = weir_tests::eventually(Duration::from_secs(30), "reloaded in place", loads(2)).await;
    assert!(m.paused);
    producer.send(&t.input, &send(30..60)).await;
    assert_no_outputs_beyond(&t.output, 30).await;

    // A reload that needs a new consumer starts it paused.
    modules.install("ident", &test_guest("identity"), manifest("latest", "v3"));
    let m = weir_tests::eventually(Duration::from_secs(30), "restarted paused", loads(3)).await;
    assert!(m.paused);
    producer.send(&t.input, &send(60..90)).await;
    assert_no_outputs_beyond(&t.output, 30).await;

    cli(&["resume", "ident"]).success();
    let out = weir_tests::consume(
        &t.output,
        90,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let values: BTreeSet<String> = out.iter().map(weir_tests::Received::text).collect();
    let want: BTreeSet<String> = (0..90).map(|i| format!("e{i}")).collect();
    assert_eq!(values, want, "every event once the module resumes");
    weir.stop().await.expect("clean shutdown");
}
