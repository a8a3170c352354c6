//! Offset bookkeeping of one module's partitions: what each partition's
//! worker settled (its *watermark*, the next offset to read), what was last
//! committed, and which partitions are held back from committing.
//!
//! Workers record watermarks; the group's poll thread asks what to commit
//! ([`Offsets::to_commit`]), commits it, and reports the result. A commit
//! that fails is forgotten so the next periodic commit sends it again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::TopicPartition;
use crate::sync::lock;

/// Watermarks and committed offsets of one module's partitions.
#[derive(Debug, Default)]
pub struct Offsets {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Settled watermark per partition (next offset to read).
    settled: HashMap<TopicPartition, i64>,
    /// Last offset known committed per partition.
    committed: HashMap<TopicPartition, i64>,
    /// Partitions never committed again until revoked.
    held: HashSet<TopicPartition>,
}

/// Which partitions a commit covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Partitions whose watermark moved since their last commit.
    Moved,
    /// Every watermark of these partitions (or of all when `None`), moved
    /// or not: a synchronous commit on revocation or shutdown sends them
    /// again, since an earlier asynchronous commit of the same offset may
    /// still be unanswered or refused during the rebalance.
    Again(Option<&'a [TopicPartition]>),
}

impl Offsets {
    /// Records that every event of `tp` below `next` is settled.
    pub fn settle(&self, tp: &TopicPartition, next: i64) {
        let mut state = lock(&self.state);
        match state.settled.get_mut(tp) {
            Some(mark) => *mark = next,
            None => {
                state.settled.insert(tp.clone(), next);
            }
        }
    }

    /// The watermark of `tp`, if any event of it is settled.
    pub fn watermark(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.state).settled.get(tp).copied()
    }

    /// The offsets to commit now, in partition order.
    pub fn to_commit(&self, scope: Scope<'_>) -> Vec<(TopicPartition, i64)> {
        let state = lock(&self.state);
        let mut offsets: Vec<(TopicPartition, i64)> = state
            .settled
            .iter()
            .filter(|(tp, next)| {
                !state.held.contains(*tp)
                    && match scope {
                        Scope::Moved => state.committed.get(*tp) != Some(*next),
                        Scope::Again(only) => only.is_none_or(|o| o.contains(tp)),
                    }
            })
            .map(|(tp, &next)| (tp.clone(), next))
            .collect();
        offsets.sort();
        offsets
    }

    /// Records that `offsets` were committed.
    pub fn committed(&self, offsets: impl IntoIterator<Item = (TopicPartition, i64)>) {
        lock(&self.state).committed.extend(offsets);
    }

    /// A commit of `offsets` failed: forgets them so the next periodic
    /// commit sends them again (unless a newer one was committed since).
    pub fn commit_failed<'a>(&self, offsets: impl IntoIterator<Item = (&'a TopicPartition, i64)>) {
        let mut state = lock(&self.state);
        for (tp, offset) in offsets {
            if state.committed.get(tp) == Some(&offset) {
                state.committed.remove(tp);
            }
        }
    }

    /// Never commits `tp` again until it is revoked. Returns whether it was
    /// not held already.
    pub fn hold(&self, tp: &TopicPartition) -> bool {
        lock(&self.state).held.insert(tp.clone())
    }

    /// Forgets everything about `partitions` (revoked).
    pub fn forget(&self, partitions: &[TopicPartition]) {
        let mut state = lock(&self.state);
        for tp in partitions {
            state.settled.remove(tp);
            state.committed.remove(tp);
            state.held.remove(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn only_moved_watermarks_are_committed_periodically() {
        let o = Offsets::default();
        assert!(o.to_commit(Scope::Moved).is_empty());
        o.settle(&tp(0), 5);
        o.settle(&tp(1), 7);
        let due = o.to_commit(Scope::Moved);
        assert_eq!(due, vec![(tp(0), 5), (tp(1), 7)]);
        o.committed(due);
        assert!(o.to_commit(Scope::Moved).is_empty());
        o.settle(&tp(1), 9);
        assert_eq!(o.to_commit(Scope::Moved), vec![(tp(1), 9)]);
    }

    #[test]
    fn a_synchronous_commit_sends_every_watermark_again() {
        let o = Offsets::default();
        o.settle(&tp(0), 5);
        o.settle(&tp(1), 7);
        o.committed(o.to_commit(Scope::Moved));
        assert_eq!(o.to_commit(Scope::Again(None)).len(), 2);
        assert_eq!(o.to_commit(Scope::Again(Some(&[tp(1)]))), vec![(tp(1), 7)]);
    }

    #[test]
    fn a_failed_commit_is_sent_again_unless_overtaken() {
        let o = Offsets::default();
        o.settle(&tp(0), 5);
        o.committed(o.to_commit(Scope::Moved));
        o.commit_failed([(&tp(0), 5)]);
        assert_eq!(o.to_commit(Scope::Moved), vec![(tp(0), 5)]);
        // A later commit went through before the earlier one's failure came
        // back: the failure must not undo it.
        o.settle(&tp(0), 8);
        o.committed(o.to_commit(Scope::Moved));
        o.commit_failed([(&tp(0), 5)]);
        assert!(o.to_commit(Scope::Moved).is_empty());
    }

    #[test]
    fn held_partitions_are_never_committed_until_forgotten() {
        let o = Offsets::default();
        o.settle(&tp(0), 5);
        assert!(o.hold(&tp(0)));
        assert!(!o.hold(&tp(0)), "held once");
        assert!(o.to_commit(Scope::Moved).is_empty());
        assert!(o.to_commit(Scope::Again(None)).is_empty());
        o.forget(&[tp(0)]);
        assert_eq!(o.watermark(&tp(0)), None);
        o.settle(&tp(0), 6);
        assert_eq!(o.to_commit(Scope::Moved), vec![(tp(0), 6)]);
    }

    #[test]
    fn watermarks_only_move_by_what_workers_settle() {
        let o = Offsets::default();
        o.settle(&tp(3), 10);
        assert_eq!(o.watermark(&tp(3)), Some(10));
        o.settle(&tp(3), 11);
        assert_eq!(o.watermark(&tp(3)), Some(11));
        assert_eq!(o.watermark(&tp(4)), None);
    }
}
