//! The state side of a partition's worker: opening (restoring) the
//! partition's store before the first call, and handing each settled run's
//! writes to it.

use super::{Stopped, Worker};
use crate::pipeline::Ports;
use crate::pipeline::policy::Pending;
use crate::state::{StateHandle, changelog, off_thread};

impl<P: Ports> Worker<P> {
    /// Stateful modules: opens (restoring if needed) the partition's
    /// store, retrying with backoff until it is ready or the worker is
    /// stopped. `Ok(None)` for a module without state.
    pub(super) async fn open_state(&mut self) -> Result<Option<StateHandle>, Stopped> {
        let Some(stores) = self.module.state.clone() else {
            return Ok(None);
        };
        let mut attempt = 1;
        loop {
            let (s, tp) = (stores.clone(), self.tp.clone());
            let opened = tokio::task::spawn_blocking(move || s.open(&tp.topic, tp.partition)).await;
            let why = match opened {
                Ok(Ok(store)) => {
                    let handle = StateHandle {
                        store,
                        topic: stores.topic().clone(),
                        writer: self.tp.topic.as_str().into(),
                    };
                    let _ = self.state.set(handle.clone());
                    if let Some(txn) = &mut self.txn {
                        txn.state = Some(handle.clone());
                    }
                    if attempt > 1 {
                        self.module.problem(&self.tp, None);
                    }
                    return Ok(Some(handle));
                }
                Ok(Err(err)) => err.to_string(),
                Err(err) => format!("restore task failed: {err}"),
            };
            tracing::error!(module = &*self.module.name, topic = %self.tp.topic,
                partition = self.tp.partition, error = %why, attempt,
                "cannot open the partition's state store; will retry");
            self.module
                .problem(&self.tp, Some(format!("state store: {why}")));
            self.pause(self.retry_backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// Adds the state writes among a settled run's records to the
    /// partition's store (its pending layer, until they are in Kafka), so
    /// the next call sees them; returns the run's number.
    pub(super) async fn apply_state(&mut self, produce: &[Pending]) -> Result<u64, Stopped> {
        self.runs += 1;
        let Some(state) = self.state.get() else {
            return Ok(self.runs);
        };
        let writes = changelog::writes_in(&state.topic, produce.iter().map(|p| &p.record));
        if writes.is_empty() {
            return Ok(self.runs);
        }
        let (store, writer, run) = (state.store.clone(), state.writer.clone(), self.runs);
        // Reads the local copy for the sizes.
        if let Err(err) = off_thread(move || store.apply(&writer, writes, run)).await {
            // Nothing of the run is produced or committed: the partition's
            // next owner (or this process after a restart) handles it again.
            return Err(self.module.state_failed(&self.tp, &err));
        }
        Ok(self.runs)
    }
}
