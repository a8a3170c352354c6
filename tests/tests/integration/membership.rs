//! Static group membership (KIP-345, `instance-id`): weir killed with
//! SIGKILL and started again gets its partitions back at once, while a
//! dynamic member's successor waits for the dead member's session to
//! expire. Both figures are printed (`--nocapture`); nothing is lost across
//! the kill.

#![allow(clippy::print_stdout, reason = "the test prints what it measures")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_tests::process::audit::{Record, read_all, wait_all_committed};
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{ModulesDir, Producer, Send, Topics, broker, init_logging, test_guest};

const PARTITIONS: i32 = 3;
/// The group session of both runs: long enough to tell the two apart.
const SESSION: Duration = Duration::from_secs(20);

/// Runs one kill-and-restart; returns the time from the restart to the
/// first output of the new process.
fn restart_to_first_output(label: &str, instance: Option<&str>) -> Duration {
    let rt = weir_tests::runtime();
    let t = rt.block_on(Topics::create_with(label, PARTITIONS));
    let modules = ModulesDir::new();
    modules.install(
        "ident",
        &test_guest("identity"),
        t.manifest().set("offset-reset", "earliest"),
    );
    let mut config = ProcessConfig::new(modules.path());
    config.kafka = vec![
        ("session.timeout.ms".into(), SESSION.as_millis().to_string()),
        ("heartbeat.interval.ms".into(), "1000".into()),
    ];
    if let Some(instance) = instance {
        config.extra_toml = format!("instance-id = {instance:?}\n");
    }

    let mut first = WeirProcess::start(&format!("{label}-1"), &config);
    first.wait_ready(Duration::from_secs(90));
    if instance.is_some() {
        let status = first.status().expect("/status");
        assert_eq!(
            status[0]["group-instance-id"],
            format!("{}-ident", instance.unwrap_or_default()),
            "{status}"
        );
    }
    let producer = Producer::new();
    rt.block_on(producer.send(&t.input, &events(0..300)));
    wait_all_committed(&t.group, &t.input, PARTITIONS, Duration::from_secs(60));
    first.kill();
    let before = output_total(&t.output);
    // Events that arrive while no weir runs.
    rt.block_on(producer.send(&t.input, &events(300..600)));

    let restarted = Instant::now();
    let mut second = WeirProcess::start(&format!("{label}-2"), &config);
    let deadline = restarted + SESSION * 3;
    while output_total(&t.output) == before {
        assert!(
            Instant::now() < deadline,
            "no output within {:?} of the restart; log tail:\n{}",
            SESSION * 3,
            second.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_output = restarted.elapsed();
    wait_all_committed(&t.group, &t.input, PARTITIONS, Duration::from_secs(90));
    second.stop(Duration::from_secs(30));

    let all: BTreeSet<String> = (0..600).map(|i| format!("e{i}")).collect();
    let output = read_all(&t.output, PARTITIONS);
    let got: BTreeSet<String> = output.iter().map(value).collect();
    let missing: Vec<&String> = all.difference(&got).collect();
    println!(
        "{label}: restart -> first output {:.1} s (session.timeout.ms {}); {} events, {} outputs, \
         {} missing, {} duplicates",
        first_output.as_secs_f64(),
        SESSION.as_millis(),
        all.len(),
        output.len(),
        missing.len(),
        output.len() - got.len()
    );
    assert!(
        missing.is_empty(),
        "events lost across the kill: {missing:?}"
    );
    first_output
}

/// Events `e<i>` spread over the partitions.
fn events(ids: std::ops::Range<usize>) -> Vec<Send> {
    ids.map(|i| {
        let p = i32::try_from(i).expect("small") % PARTITIONS;
        Send::on(p, &format!("k{i}"), &format!("e{i}"))
    })
    .collect()
}

fn value(r: &Record) -> String {
    String::from_utf8_lossy(&r.value).into_owned()
}

/// Records in `topic`, all partitions together.
fn output_total(topic: &str) -> i64 {
    weir_tests::end_offsets(topic, PARTITIONS).iter().sum()
}

#[test]
fn a_static_member_restarted_after_sigkill_resumes_without_waiting_for_its_session() {
    init_logging();
    if !broker().is_real() {
        println!("skipped: needs a real broker (WEIR_TEST_BROKERS)");
        return;
    }
    let fixed = restart_to_first_output("static", Some("weir-test-0"));
    let dynamic = restart_to_first_output("dynamic", None);
    println!(
        "restart -> first output: static {:.1} s, dynamic {:.1} s (session {} s)",
        fixed.as_secs_f64(),
        dynamic.as_secs_f64(),
        SESSION.as_secs()
    );
    assert!(
        fixed < SESSION / 2,
        "the static member waited {fixed:?}, not well below the {SESSION:?} session"
    );
    assert!(
        dynamic > SESSION / 2,
        "the dynamic member got its partitions after {dynamic:?}: this test no longer shows \
         the session wait it compares with"
    );
}
