//! What an operator sees of each module: version, load time, and whether the
//! last (re)load failed and why. Served as JSON at `/status`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::ops::control::PauseState;
use crate::sync::lock;

/// The state of one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum ModuleState {
    /// Consuming with the version in `digest`.
    Running,
    /// The newest file could not be loaded; the previous version (`digest`)
    /// keeps serving.
    ReloadFailed {
        /// Why, naming the file.
        reason: String,
    },
    /// The module never loaded; nothing is consuming for it.
    Failed {
        /// Why, naming the file.
        reason: String,
    },
}

/// One module's entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleStatus {
    /// Module name (file stem).
    pub name: String,
    /// SHA-256 of the component that is serving, if any.
    pub digest: Option<String>,
    /// When the serving version was loaded, in seconds since the Unix epoch.
    pub loaded_at: Option<f64>,
    /// Successful loads since start (the first load included).
    pub loads: u64,
    /// Failed loads since start.
    pub failures: u64,
    /// Current state.
    #[serde(flatten)]
    pub state: ModuleState,
    /// Partitions that cannot proceed, as `topic[partition]` → why (a
    /// dead-letter topic that cannot be written, `on-failure = stop`, a
    /// partition the consumer cannot fetch).
    pub stalled: BTreeMap<String, String>,
    /// What the operator should know though the module runs, e.g. a ring
    /// of modules feeding each other through topics ([`crate::cycles`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The consumer-side part of `stalled`: partitions whose records
    /// cannot be fetched (authorization, decompression), kept apart so that
    /// the pipeline's reports and these never clear each other; merged into
    /// `stalled` by [`StatusBoard::snapshot`].
    #[serde(skip)]
    pub fetch_stalled: BTreeMap<String, String>,
    /// Stateful modules: the state store of each partition number this
    /// process holds, by partition number.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub state_stores: BTreeMap<i32, StoreStatus>,
    /// The module's consumer group.
    pub group: Option<String>,
    /// Its consumer's `group.instance.id` (static membership), if any.
    pub group_instance_id: Option<String>,
    /// Whether an operator paused the module (`weir pause`).
    pub paused: bool,
    /// How far the pause (or resume) is applied.
    pub pause_state: PauseState,
    /// The partitions assigned to this process, with their lag, from the
    /// consumer's last statistics report (every 5 s by default).
    pub partitions: Vec<PartitionStatus>,
    /// Modules pulled from an OCI registry: the reference followed, the
    /// version pulled, and why it cannot be updated, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciStatus>,
}

/// Where an OCI module comes from ([`crate::oci`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OciStatus {
    /// The reference followed.
    pub reference: String,
    /// The OCI manifest digest of the version pulled last (the one serving
    /// unless the module's `state` says its load failed).
    pub digest: Option<String>,
    /// Why the module cannot be updated from the registry right now
    /// (registry unreachable, digest mismatch, not a weir artifact); the
    /// pulled version keeps serving.
    pub error: Option<String>,
}

/// One assigned partition, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionStatus {
    /// Input topic.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Events between the partition's end and the committed offset, when
    /// both are known.
    pub lag: Option<i64>,
    /// The group's committed offset (the next event to read), if any.
    pub committed: Option<i64>,
}

/// One partition's state store, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoreStatus {
    /// Being restored from the changelog: the partition has no calls yet.
    pub restoring: bool,
    /// Changelog records read by the restore so far (or in all, once done).
    pub restored_records: u64,
    /// The changelog offset the restore started from (`None`: the start).
    pub restored_from: Option<i64>,
    /// Entries in the store (at the end of the restore, or its last
    /// checkpoint).
    pub keys: u64,
    /// Keys plus values of those entries, in bytes.
    pub bytes: u64,
}

/// All modules' status, updated by the supervisor.
#[derive(Debug, Default)]
pub struct StatusBoard {
    modules: Mutex<BTreeMap<String, ModuleStatus>>,
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl StatusBoard {
    fn update(&self, name: &str, f: impl FnOnce(&mut ModuleStatus)) {
        let mut modules = lock(&self.modules);
        let entry = modules
            .entry(name.to_owned())
            .or_insert_with(|| ModuleStatus {
                name: name.to_owned(),
                digest: None,
                loaded_at: None,
                loads: 0,
                failures: 0,
                stalled: BTreeMap::new(),
                warnings: Vec::new(),
                fetch_stalled: BTreeMap::new(),
                state_stores: BTreeMap::new(),
                group: None,
                group_instance_id: None,
                paused: false,
                pause_state: PauseState::Running,
                partitions: Vec::new(),
                oci: None,
                state: ModuleState::Failed {
                    reason: "not loaded yet".into(),
                },
            });
        f(entry);
    }

    /// Records a successful (re)load.
    pub fn loaded(&self, name: &str, digest: &str, at: SystemTime) {
        self.update(name, |m| {
            m.digest = Some(digest.to_owned());
            m.loaded_at = Some(seconds(at));
            m.loads += 1;
            m.state = ModuleState::Running;
        });
    }

    /// Records a failed (re)load; a serving version keeps serving.
    pub fn failed(&self, name: &str, reason: String) {
        self.update(name, |m| {
            m.failures += 1;
            m.state = if m.digest.is_some() {
                ModuleState::ReloadFailed { reason }
            } else {
                ModuleState::Failed { reason }
            };
        });
    }

    /// Records that the loaded version of `name` does not run after all
    /// (its consumer was refused): nothing consumes for it.
    pub fn not_running(&self, name: &str, reason: String) {
        self.update(name, |m| {
            m.failures += 1;
            m.state = ModuleState::Failed { reason };
        });
    }

    /// Records where OCI module `name` comes from and its registry's state.
    pub fn oci(&self, name: &str, oci: OciStatus) {
        self.update(name, |m| m.oci = Some(oci));
    }

    /// Records (or, with `None`, clears) why a partition of `module` cannot
    /// proceed.
    pub fn problem(&self, module: &str, partition: &str, why: Option<String>) {
        if let Some(m) = lock(&self.modules).get_mut(module) {
            set_or_clear(&mut m.stalled, partition, why);
        }
    }

    /// Records (or, with `None`, clears) why the consumer cannot fetch a
    /// partition of `module` (shown under `stalled` with the pipeline's
    /// reports; see [`ModuleStatus::fetch_stalled`]).
    pub fn fetch_problem(&self, module: &str, partition: &str, why: Option<String>) {
        if let Some(m) = lock(&self.modules).get_mut(module) {
            set_or_clear(&mut m.fetch_stalled, partition, why);
        }
    }

    /// Records (or, with `None`, forgets) partition `partition`'s state
    /// store of `module`.
    pub fn store(&self, module: &str, partition: i32, store: Option<StoreStatus>) {
        let mut modules = lock(&self.modules);
        let Some(m) = modules.get_mut(module) else {
            return;
        };
        match store {
            Some(store) => {
                m.state_stores.insert(partition, store);
            }
            None => {
                m.state_stores.remove(&partition);
            }
        }
    }

    /// Records the consumer group of `module` and its static member id.
    pub fn consumer(&self, module: &str, group: &str, instance: Option<&str>) {
        self.update(module, |m| {
            m.group = Some(group.to_owned());
            m.group_instance_id = instance.map(str::to_owned);
        });
    }

    /// Records whether `module` is paused and how far that is applied.
    pub fn pause(&self, module: &str, paused: bool, state: PauseState) {
        if let Some(m) = lock(&self.modules).get_mut(module) {
            m.paused = paused;
            m.pause_state = state;
        }
    }

    /// Replaces the assigned partitions of `module`, sorted.
    pub fn partitions(&self, module: &str, mut partitions: Vec<PartitionStatus>) {
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        if let Some(m) = lock(&self.modules).get_mut(module) {
            m.partitions = partitions;
        }
    }

    /// Sets the lag of `module`'s partitions that have a committed offset
    /// and an entry in `ends` (partition end by topic and partition);
    /// returns what it set.
    pub fn ends(
        &self,
        module: &str,
        ends: &std::collections::HashMap<(String, i32), i64>,
    ) -> Vec<(String, i32, i64)> {
        let mut set = Vec::new();
        if let Some(m) = lock(&self.modules).get_mut(module) {
            for p in &mut m.partitions {
                let end = ends.get(&(p.topic.clone(), p.partition));
                if let (Some(end), Some(committed)) = (end, p.committed) {
                    let lag = (end - committed).max(0);
                    p.lag = Some(lag);
                    set.push((p.topic.clone(), p.partition, lag));
                }
            }
        }
        set
    }

    /// Replaces every module's warnings with its entry in `warnings` (none
    /// when it has no entry).
    pub fn set_warnings(&self, warnings: &BTreeMap<String, Vec<String>>) {
        for (name, m) in lock(&self.modules).iter_mut() {
            m.warnings = warnings.get(name).cloned().unwrap_or_default();
        }
    }

    /// Forgets a module whose file was removed.
    pub fn removed(&self, name: &str) {
        lock(&self.modules).remove(name);
    }

    /// A copy of every entry, sorted by name, with the consumer's
    /// partition problems merged into `stalled` (a partition with both
    /// shows both reasons, the consumer's first).
    pub fn snapshot(&self) -> Vec<ModuleStatus> {
        lock(&self.modules)
            .values()
            .map(|m| {
                let mut m = m.clone();
                for (partition, why) in &m.fetch_stalled {
                    let merged = match m.stalled.get(partition) {
                        Some(other) => format!("{why}; {other}"),
                        None => why.clone(),
                    };
                    m.stalled.insert(partition.clone(), merged);
                }
                m
            })
            .collect()
    }
}

/// Sets `partition`'s entry of `stalled` to `why`, or removes it.
fn set_or_clear(stalled: &mut BTreeMap<String, String>, partition: &str, why: Option<String>) {
    match why {
        Some(why) => {
            stalled.insert(partition.to_owned(), why);
        }
        None => {
            stalled.remove(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_keeps_the_serving_version() {
        let board = StatusBoard::default();
        board.failed("a", "bad".into());
        assert_eq!(
            board.snapshot()[0].state,
            ModuleState::Failed {
                reason: "bad".into()
            }
        );
        board.loaded("a", "d1", SystemTime::now());
        board.failed("a", "broken file".into());
        let a = &board.snapshot()[0];
        assert_eq!(a.digest.as_deref(), Some("d1"));
        assert_eq!((a.loads, a.failures), (1, 2));
        assert!(
            matches!(&a.state, ModuleState::ReloadFailed { reason } if reason == "broken file")
        );
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["state"], "reload-failed");
        assert_eq!(json["reason"], "broken file");
        assert!(json.get("warnings").is_none(), "omitted when empty");
        board.set_warnings(&BTreeMap::from([("a".to_owned(), vec!["ring".to_owned()])]));
        assert_eq!(board.snapshot()[0].warnings, ["ring"]);
        assert_eq!(
            serde_json::to_value(&board.snapshot()[0]).unwrap()["warnings"][0],
            "ring"
        );
        board.set_warnings(&BTreeMap::new());
        assert!(board.snapshot()[0].warnings.is_empty());
        board.removed("a");
        assert!(board.snapshot().is_empty());
    }

    #[test]
    fn fetch_problems_show_under_stalled_and_clear_apart_from_the_pipelines() {
        let board = StatusBoard::default();
        board.loaded("a", "d1", SystemTime::now());
        board.fetch_problem("a", "in[0]", Some("not authorized".into()));
        board.problem("a", "in[1]", Some("dead-letter topic missing".into()));
        board.fetch_problem("a", "in[1]", Some("not authorized".into()));
        let stalled = |board: &StatusBoard| board.snapshot()[0].stalled.clone();
        assert_eq!(stalled(&board)["in[0]"], "not authorized");
        assert_eq!(
            stalled(&board)["in[1]"],
            "not authorized; dead-letter topic missing"
        );
        // The pipeline clearing its report leaves the consumer's.
        board.problem("a", "in[0]", None);
        assert_eq!(stalled(&board)["in[0]"], "not authorized");
        board.fetch_problem("a", "in[1]", None);
        assert_eq!(stalled(&board)["in[1]"], "dead-letter topic missing");
        board.fetch_problem("a", "in[0]", None);
        assert!(!stalled(&board).contains_key("in[0]"));
        let json = serde_json::to_value(&board.snapshot()[0]).unwrap();
        assert_eq!(json["stalled"]["in[1]"], "dead-letter topic missing");
        assert!(json.get("fetch-stalled").is_none(), "{json}");
    }
}
