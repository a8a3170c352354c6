//! Locking shared state without failing on a poisoned mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
///
/// A mutex is poisoned when a thread panicked while holding it. Its users in
/// weir (metric label bookkeeping, readiness, the status board, the guest log
/// limiter) update their data in steps that each leave it valid (an insert, a
/// remove, a field store), so what a panicking holder left behind is still
/// usable; failing every later caller instead would turn one panicking task
/// into a dead `/metrics`, `/readyz` or `/status`. Use it only for data with
/// that property.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
