//! The orbit uplink: what a user runs to pay for and (later) store and fetch objects.
//!
//! - [`cli`]: the `uplink` command line.
//! - [`keyfile`]: the user's secret key on disk.
//! - [`metrics`]: the library's Prometheus series, for a program to serve.

pub mod cli;
pub mod crypt;
/// Erasure coding, from the crate the satellite's repairer shares.
pub use orbit_erasure as erasure;
pub mod keyfile;
pub mod metrics;
pub mod project;
