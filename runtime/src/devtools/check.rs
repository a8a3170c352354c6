//! `weir check <file.wasm>`: which world a component satisfies, what it
//! imports and exports, whether weir can link every import, and the manifest
//! it would run with — the same validation `weir run` applies at load.

use std::io::Write;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::ModuleOptions;
use crate::engine::LoadError;
use crate::manifest::Manifest;

/// What `weir check` found wrong, with how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// weir would refuse to load the component.
    #[error("{error}\nhint: {hint}")]
    Load {
        /// The load error, naming the file.
        error: LoadError,
        /// How to fix it.
        hint: &'static str,
    },
    /// There is no manifest and `--require-manifest` was given.
    #[error(
        "manifest `{0}` not found: `weir run` loads a module only with a `<name>.toml` next to \
         its `.wasm`\nhint: create it with at least `input-topics = [\"<topic>\"]` (and \
         `output-topics` for every topic the module emits to)"
    )]
    MissingManifest(String),
}

impl From<LoadError> for CheckError {
    /// The load error with the [`hint`] for it.
    fn from(error: LoadError) -> Self {
        Self::Load {
            hint: hint(&error),
            error,
        }
    }
}

/// Checks the component of `opts` and writes the report to `out`. Fails
/// with a [`CheckError`] (after writing what it could) when `weir run` would
/// refuse the module; a missing manifest fails only if `require_manifest`.
pub fn check(
    opts: &ModuleOptions,
    require_manifest: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let config = opts.run_config()?;
    let (source, found) = opts.read(&config)?;
    let engine = ModuleOptions::engine(&config)?;
    writeln!(
        out,
        "component: {} ({} bytes)",
        source.path.display(),
        source.bytes.len()
    )?;

    // List what the component declares before judging it, so that a
    // component weir refuses still shows its imports and exports.
    if source.bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]) {
        match engine.compile_component(&source.bytes) {
            Ok(component) => list_items(engine.engine(), &component, out)?,
            Err(err) => writeln!(out, "cannot compile: {err:#}")?,
        }
    }
    let manifest = found
        .clone()
        .unwrap_or_else(|| placeholder_manifest(&config.limits));
    let loaded = source
        .compile(&engine, manifest)
        .map_err(CheckError::from)?;
    let manifest_path = &source.manifest_path;
    let version = loaded.pre.contract();
    let world = if loaded.pre.is_batch() {
        format!(
            "batch-consumer (exports weir:consumer/batch-handler@{version}; up to \
             limits.max-batch = {} events per call)",
            loaded.manifest.limits.max_batch
        )
    } else {
        format!("consumer (exports weir:consumer/handler@{version})")
    };
    writeln!(out, "world: {world}")?;
    if let Some(state) = &loaded.manifest.state {
        writeln!(
            out,
            "state: yes (changelog topic `{}`)",
            state.changelog_topic(&loaded.name)
        )?;
    }
    writeln!(out, "links: ok (weir provides every import)")?;
    writeln!(out, "sha256: {}", loaded.digest)?;
    match &found {
        Some(_) => writeln!(out, "manifest: {}", manifest_path.display())?,
        None => writeln!(
            out,
            "manifest: none (`{}` not found; `weir run` needs one: the defaults below apply to \
             what it does not set)",
            manifest_path.display()
        )?,
    }
    writeln!(out, "--- effective manifest ---")?;
    let name = &source.name;
    let mut effective = loaded.manifest.clone();
    effective.group_id = Some(effective.group_id(name));
    effective.on_failure.dead_letter_topic = Some(effective.on_failure.dead_letter_topic(name));
    write!(out, "{}", toml::to_string(&effective)?)?;
    if found.is_none() && require_manifest {
        return Err(CheckError::MissingManifest(manifest_path.display().to_string()).into());
    }
    Ok(())
}

/// The manifest shown when there is none: every default, no topics.
fn placeholder_manifest(limits: &crate::manifest::Limits) -> Manifest {
    Manifest {
        input_topics: Vec::new(),
        output_topics: Vec::new(),
        allow_cycles: false,
        group_id: None,
        offset_reset: Default::default(),
        start_at: None,
        limits: limits.clone(),
        retry: Default::default(),
        on_failure: Default::default(),
        delivery: Default::default(),
        state: None,
        config: Default::default(),
    }
}

/// How to fix a load error a newcomer meets.
pub(super) fn hint(error: &LoadError) -> &'static str {
    match error {
        LoadError::CoreModule { .. } => {
            "build with `cargo build --target wasm32-wasip2 --release` (install the target with \
             `rustup target add wasm32-wasip2`), or wrap a core module with `wasm-tools component new`"
        }
        LoadError::NotWasm { .. } => {
            "pass the `.wasm` component a build produced (`weir build` writes it to `dist/`)"
        }
        LoadError::Contract { reason, .. } if reason.contains("exports neither") => {
            "a weir module is built against wit/consumer.wit and exports \
             `weir:consumer/handler@0.2.0` (world `consumer`) or \
             `weir:consumer/batch-handler@0.2.0` (world `batch-consumer`), or their 0.1.0 \
             versions; with weir-sdk end \
             src/lib.rs with `weir_sdk::export_consumer!(YourType);` \
             (or `export_batch_consumer!`); with componentize-py or jco use world `consumer`"
        }
        LoadError::Contract { .. } => {
            "weir does not provide the import named above (README, \"Sandbox\", lists the WASI \
             interfaces it links): stop using what needs it in the guest, or build against \
             weir's wit/consumer.wit"
        }
        LoadError::TooLarge { .. } => {
            "raise `max-module-bytes` in weir.toml or shrink the component"
        }
        LoadError::Manifest(_) => "fix the manifest key named above (see README, Module manifest)",
        LoadError::Read { .. } => {
            "check the path and that weir may read it (`weir build` writes the component to \
             `dist/`)"
        }
        LoadError::Compile { .. } => {
            "rebuild the component; a truncated or corrupted file cannot be compiled"
        }
    }
}

fn list_items(engine: &Engine, component: &Component, out: &mut dyn Write) -> std::io::Result<()> {
    let ty = component.component_type();
    writeln!(out, "imports:")?;
    for (name, item) in ty.imports(engine) {
        writeln!(out, "  {name}{}", describe(engine, &item.ty))?;
    }
    writeln!(out, "exports:")?;
    for (name, item) in ty.exports(engine) {
        writeln!(out, "  {name}{}", describe(engine, &item.ty))?;
    }
    Ok(())
}

/// A short description: the functions of an instance, or the item's kind.
fn describe(engine: &Engine, item: &ComponentItem) -> String {
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let funcs: Vec<&str> = instance
                .exports(engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(n, _)| n)
                .collect();
            if funcs.is_empty() {
                " (types only)".to_owned()
            } else {
                format!(": {}", funcs.join(", "))
            }
        }
        ComponentItem::ComponentFunc(_) => " (function)".to_owned(),
        ComponentItem::CoreFunc(_) => " (core function)".to_owned(),
        ComponentItem::Module(_) => " (core module)".to_owned(),
        ComponentItem::Component(_) => " (component)".to_owned(),
        ComponentItem::Type(_) => " (type)".to_owned(),
        ComponentItem::Resource(_) => " (resource)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `weir check` of `opts`: the error it fails with, as a [`CheckError`].
    fn refused(opts: &ModuleOptions) -> CheckError {
        check(opts, false, &mut Vec::new())
            .unwrap_err()
            .downcast::<CheckError>()
            .expect("a CheckError")
    }

    #[test]
    fn read_errors_come_from_the_loader_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("m.wasm");
        let opts = ModuleOptions {
            wasm: wasm.clone(),
            ..ModuleOptions::default()
        };
        let err = refused(&opts);
        assert!(matches!(
            err,
            CheckError::Load {
                error: LoadError::Read { .. },
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot read `{}`: ", wasm.display())),
            "{text}"
        );
        assert!(text.contains("\nhint: check the path"), "{text}");

        std::fs::write(&wasm, b"\0asm\x0d\0\x01\0").unwrap();
        std::fs::write(dir.path().join("weir.toml"), "max-module-bytes = 4\n").unwrap();
        let opts = ModuleOptions {
            config: Some(dir.path().join("weir.toml")),
            ..opts
        };
        let text = refused(&opts).to_string();
        assert!(text.contains("is 8 bytes, over the 4-byte limit"), "{text}");
        assert!(text.contains("\nhint: raise `max-module-bytes`"), "{text}");
    }
}
