//! Audits: the observer, a segment-loop observer that samples a few segments per node
//! each pass into the verification queue (see [`observer`]), and the auditor, the
//! workers that challenge every node of a sampled segment for a verified slice of its
//! piece, keep the nodes' reputations, remove failed pieces and reverify contained
//! nodes (see [`auditor`]).

pub mod auditor;
mod metrics;
pub mod observer;

pub use auditor::{AuditSection, AuditStats, Auditor, PieceAudit};
pub use observer::{AuditObserver, SampleStats};
