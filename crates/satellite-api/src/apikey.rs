//! API keys with caveats, macaroon style: a key is a head (its id), caveats, and a
//! tag chained over them from a secret only the satellite knows. Anyone holding a key
//! can restrict it further (add a caveat, re-chain the tag) without the satellite;
//! nobody can lift a caveat. Revoking a tag revokes that key and every key restricted
//! from it; every replica reads the revocation list on every request.

use orbit_kv::{Kv, PutRequest, RangeRequest, TxnOp, TxnOpResponse, TxnRequest};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A restriction on what a key allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Caveat {
    /// Reads and lists only: no uploads, no deletes.
    ReadOnly,
    /// Only this bucket, and only keys starting with `prefix` (as the uplink encodes
    /// keys).
    Prefix {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// Void after this Unix time (s).
    NotAfter(u64),
}

/// An API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id: where the satellite finds the secret.
    pub head: [u8; 16],
    /// Restrictions, in the order they were added.
    pub caveats: Vec<Caveat>,
    /// The chained tag.
    pub tag: [u8; 32],
}

const PREFIX: &str = "orbit1";

fn chain(tag: &[u8; 32], caveat: &Caveat) -> [u8; 32] {
    let body = bincode::serialize(caveat).expect("caveats serialize");
    *blake3::keyed_hash(tag, &body).as_bytes()
}

impl ApiKey {
    /// A new key with no caveats, from the project's secret.
    pub fn new(secret: &[u8; 32]) -> ApiKey {
        let head: [u8; 16] = rand::random();
        ApiKey {
            head,
            caveats: Vec::new(),
            tag: *blake3::keyed_hash(secret, &head).as_bytes(),
        }
    }

    /// The same key with one more restriction.
    pub fn restrict(&self, caveat: Caveat) -> ApiKey {
        let mut k = self.clone();
        k.tag = chain(&self.tag, &caveat);
        k.caveats.push(caveat);
        k
    }

    /// Every tag along the chain, the key's own last, computed from the secret.
    fn tags(&self, secret: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut t = *blake3::keyed_hash(secret, &self.head).as_bytes();
        let mut out = vec![t];
        for c in &self.caveats {
            t = chain(&t, c);
            out.push(t);
        }
        out
    }

    /// Its text form: `orbit1` and hex.
    pub fn serialize(&self) -> String {
        let body = bincode::serialize(self).expect("keys serialize");
        format!("{PREFIX}{}", orbit_identity::hex_encode(&body))
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<ApiKey, AuthError> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| AuthError::Malformed("an API key starts with orbit1".into()))?;
        let body = orbit_identity::hex_decode(hex).map_err(AuthError::Malformed)?;
        bincode::deserialize(&body)
            .map_err(|_| AuthError::Malformed("it does not decode (cut short or altered?)".into()))
    }
}

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
    #[error("malformed API key: {0}")]
    Malformed(String),
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
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] orbit_kv::KvError),
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    v: u32,
    secret: [u8; 32],
    project: String,
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

fn key_record(head: &[u8; 16]) -> String {
    format!("/orbit/sat/apikeys/{}", orbit_identity::hex_encode(head))
}

fn revoked_key(tag: &[u8; 32]) -> String {
    format!("/orbit/sat/revoked/{}", orbit_identity::hex_encode(tag))
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
        crate::metainfo::check_project_name(project)
            .map_err(|e| AuthError::InvalidProject(e.to_string()))?;
        let secret: [u8; 32] = rand::random();
        let key = ApiKey::new(&secret);
        let rec = KeyRecord {
            v: 1,
            secret,
            project: project.to_string(),
        };
        self.kv
            .put(PutRequest::new(
                key_record(&key.head),
                serde_json::to_vec(&rec).expect("records serialize"),
            ))
            .await?;
        Ok(key)
    }

    /// Revokes `key` and every key restricted from it.
    pub async fn revoke(&self, key: &ApiKey) -> Result<(), AuthError> {
        self.kv
            .put(PutRequest::new(revoked_key(&key.tag), b"1".to_vec()))
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
        let got = self.kv.range(RangeRequest::key(key_record(head))).await?;
        let rec: KeyRecord = got
            .kvs
            .first()
            .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            .ok_or(AuthError::Invalid)?;
        // A key made before project names were checked may name one that reaches
        // into another project's key space: it is refused, never served.
        crate::metainfo::check_project_name(&rec.project).map_err(|_| {
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
                        ..RangeRequest::key(revoked_key(t))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_keys_verify_and_caveats_cannot_be_dropped() {
        let secret = [9u8; 32];
        let k = ApiKey::new(&secret);
        assert_eq!(k.tags(&secret).last(), Some(&k.tag));
        let r = k.restrict(Caveat::ReadOnly);
        assert_eq!(r.tags(&secret).last(), Some(&r.tag));
        // Dropping the caveat but keeping the tag: no longer verifies.
        let mut lifted = r.clone();
        lifted.caveats.clear();
        assert_ne!(lifted.tags(&secret).last(), Some(&lifted.tag));
        // Another secret: nothing verifies.
        assert_ne!(r.tags(&[1; 32]).last(), Some(&r.tag));
        assert_eq!(ApiKey::parse(&r.serialize()).unwrap(), r);
        assert!(ApiKey::parse("orbit1zz").is_err());
    }
}
