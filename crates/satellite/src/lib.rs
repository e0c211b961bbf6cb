//! The satellite's processes, each composed in one place from its services: one
//! builder per `satellite run <name>`, used by the binary and by testplanet alike.
//!
//! - [`config`]: the root configuration (replica settings and service sections).
//! - [`api`]: the `api` process.
//! - [`segment_loop`]: the `loop` process.
//! - [`repair`]: the `repair` process.
//! - [`uptime`]: the `uptime` process.
//! - [`audit`]: the `audit` process.
//! - [`gc`]: the `gc` process.
//! - [`accounting`]: the `accounting` process.
//! - [`inspectors`]: what operators look at, for `satellite inspect` and the private
//!   API.
//! - [`private_api`]: the `private-api` process (inspectors and admin over HTTP).
//! - [`elected`]: the election the processes that run once at a time share.

pub mod accounting;
pub mod api;
pub mod audit;
pub mod config;
pub mod console;
pub mod elected;
pub mod gc;
pub mod inspectors;
pub mod private_api;
pub mod repair;
pub mod segment_loop;
pub mod uptime;
