//! The start-up check that the cluster accepts weir's credentials.

use crate::kafka::SecurityError;

/// How long weir waits at start for the cluster to accept or reject its
/// credentials (see [`KafkaSettings::check_credentials`]).
pub(super) const CREDENTIAL_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The start-up credential check, answering `Ok(true)` when the cluster
/// accepted weir's settings, `Ok(false)` when it did not answer in time.
pub(super) type CredentialCheck = tokio::task::JoinHandle<Result<bool, SecurityError>>;

/// Logs the credential check's answer; the refusal, if kafka refused.
pub(super) fn credentials_checked(
    checked: Result<Result<bool, SecurityError>, tokio::task::JoinError>,
    brokers: &str,
) -> Option<SecurityError> {
    match checked {
        Ok(Ok(true)) => tracing::debug!("kafka cluster answered; credentials accepted"),
        Ok(Ok(false)) => tracing::warn!(
            brokers,
            within = ?CREDENTIAL_CHECK,
            "kafka cluster did not answer yet; librdkafka keeps retrying"
        ),
        Ok(Err(refused)) => {
            tracing::error!(error = %refused,
                "kafka refused weir's security settings; shutting down");
            return Some(refused);
        }
        Err(err) => tracing::warn!(error = %err, "kafka credential check did not finish"),
    }
    None
}
