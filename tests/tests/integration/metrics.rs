//! `/metrics`, `/livez` and `/readyz`: the exposition is valid for
//! Prometheus's own parser (`promtool check metrics`), a real Prometheus
//! server scrapes it, labels stay bounded, and scraping under load does not
//! slow event handling down.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`;
//! `scripts/test.sh` installs it).

#![allow(
    clippy::print_stdout,
    reason = "the tests report scrape latency and throughput"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_tests::http::{promtool_check, tool};
use weir_tests::{
    ModulesDir, Send, Topics, Weir, eventually, free_addr, http_get, init_logging, produce, sample,
};

/// Label names weir may expose; anything else (a key, an offset) fails.
const ALLOWED_LABELS: &[&str] = &[
    "module",
    "topic",
    "partition",
    "outcome",
    "reason",
    "result",
    "kind",
    "digest",
    "le",
    "version",
    "wasmtime",
    "librdkafka",
];

fn orders(prefix: &str, n: usize) -> Vec<Send> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}-{i}");
            Send::kv(
                &key,
                &format!(r#"{{"key":"{key}","seq":{i},"price":1,"quantity":2}}"#),
            )
        })
        .collect()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .unwrap()
        .unwrap_or((0, String::new(), String::new()))
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, _, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    body
}

/// Installs json-enrich as module `name` on fresh topics (rejected events
/// are skipped, since these tests count outcomes, not dead letters), starts
/// weir with the HTTP endpoint and waits until `/readyz` says ready. Returns
/// the topics, weir, its HTTP address and the modules folder.
async fn start_enrich(prefix: &str, name: &str) -> (Topics, Weir, SocketAddr, ModulesDir) {
    let t = Topics::create(prefix).await;
    let modules = ModulesDir::new();
    modules.add(
        name,
        "json-enrich",
        t.manifest()
            .in_table("on-failure", "action", "skip")
            .config("region", "eu"),
    );
    let addr = free_addr();
    let weir = Weir::start_with_http(modules.path(), &[], addr);
    let mut last = (0, String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        last = get(addr, "/readyz").await;
        if last.0 == 200 {
            let (live, _, _) = get(addr, "/livez").await;
            assert_eq!(live, 200, "/livez");
            return (t, weir, addr, modules);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("weir never became ready: /readyz {} {}", last.0, last.2);
}

async fn wait_for(addr: SocketAddr, series: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(addr).await;
        let got = sample(&text, series);
        if got == Some(value) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {series} = {value}; last {got:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every series (name and labels) of an exposition.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

fn label_names(series: &str) -> Vec<String> {
    let Some((_, labels)) = series.split_once('{') else {
        return Vec::new();
    };
    labels
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_during_traffic_parse_with_promtool_and_count_exactly() {
    init_logging();
    tool("promtool");
    let (t, weir, addr, _modules) = start_enrich("m", "enrich").await;

    // Scrape continuously while 300 events flow; check a scrape taken
    // mid-traffic with promtool.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut bodies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, content_type, body) = http_get(addr, "/metrics").unwrap();
                assert_eq!(status, 200);
                assert!(
                    content_type.starts_with("text/plain; version=0.0.4"),
                    "{content_type}"
                );
                bodies.push(body);
                std::thread::sleep(Duration::from_millis(20));
            }
            bodies
        })
    };
    for chunk in 0..3 {
        produce(&t.input, &orders(&format!("c{chunk}"), 100)).await;
    }
    let text = wait_for(
        addr,
        r#"weir_events_processed_total{module="enrich",outcome="ok"}"#,
        300.0,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let bodies = scraper.await.unwrap();
    assert!(bodies.len() > 3, "scraped during traffic");
    promtool_check(&bodies[bodies.len() / 2]);
    promtool_check(&text);

    let consumed = format!(
        r#"weir_events_consumed_total{{module="enrich",topic="{}"}}"#,
        t.input
    );
    assert_eq!(sample(&text, &consumed), Some(300.0), "{text}");
    let emitted = wait_for(
        addr,
        &format!(
            r#"weir_events_emitted_total{{module="enrich",topic="{}"}}"#,
            t.output
        ),
        300.0,
    )
    .await;
    for (series, value) in [
        (
            r#"weir_events_processed_total{module="enrich",outcome="rejected"}"#,
            0.0,
        ),
        (r#"weir_events_in_flight{module="enrich"}"#, 0.0),
        (r#"weir_assigned_partitions{module="enrich"}"#, 3.0),
    ] {
        assert_eq!(sample(&emitted, series), Some(value), "{series}\n{emitted}");
    }
    let calls = sample(
        &emitted,
        r#"weir_handler_duration_seconds_count{module="enrich"}"#,
    )
    .expect("handler duration histogram");
    assert!(calls >= 1.0, "{emitted}");
    assert!(
        emitted.contains("weir_build_info{librdkafka=\""),
        "{emitted}"
    );
    assert!(
        sample(&emitted, r#"weir_guest_memory_bytes{module="enrich"}"#).unwrap_or(0.0) > 0.0,
        "guest memory reported:\n{emitted}"
    );
    assert!(
        emitted.contains(r#"weir_module_info{digest=""#),
        "module info (set by the runtime when a module loads):\n{emitted}"
    );
    weir.stop().await.expect("clean shutdown");
}

/// A Prometheus server in a temp dir, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: weir\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The single value of an instant query, if any.
    fn query(&self, expr: &str) -> Option<f64> {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) =
            http_get(self.addr, &format!("/api/v1/query?query={encoded}")).ok()?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_weir_and_its_query_api_counts_processed_events() {
    init_logging();
    tool("prometheus");
    let (t, weir, addr, _modules) = start_enrich("p", "scraped").await;
    let prometheus = Prometheus::start(addr);

    produce(&t.input, &orders("p", 150)).await;
    // The records include one that is not JSON: rejected, counted apart.
    produce(&t.input, &[Send::kv("bad", "not json")]).await;
    wait_for(
        addr,
        r#"weir_events_processed_total{module="scraped",outcome="ok"}"#,
        150.0,
    )
    .await;

    let ok = r#"sum(weir_events_processed_total{job="weir",module="scraped",outcome="ok"})"#;
    let rejected = r#"sum(weir_events_processed_total{module="scraped",outcome="rejected"})"#;
    let p = &prometheus;
    eventually(
        Duration::from_secs(60),
        "prometheus to report 150 ok events",
        || (p.query(ok) == Some(150.0)).then_some(()),
    )
    .await;
    let rejected_count = eventually(Duration::from_secs(30), "rejected count", || {
        p.query(rejected)
    })
    .await;
    assert_eq!(rejected_count, 1.0, "prometheus log:\n{}", prometheus.log());
    let up = prometheus.query(r#"up{job="weir"}"#);
    assert_eq!(up, Some(1.0), "prometheus log:\n{}", prometheus.log());
    weir.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_cardinality_stays_constant_while_keys_and_offsets_vary() {
    init_logging();
    let (t, weir, addr, _modules) = start_enrich("c", "card").await;

    // Warm up: every partition gets events, a commit and a statistics
    // report, so per-partition series exist before the first count.
    produce(&t.input, &orders("warm", 60)).await;
    wait_for(
        addr,
        r#"weir_events_processed_total{module="card",outcome="ok"}"#,
        60.0,
    )
    .await;
    let before = eventually(
        Duration::from_secs(30),
        "lag and committed offsets of 3 partitions",
        || {
            let (_, _, text) = http_get(addr, "/metrics").ok()?;
            let s = series(&text);
            let n = |p: &str| s.iter().filter(|x| x.starts_with(p)).count();
            (n("weir_consumer_lag{") == 3 && n("weir_committed_offset{") == 3).then_some(s)
        },
    )
    .await;

    // 500 new keys, hundreds of new offsets.
    produce(&t.input, &orders("fresh", 500)).await;
    let text = wait_for(
        addr,
        r#"weir_events_processed_total{module="card",outcome="ok"}"#,
        560.0,
    )
    .await;
    let after = series(&text);
    assert_eq!(
        before, after,
        "series appeared or vanished while only keys and offsets changed"
    );
    for s in &after {
        for label in label_names(s) {
            assert!(
                ALLOWED_LABELS.contains(&label.as_str()),
                "unexpected label `{label}` in {s}"
            );
        }
        assert!(
            !s.contains("warm-") && !s.contains("fresh-"),
            "a key leaked into a label: {s}"
        );
    }
    println!(
        "cardinality: {} series before and after 500 new keys",
        after.len()
    );
    weir.stop().await.expect("clean shutdown");
}

/// Produces `n` events and returns the events per second until weir has
/// processed them all (polling `/metrics` every 20 ms).
async fn throughput(addr: SocketAddr, input: &str, label: &str, n: usize, base: f64) -> f64 {
    let records = orders(label, n);
    let started = Instant::now();
    produce(input, &records).await;
    let series = r#"weir_events_processed_total{module="load",outcome="ok"}"#;
    let target = base + n as f64;
    loop {
        let text = scrape(addr).await;
        if sample(&text, series) == Some(target) {
            return n as f64 / started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {series} = {target}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_200_requests_per_second_while_events_flow() {
    init_logging();
    let (t, weir, addr, _modules) = start_enrich("l", "load").await;
    const N: usize = 10_000;

    let quiet = throughput(addr, &t.input, "quiet", N, 0.0).await;

    // 4 scrapers at 50 requests/s each, for as long as the second run lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let mut latencies = Vec::new();
                let mut failures = 0;
                let mut next = Instant::now();
                // Bounded: at most 60 s of requests.
                let end = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let t = Instant::now();
                    match http_get(addr, "/metrics") {
                        Ok((200, _, body)) if body.contains("weir_events_processed_total") => {
                            latencies.push(t.elapsed())
                        }
                        _ => failures += 1,
                    }
                    next += Duration::from_millis(20);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let scraping_started = Instant::now();
    let loaded = throughput(addr, &t.input, "loaded", N, N as f64).await;
    let elapsed = scraping_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut failures = 0;
    for s in scrapers {
        let (l, f) = s.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "scrape: {} requests in {elapsed:.1?} ({rate:.0}/s), {failures} failed; latency p50 {:?}, \
         p99 {:?}, max {:?}",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "throughput: {quiet:.0} events/s without scraping, {loaded:.0} events/s with \
         ~200 scrapes/s ({:+.1}%)",
        (loaded / quiet - 1.0) * 100.0
    );
    assert_eq!(failures, 0, "every scrape answered");
    assert!(rate > 100.0, "the scrapers reached {rate:.0} requests/s");
    assert!(pct(0.99) < Duration::from_millis(250), "p99 scrape latency");
    assert!(
        loaded > quiet * 0.5,
        "throughput fell from {quiet:.0}/s to {loaded:.0}/s under scraping"
    );
    weir.stop().await.expect("clean shutdown");
}
