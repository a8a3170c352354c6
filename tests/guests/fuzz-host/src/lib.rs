//! weir test fixture for the `host_imports` fuzz target (`fuzz/`): decodes
//! a small operation language from each event's value and makes the host
//! calls it says, checking every answer against what the host promises.
//! NOT an example.
//!
//! The value is read byte by byte (a missing byte reads as 0); each
//! operation is one byte modulo 12, then its operands:
//!
//! | op | operands | call |
//! |---|---|---|
//! | 0 | topic, key size, value size, headers, partition | `emit` of one record |
//! | 1 | level, size, char | `log` |
//! | 2 | key | `config::get`, compared with `config::all` |
//! | 3 | key | `state::get` |
//! | 4 | key, value | `state::set` |
//! | 5 | key, value, ttl | `state::set_with_ttl` |
//! | 6 | key | `state::delete` |
//! | 7 | prefix, after, limit | `state::scan` |
//! | 8 | MiB | allocates and touches that much memory (may pass `limits.memory-mib`) |
//! | 9 | `0xAA` | panics (a trap); any other byte: nothing |
//! | 10 | verdict | ends the event: `ok`, `retry` or `reject` |
//! | 11 | count | `emit` of up to 15 small records (reaches `max-emits`) |
//!
//! The limits come from the manifest's `[config]` (`outputs`, `max-emits`,
//! `max-record-bytes`, `max-state-key-bytes`, `max-state-value-bytes`),
//! which the harness keeps equal to its `[limits]`. An answer the host
//! should not have given rejects the event with a reason starting with
//! [`BROKEN`], which the harness treats as a bug; so do state reads that
//! contradict the event's own writes.

use std::collections::BTreeMap;

use weir_sdk::EmitError;
use weir_sdk::log::Level;
use weir_sdk::prelude::*;
use weir_sdk::state::StateError;

/// Start of a reject reason that reports a broken host promise.
pub const BROKEN: &str = "BROKEN:";

/// The fixture consumer.
#[derive(Debug)]
pub struct FuzzHost;

impl Consumer for FuzzHost {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let limits = Limits::from_config()?;
        let mut run = Run {
            bytes: event.value().unwrap_or_default(),
            at: 0,
            limits,
            accepted: 0,
            writes: BTreeMap::new(),
        };
        while run.at < run.bytes.len() {
            run.step(ctx)?;
        }
        Ok(())
    }
}

/// The limits the host enforces, from `[config]`.
struct Limits {
    outputs: Vec<String>,
    max_emits: usize,
    max_record_bytes: usize,
    max_key: usize,
    max_value: usize,
}

impl Limits {
    fn from_config() -> Result<Self, Error> {
        let number = |key: &str| -> Result<usize, Error> {
            config::parse(key)?.ok_or_else(|| Error::reject(format!("[config] lacks `{key}`")))
        };
        Ok(Self {
            outputs: config::list("outputs"),
            max_emits: number("max-emits")?,
            max_record_bytes: number("max-record-bytes")?,
            max_key: number("max-state-key-bytes")?,
            max_value: number("max-state-value-bytes")?,
        })
    }
}

/// One event's operations and what they did.
struct Run<'a> {
    bytes: &'a [u8],
    at: usize,
    limits: Limits,
    /// Records the host accepted for this event.
    accepted: usize,
    /// This event's successful writes (`None`: deleted); reads must agree.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

fn broken(what: String) -> Error {
    Error::reject(format!("{BROKEN} {what}"))
}

impl Run<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A key: `len % 8` bytes, or `(len & 0x7f) * 8` with the high bit
    /// set (past `max-state-key-bytes`), all of one byte value.
    fn key(&mut self) -> Vec<u8> {
        let len = self.byte();
        let len = if len & 0x80 == 0 {
            usize::from(len % 8)
        } else {
            usize::from(len & 0x7f) * 8
        };
        vec![self.byte(); len]
    }

    /// A value: up to 1016 bytes, or up to 127 KiB (past
    /// `max-state-value-bytes`) with the high bit set.
    fn value(&mut self) -> Vec<u8> {
        let len = self.byte();
        let len = if len & 0x80 == 0 {
            usize::from(len) * 8
        } else {
            usize::from(len & 0x7f) * 1024
        };
        vec![self.byte(); len]
    }

    fn step(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let op = self.byte() % 12;
        match op {
            0 => self.emit(ctx),
            1 => {
                let level = [
                    Level::Trace,
                    Level::Debug,
                    Level::Info,
                    Level::Warn,
                    Level::Error,
                ][usize::from(self.byte() % 5)];
                let size = usize::from(self.byte()) * 64;
                let c = ['a', 'é', '€', '\n'][usize::from(self.byte() % 4)];
                weir_sdk::log::log(level, &c.to_string().repeat(size));
                Ok(())
            }
            2 => {
                let key = match self.byte() % 4 {
                    0 => "outputs".to_owned(),
                    1 => "max-emits".to_owned(),
                    2 => "missing".to_owned(),
                    _ => String::from_utf8_lossy(&self.key()).into_owned(),
                };
                let all = config::all();
                let listed = all.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
                let sorted = all.windows(2).all(|w| w[0].0 < w[1].0);
                if config::get(&key) != listed || !sorted {
                    return Err(broken(format!("config `{key}` disagrees with get-all")));
                }
                Ok(())
            }
            3 => {
                let key = self.key();
                self.read_back(&key, state::get(&key))
            }
            4 | 5 => {
                let (key, value) = (self.key(), self.value());
                let result = if op == 5 {
                    let ms = match self.byte() {
                        0 => 0,
                        1 => u64::MAX,
                        b => u64::from(b) * 1000,
                    };
                    state::set_with_ttl(&key, &value, std::time::Duration::from_millis(ms))
                } else {
                    state::set(&key, &value)
                };
                self.wrote(key, Some(value), result)
            }
            6 => {
                let key = self.key();
                let result = state::delete(&key);
                self.wrote(key, None, result)
            }
            7 => self.scan(),
            8 => {
                let mib = usize::from(self.byte() % 64);
                let mut block = vec![0u8; mib << 20];
                block.iter_mut().step_by(4096).for_each(|b| *b = 1);
                std::hint::black_box(&block);
                Ok(())
            }
            9 => {
                if self.byte() == 0xAA {
                    panic!("the fuzz input asked for a trap");
                }
                Ok(())
            }
            10 => {
                let verdict = self.byte() % 3;
                self.at = self.bytes.len();
                match verdict {
                    0 => Ok(()),
                    1 => Err(Error::retry("the fuzz input asked for a retry")),
                    _ => Err(Error::reject("the fuzz input asked for a reject")),
                }
            }
            _ => {
                for _ in 0..self.byte() % 16 {
                    let expected = self.expected_emit("fuzz-out", None, 1);
                    let result = ctx.emit(Record::to("fuzz-out").value("x"));
                    self.check_emit(expected, result)?;
                }
                Ok(())
            }
        }
    }

    fn emit(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let topic = ["fuzz-out", "fuzz-side", "not-allowed", ""][usize::from(self.byte() % 4)];
        let key_len = usize::from(self.byte()) * 4;
        let value_len = usize::from(self.byte()) * 32;
        let mut record = Record::to(topic).value(vec![b'v'; value_len]);
        if key_len > 0 {
            record = record.key(vec![b'k'; key_len]);
        }
        let mut size = key_len + value_len;
        for i in 0..self.byte() % 4 {
            let name = format!("h{i}");
            let value = vec![b'h'; usize::from(self.byte())];
            size += name.len() + value.len();
            record = record.header(name, value);
        }
        let partition = match self.byte() {
            0 => None,
            p => Some(i32::from(p as i8)),
        };
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let expected = self.expected_emit(topic, partition, size);
        let result = ctx.emit(record);
        self.check_emit(expected, result)
    }

    /// What the host must answer to an emit, in the order it checks.
    fn expected_emit(&self, topic: &str, partition: Option<i32>, size: usize) -> Option<EmitError> {
        let l = &self.limits;
        if !l.outputs.iter().any(|t| t == topic) {
            Some(EmitError::TopicNotAllowed(topic.to_owned()))
        } else if let Some(p) = partition.filter(|p| *p < 0) {
            Some(EmitError::InvalidPartition(p))
        } else if size > l.max_record_bytes {
            Some(EmitError::TooLarge(l.max_record_bytes as u32))
        } else if self.accepted >= l.max_emits {
            Some(EmitError::TooMany(l.max_emits as u32))
        } else {
            None
        }
    }

    fn check_emit(
        &mut self,
        expected: Option<EmitError>,
        got: Result<(), EmitError>,
    ) -> Result<(), Error> {
        if got.is_ok() {
            self.accepted += 1;
        }
        if expected != got.clone().err() {
            return Err(broken(format!("emit: expected {expected:?}, got {got:?}")));
        }
        Ok(())
    }

    /// A write's answer: size errors exactly when the sizes say so.
    fn wrote(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        got: Result<(), StateError>,
    ) -> Result<(), Error> {
        let l = &self.limits;
        let size_error = if key.len() > l.max_key {
            Some(StateError::KeyTooLarge(l.max_key as u32))
        } else {
            value
                .as_ref()
                .filter(|v| v.len() > l.max_value)
                .map(|_| StateError::ValueTooLarge(l.max_value as u32))
        };
        match (&size_error, &got) {
            (Some(expected), Err(error)) if expected == error => Ok(()),
            (None, Ok(())) => {
                self.writes.insert(key, value);
                Ok(())
            }
            (None, Err(StateError::QuotaExceeded(_) | StateError::TooMany(_))) => Ok(()),
            _ => Err(broken(format!(
                "write of a {}-byte key: expected {size_error:?}, got {got:?}",
                key.len()
            ))),
        }
    }

    /// A read of `key` must show this event's last write to it.
    fn read_back(&self, key: &[u8], got: Option<Vec<u8>>) -> Result<(), Error> {
        match self.writes.get(key) {
            Some(written) if *written != got => Err(broken(format!(
                "get of a {}-byte key after this event wrote it",
                key.len()
            ))),
            _ => Ok(()),
        }
    }

    fn scan(&mut self) -> Result<(), Error> {
        let prefix = self.key();
        let after = match self.byte() % 2 {
            0 => None,
            _ => Some(self.key()),
        };
        let limit = match self.byte() {
            0xff => u32::MAX,
            b => u32::from(b) * 8,
        };
        let found = state::scan(&prefix, after.as_deref(), limit);
        let cap = (limit as usize).min(state::SCAN_PAGE as usize);
        let ordered = found.windows(2).all(|w| w[0].0 < w[1].0);
        let in_range = found
            .iter()
            .all(|(k, _)| k.starts_with(&prefix) && after.as_ref().is_none_or(|a| k > a));
        if found.len() > cap || !ordered || !in_range {
            return Err(broken(format!(
                "scan returned {} entries (limit {limit}), ordered {ordered}, in range {in_range}",
                found.len()
            )));
        }
        for (key, value) in &found {
            self.read_back(key, Some(value.clone()))?;
        }
        Ok(())
    }
}

weir_sdk::export_consumer!(FuzzHost);
