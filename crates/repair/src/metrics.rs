//! The repair checker's and repairer's series.

use orbit_telemetry::{Counter, Counters, Gauge, Hist, Labels};
use std::sync::LazyLock;

pub(crate) struct Metrics {
    /// Segments the last complete checker pass left queued.
    pub queue: Gauge,
    /// Segments the last checker pass found with fewer than k retrievable pieces.
    pub lost: Gauge,
    /// Segments the checker has checked.
    pub checked: Counter,
    /// Repair jobs by outcome.
    pub jobs: Counters<Labels<1>>,
    /// How long a repair job takes.
    pub seconds: Hist,
    /// Pieces uploaded by repairs.
    pub uploaded: Counter,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        queue: register(
            "repair_queue_length",
            "Segments queued for repair after the checker's last pass",
            Default::default(),
        ),
        lost: register(
            "repair_lost_segments",
            "Segments the checker's last pass found with fewer than k retrievable pieces",
            Default::default(),
        ),
        checked: register(
            "repair_checked_segments",
            "Remote segments the checker has judged",
            Default::default(),
        ),
        jobs: register(
            "repair_jobs",
            "Repair jobs by outcome (repaired, healthy, gone, changed, lost, failed)",
            Default::default(),
        ),
        seconds: register(
            "repair_job_duration_seconds",
            "How long a repair job takes",
            orbit_telemetry::pass_histogram(),
        ),
        uploaded: register(
            "repair_pieces_uploaded",
            "Pieces rebuilt and uploaded by repairs",
            Default::default(),
        ),
    }
});
