//! Following the `[[oci]]` references: resolve at start, then poll.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::Client;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::cache::{Cache, Record};
use super::{OciError, OciModule};
use crate::status::{OciStatus, StatusBoard};
use crate::sync::lock;

/// A module's version pulled and verified, ready to load: its component and
/// manifest files in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The module name.
    pub name: String,
    /// The reference it was pulled by.
    pub reference: String,
    /// The OCI manifest's digest: the version.
    pub digest: String,
    /// The component (a cached blob).
    pub wasm: PathBuf,
    /// The module's manifest (TOML) as the artifact carried it.
    pub manifest: PathBuf,
}

/// The current version of every OCI module, written by the poller and read
/// by the supervisor on each pass.
#[derive(Debug)]
pub struct Catalog {
    cache: Cache,
    current: Mutex<BTreeMap<String, Pulled>>,
}

impl Catalog {
    /// The modules' current versions, by name.
    pub fn modules(&self) -> Vec<Pulled> {
        lock(&self.current).values().cloned().collect()
    }

    /// Records that `pulled` loaded, so a restart with the registry down
    /// serves it.
    pub fn loaded(&self, pulled: &Pulled) {
        let record = Record {
            reference: pulled.reference.clone(),
            digest: pulled.digest.clone(),
        };
        if let Err(err) = self.cache.remember(&pulled.name, &record) {
            tracing::warn!(module = %pulled.name, error = %err,
                "cannot record the loaded OCI version; a restart without the registry may not find it");
        }
    }

    fn set(&self, pulled: Pulled) {
        lock(&self.current).insert(pulled.name.clone(), pulled);
    }
}

/// How the `[[oci]]` entries are followed.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// The entries.
    pub entries: Vec<OciModule>,
    /// How often each tag's digest is asked for.
    pub interval: Duration,
    /// The cache folder.
    pub cache: PathBuf,
    /// `max-module-bytes`.
    pub max_bytes: u64,
}

/// Resolves every entry once (from the registry, else from the cache),
/// then polls them in a task until `cancel`, notifying `changes` whenever a
/// new version is ready in the returned catalog.
pub async fn start(
    settings: PollSettings,
    status: Arc<StatusBoard>,
    changes: Arc<Notify>,
    cancel: CancellationToken,
) -> Arc<Catalog> {
    let catalog = Arc::new(Catalog {
        cache: Cache::new(&settings.cache),
        current: Mutex::default(),
    });
    let client = super::client(super::plain_http_registries(&settings.entries));
    let mut followed: Vec<Followed> = (settings.entries.iter())
        .filter_map(|entry| {
            Some(Followed {
                name: entry.module_name().ok()?,
                entry: entry.clone(),
                seen: None,
                error: None,
            })
        })
        .collect();
    let poller = Poller {
        client,
        catalog: catalog.clone(),
        status,
        max_bytes: settings.max_bytes,
    };
    for module in &mut followed {
        poller.resolve(module).await;
    }
    tracing::info!(modules = followed.len(), interval = ?settings.interval,
        cache = %settings.cache.display(), "following OCI references");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut changed = false;
            for module in &mut followed {
                changed |= poller.check(module).await;
            }
            if changed {
                changes.notify_one();
            }
        }
    });
    catalog
}

/// One followed entry.
struct Followed {
    entry: OciModule,
    name: String,
    /// The last digest pulled or refused: not pulled again until the tag
    /// moves.
    seen: Option<String>,
    /// The current problem, logged once.
    error: Option<String>,
}

struct Poller {
    client: Client,
    catalog: Arc<Catalog>,
    status: Arc<StatusBoard>,
    max_bytes: u64,
}

impl Poller {
    /// The first resolution: the registry's version, else the cached one
    /// (the last that loaded), so a restart works while the registry is
    /// down.
    async fn resolve(&self, module: &mut Followed) {
        let err = match self.pull(module).await {
            Ok(_) => return,
            Err(err) => err,
        };
        let cached = (self.catalog.cache.recall(&module.name)).and_then(|record| {
            record
                .map(|r| super::from_cache(&self.catalog.cache, &module.name, &r, self.max_bytes))
                .transpose()
        });
        match cached {
            Ok(Some(pulled)) => {
                tracing::warn!(module = %module.name, reference = %module.entry.reference,
                    digest = %pulled.digest, error = %err, "serving the cached OCI version");
                module.seen = Some(pulled.digest.clone());
                self.catalog.set(pulled);
                self.fail(module, err.to_string());
            }
            Ok(None) => self.fail(module, err.to_string()),
            Err(cache_err) => {
                self.fail(
                    module,
                    format!("{err}; cached version unusable: {cache_err}"),
                );
            }
        }
        if self.current_digest(module).is_none() {
            let reason = module.error.clone().unwrap_or_default();
            self.status.failed(&module.name, reason);
        }
    }

    /// One poll: asks for the tag's digest, pulls it if it moved. Returns
    /// whether a new version is ready.
    async fn check(&self, module: &mut Followed) -> bool {
        let Ok(reference) = module.entry.parsed() else {
            return false;
        };
        let head = self
            .client
            .fetch_manifest_digest(&reference, &module.entry.auth())
            .await;
        match head {
            Err(err) => {
                let err = OciError::client(err, "the OCI manifest");
                self.fail(module, err.to_string());
                false
            }
            Ok(digest) if module.seen.as_deref() == Some(digest.as_str()) => {
                self.recovered(module);
                false
            }
            Ok(digest) => {
                tracing::info!(module = %module.name, reference = %module.entry.reference,
                    digest = %digest, "OCI tag moved; pulling");
                match self.pull(module).await {
                    Ok(new) => new,
                    Err(err) => {
                        if err.refuses_version() {
                            // Not pulled again until the tag moves.
                            module.seen = Some(digest);
                        }
                        self.fail(module, err.to_string());
                        false
                    }
                }
            }
        }
    }

    /// Pulls the entry's current version into the catalog; `Ok(true)`
    /// when it is new.
    async fn pull(&self, module: &mut Followed) -> Result<bool, OciError> {
        let pulled = super::pull(
            &self.client,
            &module.entry,
            &module.name,
            &self.catalog.cache,
            self.max_bytes,
        )
        .await?;
        let new = self.current_digest(module).as_deref() != Some(pulled.digest.as_str());
        tracing::info!(module = %module.name, reference = %module.entry.reference,
            digest = %pulled.digest, "OCI artifact pulled and verified");
        module.seen = Some(pulled.digest.clone());
        self.catalog.set(pulled);
        self.recovered(module);
        Ok(new)
    }

    fn current_digest(&self, module: &Followed) -> Option<String> {
        lock(&self.catalog.current)
            .get(&module.name)
            .map(|p| p.digest.clone())
    }

    /// Records a problem; logged when it differs from the last one.
    fn fail(&self, module: &mut Followed, error: String) {
        if module.error.as_deref() != Some(error.as_str()) {
            let serving = self.current_digest(module);
            tracing::error!(module = %module.name, reference = %module.entry.reference,
                error = %error, keeps_serving = serving.as_deref().unwrap_or("nothing"),
                "OCI module not updated");
            module.error = Some(error);
        }
        self.report(module);
    }

    /// Clears a recorded problem.
    fn recovered(&self, module: &mut Followed) {
        if module.error.take().is_some() {
            tracing::info!(module = %module.name, reference = %module.entry.reference,
                "OCI registry answers again");
        }
        self.report(module);
    }

    fn report(&self, module: &Followed) {
        self.status.oci(
            &module.name,
            OciStatus {
                reference: module.entry.reference.clone(),
                digest: self.current_digest(module),
                error: module.error.clone(),
            },
        );
    }
}
