//! Small synchronisation helpers.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: the data behind weir's mutexes stays
/// consistent between statements, so a panic elsewhere while holding the
/// lock leaves nothing half-written worth refusing.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
