//! `weir-bench`: weir against a plain rdkafka consume→produce pipe.
//!
//! One run, one broker (a real one with `--brokers`, or the embedded mock):
//!
//! 1. prefills an input topic per value size with N events;
//! 2. drains it with (a) a native rdkafka pipe, (b) weir with the
//!    per-event identity component, (c) weir with the batch identity
//!    component, each in a fresh child process (`weir-bench child ...`) and a
//!    fresh consumer group and output topic, rotating the order every
//!    repetition; throughput counts only records the broker acknowledged
//!    (the output topic's end offsets), CPU is the child's getrusage;
//! 3. measures end-to-end latency at a fixed rate (half weir's maximum);
//! 4. measures component compile time, fresh instance creation, per-call
//!    cost, reload pause and RSS;
//! 5. measures state stores: local load, get + set per event, restore.
//!
//! The parts are [`drain`], [`latency`], [`micro`], [`reload`], [`rss`] and
//! [`state`];
//! [`run`] holds what they share in the parent process, [`child`] starts
//! and runs the child processes, [`pipe`] the pipes under test, [`kafka`]
//! the clients, [`broker`] the broker, [`cli`] the command line and
//! [`report`] the report helpers.
//!
//! See docs/BENCHMARKS.md for the method and the latest numbers.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod alloc;
mod broker;
mod child;
mod cli;
mod drain;
mod kafka;
mod latency;
mod micro;
mod pipe;
mod reload;
mod report;
mod rss;
mod run;
mod state;

use anyhow::Context as _;
use clap::Parser;

use crate::cli::{Args, Internal, Opts};
use crate::run::Run;

/// Counts allocations, for the drain's allocations per event.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(internal) = args.child else {
        return parent(args.opts);
    };
    let bootstrap = args.opts.brokers.as_deref().context("--brokers")?;
    match internal {
        Internal::Child(c) => child::main(bootstrap, &c),
        Internal::Rss(a) => rss::child(bootstrap, &a),
        Internal::Reload(a) => reload::child(bootstrap, &a),
    }
}

/// The benchmark run: every part not skipped, in order, then the summary.
fn parent(opts: Opts) -> anyhow::Result<()> {
    let mut run = Run::setup(opts)?;
    let mut weir_rate_100 = None;
    if !run.opts.skips("drain") {
        weir_rate_100 = drain::run(&mut run)?;
    }
    if !run.opts.skips("latency") && run.opts.latency_secs > 0 {
        latency::run(&mut run, weir_rate_100)?;
    }
    if !run.opts.skips("micro") {
        let r = micro::run(&run.guests, run.opts.smoke);
        run.failures.check(r, "micro", "micro");
    }
    if !run.opts.skips("reload") {
        reload::run(&mut run)?;
    }
    if !run.opts.skips("rss") {
        rss::run(&mut run)?;
    }
    if !run.opts.skips("state") {
        let r = state::run(&mut run);
        run.failures.check(r, "state", "state");
    }
    run.finish()
}
