//! The wasmtime engine: compiling, validating and pre-instantiating consumer
//! components.
//!
//! One [`WasmEngine`] serves the whole process. It enables epoch interruption
//! (a background thread ticks every [`EPOCH_TICK`]) so that the host looks
//! in on every call each tick: to end it past its time limit, or to let
//! waiting calls have its core (`crate::slots`), and uses the pooling allocator so that the
//! instances weir re-creates (after a trap, on reload) come from
//! pre-reserved slots instead of fresh mappings.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::batch::BatchConsumerPre;
use crate::bindings::v01;
use crate::bindings::{Consumer, ConsumerPre};
use crate::host::{GuestPolicy, HostState};
use crate::manifest::Manifest;

/// wasmtime's default wasm stack limit, 512 KiB.
pub const DEFAULT_MAX_WASM_STACK: usize = 512 * 1024;

/// Granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The first eight bytes of a component: magic, then version 0x0d and layer 1.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
/// The first eight bytes of a core module (version 1, layer 0).
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Why a module could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        /// The component path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than `max-module-bytes`.
    #[error("`{}` is {size} bytes, over the {max}-byte limit (`max-module-bytes`)", .path.display())]
    TooLarge {
        /// The component path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file is a core module, not a component.
    #[error("`{}` is a core WebAssembly module, not a component: build it for the `wasm32-wasip2` target (or wrap it with `wasm-tools component new`)", .path.display())]
    CoreModule {
        /// The component path.
        path: PathBuf,
    },
    /// The file is not WebAssembly at all.
    #[error("`{}` is not a WebAssembly component (bad header)", .path.display())]
    NotWasm {
        /// The component path.
        path: PathBuf,
    },
    /// The manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// Compilation failed.
    #[error("cannot compile `{}`: {reason}", .path.display())]
    Compile {
        /// The component path.
        path: PathBuf,
        /// The compiler's message.
        reason: String,
    },
    /// The component does not fit the `weir:consumer` worlds.
    #[error("`{}` does not fit weir:consumer@0.2.0 (or 0.1.0): {reason}", .path.display())]
    Contract {
        /// The component path.
        path: PathBuf,
        /// Which import or export is wrong.
        reason: String,
    },
}

/// Which export a module implements.
#[derive(Clone)]
pub enum HandlerPre {
    /// `weir:consumer/handler@0.2.0`, one event per call.
    Single(ConsumerPre<HostState>),
    /// `weir:consumer/batch-handler@0.2.0`, several events per call.
    Batch(BatchConsumerPre<HostState>),
    /// `weir:consumer/handler@0.1.0`.
    Single01(v01::single::ConsumerPre<HostState>),
    /// `weir:consumer/batch-handler@0.1.0`.
    Batch01(v01::batch::BatchConsumerPre<HostState>),
}

impl HandlerPre {
    /// Whether the module takes whole batches.
    pub fn is_batch(&self) -> bool {
        matches!(self, Self::Batch(_) | Self::Batch01(_))
    }

    /// The package version the component was built against.
    pub fn contract(&self) -> &'static str {
        match self {
            Self::Single(_) | Self::Batch(_) => "0.2.0",
            Self::Single01(_) | Self::Batch01(_) => "0.1.0",
        }
    }
}

impl std::fmt::Debug for HandlerPre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Single",
            Self::Batch(_) => "Batch",
            Self::Single01(_) => "Single01",
            Self::Batch01(_) => "Batch01",
        })
    }
}

/// The import that makes a module stateful.
pub const STATE_IMPORT: &str = "weir:consumer/state@0.2.0";

/// A compiled, validated module ready to be instantiated.
#[derive(Debug)]
pub struct LoadedModule {
    /// Module name (the file stem).
    pub name: Arc<str>,
    /// The component file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the component bytes, hex encoded.
    pub digest: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its manifest.
    pub manifest: Manifest,
    /// Policy shared with the host imports of every instance.
    pub policy: Arc<GuestPolicy>,
    /// The pre-instantiated handler.
    pub pre: HandlerPre,
    /// The component imports `state` (it can only use it when its manifest
    /// has a `[state]` table).
    pub imports_state: bool,
}

impl LoadedModule {
    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }
}

/// The process-wide engine and linker.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    ticker_stop: Arc<AtomicBool>,
    /// Recently compiled components by digest, so that going back to a
    /// previous version (a rollback, an A/B flip) does not compile again.
    compiled: Mutex<VecDeque<(String, Component)>>,
}

/// How many compiled components [`WasmEngine`] keeps for reuse.
const COMPILED_CACHE: usize = 16;

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine").finish_non_exhaustive()
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmEngine {
    /// Creates the engine, the linker with every import weir provides, and
    /// the epoch ticker thread.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_max_wasm_stack(DEFAULT_MAX_WASM_STACK)
    }

    /// [`WasmEngine::new`] with guest calls limited to `max_wasm_stack`
    /// bytes of wasm stack (deeper recursion traps).
    pub fn with_max_wasm_stack(max_wasm_stack: usize) -> anyhow::Result<Self> {
        crate::slots::compile_below_handling();
        let engine = match Engine::new(&engine_config(true, max_wasm_stack)) {
            Ok(engine) => engine,
            Err(err) => {
                tracing::warn!(error = %format_args!("{err:#}"),
                    "pooling allocator unavailable, using on-demand allocation");
                Engine::new(&engine_config(false, max_wasm_stack))
                    .map_err(|e| anyhow::anyhow!("failed to create the wasm engine: {e:#}"))?
            }
        };
        let mut linker = Linker::new(&engine);
        crate::host::add_wasi_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("failed to link WASI: {e:#}"))?;
        Consumer::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("failed to link weir imports: {e:#}"))?;
        {
            use v01::single::weir::consumer::{config, emitter, log};
            let link =
                |e: wasmtime::Error| anyhow::anyhow!("failed to link weir 0.1 imports: {e:#}");
            log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(link)?;
            config::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(link)?;
            emitter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(link)?;
        }

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            engine,
            linker,
            ticker_stop,
            compiled: Mutex::new(VecDeque::new()),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the module of `wasm_path` with its sidecar manifest and the
    /// default limits, through [`crate::modules::load_module`]. Blocking:
    /// compiles the component (tens of milliseconds for a small one), so
    /// call it off the async executor.
    pub fn load(&self, wasm_path: &Path, max_bytes: u64) -> Result<LoadedModule, LoadError> {
        let defaults = crate::manifest::Limits::default();
        crate::modules::load_module(self, wasm_path, max_bytes, &defaults)
    }

    /// Compiles and validates `bytes` as module `name`.
    pub fn load_bytes(
        &self,
        name: Arc<str>,
        path: &Path,
        bytes: &[u8],
        manifest: Manifest,
    ) -> Result<LoadedModule, LoadError> {
        let path = path.to_path_buf();
        match bytes.get(..8) {
            Some(h) if h == COMPONENT_HEADER => {}
            Some(h) if h == CORE_MODULE_HEADER => return Err(LoadError::CoreModule { path }),
            _ => return Err(LoadError::NotWasm { path }),
        }
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self
            .compile(&digest, bytes)
            .map_err(|e| LoadError::Compile {
                path: path.clone(),
                reason: format!("{e:#}"),
            })?;
        let contract = |reason: String| LoadError::Contract {
            path: path.clone(),
            reason,
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| contract(crate::sandbox::explain_missing_import(format!("{e:#}"))))?;
        let pre = if let Ok(pre) = BatchConsumerPre::new(instance_pre.clone()) {
            HandlerPre::Batch(pre)
        } else if let Ok(pre) = ConsumerPre::new(instance_pre.clone()) {
            HandlerPre::Single(pre)
        } else if let Ok(pre) = v01::batch::BatchConsumerPre::new(instance_pre.clone()) {
            HandlerPre::Batch01(pre)
        } else {
            match v01::single::ConsumerPre::new(instance_pre) {
                Ok(pre) => HandlerPre::Single01(pre),
                Err(e) => {
                    return Err(contract(format!(
                        "it exports neither `weir:consumer/handler@0.2.0` nor \
                         `weir:consumer/batch-handler@0.2.0` (nor their 0.1.0 versions) ({e:#})"
                    )));
                }
            }
        };
        let imports_state = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name == STATE_IMPORT);
        let policy = Arc::new(GuestPolicy {
            module: name.clone(),
            config: manifest.config.clone(),
            outputs: manifest.output_topics.iter().cloned().collect(),
            limits: manifest.limits.clone(),
        });
        Ok(LoadedModule {
            name,
            path,
            digest,
            loaded_at: SystemTime::now(),
            manifest,
            policy,
            pre,
            imports_state,
        })
    }
}

impl WasmEngine {
    /// Compiles `bytes` (cached by content, like [`WasmEngine::load_bytes`])
    /// without checking it against the `weir:consumer` worlds.
    pub fn compile_component(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        self.compile(&hex::encode(Sha256::digest(bytes)), bytes)
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        let cached = {
            let cache = crate::sync::lock(&self.compiled);
            cache
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, c)| c.clone())
        };
        if let Some(component) = cached {
            return Ok(component);
        }
        let component = Component::new(&self.engine, bytes)?;
        let mut cache = crate::sync::lock(&self.compiled);
        if cache.len() >= COMPILED_CACHE {
            cache.pop_front();
        }
        cache.push_back((digest.to_owned(), component.clone()));
        Ok(component)
    }
}

/// The module name of a component file: its stem.
pub fn module_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn engine_config(pooling: bool, max_wasm_stack: usize) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(max_wasm_stack);
    if pooling {
        // Sized for a few dozen modules with one instance per assigned
        // partition each; slots are only address space until used.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(1_000);
        pool.total_core_instances(4_000);
        pool.total_memories(1_000);
        pool.total_tables(4_000);
        pool.max_memory_size(1 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}
