//! weir running in-process, through [`weir::runtime::run_with_status`].

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir::config::RunConfig;

use crate::broker;

/// The configuration tests run weir with: the test broker, `modules`,
/// commits every 200 ms, a 20 s drain budget, no HTTP endpoint, and `kafka`
/// passed through to librdkafka.
pub fn test_config(modules: &Path, kafka: &[(&str, &str)]) -> RunConfig {
    RunConfig {
        brokers: Some(broker().bootstrap()),
        modules: Some(modules.to_path_buf()),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(20),
        http_listen: weir::http::HttpListen::Disabled,
        kafka: kafka
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunConfig::default()
    }
}

/// weir running in-process.
#[derive(Debug)]
pub struct Weir {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Weir {
    /// Starts weir on `modules` against the test broker, committing every
    /// 200 ms. `kafka` entries pass through to librdkafka.
    pub fn start(modules: &Path, kafka: &[(&str, &str)]) -> Self {
        Self::start_config(test_config(modules, kafka)).0
    }

    /// Starts weir with `config`; returns it with the status board its
    /// supervisor reports to.
    pub fn start_config(config: RunConfig) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        let status = std::sync::Arc::new(weir::status::StatusBoard::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(weir::runtime::run_with_status(
            config,
            status.clone(),
            cancel.clone(),
        ));
        (Self { cancel, task }, status)
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await?
    }

    /// Like [`Weir::start`], with the HTTP endpoint (`/metrics`, `/livez`,
    /// `/readyz`) on `listen`.
    pub fn start_with_http(
        modules: &Path,
        kafka: &[(&str, &str)],
        listen: std::net::SocketAddr,
    ) -> Self {
        let config = RunConfig {
            http_listen: weir::http::HttpListen::Addr(listen),
            ..test_config(modules, kafka)
        };
        Self::start_config(config).0
    }

    /// Like [`Weir::start`], watching the folder with `debounce`, and
    /// returning the status board the supervisor reports to. The HTTP
    /// endpoint is off.
    pub fn start_watching(
        modules: &Path,
        debounce: Duration,
    ) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        Self::start_watching_with_http(modules, debounce, weir::http::HttpListen::Disabled)
    }

    /// [`Weir::start_watching`] with the HTTP endpoint on `http`.
    pub fn start_watching_with_http(
        modules: &Path,
        debounce: Duration,
        http: weir::http::HttpListen,
    ) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        Self::start_config(RunConfig {
            http_listen: http,
            watch: true,
            reload_debounce: debounce,
            ..test_config(modules, &[])
        })
    }
}
