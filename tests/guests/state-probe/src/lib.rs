//! weir test fixture: drives the `state` interface from commands in the
//! event value. NOT an example.
//!
//! The value is one command, words separated by whitespace (keys and values
//! are single words). Results go to topic `probe-out`, keyed with the
//! event's key:
//!
//! | command | behaviour |
//! |---|---|
//! | `get <key>` | emits the value, or `none` |
//! | `set <key> <value>` | `state::set` |
//! | `ttl <key> <value> <ms>` | `state::set_with_ttl` for `ms` milliseconds |
//! | `del <key>` | `state::delete` |
//! | `fill <prefix> <count> <bytes>` | sets `count` keys `<prefix><i>` (`i` from 0, zero-padded to 6 digits) to `bytes` bytes of `x`, stopping at the first error |
//! | `scan <prefix>` | emits every key found by `state::scan_prefix`, joined by commas (empty if none); `scan` alone: every key |
//! | `reject-after-set <key> <value>` | `state::set`, then rejects the event |
//! | `once <key>` | `first` when `key` is absent (and sets it to `1`), `seen` when present: a dedupe in miniature |
//! | `via <topic> <command>` | runs `<command>`, replying to `<topic>` instead of `probe-out` (the manifest must list it) |
//!
//! `set`, `ttl`, `del` and `fill` emit `ok` when every write succeeded, and
//! `error: <StateError as Display>` when the host refused one; the event is
//! `ok` either way (so the writes `fill` made before the error are kept).
//! `reject-after-set` emits nothing when its write succeeds (the rejection
//! discards the write) and `error: ...` like `set` when it fails. Anything
//! else is rejected.

use weir_sdk::prelude::*;
use weir_sdk::state::StateError;

/// Where every result goes.
pub const OUTPUT: &str = "probe-out";

/// The fixture consumer.
#[derive(Debug)]
pub struct StateProbe;

impl Consumer for StateProbe {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let command = event.value_str()?.unwrap_or_default();
        let words: Vec<&str> = command.split_whitespace().collect();
        let (topic, words) = match words[..] {
            ["via", topic, ref rest @ ..] => (topic, rest),
            _ => (OUTPUT, &words[..]),
        };
        let reply = run(command, words)?;
        let mut record = Record::to(topic).value(reply);
        if let Some(key) = event.key() {
            record = record.key(key);
        }
        ctx.emit(record)?;
        Ok(())
    }
}

/// Runs one command (`words`, from `command`): the reply.
fn run(command: &str, words: &[&str]) -> Result<Vec<u8>, Error> {
    Ok(match words[..] {
        ["get", key] => state::get(key).unwrap_or_else(|| b"none".to_vec()),
        ["scan"] => scan(""),
        ["scan", prefix] => scan(prefix),
        ["set", key, value] => status(state::set(key, value)),
        ["ttl", key, value, ms] => {
            let ms = ms.parse().or_reject("ttl: <ms> is not a number")?;
            status(state::set_with_ttl(
                key,
                value,
                std::time::Duration::from_millis(ms),
            ))
        }
        ["del", key] => status(state::delete(key)),
        ["fill", prefix, count, bytes] => {
            let count: u32 = count.parse().or_reject("fill: <count> is not a number")?;
            let bytes: usize = bytes.parse().or_reject("fill: <bytes> is not a number")?;
            let value = vec![b'x'; bytes];
            status((0..count).try_for_each(|i| state::set(format!("{prefix}{i:06}"), &value)))
        }
        ["reject-after-set", key, value] => match state::set(key, value) {
            Ok(()) => return Err(Error::reject("the fixture rejects after a set on purpose")),
            Err(error) => status(Err(error)),
        },
        ["once", key] => match state::get(key) {
            Some(_) => b"seen".to_vec(),
            None => match state::set(key, "1") {
                Ok(()) => b"first".to_vec(),
                Err(error) => status(Err(error)),
            },
        },
        _ => return Err(Error::reject(format!("unknown probe command `{command}`"))),
    })
}

/// Every key starting with `prefix`, joined by commas.
fn scan(prefix: &str) -> Vec<u8> {
    let keys: Vec<String> = state::scan_prefix(prefix)
        .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
        .collect();
    keys.join(",").into_bytes()
}

/// `ok`, or `error: <why>`.
fn status(result: Result<(), StateError>) -> Vec<u8> {
    match result {
        Ok(()) => b"ok".to_vec(),
        Err(error) => format!("error: {error}").into_bytes(),
    }
}

weir_sdk::export_consumer!(StateProbe);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_sdk::testing::StateLimits;

    use super::*;

    fn probe(harness: &Harness, command: &str) -> Option<String> {
        let outcome = harness.run::<StateProbe>(Event::builder().key("k").value(command));
        assert!(outcome.is_ok(), "{command}: {outcome:?}");
        let [record] = outcome.produced() else {
            panic!("{command}: one record expected: {outcome:?}")
        };
        assert_eq!(record.topic(), OUTPUT);
        assert_eq!(record.key(), Some(&b"k"[..]));
        record.value_str().unwrap().map(str::to_owned)
    }

    #[test]
    fn commands_reply_on_probe_out() {
        let harness = Harness::new();
        let probe = |command| probe(&harness, command).unwrap();
        assert_eq!(probe("get a"), "none");
        assert_eq!(probe("set a 1"), "ok");
        assert_eq!(probe("get a"), "1");
        assert_eq!(probe("ttl t 2 100"), "ok");
        assert_eq!(probe("fill f/ 3 10"), "ok");
        assert_eq!(probe("scan f/"), "f/000000,f/000001,f/000002");
        assert_eq!(probe("scan"), "a,f/000000,f/000001,f/000002,t");
        assert_eq!(probe("del a"), "ok");
        assert_eq!(probe("get a"), "none");
        harness.advance(Duration::from_millis(100));
        assert_eq!(probe("get t"), "none");
        assert_eq!(probe("scan nothing"), "");
        assert_eq!(probe("once o"), "first");
        assert_eq!(probe("once o"), "seen");
    }

    #[test]
    fn via_replies_to_another_topic() {
        let harness = Harness::new();
        let outcome =
            harness.run::<StateProbe>(Event::builder().key("k").value("via elsewhere once v"));
        let [record] = outcome.produced() else {
            panic!("one record expected: {outcome:?}")
        };
        assert_eq!(record.topic(), "elsewhere");
        assert_eq!(record.value_str().unwrap(), Some("first"));
        assert_eq!(harness.state_get("v").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn errors_are_replies_and_reject_after_set_discards() {
        let harness = Harness::new().state_limits(StateLimits {
            state_mib: 1,
            ..StateLimits::default()
        });
        assert_eq!(
            probe(&harness, "fill q 3 400000").unwrap(),
            "error: state store is full: `limits.state-mib` (1 MiB) would be exceeded"
        );
        assert!(
            harness.state_get("q000001").is_some(),
            "writes before the error are kept"
        );
        assert!(harness.state_get("q000002").is_none());

        let outcome = harness.run::<StateProbe>(Event::builder().value("reject-after-set r 1"));
        assert_eq!(
            outcome.reason(),
            Some("the fixture rejects after a set on purpose")
        );
        assert_eq!(harness.state_get("r"), None);
        let outcome = harness.run::<StateProbe>(Event::builder().value("bogus"));
        assert_eq!(outcome.reason(), Some("unknown probe command `bogus`"));
    }
}
