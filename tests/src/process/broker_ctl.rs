//! Stopping and starting the real test broker with `scripts/kafka.sh`, for
//! broker-fault tests.
//!
//! Only a broker that `scripts/kafka.sh` runs from a state folder this
//! process can see is restarted: `WEIR_KAFKA_HOME` (default `<repo>/.kafka`)
//! and the port of `WEIR_TEST_BROKERS` (or `WEIR_KAFKA_PORT`, which must
//! agree). `scripts/test.sh` and CI start exactly that broker. Anything else
//! (the mock cluster, a remote cluster) is not restartable and the test is
//! skipped with the reason.

use std::path::PathBuf;
use std::process::Command;

use tokio::sync::RwLock;

use crate::{Broker, broker, repo_root};

/// Tests that must not see a broker outage hold this for reading; a test
/// that restarts the broker holds it for writing, so it runs alone within
/// its test binary. (Test binaries run one after another.)
pub static BROKER_FAULTS: RwLock<()> = RwLock::const_new(());

/// A broker `scripts/kafka.sh` can stop and start.
#[derive(Debug, Clone)]
pub struct BrokerControl {
    home: PathBuf,
    port: u16,
}

impl BrokerControl {
    /// The test broker, if `scripts/kafka.sh` controls it; otherwise why not.
    pub fn from_env() -> Result<Self, String> {
        let bootstrap = match broker() {
            Broker::External(b) => b.clone(),
            Broker::Embedded(_) => {
                return Err(
                    "the test broker is librdkafka's mock cluster, which cannot be restarted \
                     (set WEIR_TEST_BROKERS to a scripts/kafka.sh broker)"
                        .into(),
                );
            }
        };
        let port: u16 = match bootstrap.trim().rsplit_once(':') {
            Some((_, port)) if !bootstrap.contains(',') => port
                .parse()
                .map_err(|_| format!("cannot read a port from WEIR_TEST_BROKERS={bootstrap}"))?,
            _ => {
                return Err(format!(
                    "WEIR_TEST_BROKERS={bootstrap} is not one host:port"
                ));
            }
        };
        if let Ok(p) = std::env::var("WEIR_KAFKA_PORT")
            && p.trim() != port.to_string()
        {
            return Err(format!(
                "WEIR_KAFKA_PORT={p} does not match WEIR_TEST_BROKERS={bootstrap}"
            ));
        }
        let home = std::env::var_os("WEIR_KAFKA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".kafka"));
        let control = Self { home, port };
        let status = control.run("status");
        if !status.0 {
            return Err(format!(
                "no broker of scripts/kafka.sh runs from {} on port {port} \
                 (set WEIR_KAFKA_HOME to its state folder): {}",
                control.home.display(),
                status.1.trim()
            ));
        }
        Ok(control)
    }

    fn run(&self, command: &str) -> (bool, String) {
        let out = Command::new(repo_root().join("scripts/kafka.sh"))
            .arg(command)
            .env("WEIR_KAFKA_HOME", &self.home)
            .env("WEIR_KAFKA_PORT", self.port.to_string())
            .output()
            .expect("run scripts/kafka.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Stops the broker; the returned guard starts it again when dropped
    /// (also when the test panics), unless [`Outage::restart`] did.
    pub fn stop(&self) -> Outage<'_> {
        let (ok, log) = self.run("stop");
        assert!(ok, "scripts/kafka.sh stop failed:\n{log}");
        Outage {
            control: self,
            down: true,
        }
    }
}

/// The broker is down until this is restarted or dropped.
#[derive(Debug)]
pub struct Outage<'a> {
    control: &'a BrokerControl,
    down: bool,
}

impl Outage<'_> {
    /// Starts the broker again and waits until it serves.
    pub fn restart(mut self) {
        self.start();
    }

    fn start(&mut self) {
        if !self.down {
            return;
        }
        self.down = false;
        let (ok, log) = self.control.run("start");
        assert!(ok, "scripts/kafka.sh start failed:\n{log}");
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if self.down {
            self.down = false;
            let (ok, log) = self.control.run("start");
            if !ok {
                tracing::error!(log = %log, "could not restart the broker after a failed test");
            }
        }
    }
}
