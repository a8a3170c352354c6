//! The whole process: load the modules, keep them in step with the modules
//! folder, and on cancellation drain, commit, flush and leave.
//!
//! # Reload semantics
//!
//! The [`Supervisor`] compares the folder with what runs, by content (the
//! SHA-256 of the component and of its manifest), whenever the folder has
//! been quiet for `reload-debounce`:
//!
//! - a **new** module is compiled and validated, then starts consuming;
//! - a **changed** module is compiled and validated off the event path. If
//!   its input topics, group and offset reset are unchanged it is swapped in
//!   place: calls in flight finish on the old version, and each partition's
//!   next call runs on the new one. No event is skipped and none is handled
//!   by both versions. If those settings changed, the old version is stopped
//!   as on removal and the new one started, resuming from the committed
//!   offsets of its group;
//! - a **removed** module stops: calls in flight finish, their outputs are
//!   acknowledged, offsets are committed, the consumer leaves its group;
//! - a file that fails to load leaves the running version serving; the
//!   failure is logged once per content and shown in the status;
//! - modules pulled from OCI registries ([`crate::oci`]) are compared and
//!   applied the same way, beside the folder's: the poller notifies the
//!   supervisor when a tag moved and the new version is verified and cached;
//! - after each pass, running modules that feed each other in a ring are
//!   logged once and shown in their status ([`crate::cycles`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rdkafka::producer::Producer as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::engine::{LoadError, LoadedModule, WasmEngine};
use crate::kafka::acks::Producer;
use crate::kafka::{KafkaSettings, RunnerSettings, SecurityError, spawn_runner};
use crate::modules::{Entry, ModuleSource, entries};
use crate::ops::control::PauseSwitch;
use crate::slots::CompileFor;
use crate::status::StatusBoard;

mod credentials;
mod operator;

use credentials::{CREDENTIAL_CHECK, CredentialCheck, credentials_checked};

/// Runs weir until `cancel` fires, then shuts down gracefully: stop
/// fetching, finish in-flight events, wait for their outputs'
/// acknowledgements, commit, flush the producer, leave the groups.
///
/// Fails at start if the configuration is invalid, or if the folder holds
/// modules and none of them loads; fails (after a graceful shutdown) if,
/// within 30 s of the start, the cluster rejects weir's credentials or its
/// TLS certificate cannot be verified ([`crate::kafka::SecurityError`]).
pub async fn run(config: RunConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    run_with_status(config, Arc::new(StatusBoard::default()), cancel).await
}

/// [`run`], reporting each module's state to `status`.
pub async fn run_with_status(
    config: RunConfig,
    status: Arc<StatusBoard>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    config.validate(None)?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let queries = Arc::new(crate::state::Queries::default());
    let http_stop = CancellationToken::new();
    let _http_stop = http_stop.clone().drop_guard();
    let (requests, mut ops) = tokio::sync::mpsc::channel(8);
    let admin = crate::ops::admin::Admin::new(config.admin_token()?.as_deref(), requests);
    crate::http::start(
        config.http_listen,
        crate::http::HttpState::new(metrics.clone(), status.clone())
            .with_queries(queries.clone())
            .with_admin(admin),
        http_stop,
    )
    .await?;
    let kafka = KafkaSettings {
        brokers: config.brokers().to_owned(),
        passthrough: config.kafka.clone(),
    };
    // Rejected credentials or an unverifiable broker certificate are
    // configuration errors: check while the modules load, and stop with a
    // clear error rather than retry forever.
    let check_stop = CancellationToken::new();
    let _check_stop = check_stop.clone().drop_guard();
    let credentials = tokio::task::spawn_blocking({
        let kafka = kafka.clone();
        move || kafka.check_credentials(CREDENTIAL_CHECK, &check_stop)
    });
    let changes = Arc::new(tokio::sync::Notify::new());
    let oci = if config.oci.is_empty() {
        None
    } else {
        let settings = crate::oci::poll::PollSettings {
            entries: config.oci.clone(),
            interval: config.oci_poll_interval,
            cache: config.oci_cache_dir(),
            max_bytes: config.max_module_bytes,
        };
        let poll_stop = cancel.child_token();
        Some(crate::oci::poll::start(settings, status.clone(), changes.clone(), poll_stop).await)
    };
    let mut supervisor = Supervisor::new(&config, kafka, metrics.clone(), status, cancel)?;
    supervisor.settings.instance_id = config.instance_id.clone();
    supervisor.settings.queries = queries;
    supervisor.oci = oci;
    supervisor.start().await?;
    let _watcher = (supervisor.dir.as_deref())
        .filter(|_| config.watch)
        .map(|dir| crate::watch::watch(dir, config.reload_debounce, changes.clone()))
        .transpose()?;
    metrics.set_running(true);
    tracing::info!(
        modules = supervisor.running.len(),
        brokers = config.brokers(),
        watch = config.watch,
        "weir is running"
    );
    let fatal = supervisor.serve(credentials, &changes, &mut ops).await;
    metrics.set_running(false);
    tracing::info!("shutting down");
    supervisor.shutdown(config.shutdown_timeout).await?;
    if let Some(refused) = fatal {
        return Err(refused.into());
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Identifies a module's files by content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// SHA-256 of the component.
    wasm: String,
    /// SHA-256 of the manifest; empty when there is none.
    manifest: String,
}

impl Source {
    fn of(files: &ModuleSource) -> Self {
        let digest = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
        Self {
            wasm: digest(&files.bytes),
            manifest: files
                .manifest_text
                .as_deref()
                .map(|text| digest(text.as_bytes()))
                .unwrap_or_default(),
        }
    }
}

/// What decides a module's consumer: changing any of it needs a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    topics: Vec<String>,
    group: String,
    offset_reset: &'static str,
    start_at: Option<std::time::SystemTime>,
    guarantee: crate::manifest::Guarantee,
    /// The changelog topic of a stateful module.
    changelog: Option<String>,
}

impl Subscription {
    fn of(module: &LoadedModule) -> Self {
        let m = &module.manifest;
        let mut topics = m.input_topics.clone();
        topics.sort();
        Self {
            topics,
            group: m.group_id(&module.name),
            offset_reset: m.offset_reset.as_kafka(),
            start_at: m.start_at,
            guarantee: m.delivery.guarantee,
            changelog: m.state.as_ref().map(|s| s.changelog_topic(&module.name)),
        }
    }
}

struct Running {
    slot: Arc<ArcSwap<LoadedModule>>,
    source: Source,
    subscription: Subscription,
    cancel: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops the runner and waits until it has drained, committed and left
    /// its group.
    async fn stop(self) {
        self.cancel.cancel();
        let thread = self.thread;
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .is_err()
        {
            tracing::error!("a module runner panicked while stopping");
        }
    }
}

/// Keeps the running modules in step with the folder and the OCI catalog.
struct Supervisor {
    /// The modules folder, if one is configured.
    dir: Option<PathBuf>,
    /// The OCI modules' current versions, if `[[oci]]` entries are set.
    oci: Option<Arc<crate::oci::Catalog>>,
    max_bytes: u64,
    engine: Arc<WasmEngine>,
    producer: Producer,
    settings: RunnerSettings,
    status: Arc<StatusBoard>,
    cancel: CancellationToken,
    running: HashMap<String, Running>,
    /// Default limits from the runtime config.
    limits: crate::manifest::Limits,
    /// Content that failed to load, so it is reported once, not per rescan.
    rejected: HashMap<String, Source>,
    /// Rings of running modules feeding each other, reported once each.
    chains: crate::cycles::ChainWatch,
    /// The operator's pause switch of each module ever paused or started,
    /// kept across reloads and offset resets; dropped when the module's
    /// file is removed.
    pauses: HashMap<String, PauseSwitch>,
}

impl Supervisor {
    /// A supervisor of `config`'s modules folder with nothing running yet:
    /// its engine, its producer and its runners' settings.
    fn new(
        config: &RunConfig,
        kafka: KafkaSettings,
        metrics: Arc<crate::metrics::Metrics>,
        status: Arc<StatusBoard>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            dir: config.modules.clone(),
            oci: None,
            max_bytes: config.max_module_bytes,
            engine: Arc::new(WasmEngine::with_max_wasm_stack(config.max_wasm_stack)?),
            limits: config.limits.clone(),
            producer: kafka.producer()?,
            settings: RunnerSettings {
                kafka,
                commit_interval: config.commit_interval,
                drain_timeout: config.shutdown_timeout,
                state_dir: config.state_dir.clone(),
                queries: Arc::default(),
                embedded: config.embedded,
                slots: crate::slots::CallSlots::per_core(),
                instance_id: None,
                budget: Arc::new(
                    crate::pipeline::budget::Budget::new(config.max_inflight_bytes)
                        .observed(Arc::new(metrics.sharing())),
                ),
                metrics,
                status: status.clone(),
            },
            status,
            cancel,
            running: HashMap::new(),
            rejected: HashMap::new(),
            chains: Default::default(),
            pauses: HashMap::new(),
        })
    }

    /// Loads the folder for the first time. Fails when it holds modules
    /// and none of them loads, naming each failure.
    async fn start(&mut self) -> anyhow::Result<()> {
        let failures = self.sync().await?;
        if self.running.is_empty() && !failures.is_empty() {
            let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "no module could be loaded{}:\n  - {}",
                (self.dir.as_ref()).map_or(String::new(), |d| format!(" from `{}`", d.display())),
                reasons.join("\n  - ")
            );
        }
        if self.running.is_empty() {
            tracing::warn!(dir = ?self.dir, "no modules yet; waiting for .wasm files or OCI artifacts");
        }
        Ok(())
    }

    /// Applies each change of the folder and each operator request until
    /// the supervisor's token is cancelled, or until the credential check
    /// finds that kafka refuses weir's security settings: then returns the
    /// refusal.
    async fn serve(
        &mut self,
        mut credentials: CredentialCheck,
        changes: &tokio::sync::Notify,
        ops: &mut tokio::sync::mpsc::Receiver<crate::ops::Request>,
    ) -> Option<SecurityError> {
        let (cancel, mut checking) = (self.cancel.clone(), true);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return None,
                checked = &mut credentials, if checking => {
                    checking = false;
                    let refused = credentials_checked(checked, self.settings.kafka.brokers.as_str());
                    if refused.is_some() {
                        return refused;
                    }
                }
                Some(request) = ops.recv() => self.operate(request).await,
                () = changes.notified() => {
                    if let Err(err) = self.sync().await {
                        tracing::error!(error = %format_args!("{err:#}"), "cannot rescan the modules folder");
                    }
                }
            }
        }
    }

    /// Stops every module (each finishes its calls in flight, commits and
    /// leaves its group), then flushes the producer within `timeout`.
    async fn shutdown(&mut self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let stops = self.running.drain().map(|(_, running)| running.stop());
        futures::future::join_all(stops).await;
        let producer = self.producer.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || producer.flush(timeout)).await? {
            tracing::warn!(error = %err, "producer flush did not complete");
        }
        Ok(())
    }

    /// Applies the folder's and the catalog's current content; returns
    /// this pass's failures.
    async fn sync(&mut self) -> anyhow::Result<Vec<LoadError>> {
        let files = entries(self.dir.as_deref(), self.oci.as_deref())?;
        let present: HashSet<String> = files.iter().map(|e| e.name.clone()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(running) = self.running.remove(&name) {
                tracing::info!(module = %name, "module file removed; stopping");
                running.stop().await;
                self.status.removed(&name);
                self.pauses.remove(&name);
                self.settings.metrics.module_unloaded(&name);
                tracing::info!(module = %name, "module unloaded");
            }
        }
        self.rejected.retain(|n, _| present.contains(n));

        let mut failures = Vec::new();
        for entry in files {
            if self.cancel.is_cancelled() {
                // Shutting down: the rest would only be compiled to stop.
                break;
            }
            let (name, path) = (&entry.name, &entry.wasm);
            if let Err(err) = self.apply(&entry).await {
                let was_running = self
                    .running
                    .get(name)
                    .map(|r| r.slot.load().short_digest().to_owned());
                tracing::error!(module = %name, path = %path.display(), error = %err,
                    keeps_serving = was_running.as_deref().unwrap_or("nothing"),
                    "module not loaded");
                if was_running.is_some() {
                    self.status.failed(name, err.to_string());
                } else {
                    self.status.not_running(name, err.to_string());
                }
                if was_running.is_some() {
                    self.settings.metrics.module_reload(name, false);
                }
                failures.push(err);
            }
        }
        let serving: Vec<(String, Arc<LoadedModule>)> = (self.running.iter())
            .map(|(name, r)| (name.clone(), r.slot.load_full()))
            .collect();
        let warnings = (self.chains).update(serving.iter().map(|(n, m)| (n.as_str(), &m.manifest)));
        self.status.set_warnings(&warnings);
        Ok(failures)
    }

    /// Loads `entry` if its content differs from what runs and was not
    /// already rejected, then starts, swaps or restarts its runner.
    async fn apply(&mut self, entry: &Entry) -> Result<(), LoadError> {
        let name = entry.name.as_str();
        let Some((files, source)) =
            self.read_changed(name, &entry.wasm, entry.manifest.as_deref())?
        else {
            return Ok(());
        };
        let loaded = tokio::select! {
            biased;
            // Shutting down: a stop must not wait for a compile (a large
            // Python or JavaScript component takes seconds, more on a busy
            // machine); the compile thread's result is dropped.
            () = self.cancel.cancelled() => return Ok(()),
            loaded = self.load(files) => loaded,
        };
        let module = match loaded {
            Ok(module) => Arc::new(module),
            Err(err) => {
                self.rejected.insert(name.to_owned(), source);
                return Err(err);
            }
        };
        self.rejected.remove(name);
        let subscription = Subscription::of(&module);
        match self.running.get_mut(name) {
            Some(running) if running.subscription == subscription => {
                let old = running.slot.swap(module.clone());
                running.source = source;
                self.settings.metrics.module_reload(name, true);
                tracing::info!(
                    module = name,
                    from = old.short_digest(),
                    to = module.short_digest(),
                    "module reloaded in place"
                );
                self.status.loaded(name, &module.digest, module.loaded_at);
            }
            _ => self.restart(name, &module, source, subscription).await?,
        }
        self.settings.metrics.module_loaded(name, &module.digest);
        if let (Some(catalog), Some(pulled)) = (&self.oci, &entry.oci) {
            catalog.loaded(pulled);
        }
        Ok(())
    }

    /// Reads the files of module `name`; `None` when that content already
    /// runs or was already rejected. A file that cannot be read is reported
    /// once per error, not on every rescan.
    fn read_changed(
        &mut self,
        name: &str,
        path: &Path,
        manifest: Option<&Path>,
    ) -> Result<Option<(ModuleSource, Source)>, LoadError> {
        let files = match ModuleSource::read(path, manifest, self.max_bytes) {
            Ok(files) => ModuleSource {
                name: name.into(),
                ..files
            },
            Err(err) => {
                let marker = Source {
                    wasm: "unreadable".into(),
                    manifest: err.to_string(),
                };
                if self.rejected.get(name) == Some(&marker) {
                    return Ok(None);
                }
                self.rejected.insert(name.to_owned(), marker);
                return Err(err);
            }
        };
        let source = Source::of(&files);
        let known = self.running.get(name).is_some_and(|r| r.source == source)
            || self.rejected.get(name) == Some(&source);
        Ok((!known).then_some((files, source)))
    }

    /// Validates the manifest (the runtime's `[limits]` as defaults; a
    /// missing one is an error) and compiles the component on a compile
    /// pool: a new version of a running module below the calls' priority
    /// (`crate::slots`).
    async fn load(&self, files: ModuleSource) -> Result<LoadedModule, LoadError> {
        let (engine, limits, path) = (self.engine.clone(), self.limits.clone(), files.path.clone());
        let purpose = match self.running.contains_key(&*files.name) {
            true => CompileFor::Reload,
            false => CompileFor::Start,
        };
        crate::slots::spawn_compile(purpose, move || files.load(&engine, &limits))
            .await
            .map_err(|reason| LoadError::Compile { path, reason })?
    }

    /// Starts a runner for `module`, after stopping the one of its previous
    /// version if any (whose subscription differs).
    async fn restart(
        &mut self,
        name: &str,
        module: &Arc<LoadedModule>,
        source: Source,
        subscription: Subscription,
    ) -> Result<(), LoadError> {
        if let Some(old) = self.running.remove(name) {
            tracing::info!(
                module = name,
                "input topics, group, offset reset, guarantee or state changed; restarting its consumer"
            );
            old.stop().await;
            self.settings.metrics.module_reload(name, true);
        }
        // Before the runner starts: what it reports (a stateful module's
        // topics refused) must come after, not be overwritten by, this.
        self.status.loaded(name, &module.digest, module.loaded_at);
        let slot = Arc::new(ArcSwap::new(module.clone()));
        self.launch(name, slot, source, subscription)?;
        tracing::info!(module = name, path = %module.path.display(), digest = module.short_digest(), "module loaded");
        Ok(())
    }

    /// Starts a runner for the version in `slot`, with the module's pause
    /// switch.
    fn launch(
        &mut self,
        name: &str,
        slot: Arc<ArcSwap<LoadedModule>>,
        source: Source,
        subscription: Subscription,
    ) -> Result<(), LoadError> {
        let cancel = self.cancel.child_token();
        let pause = self.pauses.entry(name.to_owned()).or_default().clone();
        let thread = spawn_runner(
            slot.clone(),
            self.engine.clone(),
            self.producer.clone(),
            self.settings.clone(),
            cancel.clone(),
            pause,
        )
        .map_err(|e| LoadError::Contract {
            path: slot.load().path.clone(),
            reason: format!("{e:#}"),
        })?;
        self.running.insert(
            name.to_owned(),
            Running {
                slot,
                source,
                subscription,
                cancel,
                thread,
            },
        );
        Ok(())
    }
}
