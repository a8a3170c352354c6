//! Run a consumer natively in unit tests, without a host.
//!
//! A [`Harness`] plays the host for the duration of one call on the current
//! thread: it serves the config it was given, collects emitted records and
//! log lines, and refuses emits the way the host would for topics outside
//! the declared output topics or past the emit limit.
//!
//! ```
//! use weir_sdk::testing::Harness;
//! use weir_sdk::{Consumer, Context, Error, Event, Record, config};
//!
//! struct Tag;
//!
//! impl Consumer for Tag {
//!     fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
//!         let tag = config::require("tag")?;
//!         ctx.emit(event.forward_to("tagged").header("tag", tag))?;
//!         Ok(())
//!     }
//! }
//!
//! let outcome = Harness::new()
//!     .config("tag", "blue")
//!     .output_topics(["tagged"])
//!     .run::<Tag>(Event::builder().value("hello"));
//! assert!(outcome.is_ok());
//! assert_eq!(outcome.emitted[0].header("tag"), Some(&b"blue"[..]));
//!
//! let outcome = Harness::new().run::<Tag>(Event::builder().value("hello"));
//! assert_eq!(outcome.reason(), Some("config key `tag` is not set"));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::consumer::{Consumer, handle_batch, handle_event};
use crate::error::{Disposition, Error};
use crate::event::Event;
use crate::log::Level;
use crate::record::{EmitError, Record};

/// A stand-in host for native tests; cheap to clone and reusable.
#[derive(Debug, Clone, Default)]
pub struct Harness {
    config: BTreeMap<String, String>,
    output_topics: Option<BTreeSet<String>>,
    max_emits: Option<u32>,
}

impl Harness {
    /// A harness with no config, any output topic allowed and no emit limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one `[config]` entry.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Only allows emits to these topics, like the manifest's
    /// `output-topics`; others fail with [`EmitError::TopicNotAllowed`].
    #[must_use]
    pub fn output_topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.output_topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Fails emits past `max` per call with [`EmitError::TooMany`].
    #[must_use]
    pub fn max_emits(mut self, max: u32) -> Self {
        self.max_emits = Some(max);
        self
    }

    /// Calls `C` with one event, as the `handler` export does.
    pub fn run<C: Consumer>(&self, event: impl Into<Event>) -> Outcome {
        let event = event.into();
        let (result, session) = self.session(|| handle_event::<C>(&event));
        Outcome {
            result,
            emitted: session.emitted,
            logs: session.logs,
        }
    }

    /// Calls `C` with a batch, as the `batch-handler` export does.
    pub fn run_batch<C: Consumer>(
        &self,
        events: impl IntoIterator<Item = impl Into<Event>>,
    ) -> BatchOutcome {
        let events: Vec<Event> = events.into_iter().map(Into::into).collect();
        let (results, session) = self.session(|| handle_batch::<C>(&events));
        BatchOutcome {
            results,
            emitted: session.emitted,
            logs: session.logs,
        }
    }

    /// Runs `f` with this harness standing in for the host, for testing
    /// helpers that read config or log outside a consumer.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.session(f).0
    }

    fn session<R>(&self, f: impl FnOnce() -> R) -> (R, Session) {
        let fresh = Session {
            harness: self.clone(),
            emitted: Vec::new(),
            logs: Vec::new(),
        };
        SESSION.with(|cell| {
            let mut slot = cell.borrow_mut();
            assert!(
                slot.is_none(),
                "a Harness is already running on this thread"
            );
            *slot = Some(fresh);
        });
        // Clears the session even if the consumer panics, so one failing
        // test does not poison the next one on the same thread.
        let _guard = SessionGuard;
        let value = f();
        let session = SESSION.with(|cell| cell.borrow_mut().take());
        (value, session.unwrap_or_default())
    }
}

/// What one [`Harness::run`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the handler returned.
    pub result: Result<(), Error>,
    /// Every record the harness accepted, in emit order, whatever the result.
    pub emitted: Vec<Record>,
    /// Every log line, in order.
    pub logs: Vec<LogLine>,
}

impl Outcome {
    /// `true` when the handler returned `Ok`.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The disposition the host would receive.
    pub fn disposition(&self) -> Disposition {
        self.result.clone().into()
    }

    /// The retry or reject reason, `None` when the handler succeeded.
    pub fn reason(&self) -> Option<&str> {
        self.result.as_ref().err().map(Error::message)
    }

    /// The records the host would produce: all emitted records when the
    /// handler succeeded, none otherwise.
    pub fn produced(&self) -> &[Record] {
        if self.is_ok() { &self.emitted } else { &[] }
    }
}

/// What one [`Harness::run_batch`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// What `on_batch` returned: one result per event when it is correct.
    pub results: Vec<Result<(), Error>>,
    /// Every record the harness accepted, in emit order.
    pub emitted: Vec<Record>,
    /// Every log line, in order.
    pub logs: Vec<LogLine>,
}

impl BatchOutcome {
    /// The dispositions the host would receive.
    pub fn dispositions(&self) -> Vec<Disposition> {
        self.results
            .iter()
            .cloned()
            .map(Disposition::from)
            .collect()
    }

    /// The records the host would produce: none if any event asked for a
    /// retry (the host then retries the whole batch), all of them otherwise.
    pub fn produced(&self) -> &[Record] {
        let retried = self
            .results
            .iter()
            .any(|r| matches!(r, Err(e) if e.is_retry()));
        if retried { &[] } else { &self.emitted }
    }
}

/// One line logged through the SDK during a harness call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
}

#[derive(Debug, Default)]
struct Session {
    harness: Harness,
    emitted: Vec<Record>,
    logs: Vec<LogLine>,
}

impl Session {
    fn emit(&mut self, record: Record) -> Result<(), EmitError> {
        let harness = &self.harness;
        if let Some(topics) = &harness.output_topics
            && !topics.contains(record.topic())
        {
            return Err(EmitError::TopicNotAllowed(record.topic().to_owned()));
        }
        if let Some(p) = record.partition().filter(|p| *p < 0) {
            return Err(EmitError::InvalidPartition(p));
        }
        if let Some(max) = harness.max_emits
            && self.emitted.len() >= max as usize
        {
            return Err(EmitError::TooMany(max));
        }
        self.emitted.push(record);
        Ok(())
    }
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

struct SessionGuard;

impl Drop for SessionGuard {
    fn drop(&mut self) {
        SESSION.with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                slot.take();
            }
        });
    }
}

fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> Option<R> {
    SESSION.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// Emits into the running harness, or hands the record back if none runs.
pub(crate) fn try_emit(record: Record) -> Result<Result<(), EmitError>, Record> {
    SESSION.with(|cell| match cell.borrow_mut().as_mut() {
        Some(session) => Ok(session.emit(record)),
        None => Err(record),
    })
}

/// Logs into the running harness; `false` if none runs.
pub(crate) fn try_log(level: Level, message: &str) -> bool {
    with_session(|s| {
        s.logs.push(LogLine {
            level,
            message: message.to_owned(),
        });
    })
    .is_some()
}

pub(crate) fn try_config_get(key: &str) -> Option<Option<String>> {
    with_session(|s| s.harness.config.get(key).cloned())
}

pub(crate) fn try_config_all() -> Option<Vec<(String, String)>> {
    with_session(|s| {
        s.harness
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

#[cfg(test)]
mod tests;
