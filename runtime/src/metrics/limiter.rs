//! The per-module rate limit on guest log lines.

use std::sync::Mutex;
use std::time::Instant;

use prometheus::IntCounter;

use crate::sync::lock;

/// A token bucket limiting one module's guest log lines (all its instances
/// together). Lines over the limit are dropped and counted; the next line
/// let through is preceded by a warning saying how many were dropped.
pub struct LogLimiter {
    module: String,
    dropped: IntCounter,
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl std::fmt::Debug for LogLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLimiter")
            .field("module", &self.module)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl LogLimiter {
    /// A limiter of `rate` lines per second with bursts of `burst`.
    pub fn new(module: &str, dropped: IntCounter, rate: f64, burst: f64) -> Self {
        Self {
            module: module.to_owned(),
            dropped,
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Whether one more line may be logged now. When lines were dropped
    /// since the last one let through, logs how many first.
    pub fn admit(&self) -> bool {
        let mut b = lock(&self.state);
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.last = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            self.dropped.inc();
            return false;
        }
        b.tokens -= 1.0;
        let suppressed = std::mem::take(&mut b.suppressed);
        drop(b);
        if suppressed > 0 {
            tracing::warn!(target: "weir::guest", module = %self.module, dropped = suppressed,
                rate = self.rate, burst = self.burst,
                "guest log lines dropped by the per-module rate limit");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn log_limiter_drops_over_the_burst_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let dropped = metrics.modules.guest_logs_dropped.with_label_values(&["a"]);
        let limiter = LogLimiter::new("a", dropped.clone(), 1.0, 3.0);
        let admitted = (0..10).filter(|_| limiter.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(dropped.get(), 7);
    }
}
