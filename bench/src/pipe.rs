//! The pipes under test and how weir is set up for the benchmark: `native`
//! is a plain rdkafka consume→produce loop on a thread, `event` and `batch`
//! run weir with the per-event or the batch identity component in a modules
//! folder written for the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;
use tokio_util::sync::CancellationToken;
use weir::config::RunConfig;

use crate::cli::ChildArgs;
use crate::kafka::{Pipe, counting_producer, settings};

/// Starts the pipe under test; returns a guard that stops it.
pub fn start(
    bootstrap: &str,
    c: &ChildArgs,
    group: &str,
    rt: &tokio::runtime::Runtime,
    tmp: &Path,
) -> anyhow::Result<CancellationToken> {
    let cancel = CancellationToken::new();
    match c.variant.as_str() {
        "native" => start_native(bootstrap, c, group, cancel.clone())?,
        "event" | "batch" => start_weir(bootstrap, c, group, rt, tmp, cancel.clone())?,
        other => bail!("unknown variant `{other}` (native, event, batch)"),
    }
    Ok(cancel)
}

/// The native pipe: a consumer of `c.input` and a producer to `c.output`
/// with weir's client configuration, forwarding on a thread until `stop`.
fn start_native(
    bootstrap: &str,
    c: &ChildArgs,
    group: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let settings = settings(bootstrap, c.kafka.clone());
    let consumer: BaseConsumer = settings.consumer_config(group, "earliest").create()?;
    consumer.subscribe(&[&c.input])?;
    let (producer, _acked) = counting_producer(&settings.producer_config())?;
    let output = c.output.clone();
    std::thread::spawn(move || {
        while !stop.is_cancelled() {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => forward(&producer, &output, &m),
                Some(Err(e)) => eprintln!("native pipe: {e}"),
                None => {}
            }
        }
    });
    Ok(())
}

/// Copies `m` (key, value, timestamp) to `output`, retrying while the
/// producer refuses it.
fn forward(producer: &Pipe, output: &str, m: &BorrowedMessage<'_>) {
    let mut r = BaseRecord::<[u8], [u8]>::to(output);
    if let Some(k) = m.key() {
        r = r.key(k);
    }
    if let Some(v) = m.payload() {
        r = r.payload(v);
    }
    if let Some(ts) = m.timestamp().to_millis() {
        r = r.timestamp(ts);
    }
    loop {
        match producer.send(r) {
            Ok(()) => break,
            Err((_, back)) => {
                r = back;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// weir with the identity component of `c.variant` in a modules folder
/// under `tmp`; exits the process if weir fails.
fn start_weir(
    bootstrap: &str,
    c: &ChildArgs,
    group: &str,
    rt: &tokio::runtime::Runtime,
    tmp: &Path,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let guest = if c.variant == "event" {
        "identity"
    } else {
        "identity-batch"
    };
    let dir = tmp.join("modules");
    std::fs::create_dir_all(&dir)?;
    install_module(
        &dir,
        "identity",
        &c.guests.join(format!("{guest}.wasm")),
        &manifest(&c.input, &c.output, group, c.max_batch),
    )?;
    let config = RunConfig {
        shutdown_timeout: Duration::from_secs(5),
        ..weir_config(bootstrap, dir, c.kafka.clone())
    };
    rt.spawn(async move {
        if let Err(e) = weir::runtime::run(config, cancel).await {
            eprintln!("weir failed: {e:#}");
            std::process::exit(3);
        }
    });
    Ok(())
}

/// weir's configuration for the benchmark: `bootstrap`, the modules folder
/// `modules`, the client properties `kafka`, no HTTP endpoint and no
/// watching for changes.
pub fn weir_config(
    bootstrap: &str,
    modules: PathBuf,
    kafka: impl IntoIterator<Item = (String, String)>,
) -> RunConfig {
    RunConfig {
        brokers: Some(bootstrap.to_owned()),
        modules: Some(modules),
        http_listen: weir::http::HttpListen::Disabled,
        watch: false,
        kafka: kafka.into_iter().collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// Installs module `name` into the modules folder `dir`: its manifest
/// `manifest`, then a copy of the component `wasm`.
pub fn install_module(dir: &Path, name: &str, wasm: &Path, manifest: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(format!("{name}.toml")), manifest)?;
    std::fs::copy(wasm, dir.join(format!("{name}.wasm")))?;
    Ok(())
}

/// A module manifest reading `input` and writing `output` (also passed as
/// the `output` config key) in consumer group `group`.
pub fn manifest(input: &str, output: &str, group: &str, max_batch: u32) -> String {
    format!(
        "input-topics = [\"{input}\"]\noutput-topics = [\"{output}\"]\ngroup-id = \"{group}\"\n\
         offset-reset = \"earliest\"\n[limits]\nmax-batch = {max_batch}\nmax-emits = {}\n\
         [config]\noutput = \"{output}\"\n",
        max_batch.max(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses() {
        let text = manifest("a", "b", "g", 64);
        weir::manifest::Manifest::parse(&text, Path::new("x.toml")).unwrap();
    }
}
