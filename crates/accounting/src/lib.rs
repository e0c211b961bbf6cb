//! Accounting: the tally observer, a segment-loop observer that counts, from one
//! complete pass, what each node stores and each bucket holds (see [`tally`]).

pub mod tally;

pub use tally::{TallyObserver, TallyStats};
