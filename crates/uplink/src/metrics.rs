//! The uplink library's metrics: operations by kind and result, and their durations,
//! beside the request counts the protocol records. A program that embeds the library
//! serves them with its own: [`text`] is the hook, to answer its `/metrics` with.

use std::sync::LazyLock;
use std::time::Duration;

struct Metrics {
    operations: orbit_telemetry::Counters<orbit_telemetry::Labels<2>>,
    seconds: orbit_telemetry::Latencies<orbit_telemetry::Labels<1>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    operations: orbit_telemetry::register(
        "uplink_operations",
        "Uplink operations (upload, download, list, delete) by result (ok, error)",
        Default::default(),
    ),
    seconds: orbit_telemetry::register(
        "uplink_operation_duration_seconds",
        "How long uplink operations take",
        orbit_telemetry::latencies(),
    ),
});

pub(crate) fn observe(op: &'static str, ok: bool, took: Duration) {
    let m = &*METRICS;
    let result = if ok { "ok" } else { "error" };
    m.operations
        .get_or_create(&[("op", op.into()), ("result", result.into())])
        .inc();
    m.seconds
        .get_or_create(&[("op", op.into())])
        .observe(took.as_secs_f64());
}

/// Every series of this process (the uplink's and any other orbit library's), as
/// OpenMetrics text with [`orbit_telemetry::CONTENT_TYPE`].
pub fn text() -> String {
    orbit_telemetry::encode()
}
