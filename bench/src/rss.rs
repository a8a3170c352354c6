//! Memory: the resident set (VmRSS) of a weir process with 1 and with 10
//! idle identity modules (each a consumer and one live instance), each in
//! a fresh child process, measured after 10 s; the difference over 9 is
//! the cost of one more module.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::RssArgs;
use crate::pipe::{install_module, manifest, weir_config};
use crate::run::Run;

/// The RSS part: a child with 1 module, then one with 10; prints the
/// difference.
pub fn run(run: &mut Run) -> anyhow::Result<()> {
    let input = run.topic("rss-in", 1)?;
    let mut rss = BTreeMap::new();
    for k in [1usize, 10] {
        let cmd = run.command("rss", &input, &["--modules", &k.to_string()])?;
        if let Some(line) = run
            .failures
            .check_quietly(crate::child::output(cmd), &format!("rss {k}"))
        {
            let kib: f64 = line.trim().parse().context("rss child output")?;
            rss.insert(k, kib);
        }
    }
    if let (Some(one), Some(ten)) = (rss.get(&1), rss.get(&10)) {
        println!(
            "\nRSS: 1 module {:.1} MiB, 10 modules {:.1} MiB, per extra module {:.2} MiB (each module: consumer + 1 live instance)",
            one / 1024.0,
            ten / 1024.0,
            (ten - one) / 9.0 / 1024.0
        );
    }
    Ok(())
}

/// This process's resident set in KiB (NaN if unknown).
pub fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// `weir-bench rss`: runs weir with `a.modules` identity modules reading
/// `a.input`, lets them join their groups and idle for 10 s, prints the
/// RSS in KiB and exits.
pub fn child(bootstrap: &str, a: &RssArgs) -> anyhow::Result<()> {
    let rt = crate::child::runtime()?;
    let tmp = tempfile::tempdir()?;
    let pid = std::process::id();
    for i in 0..a.modules {
        install_module(
            tmp.path(),
            &format!("id{i}"),
            &a.guests.join("identity.wasm"),
            &manifest(&a.input, &a.input, &format!("bench-rss-{pid}-{i}"), 64),
        )?;
    }
    let config = weir_config(bootstrap, tmp.path().to_path_buf(), a.kafka.clone());
    let token = CancellationToken::new();
    rt.spawn(async move { weir::runtime::run(config, token).await });
    // Let every module join its group and sit idle.
    std::thread::sleep(Duration::from_secs(10));
    println!("{}", rss_kib());
    std::process::exit(0);
}
