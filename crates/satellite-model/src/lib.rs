//! The satellite's data model: what it keeps in the consistent store and every
//! operation on it, shared by the API endpoints, testplanet and every satellite
//! process. Endpoints hold no model logic; they translate requests into these calls.
//!
//! - [`keys`]: the one key schema (every prefix, typed builders and parsers).
//! - [`metainfo`]: buckets, objects, segments, pending uploads.
//! - [`nodes`]: the node table, check-ins, selection (with its cache).
//! - [`orders`]: order limits and settlement once per serial.
//! - [`apikeys`]: API key secrets and the revocation list.
//! - [`console`]: the console's accounts, sessions, projects and API keys.
//! - [`repair`]: segment health and the repair queue.
//! - [`accounting`]: rollups of settled orders, tallies and payments; project
//!   limits; payouts and invoices.
//! - [`schema`]: the model's version in the store, and the migration of older records.
//!
//! Every record goes through `orbit_kv::record`: `{"v": version, "r": body}`, where an
//! unknown version or a corrupt value is an error naming the key.

pub mod accounting;
pub mod apikeys;
pub mod audit;
pub mod claims;
pub mod console;
pub mod gc;
pub mod hexser;
pub mod keys;
pub mod metainfo;
pub mod nodes;
pub mod orders;
pub mod repair;
pub mod reputation;
pub mod requests;
pub mod schema;
pub mod tally;

use orbit_kv::record::{RecordError, Versioned};

/// Why a model operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A project limit is reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// Cannot be done now (not enough nodes, contention).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or damaged data.
    #[error("{0}")]
    Internal(String),
    /// A stored record cannot be read (corrupt, or of an unknown version).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] orbit_kv::KvError),
}

impl Error {
    /// The HTTP status each kind of error reaches HTTP clients as (the console, the
    /// private API).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Invalid(_) => 400,
            Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Exists(_) => 409,
            Error::Precondition(_) => 412,
            Error::LimitExceeded(_) => 429,
            Error::Unavailable(_) | Error::Store(_) => 503,
            Error::Internal(_) | Error::Record(_) => 500,
        }
    }
}

impl From<Error> for tonic::Status {
    /// The gRPC code each kind of error reaches clients as.
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Forbidden(_) => Code::PermissionDenied,
            Error::NotFound(_) => Code::NotFound,
            Error::Exists(_) => Code::AlreadyExists,
            Error::Precondition(_) => Code::FailedPrecondition,
            Error::LimitExceeded(_) => Code::ResourceExhausted,
            Error::Unavailable(_) | Error::Store(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
            Error::Record(_) => Code::DataLoss,
        };
        tonic::Status::new(code, e.to_string())
    }
}

/// Reads the record of type `T` stored at `key`.
pub(crate) fn decode<T: Versioned>(key: &[u8], value: &[u8]) -> Result<T, Error> {
    Ok(orbit_kv::record::decode(key, value)?)
}

/// The records of type `T` at `keys`, read in one request at one revision (absent
/// keys are left out).
pub(crate) async fn read_many<T: Versioned>(
    kv: &dyn orbit_kv::Kv,
    keys: impl IntoIterator<Item = String>,
) -> Result<Vec<T>, Error> {
    Ok(read_many_at(kv, keys)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

/// Like [`read_many`], with each record's mod revision (for a later compare).
pub(crate) async fn read_many_at<T: Versioned>(
    kv: &dyn orbit_kv::Kv,
    keys: impl IntoIterator<Item = String>,
) -> Result<Vec<(T, i64)>, Error> {
    use orbit_kv::{RangeRequest, TxnOp, TxnOpResponse, TxnRequest};
    let success: Vec<TxnOp> = keys
        .into_iter()
        .map(|k| TxnOp::Range(RangeRequest::key(k)))
        .collect();
    if success.is_empty() {
        return Ok(Vec::new());
    }
    let txn = TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    };
    let mut out = Vec::new();
    for r in kv.txn(txn).await?.responses {
        let TxnOpResponse::Range(r) = r else {
            return Err(Error::Internal(
                "a read transaction answered a write".into(),
            ));
        };
        for kv in r.kvs {
            out.push((decode(&kv.key, &kv.value)?, kv.mod_revision));
        }
    }
    Ok(out)
}

/// The record at `key`, if there is one.
pub(crate) async fn read_one<T: Versioned>(
    kv: &dyn orbit_kv::Kv,
    key: impl Into<Vec<u8>>,
) -> Result<Option<T>, Error> {
    let r = kv.range(orbit_kv::RangeRequest::key(key)).await?;
    r.kvs
        .first()
        .map(|kv| decode(&kv.key, &kv.value))
        .transpose()
}

/// Every record under `prefix`, read in pages at one revision.
pub(crate) async fn read_prefix<T: Versioned>(
    kv: &dyn orbit_kv::Kv,
    prefix: &str,
) -> Result<Vec<T>, Error> {
    orbit_kv::Scan::prefix(kv, prefix, 1000)
        .collect()
        .await?
        .iter()
        .map(|kv| decode(&kv.key, &kv.value))
        .collect()
}

/// Writes `ops` in unconditional transactions of at most 100 (below etcd's default
/// limit of 128 operations per transaction).
pub(crate) async fn write_batches(
    kv: &dyn orbit_kv::Kv,
    ops: Vec<orbit_kv::TxnOp>,
) -> Result<(), Error> {
    for batch in ops.chunks(100) {
        kv.txn(orbit_kv::TxnRequest {
            compare: Vec::new(),
            success: batch.to_vec(),
            failure: Vec::new(),
        })
        .await?;
    }
    Ok(())
}

/// Makes a record type [`Versioned`] at version 1, reading its schema-1 layout (the
/// same fields with a `v` of 1 among them) through [`legacy_v1`].
#[macro_export]
macro_rules! versioned_v1 {
    ($t:ty, $name:literal) => {
        impl orbit_kv::record::Versioned for $t {
            const NAME: &'static str = $name;
            const VERSION: u32 = 1;
            fn legacy(value: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
                $crate::legacy_v1(value)
            }
        }
    };
}

/// A record written before the envelope, in its first layout (a `v` of 1 among its
/// fields, which the current type ignores).
pub fn legacy_v1<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Option<Result<T, serde_json::Error>> {
    let v1 = value.get("v").and_then(|v| v.as_u64()) == Some(1);
    v1.then(|| serde_json::from_value(value))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
