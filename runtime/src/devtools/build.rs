//! `weir build`: builds the project in a directory into `dist/<name>.wasm`
//! plus `dist/<name>.toml`, then checks the component like `weir check`.
//!
//! The module name is the stem of the project's manifest (the `*.toml` in
//! its root with `input-topics`). Rust projects (a `Cargo.toml`) build with
//! `cargo build --target wasm32-wasip2 --release`; other languages with the
//! command in [`TOOLCHAINS`], the one table to adjust when a toolchain's
//! command line changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::ModuleOptions;

/// The Rust target components are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// How a non-Rust project is recognised and built.
#[derive(Debug)]
pub struct Toolchain {
    /// Language name, as in `weir new --lang`.
    pub lang: &'static str,
    /// A file in the project root that identifies the language.
    pub marker: &'static str,
    /// Where to look for the tool, in order: a path relative to the project
    /// (a local virtualenv or node_modules), `{repo}/...` in the weir source
    /// tree this binary was built from (where its scripts install the
    /// tools), or a bare name on `PATH`.
    pub tool: &'static [&'static str],
    /// The arguments, split at spaces; `{out}` is the component path,
    /// `{name}` the module name, `{world}` the world the app exports
    /// ([`Toolchain::world`]).
    pub args: &'static str,
    /// Line starts (after leading spaces are trimmed) that define the
    /// per-event export, and the batch export, in the marker file.
    pub exports: [&'static [&'static str]; 2],
    /// How to install the tool when none is found.
    pub install: &'static str,
}

/// Non-Rust languages, with the commands of `scripts/build-polyglot.sh`.
/// Both build against the project's `wit/` directory, and
/// the helper library sits in the project root (templates ship copies of
/// both, see `.weir-embed` in `runtime/build.rs`).
pub const TOOLCHAINS: &[Toolchain] = &[
    Toolchain {
        lang: "python",
        marker: "app.py",
        tool: &[
            ".venv/bin/componentize-py",
            "{repo}/.venv/bin/componentize-py",
            "componentize-py",
        ],
        args: "-d wit -w {world} componentize -p . app -o {out}",
        exports: [
            &["Handler =", "Handler=", "class Handler"],
            &["BatchHandler =", "BatchHandler=", "class BatchHandler"],
        ],
        install: "python3 -m venv .venv && .venv/bin/pip install componentize-py \
                  (or run scripts/build-polyglot.sh in the weir checkout)",
    },
    Toolchain {
        lang: "js",
        marker: "app.js",
        tool: &[
            "node_modules/.bin/componentize-js",
            "{repo}/sdk/js/node_modules/.bin/componentize-js",
            "componentize-js",
        ],
        // `-d`: no fetch or HTTP server support (weir links no wasi:http).
        args: "app.js --wit wit -n {world} -d http fetch-event -o {out}",
        exports: [
            &[
                "export const handler",
                "export let handler",
                "export var handler",
                "export function handler",
            ],
            &[
                "export const batchHandler",
                "export let batchHandler",
                "export var batchHandler",
                "export function batchHandler",
            ],
        ],
        install: "npm install --save-dev @bytecodealliance/componentize-js \
                  @bytecodealliance/preview2-shim (or run scripts/build-polyglot.sh in the weir \
                  checkout)",
    },
];

impl Toolchain {
    /// The world an app (the marker file's text) exports: `batch-consumer`
    /// when it defines only the batch export, `consumer` otherwise (an app
    /// with both builds as `consumer`; `scripts/build-polyglot.sh` builds
    /// its `-batch` twin too).
    pub fn world(&self, app: &str) -> &'static str {
        let defines = |starts: &[&str]| {
            app.lines().any(|line| {
                let line = line.trim_start();
                starts.iter().any(|s| {
                    line.strip_prefix(s).is_some_and(|rest| {
                        // `Handler` must not match `Handlers = ...`.
                        !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
            })
        };
        if defines(self.exports[1]) && !defines(self.exports[0]) {
            "batch-consumer"
        } else {
            "consumer"
        }
    }
}

/// Builds the project in `dir`, writes the check report to `out`, and
/// returns the installed component's path.
pub fn build(dir: &Path, out: &mut dyn Write) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open project directory `{}`", dir.display()))?;
    let (name, manifest) = find_manifest(&dir)?;
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist)
        .with_context(|| format!("cannot create `{}`", dist.display()))?;
    let wasm = dist.join(format!("{name}.wasm"));
    if dir.join("Cargo.toml").is_file() {
        let built = cargo_build(&dir)?;
        std::fs::copy(&built, &wasm).with_context(|| {
            format!("cannot copy `{}` to `{}`", built.display(), wasm.display())
        })?;
    } else if let Some(tc) = TOOLCHAINS.iter().find(|t| dir.join(t.marker).is_file()) {
        run_toolchain(tc, &dir, &name, &wasm)?;
    } else {
        let markers: Vec<&str> = TOOLCHAINS.iter().map(|t| t.marker).collect();
        bail!(
            "cannot tell the language of `{}`: expected Cargo.toml (Rust) or one of {markers:?}",
            dir.display()
        );
    }
    std::fs::copy(&manifest, dist.join(format!("{name}.toml"))).with_context(|| {
        format!(
            "cannot copy `{}` to `{}`",
            manifest.display(),
            dist.display()
        )
    })?;
    tracing::info!(component = %wasm.display(), "built; checking it");
    let opts = ModuleOptions {
        wasm: wasm.clone(),
        ..ModuleOptions::default()
    };
    super::check::check(&opts, true, out)?;
    Ok(wasm)
}

/// The project's manifest: the one `*.toml` in `dir` with `input-topics`.
fn find_manifest(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml")
            && std::fs::read_to_string(&path).is_ok_and(|t| t.contains("input-topics"))
        {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok((crate::engine::module_name(one), one.clone())),
        [] => bail!(
            "no module manifest in `{}`: add `<name>.toml` with `input-topics = [...]` (weir \
             build names the component after it and installs it next to the component)",
            dir.display()
        ),
        many => bail!(
            "several module manifests in `{}`: {many:?}; keep one",
            dir.display()
        ),
    }
}

fn cargo_build(dir: &Path) -> anyhow::Result<PathBuf> {
    check_rust_target()?;
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", WASM_TARGET])
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .context("cannot run `cargo` (is Rust installed? see https://rustup.rs)")?;
    if !status.success() {
        bail!(
            "`cargo build --release --target {WASM_TARGET}` failed in `{}` ({status}); if it \
             says the target may not be installed, run `rustup target add {WASM_TARGET}`",
            dir.display()
        );
    }
    let meta = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .context("cannot run `cargo metadata`")?;
    if !meta.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&meta.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&meta.stdout).context("`cargo metadata` output")?;
    let target_dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata: no target_directory")?;
    let lib = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .context("the crate has no `[lib] crate-type = [\"cdylib\"]`: a component is a cdylib")?;
    let artifact = Path::new(target_dir)
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.replace('-', "_")));
    anyhow::ensure!(
        artifact.is_file(),
        "cargo succeeded but `{}` is missing",
        artifact.display()
    );
    Ok(artifact)
}

/// Fails with the fix when rustup manages the toolchain and the target is
/// not installed (without rustup, cargo's own error tells).
fn check_rust_target() -> anyhow::Result<()> {
    let Ok(listed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&listed.stdout);
    if listed.status.success() && !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        bail!(
            "the Rust target {WASM_TARGET} is not installed, so cargo cannot build a component: \
             run `rustup target add {WASM_TARGET}`"
        );
    }
    Ok(())
}

fn run_toolchain(tc: &Toolchain, dir: &Path, name: &str, wasm: &Path) -> anyhow::Result<()> {
    let tool = tc
        .tool
        .iter()
        .map(|t| {
            if let Some(rest) = t.strip_prefix("{repo}/") {
                source_tree().join(rest)
            } else if t.contains('/') {
                dir.join(t)
            } else {
                PathBuf::from(t)
            }
        })
        .find(|t| t.is_file() || which(t))
        .with_context(|| {
            format!(
                "the {} toolchain `{}` is not installed: in `{}` run `{}`",
                tc.lang,
                tc.tool.last().copied().unwrap_or_default(),
                dir.display(),
                tc.install
            )
        })?;
    let out = wasm.display().to_string();
    let app = std::fs::read_to_string(dir.join(tc.marker))
        .with_context(|| format!("cannot read `{}`", dir.join(tc.marker).display()))?;
    let world = tc.world(&app);
    let args: Vec<String> = tc
        .args
        .split_whitespace()
        .map(|a| {
            a.replace("{out}", &out)
                .replace("{name}", name)
                .replace("{world}", world)
        })
        .collect();
    tracing::info!(tool = %tool.display(), args = ?args, "building");
    let status = Command::new(&tool)
        .args(&args)
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run `{}`", tool.display()))?;
    if !status.success() {
        bail!(
            "`{} {}` failed in `{}` ({status})",
            tool.display(),
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}

/// Whether a bare command name is on `PATH`.
/// The weir source tree this binary was built from (where
/// `scripts/build-polyglot.sh` installs the tools).
fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn which(tool: &Path) -> bool {
    tool.components().count() == 1
        && std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let tc = Toolchain {
            lang: "python",
            marker: "app.py",
            tool: &[
                "no-such-dir/bin/no-such-tool",
                "{repo}/no-such-tool",
                "no-such-tool-on-path",
            ],
            args: "",
            exports: [&[], &[]],
            install: "pip install no-such-tool",
        };
        let dir = std::env::temp_dir();
        let err = run_toolchain(&tc, &dir, "m", &dir.join("m.wasm")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("the python toolchain `no-such-tool-on-path` is not installed"),
            "{msg}"
        );
        assert!(msg.contains("run `pip install no-such-tool`"), "{msg}");
    }

    #[test]
    fn the_world_follows_the_export_the_app_defines() {
        let (python, js) = (&TOOLCHAINS[0], &TOOLCHAINS[1]);
        assert_eq!(
            python.world("Handler = weir_sdk.export(Module)\n"),
            "consumer"
        );
        assert_eq!(
            python.world("# Handler = ...\nBatchHandler = weir_sdk.export_batch(Module)\n"),
            "batch-consumer"
        );
        assert_eq!(
            python.world("class BatchHandler(Base):\n    pass\nHandler = x\n"),
            "consumer",
            "both: the per-event world"
        );
        assert_eq!(python.world("Handlers = 1\n"), "consumer");
        assert_eq!(
            js.world("export const batchHandler = exportBatchConsumer(m);\n"),
            "batch-consumer"
        );
        assert_eq!(
            js.world("export const handler = exportConsumer(m);\n"),
            "consumer"
        );
    }

    #[test]
    fn the_manifest_names_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_manifest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no module manifest"), "{err}");
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(dir.path().join("my-mod.toml"), "input-topics = [\"a\"]\n").unwrap();
        let (name, path) = find_manifest(dir.path()).unwrap();
        assert_eq!(
            (name.as_str(), path),
            ("my-mod", dir.path().join("my-mod.toml"))
        );
    }
}
