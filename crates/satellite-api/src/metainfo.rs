//! Buckets, objects and segments in the store.
//!
//! - `/orbit/sat/buckets/<project>/<bucket>`: a bucket.
//! - `/orbit/sat/streams/<stream id>`: an object being uploaded (not yet visible).
//! - `/orbit/sat/segments/<stream id>/<index>`: its segments: redundancy, the nodes
//!   holding each piece, or the bytes themselves for small segments.
//! - `/orbit/sat/objects/<project>/<bucket>/<key>`: a committed object, pointing at
//!   its stream.
//!
//! Committing an object is one transaction: the object record appears, the pending
//! stream goes, and the segments of an object it replaces go with it.

use crate::ApiError;
use orbit_identity::NodeId;
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, PutRequest, RangeRequest, TxnOp,
    TxnRequest,
};
use orbit_protocol::PieceId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Reed-Solomon parameters of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redundancy {
    /// Pieces needed to rebuild.
    pub k: u32,
    /// Below this many healthy pieces, repair.
    pub repair: u32,
    /// Pieces an upload must land.
    pub success: u32,
    /// Pieces an upload starts.
    pub total: u32,
}

impl Redundancy {
    /// Checks 1 ≤ k ≤ repair ≤ success ≤ total ≤ 255.
    pub fn check(&self) -> Result<(), ApiError> {
        let ok = 1 <= self.k
            && self.k <= self.repair
            && self.repair <= self.success
            && self.success <= self.total
            && self.total <= 255;
        if ok {
            Ok(())
        } else {
            Err(ApiError::Invalid(format!(
                "redundancy {}/{}/{}/{} must satisfy 1 <= k <= repair <= success <= total <= 255",
                self.k, self.repair, self.success, self.total
            )))
        }
    }
}

/// A segment as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Format version.
    pub v: u32,
    /// Position in the object.
    pub index: u32,
    /// Encrypted bytes (before erasure coding).
    pub encrypted_size: u64,
    /// The bytes themselves, for a small segment.
    pub inline: Option<Vec<u8>>,
    /// Erasure coding.
    pub redundancy: Redundancy,
    /// Root piece id; each piece's id derives from it and its node.
    pub root: PieceId,
    /// Size of each piece.
    pub piece_size: u64,
    /// Piece number and node of each stored piece.
    pub pieces: Vec<(u16, NodeId)>,
}

/// A pending upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stream {
    /// Format version.
    pub v: u32,
    /// Owner.
    pub project: String,
    /// Bucket.
    pub bucket: String,
    /// Key (as the uplink encoded it).
    pub key: String,
    /// Unix time (s) it began.
    pub created: u64,
}

/// A committed object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Object {
    /// Format version.
    pub v: u32,
    /// Its stream: where its segments are.
    pub stream: [u8; 16],
    /// Encrypted by the uplink.
    pub metadata: Vec<u8>,
    /// Unix time (s) committed.
    pub created: u64,
}

/// Bucket names as S3 allows them: 3-63 of a-z, 0-9, '-', '.'.
pub fn check_bucket_name(b: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "bucket name {:?}: 3 to 63 characters of a-z, 0-9, '-' and '.'",
            b.chars().take(80).collect::<String>()
        )))
    }
}

/// Project names: 1 to 64 of A-Z, a-z, 0-9, '-', '_' and '.', starting with a letter
/// or digit. No '/': a project's records can never reach into another's key space.
pub fn check_project_name(p: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&p.len())
        && p.as_bytes()[0].is_ascii_alphanumeric()
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "project name {:?}: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting with a letter or digit",
            p.chars().take(80).collect::<String>()
        )))
    }
}

/// Longest object key, in bytes (as the uplink encodes it).
pub const MAX_OBJECT_KEY: usize = 4096;

/// Checks the project and bucket a request names before any key is built from them.
fn scope(project: &str, bucket: &str) -> Result<(), ApiError> {
    check_project_name(project)?;
    check_bucket_name(bucket)
}

fn check_object_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::Invalid("empty object key".into()));
    }
    if key.len() > MAX_OBJECT_KEY {
        return Err(ApiError::Invalid(format!(
            "object key of {} bytes; at most {MAX_OBJECT_KEY}",
            key.len()
        )));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    orbit_identity::hex_encode(b)
}

/// The metainfo store.
#[derive(Clone)]
pub struct Metainfo {
    kv: Arc<dyn Kv>,
}

fn bucket_key(project: &str, bucket: &str) -> String {
    format!("/orbit/sat/buckets/{project}/{bucket}")
}
fn object_prefix(project: &str, bucket: &str) -> String {
    format!("/orbit/sat/objects/{project}/{bucket}/")
}
fn object_key(project: &str, bucket: &str, key: &str) -> String {
    format!("{}{key}", object_prefix(project, bucket))
}
const STREAMS_PREFIX: &str = "/orbit/sat/streams/";

fn stream_key(stream: &[u8; 16]) -> String {
    format!("{STREAMS_PREFIX}{}", hex(stream))
}
fn segments_prefix(stream: &[u8; 16]) -> String {
    format!("/orbit/sat/segments/{}/", hex(stream))
}
fn segment_key(stream: &[u8; 16], index: u32) -> String {
    format!("{}{index:010}", segments_prefix(stream))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::Internal(format!("corrupt {what}: {e}")))
}

impl Metainfo {
    /// The metainfo in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Metainfo {
        Metainfo { kv }
    }

    /// Creates a bucket.
    pub async fn create_bucket(
        &self,
        project: &str,
        bucket: &str,
        now: u64,
    ) -> Result<(), ApiError> {
        scope(project, bucket)?;
        let key = bucket_key(project, bucket);
        let txn = TxnRequest {
            compare: vec![Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::Create(0),
            )],
            success: vec![TxnOp::Put(PutRequest::new(key, json(&now)))],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(ApiError::Exists(format!("bucket {bucket} already exists")))
        }
    }

    async fn bucket_exists(&self, project: &str, bucket: &str) -> Result<(), ApiError> {
        scope(project, bucket)?;
        let r = self
            .kv
            .range(RangeRequest {
                count_only: true,
                ..RangeRequest::key(bucket_key(project, bucket))
            })
            .await?;
        if r.count == 0 {
            return Err(ApiError::NotFound(format!("bucket {bucket} not found")));
        }
        Ok(())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, project: &str, bucket: &str) -> Result<(), ApiError> {
        self.bucket_exists(project, bucket).await?;
        let objects = object_prefix(project, bucket);
        let txn = TxnRequest {
            // Empty: a compare over a range holds when every key in it matches, and an
            // empty range compares like a missing key (create revision 0), as in etcd.
            compare: vec![Compare {
                range_end: orbit_kv::prefix_end(objects.as_bytes()),
                ..Compare::new(objects.clone(), CompareOp::Equal, CompareTarget::Create(0))
            }],
            success: vec![TxnOp::Delete(DeleteRequest::key(bucket_key(
                project, bucket,
            )))],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(ApiError::Precondition(format!(
                "bucket {bucket} is not empty: delete its objects first"
            )))
        }
    }

    /// The project's buckets.
    pub async fn list_buckets(&self, project: &str) -> Result<Vec<String>, ApiError> {
        check_project_name(project)?;
        let prefix = format!("/orbit/sat/buckets/{project}/");
        let r = self
            .kv
            .range(RangeRequest {
                keys_only: true,
                ..RangeRequest::prefix(prefix.clone())
            })
            .await?;
        Ok(r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string())
            .collect())
    }

    /// Begins an upload: a pending stream.
    pub async fn begin_object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
        now: u64,
    ) -> Result<[u8; 16], ApiError> {
        self.bucket_exists(project, bucket).await?;
        check_object_key(key)?;
        let stream: [u8; 16] = rand::random();
        let s = Stream {
            v: 1,
            project: project.into(),
            bucket: bucket.into(),
            key: key.into(),
            created: now,
        };
        self.kv
            .put(PutRequest::new(stream_key(&stream), json(&s)))
            .await?;
        Ok(stream)
    }

    /// A pending stream, if `project` owns it.
    pub async fn stream(&self, project: &str, stream: &[u8; 16]) -> Result<Stream, ApiError> {
        let r = self.kv.range(RangeRequest::key(stream_key(stream))).await?;
        let s: Stream = match r.kvs.first() {
            Some(kv) => parse("stream", &kv.value)?,
            None => return Err(ApiError::NotFound("no such upload in progress".into())),
        };
        if s.project != project {
            return Err(ApiError::NotFound("no such upload in progress".into()));
        }
        Ok(s)
    }

    /// Records a segment of a pending stream.
    pub async fn commit_segment(&self, stream: &[u8; 16], seg: &Segment) -> Result<(), ApiError> {
        let txn = TxnRequest {
            compare: vec![Compare::new(
                stream_key(stream),
                CompareOp::Greater,
                CompareTarget::Create(0),
            )],
            success: vec![TxnOp::Put(PutRequest::new(
                segment_key(stream, seg.index),
                json(seg),
            ))],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(ApiError::NotFound("no such upload in progress".into()))
        }
    }

    /// Makes a pending stream the object at its key, replacing any object there.
    pub async fn commit_object(
        &self,
        project: &str,
        stream: &[u8; 16],
        metadata: Vec<u8>,
        now: u64,
    ) -> Result<(), ApiError> {
        let s = self.stream(project, stream).await?;
        let okey = object_key(project, &s.bucket, &s.key);
        for _ in 0..16 {
            let old = self.kv.range(RangeRequest::key(okey.clone())).await?;
            let (old_rev, old_stream) = match old.kvs.first() {
                Some(kv) => (
                    kv.mod_revision,
                    Some(parse::<Object>("object", &kv.value)?.stream),
                ),
                None => (0, None),
            };
            let obj = Object {
                v: 1,
                stream: *stream,
                metadata: metadata.clone(),
                created: now,
            };
            let mut success = vec![
                TxnOp::Put(PutRequest::new(okey.clone(), json(&obj))),
                TxnOp::Delete(DeleteRequest::key(stream_key(stream))),
            ];
            if let Some(old) = old_stream {
                // The replaced object's segments go with it (its pieces are garbage for
                // the nodes' collection).
                success.push(TxnOp::Delete(DeleteRequest::prefix(segments_prefix(&old))));
            }
            let txn = TxnRequest {
                compare: vec![
                    Compare::new(okey.clone(), CompareOp::Equal, CompareTarget::Mod(old_rev)),
                    Compare::new(
                        stream_key(stream),
                        CompareOp::Greater,
                        CompareTarget::Create(0),
                    ),
                    Compare::new(
                        bucket_key(project, &s.bucket),
                        CompareOp::Greater,
                        CompareTarget::Create(0),
                    ),
                ],
                success,
                failure: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                return Ok(());
            }
            // The object changed meanwhile (or the bucket or stream went): look again.
            self.stream(project, stream).await?;
            self.bucket_exists(project, &s.bucket).await?;
        }
        Err(ApiError::Unavailable(
            "too many concurrent writes to this object".into(),
        ))
    }

    /// Deletes uploads begun before `now - max_age_s` and never committed, with the
    /// segments they stored; returns how many went. An upload committed meanwhile is
    /// left alone (compare on the pending record).
    pub async fn remove_abandoned(&self, now: u64, max_age_s: u64) -> Result<usize, ApiError> {
        let mut removed = 0;
        for kv in crate::scan_pages(&*self.kv, STREAMS_PREFIX, 1000).await? {
            let key = String::from_utf8_lossy(&kv.key).to_string();
            let s: Stream = parse(&format!("stream at {key}"), &kv.value)?;
            if s.created.saturating_add(max_age_s) >= now {
                continue;
            }
            let Ok(id) = orbit_identity::hex_decode(&key[STREAMS_PREFIX.len()..]) else {
                return Err(ApiError::Internal(format!("malformed stream key {key}")));
            };
            let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                return Err(ApiError::Internal(format!("malformed stream key {key}")));
            };
            let txn = TxnRequest {
                compare: vec![Compare::new(
                    kv.key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Mod(kv.mod_revision),
                )],
                success: vec![
                    TxnOp::Delete(DeleteRequest::key(kv.key.clone())),
                    TxnOp::Delete(DeleteRequest::prefix(segments_prefix(&id))),
                ],
                failure: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A committed object and its segments.
    pub async fn get_object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(Object, Vec<Segment>), ApiError> {
        scope(project, bucket)?;
        let r = self
            .kv
            .range(RangeRequest::key(object_key(project, bucket, key)))
            .await?;
        let obj: Object = match r.kvs.first() {
            Some(kv) => parse("object", &kv.value)?,
            None => {
                return Err(ApiError::NotFound(format!(
                    "object not found in bucket {bucket}"
                )))
            }
        };
        let segs = self
            .kv
            .range(RangeRequest::prefix(segments_prefix(&obj.stream)))
            .await?;
        let segments = segs
            .kvs
            .iter()
            .map(|kv| parse::<Segment>("segment", &kv.value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((obj, segments))
    }

    /// Objects whose key starts with `prefix`: key, created, metadata.
    pub async fn list_objects(
        &self,
        project: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Object)>, ApiError> {
        self.bucket_exists(project, bucket).await?;
        let base = object_prefix(project, bucket);
        let r = self
            .kv
            .range(RangeRequest::prefix(format!("{base}{prefix}")))
            .await?;
        r.kvs
            .iter()
            .map(|kv| {
                Ok((
                    String::from_utf8_lossy(&kv.key[base.len()..]).to_string(),
                    parse::<Object>("object", &kv.value)?,
                ))
            })
            .collect()
    }

    /// Deletes an object and its segments.
    pub async fn delete_object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        scope(project, bucket)?;
        let okey = object_key(project, bucket, key);
        let r = self.kv.range(RangeRequest::key(okey.clone())).await?;
        let Some(kv) = r.kvs.first() else {
            return Err(ApiError::NotFound(format!(
                "object not found in bucket {bucket}"
            )));
        };
        let obj: Object = parse("object", &kv.value)?;
        let txn = TxnRequest {
            compare: vec![Compare::new(
                okey.clone(),
                CompareOp::Equal,
                CompareTarget::Mod(kv.mod_revision),
            )],
            success: vec![
                TxnOp::Delete(DeleteRequest::key(okey)),
                TxnOp::Delete(DeleteRequest::prefix(segments_prefix(&obj.stream))),
            ],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "the object changed while deleting it; try again".into(),
            ))
        }
    }
}
