//! The satellite's storage API (DESIGN layer 4): the gRPC endpoints storage nodes and
//! uplinks call. They translate requests into the data model's operations
//! (`orbit-satellite-model`) and hold no model logic; every piece of state lives in the
//! consistent store, so any number of API replicas serve it.

pub mod config;
pub mod service;

pub use config::StorageSection;

pub use orbit_protocol::satellite_pb as pb;
pub use orbit_satellite_model::Error as ApiError;
