//! weir running in-process, through [`weir::runtime::run_with_status`], and
//! the status board its supervisor reports to.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir::config::RunConfig;
use weir::http::HttpListen;
use weir::status::{ModuleState, ModuleStatus, StatusBoard};

use crate::{broker, eventually};

/// The configuration tests run weir with: `brokers`, `modules`, commits
/// every 200 ms, a 20 s drain budget, no HTTP endpoint, and `kafka` passed
/// through to librdkafka. (The folder is watched: weir's default.)
pub fn run_config(brokers: &str, modules: &Path, kafka: &[(&str, &str)]) -> RunConfig {
    RunConfig {
        brokers: Some(brokers.to_owned()),
        modules: Some(modules.to_path_buf()),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(20),
        http_listen: HttpListen::Disabled,
        kafka: kafka
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunConfig::default()
    }
}

/// [`run_config`] for the test broker.
pub fn test_config(modules: &Path, kafka: &[(&str, &str)]) -> RunConfig {
    run_config(&broker().bootstrap(), modules, kafka)
}

/// weir running in-process.
#[derive(Debug)]
pub struct Weir {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Weir {
    /// Starts weir on `modules` against the test broker ([`test_config`]).
    /// `kafka` entries pass through to librdkafka.
    pub fn start(modules: &Path, kafka: &[(&str, &str)]) -> Self {
        Self::start_config(test_config(modules, kafka)).0
    }

    /// Starts weir with `config`; returns it with the status board its
    /// supervisor reports to.
    pub fn start_config(config: RunConfig) -> (Self, Arc<StatusBoard>) {
        let status = Arc::new(StatusBoard::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(weir::runtime::run_with_status(
            config,
            status.clone(),
            cancel.clone(),
        ));
        (Self { cancel, task }, status)
    }

    /// Like [`Weir::start`], with the HTTP endpoint (`/metrics`, `/livez`,
    /// `/readyz`, `/status`) on `listen`.
    pub fn start_with_http(modules: &Path, kafka: &[(&str, &str)], listen: SocketAddr) -> Self {
        let config = RunConfig {
            http_listen: HttpListen::Addr(listen),
            ..test_config(modules, kafka)
        };
        Self::start_config(config).0
    }

    /// Like [`Weir::start`], watching the folder with `debounce`, and
    /// returning the status board the supervisor reports to. The HTTP
    /// endpoint is off.
    pub fn start_watching(modules: &Path, debounce: Duration) -> (Self, Arc<StatusBoard>) {
        Self::start_watching_with_http(modules, debounce, HttpListen::Disabled)
    }

    /// [`Weir::start_watching`] with the HTTP endpoint on `http`.
    pub fn start_watching_with_http(
        modules: &Path,
        debounce: Duration,
        http: HttpListen,
    ) -> (Self, Arc<StatusBoard>) {
        Self::start_config(RunConfig {
            http_listen: http,
            watch: true,
            reload_debounce: debounce,
            ..test_config(modules, &[])
        })
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await?
    }
}

/// Module `name`'s entry on `status`, if it is listed.
pub fn module_status(status: &StatusBoard, name: &str) -> Option<ModuleStatus> {
    status.snapshot().into_iter().find(|m| m.name == name)
}

/// Waits (up to 30 s) until module `name` runs the component with
/// `digest` (see [`crate::digest`]).
pub async fn wait_running(status: &StatusBoard, name: &str, digest: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{name} running {digest}"),
        || {
            module_status(status, name)
                .filter(|m| m.digest.as_deref() == Some(digest) && m.state == ModuleState::Running)
                .map(|_| ())
        },
    )
    .await;
}
