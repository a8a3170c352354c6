//! weir test fixture: a consumer that misbehaves on demand. NOT an example.
//!
//! The event's value picks the behaviour; anything else is echoed to config
//! `output` (key, value and headers kept):
//!
//! | value | behaviour |
//! |---|---|
//! | `loop` | spins forever (the host's deadline must interrupt it) |
//! | `grow` | allocates until memory runs out (the host's memory cap) |
//! | `recurse` | recurses without end (stack overflow) |
//! | `panic` | panics |
//! | `forbidden` | emits to a topic it may not use; the error rejects the event |
//! | `flood` | emits 1,000,000 records; the host's cap rejects the event |
//! | `huge` | emits one 20 MB record; the size cap rejects the event |
//! | `amplify` | emits 1,000 records of 900 KB; the first refusal rejects the event |
//! | `amplify-lenient` | emits records of 900 KB until the host refuses one, then returns ok |
//! | `flaky` | asks for a retry twice, then echoes |
//! | `retry` | always asks for a retry |
//! | `reject` | always rejects |

use std::cell::RefCell;
use std::collections::HashMap;

use weir_sdk::prelude::*;

/// The fixture consumer.
#[derive(Debug)]
pub struct Misbehave;

thread_local! {
    /// Calls seen per (partition, offset), for `flaky`.
    static SEEN: RefCell<HashMap<(i32, i64), u32>> = RefCell::new(HashMap::new());
}

#[allow(
    unconditional_recursion,
    reason = "the fixture overflows the stack on purpose"
)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(depth + 1)) + 1
}

impl Consumer for Misbehave {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let output = config::require("output")?;
        match event.value_str().ok().flatten().unwrap_or_default() {
            "loop" => loop {
                std::hint::black_box(event.offset());
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                std::hint::black_box(recurse(0));
            }
            "panic" => panic!("the fixture panics on purpose at offset {}", event.offset()),
            "forbidden" => ctx.emit(event.forward_to("a-topic-nobody-allowed"))?,
            "flood" => {
                for _ in 0..1_000_000 {
                    ctx.emit(event.forward_to(output.as_str()))?;
                }
            }
            "huge" => ctx.emit(Record::to(output.as_str()).value(vec![7u8; 20 << 20]))?,
            "amplify" => {
                for _ in 0..1_000 {
                    ctx.emit(Record::to(output.as_str()).value(vec![b'a'; 900_000]))?;
                }
            }
            "amplify-lenient" => {
                for _ in 0..1_000 {
                    let record = Record::to(output.as_str()).value(vec![b'a'; 900_000]);
                    if ctx.emit(record).is_err() {
                        break;
                    }
                }
            }
            "flaky" => {
                let calls = SEEN.with(|seen| {
                    let mut seen = seen.borrow_mut();
                    let n = seen.entry((event.partition(), event.offset())).or_default();
                    *n += 1;
                    *n
                });
                if calls <= 2 {
                    return Err(Error::retry(format!("flaky call {calls}")));
                }
                ctx.emit(event.forward_to(output.as_str()))?;
            }
            "retry" => return Err(Error::retry("the fixture always asks for a retry")),
            "reject" => return Err(Error::reject("the fixture rejects this on purpose")),
            _ => ctx.emit(event.forward_to(output.as_str()))?,
        }
        Ok(())
    }
}

weir_sdk::export_consumer!(Misbehave);
