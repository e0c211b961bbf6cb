//! The satellite's processes, each composed in one place from its services: one
//! builder per `satellite run <name>`, used by the binary and by testplanet alike.
//!
//! - [`config`]: the root configuration (replica settings and service sections).
//! - [`api`]: the `api` process.
//! - [`segment_loop`]: the `loop` process.

pub mod api;
pub mod config;
pub mod segment_loop;
