//! The auditor's series.

pub(crate) struct Metrics {
    pub audits: orbit_telemetry::Counters<orbit_telemetry::Labels<1>>,
    pub pieces_removed: orbit_telemetry::Counter,
    pub disqualified: orbit_telemetry::Counter,
}

pub(crate) static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        audits: register(
            "audits",
            "Piece audits by outcome (success, failure, offline, contained, unknown)",
            Default::default(),
        ),
        pieces_removed: register(
            "audit_pieces_removed",
            "Pieces removed from segments because their audit failed",
            Default::default(),
        ),
        disqualified: register(
            "audit_disqualifications",
            "Nodes disqualified by audits",
            Default::default(),
        ),
    }
});
