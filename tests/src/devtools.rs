//! Running the built `weir` binary to completion: the developer-loop
//! commands (`weir new|build|check|replay`), `weir produce|consume`, and
//! `weir run` where it is expected to exit by itself.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::{ModulesDir, repo_root, weir_binary};

/// The result of one `weir` invocation.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error (the log).
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless weir exited 0.
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "weir failed:\n{self}");
        self
    }

    /// Panics unless weir failed with exit code 1 and stderr contains every
    /// one of `needles`.
    pub fn failure(self, needles: &[&str]) -> Self {
        self.exited(1, needles)
    }

    /// Panics unless weir exited with `code` and stderr contains every one
    /// of `needles`.
    pub fn exited(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(self.code, Some(code), "expected exit {code}:\n{self}");
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{self}"
            );
        }
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `weir <args>` in `dir` and waits.
pub fn weir(dir: &Path, args: &[&str]) -> Run {
    weir_with_env(dir, args, &[])
}

/// [`weir`] with extra environment variables.
pub fn weir_with_env(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Run {
    command(dir, args, env).output().expect("run weir").into()
}

/// [`weir`] with `input` on its standard input.
pub fn weir_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Run {
    let mut child = command(dir, args, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    child
        .stdin
        .take()
        .expect("weir's stdin")
        .write_all(input)
        .expect("write to weir's stdin");
    child.wait_with_output().expect("run weir").into()
}

fn command(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Command {
    let mut command = Command::new(weir_binary());
    command
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env("CARGO_TERM_COLOR", "never")
        // Template builds reuse the guest examples' target dir, where
        // scripts/build-guests.sh already compiled wit-bindgen, serde and
        // friends for wasm32-wasip2 in the same release profile: a new
        // project then builds in seconds instead of about a minute.
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("guest-examples/target"),
        );
    command
}

/// `weir replay` of `component` (installed as module `m`) with `manifest`
/// on the JSON-lines `events`: the parsed output lines.
pub fn replay(component: &Path, manifest: &str, events: &str) -> Vec<serde_json::Value> {
    let dir = ModulesDir::new();
    dir.install("m", component, manifest)
        .write("events.jsonl", events.as_bytes());
    let run = weir(
        dir.path(),
        &["replay", "m.wasm", "--events", "events.jsonl"],
    )
    .success();
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{run}")))
        .collect()
}
