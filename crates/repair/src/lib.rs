//! Repair: the checker, a segment-loop observer that queues injured segments (see
//! [`checker`]), and the repairer, the workers that rebuild them (see [`repairer`]).

pub mod checker;
mod metrics;
pub mod repairer;

pub use checker::{Checker, CheckerStats};
pub use repairer::{Outcome, RepairSection, RepairStats, Repairer};
