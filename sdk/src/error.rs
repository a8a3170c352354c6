//! Handler errors and the disposition they become.
//!
//! A handler's `Err` is not a crash: it tells the host what to do with the
//! event. [`Error::reject`] (the default for `?`) means the event can never
//! succeed, so the host reports it and moves on; [`Error::retry`] means the
//! failure is transient and the host should call again after a backoff.

use std::fmt;

use crate::bindings::consumer::weir::consumer::types as wit;

/// Whether a failed event is worth handling again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Transient: the host calls the handler again with the same event after
    /// a backoff, up to the module's retry limit.
    Retry,
    /// Permanent: the host reports the event with the reason (for example to
    /// a dead-letter topic) and moves on.
    Reject,
}

/// A failed event: what went wrong and whether retrying could help.
///
/// Every [`std::error::Error`] converts into a **reject** with `?`, carrying
/// the error's message and its chain of sources, because an error that the
/// handler did not anticipate usually comes from the event itself (bad JSON,
/// a missing field). Say [`Error::retry`] explicitly for failures that
/// another attempt can cure.
///
/// `Error` deliberately does not implement [`std::error::Error`]; that is what
/// lets the blanket `From` conversion exist (the same trade-off as `anyhow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A permanent failure: the event will never succeed.
    pub fn reject(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Reject,
            message: message.into(),
        }
    }

    /// A transient failure: handling the same event again later may succeed.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retry,
            message: message.into(),
        }
    }

    /// Whether the host should retry or reject the event.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `true` for [`ErrorKind::Retry`].
    pub fn is_retry(&self) -> bool {
        self.kind == ErrorKind::Retry
    }

    /// `true` for [`ErrorKind::Reject`].
    pub fn is_reject(&self) -> bool {
        self.kind == ErrorKind::Reject
    }

    /// The reason given to the host.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, made transient.
    pub fn into_retry(self) -> Self {
        Self::retry(self.message)
    }

    /// The same error, made permanent.
    pub fn into_reject(self) -> Self {
        Self::reject(self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::reject(message)
    }
}

/// Turns any `Result` or `Option` into a handler [`Error`] with a
/// description of what was being attempted.
///
/// ```
/// use weir_sdk::{Error, ResultExt};
///
/// fn quantity(text: &str) -> Result<u32, Error> {
///     text.parse::<u32>().or_reject("quantity is not a number")
/// }
/// assert_eq!(
///     quantity("x").unwrap_err().message(),
///     "quantity is not a number: invalid digit found in string"
/// );
/// let missing: Option<u32> = None;
/// assert!(missing.or_retry("price service did not answer").unwrap_err().is_retry());
/// ```
pub trait ResultExt<T> {
    /// On failure, a reject whose message is `context` followed by the cause.
    fn or_reject(self, context: &str) -> Result<T, Error>;
    /// On failure, a retry whose message is `context` followed by the cause.
    fn or_retry(self, context: &str) -> Result<T, Error>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_reject(self, context: &str) -> Result<T, Error> {
        self.map_err(|e| Error::reject(format!("{context}: {e}")))
    }

    fn or_retry(self, context: &str) -> Result<T, Error> {
        self.map_err(|e| Error::retry(format!("{context}: {e}")))
    }
}

impl<T> ResultExt<T> for Option<T> {
    fn or_reject(self, context: &str) -> Result<T, Error> {
        self.ok_or_else(|| Error::reject(context))
    }

    fn or_retry(self, context: &str) -> Result<T, Error> {
        self.ok_or_else(|| Error::retry(context))
    }
}

/// The verdict on one event that the host receives, mirroring the WIT
/// `disposition` variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Handled; what was emitted is produced and the offset can be committed.
    Ok,
    /// Transient failure with its reason; the host retries after a backoff.
    Retry(String),
    /// Permanent failure with its reason; the host reports it and moves on.
    Reject(String),
}

impl Disposition {
    /// `true` for [`Disposition::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    pub(crate) fn into_wit(self) -> wit::Disposition {
        match self {
            Self::Ok => wit::Disposition::Ok,
            Self::Retry(reason) => wit::Disposition::Retry(reason),
            Self::Reject(reason) => wit::Disposition::Reject(reason),
        }
    }
}

impl From<Result<(), Error>> for Disposition {
    fn from(result: Result<(), Error>) -> Self {
        match result {
            Ok(()) => Self::Ok,
            Err(Error {
                kind: ErrorKind::Retry,
                message,
            }) => Self::Retry(message),
            Err(Error {
                kind: ErrorKind::Reject,
                message,
            }) => Self::Reject(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::num::ParseIntError);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bad quantity")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn question_mark_rejects_with_the_whole_chain() {
        let inner = "x".parse::<u8>().unwrap_err();
        let error = Error::from(Outer(inner));
        assert!(error.is_reject());
        assert_eq!(
            error.message(),
            "bad quantity: invalid digit found in string"
        );
    }

    #[test]
    fn kinds_convert_and_map_to_dispositions() {
        let retry = Error::reject("down").into_retry();
        assert_eq!(retry.kind(), ErrorKind::Retry);
        assert_eq!(
            Disposition::from(Err(retry)),
            Disposition::Retry("down".into())
        );
        assert_eq!(
            Disposition::from(Err(Error::retry("x").into_reject())),
            Disposition::Reject("x".into())
        );
        assert!(Disposition::from(Ok(())).is_ok());
        assert_eq!(Error::retry("why").to_string(), "why");
    }
}
