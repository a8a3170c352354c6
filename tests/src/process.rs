//! weir as a child process, for tests of its command line and tests that
//! crash, stop and restart it: the built `weir` binary ([`weir_binary`])
//! runs `weir run --config` on a generated `weir.toml` ([`WeirProcess::start`])
//! or any other command line ([`WeirProcess::spawn`]), logs to a file, and is
//! stopped with SIGTERM or SIGKILL. [`audit`] checks what reached the output
//! topic; [`broker_ctl`] restarts the real broker under a running weir.

pub mod audit;
pub mod broker_ctl;

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{LOG_FILTER, broker, free_addr, http_get};

/// Path of the `weir` binary built beside the test executable.
pub fn weir_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("weir");
    assert!(
        bin.is_file(),
        "`{}` is missing: build it with `cargo build -p weir` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// What a weir process is started with (written to its `weir.toml`, and
/// its environment).
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// `brokers`; `None`: the test broker.
    pub brokers: Option<String>,
    /// The modules folder.
    pub modules: PathBuf,
    /// `commit-interval`.
    pub commit_interval: Duration,
    /// `shutdown-timeout`: the drain budget on SIGTERM.
    pub shutdown_timeout: Duration,
    /// `[kafka]` entries passed through to librdkafka.
    pub kafka: Vec<(String, String)>,
    /// The process's `RUST_LOG`.
    pub log_filter: String,
    /// Whether it logs JSON lines (`--log-format json`), as
    /// [`WeirProcess::owned_partitions`] needs; otherwise text.
    pub json_log: bool,
    /// `state-dir`, where stateful modules keep their local stores; `None`:
    /// weir's default (`weir-state` under the working directory), which
    /// tests must not use.
    pub state_dir: Option<PathBuf>,
    /// More top-level `weir.toml` lines, e.g. `max-inflight-bytes = 1024`.
    pub extra_toml: String,
}

impl ProcessConfig {
    /// Settings for crash tests: the test broker, commits every 500 ms, a
    /// 15 s drain budget, JSON logs, and a 6 s group session (the broker's
    /// minimum) so that the partitions of a killed process move on quickly
    /// instead of after librdkafka's default 45 s.
    pub fn new(modules: &Path) -> Self {
        Self {
            brokers: None,
            modules: modules.to_path_buf(),
            commit_interval: Duration::from_millis(500),
            shutdown_timeout: Duration::from_secs(15),
            kafka: vec![
                ("session.timeout.ms".into(), "6000".into()),
                ("heartbeat.interval.ms".into(), "1000".into()),
            ],
            log_filter: LOG_FILTER.to_owned(),
            json_log: true,
            state_dir: None,
            extra_toml: String::new(),
        }
    }

    /// These settings with `state-dir` set to `dir`.
    pub fn with_state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    fn toml(&self, http: SocketAddr) -> String {
        let mut s = format!(
            "brokers = {brokers:?}\nmodules = {modules:?}\ncommit-interval = \"{commit}ms\"\n\
             shutdown-timeout = \"{shutdown}ms\"\nwatch = false\nhttp-listen = \"{http}\"\n",
            brokers = self.brokers.clone().unwrap_or_else(|| broker().bootstrap()),
            modules = self.modules.display().to_string(),
            commit = self.commit_interval.as_millis(),
            shutdown = self.shutdown_timeout.as_millis(),
        );
        if let Some(dir) = &self.state_dir {
            s.push_str(&format!("state-dir = {:?}\n", dir.display().to_string()));
        }
        s.push_str(&self.extra_toml);
        s.push_str("\n[kafka]\n");
        for (k, v) in &self.kafka {
            s.push_str(&format!("{k:?} = {v:?}\n"));
        }
        s
    }
}

/// A running (or exited) `weir` child process. Dropping it kills the
/// process if it still runs.
#[derive(Debug)]
pub struct WeirProcess {
    name: String,
    child: Child,
    http: Option<SocketAddr>,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
    exit: Option<ExitStatus>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Time from the signal to the exit.
    pub after: Duration,
}

impl WeirProcess {
    /// Starts `weir run` with `config`; `name` labels its log file and
    /// messages.
    pub fn start(name: &str, config: &ProcessConfig) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for weir.toml");
        let http = free_addr();
        let toml = dir.path().join("weir.toml");
        std::fs::write(&toml, config.toml(http)).expect("write weir.toml");
        let mut args: Vec<OsString> = Vec::new();
        if config.json_log {
            args.extend(["--log-format".into(), "json".into()]);
        }
        args.extend(["run".into(), "--config".into(), toml.into_os_string()]);
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        Self::spawn_in(dir, name, &args, &config.log_filter, Some(http))
    }

    /// Starts the `weir` binary with `args` (any command line, e.g. `run
    /// --brokers … --modules …` or `dev …`) and [`LOG_FILTER`], logging to
    /// a file of its own; `name` labels it. Its HTTP endpoint, if any, is
    /// not known ([`WeirProcess::readyz`] and [`WeirProcess::status`] answer
    /// `None`).
    pub fn spawn(name: &str, args: &[&OsStr]) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for the log");
        Self::spawn_in(dir, name, args, LOG_FILTER, None)
    }

    fn spawn_in(
        dir: tempfile::TempDir,
        name: &str,
        args: &[&OsStr],
        log_filter: &str,
        http: Option<SocketAddr>,
    ) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(weir_binary())
            .args(args)
            .env("RUST_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn weir");
        tracing::info!(name, pid = child.id(), http = ?http, log = %log.display(), "weir process started");
        Self {
            name: name.to_owned(),
            child,
            http,
            log,
            dir: Some(dir),
            exit: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The label given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its HTTP endpoint; panics for a process started by
    /// [`WeirProcess::spawn`].
    pub fn http(&self) -> SocketAddr {
        self.http
            .expect("the HTTP endpoint of a process started with a weir.toml")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Keeps its folder (`weir.toml` and the log) after the test instead of
    /// deleting it; returns the log's path.
    pub fn keep_log(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.log.clone()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.try_exit().is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with our own child's pid; it has not been reaped
        // (try_wait above returned None), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{} survived SIGKILL for 30 s", self.name))
    }

    /// SIGTERM, then wait up to `timeout` for it to exit; `None` if it did
    /// not (it is left running).
    pub fn terminate(&mut self, timeout: Duration) -> Option<Exit> {
        let t0 = Instant::now();
        self.signal(libc::SIGTERM);
        self.wait(timeout).map(|status| Exit {
            status,
            after: t0.elapsed(),
        })
    }

    /// SIGTERM; the process must exit 0 within `timeout`, or this panics
    /// with the log's tail. Returns the time from the signal to the exit.
    /// Blocking.
    pub fn stop(&mut self, timeout: Duration) -> Duration {
        let exit = self.terminate(timeout).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?} after SIGTERM; log tail:\n{}",
                self.name,
                self.log_tail(30)
            )
        });
        assert!(
            exit.status.success(),
            "{} exited with {} after SIGTERM; log tail:\n{}",
            self.name,
            exit.status,
            self.log_tail(30)
        );
        exit.after
    }

    /// Waits up to `timeout` for the process to exit by itself; panics
    /// with the log's tail if it does not (dropping it kills it). Blocking.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait(timeout).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?}; log tail:\n{}",
                self.name,
                self.log_tail(30)
            )
        })
    }

    /// `GET /readyz`: `(status, body)`, or `None` when nothing answers.
    pub fn readyz(&self) -> Option<(u16, String)> {
        http_get(self.http?, "/readyz").ok().map(|(s, _, b)| (s, b))
    }

    /// `GET /status` parsed as JSON, or `None` when nothing answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, _, body) = http_get(self.http?, "/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Polls `/readyz` until it answers 200; panics (with the log's tail)
    /// after `timeout` or when the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(u16, String)>;
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited with {status} before it was ready; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            match self.readyz() {
                Some((200, _)) => return,
                other => last = other,
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?} (last /readyz: {last:?}); log tail:\n{}",
                self.name,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `fields` of every JSON log line whose message is `message`, in
    /// order (needs [`ProcessConfig::json_log`]).
    pub fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|mut v| v["fields"].take())
            .filter(|fields| fields["message"] == message)
            .collect()
    }

    /// The input partitions of `topic` this process owned when its log
    /// ended, or was still revoking: its "partitions assigned" lines minus
    /// its "partitions revoked" lines, in order, plus those of a revocation
    /// not followed by an assignment (the log line comes before the
    /// revocation's commit, which a kill may have cut short).
    pub fn owned_partitions(&self, topic: &str) -> std::collections::BTreeSet<i32> {
        let mut owned = std::collections::BTreeSet::new();
        let mut revoking = std::collections::BTreeSet::new();
        for line in self.log().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let fields = &v["fields"];
            let assign = match fields["message"].as_str() {
                Some("partitions assigned") => true,
                Some("partitions revoked") => false,
                _ => continue,
            };
            let list = parse_partitions(fields["partitions"].as_str().unwrap_or_default(), topic);
            if assign {
                revoking.clear();
                owned.extend(list);
            } else {
                for p in list {
                    owned.remove(&p);
                    revoking.insert(p);
                }
            }
        }
        owned.extend(revoking);
        owned
    }
}

/// Partitions of `topic` in weir's `topic[p]@offset,topic[q]` notation.
fn parse_partitions(list: &str, topic: &str) -> Vec<i32> {
    list.split(',')
        .filter_map(|item| {
            let rest = item.trim().strip_prefix(topic)?.strip_prefix('[')?;
            rest.split(']').next()?.parse().ok()
        })
        .collect()
}

impl Drop for WeirProcess {
    /// Kills the process if it still runs. Its folder (`weir.toml` and log)
    /// is kept when the test is failing or `WEIR_KEEP_LOGS` is set.
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("WEIR_KEEP_LOGS").is_some() {
            let log = self.keep_log();
            tracing::warn!(name = %self.name, log = %log.display(), "weir process log kept");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_are_parsed_from_weir_notation() {
        assert_eq!(
            super::parse_partitions("in-1[0]@5,in-1[3],in-10[2]", "in-1"),
            vec![0, 3]
        );
    }
}
