//! Readiness: whether weir is ready to serve, from whether the process is
//! running and, per module consumer, whether it joined its group and can
//! reach the brokers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// The readiness signals of one module consumer.
#[derive(Debug, Default)]
pub(super) struct ConsumerState {
    joined: AtomicBool,
    broker_up: AtomicBool,
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
    use crate::metrics::Metrics;
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
