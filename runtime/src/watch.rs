//! Watching the modules folder.
//!
//! The directory itself is watched (not each file), so atomic renames and
//! Kubernetes ConfigMap updates, which swap a `..data` symlink, are seen.
//! Events are debounced: the supervisor rescans once the folder has been
//! quiet for the debounce time, and compares content, so a burst of writes
//! leads to at most a couple of compilations and the last content wins.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::Notify;

/// Keeps the watch alive; dropping it stops watching.
pub struct FolderWatch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for FolderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatch").finish_non_exhaustive()
    }
}

/// Notifies `changes` whenever `dir` changed and then stayed quiet for
/// `debounce`.
pub fn watch(dir: &Path, debounce: Duration, changes: Arc<Notify>) -> anyhow::Result<FolderWatch> {
    let tick = (debounce / 4).max(Duration::from_millis(1));
    let mut debouncer =
        new_debouncer(
            debounce,
            Some(tick),
            move |result: DebounceEventResult| match result {
                Ok(events) if events.is_empty() => {}
                Ok(_) => changes.notify_one(),
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(error = %error, "file watch error; rescanning the folder");
                    }
                    changes.notify_one();
                }
            },
        )
        .map_err(|e| anyhow::anyhow!("cannot watch the modules folder `{}`: {e}", dir.display()))?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("cannot watch the modules folder `{}`: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), debounce = ?debounce, "watching the modules folder");
    Ok(FolderWatch {
        _debouncer: debouncer,
    })
}
