//! What every part of a benchmark run shares: the options, the guest
//! components, the client settings, the broker and its per-run topic names,
//! and the failures so far; plus the header and footer of the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;

use crate::broker::Broker;
use crate::cli::{ChildArgs, Opts};
use crate::kafka::{kafka_args, kafka_map};
use crate::report::{Failures, loadavg};

/// The repository root (guest components are looked up below it).
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One benchmark run (the parent process).
#[derive(Debug)]
pub struct Run {
    /// The options, with `--smoke` applied.
    pub opts: Opts,
    /// Folder with the guest components.
    pub guests: PathBuf,
    /// librdkafka properties of every client, native and weir alike.
    pub kafka: BTreeMap<String, String>,
    /// The broker measured against.
    pub broker: Broker,
    /// Distinguishes this run's topics from earlier runs' on a real broker.
    pub run_id: u64,
    /// The parts that failed so far.
    pub failures: Failures,
}

impl Run {
    /// Applies `--smoke`, checks the guest components are there, starts (or
    /// connects to) the broker and prints the report's header.
    pub fn setup(mut opts: Opts) -> anyhow::Result<Self> {
        opts.apply_smoke()?;
        let guests = opts
            .guests
            .clone()
            .unwrap_or_else(|| Path::new(REPO).join("target/test-guests"));
        for g in ["identity.wasm", "identity-batch.wasm"] {
            if !guests.join(g).is_file() {
                bail!(
                    "{} is missing: run scripts/build-guests.sh first",
                    guests.join(g).display()
                );
            }
        }
        let kafka = kafka_map(&opts.kafka);
        let broker = Broker::start(opts.brokers.as_deref())?;
        let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 1_000_000;
        println!(
            "weir-bench: broker {} ({}), partitions {}, max-batch {}, run {run_id}",
            broker.bootstrap,
            if broker.is_embedded() {
                "embedded mock"
            } else {
                "real"
            },
            opts.partitions,
            opts.max_batch
        );
        println!("kafka settings (all clients): {kafka:?}");
        println!("load at start: {}", loadavg());
        Ok(Self {
            opts,
            guests,
            kafka,
            broker,
            run_id,
            failures: Failures::default(),
        })
    }

    /// Creates this run's topic `bench-{run_id}-{name}` and returns its name.
    pub fn topic(&self, name: &str, partitions: i32) -> anyhow::Result<String> {
        let topic = format!("bench-{}-{name}", self.run_id);
        self.broker.create(&topic, partitions)?;
        Ok(topic)
    }

    /// A child run of `variant` from `input` to `output` with this run's
    /// settings; a drain of nothing, 100 B values, unless the caller says
    /// otherwise.
    pub fn child_args(&self, variant: &str, input: String, output: String) -> ChildArgs {
        ChildArgs {
            variant: variant.to_owned(),
            input,
            output,
            partitions: self.opts.partitions,
            events: 0,
            max_batch: self.opts.max_batch,
            guests: self.guests.clone(),
            rate: None,
            size: 100,
            latency_secs: 0,
            kafka: self.kafka.clone().into_iter().collect(),
        }
    }

    /// `weir-bench {sub} --brokers ... --input {input}`, ending with
    /// `extra`, `--guests` and this run's `--kafka` properties.
    pub fn command(&self, sub: &str, input: &str, extra: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = crate::child::command(sub, &self.broker.bootstrap)?;
        cmd.args(["--input", input])
            .args(extra)
            .arg("--guests")
            .arg(&self.guests)
            .args(kafka_args(&self.kafka));
        Ok(cmd)
    }

    /// Prints the report's footer; fails if any part failed.
    pub fn finish(&self) -> anyhow::Result<()> {
        println!("\nload at end: {}", loadavg());
        self.failures.finish()?;
        println!("weir-bench: ok");
        Ok(())
    }
}
