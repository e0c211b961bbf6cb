//! Payment channels (DESIGN layer 3, seed 000's purpose): an escrow ledger kept in
//! the consistent store, so every API replica validates a payment against one shared
//! channel state and a payment is never spent twice on different replicas.
//!
//! - [`crypto`]: Ethereum keys, addresses and `personal_sign` signatures.
//! - [`model`]: accounts, channels, claims, payments and signed ledger operations,
//!   with the MPE claim message.
//! - [`ledger`]: the escrow ledger on a [`orbit_kv::Kv`], each change one optimistic
//!   transaction.
//! - [`api`]: the gRPC service a satellite replica serves, and its configuration.
//! - [`client`]: what an uplink uses to manage channels and pay.

pub mod api;
pub mod client;
pub mod crypto;
pub mod ledger;
pub mod model;

pub use api::{PaymentsConfig, PaymentsService};
pub use client::{ClientError, Payer};
pub use crypto::{Address, Wallet};
pub use ledger::{ChannelState, Escrow, PayError};
pub use model::{Account, Channel, Claim, Op, Payment, SignedOp};
