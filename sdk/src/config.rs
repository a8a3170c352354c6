//! Read-only access to the `[config]` table of the module's manifest.
//!
//! Keys and values are strings. The helpers that can fail return a
//! **reject**: configuration is fixed for a module version, so a bad value
//! will not get better by retrying the event. Reading is a call into the
//! host that copies the value, cheap but not free; read what you need.

use std::fmt::Display;
use std::str::FromStr;

use crate::error::Error;
use crate::host;

/// The value for `key`, if the manifest sets it.
pub fn get(key: &str) -> Option<String> {
    host::config_get(key)
}

/// Every key and value, sorted by key.
pub fn all() -> Vec<(String, String)> {
    host::config_all()
}

/// The value for `key`, or `default` when the manifest does not set it.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// The value for `key`; a missing key is a reject naming it.
pub fn require(key: &str) -> Result<String, Error> {
    get(key).ok_or_else(|| Error::reject(format!("config key `{key}` is not set")))
}

/// The value for `key` parsed as `T`, `None` when it is not set; a value
/// that does not parse is a reject naming the key.
///
/// ```
/// use weir_sdk::{config, testing::Harness};
///
/// let limit: Option<f64> = Harness::new()
///     .config("audit-above", "100")
///     .with(|| config::parse("audit-above"))
///     .unwrap();
/// assert_eq!(limit, Some(100.0));
/// ```
pub fn parse<T>(key: &str) -> Result<Option<T>, Error>
where
    T: FromStr,
    T::Err: Display,
{
    get(key)
        .map(|text| {
            text.trim().parse::<T>().map_err(|e| {
                Error::reject(format!(
                    "config key `{key}` has invalid value `{text}`: {e}"
                ))
            })
        })
        .transpose()
}

/// The value for `key` split at commas, each item trimmed, empty items
/// dropped; an empty list when the key is not set.
pub fn list(key: &str) -> Vec<String> {
    get(key)
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[test]
    fn helpers_read_the_harness_config() {
        let harness = Harness::new()
            .config("eu", " DE, FR,,NL ")
            .config("limit", "12")
            .config("bad", "x");
        harness.with(|| {
            assert_eq!(list("eu"), ["DE", "FR", "NL"]);
            assert!(list("missing").is_empty());
            assert_eq!(parse::<u32>("limit"), Ok(Some(12)));
            assert_eq!(parse::<u32>("missing"), Ok(None));
            let error = parse::<u32>("bad").unwrap_err();
            assert!(error.is_reject());
            assert!(
                error
                    .message()
                    .starts_with("config key `bad` has invalid value `x`")
            );
            assert_eq!(require("limit"), Ok("12".to_owned()));
            assert_eq!(
                require("missing"),
                Err(Error::reject("config key `missing` is not set"))
            );
            assert_eq!(get_or("missing", "d"), "d");
            let keys: Vec<_> = all().into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["bad", "eu", "limit"]);
        });
    }

    #[test]
    fn outside_a_harness_there_is_no_config_on_native_targets() {
        assert_eq!(get("anything"), None);
        assert!(all().is_empty());
    }
}
