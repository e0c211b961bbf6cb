//! API key secrets and the revocation list (the key format itself, which uplinks
//! parse too, is `orbit_protocol::apikey`). Every replica reads the revocation list on
//! every request; secrets never change, so they are kept once read.

use crate::keys::{self, Project};
use crate::Error;
use orbit_kv::record::{encode, Versioned};
use orbit_kv::{Kv, PutRequest, RangeRequest, TxnOp, TxnOpResponse, TxnRequest};
pub use orbit_protocol::apikey::{ApiKey, Caveat, MalformedKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read an object.
    Read,
    /// List buckets or objects.
    List,
    /// Create a bucket or upload.
    Write,
    /// Delete a bucket or object.
    Delete,
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a key.
    #[error(transparent)]
    Malformed(#[from] MalformedKey),
    /// Unknown head, or the tag does not verify.
    #[error("API key not valid")]
    Invalid,
    /// On the revocation list.
    #[error("API key revoked")]
    Revoked,
    /// A caveat forbids it.
    #[error("API key does not allow this: {0}")]
    Forbidden(String),
    /// The project name cannot be used.
    #[error("{0}")]
    InvalidProject(String),
    /// A stored key record cannot be read.
    #[error(transparent)]
    Record(#[from] orbit_kv::record::RecordError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] orbit_kv::KvError),
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        use AuthError as A;
        match e {
            A::Malformed(_) | A::Invalid | A::Revoked => Error::Unauthenticated(e.to_string()),
            A::Forbidden(_) => Error::Forbidden(e.to_string()),
            A::InvalidProject(_) => Error::Invalid(e.to_string()),
            A::Record(r) => Error::Record(r),
            A::Store(s) => Error::Store(s),
        }
    }
}

/// An API key's secret and project, under its head.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// What the key's tags chain from.
    pub secret: [u8; 32],
    /// The project the key belongs to.
    pub project: String,
}

crate::versioned_v1!(KeyRecord, "API key record");

/// A revoked tag: the key with it, and every key restricted from it, is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Unix time (s) of the revocation (0: before it was kept).
    pub at: u64,
}

impl Versioned for Revocation {
    const NAME: &'static str = "revocation record";
    const VERSION: u32 = 1;
    /// Before the envelope a revocation was the bare value `1`.
    fn legacy(value: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        (value.as_u64() == Some(1)).then_some(Ok(Revocation { at: 0 }))
    }
}

/// A key's secret and project.
type Secret = ([u8; 32], String);

/// The satellite's API keys, in the store.
#[derive(Clone)]
pub struct ApiKeys {
    kv: Arc<dyn Kv>,
    /// Secrets never change: kept once read.
    secrets: Arc<Mutex<HashMap<[u8; 16], Secret>>>,
}

impl ApiKeys {
    /// The keys in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> ApiKeys {
        ApiKeys {
            kv,
            secrets: Arc::default(),
        }
    }

    /// Creates a key for `project`.
    pub async fn create(&self, project: &str) -> Result<ApiKey, AuthError> {
        Project::new(project).map_err(|e| AuthError::InvalidProject(e.to_string()))?;
        let secret: [u8; 32] = rand::random();
        let key = ApiKey::new(&secret);
        let rec = KeyRecord {
            secret,
            project: project.to_string(),
        };
        self.kv
            .put(PutRequest::new(keys::apikey(&key.head), encode(&rec)))
            .await?;
        Ok(key)
    }

    /// Revokes `key` and every key restricted from it.
    pub async fn revoke(&self, key: &ApiKey, now: u64) -> Result<(), AuthError> {
        self.kv
            .put(PutRequest::new(
                keys::revoked(&key.tag),
                encode(&Revocation { at: now }),
            ))
            .await?;
        Ok(())
    }

    async fn secret(&self, head: &[u8; 16]) -> Result<Secret, AuthError> {
        if let Some(s) = self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(head)
        {
            return Ok(s.clone());
        }
        let got = self.kv.range(RangeRequest::key(keys::apikey(head))).await?;
        let Some(kv) = got.kvs.first() else {
            return Err(AuthError::Invalid);
        };
        let rec: KeyRecord = orbit_kv::record::decode(&kv.key, &kv.value)?;
        // A key made before project names were checked may name one that reaches
        // into another project's key space: it is refused, never served.
        Project::new(&rec.project).map_err(|_| {
            AuthError::InvalidProject(
                "this API key's project name is no longer allowed: create a new key for a project with a valid name".into(),
            )
        })?;
        let s = (rec.secret, rec.project);
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*head, s.clone());
        Ok(s)
    }

    /// The unrestricted key with `head`: revoking it revokes every restriction of it.
    pub async fn unrestricted(&self, head: &[u8; 16]) -> Result<ApiKey, AuthError> {
        Ok(ApiKey::unrestricted(*head, &self.secret(head).await?.0))
    }

    /// The project of a valid key, before knowing what the request touches (the
    /// caller then checks the request with [`ApiKeys::check`]).
    pub async fn project_of(&self, key: &str) -> Result<String, AuthError> {
        let key = ApiKey::parse(key)?;
        Ok(self.secret(&key.head).await?.1)
    }

    /// Checks `key` allows `op` on `bucket` (and `key_path`, when the request names an
    /// object) at `now`; returns the key's project.
    pub async fn check(
        &self,
        key: &str,
        op: Op,
        bucket: Option<&str>,
        key_path: Option<&str>,
        now: u64,
    ) -> Result<String, AuthError> {
        let key = ApiKey::parse(key)?;
        let (secret, project) = self.secret(&key.head).await?;
        let tags = key.tags(&secret);
        let last = tags.last().expect("at least the head's tag");
        // Constant-time comparison.
        if blake3::Hash::from(*last) != blake3::Hash::from(key.tag) {
            return Err(AuthError::Invalid);
        }
        for c in &key.caveats {
            match c {
                Caveat::ReadOnly if matches!(op, Op::Write | Op::Delete) => {
                    return Err(AuthError::Forbidden("the key is read-only".into()))
                }
                Caveat::NotAfter(t) if now > *t => {
                    return Err(AuthError::Forbidden(format!("the key expired at {t}")))
                }
                Caveat::Prefix { bucket: b, prefix } => {
                    let in_bucket = bucket == Some(b.as_str());
                    let in_prefix = key_path.is_none_or(|k| k.starts_with(prefix.as_str()));
                    if !in_bucket || !in_prefix {
                        return Err(AuthError::Forbidden(format!(
                            "the key allows only bucket {b:?}, keys starting with {prefix:?}"
                        )));
                    }
                }
                _ => {}
            }
        }
        // Revoked: any tag along the chain (the key or one it was restricted from).
        let txn = TxnRequest {
            compare: Vec::new(),
            success: tags
                .iter()
                .map(|t| {
                    TxnOp::Range(RangeRequest {
                        count_only: true,
                        ..RangeRequest::key(keys::revoked(t))
                    })
                })
                .collect(),
            failure: Vec::new(),
        };
        let resp = self.kv.txn(txn).await?;
        let revoked = resp
            .responses
            .iter()
            .any(|r| matches!(r, TxnOpResponse::Range(r) if r.count > 0));
        if revoked {
            return Err(AuthError::Revoked);
        }
        Ok(project)
    }
}
