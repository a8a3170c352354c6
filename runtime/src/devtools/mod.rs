//! The developer loop: `weir new`, `weir build`, `weir check` and
//! `weir replay`.
//!
//! - [`new`]: a project from a template embedded in the binary.
//! - [`build`]: the project's language toolchain, producing `dist/`.
//! - [`check`]: what `weir run` would make of a component, without Kafka.
//! - [`replay`]: a component run offline on recorded events, with the limits
//!   and emit checks of `weir run`.
//!
//! Each writes its report to the writer it is given (the CLI passes
//! stdout); diagnostics go to the log on stderr.

pub mod build;
pub mod check;
mod events;
pub mod new;
pub mod replay;
mod session;

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::RunConfig;
use crate::engine::WasmEngine;
use crate::manifest::{Manifest, ManifestError};

/// How a component is found and configured, as `weir run` would.
#[derive(Debug, Clone, Default)]
pub struct ModuleOptions {
    /// The component file.
    pub wasm: PathBuf,
    /// Its manifest; default: the `.toml` next to the component.
    pub manifest: Option<PathBuf>,
    /// A `weir.toml` whose `[limits]`, `max-wasm-stack` and
    /// `max-module-bytes` apply, as they would under `weir run --config`.
    pub config: Option<PathBuf>,
}

impl ModuleOptions {
    /// The manifest path: the explicit one, or `<component>.toml`.
    pub fn manifest_path(&self) -> PathBuf {
        self.manifest
            .clone()
            .unwrap_or_else(|| self.wasm.with_extension("toml"))
    }

    /// The runtime configuration the module would run under.
    pub fn run_config(&self) -> anyhow::Result<RunConfig> {
        Ok(match &self.config {
            Some(path) => RunConfig::from_file(path)?,
            None => RunConfig::default(),
        })
    }

    /// Reads the manifest like `weir run` does (runtime `[limits]` as
    /// defaults); `Ok(None)` when there is no manifest file.
    pub fn read_manifest(&self, config: &RunConfig) -> Result<Option<Manifest>, ManifestError> {
        let path = self.manifest_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Manifest::parse_with(&text, &path, &config.limits).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Read { path, source }),
        }
    }

    /// Reads the component, refusing one over `max-module-bytes`.
    pub fn read_component(&self, config: &RunConfig) -> anyhow::Result<Vec<u8>> {
        let path = &self.wasm;
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?
            .len();
        anyhow::ensure!(
            size <= config.max_module_bytes,
            "`{}` is {size} bytes, over the {}-byte limit (`max-module-bytes`)",
            path.display(),
            config.max_module_bytes
        );
        std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
    }

    /// The engine `weir run` would use with this configuration.
    pub fn engine(config: &RunConfig) -> anyhow::Result<WasmEngine> {
        WasmEngine::with_max_wasm_stack(config.max_wasm_stack)
    }
}
