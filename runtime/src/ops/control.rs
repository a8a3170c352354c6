//! A module's pause switch, shared by the supervisor (which sets it), the
//! module's runner (which applies it to its consumer) and the admin
//! handlers (which wait until it is applied).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

/// How far an operator's pause has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseState {
    /// Not paused: the module consumes.
    Running,
    /// Fetching stopped; events already taken are still being handled.
    Pausing,
    /// Fetching stopped and, when `drained`, every event taken was handled
    /// and its offset committed; not `drained`: the drain timeout passed
    /// with events still in flight (a stalled partition), which finish or
    /// are redelivered later.
    Paused {
        /// Every event taken before the pause was settled and committed.
        drained: bool,
    },
}

impl PauseState {
    /// Whether this is the end state of `paused`.
    pub fn settles(self, paused: bool) -> bool {
        match self {
            Self::Running => !paused,
            Self::Pausing => false,
            Self::Paused { .. } => paused,
        }
    }
}

/// The pause switch of one module; cheap to clone. It outlives the
/// module's runners: a module restarted by a reload or an offsets reset
/// keeps its pause.
#[derive(Debug, Clone)]
pub struct PauseSwitch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    want: watch::Sender<bool>,
    state: watch::Sender<PauseState>,
}

impl Default for PauseSwitch {
    fn default() -> Self {
        Self::new(false)
    }
}

impl PauseSwitch {
    /// A switch that starts paused or not.
    pub fn new(paused: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                want: watch::Sender::new(paused),
                state: watch::Sender::new(PauseState::Running),
            }),
        }
    }

    /// Asks for the module to be paused (or resumed).
    pub fn set(&self, paused: bool) {
        self.inner.want.send_replace(paused);
    }

    /// Whether the module should be paused.
    pub fn wanted(&self) -> bool {
        *self.inner.want.borrow()
    }

    /// How far the pause is applied.
    pub fn state(&self) -> PauseState {
        *self.inner.state.borrow()
    }

    /// The runner reports how far the pause is applied.
    pub fn report(&self, state: PauseState) {
        self.inner.state.send_replace(state);
    }

    /// Waits up to `timeout` until the wanted state is reached; returns the
    /// state at the end.
    pub async fn settled(&self, timeout: Duration) -> PauseState {
        let paused = self.wanted();
        let mut rx = self.inner.state.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|s| s.settles(paused))).await;
        self.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_runner_to_apply_the_pause() {
        let switch = PauseSwitch::default();
        assert!(!switch.wanted());
        switch.set(true);
        let runner = switch.clone();
        tokio::spawn(async move {
            runner.report(PauseState::Pausing);
            tokio::time::sleep(Duration::from_millis(50)).await;
            runner.report(PauseState::Paused { drained: true });
        });
        assert_eq!(
            switch.settled(Duration::from_secs(5)).await,
            PauseState::Paused { drained: true }
        );
        switch.set(false);
        assert_eq!(
            switch.settled(Duration::from_millis(50)).await,
            PauseState::Paused { drained: true },
            "not applied yet: the state at the timeout"
        );
    }
}
