//! The whole process: load the modules, start one runner per module, and on
//! cancellation drain, commit, flush and leave.

use std::sync::Arc;

use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::dispatch::{RunnerSettings, spawn_runner};
use crate::engine::WasmEngine;
use crate::kafka::KafkaSettings;
use crate::modules::load_dir;

/// Runs weir until `cancel` fires, then shuts down gracefully: stop
/// fetching, finish in-flight events, wait for their outputs'
/// acknowledgements, commit, flush the producer, leave the groups.
///
/// Fails at start if the configuration is invalid or no module loads.
pub async fn run(config: RunConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    config.validate(None)?;
    let engine = Arc::new(WasmEngine::new()?);
    let dir = config.modules_dir().to_path_buf();
    let report = {
        let (engine, dir, max) = (engine.clone(), dir.clone(), config.max_module_bytes);
        tokio::task::spawn_blocking(move || load_dir(&engine, &dir, max)).await??
    };
    if report.loaded.is_empty() {
        let reasons: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "no module could be loaded from `{}`{}",
            dir.display(),
            if reasons.is_empty() {
                " (no .wasm files)".to_owned()
            } else {
                format!(":\n  - {}", reasons.join("\n  - "))
            }
        );
    }

    let kafka = KafkaSettings {
        brokers: config.brokers().to_owned(),
        passthrough: config.kafka.clone(),
    };
    let producer = kafka.producer()?;
    let settings = RunnerSettings {
        kafka,
        commit_interval: config.commit_interval,
        drain_timeout: config.shutdown_timeout,
    };
    let mut runners = Vec::new();
    for module in report.loaded {
        let runner = spawn_runner(
            module,
            engine.clone(),
            producer.clone(),
            settings.clone(),
            cancel.clone(),
        )?;
        runners.push(runner);
    }
    tracing::info!(
        modules = runners.len(),
        brokers = config.brokers(),
        "weir is running"
    );

    cancel.cancelled().await;
    tracing::info!("shutting down");
    tokio::task::spawn_blocking(move || {
        for runner in runners {
            if runner.join().is_err() {
                tracing::error!("a module runner panicked during shutdown");
            }
        }
    })
    .await?;
    let flush =
        tokio::task::spawn_blocking(move || producer.flush(config.shutdown_timeout)).await?;
    if let Err(err) = flush {
        tracing::warn!(error = %err, "producer flush did not complete");
    }
    tracing::info!("shutdown complete");
    Ok(())
}
