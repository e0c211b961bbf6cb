//! orbit's storage node: a piece store on disk, serving uploads and downloads that a
//! trusted satellite's order limits allow, and keeping the uplinks' orders to settle.
//!
//! - [`pieces`]: the piece files (versioned header, atomic commit, space accounting).
//! - [`serials`]: serials already used, so no order limit is used twice.
//! - [`orders`]: served transfers not yet settled.
//! - [`service`]: the piecestore gRPC service.
//! - [`node`]: a running node: configuration, server, check-ins and settlement.
//! - [`status`]: `storagenode status`, the node's standing at its satellites.

mod metrics;
pub mod node;
pub mod orders;
pub mod pieces;
pub mod retain;
pub mod serials;
pub mod service;
pub mod status;
