//! librdkafka statistics into the module's metrics.

use crate::metrics::ModuleMetrics;

/// Records one librdkafka statistics report.
pub(crate) fn record(metrics: &ModuleMetrics, stats: &rdkafka::Statistics) {
    metrics.statistics(stats);
}
