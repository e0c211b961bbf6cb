//! The segment loop's series.

use crate::PassReport;

pub(crate) struct Metrics {
    passes: orbit_telemetry::Counters<orbit_telemetry::Labels<1>>,
    seconds: orbit_telemetry::Hist,
    segments: orbit_telemetry::Counter,
    rate: orbit_telemetry::Gauge,
    unreadable: orbit_telemetry::Counter,
}

pub(crate) static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        passes: register(
            "loop_passes",
            "Segment loop passes, by result (complete, incomplete)",
            Default::default(),
        ),
        seconds: register(
            "loop_pass_duration_seconds",
            "How long a segment loop pass takes",
            orbit_telemetry::pass_histogram(),
        ),
        segments: register(
            "loop_segments",
            "Segments the loop has handed to its observers",
            Default::default(),
        ),
        rate: register(
            "loop_segments_per_second",
            "Segments per second of the last pass",
            Default::default(),
        ),
        unreadable: register(
            "loop_unreadable_segments",
            "Segment records a pass could not decode",
            Default::default(),
        ),
    }
});

impl Metrics {
    pub(crate) fn observe(&self, r: &PassReport) {
        let result = if r.complete { "complete" } else { "incomplete" };
        self.passes
            .get_or_create(&[("result", result.into())])
            .inc();
        self.seconds.observe(r.duration_ms as f64 / 1000.0);
        self.segments.inc_by(r.segments);
        self.unreadable.inc_by(r.unreadable);
        self.rate
            .set((r.segments * 1000 / r.duration_ms.max(1)) as i64);
    }
}
