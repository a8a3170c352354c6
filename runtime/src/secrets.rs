//! Keeping the secrets of the `[kafka]` passthrough out of everything weir
//! prints: `Debug` output, logs, error messages and the status endpoint.
//!
//! One rule decides what is secret ([`is_secret_key`]); every place that
//! shows librdkafka properties goes through [`redacted`] (a copy with secret
//! values replaced by [`REDACTED`]) or [`Scrubber`] (removes secret values
//! from free text such as a librdkafka error message).

use std::collections::BTreeMap;

/// What a secret value is replaced with.
pub const REDACTED: &str = "***";

/// librdkafka properties that hold a secret, by exact name.
const SECRET_KEYS: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore.password",
    "ssl.truststore.password",
];

/// Parts of a property name that mark it as secret, for properties not in
/// the list above (newer librdkafka versions, plugins).
const SECRET_MARKERS: &[&str] = &["password", "secret", "passphrase", "private.key", "jaas"];

/// Whether the librdkafka property `key` holds a secret (a password, a
/// client secret, private key material). Matching is case-insensitive.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str()) || SECRET_MARKERS.iter().any(|m| key.contains(m))
}

/// A copy of `properties` with every secret value replaced by [`REDACTED`]:
/// what `Debug` impls and diagnostics show.
pub fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_key(k) { REDACTED } else { v };
            (k.as_str(), shown)
        })
        .collect()
}

/// Removes the secret values of a set of properties from text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Secret values, longest first (so that a secret containing another is
    /// replaced whole).
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for the secret values of `properties`. Empty values are
    /// ignored (there is nothing to hide and replacing "" would garble text).
    pub fn new(properties: &BTreeMap<String, String>) -> Self {
        let mut secrets: Vec<String> = properties
            .iter()
            .filter(|(k, v)| is_secret_key(k) && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> BTreeMap<String, String> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "weir"),
            ("sasl.password", "hunter2-pw"),
            ("ssl.key.password", "keypass-77"),
            ("ssl.keystore.password", "storepass-88"),
            ("sasl.oauthbearer.client.secret", "oauth-sec-99"),
            ("SASL.PASSWORD.EXTRA", "upper-case-secret"),
            ("linger.ms", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn secret_keys_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "Sasl.Password",
            "some.future.secret.thing",
        ] {
            assert!(is_secret_key(key), "{key} should be secret");
        }
        for key in [
            "sasl.username",
            "sasl.mechanism",
            "security.protocol",
            "ssl.ca.location",
            "ssl.certificate.location",
            "linger.ms",
        ] {
            assert!(!is_secret_key(key), "{key} should be shown");
        }
    }

    #[test]
    fn redacted_hides_values_of_secret_keys_only() {
        let props = props();
        let shown = redacted(&props);
        assert_eq!(shown["sasl.password"], REDACTED);
        assert_eq!(shown["ssl.key.password"], REDACTED);
        assert_eq!(shown["ssl.keystore.password"], REDACTED);
        assert_eq!(shown["sasl.oauthbearer.client.secret"], REDACTED);
        assert_eq!(shown["SASL.PASSWORD.EXTRA"], REDACTED);
        assert_eq!(shown["sasl.username"], "weir");
        assert_eq!(shown["linger.ms"], "5");
        assert_eq!(shown.len(), props.len());
    }

    #[test]
    fn scrubber_removes_every_secret_value_from_text() {
        let scrubber = Scrubber::new(&props());
        let text = "failed: hunter2-pw / keypass-77 and storepass-88, oauth-sec-99, \
                    upper-case-secret; user weir, SCRAM-SHA-512";
        let clean = scrubber.scrub(text);
        for secret in [
            "hunter2-pw",
            "keypass-77",
            "storepass-88",
            "oauth-sec-99",
            "upper-case-secret",
        ] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.contains("user weir, SCRAM-SHA-512"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 5, "{clean}");
        assert!(!format!("{scrubber:?}").contains("hunter2"));
    }

    #[test]
    fn scrubber_replaces_the_longest_secret_first_and_ignores_empty_values() {
        let props: BTreeMap<String, String> = [
            ("sasl.password", "abc"),
            ("ssl.key.password", "abcdef"),
            ("ssl.keystore.password", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let scrubber = Scrubber::new(&props);
        assert_eq!(scrubber.scrub("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(scrubber.scrub("nothing here"), "nothing here");
    }
}
