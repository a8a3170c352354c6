//! Readiness: whether weir is ready to serve, from whether the process is
//! running and, per module consumer, whether it joined its group, can
//! reach the brokers and can fetch every partition it was assigned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// The readiness signals of one module consumer.
#[derive(Debug, Default)]
pub(super) struct ConsumerState {
    joined: AtomicBool,
    broker_up: AtomicBool,
    /// Partitions (`topic[partition]`) the consumer cannot fetch, and why.
    stalled: Mutex<BTreeMap<String, String>>,
}

impl ConsumerState {
    /// Records whether the consumer has joined its group (got an
    /// assignment, possibly empty).
    pub(super) fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Relaxed);
    }

    /// Records whether the consumer's last signal from the brokers was that
    /// they are reachable.
    pub(super) fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
    }

    /// Records (or, with `None`, clears) why `partition` cannot be fetched;
    /// returns how many partitions are stalled now.
    pub(super) fn set_stalled(&self, partition: &str, why: Option<&str>) -> usize {
        let mut stalled = lock(&self.stalled);
        match why {
            Some(why) => {
                stalled.insert(partition.to_owned(), why.to_owned());
            }
            None => {
                stalled.remove(partition);
            }
        }
        stalled.len()
    }
}

/// The process's readiness state: the running flag and the running module
/// consumers.
#[derive(Debug, Default)]
pub(super) struct Readiness {
    running: AtomicBool,
    consumers: Mutex<HashMap<String, Arc<ConsumerState>>>,
}

impl Readiness {
    /// Sets whether the process is running.
    pub(super) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// Starts waiting for the consumer of `module` (replacing an older one of
    /// the same name); returns the state it reports through.
    pub(super) fn consumer_started(&self, module: &str) -> Arc<ConsumerState> {
        let state = Arc::new(ConsumerState::default());
        lock(&self.consumers).insert(module.to_owned(), state.clone());
        state
    }

    /// Stops waiting for the consumer of `module` that reports through
    /// `state`; a newer consumer of the same name stays.
    pub(super) fn consumer_stopped(&self, module: &str, state: &Arc<ConsumerState>) {
        let mut consumers = lock(&self.consumers);
        if consumers.get(module).is_some_and(|s| Arc::ptr_eq(s, state)) {
            consumers.remove(module);
        }
    }

    /// `Ok` when ready; otherwise every reason it is not, consumers sorted
    /// by module name.
    pub(super) fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !self.running.load(Ordering::Relaxed) {
            problems.push("modules are not running (starting or shutting down)".to_owned());
        }
        let consumers = lock(&self.consumers);
        if consumers.is_empty() {
            problems.push("no module consumer is running".to_owned());
        }
        let mut names: Vec<&String> = consumers.keys().collect();
        names.sort();
        for name in names {
            let state = &consumers[name];
            if !state.joined.load(Ordering::Relaxed) {
                problems.push(format!("module `{name}`: no partition assignment yet"));
            }
            if !state.broker_up.load(Ordering::Relaxed) {
                problems.push(format!("module `{name}`: brokers not reachable"));
            }
            for (partition, why) in lock(&state.stalled).iter() {
                problems.push(format!(
                    "module `{name}`: partition {partition} cannot be consumed: {why}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metrics, StallReason};
    use std::sync::Arc;

    #[test]
    fn readiness_needs_running_joined_and_brokers() {
        let metrics = Arc::new(Metrics::new());
        assert!(metrics.readiness().is_err());
        let m = metrics.module("a");
        metrics.set_running(true);
        assert_eq!(metrics.readiness().unwrap_err().len(), 2);
        m.assigned(0);
        assert!(metrics.readiness().is_ok());
        m.brokers_down();
        assert!(metrics.readiness().is_err());
        m.stopped();
        assert!(
            metrics.readiness().unwrap_err()[0].contains("no module"),
            "{:?}",
            metrics.readiness()
        );
    }

    #[test]
    fn a_stalled_partition_makes_weir_not_ready_until_it_resumes() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_running(true);
        let m = metrics.module("a");
        m.assigned(2);
        m.partition_stalled("in", 1, StallReason::Authorization, "not authorized");
        let problems = metrics.readiness().unwrap_err();
        assert_eq!(
            problems,
            ["module `a`: partition in[1] cannot be consumed: not authorized"]
        );
        let gauge = || metrics.sample("weir_stalled_partitions", &[("module", "a")]);
        assert_eq!(gauge(), Some(1.0));
        let stalls = || {
            metrics.sample(
                "weir_partition_stalls_total",
                &[("module", "a"), ("reason", "authorization")],
            )
        };
        assert_eq!(stalls(), Some(1.0));
        m.partition_resumed("in", 1);
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());
        assert_eq!(gauge(), Some(0.0));
        assert_eq!(stalls(), Some(1.0), "a counter");
    }

    #[test]
    fn a_stopped_consumer_does_not_remove_its_successor() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_running(true);
        let old = metrics.module("a");
        let new = metrics.module("a");
        new.assigned(1);
        old.stopped();
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());
    }
}
