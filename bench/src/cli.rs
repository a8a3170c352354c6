//! Command line: the options of a benchmark run and the internal
//! subcommands the parent uses to start each measurement in a fresh child
//! process (`weir-bench child|rss|reload ...`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The whole command line: a benchmark run, or one internal child run.
#[derive(Debug, Parser)]
#[command(about = "Benchmark weir against a plain rdkafka consume->produce pipe")]
pub struct Args {
    /// An internal child run; absent for the benchmark run itself.
    #[command(subcommand)]
    pub child: Option<Internal>,
    /// Options of the benchmark run (`--brokers` also reaches the children).
    #[command(flatten)]
    pub opts: Opts,
}

/// Options of a benchmark run.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Real broker bootstrap list; without it the embedded mock broker is used.
    #[arg(long, global = true)]
    pub brokers: Option<String>,
    /// CI smoke run: embedded broker, a few thousand events, one repetition,
    /// no latency/reload/RSS; fails only if outputs are missing.
    #[arg(long)]
    pub smoke: bool,
    /// Events prefilled for 100-byte values.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events prefilled for 1 KiB values.
    #[arg(long, default_value_t = 300_000)]
    pub events_1k: u64,
    /// Value sizes to drain (bytes).
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    pub sizes: Vec<usize>,
    /// Repetitions of each variant (order rotated every repetition).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Runs of the reload part (each in a fresh child).
    #[arg(long, default_value_t = 5)]
    pub reload_runs: usize,
    /// Partitions of every benchmark topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// `[limits] max-batch` of the weir modules (the per-event module too:
    /// it bounds how many events a worker takes per call).
    #[arg(long, default_value_t = 256)]
    pub max_batch: u32,
    /// librdkafka property for every client, native and weir alike
    /// (repeatable, `key=value`); added to the defaults below.
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub kafka: Vec<(String, String)>,
    /// Variants to run (native, event, batch).
    #[arg(long, value_delimiter = ',', default_value = "native,event,batch")]
    pub variants: Vec<String>,
    /// Seconds of latency measurement per variant (after a warm-up).
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Latency test rate (events/s); default: half of weir's drain rate
    /// (the slower variant's median at 100 B).
    #[arg(long)]
    pub latency_rate: Option<u64>,
    /// Skip parts: any of drain, latency, micro, reload, rss, state.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Folder with identity.wasm, identity-batch.wasm, echo-v1/v2.wasm.
    #[arg(long)]
    pub guests: Option<PathBuf>,
}

impl Opts {
    /// Applies `--smoke`: few events, one repetition, no latency, reload or
    /// RSS; refuses a real broker.
    pub fn apply_smoke(&mut self) -> anyhow::Result<()> {
        if !self.smoke {
            return Ok(());
        }
        self.events = 3_000;
        self.events_1k = 1_000;
        self.reps = 1;
        self.reload_runs = 1;
        self.latency_secs = 0;
        self.skip
            .extend(["latency", "reload", "rss"].map(String::from));
        if self.brokers.is_some() {
            anyhow::bail!("--smoke always uses the embedded broker");
        }
        Ok(())
    }

    /// Whether `--skip` names the part `part`.
    pub fn skips(&self, part: &str) -> bool {
        self.skip.iter().any(|x| x == part)
    }

    /// Events prefilled for values of `size` bytes (`--events` up to 100 B,
    /// `--events-1k` above).
    pub fn events_for(&self, size: usize) -> u64 {
        if size <= 100 {
            self.events
        } else {
            self.events_1k
        }
    }
}

/// The internal subcommands, one per kind of child process.
#[derive(Debug, Subcommand)]
pub enum Internal {
    /// Internal: one drain or latency run in a fresh process.
    Child(ChildArgs),
    /// Internal: weir with K idle identity modules; prints VmRSS.
    Rss(RssArgs),
    /// Internal: reload pause under a steady stream.
    Reload(ReloadArgs),
}

/// One drain or latency run of one variant (`weir-bench child`).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The pipe under test: native, event or batch.
    #[arg(long)]
    pub variant: String,
    /// Topic the pipe reads.
    #[arg(long)]
    pub input: String,
    /// Topic the pipe writes.
    #[arg(long)]
    pub output: String,
    /// Partitions of both topics.
    #[arg(long)]
    pub partitions: i32,
    /// Drain: events expected on the output.
    #[arg(long, default_value_t = 0)]
    pub events: u64,
    /// `[limits] max-batch` of the weir module.
    #[arg(long)]
    pub max_batch: u32,
    /// Folder with the identity components.
    #[arg(long)]
    pub guests: PathBuf,
    /// Latency mode: produce at this rate (events/s) instead of draining.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Latency mode: seconds measured after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// librdkafka properties of every client (`key=value`).
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub kafka: Vec<(String, String)>,
}

/// weir with K idle identity modules (`weir-bench rss`).
#[derive(Debug, clap::Args)]
pub struct RssArgs {
    /// How many identity modules to load.
    #[arg(long)]
    pub modules: usize,
    /// Topic every module reads (and writes).
    #[arg(long)]
    pub input: String,
    /// Folder with identity.wasm.
    #[arg(long)]
    pub guests: PathBuf,
    /// librdkafka properties of every client (`key=value`).
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub kafka: Vec<(String, String)>,
}

/// Reload pause under a steady stream (`weir-bench reload`).
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Topic the echo module reads.
    #[arg(long)]
    pub input: String,
    /// Topic the echo module writes.
    #[arg(long)]
    pub output: String,
    /// Folder with echo-v1.wasm and echo-v2.wasm.
    #[arg(long)]
    pub guests: PathBuf,
    /// Events per second produced while the module is swapped.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// librdkafka properties of every client (`key=value`).
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub kafka: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}
