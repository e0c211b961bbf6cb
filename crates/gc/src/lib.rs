//! Garbage collection: the observer, a segment-loop observer that builds, from one
//! complete pass, a bloom filter of the pieces each node should hold (see
//! [`observer`]).

pub mod observer;

pub use observer::{GcObserver, GcSection, GcStats};
