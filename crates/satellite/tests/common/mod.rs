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

pub mod network;
pub mod nodes;
pub mod replicas;
