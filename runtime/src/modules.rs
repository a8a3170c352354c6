//! The modules folder: finding components and loading each with its manifest.
//!
//! Every path that loads a module reads it through [`ModuleSource`]: `weir
//! run` at start and on reload (the supervisor in [`crate::runtime`]), `weir
//! check`, `weir replay`, [`load_dir`] and [`WasmEngine::load`]. It reads the
//! component within the `max-module-bytes` cap and the manifest text;
//! [`ModuleSource::manifest`] parses and validates the manifest with the
//! runtime config's `[limits]` as defaults, and [`ModuleSource::compile`]
//! hands both to [`WasmEngine::load_bytes`]. Every error names its file.
//! [`entries`] lists what `weir run` runs: the folder's components and the
//! modules pulled from OCI registries ([`crate::oci`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{LoadError, LoadedModule, WasmEngine, module_name};
use crate::manifest::{Limits, Manifest, ManifestError};

/// The outcome of loading a folder: what loaded and what did not.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Modules ready to run.
    pub loaded: Vec<Arc<LoadedModule>>,
    /// Files that could not be loaded, each error naming its file.
    pub failed: Vec<LoadError>,
}

/// A module's files as read from disk, not compiled yet: the component's
/// bytes and its manifest's text.
#[derive(Debug, Clone)]
pub struct ModuleSource {
    /// The module name: the component's file stem.
    pub name: Arc<str>,
    /// The component file.
    pub path: PathBuf,
    /// The component's bytes, no more than the size cap.
    pub bytes: Vec<u8>,
    /// The manifest file: the one given, or the `.toml` next to the
    /// component.
    pub manifest_path: PathBuf,
    /// The manifest's text; `None` when that file does not exist.
    pub manifest_text: Option<String>,
}

impl ModuleSource {
    /// Reads the component at `wasm`, refusing one over `max_bytes`
    /// ([`LoadError::TooLarge`]), then the text of its manifest: `manifest`,
    /// or the `.toml` next to the component. A missing manifest is not an
    /// error here; see [`ModuleSource::require_manifest`].
    pub fn read(wasm: &Path, manifest: Option<&Path>, max_bytes: u64) -> Result<Self, LoadError> {
        let bytes = read_capped(wasm, max_bytes)?;
        let manifest_path = manifest.map_or_else(|| wasm.with_extension("toml"), Path::to_path_buf);
        let manifest_text = Manifest::read_text(&manifest_path)?;
        Ok(Self {
            name: module_name(wasm).into(),
            path: wasm.to_path_buf(),
            bytes,
            manifest_path,
            manifest_text,
        })
    }

    /// The manifest, parsed and validated, with `defaults` (the runtime
    /// config's `[limits]`) for the limits its own `[limits]` leaves out;
    /// `Ok(None)` when there is no manifest file. A module that would
    /// consume what it writes is refused unless its manifest sets
    /// `allow-cycles` ([`Manifest::check_cycles`]).
    pub fn manifest(&self, defaults: &Limits) -> Result<Option<Manifest>, ManifestError> {
        let Some(text) = self.manifest_text.as_deref() else {
            return Ok(None);
        };
        let manifest = Manifest::parse_with(text, &self.manifest_path, defaults)?;
        manifest.check_cycles(&self.name, &self.manifest_path)?;
        Ok(Some(manifest))
    }

    /// [`ModuleSource::manifest`], failing with [`ManifestError::Missing`]
    /// when there is no manifest file (`weir run` needs one).
    pub fn require_manifest(&self, defaults: &Limits) -> Result<Manifest, ManifestError> {
        self.manifest(defaults)?
            .ok_or_else(|| ManifestError::Missing(self.manifest_path.clone()))
    }

    /// Compiles and validates the component with `manifest`; see
    /// [`WasmEngine::load_bytes`]. Blocking.
    pub fn compile(
        &self,
        engine: &WasmEngine,
        manifest: Manifest,
    ) -> Result<LoadedModule, LoadError> {
        engine.load_bytes(self.name.clone(), &self.path, &self.bytes, manifest)
    }

    /// Loads the module as `weir run` does: the manifest is required and
    /// gets `defaults` as in [`ModuleSource::manifest`], then the component
    /// is compiled. Blocking.
    pub fn load(&self, engine: &WasmEngine, defaults: &Limits) -> Result<LoadedModule, LoadError> {
        let manifest = self.require_manifest(defaults)?;
        self.compile(engine, manifest)
    }
}

/// Reads and loads the component at `wasm` with the manifest next to it, as
/// `weir run` does: [`ModuleSource::read`] within `max_bytes`, then
/// [`ModuleSource::load`] with `defaults`. Blocking (compiles).
pub fn load_module(
    engine: &WasmEngine,
    wasm: &Path,
    max_bytes: u64,
    defaults: &Limits,
) -> Result<LoadedModule, LoadError> {
    ModuleSource::read(wasm, None, max_bytes)?.load(engine, defaults)
}

/// The bytes of `path`, refusing a file over `max` bytes before reading it.
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > max {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size,
            max,
        });
    }
    std::fs::read(path).map_err(read_err)
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

/// A module to run: its component and manifest files, from the modules
/// folder or pulled from an OCI registry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The module name.
    pub name: String,
    /// The component file.
    pub wasm: PathBuf,
    /// The manifest file; `None`: the `.toml` next to the component.
    pub manifest: Option<PathBuf>,
    /// The pulled version, for a module from a registry.
    pub oci: Option<crate::oci::Pulled>,
}

/// The modules to run: the components of `dir`, then the current versions
/// of `catalog`. An OCI module named like a file of the folder is skipped
/// with a warning: the file runs.
pub fn entries(
    dir: Option<&Path>,
    catalog: Option<&crate::oci::Catalog>,
) -> anyhow::Result<Vec<Entry>> {
    let files = dir.map(component_files).transpose()?;
    let mut entries: Vec<Entry> = (files.into_iter().flatten())
        .map(|wasm| Entry {
            name: module_name(&wasm),
            wasm,
            manifest: None,
            oci: None,
        })
        .collect();
    for pulled in catalog.iter().flat_map(|catalog| catalog.modules()) {
        if entries.iter().any(|e| e.name == pulled.name) {
            tracing::warn!(module = %pulled.name, reference = %pulled.reference,
                "an OCI module is named like a file of the modules folder; the file runs");
            continue;
        }
        entries.push(Entry {
            name: pulled.name.clone(),
            wasm: pulled.wasm.clone(),
            manifest: Some(pulled.manifest.clone()),
            oci: Some(pulled),
        });
    }
    Ok(entries)
}

/// Loads every component of `dir` with [`load_module`] (default limits).
/// Blocking (compiles); failures are collected, not fatal, so one broken
/// file does not stop the others.
pub fn load_dir(engine: &WasmEngine, dir: &Path, max_bytes: u64) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport::default();
    for path in component_files(dir)? {
        match load_module(engine, &path, max_bytes, &Limits::default()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "input-topics = [\"in\"]\noutput-topics = [\"out\"]\n";
    /// The header of a component; the rest is not needed before compiling.
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    #[test]
    fn a_missing_component_names_the_file() {
        let dir = folder(&[("m.toml", MANIFEST.as_bytes())]);
        let wasm = dir.path().join("m.wasm");
        let err = ModuleSource::read(&wasm, None, 1 << 20).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot read `{}`: ", wasm.display())),
            "{text}"
        );
    }

    #[test]
    fn a_component_over_the_cap_is_refused_with_both_sizes() {
        let dir = folder(&[("m.wasm", &[0; 11]), ("m.toml", MANIFEST.as_bytes())]);
        let wasm = dir.path().join("m.wasm");
        let err = ModuleSource::read(&wasm, None, 10).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::TooLarge {
                    size: 11,
                    max: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is 11 bytes, over the 10-byte limit (`max-module-bytes`)",
                wasm.display()
            )
        );
        assert!(
            ModuleSource::read(&wasm, None, 11).is_ok(),
            "the cap itself is allowed"
        );
    }

    #[test]
    fn a_bad_manifest_names_the_manifest_file() {
        let dir = folder(&[
            ("m.wasm", COMPONENT),
            ("m.toml", b"input-topics = [\"in\"]\nbogus = 1\n"),
        ]);
        let source = ModuleSource::read(&dir.path().join("m.wasm"), None, 1 << 20).unwrap();
        let err = source.require_manifest(&Limits::default()).unwrap_err();
        let text = err.to_string();
        let toml = dir.path().join("m.toml");
        assert!(
            text.starts_with(&format!("invalid manifest `{}`: ", toml.display())),
            "{text}"
        );
        assert!(text.contains("unknown field `bogus`"), "{text}");
        // As a load error, the text is the same.
        assert_eq!(LoadError::from(err).to_string(), text);
    }

    #[test]
    fn a_module_consuming_its_own_output_is_refused_unless_it_opts_in() {
        let looping = "input-topics = [\"t\"]\noutput-topics = [\"t\"]\n";
        let dir = folder(&[("loop.wasm", COMPONENT), ("loop.toml", looping.as_bytes())]);
        let source = ModuleSource::read(&dir.path().join("loop.wasm"), None, 1 << 20).unwrap();
        let err = source.require_manifest(&Limits::default()).unwrap_err();
        let text = err.to_string();
        let toml = dir.path().join("loop.toml");
        assert!(
            text.starts_with(&format!(
                "invalid manifest `{}`: input topic `t` is also in `output-topics`",
                toml.display()
            )),
            "{text}"
        );
        assert!(text.contains("set `allow-cycles = true`"), "{text}");
        std::fs::write(&toml, format!("allow-cycles = true\n{looping}")).unwrap();
        let source = ModuleSource::read(&dir.path().join("loop.wasm"), None, 1 << 20).unwrap();
        assert!(
            source
                .require_manifest(&Limits::default())
                .unwrap()
                .allow_cycles
        );
    }

    #[test]
    fn a_missing_manifest_is_none_until_required() {
        let dir = folder(&[("m.wasm", COMPONENT)]);
        let source = ModuleSource::read(&dir.path().join("m.wasm"), None, 1 << 20).unwrap();
        assert_eq!(source.manifest(&Limits::default()).unwrap(), None);
        let err = source.require_manifest(&Limits::default()).unwrap_err();
        assert!(matches!(err, ManifestError::Missing(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("`{}` not found", source.manifest_path.display()))
        );
    }

    #[test]
    fn a_good_module_reads_with_its_manifest_and_the_runtime_defaults() {
        let dir = folder(&[
            ("enrich.wasm", COMPONENT),
            (
                "other.toml",
                format!("{MANIFEST}[limits]\nmemory-mib = 32\n").as_bytes(),
            ),
        ]);
        let wasm = dir.path().join("enrich.wasm");
        let toml = dir.path().join("other.toml");
        let source = ModuleSource::read(&wasm, Some(&toml), 1 << 20).unwrap();
        assert_eq!(&*source.name, "enrich");
        assert_eq!(source.path, wasm);
        assert_eq!(source.bytes, COMPONENT);
        assert_eq!(source.manifest_path, toml);
        let defaults = Limits {
            max_batch: 7,
            ..Limits::default()
        };
        let manifest = source.require_manifest(&defaults).unwrap();
        assert_eq!(manifest.input_topics, ["in"]);
        assert_eq!(manifest.limits.memory_mib, 32, "the manifest's own");
        assert_eq!(manifest.limits.max_batch, 7, "the runtime's default");
        // The bytes reach the engine: an empty component compiles, and is
        // then refused for exporting no handler, naming the component.
        let engine = WasmEngine::new().unwrap();
        let err = load_module(&engine, &wasm, 1 << 20, &defaults).unwrap_err();
        assert!(
            matches!(err, LoadError::Manifest(ManifestError::Missing(_))),
            "{err:?}"
        );
        let err = source.compile(&engine, manifest).unwrap_err();
        let LoadError::Contract { path, reason } = err else {
            panic!("{err:?}");
        };
        assert_eq!(path, wasm);
        assert!(reason.contains("exports neither"), "{reason}");
    }
}
