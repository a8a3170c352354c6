//! End-to-end drain rate of the Rust, Python and JavaScript `json-enrich`
//! modules through weir on a broker: N order events are produced to a
//! 3-partition topic, weir (in-process, the test configuration) starts with
//! one module, and the rate is N divided by the time between receiving the
//! first and the last output (so compile time is excluded; outputs carry
//! their input's timestamp, so broker timestamps cannot be used).
//!
//! ```sh
//! scripts/build-guests.sh
//! BROKERS=$(scripts/kafka.sh start)
//! WEIR_TEST_BROKERS=$BROKERS cargo run --release -p weir-tests --example lang_drain [N]   # default 20000
//! ```
//!
//! A measurement, not a test: it prints figures and fails only if outputs
//! are missing. Without `WEIR_TEST_BROKERS` it uses the embedded mock
//! broker, whose figures say little.
#![allow(clippy::print_stdout, reason = "a measurement tool prints its figures")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weir_tests::kafka::{assign_from_beginning, consumer};
use weir_tests::{ModulesDir, PARTITIONS, Send, Topics, Weir, broker, produce, unique};

const MODULES: [&str; 3] = ["json-enrich", "python-json-enrich", "js-json-enrich"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("N must be a number")?,
        None => 20_000,
    };
    println!(
        "broker: {}",
        if broker().is_real() {
            "real"
        } else {
            "embedded mock"
        }
    );
    println!(
        "{:<20} {:>8} {:>12} {:>12}",
        "module", "events", "span", "events/s"
    );
    for name in MODULES {
        let t = Topics::create("drain").await;
        let records: Vec<Send> = (0..n)
            .map(|i| {
                Send::kv(
                    &format!("order-{i}"),
                    &format!(r#"{{"id":{i},"customer":"c-{}","price":2.5,"quantity":{},"note":"a typical order"}}"#, i % 17, i % 9),
                )
            })
            .collect();
        produce(&t.input, &records).await;
        let modules = ModulesDir::new();
        modules.add(name, name, t.manifest().config("region", "eu-west"));
        let weir = Weir::start(modules.path(), &[]);
        let (count, span) = tokio::task::spawn_blocking(move || read_span(&t.output, n)).await??;
        weir.stop().await?;
        if count != n {
            bail!("{name}: {count} outputs for {n} events");
        }
        println!(
            "{name:<20} {n:>8} {:>10.2} s {:>12.0}",
            span.as_secs_f64(),
            n as f64 / span.as_secs_f64()
        );
    }
    Ok(())
}

/// Reads `topic` until `n` records arrived (10 minutes at most); returns
/// the count and the time between receiving the first and the last.
fn read_span(topic: &str, n: usize) -> anyhow::Result<(usize, Duration)> {
    let consumer = consumer(&unique("drain-reader"));
    assign_from_beginning(&consumer, topic, PARTITIONS);
    let (mut first, mut count) = (None, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m?;
            first.get_or_insert_with(Instant::now);
            count += 1;
        }
    }
    Ok((count, first.map_or(Duration::ZERO, |t| t.elapsed())))
}
