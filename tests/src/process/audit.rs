//! Delivery audit: produce a known set of unique events, read back what weir
//! wrote, and count produced / consumed / missing / duplicate events and
//! order violations.
//!
//! Event `(p, seq)` is produced to input partition `p` with key `k<p>-<seq>`
//! and value `<p>:<seq>`; the identity guest forwards key and value, so the
//! value names the input event of every output record, and all copies of one
//! event land in the same output partition (the key decides it).
//!
//! A duplicate is *explained* by a hard kill when it is written after the
//! [`KillMark`] of that kill (at or past the output high watermarks measured
//! once the killed process was dead), its input offset is at or past the
//! offset the group had committed for that partition at the kill, its
//! earlier copy was written before the kill, and (when known) the killed
//! process owned the partition. That is exactly the in-flight window of the
//! kill: settled or in-flight events whose offsets were not committed yet.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use crate::kafka::{Producer, Send, assign_from_beginning, consumer, end_offsets};
use crate::unique;

/// Produces `total` events round-robin over `partitions` input partitions
/// at about `rate` events per second, in 50 ms ticks, and waits for every
/// acknowledgement (the producer rides out a broker outage: librdkafka
/// retries for `message.timeout.ms`, 5 minutes). Returns how many events
/// each partition got.
pub async fn produce_paced(topic: &str, partitions: i32, total: usize, rate: usize) -> Vec<usize> {
    let producer = Producer::new();
    let parts = usize::try_from(partitions).expect("positive partition count");
    let per_tick = (rate / 20).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut deliveries = Vec::with_capacity(total);
    let mut counts = vec![0; parts];
    let mut i = 0;
    while i < total {
        tick.tick().await;
        for _ in 0..per_tick.min(total - i) {
            let p = i % parts;
            let seq = counts[p];
            counts[p] += 1;
            let record = Send::on(
                i32::try_from(p).expect("partition fits i32"),
                &format!("k{p}-{seq}"),
                &format!("{p}:{seq}"),
            );
            deliveries.push(producer.enqueue(topic, &record));
            i += 1;
        }
    }
    for d in deliveries {
        d.await.expect("delivery").expect("acknowledged");
    }
    counts
}

/// The offsets `group` committed for each partition of `topic` (0 where
/// nothing is committed: the group starts at the beginning).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    crate::committed_in(group, topic, partitions)
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .collect()
}

/// Waits until `group` has committed the end of every partition of `topic`
/// (everything produced there is handled and committed); panics with the
/// gap after `timeout`. Blocking.
pub fn wait_all_committed(group: &str, topic: &str, partitions: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ends = end_offsets(topic, partitions);
        let done = committed_offsets(group, topic, partitions);
        if ends == done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?} the group has committed {done:?}, the input ends at {ends:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One record of the audited topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Value.
    pub value: Vec<u8>,
}

/// Reads every record of `topic` up to its current high watermarks.
pub fn read_all(topic: &str, partitions: i32) -> Vec<Record> {
    let ends = end_offsets(topic, partitions);
    let c = consumer(&unique("audit-read"));
    assign_from_beginning(&c, topic, partitions);
    let mut next: Vec<i64> = vec![0; ends.len()];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        assert!(
            Instant::now() < deadline,
            "reading `{topic}` stalled at {next:?} of {ends:?}"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = usize::try_from(m.partition()).expect("partition");
                next[p] = m.offset() + 1;
                if m.offset() < ends[p] {
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        value: m.payload().unwrap_or_default().to_vec(),
                    });
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "audit reader error"),
            None => {
                // Transaction markers are never returned, but they move the
                // position: a partition ending in one is read to its end.
                if let Ok(positions) = c.position() {
                    for e in positions.elements() {
                        if let (Ok(p), Offset::Offset(o)) =
                            (usize::try_from(e.partition()), e.offset())
                            && p < next.len()
                        {
                            next[p] = next[p].max(o);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The state right after a hard kill, once the killed process is dead.
#[derive(Debug, Clone)]
pub struct KillMark {
    /// The group's committed offset per input partition.
    pub committed: Vec<i64>,
    /// The high watermark per output partition.
    pub output_ends: Vec<i64>,
    /// Input partitions the killed process owned, if known.
    pub owned: Option<BTreeSet<i32>>,
}

/// Measures a [`KillMark`] for `group` after a kill. With `settle`, waits
/// until two reads 300 ms apart agree (nothing else writes); otherwise reads
/// once after 1 s (other processes keep writing), so that records the dead
/// process had already sent reach the log first.
pub fn mark_kill(
    group: &str,
    input: (&str, i32),
    output: (&str, i32),
    owned: Option<BTreeSet<i32>>,
    settle: bool,
) -> KillMark {
    let read = || {
        (
            committed_offsets(group, input.0, input.1),
            end_offsets(output.0, output.1),
        )
    };
    std::thread::sleep(Duration::from_millis(if settle { 300 } else { 1000 }));
    let mut last = read();
    for _ in 0..20 {
        if !settle {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    KillMark {
        committed: last.0,
        output_ends: last.1,
        owned,
    }
}

/// What an audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Events produced.
    pub produced: usize,
    /// Output records read.
    pub consumed: usize,
    /// Produced events with no output.
    pub missing: usize,
    /// Output records beyond the first for their event.
    pub duplicates: usize,
    /// Hard kills the audit was given.
    pub kills: usize,
    /// Duplicates not explained by the in-flight window of a hard kill.
    pub unexplained: usize,
    /// First copies out of input order within one output partition.
    pub order_violations: usize,
    /// Output records that name no produced event.
    pub unknown: usize,
    /// The most copies of one event.
    pub max_copies: usize,
    /// Sum over kills and partitions of the in-flight window (committed
    /// offset to the last event written before the kill): the bound on
    /// duplicates.
    pub window: usize,
    /// A few examples of what went wrong, for the failure message.
    pub examples: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "produced={} consumed={} missing={} duplicate={} order_violations={} unknown={} max_copies={}",
            self.produced,
            self.consumed,
            self.missing,
            self.duplicates,
            self.order_violations,
            self.unknown,
            self.max_copies
        )?;
        if self.kills > 0 {
            write!(
                f,
                " (kills={}: in-flight windows {} events, duplicates outside them {})",
                self.kills, self.window, self.unexplained
            )?;
        }
        Ok(())
    }
}

fn parse(value: &[u8]) -> Option<(usize, usize)> {
    let s = std::str::from_utf8(value).ok()?;
    let (p, seq) = s.split_once(':')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

/// Audits `output` against the events produced (`produced[p]` events to
/// input partition `p`, whose offsets `input` gives) and the `kills`.
pub fn audit(
    produced: &[usize],
    input: &[Record],
    output: &[Record],
    kills: &[KillMark],
) -> Report {
    let mut offset_of: HashMap<(usize, usize), i64> = HashMap::new();
    for r in input {
        if let Some(id) = parse(&r.value) {
            offset_of.insert(id, r.offset);
        }
    }
    let mut report = Report {
        produced: produced.iter().sum(),
        consumed: output.len(),
        kills: kills.len(),
        ..Report::default()
    };
    let mut sorted: Vec<&Record> = output.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    // Per event: copies and where the first one is.
    let mut copies: HashMap<(usize, usize), (usize, i64)> = HashMap::new();
    let mut last_first: HashMap<(i32, usize), i64> = HashMap::new();
    let example = |report: &mut Report, s: String| {
        if report.examples.len() < 10 {
            report.examples.push(s);
        }
    };
    for r in &sorted {
        let q = usize::try_from(r.partition).expect("partition");
        let Some(id) = parse(&r.value) else {
            report.unknown += 1;
            continue;
        };
        let Some(&in_offset) = offset_of.get(&id) else {
            report.unknown += 1;
            continue;
        };
        let entry = copies.entry(id).or_insert((0, r.offset));
        entry.0 += 1;
        if entry.0 == 1 {
            let last = last_first.entry((r.partition, id.0)).or_insert(-1);
            if in_offset < *last {
                report.order_violations += 1;
                example(
                    &mut report,
                    format!(
                        "out[{}]@{}: input {}@{in_offset} after @{last}",
                        q, r.offset, id.0
                    ),
                );
            }
            *last = (*last).max(in_offset);
            continue;
        }
        report.duplicates += 1;
        let first_at = entry.1;
        let kill = kills.iter().rev().find(|k| k.output_ends[q] <= r.offset);
        let explained = kill.is_some_and(|k| {
            in_offset >= k.committed[id.0]
                && first_at < k.output_ends[q]
                && k.owned
                    .as_ref()
                    .is_none_or(|o| o.contains(&i32::try_from(id.0).expect("partition")))
        });
        if !explained {
            report.unexplained += 1;
            example(
                &mut report,
                format!(
                    "duplicate of input {}@{in_offset} at out[{q}]@{} (first @{first_at}) outside any kill window",
                    id.0, r.offset
                ),
            );
        }
    }
    report.max_copies = copies.values().map(|c| c.0).max().unwrap_or(0);
    for (p, &n) in produced.iter().enumerate() {
        for seq in 0..n {
            if !copies.contains_key(&(p, seq)) {
                report.missing += 1;
                example(&mut report, format!("missing input {p}:{seq}"));
            }
        }
    }
    report.window = kill_windows(&sorted, &offset_of, kills);
    report
}

/// Sum of the in-flight windows of `kills`: per input partition, from the
/// committed offset to the last input offset written before the kill.
fn kill_windows(
    sorted: &[&Record],
    offset_of: &HashMap<(usize, usize), i64>,
    kills: &[KillMark],
) -> usize {
    let mut total = 0;
    for k in kills {
        let mut reached: HashMap<usize, i64> = HashMap::new();
        for r in sorted {
            let q = usize::try_from(r.partition).expect("partition");
            if r.offset >= k.output_ends[q] {
                continue;
            }
            if let Some(id) = parse(&r.value)
                && let Some(&o) = offset_of.get(&id)
            {
                let e = reached.entry(id.0).or_insert(-1);
                *e = (*e).max(o);
            }
        }
        for (p, &last) in &reached {
            let owned = k
                .owned
                .as_ref()
                .is_none_or(|o| o.contains(&i32::try_from(*p).expect("partition")));
            if owned {
                total += usize::try_from(last + 1 - k.committed[*p]).unwrap_or(0);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(partition: i32, values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .zip(0..)
            .map(|(v, offset)| Record {
                partition,
                offset,
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn a_replay_from_the_committed_offset_is_explained_by_the_kill() {
        let input = records(0, &["0:0", "0:1", "0:2"]);
        let output = records(0, &["0:0", "0:1", "0:1", "0:2"]);
        let kill = KillMark {
            committed: vec![1],
            output_ends: vec![2],
            owned: None,
        };
        let report = audit(&[3], &input, &output, &[kill]);
        assert_eq!(
            (report.missing, report.duplicates, report.unexplained),
            (0, 1, 0)
        );
        assert_eq!((report.window, report.order_violations), (1, 0));
        // Without the kill the same duplicate is unexplained.
        assert_eq!(audit(&[3], &input, &output, &[]).unexplained, 1);
        // Nor does a kill explain replaying what was committed before it.
        let early = KillMark {
            committed: vec![2],
            output_ends: vec![2],
            owned: None,
        };
        assert_eq!(audit(&[3], &input, &output, &[early]).unexplained, 1);
        // Nor one of a partition the killed process did not own.
        let other = KillMark {
            committed: vec![1],
            output_ends: vec![2],
            owned: Some(BTreeSet::from([1])),
        };
        assert_eq!(audit(&[3], &input, &output, &[other]).unexplained, 1);
    }

    #[test]
    fn missing_events_and_order_violations_are_counted() {
        let input = records(0, &["0:0", "0:1", "0:2"]);
        let output = records(0, &["0:1", "0:0", "x"]);
        let report = audit(&[3], &input, &output, &[]);
        assert_eq!(report.missing, 1);
        assert_eq!(report.order_violations, 1);
        assert_eq!(report.unknown, 1);
        assert_eq!(report.consumed, 3);
    }
}
