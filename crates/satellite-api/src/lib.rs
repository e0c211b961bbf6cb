//! The satellite's storage API (DESIGN layer 4): what storage nodes and uplinks call.
//! Every piece of state lives in the consistent store through the `Kv` trait, so any
//! number of API replicas serve it.
//!
//! - [`nodes`]: check-ins and node selection.
//! - [`orders`]: order limits, and settlement once per serial across replicas.
//! - [`metainfo`]: buckets, objects, segments.
//! - [`apikey`]: API keys with caveats and a revocation list.
//! - [`service`]: the gRPC services.

pub mod apikey;
pub mod metainfo;
pub mod nodes;
pub mod orders;
pub mod service;

/// Generated protobuf types and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("orbit.satellite.v1");
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// A signature or key does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Already there.
    #[error("{0}")]
    Exists(String),
    /// Not in a state that allows it.
    #[error("{0}")]
    Precondition(String),
    /// Cannot be done now (not enough nodes, contention).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or damaged data.
    #[error("{0}")]
    Internal(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] orbit_kv::KvError),
}

impl From<apikey::AuthError> for ApiError {
    fn from(e: apikey::AuthError) -> Self {
        use apikey::AuthError as A;
        match e {
            A::Malformed(_) | A::Invalid | A::Revoked => ApiError::Unauthenticated(e.to_string()),
            A::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            A::InvalidProject(_) => ApiError::Invalid(e.to_string()),
            A::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Code;
        let code = match &e {
            ApiError::Invalid(_) => Code::InvalidArgument,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Forbidden(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Exists(_) => Code::AlreadyExists,
            ApiError::Precondition(_) => Code::FailedPrecondition,
            ApiError::Unavailable(_) | ApiError::Store(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

/// Reads every key under `prefix` in pages of `page` keys, each page at the store's
/// current revision: for sweeps that delete as they go.
pub(crate) async fn scan_pages(
    kv: &dyn orbit_kv::Kv,
    prefix: &str,
    page: i64,
) -> Result<Vec<orbit_kv::KeyValue>, ApiError> {
    let end = orbit_kv::prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Vec::new();
    loop {
        let r = kv
            .range(orbit_kv::RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: page,
                ..Default::default()
            })
            .await?;
        let n = r.kvs.len();
        if let Some(last) = r.kvs.last() {
            from = last.key.clone();
            from.push(0);
        }
        out.extend(r.kvs);
        if !r.more || n == 0 {
            return Ok(out);
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
