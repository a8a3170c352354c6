//! Durable keyed state (`[state]`, `weir:consumer/state@0.2.0`) on a real
//! Kafka broker: counts that stay exact across SIGKILLs and partition moves
//! in exactly-once mode, restores that read only the changelog's tail,
//! state kept across a reload, a join of two inputs across a restart,
//! dedupe across a restart, TTL tombstones, limits reported to the guest,
//! the topic checks done before subscribing, `/metrics`, components built
//! against 0.1.0, and what happens to the writes of an event whose output
//! is refused or that is handled again after a crash.
//!
//! weir runs as a child process (`weir run`, JSON logs, a `state-dir` of
//! its own per test and process) except where a test needs the watched
//! folder (reload) or nothing but loading (the 0.1.0 fixtures). The example
//! guests write to fixed topics (`click-counts`, `events-deduped`,
//! `probe-out`) shared by every test: each test keys its events with a
//! prefix of its own and reads those topics from their ends as of its
//! start. Each test prints its figures (`--nocapture`). Random moments of
//! kills come from a seed printed with them; `WEIR_STATE_SEED=<n>` replays
//! one.
//!
//! Real broker only (`WEIR_TEST_BROKERS`): the mock cluster neither isolates
//! transactions nor describes topic configurations, which stateful modules
//! need before they subscribe.

#![allow(
    clippy::print_stdout,
    reason = "the tests print the figures they measure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use weir::config::RunConfig;
use weir::status::ModuleState;
use weir_tests::http::promtool_check;
use weir_tests::process::audit::{committed_offsets, wait_all_committed};
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::rng::Rng;
use weir_tests::state::{
    Probe, Restore, counts_by_key, describe_topic, local_checkpoint, module_entry, restores,
    state_stores,
};
use weir_tests::{
    Manifest, ModulesDir, PARTITIONS, Producer, Received, Send, Topics, Weir, broker, digest,
    end_offsets, eventually, guest, http_get, init_logging, install_atomically, module_status,
    partition_count, read_from, repo_root, sample, test_config, unique, variant, wait_running,
};

/// Time for a (re)started weir to be ready and restored: compile the
/// module, join the group (after a SIGKILL the group waits for the dead
/// member's 6 s session to expire), restore.
const READY: Duration = Duration::from_secs(90);
/// Time for everything produced to be handled and committed.
const DRAIN: Duration = Duration::from_secs(180);
/// Longest a topic read may stall.
const READ: Duration = Duration::from_secs(60);
/// The variable that replays a run's random choices.
const SEED: &str = "WEIR_STATE_SEED";
/// Where `count-by-key` writes.
const CLICK_COUNTS: &str = "click-counts";
/// Where `dedupe` writes.
const DEDUPED: &str = "events-deduped";
/// The `[delivery]` table of an exactly-once module.
const EXACTLY_ONCE: &str = "[delivery]\nguarantee = \"exactly-once\"\n";

/// Whether `test` can run: a real broker; says why not otherwise.
fn real_broker_only(test: &str) -> bool {
    if broker().is_real() {
        return true;
    }
    println!(
        "{test}: skipped on the embedded mock cluster (no transaction isolation, no topic \
         configurations); set WEIR_TEST_BROKERS"
    );
    false
}

/// The input partition of the events of key `i`: `i % 3`, chosen
/// explicitly, so that all events of a key go to one partition (one store)
/// whatever the producer's partitioner.
fn partition_of(key_index: usize) -> i32 {
    i32::try_from(key_index % PARTITIONS as usize).expect("partition")
}

/// Sum over partitions.
fn total(offsets: &[i64]) -> i64 {
    offsets.iter().sum()
}

/// `count-by-key` installed as module `cbk`, reading a 3-partition input
/// of its own with a changelog and group of its own, and writing
/// `click-counts` (shared) under keys `<prefix>-k<i>`. Keeps how many
/// events it produced per key.
struct Counter {
    input: String,
    changelog: String,
    group: String,
    prefix: String,
    keys: Vec<String>,
    modules: ModulesDir,
    /// `click-counts` ends when the counter was made: its records start
    /// there.
    out_start: Vec<i64>,
    produced: BTreeMap<String, u64>,
    sent: usize,
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
    /// One counter at a time writes the shared `click-counts`: an
    /// exactly-once test's SIGKILL leaves a transaction open there until
    /// the broker times it out, which holds back every read_committed
    /// reader of the topic (a concurrent counter read only a prefix of its
    /// counts, 90 or 186 of 200 per key, while its offsets were all
    /// committed).
    _shared: tokio::sync::OwnedMutexGuard<()>,
}

/// The lock behind [`Counter`]'s `_shared`.
fn click_counts_in_use() -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static IN_USE: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
        std::sync::OnceLock::new();
    IN_USE.get_or_init(Default::default).clone()
}

impl Drop for Counter {
    /// Shuts the runtime down without blocking, so that a counter may be
    /// dropped on an async worker (also while a test panics).
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Counter {
    /// A counter over `keys` keys; `extra` manifest lines (e.g.
    /// [`EXACTLY_ONCE`]).
    fn new(label: &str, keys: usize, extra: &str) -> Self {
        let shared = click_counts_in_use().blocking_lock_owned();
        let rt = weir_tests::runtime();
        let input = unique(&format!("{label}-clicks"));
        rt.block_on(async {
            broker().create_topic(&input).await;
            broker().create_topic(CLICK_COUNTS).await;
        });
        let out_partitions = partition_count(CLICK_COUNTS).expect("click-counts exists");
        let prefix = unique(label);
        let counter = Self {
            changelog: unique(&format!("{label}-changelog")),
            group: unique(&format!("g-{label}")),
            keys: (0..keys).map(|i| format!("{prefix}-k{i}")).collect(),
            prefix,
            modules: ModulesDir::new(),
            out_start: end_offsets(CLICK_COUNTS, out_partitions),
            produced: BTreeMap::new(),
            sent: 0,
            input,
            rt: Some(rt),
            _shared: shared,
        };
        counter.install(extra);
        counter
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the counter's runtime")
    }

    fn manifest(&self, extra: &str) -> Manifest {
        Manifest::new(&self.input, &[CLICK_COUNTS], &self.group)
            .set("offset-reset", "earliest")
            .in_table("state", "changelog-topic", self.changelog.as_str())
            .merge(extra)
    }

    /// (Re)writes the module: manifest with `extra`, then the component.
    fn install(&self, extra: &str) {
        self.modules
            .add("cbk", "count-by-key", self.manifest(extra));
    }

    /// Crash-test process settings with `state_dir`.
    fn config(&self, state_dir: &Path) -> ProcessConfig {
        ProcessConfig::new(self.modules.path()).with_state_dir(state_dir)
    }

    /// The next `n` events: round robin over the keys, key `i` to
    /// partition `i % 3`, value `<key>:<n-th event of the key>`.
    fn next_events(&mut self, n: usize) -> Vec<Send> {
        (0..n)
            .map(|_| {
                let i = self.sent % self.keys.len();
                self.sent += 1;
                let key = &self.keys[i];
                let seq = self.produced.entry(key.clone()).or_default();
                *seq += 1;
                Send::on(partition_of(i), key, &format!("{key}:{seq}"))
            })
            .collect()
    }

    /// Produces the next `n` events and waits for their acknowledgements.
    fn produce(&mut self, n: usize) {
        let events = self.next_events(n);
        let input = self.input.clone();
        self.rt()
            .block_on(async move { Producer::new().send(&input, &events).await });
    }

    /// Starts producing the next `n` events at `rate` per second.
    fn produce_paced(&mut self, n: usize, rate: usize) -> tokio::task::JoinHandle<()> {
        let events = self.next_events(n);
        let input = self.input.clone();
        self.rt()
            .spawn(async move { Producer::new().send_paced(&input, &events, rate).await })
    }

    fn finish(&self, producing: tokio::task::JoinHandle<()>) {
        self.rt().block_on(producing).expect("the producer task");
    }

    fn events(&self) -> u64 {
        self.produced.values().sum()
    }

    /// Waits until the group has committed the end of every input
    /// partition.
    fn wait_all_committed(&self) {
        wait_all_committed(&self.group, &self.input, PARTITIONS, DRAIN);
    }

    /// The counts written to `click-counts` under this counter's keys, in
    /// order, read with `isolation`.
    fn counts(&self, isolation: &str) -> BTreeMap<String, Vec<u64>> {
        counts_by_key(
            &read_from(CLICK_COUNTS, &self.out_start, isolation, READ),
            &self.prefix,
        )
    }

    /// Every key's counts are exactly `1..=n`, `n` the events produced for
    /// it: no count repeated, skipped or missing; the last one is `n`.
    fn assert_exact(&self, counts: &BTreeMap<String, Vec<u64>>) {
        let mut wrong = Vec::new();
        for (key, &n) in &self.produced {
            let got = counts.get(key).map(Vec::as_slice).unwrap_or_default();
            if !got.iter().copied().eq(1..=n) {
                wrong.push(format!("{key}: {n} events, counts {}", summary(got)));
            }
        }
        let unknown: Vec<&String> = counts
            .keys()
            .filter(|k| !self.produced.contains_key(*k))
            .collect();
        assert!(
            wrong.is_empty() && unknown.is_empty(),
            "{} of {} keys have wrong counts, e.g. {:?}; unknown keys {unknown:?}",
            wrong.len(),
            self.produced.len(),
            &wrong[..wrong.len().min(5)]
        );
    }

    /// The changelog's end offsets.
    fn changelog_ends(&self) -> Vec<i64> {
        end_offsets(&self.changelog, PARTITIONS)
    }
}

/// `1..=n` as `1..n` when it is that, else the first deviations.
fn summary(counts: &[u64]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let bad: Vec<String> = counts
        .iter()
        .zip(1..)
        .filter(|(c, i)| **c != *i)
        .take(4)
        .map(|(c, i)| format!("#{i}={c}"))
        .collect();
    format!(
        "{} counts, last {}, first deviations {bad:?}",
        counts.len(),
        counts.last().copied().unwrap_or_default()
    )
}

/// Waits until `weir` has logged at least `n` completed restores of
/// module `module`; returns them.
fn wait_restores(weir: &mut WeirProcess, module: &str, n: usize) -> Vec<Restore> {
    let deadline = Instant::now() + READY;
    loop {
        let found = restores(weir, module);
        if found.len() >= n {
            return found;
        }
        assert!(
            weir.running(),
            "{} exited before restoring {n} stores; log tail:\n{}",
            weir.name(),
            weir.log_tail(30)
        );
        assert!(
            Instant::now() < deadline,
            "{} restored {} of {n} stores of `{module}` in {READY:?}; log tail:\n{}",
            weir.name(),
            found.len(),
            weir.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One line per restore: `p<partition> from <checkpoint|start> read <n>`.
fn describe_restores(restores: &[Restore]) -> String {
    restores
        .iter()
        .map(|r| {
            let from = r.from.map_or("start".to_owned(), |o| o.to_string());
            format!("p{} from {from} read {}", r.partition, r.records)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The group's committed offsets and the input's ends right after a kill:
/// the events in between are the ones the kill can make weir handle again.
#[derive(Debug)]
struct Kill {
    committed: Vec<i64>,
    input_ends: Vec<i64>,
}

/// What [`crash_loop`] ran.
struct CrashRun {
    /// The processes, in order; the last one stopped with SIGTERM.
    processes: Vec<WeirProcess>,
    kills: Vec<Kill>,
    /// Kills of a process that was still starting.
    early: usize,
    seed: u64,
}

/// Hard-kills `weir` (running `cbk`) 3 times while `counter` produces,
/// restarting it on the same state folder each time: two kills in three
/// once the process has restored its stores and handled events for a
/// random moment, one in three within 2 s of its start.
fn crash_loop(
    counter: &mut Counter,
    label: &str,
    state_dir: &Path,
    events: usize,
    rate: usize,
) -> CrashRun {
    let (mut rng, seed) = Rng::from_env(SEED);
    let config = counter.config(state_dir);
    let producing = counter.produce_paced(events, rate);
    let mut done = Vec::new();
    let mut kills = Vec::new();
    let mut weir = WeirProcess::start(&format!("{label}-0"), &config);
    let mut early = 0;
    for k in 1..=3 {
        // One kill in three hits a process that is still starting: loading
        // the module, joining the group, or restoring its stores.
        if rng.between(0, 2) == 0 {
            early += 1;
            rng.pause(0, 2000);
        } else {
            weir.wait_ready(READY);
            wait_restores(&mut weir, "cbk", PARTITIONS as usize);
            rng.pause(300, 2500);
        }
        weir.kill();
        kills.push(Kill {
            committed: committed_offsets(&counter.group, &counter.input, PARTITIONS),
            input_ends: end_offsets(&counter.input, PARTITIONS),
        });
        done.push(weir);
        weir = WeirProcess::start(&format!("{label}-{k}"), &config);
    }
    weir.wait_ready(READY);
    counter.finish(producing);
    counter.wait_all_committed();
    weir.stop(config.shutdown_timeout);
    done.push(weir);
    CrashRun {
        processes: done,
        kills,
        early,
        seed,
    }
}

/// Exactly-once counts across hard kills: 6000 events over 30 keys and 3
/// partitions at 300/s while weir is SIGKILLed 3 times (see
/// [`crash_loop`]: some while it restores) and restarted on the same state
/// folder. The committed (`read_committed`)
/// counts of every key are exactly 1, 2, ..., n: the local store and the
/// changelog only ever hold committed writes, and a restarted process
/// resumes from them.
#[test]
fn count_by_key_is_exact_across_sigkills_in_exactly_once_mode() {
    init_logging();
    if !real_broker_only("state count-by-key eos sigkill") {
        return;
    }
    let t0 = Instant::now();
    let mut counter = Counter::new("cbk-eos", 30, EXACTLY_ONCE);
    let dir = tempfile::tempdir().expect("state dir");
    let CrashRun {
        processes,
        seed,
        early,
        ..
    } = crash_loop(&mut counter, "cbk-eos", dir.path(), 6000, 300);
    let counts = counter.counts("read_committed");
    let outputs: usize = counts.values().map(Vec::len).sum();
    let restored: Vec<String> = processes
        .iter()
        .map(|w| format!("{}: [{}]", w.name(), describe_restores(&restores(w, "cbk"))))
        .collect();
    println!(
        "state cbk-eos: seed={seed} events={} keys={} kills=3 ({early} while starting) \
         committed outputs={outputs} \
         changelog records={} duration={:.1?}; restores {}",
        counter.events(),
        counter.keys.len(),
        total(&counter.changelog_ends()),
        t0.elapsed(),
        restored.join("; ")
    );
    counter.assert_exact(&counts);
}

/// At-least-once counts across hard kills: the same crash loop without
/// transactions. No count is lost: every key's last count is at least the
/// events produced for it. Over-counts come only from events handled
/// again after a kill: a key's over-count is at most the number of its
/// events between the group's committed offset at a kill and the input's
/// end then, summed over the kills.
#[test]
fn count_by_key_never_undercounts_across_sigkills_in_at_least_once_mode() {
    init_logging();
    if !real_broker_only("state count-by-key at-least-once sigkill") {
        return;
    }
    let t0 = Instant::now();
    let mut counter = Counter::new("cbk-alo", 30, "");
    let dir = tempfile::tempdir().expect("state dir");
    let CrashRun {
        kills, seed, early, ..
    } = crash_loop(&mut counter, "cbk-alo", dir.path(), 6000, 300);
    let counts = counter.counts("read_uncommitted");
    let input = read_from(&counter.input, &[0; 3], "read_uncommitted", READ);
    // Per key, the events inside the kills' windows.
    let mut window: BTreeMap<String, u64> = BTreeMap::new();
    for r in &input {
        let p = usize::try_from(r.partition).expect("partition");
        let inside = kills
            .iter()
            .filter(|k| r.offset >= k.committed[p] && r.offset < k.input_ends[p])
            .count() as u64;
        *window.entry(r.key_text()).or_default() += inside;
    }
    let (mut short, mut over, mut beyond) = (Vec::new(), 0, Vec::new());
    for (key, &n) in &counter.produced {
        let last = counts.get(key).and_then(|c| c.last()).copied().unwrap_or(0);
        if last < n {
            short.push(format!("{key}: {n} events, last count {last}"));
            continue;
        }
        over += last - n;
        let bound = window.get(key).copied().unwrap_or(0);
        if last - n > bound {
            beyond.push(format!(
                "{key}: over-counted by {} > window {bound}",
                last - n
            ));
        }
    }
    println!(
        "state cbk-alo: seed={seed} events={} keys={} kills=3 ({early} while starting) \
         duration={:.1?}: over-count {over} \
         in all (kill windows hold {} events: committed..end at each kill {:?})",
        counter.events(),
        counter.keys.len(),
        t0.elapsed(),
        window.values().sum::<u64>(),
        kills
            .iter()
            .map(|k| (&k.committed, &k.input_ends))
            .collect::<Vec<_>>()
    );
    assert!(short.is_empty(), "counts lost: {short:?}");
    assert!(
        beyond.is_empty(),
        "over-counts outside the kills' windows: {beyond:?}"
    );
}

/// Partitions move between two processes in exactly-once mode: A runs
/// alone, B (a state folder of its own, so it restores from the changelog's
/// start) joins and takes some partitions, then B stops with SIGTERM and A
/// gets them back, restoring them from its own, now stale, checkpoint plus
/// what B wrote. Counts are exact as with a single process.
#[test]
fn count_by_key_is_exact_while_partitions_move_between_two_processes() {
    init_logging();
    if !real_broker_only("state count-by-key scale out and back") {
        return;
    }
    let t0 = Instant::now();
    let (mut rng, seed) = Rng::from_env(SEED);
    let mut counter = Counter::new("cbk-move", 30, EXACTLY_ONCE);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (config_a, config_b) = (counter.config(dir_a.path()), counter.config(dir_b.path()));
    let producing = counter.produce_paced(6000, 300);
    let mut a = WeirProcess::start("cbk-move-a", &config_a);
    a.wait_ready(READY);
    let first = wait_restores(&mut a, "cbk", PARTITIONS as usize).len();
    rng.pause(500, 2000);
    let mut b = WeirProcess::start("cbk-move-b", &config_b);
    b.wait_ready(READY);
    wait_restores(&mut b, "cbk", 1);
    rng.pause(1000, 3000);
    let b_held = b.owned_partitions(&counter.input);
    b.stop(config_b.shutdown_timeout);
    // A restores what B held (and, with eager rebalancing, its own again).
    let back = first + b_held.len();
    let a_restores = wait_restores(&mut a, "cbk", back);
    counter.finish(producing);
    counter.wait_all_committed();
    a.stop(config_a.shutdown_timeout);
    let counts = counter.counts("read_committed");
    let b_restores = restores(&b, "cbk");
    println!(
        "state cbk-move: seed={seed} events={} keys={} B held partitions {b_held:?}; \
         A restores [{}]; B restores [{}]; duration={:.1?}",
        counter.events(),
        counter.keys.len(),
        describe_restores(&restores(&a, "cbk")),
        describe_restores(&b_restores),
        t0.elapsed()
    );
    assert!(!b_held.is_empty(), "B never got a partition");
    assert!(
        b_restores.iter().all(|r| r.from.is_none()),
        "B had no local copy: {b_restores:?}"
    );
    for p in &b_held {
        let again = a_restores[first..]
            .iter()
            .find(|r| r.partition == *p)
            .unwrap_or_else(|| panic!("A did not restore partition {p} again: {a_restores:?}"));
        assert!(
            again.from.is_some(),
            "A restored partition {p} from the start although it had a checkpoint: {again:?}"
        );
    }
    counter.assert_exact(&counts);
}

/// Restores read only the changelog after the local checkpoint. A handles
/// 600 events and stops (SIGTERM: checkpoints at the changelog's end); B,
/// with an empty state folder, restores everything and handles 300 more;
/// A restarts and reads exactly what B wrote after its checkpoint; with
/// its folder deleted A reads the whole changelog again. At-least-once, no
/// transactions: a changelog partition's end offset is its record count.
#[test]
fn a_restart_restores_only_the_changelog_after_the_checkpoint() {
    init_logging();
    if !real_broker_only("state restore tail") {
        return;
    }
    let t0 = Instant::now();
    let mut counter = Counter::new("cbk-tail", 12, "");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (config_a, config_b) = (counter.config(dir_a.path()), counter.config(dir_b.path()));
    let changelog = counter.changelog.clone();
    let checkpoints = |dir: &Path| -> Vec<Option<i64>> {
        (0..PARTITIONS)
            .map(|p| local_checkpoint(dir, "cbk", &changelog, p))
            .collect()
    };

    // 1. A alone, from nothing.
    counter.produce(600);
    let mut a = WeirProcess::start("cbk-tail-a1", &config_a);
    a.wait_ready(READY);
    counter.wait_all_committed();
    a.stop(config_a.shutdown_timeout);
    let e1 = counter.changelog_ends();
    assert_eq!(total(&e1), 600, "one changelog record per event");
    let a1 = checkpoints(dir_a.path());
    assert_eq!(
        a1,
        e1.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "a clean stop checkpoints at the changelog's end"
    );

    // 2. B, with no local copy, restores everything A wrote.
    let mut b = WeirProcess::start("cbk-tail-b", &config_b);
    b.wait_ready(READY);
    let b_restores = wait_restores(&mut b, "cbk", PARTITIONS as usize);
    counter.produce(300);
    counter.wait_all_committed();
    b.stop(config_b.shutdown_timeout);
    let e2 = counter.changelog_ends();

    // 3. A again: from its checkpoint, only what B wrote.
    let mut a = WeirProcess::start("cbk-tail-a2", &config_a);
    a.wait_ready(READY);
    let a2 = wait_restores(&mut a, "cbk", PARTITIONS as usize);
    let status = a.status().expect("/status answers");
    counter.produce(300);
    counter.wait_all_committed();
    a.stop(config_a.shutdown_timeout);
    let e3 = counter.changelog_ends();

    // 4. A with its state folder deleted: the whole changelog.
    std::fs::remove_dir_all(dir_a.path().join("cbk")).expect("delete A's stores");
    let mut a = WeirProcess::start("cbk-tail-a3", &config_a);
    a.wait_ready(READY);
    let a3 = wait_restores(&mut a, "cbk", PARTITIONS as usize);
    let status_full = a.status().expect("/status answers");
    counter.produce(300);
    counter.wait_all_committed();
    a.stop(config_a.shutdown_timeout);
    let counts = counter.counts("read_uncommitted");

    println!(
        "state restore tail: changelog ends after A {e1:?}, after B {e2:?}, after A again \
         {e3:?}; B (no local copy) [{}]; A from its checkpoint [{}] (read {} of {} records); \
         A without its folder [{}] (read {} of {}); duration={:.1?}",
        describe_restores(&b_restores),
        describe_restores(&a2),
        a2.iter().map(|r| r.records).sum::<u64>(),
        total(&e2),
        describe_restores(&a3),
        a3.iter().map(|r| r.records).sum::<u64>(),
        total(&e3),
        t0.elapsed()
    );
    let by_partition = |rs: &[Restore]| -> BTreeMap<i32, Restore> {
        rs.iter().map(|r| (r.partition, r.clone())).collect()
    };
    for (p, r) in by_partition(&b_restores) {
        let i = usize::try_from(p).unwrap();
        assert_eq!(
            (r.from, r.records, r.next),
            (None, e1[i] as u64, e1[i]),
            "B restores partition {p} from the start: {r:?}"
        );
    }
    let a2 = by_partition(&a2);
    assert_eq!(a2.len(), PARTITIONS as usize);
    for (p, r) in &a2 {
        let i = usize::try_from(*p).unwrap();
        assert_eq!(
            (r.from, r.records, r.next),
            (Some(e1[i]), (e2[i] - e1[i]) as u64, e2[i]),
            "A restores partition {p} from its checkpoint, reading only B's writes: {r:?}"
        );
        assert!(r.records < e2[i] as u64, "{r:?}");
        let shown = &state_stores(&status, "cbk")[p];
        assert_eq!(shown["restored-from"], e1[i], "/status {shown}");
        assert_eq!(shown["restored-records"], e2[i] - e1[i], "/status {shown}");
        assert_eq!(shown["restoring"], false, "/status {shown}");
    }
    let a3 = by_partition(&a3);
    assert_eq!(a3.len(), PARTITIONS as usize);
    for (p, r) in &a3 {
        let i = usize::try_from(*p).unwrap();
        assert_eq!(
            (r.from, r.records, r.next),
            (None, e3[i] as u64, e3[i]),
            "without a local copy A reads partition {p}'s whole changelog: {r:?}"
        );
        let shown = &state_stores(&status_full, "cbk")[p];
        assert_eq!(shown["restored-from"], serde_json::Value::Null, "{shown}");
        assert_eq!(shown["restored-records"], e3[i], "/status {shown}");
        assert_eq!(shown["keys"], r.keys, "/status {shown}");
    }
    counter.assert_exact(&counts);
}

/// A new version of a stateful module keeps its state: while events flow,
/// `count-by-key` is replaced in the watched folder by a copy with other
/// bytes (a custom section appended: another digest, the same code), which
/// weir swaps in place; then a manifest change (at-least-once to
/// exactly-once) restarts the module's consumer, whose stores are closed
/// and reopened from their checkpoints. Every key's counts go on 1, 2, ...
/// without a reset or a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_stateful_module_keeps_its_state() {
    init_logging();
    if !real_broker_only("state reload") {
        return;
    }
    let t0 = Instant::now();
    let scratch = ModulesDir::new();
    let v2 = scratch.file("count-by-key-v2.wasm");
    variant(&guest("count-by-key"), &v2, "v2");
    let mut counter = tokio::task::spawn_blocking(|| Counter::new("cbk-reload", 12, ""))
        .await
        .unwrap();
    let wasm = counter.modules.file("cbk.wasm");
    let dir = tempfile::tempdir().unwrap();
    let (weir, status) = Weir::start_config(RunConfig {
        watch: true,
        reload_debounce: Duration::from_millis(200),
        state_dir: dir.path().to_path_buf(),
        ..test_config(counter.modules.path(), &[])
    });
    wait_running(&status, "cbk", &digest(&guest("count-by-key"))).await;

    // A steady 100 events/s; v2 replaces v1 a third of the way in.
    let producer = Producer::new();
    let events = counter.next_events(900);
    let group = counter.group.clone();
    let input = counter.input.clone();
    let v2_digest = digest(&v2);
    let (mut swapped_at, mut swap_latency, mut after_swap) = (None, None, 0);
    for (i, chunk) in events.chunks(5).enumerate() {
        if i == 60 {
            install_atomically(&v2, &wasm);
            swapped_at = Some(Instant::now());
        }
        if swap_latency.is_none()
            && let Some(at) = swapped_at
            && module_status(&status, "cbk").and_then(|m| m.digest) == Some(v2_digest.clone())
        {
            swap_latency = Some(at.elapsed());
        }
        if swap_latency.is_some() {
            after_swap += chunk.len();
        }
        producer.send(&input, chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_running(&status, "cbk", &v2_digest).await;
    assert!(
        after_swap > 0,
        "v2 did not run before the events ran out: raise the event count"
    );
    let loads_after_swap = module_status(&status, "cbk").unwrap().loads;

    // A manifest change that restarts the consumer.
    counter
        .modules
        .manifest("cbk", counter.manifest(EXACTLY_ONCE));
    eventually(Duration::from_secs(30), "cbk reloaded a third time", || {
        module_status(&status, "cbk")
            .filter(|m| m.loads == loads_after_swap + 1 && m.state == ModuleState::Running)
    })
    .await;
    let more = counter.next_events(300);
    producer.send(&input, &more).await;
    tokio::task::spawn_blocking(move || {
        wait_all_committed(&group, &input, PARTITIONS, DRAIN);
    })
    .await
    .unwrap();
    let stores = eventually(Duration::from_secs(30), "3 stores reopened", || {
        let m = module_status(&status, "cbk")?;
        (m.state_stores.len() == PARTITIONS as usize).then_some(m.state_stores)
    })
    .await;
    let module = module_status(&status, "cbk").unwrap();
    weir.stop().await.expect("clean shutdown");
    let loads = (module.loads, module.failures);
    let stores: Vec<String> = stores
        .iter()
        .map(|(p, s)| {
            format!(
                "p{p} from {:?} read {}",
                s.restored_from, s.restored_records
            )
        })
        .collect();
    for (p, s) in &module.state_stores {
        assert!(
            s.restored_from.is_some(),
            "partition {p} was restored from the start after the consumer restart: {s:?}"
        );
    }
    tokio::task::spawn_blocking(move || {
        let counts = counter.counts("read_committed");
        println!(
            "state reload: events={} keys={} loads={} failures={} (v2 running {swap_latency:.1?} \
             after the rename, {after_swap} events sent to it); stores after the consumer \
             restart: {stores:?}; duration={:.1?}",
            counter.events(),
            counter.keys.len(),
            loads.0,
            loads.1,
            t0.elapsed()
        );
        assert_eq!(loads, (3, 0), "v1, v2, the new manifest; no failure");
        counter.assert_exact(&counts);
    })
    .await
    .unwrap();
}

/// A join of two co-partitioned inputs (`enrich-join`: `customers` writes
/// the store, `orders` only reads it) keeps joining across a clean restart,
/// and the restart reads only the changelog's tail, as for a single input:
/// a SIGTERM checkpoints each store at the changelog's end, so the restart
/// reads nothing.
#[test]
fn a_join_of_two_inputs_checkpoints_at_the_changelog_end_and_keeps_joining() {
    init_logging();
    if !real_broker_only("state join restart") {
        return;
    }
    let t0 = Instant::now();
    let rt = weir_tests::runtime();
    let (customers, orders) = (unique("join-customers"), unique("join-orders"));
    let output = "orders-with-customer";
    rt.block_on(async {
        broker().create_topic(&customers).await;
        broker().create_topic(&orders).await;
        broker().create_topic(output).await;
    });
    let out_start = end_offsets(output, partition_count(output).unwrap());
    let (changelog, group, prefix) = (unique("join-changelog"), unique("g-join"), unique("cust"));
    let modules = ModulesDir::new();
    modules.add(
        "join",
        "enrich-join",
        Manifest::default()
            .set("input-topics", vec![customers.as_str(), orders.as_str()])
            .set("output-topics", vec![output])
            .set("group-id", group.as_str())
            .in_table("state", "changelog-topic", changelog.as_str())
            .config("customers-topic", customers.as_str())
            .config("orders-topic", orders.as_str()),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = ProcessConfig::new(modules.path()).with_state_dir(dir.path());
    let n = 30;
    let keyed = |topic: &str, value: &dyn Fn(usize) -> String| {
        let records: Vec<Send> = (0..n)
            .map(|i| Send::on(partition_of(i), &format!("{prefix}-{i}"), &value(i)))
            .collect();
        let topic = topic.to_owned();
        rt.block_on(async move { Producer::new().send(&topic, &records).await });
    };
    let all_committed = || {
        for topic in [&customers, &orders] {
            wait_all_committed(&group, topic, PARTITIONS, DRAIN);
        }
    };
    keyed(&customers, &|i| format!(r#"{{"name":"n{i}"}}"#));
    let mut weir = WeirProcess::start("join-1", &config);
    weir.wait_ready(READY);
    all_committed();
    keyed(&orders, &|i| format!(r#"{{"order":{i},"round":1}}"#));
    all_committed();
    weir.stop(config.shutdown_timeout);
    let ends = end_offsets(&changelog, PARTITIONS);
    let checkpoints: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| local_checkpoint(dir.path(), "join", &changelog, p))
        .collect();
    let mut weir = WeirProcess::start("join-2", &config);
    weir.wait_ready(READY);
    keyed(&orders, &|i| format!(r#"{{"order":{i},"round":2}}"#));
    all_committed();
    weir.stop(config.shutdown_timeout);
    let second = restores(&weir, "join");
    let joined = read_from(output, &out_start, "read_uncommitted", READ);
    let mine: Vec<serde_json::Value> = joined
        .iter()
        .filter(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| k.starts_with(prefix.as_bytes()))
        })
        .map(Received::json)
        .collect();
    let with_customer = mine.iter().filter(|v| v["customer"].is_object()).count();
    println!(
        "state join: {n} customers, {} orders, {with_customer} joined with their customer; \
         changelog ends at the stop {ends:?}, local checkpoints {checkpoints:?}; restores after \
         the restart [{}]; duration={:.1?}",
        mine.len(),
        describe_restores(&second),
        t0.elapsed()
    );
    assert_eq!(mine.len(), 2 * n, "every order joined once");
    assert_eq!(with_customer, 2 * n, "every order found its customer");
    assert_eq!(
        checkpoints,
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "a clean stop checkpoints every store at the changelog's end (the orders input writes \
         nothing to the store)"
    );
    assert!(
        second.iter().all(|r| r.records == 0),
        "the restart read changelog records it had: [{}]",
        describe_restores(&second)
    );
}

/// `dedupe` forwards each id once; ids seen before a restart are still
/// dropped after it (its store restored from the local checkpoint).
#[test]
fn dedupe_drops_ids_seen_before_a_restart() {
    init_logging();
    if !real_broker_only("state dedupe restart") {
        return;
    }
    let t0 = Instant::now();
    let rt = weir_tests::runtime();
    let input = unique("dedupe-events");
    rt.block_on(async {
        broker().create_topic(&input).await;
        broker().create_topic(DEDUPED).await;
    });
    let out_start = end_offsets(DEDUPED, partition_count(DEDUPED).unwrap());
    let prefix = unique("id");
    let group = unique("g-dedupe");
    let modules = ModulesDir::new();
    modules.add(
        "dedupe",
        "dedupe",
        Manifest::new(&input, &[DEDUPED], &group)
            .in_table(
                "state",
                "changelog-topic",
                unique("dedupe-changelog").as_str(),
            )
            .config("ttl", "10m"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = ProcessConfig::new(modules.path()).with_state_dir(dir.path());
    let ids = |range: std::ops::Range<usize>| -> Vec<Send> {
        range
            .map(|i| Send::on(partition_of(i), &format!("{prefix}-{i}"), &format!("v{i}")))
            .collect()
    };
    let produce = |records: Vec<Send>| {
        let input = input.clone();
        rt.block_on(async move { Producer::new().send(&input, &records).await });
    };
    let mut weir = WeirProcess::start("dedupe-1", &config);
    weir.wait_ready(READY);
    produce([ids(0..60), ids(0..60)].concat());
    wait_all_committed(&group, &input, PARTITIONS, DRAIN);
    weir.stop(config.shutdown_timeout);
    let mut weir = WeirProcess::start("dedupe-2", &config);
    weir.wait_ready(READY);
    // Seen before the restart, then new ones, then all of them again.
    produce([ids(0..60), ids(60..90), ids(0..90)].concat());
    wait_all_committed(&group, &input, PARTITIONS, DRAIN);
    weir.stop(config.shutdown_timeout);
    let out = read_from(DEDUPED, &out_start, "read_uncommitted", READ);
    let mut forwarded: BTreeMap<String, usize> = BTreeMap::new();
    for r in out.iter().filter(|r| {
        r.key
            .as_deref()
            .is_some_and(|k| k.starts_with(prefix.as_bytes()))
    }) {
        *forwarded.entry(r.key_text()).or_default() += 1;
    }
    let twice: Vec<&String> = forwarded
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    println!(
        "state dedupe: 300 events of 90 ids across a restart, {} forwarded, {} ids forwarded \
         more than once; restores after the restart [{}]; duration={:.1?}",
        forwarded.values().sum::<usize>(),
        twice.len(),
        describe_restores(&restores(&weir, "dedupe")),
        t0.elapsed()
    );
    assert!(twice.is_empty(), "ids forwarded again: {twice:?}");
    assert_eq!(
        forwarded.keys().cloned().collect::<BTreeSet<_>>(),
        (0..90).map(|i| format!("{prefix}-{i}")).collect(),
        "every id forwarded once"
    );
}

/// A `state-probe` module `probe` on a 3-partition input of its own, with a
/// changelog and group of its own.
struct ProbeModule {
    modules: ModulesDir,
    input: String,
    changelog: String,
    group: String,
}

impl ProbeModule {
    /// Installs the module with `extra` manifest lines; events that fail
    /// are skipped (a command the probe does not know would otherwise wait
    /// for a dead-letter topic).
    fn install(label: &str, extra: &str) -> Self {
        let input = unique(&format!("{label}-in"));
        weir_tests::runtime().block_on(broker().create_topic(&input));
        let changelog = unique(&format!("{label}-changelog"));
        let group = unique(&format!("g-{label}"));
        let modules = ModulesDir::new();
        modules.install(
            "probe",
            &weir_tests::test_guest("state-probe"),
            Manifest::new(&input, &[weir_tests::state::PROBE_OUT], &group)
                .in_table("state", "changelog-topic", changelog.as_str())
                .in_table("on-failure", "action", "skip")
                .merge(extra),
        );
        Self {
            modules,
            input,
            changelog,
            group,
        }
    }

    /// Crash-test process settings with `state_dir`.
    fn config(&self, state_dir: &Path) -> ProcessConfig {
        ProcessConfig::new(self.modules.path()).with_state_dir(state_dir)
    }

    /// The changelog records of partition `partition` under `key`.
    fn changelog_records(&self, partition: i32, key: &str) -> Vec<Received> {
        read_from(&self.changelog, &[0; 3], "read_uncommitted", READ)
            .into_iter()
            .filter(|r| r.partition == partition && r.key.as_deref() == Some(key.as_bytes()))
            .collect()
    }
}

/// [`Probe::ask`], panicking with `weir`'s log when no reply comes.
fn ask(probe: &mut Probe, weir: &WeirProcess, partition: i32, command: &str) -> String {
    probe.ask(partition, command).unwrap_or_else(|| {
        let shown: String = command.chars().take(60).collect();
        panic!(
            "no reply to `{shown}` within 60 s; log tail:\n{}",
            weir.log_tail(20)
        )
    })
}

/// An entry set with a TTL reads as absent once it expired, and the next
/// call on its partition deletes it: a tombstone in the changelog after
/// the put, which carries its expiry in header `weir-expires-ms`.
#[test]
fn expired_entries_are_deleted_with_a_changelog_tombstone() {
    init_logging();
    if !real_broker_only("state ttl tombstone") {
        return;
    }
    let m = ProbeModule::install("ttl", "");
    let dir = tempfile::tempdir().unwrap();
    let config = m.config(dir.path());
    let mut weir = WeirProcess::start("ttl", &config);
    weir.wait_ready(READY);
    let mut probe = Probe::new(&m.input);
    let key = unique("ttl-key");
    let ttl_ms = 2_000u64;
    let set_at_ms = weir::state::now_ms();
    assert_eq!(
        ask(&mut probe, &weir, 1, &format!("ttl {key} v {ttl_ms}")),
        "ok"
    );
    let before = ask(&mut probe, &weir, 1, &format!("get {key}"));
    let expired_by = Instant::now() + Duration::from_millis(ttl_ms + 200);
    // The entry cannot expire before its time: wait for it.
    std::thread::sleep(expired_by.saturating_duration_since(Instant::now()));
    let after = ask(&mut probe, &weir, 1, &format!("get {key}"));
    let records = m.changelog_records(1, &key);
    let expires: Option<u64> = records
        .first()
        .and_then(|r| r.header("weir-expires-ms"))
        .and_then(|h| h.parse().ok());
    println!(
        "state ttl: get before expiry {before:?}, after {after:?}; changelog records of the key: \
         {:?} (expiry header {expires:?}, set at {set_at_ms} + ttl {ttl_ms} ms)",
        records
            .iter()
            .map(|r| (r.partition, r.offset, r.value.as_ref().map(|v| v.len())))
            .collect::<Vec<_>>()
    );
    weir.stop(config.shutdown_timeout);
    assert_eq!(before, "v");
    assert_eq!(after, "none");
    assert_eq!(
        records.len(),
        2,
        "the put, then a tombstone, in the input partition's changelog partition: {records:?}"
    );
    assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]));
    let expires = expires.expect("the put carries weir-expires-ms");
    assert!(
        expires >= set_at_ms + ttl_ms && expires <= weir::state::now_ms(),
        "expiry {expires} vs set at {set_at_ms} + {ttl_ms}"
    );
    assert_eq!(records[1].value, None, "a tombstone");
}

/// The state limits are errors the guest sees, not failures of the event
/// or the module: with `state-mib = 1`, `max-emits = 5` and the default key
/// and value limits, a write past each of them is refused with its own
/// message, the writes before it are kept, and the module goes on
/// handling events.
#[test]
fn state_limits_are_errors_to_the_guest_and_weir_keeps_running() {
    init_logging();
    if !real_broker_only("state limits") {
        return;
    }
    let m = ProbeModule::install("limits", "[limits]\nstate-mib = 1\nmax-emits = 5\n");
    let dir = tempfile::tempdir().unwrap();
    let config = m.config(dir.path());
    let mut weir = WeirProcess::start("limits", &config);
    weir.wait_ready(READY);
    let mut probe = Probe::new(&m.input);
    let quota = ask(&mut probe, &weir, 0, "fill q 3 400000");
    let long_key = "k".repeat(5000);
    let key_too_large = ask(&mut probe, &weir, 0, &format!("set {long_key} v"));
    let value_too_large = ask(&mut probe, &weir, 0, "fill big 1 600000");
    let kept = ask(&mut probe, &weir, 0, "get q000001").len();
    let dropped = ask(&mut probe, &weir, 0, "get q000002");
    let later = ask(&mut probe, &weir, 0, "set after 1");
    let too_many = ask(&mut probe, &weir, 2, "fill t 6 1");
    let scan = ask(&mut probe, &weir, 2, "scan t");
    let status = weir.status().expect("/status answers");
    println!(
        "state limits: fill 3 x 400000 B -> {quota:?}; 5000-byte key -> {key_too_large:?}; \
         600000-byte value -> {value_too_large:?}; kept q000001 ({kept} B), q000002 -> \
         {dropped:?}; later set -> {later:?}; 6 keys with max-emits 5 -> {too_many:?}, kept \
         {scan:?}"
    );
    weir.stop(config.shutdown_timeout);
    assert_eq!(
        quota,
        "error: state store is full: `limits.state-mib` (1 MiB) would be exceeded"
    );
    assert_eq!(
        key_too_large,
        "error: state key is longer than `limits.max-state-key-bytes` (4096 bytes)"
    );
    assert_eq!(
        value_too_large,
        "error: state value is longer than `limits.max-state-value-bytes` (524288 bytes)"
    );
    assert_eq!(kept, 400_000, "the writes before the refusal are kept");
    assert_eq!(dropped, "none");
    assert_eq!(later, "ok", "later events are still handled");
    assert_eq!(
        too_many,
        "error: more than 5 state keys written in one call (`limits.max-emits`)"
    );
    assert_eq!(scan, "t000000,t000001,t000002,t000003,t000004");
    assert_eq!(module_entry(&status, "probe").unwrap()["state"], "running");
}

/// The state writes of an event that fails are discarded with it
/// (README: "A write follows its event like an emitted record"), also
/// when it fails because the broker refuses its output for good: here the
/// reply is keyed with a 20 kB key and weir's producer has
/// `message.max.bytes = 10000`, so the reply is refused at once
/// (`MessageSizeTooLarge`, a permanent refusal) and the event fails
/// (`on-failure = skip`), while its 1-byte state write is small enough to
/// be produced.
#[test]
fn the_state_writes_of_an_event_whose_output_is_refused_are_discarded() {
    init_logging();
    if !real_broker_only("state refused output") {
        return;
    }
    let m = ProbeModule::install("refused", "");
    let dir = tempfile::tempdir().unwrap();
    let mut config = m.config(dir.path());
    config
        .kafka
        .push(("message.max.bytes".into(), "10000".into()));
    let mut weir = WeirProcess::start("refused", &config);
    weir.wait_ready(READY);
    let mut probe = Probe::new(&m.input);
    let written = unique("written");
    assert_eq!(ask(&mut probe, &weir, 0, "set warm 1"), "ok");
    let big_key = format!("{}-{}", unique("big"), "x".repeat(20_000));
    probe.send_keyed(0, &big_key, &format!("set {written} 1"));
    let end = end_offsets(&m.input, PARTITIONS)[0];
    weir_tests::runtime().block_on(weir_tests::wait_committed(
        &m.group,
        &m.input,
        DRAIN,
        "past the refused event",
        |c| c[0] >= Some(end),
    ));
    let failed: Vec<serde_json::Value> = weir
        .logged("event failed")
        .into_iter()
        .filter(|f| f["kind"] == "refused")
        .collect();
    let read_back = ask(&mut probe, &weir, 0, &format!("get {written}"));
    let in_changelog = m.changelog_records(0, &written);
    println!(
        "state refused output: {} event(s) failed as `refused` ({:?}); afterwards `get` of its \
         write -> {read_back:?}; changelog records of it: {}",
        failed.len(),
        failed.first().map(|f| f["reason"].clone()),
        in_changelog.len()
    );
    weir.stop(config.shutdown_timeout);
    assert_eq!(
        failed.len(),
        1,
        "the event failed because its reply was refused"
    );
    assert_eq!(
        read_back,
        "none",
        "the write of the failed event was kept (in the store, and {} changelog record(s))",
        in_changelog.len()
    );
}

/// At-least-once: an event handled again after a crash must not be taken
/// for its own duplicate. The probe's `once` is a dedupe in miniature
/// (`first` and remember the id, or `seen`); its reply goes to a topic that
/// does not exist yet, so it cannot be acknowledged. Its state write must
/// then stay out of the changelog (weir produces a run's state writes only
/// once its outputs are acknowledged): a later event's reply shows the
/// event was handled, and the changelog has nothing of it. weir is
/// SIGKILLed, the topic created, weir restarted: the event is handled again
/// (its offset was never committed) and, not finding its own write,
/// forwards the id: the topic gets a `first` for it.
#[test]
fn an_event_handled_again_after_a_crash_is_not_its_own_duplicate() {
    init_logging();
    if !real_broker_only("state replay after a crash") {
        return;
    }
    let late = unique("late");
    let m = ProbeModule::install(
        "replay",
        &format!(
            "output-topics = [{:?}, {late:?}]\n",
            weir_tests::state::PROBE_OUT
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = m.config(dir.path());
    let mut weir = WeirProcess::start("replay-1", &config);
    weir.wait_ready(READY);
    let mut probe = Probe::new(&m.input);
    assert_eq!(ask(&mut probe, &weir, 0, "set warm 1"), "ok");
    let id = unique("id");
    let key = probe.send(0, &format!("via {late} once {id}"));
    // Handled (the next event of the partition replied, and calls are in
    // order), its reply waiting for the topic: its write is not out.
    assert_eq!(ask(&mut probe, &weir, 0, "get warm"), "1");
    let written = m.changelog_records(0, &id);
    assert!(
        written.is_empty(),
        "a state write reached the changelog before its event's outputs: {} record(s)",
        written.len()
    );
    let committed = weir_tests::committed(&m.group, &m.input)[0];
    weir.kill();
    weir_tests::runtime().block_on(broker().create_topic(&late));
    let mut weir = WeirProcess::start("replay-2", &config);
    weir.wait_ready(READY);
    let end = end_offsets(&m.input, PARTITIONS)[0];
    weir_tests::runtime().block_on(weir_tests::wait_committed(
        &m.group,
        &m.input,
        DRAIN,
        "the replayed event",
        |c| c[0] >= Some(end),
    ));
    weir.stop(config.shutdown_timeout);
    let replies: Vec<String> = read_from(&late, &[0; 3], "read_uncommitted", READ)
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
        .map(Received::text)
        .collect();
    println!(
        "state replay after a crash: no state write in the changelog while the reply waited; \
         committed offset at the kill {committed:?} of {end}; replies after the restart: \
         {replies:?}"
    );
    assert!(
        !replies.is_empty(),
        "the replayed event replied nothing; log tail:\n{}",
        weir.log_tail(20)
    );
    assert!(
        replies.iter().any(|r| r == "first"),
        "the only occurrence of `{id}` was never forwarded: handled again after the crash, it \
         found its own earlier write and replied {replies:?}"
    );
}

/// Before subscribing, weir checks a stateful module's topics: inputs with
/// different partition counts, a changelog with the wrong partition count
/// and one that is not compacted are refused (the module is `failed` in
/// `/status`, saying why, and nothing consumes); a missing changelog is
/// created compacted with the inputs' partition count (4 here), as
/// Kafka's own `kafka-topics --describe` shows.
#[test]
fn stateful_topics_are_checked_before_subscribing() {
    init_logging();
    if !real_broker_only("state topic checks") {
        return;
    }
    let rt = weir_tests::runtime();
    let name = |s: &str| unique(&format!("chk-{s}"));
    let (two, three, four) = (name("two"), name("three"), name("four"));
    let (fresh_log, short_log, plain_log, mixed_log) = (
        name("fresh-log"),
        name("short-log"),
        name("plain-log"),
        name("mixed-log"),
    );
    rt.block_on(async {
        let b = broker();
        b.create_topic_with(&two, 2).await;
        b.create_topic_with(&three, 3).await;
        b.create_topic_with(&four, 4).await;
        b.create_topic(CLICK_COUNTS).await;
        b.create_topic_with(&short_log, 2).await; // 2 partitions, input has 3
        b.create_topic_with(&plain_log, 3).await; // cleanup.policy=delete
    });
    let modules = ModulesDir::new();
    let stateful = |inputs: &[&str], changelog: &str| {
        Manifest::default()
            .set("input-topics", inputs.to_vec())
            .set("output-topics", vec![CLICK_COUNTS])
            .set("group-id", unique("g-chk"))
            .in_table("state", "changelog-topic", changelog)
    };
    modules.add(
        "mixed",
        "count-by-key",
        stateful(&[&two, &three], &mixed_log),
    );
    modules.add("fresh", "count-by-key", stateful(&[&four], &fresh_log));
    modules.add("short", "count-by-key", stateful(&[&three], &short_log));
    modules.add("plain", "count-by-key", stateful(&[&three], &plain_log));
    let dir = tempfile::tempdir().unwrap();
    let config = ProcessConfig::new(modules.path()).with_state_dir(dir.path());
    let mut weir = WeirProcess::start("checks", &config);
    weir.wait_ready(READY);
    let refused = ["mixed", "short", "plain"];
    let status = rt.block_on(eventually(
        Duration::from_secs(60),
        "three refused modules and a running one with its stores",
        || {
            let s = weir.status()?;
            let done = refused
                .iter()
                .all(|m| module_entry(&s, m).is_some_and(|e| e["reason"].is_string()))
                && state_stores(&s, "fresh").len() == 4;
            done.then_some(s)
        },
    ));
    let entry = |m: &str| module_entry(&status, m).unwrap();
    let reason = |m: &str| entry(m)["reason"].as_str().unwrap().to_owned();
    let described = describe_topic(&fresh_log);
    let errors = weir.logged("the stateful module cannot start");
    println!(
        "state topic checks: /status mixed={} ({}), short={} ({}), plain={} ({}), fresh={}; \
         {} error lines; the created changelog: {}",
        entry("mixed")["state"],
        reason("mixed"),
        entry("short")["state"],
        reason("short"),
        entry("plain")["state"],
        reason("plain"),
        entry("fresh")["state"],
        errors.len(),
        described
            .as_deref()
            .unwrap_or_else(|e| e)
            .lines()
            .next()
            .unwrap_or_default()
    );
    weir.stop(config.shutdown_timeout);

    let mixed = reason("mixed");
    assert!(mixed.contains("different partition counts"), "{mixed}");
    assert!(mixed.contains(&format!("`{two}` has 2")), "{mixed}");
    assert!(mixed.contains(&format!("`{three}` has 3")), "{mixed}");
    let short = reason("short");
    assert!(
        short.contains("has 2 partitions") && short.contains("have 3"),
        "{short}"
    );
    assert!(
        reason("plain").contains("cleanup.policy"),
        "{}",
        reason("plain")
    );
    assert_eq!(
        errors.len(),
        3,
        "one error line per refused module: {errors:?}"
    );
    assert_eq!(
        partition_count(&mixed_log),
        None,
        "no changelog is created for refused inputs"
    );
    for m in refused {
        assert_eq!(
            entry(m)["state"],
            "failed",
            "a refused module is `failed` (nothing consumes for it): {}",
            entry(m)
        );
    }
    assert_eq!(entry("fresh")["state"], "running");
    assert_eq!(partition_count(&fresh_log), Some(4));
    match described {
        Ok(text) => {
            let first = text.lines().next().unwrap_or_default();
            assert!(first.contains("PartitionCount: 4"), "{text}");
            assert!(first.contains("cleanup.policy=compact"), "{text}");
        }
        Err(why) => println!("state topic checks: kafka-topics --describe not run: {why}"),
    }
}

/// Components built against `weir:consumer@0.1.0` (before the state
/// interface existed) still load and run: `json-enrich` (consumer world,
/// with the manifest it shipped with) and `identity-batch` (batch world).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_against_0_1_0_still_load_and_run() {
    init_logging();
    let fixtures = repo_root().join("tests/fixtures/v0.1");
    let (enrich, batch) = (
        Topics::create("v01-enrich").await,
        Topics::create("v01-batch").await,
    );
    let shipped = std::fs::read_to_string(fixtures.join("json-enrich.toml")).unwrap();
    let modules = ModulesDir::new();
    modules.install(
        "enrich",
        &fixtures.join("json-enrich.wasm"),
        enrich.manifest().merge(&shipped).merge(&format!(
            "input-topics = [{:?}]\noutput-topics = [{:?}]\n[config]\noutput = {:?}\n",
            enrich.input, enrich.output, enrich.output
        )),
    );
    modules.install(
        "batch",
        &fixtures.join("identity-batch.wasm"),
        batch.manifest(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (weir, status) = Weir::start_config(RunConfig {
        state_dir: dir.path().to_path_buf(),
        ..test_config(modules.path(), &[])
    });
    wait_running(
        &status,
        "enrich",
        &digest(&fixtures.join("json-enrich.wasm")),
    )
    .await;
    wait_running(
        &status,
        "batch",
        &digest(&fixtures.join("identity-batch.wasm")),
    )
    .await;
    let n = 30;
    let orders: Vec<Send> = (0..n)
        .map(|i| {
            Send::kv(
                &format!("o{i}"),
                &format!(r#"{{"id":{i},"price":2,"quantity":3}}"#),
            )
        })
        .collect();
    weir_tests::produce(&enrich.input, &orders).await;
    weir_tests::produce(&batch.input, &Send::numbered(0..n)).await;
    let enriched = weir_tests::consume(&enrich.output, n, READ, Duration::from_secs(1)).await;
    let copied = weir_tests::consume(&batch.output, n, READ, Duration::from_secs(1)).await;
    println!(
        "state 0.1.0 fixtures: json-enrich wrote {} of {n}, identity-batch {} of {n}; \
         e.g. {}",
        enriched.len(),
        copied.len(),
        enriched.first().map(Received::text).unwrap_or_default()
    );
    weir.stop().await.expect("clean shutdown");
    assert_eq!(enriched.len(), n);
    assert!(enriched.iter().all(|r| {
        let v = r.json();
        v["region"] == "eu-west" && v["total"] == 6
    }));
    assert_eq!(
        enriched
            .iter()
            .map(|r| r.header("weir-enriched-by"))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([Some("json-enrich".to_owned())])
    );
    let mut values: Vec<String> = copied.iter().map(Received::text).collect();
    values.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
    want.sort();
    assert_eq!(values, want);
}

/// `weir_state_*` samples of module `cbk` in `text`, per name (summed over
/// partitions).
fn state_samples(text: &str) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for name in [
        "weir_state_restores_total",
        "weir_state_restore_records_total",
        "weir_state_restoring_partitions",
    ] {
        if let Some(v) = sample(text, &format!(r#"{name}{{module="cbk"}}"#)) {
            out.insert(name, v);
        }
    }
    for name in ["weir_state_keys", "weir_state_bytes"] {
        let per_partition: Vec<f64> = (0..PARTITIONS)
            .filter_map(|p| sample(text, &format!(r#"{name}{{module="cbk",partition="{p}"}}"#)))
            .collect();
        if per_partition.len() == PARTITIONS as usize {
            out.insert(name, per_partition.iter().sum());
        }
    }
    out
}

fn scrape(weir: &WeirProcess) -> String {
    let (code, _, body) = http_get(weir.http(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// `/metrics` (checked with promtool) reports a stateful module's restores
/// and its stores' sizes: after a restart on the same state folder, 3
/// restores, the changelog records they read, and the keys the stores
/// hold.
#[test]
fn metrics_report_restores_and_store_sizes() {
    init_logging();
    if !real_broker_only("state metrics") {
        return;
    }
    let mut counter = Counter::new("cbk-metrics", 20, "");
    let dir = tempfile::tempdir().unwrap();
    let config = counter.config(dir.path());
    let mut weir = WeirProcess::start("metrics-1", &config);
    weir.wait_ready(READY);
    counter.produce(200);
    counter.wait_all_committed();
    let first = scrape(&weir);
    promtool_check(&first);
    weir.stop(config.shutdown_timeout);
    let mut weir = WeirProcess::start("metrics-2", &config);
    weir.wait_ready(READY);
    counter.produce(100);
    counter.wait_all_committed();
    let second = scrape(&weir);
    promtool_check(&second);
    let status = weir.status().expect("/status");
    weir.stop(config.shutdown_timeout);
    let (a, b) = (state_samples(&first), state_samples(&second));
    println!("state metrics: first run {a:?}; after a restart {b:?}");
    assert_eq!(a.get("weir_state_restores_total"), Some(&3.0), "{first}");
    assert_eq!(a.get("weir_state_restore_records_total"), Some(&0.0));
    assert_eq!(a.get("weir_state_restoring_partitions"), Some(&0.0));
    assert_eq!(b.get("weir_state_restores_total"), Some(&3.0), "{second}");
    assert_eq!(b.get("weir_state_restoring_partitions"), Some(&0.0));
    // A clean stop checkpoints at the changelog's end: nothing to read.
    assert_eq!(b.get("weir_state_restore_records_total"), Some(&0.0));
    assert_eq!(
        b.get("weir_state_keys"),
        Some(&20.0),
        "the 20 keys, as of the restore"
    );
    let shown: u64 = state_stores(&status, "cbk")
        .values()
        .map(|s| s["keys"].as_u64().unwrap())
        .sum();
    assert!(shown >= 20, "/status keys {shown}");
}

/// `weir_state_keys` and `weir_state_bytes` ("as of its last checkpoint")
/// and `/status` `keys` follow the writes of a running process: a store
/// checkpoints every 5 s while it is written, so within 30 s of 20 keys
/// being written they say 20.
#[test]
fn store_sizes_follow_writes_while_running() {
    init_logging();
    if !real_broker_only("state sizes while running") {
        return;
    }
    let mut counter = Counter::new("cbk-sizes", 20, "");
    let dir = tempfile::tempdir().unwrap();
    let config = counter.config(dir.path());
    let mut weir = WeirProcess::start("sizes", &config);
    weir.wait_ready(READY);
    counter.produce(100);
    counter.wait_all_committed();
    // Keep writing for longer than a checkpoint interval.
    let t0 = Instant::now();
    let mut last = BTreeMap::new();
    let mut keys_in_status = 0;
    while t0.elapsed() < Duration::from_secs(30) {
        counter.produce(20);
        std::thread::sleep(Duration::from_millis(500));
        last = state_samples(&scrape(&weir));
        keys_in_status = state_stores(&weir.status().unwrap(), "cbk")
            .values()
            .map(|s| s["keys"].as_u64().unwrap())
            .sum();
        if last.get("weir_state_keys") == Some(&20.0) && keys_in_status == 20 {
            break;
        }
    }
    println!(
        "state sizes: after {:.1?} of writes: metrics {last:?}, /status keys {keys_in_status}",
        t0.elapsed()
    );
    weir.stop(config.shutdown_timeout);
    assert_eq!(
        last.get("weir_state_keys"),
        Some(&20.0),
        "weir_state_keys after 30 s of writes to 20 keys"
    );
    assert_eq!(keys_in_status, 20, "/status keys");
}
