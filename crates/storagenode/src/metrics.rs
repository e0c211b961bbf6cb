//! A storage node's series beside its RPCs' (which the telemetry layer counts).

use orbit_telemetry::{Counters, Gauges, Labels};
use std::sync::LazyLock;

pub(crate) struct Metrics {
    /// Pieces moved to the trash by a retain filter, by node.
    pub trashed: Counters<Labels<1>>,
    /// Pieces deleted from the trash after its days, by node.
    pub trash_emptied: Counters<Labels<1>>,
    /// Pieces deleted at their expiry, by node.
    pub expired: Counters<Labels<1>>,
    /// Bytes the node's pieces take, by node.
    pub used: Gauges<Labels<1>>,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    use orbit_telemetry::register;
    Metrics {
        trashed: register(
            "storagenode_pieces_trashed",
            "Pieces a retain filter moved to the trash",
            Default::default(),
        ),
        trash_emptied: register(
            "storagenode_trash_emptied",
            "Pieces deleted from the trash after its days",
            Default::default(),
        ),
        expired: register(
            "storagenode_pieces_expired",
            "Pieces deleted at their expiry",
            Default::default(),
        ),
        used: register(
            "storagenode_used_bytes",
            "Bytes the node's pieces take",
            Default::default(),
        ),
    }
});

/// The label of one node's series.
pub(crate) fn node(id: &str) -> Labels<1> {
    [("node", id.to_string())]
}
