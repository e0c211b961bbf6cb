//! Garbage collection: the observer, a segment-loop observer that builds, from one
//! complete pass, a bloom filter of the pieces each node should hold (see
//! [`observer`]), and the sender that hands each node its filter (see [`sender`]).

pub mod observer;
pub mod sender;

pub use observer::{GcObserver, GcSection, GcStats};
pub use sender::{SendRound, Sender};
