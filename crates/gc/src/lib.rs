//! Garbage collection: the observer, a segment-loop observer that builds, from one
//! complete pass, a bloom filter of the pieces each node should hold (see
//! [`observer`]), the sender that hands each node its filter (see [`sender`]), and
//! the observer that drops expired objects' segments (see [`expiry`]).

pub mod expiry;
mod metrics;
pub mod observer;
pub mod sender;

pub use expiry::{ExpiryObserver, ExpiryStats};
pub use observer::{GcObserver, GcSection, GcStats};
pub use sender::{SendRound, Sender};
