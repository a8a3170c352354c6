//! Child processes: every drain, latency, reload and RSS measurement runs in
//! a fresh `weir-bench` process, so no client, cache or allocator state
//! carries over. The parent starts it and reads the last line it prints; the
//! drain/latency child (`weir-bench child`) starts the pipe under test,
//! measures, prints its result as JSON and exits without a graceful
//! shutdown.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::ChildArgs;
use crate::kafka::kafka_args;

/// A multi-threaded tokio runtime, for weir and the admin calls.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `weir-bench {sub} --brokers {bootstrap}`: this binary as a child.
pub fn command(sub: &str, bootstrap: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([sub, "--brokers", bootstrap]);
    Ok(cmd)
}

/// Runs `weir-bench child` with `c` and parses the JSON line it prints.
pub fn run_child<T: for<'de> Deserialize<'de>>(
    bootstrap: &str,
    c: &ChildArgs,
) -> anyhow::Result<T> {
    let mut cmd = command("child", bootstrap)?;
    cmd.args(["--variant", &c.variant])
        .args(["--input", &c.input, "--output", &c.output])
        .args(["--partitions", &c.partitions.to_string()])
        .args(["--events", &c.events.to_string()])
        .args(["--max-batch", &c.max_batch.to_string()])
        .args(["--size", &c.size.to_string()])
        .args(["--latency-secs", &c.latency_secs.to_string()])
        .arg("--guests")
        .arg(&c.guests)
        .args(kafka_args(&c.kafka.iter().cloned().collect()));
    if let Some(rate) = c.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let line = output(cmd)?;
    serde_json::from_str(&line).with_context(|| format!("child printed `{line}`"))
}

/// Runs a child and returns the last line of its stdout.
pub fn output(mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("child exited with {}: {}", out.status, stdout.trim());
    }
    stdout
        .lines()
        .last()
        .map(str::to_owned)
        .context("child printed nothing")
}

/// `weir-bench child`: starts the pipe under test, then drains (no
/// `--rate`) or measures latency, prints the result as one JSON line and
/// exits at once.
pub fn main(bootstrap: &str, c: &ChildArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let tmp = tempfile::tempdir()?;
    let group = format!("bench-{}-{}", c.output, std::process::id());
    let _cancel = crate::pipe::start(bootstrap, c, &group, &rt, tmp.path())?;
    let line = match c.rate {
        None => serde_json::to_string(&crate::drain::measure(bootstrap, c)?)?,
        Some(rate) => serde_json::to_string(&crate::latency::measure(bootstrap, c, rate)?)?,
    };
    println!("{line}");
    // Skip the graceful shutdown: every run uses a fresh group and topics.
    std::process::exit(0);
}
