//! The process-wide budget of output bytes (`max-inflight-bytes`).
//!
//! Before a guest call, its worker reserves what the call may emit at most
//! (from `limits.max-emit-bytes`); after it, the reservation shrinks to what
//! the call did emit and travels with those records until they are
//! acknowledged (or their transaction ends). When the budget is spent, calls
//! wait for records in flight to land: memory held for outputs never grows
//! past the budget, whatever the guests do.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Reservations are counted in KiB so that a budget of any size fits the
/// semaphore's `u32` acquisitions.
const UNIT: u64 = 1024;

/// Output bytes the process may hold for calls in progress and records in
/// flight.
#[derive(Debug)]
pub struct Budget {
    units: Arc<Semaphore>,
    capacity: u32,
    metrics: Option<Arc<crate::metrics::BudgetMetrics>>,
}

/// Bytes held out of a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    units: Arc<Semaphore>,
    held: u32,
    metrics: Option<Arc<crate::metrics::BudgetMetrics>>,
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Self {
        let capacity = u32::try_from(units(bytes).max(1)).unwrap_or(u32::MAX);
        Self {
            units: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            metrics: None,
        }
    }

    /// Reports the bytes held and the waits to `metrics`.
    pub fn observed(mut self, metrics: Arc<crate::metrics::BudgetMetrics>) -> Self {
        metrics.limit(u64::from(self.capacity) * UNIT);
        self.metrics = Some(metrics);
        self
    }

    /// The budget in bytes.
    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity) * UNIT
    }

    fn clamp(&self, bytes: u64) -> u32 {
        // More than the whole budget waits for all of it.
        u32::try_from(units(bytes))
            .unwrap_or(u32::MAX)
            .min(self.capacity)
    }

    fn reservation(&self, held: u32) -> Reservation {
        if let Some(m) = &self.metrics {
            m.held(i64::from(held) * UNIT as i64);
        }
        Reservation {
            units: self.units.clone(),
            held,
            metrics: self.metrics.clone(),
        }
    }

    /// Reserves `bytes` if they are free now.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let want = self.clamp(bytes);
        let permit = self.units.try_acquire_many(want).ok()?;
        permit.forget();
        Some(self.reservation(want))
    }

    /// Reserves `bytes`, waiting (first come, first served) for records in
    /// flight to give them back.
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        if let Some(reserved) = self.try_reserve(bytes) {
            return reserved;
        }
        let started = std::time::Instant::now();
        let want = self.clamp(bytes);
        let permit = self
            .units
            .acquire_many(want)
            .await
            .expect("the output budget's semaphore is never closed");
        permit.forget();
        if let Some(m) = &self.metrics {
            m.waited(started.elapsed());
        }
        self.reservation(want)
    }
}

impl Reservation {
    /// Keeps only what `bytes` need (never grows).
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = u32::try_from(units(bytes))
            .unwrap_or(u32::MAX)
            .min(self.held);
        let freed = self.held - keep;
        self.give_back(freed);
        self.held = keep;
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        u64::from(self.held) * UNIT
    }

    fn give_back(&self, units: u32) {
        if units > 0 {
            self.units.add_permits(units as usize);
            if let Some(m) = &self.metrics {
                m.held(-(i64::from(units) * UNIT as i64));
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn calls_wait_while_the_budget_is_spent_and_go_on_when_records_land() {
        let budget = Arc::new(Budget::new(100 * 1024));
        let mut first = budget.reserve(60 * 1024).await;
        assert_eq!(first.bytes(), 60 * 1024);
        assert!(budget.try_reserve(50 * 1024).is_none());
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(50 * 1024).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the budget is spent");
        // The call emitted less than it reserved: the rest is free at once.
        first.shrink_to(10 * 1024);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("freed by the shrink")
            .unwrap();
        assert_eq!(second.bytes(), 50 * 1024);
        drop((first, second));
        assert_eq!(budget.try_reserve(100 * 1024).unwrap().bytes(), 100 * 1024);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_waits_for_all_of_it() {
        let budget = Budget::new(10 * 1024);
        let all = budget.reserve(1 << 40).await;
        assert_eq!(all.bytes(), 10 * 1024);
        assert!(budget.try_reserve(1).is_none());
        drop(all);
        // Bytes round up to whole KiB; a shrink never grows.
        let mut one = budget.try_reserve(1).unwrap();
        assert_eq!(one.bytes(), 1024);
        one.shrink_to(5000);
        assert_eq!(one.bytes(), 1024);
        one.shrink_to(0);
        assert_eq!(one.bytes(), 0);
    }
}
