//! Accounting: the tally observer, a segment-loop observer that counts, from one
//! complete pass, what each node stores and each bucket holds (see [`tally`]), and
//! the service of `satellite run accounting`, which rolls settled orders, payments
//! and tallies up and prices them (see [`rollup`]).

pub mod rollup;
pub mod tally;

pub use rollup::{AccountingSection, AccountingService, RoundStats};
pub use tally::{TallyObserver, TallyStats};
