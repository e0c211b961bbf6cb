//! Garbage collection's series on the satellite (the nodes count the pieces they
//! trash, as `orbit_storagenode_pieces_trashed`).

use orbit_telemetry::Counter;
use std::sync::LazyLock;

pub(crate) struct Metrics {
    pub published: Counter,
    pub published_bytes: Counter,
    pub sent: Counter,
    pub sent_bytes: Counter,
    pub failed: Counter,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        published: register(
            "gc_filters_published",
            "Retain filters a complete pass published",
            Default::default(),
        ),
        published_bytes: register(
            "gc_filters_published_bytes",
            "Bytes of the retain filters published",
            Default::default(),
        ),
        sent: register(
            "gc_filters_sent",
            "Retain filters nodes acknowledged",
            Default::default(),
        ),
        sent_bytes: register(
            "gc_filters_sent_bytes",
            "Bytes of the retain filters nodes acknowledged",
            Default::default(),
        ),
        failed: register(
            "gc_filter_sends_failed",
            "Retain filter deliveries that failed (retried next round)",
            Default::default(),
        ),
    }
});
