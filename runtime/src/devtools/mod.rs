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
pub(crate) mod events;
pub mod new;
pub mod replay;
mod session;
pub mod state_file;

use std::path::PathBuf;

use crate::config::RunConfig;
use crate::engine::{LoadError, WasmEngine};
use crate::manifest::Manifest;
use crate::modules::ModuleSource;

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
    /// The runtime configuration the module would run under.
    pub fn run_config(&self) -> anyhow::Result<RunConfig> {
        Ok(match &self.config {
            Some(path) => RunConfig::from_file(path)?,
            None => RunConfig::default(),
        })
    }

    /// Reads the component (refusing one over `max-module-bytes`) and its
    /// manifest like `weir run` does (runtime `[limits]` as defaults), with
    /// [`ModuleSource`]; the manifest is `None` when there is no manifest
    /// file. Errors come with a hint ([`check::CheckError::Load`]).
    pub fn read(
        &self,
        config: &RunConfig,
    ) -> Result<(ModuleSource, Option<Manifest>), check::CheckError> {
        let source = ModuleSource::read(
            &self.wasm,
            self.manifest.as_deref(),
            config.max_module_bytes,
        )?;
        let manifest = source.manifest(&config.limits).map_err(LoadError::from)?;
        Ok((source, manifest))
    }

    /// The engine `weir run` would use with this configuration.
    pub fn engine(config: &RunConfig) -> anyhow::Result<WasmEngine> {
        WasmEngine::with_max_wasm_stack(config.max_wasm_stack)
    }
}
