//! The process cluster of `orbit-testkit`, on this build's `satellite` binary.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use orbit_testkit::process::{Member, ProcCluster};
use orbit_testkit::Timings;
use std::path::Path;

/// Starts `n` members of this build's satellite with test timings.
pub async fn start(n: usize) -> ProcCluster {
    ProcCluster::start(Path::new(env!("CARGO_BIN_EXE_satellite")), n, Timings::FAST).await
}

/// Upload options for a test network of a few nodes: `k` of `total` pieces (all of
/// them must land), repair below `repair`, 64 KiB segments.
pub fn small_options(k: u32, repair: u32, total: u32) -> uplink::project::Options {
    uplink::project::Options {
        k,
        repair,
        success: total,
        total,
        segment_size: 64 << 10,
        inline_max: 1024,
    }
}

pub mod network;
pub mod nodes;
pub mod replicas;
