//! The operator's control plane: pausing and resuming a module, moving its
//! group's offsets, and the `weir status|pause|resume|offsets` client.
//!
//! The admin HTTP routes ([`admin`]) turn requests into [`Op`]s that the
//! supervisor applies between folder reloads (`crate::runtime`), so an
//! operator's action and a reload never interleave.

pub mod admin;
pub mod client;
pub mod control;
pub mod reset;

use tokio::sync::{mpsc, oneshot};

use control::PauseSwitch;
use reset::ResetTo;

/// What an operator asked for.
#[derive(Debug)]
pub enum Op {
    /// Pause (`true`) or resume (`false`) a module.
    Pause {
        /// The module.
        module: String,
        /// Pause or resume.
        paused: bool,
    },
    /// Move a module's group offsets.
    Offsets {
        /// The module.
        module: String,
        /// Where to, as parsed from the request.
        reset: Vec<ResetTo>,
        /// Only say what would be done.
        dry_run: bool,
    },
}

/// The supervisor's answer to an [`Op`].
#[derive(Debug)]
pub enum Reply {
    /// The module's pause switch, set as asked; the caller waits for the
    /// runner to apply it.
    Switch(PauseSwitch),
    /// A finished operation, as JSON.
    Done(serde_json::Value),
}

/// An operation that could not be done, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No module of that name runs here.
    #[error("no module `{0}` runs here")]
    UnknownModule(String),
    /// The request is malformed or names what the module does not read.
    #[error("{0}")]
    BadRequest(String),
    /// The group's state does not allow it now (e.g. other live members).
    #[error("{0}")]
    Conflict(String),
    /// Kafka could not be asked or refused.
    #[error("{0}")]
    Kafka(String),
    /// weir is shutting down.
    #[error("weir is shutting down")]
    Unavailable,
}

/// An [`Op`] with the channel its answer goes back on.
#[derive(Debug)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Reply, OpsError>>,
}

/// The admin routes' end of the supervisor's request channel.
pub type Requests = mpsc::Sender<Request>;

/// Sends `op` to the supervisor and waits for its answer.
pub async fn ask(requests: &Requests, op: Op) -> Result<Reply, OpsError> {
    let (reply, answer) = oneshot::channel();
    requests
        .send(Request { op, reply })
        .await
        .map_err(|_| OpsError::Unavailable)?;
    answer.await.map_err(|_| OpsError::Unavailable)?
}
