//! The modules folder: finding components and loading each with its manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{LoadError, LoadedModule, WasmEngine};

/// The outcome of loading a folder: what loaded and what did not.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Modules ready to run.
    pub loaded: Vec<Arc<LoadedModule>>,
    /// Files that could not be loaded, each error naming its file.
    pub failed: Vec<LoadError>,
}

/// The `.wasm` files of `dir`, sorted by name. Precompiled artifacts
/// (`.cwasm`) are never loaded: deserialising native code from a watched
/// folder would let anyone who can write there run code in weir.
pub fn component_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read modules folder `{}`: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| anyhow::anyhow!("cannot read modules folder `{}`: {e}", dir.display()))?
            .path();
        // Hidden files are writers' temporaries (and Kubernetes' `..data`).
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("wasm") if path.is_file() => files.push(path),
            Some("cwasm") => tracing::warn!(path = %path.display(),
                "ignoring precompiled artifact: only .wasm components are loaded"),
            _ => {}
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every component of `dir`. Blocking (compiles); failures are
/// collected, not fatal, so one broken file does not stop the others.
pub fn load_dir(engine: &WasmEngine, dir: &Path, max_bytes: u64) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport::default();
    for path in component_files(dir)? {
        match engine.load(&path, max_bytes) {
            Ok(module) => {
                tracing::info!(module = &*module.name, path = %path.display(),
                    digest = module.short_digest(), "module loaded");
                report.loaded.push(Arc::new(module));
            }
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "module not loaded");
                report.failed.push(err);
            }
        }
    }
    Ok(report)
}
