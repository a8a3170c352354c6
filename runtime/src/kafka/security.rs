//! The credential check at startup: does the cluster accept weir's
//! security settings? Failures that retrying cannot fix (rejected
//! credentials, an unverifiable certificate) are reported at once.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::KafkaSettings;
use crate::secrets::Scrubber;
use crate::sync::lock;

/// The cluster cannot be used with these security settings, and retrying
/// cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A broker rejected the credentials: wrong user or password, or a
    /// mechanism the listener does not offer.
    #[error(
        "kafka at {brokers} rejected weir's credentials ({settings}): {reason}; \
         check `sasl.mechanism`, `sasl.username` and `sasl.password` in [kafka]"
    )]
    Credentials {
        /// The bootstrap servers.
        brokers: String,
        /// The non-secret security settings in use, e.g.
        /// `security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.username=weir`.
        settings: String,
        /// librdkafka's reason, secrets removed.
        reason: String,
    },
    /// A broker's TLS certificate failed verification (unknown CA, or a
    /// name that does not match the address).
    #[error(
        "cannot verify the TLS certificate of kafka at {brokers} ({settings}): {reason}; \
         check `ssl.ca.location` in [kafka]"
    )]
    Certificate {
        /// The bootstrap servers.
        brokers: String,
        /// The non-secret security settings in use.
        settings: String,
        /// librdkafka's reason, secrets removed.
        reason: String,
    },
}

/// What a librdkafka error says about the security settings, if anything
/// retrying cannot fix: `Some(true)` rejected credentials, `Some(false)` an
/// unverifiable certificate.
fn security_failure(error: &KafkaError, reason: &str) -> Option<bool> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => Some(true),
        // librdkafka reports every TLS failure as `_SSL` and gives no code
        // for a failed verification: OpenSSL's reason text is all there is.
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => Some(false),
        _ => None,
    }
}

/// Records the first security failure a probing client reports.
struct ProbeContext {
    failure: std::sync::Mutex<Option<(bool, String)>>,
}

impl rdkafka::ClientContext for ProbeContext {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // The module consumers log the same connection troubles.
        tracing::debug!(target: "weir::kafka", facility = fac, "credential check: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(credentials) = security_failure(&error, reason) {
            let mut slot = lock(&self.failure);
            slot.get_or_insert_with(|| (credentials, reason.to_owned()));
        } else {
            tracing::debug!(target: "weir::kafka", error = %error, "credential check: {reason}");
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl KafkaSettings {
    /// Connects to the cluster with the `[kafka]` settings and waits up to
    /// `within` (or until `stop` fires) for it to answer a metadata request.
    /// Blocking.
    ///
    /// Returns `Ok(true)` once the cluster answered, `Ok(false)` if it did
    /// not answer in time (unreachable brokers are not fatal: librdkafka keeps
    /// reconnecting), and a [`SecurityError`] as soon as a broker rejects the
    /// credentials or its certificate fails verification.
    pub fn check_credentials(
        &self,
        within: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<bool, SecurityError> {
        use rdkafka::producer::{BaseProducer, Producer};
        let context = ProbeContext {
            failure: std::sync::Mutex::new(None),
        };
        let fail = |credentials: bool, reason: &str| {
            let (brokers, settings) = (self.brokers.clone(), self.security_summary());
            let reason = Scrubber::new(&self.passthrough).scrub(reason);
            if credentials {
                SecurityError::Credentials {
                    brokers,
                    settings,
                    reason,
                }
            } else {
                SecurityError::Certificate {
                    brokers,
                    settings,
                    reason,
                }
            }
        };
        let client: BaseProducer<ProbeContext> = match self
            .base(&[super::properties::Scope::Any])
            .create_with_context(context)
        {
            Ok(client) => client,
            // weir's own producer reports configuration errors.
            Err(_) => return Ok(false),
        };
        let deadline = std::time::Instant::now() + within;
        loop {
            let attempt = client
                .client()
                .fetch_metadata(None, Duration::from_millis(500));
            client.poll(Duration::ZERO);
            let failure = lock(&client.context().failure).clone();
            if let Some((credentials, reason)) = failure {
                return Err(fail(credentials, &reason));
            }
            match attempt {
                Ok(_) => return Ok(true),
                Err(err) => {
                    let reason = err.to_string();
                    if let Some(credentials) = security_failure(&err, &reason) {
                        return Err(fail(credentials, &reason));
                    }
                    if stop.is_cancelled() || std::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// The non-secret security settings, for messages.
    fn security_summary(&self) -> String {
        let shown: Vec<String> = [
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
        ]
        .iter()
        .filter_map(|k| self.passthrough.get(*k).map(|v| format!("{k}={v}")))
        .collect();
        if shown.is_empty() {
            "security.protocol=plaintext".to_owned()
        } else {
            shown.join(", ")
        }
    }
}
