//! Buckets, objects and segments in the store (keys in [`crate::keys`]).
//!
//! A bucket is a record under its project; an upload is a pending stream whose
//! segments are recorded as they land; committing an object is one transaction: the
//! object record appears, the pending stream goes, and the segments of an object it
//! replaces go with it.

use crate::keys::{self, Bucket, Project, StreamId};
use crate::{decode, Error};
use orbit_identity::NodeId;
use orbit_kv::record::{encode, Versioned};
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, PutRequest, RangeRequest, Scan, TxnOp,
    TxnRequest,
};
use orbit_protocol::PieceId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    pub fn check(&self) -> Result<(), Error> {
        let ok = 1 <= self.k
            && self.k <= self.repair
            && self.repair <= self.success
            && self.success <= self.total
            && self.total <= 255;
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "redundancy {}/{}/{}/{} must satisfy 1 <= k <= repair <= success <= total <= 255",
                self.k, self.repair, self.success, self.total
            )))
        }
    }
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Unix time (s) it was created.
    pub created: u64,
}

impl Versioned for BucketRecord {
    const NAME: &'static str = "bucket record";
    const VERSION: u32 = 1;
    /// Before the envelope a bucket was its creation time, bare.
    fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
        value.as_u64().map(|created| Ok(BucketRecord { created }))
    }
}

/// A segment as stored. Record version 2 writes the root piece id, the piece nodes
/// and inline bytes as hex strings (version 1 wrote every byte as a JSON number, which
/// made decoding segments most of a loop pass's time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Position in the object.
    pub index: u32,
    /// Encrypted bytes (before erasure coding).
    pub encrypted_size: u64,
    /// The bytes themselves, for a small segment.
    #[serde(with = "crate::hexser::opt_bytes")]
    pub inline: Option<Vec<u8>>,
    /// Erasure coding.
    pub redundancy: Redundancy,
    /// Root piece id; each piece's id derives from it and its node.
    #[serde(with = "hex_root")]
    pub root: PieceId,
    /// Size of each piece.
    pub piece_size: u64,
    /// Piece number and node of each stored piece.
    #[serde(with = "hex_pieces")]
    pub pieces: Vec<(u16, NodeId)>,
    /// Unix time (s) it was committed (0: before segments recorded it). Garbage
    /// collection dates its filters by the newest a pass saw.
    #[serde(default)]
    pub created: u64,
    /// Unix time (s) its object expires (0: never); the loop drops it after.
    #[serde(default)]
    pub expires: u64,
}

mod hex_root {
    use crate::hexser::Hex32;
    use orbit_protocol::PieceId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(id: &PieceId, s: S) -> Result<S::Ok, S::Error> {
        Hex32(id.0).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PieceId, D::Error> {
        Ok(PieceId(Hex32::deserialize(d)?.0))
    }
}

mod hex_pieces {
    use crate::hexser::Hex32;
    use orbit_identity::NodeId;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &[(u16, NodeId)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(p.len()))?;
        for (num, node) in p {
            seq.serialize_element(&(num, Hex32(node.0)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, NodeId)>, D::Error> {
        let pieces = Vec::<(u16, Hex32)>::deserialize(d)?;
        Ok(pieces.into_iter().map(|(n, h)| (n, NodeId(h.0))).collect())
    }
}

/// A segment in record version 1 (every byte a JSON number).
#[derive(Deserialize)]
struct SegmentV1 {
    index: u32,
    encrypted_size: u64,
    inline: Option<Vec<u8>>,
    redundancy: Redundancy,
    root: PieceId,
    piece_size: u64,
    pieces: Vec<(u16, NodeId)>,
}

impl From<SegmentV1> for Segment {
    fn from(s: SegmentV1) -> Segment {
        Segment {
            index: s.index,
            encrypted_size: s.encrypted_size,
            inline: s.inline,
            redundancy: s.redundancy,
            root: s.root,
            piece_size: s.piece_size,
            pieces: s.pieces,
            created: 0,
            expires: 0,
        }
    }
}

impl Versioned for Segment {
    const NAME: &'static str = "segment record";
    const VERSION: u32 = 2;
    fn upgrade(version: u32, body: Value) -> Option<Result<Self, serde_json::Error>> {
        (version == 1).then(|| serde_json::from_value::<SegmentV1>(body).map(Segment::from))
    }
    fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
        crate::legacy_v1::<SegmentV1>(value).map(|r| r.map(Segment::from))
    }
}

/// A pending upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Owner.
    pub project: String,
    /// Bucket.
    pub bucket: String,
    /// Key (as the uplink encoded it).
    pub key: String,
    /// Unix time (s) it began.
    pub created: u64,
    /// Unix time (s) the object expires (0: never).
    #[serde(default)]
    pub expires: u64,
}

/// Version 2 adds the object's expiry: an older build must refuse such a record
/// rather than serve an object it cannot see expire.
impl Versioned for Stream {
    const NAME: &'static str = "stream record";
    const VERSION: u32 = 2;
    fn upgrade(version: u32, body: Value) -> Option<Result<Self, serde_json::Error>> {
        (version == 1).then(|| serde_json::from_value(body))
    }
    fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
        crate::legacy_v1(value)
    }
}

/// A committed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// Its stream: where its segments are.
    pub stream: StreamId,
    /// Encrypted by the uplink.
    pub metadata: Vec<u8>,
    /// Unix time (s) committed.
    pub created: u64,
    /// Unix time (s) it expires (0: never): from then on it is gone for every reader,
    /// and the sweep and the loop delete it.
    #[serde(default)]
    pub expires: u64,
}

/// Version 2 adds the expiry (see [`Stream`]'s).
impl Versioned for Object {
    const NAME: &'static str = "object record";
    const VERSION: u32 = 2;
    fn upgrade(version: u32, body: Value) -> Option<Result<Self, serde_json::Error>> {
        (version == 1).then(|| serde_json::from_value(body))
    }
    fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
        crate::legacy_v1(value)
    }
}

impl Object {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }
}

/// A segment as a scan of the segment keys returns it: its stream, and the record.
pub fn decode_segment(kv: &orbit_kv::KeyValue) -> Result<(StreamId, Segment), Error> {
    let (stream, _) = keys::parse_segment(&kv.key)?;
    Ok((stream, decode(&kv.key, &kv.value)?))
}

/// Items per listing page when the request does not say.
pub const LIST_PAGE: usize = 1000;

/// A page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// Whether more follow (from after the last item).
    pub more: bool,
}

/// The metainfo store.
#[derive(Clone)]
pub struct Metainfo {
    kv: Arc<dyn Kv>,
}

/// Checks the project and bucket a request names before any key is built from them.
fn scope(project: &str, bucket: &str) -> Result<(Project, Bucket), Error> {
    Ok((Project::new(project)?, Bucket::new(bucket)?))
}

fn page_limit(limit: usize) -> usize {
    if limit == 0 {
        LIST_PAGE
    } else {
        limit.min(LIST_PAGE)
    }
}

/// Reads one page of `[start, end)`: at most `limit` keys, and whether more follow.
async fn range_page(
    kv: &dyn Kv,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: usize,
    keys_only: bool,
) -> Result<(Vec<orbit_kv::KeyValue>, bool), Error> {
    let r = kv
        .range(RangeRequest {
            key: start,
            range_end: end,
            limit: limit as i64,
            keys_only,
            ..Default::default()
        })
        .await?;
    Ok((r.kvs, r.more))
}

/// Where a page starts: at `base` + `prefix`, or just after `base` + `cursor` when the
/// cursor lies within the prefix.
fn page_start(base: &str, prefix: &str, cursor: &str) -> Vec<u8> {
    let mut start = format!("{base}{prefix}").into_bytes();
    if !cursor.is_empty() && cursor.starts_with(prefix) {
        start = format!("{base}{cursor}").into_bytes();
        start.push(0);
    }
    start
}

impl Metainfo {
    /// The metainfo in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Metainfo {
        Metainfo { kv }
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, project: &str, bucket: &str, now: u64) -> Result<(), Error> {
        let (p, b) = scope(project, bucket)?;
        let key = keys::bucket(&p, &b);
        let txn = TxnRequest {
            compare: vec![Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::Create(0),
            )],
            success: vec![TxnOp::Put(PutRequest::new(
                key,
                encode(&BucketRecord { created: now }),
            ))],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(Error::Exists(format!("bucket {bucket} already exists")))
        }
    }

    async fn bucket_exists(&self, p: &Project, b: &Bucket) -> Result<(), Error> {
        let r = self
            .kv
            .range(RangeRequest {
                count_only: true,
                ..RangeRequest::key(keys::bucket(p, b))
            })
            .await?;
        if r.count == 0 {
            return Err(Error::NotFound(format!("bucket {} not found", b.as_str())));
        }
        Ok(())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, project: &str, bucket: &str) -> Result<(), Error> {
        let (p, b) = scope(project, bucket)?;
        self.bucket_exists(&p, &b).await?;
        let objects = keys::objects_of(&p, &b);
        let txn = TxnRequest {
            // Empty: a compare over a range holds when every key in it matches, and an
            // empty range compares like a missing key (create revision 0), as in etcd.
            compare: vec![Compare {
                range_end: orbit_kv::prefix_end(objects.as_bytes()),
                ..Compare::new(objects.clone(), CompareOp::Equal, CompareTarget::Create(0))
            }],
            success: vec![TxnOp::Delete(DeleteRequest::key(keys::bucket(&p, &b)))],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(Error::Precondition(format!(
                "bucket {bucket} is not empty: delete its objects first"
            )))
        }
    }

    /// A page of the project's buckets after `cursor` (empty: from the start), at most
    /// `limit` (0: [`LIST_PAGE`]).
    pub async fn list_buckets(
        &self,
        project: &str,
        cursor: &str,
        limit: usize,
    ) -> Result<Page<String>, Error> {
        let p = Project::new(project)?;
        let base = keys::buckets_of(&p);
        let end = orbit_kv::prefix_end(base.as_bytes());
        let start = page_start(&base, "", cursor);
        let (kvs, more) = range_page(&*self.kv, start, end, page_limit(limit), true).await?;
        let items = kvs
            .iter()
            .map(|kv| keys::parse_bucket(&kv.key).map(|(_, b)| b.as_str().to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, more })
    }

    /// Begins an upload: a pending stream.
    pub async fn begin_object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
        now: u64,
    ) -> Result<StreamId, Error> {
        self.begin_object_expiring(project, bucket, key, now, 0)
            .await
    }

    /// Like [`Metainfo::begin_object`], for an object that expires at `expires`
    /// (unix s; 0: never).
    pub async fn begin_object_expiring(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
        now: u64,
        expires: u64,
    ) -> Result<StreamId, Error> {
        if expires != 0 && expires <= now {
            return Err(Error::Invalid(format!(
                "the object would expire at {expires}, before now ({now})"
            )));
        }
        let (p, b) = scope(project, bucket)?;
        self.bucket_exists(&p, &b).await?;
        keys::check_object_key(key)?;
        let stream: StreamId = rand::random();
        let s = Stream {
            project: project.into(),
            bucket: bucket.into(),
            key: key.into(),
            created: now,
            expires,
        };
        self.kv
            .put(PutRequest::new(keys::stream(&stream), encode(&s)))
            .await?;
        Ok(stream)
    }

    /// A pending stream, if `project` owns it.
    pub async fn stream(&self, project: &str, stream: &StreamId) -> Result<Stream, Error> {
        let key = keys::stream(stream);
        let r = self.kv.range(RangeRequest::key(key.clone())).await?;
        let s: Stream = match r.kvs.first() {
            Some(kv) => decode(&kv.key, &kv.value)?,
            None => return Err(Error::NotFound("no such upload in progress".into())),
        };
        if s.project != project {
            return Err(Error::NotFound("no such upload in progress".into()));
        }
        Ok(s)
    }

    /// Records a segment of `project`'s pending stream, and counts it towards the
    /// project's storage until the next tally does.
    pub async fn commit_segment(
        &self,
        project: &str,
        stream: &StreamId,
        seg: &Segment,
    ) -> Result<(), Error> {
        let p = Project::new(project)?;
        let txn = TxnRequest {
            compare: vec![Compare::new(
                keys::stream(stream),
                CompareOp::Greater,
                CompareTarget::Create(0),
            )],
            success: vec![
                TxnOp::Put(PutRequest::new(
                    keys::segment(stream, seg.index),
                    encode(seg),
                )),
                crate::accounting::Usage::added_op(&p, stream, seg.index, seg.encrypted_size),
            ],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(Error::NotFound("no such upload in progress".into()))
        }
    }

    /// Makes a pending stream the object at its key, replacing any object there.
    pub async fn commit_object(
        &self,
        project: &str,
        stream: &StreamId,
        metadata: Vec<u8>,
        now: u64,
    ) -> Result<(), Error> {
        let s = self.stream(project, stream).await?;
        let (p, b) = scope(project, &s.bucket)?;
        let okey = keys::object(&p, &b, &s.key);
        for _ in 0..16 {
            let old = self.kv.range(RangeRequest::key(okey.clone())).await?;
            let (old_rev, old_stream) = match old.kvs.first() {
                Some(kv) => (
                    kv.mod_revision,
                    Some(decode::<Object>(&kv.key, &kv.value)?.stream),
                ),
                None => (0, None),
            };
            let obj = Object {
                stream: *stream,
                metadata: metadata.clone(),
                created: now,
                expires: s.expires,
            };
            let mut success = vec![
                TxnOp::Put(PutRequest::new(okey.clone(), encode(&obj))),
                TxnOp::Delete(DeleteRequest::key(keys::stream(stream))),
            ];
            if let Some(old) = old_stream {
                // The replaced object's segments go with it (its pieces are garbage for
                // the nodes' collection).
                success.push(TxnOp::Delete(DeleteRequest::prefix(keys::segments_of(
                    &old,
                ))));
            }
            let txn = TxnRequest {
                compare: vec![
                    Compare::new(okey.clone(), CompareOp::Equal, CompareTarget::Mod(old_rev)),
                    Compare::new(
                        keys::stream(stream),
                        CompareOp::Greater,
                        CompareTarget::Create(0),
                    ),
                    Compare::new(
                        keys::bucket(&p, &b),
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
            self.bucket_exists(&p, &b).await?;
        }
        Err(Error::Unavailable(
            "too many concurrent writes to this object".into(),
        ))
    }

    /// Deletes uploads begun before `now - max_age_s` and never committed, with the
    /// segments they stored; returns how many went. An upload committed meanwhile is
    /// left alone (compare on the pending record).
    pub async fn remove_abandoned(&self, now: u64, max_age_s: u64) -> Result<usize, Error> {
        let mut removed = 0;
        let mut scan = Scan::prefix(&*self.kv, keys::STREAMS, 1000);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let s: Stream = decode(&kv.key, &kv.value)?;
                if s.created.saturating_add(max_age_s) >= now {
                    continue;
                }
                let id = keys::parse_stream(&kv.key)?;
                let txn = TxnRequest::if_unchanged(
                    kv.key.clone(),
                    kv.mod_revision,
                    vec![
                        TxnOp::Delete(DeleteRequest::key(kv.key.clone())),
                        TxnOp::Delete(DeleteRequest::prefix(keys::segments_of(&id))),
                    ],
                );
                if self.kv.txn(txn).await?.succeeded {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// A committed object, and the revision it was read at.
    pub async fn object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(Object, i64), Error> {
        let (p, b) = scope(project, bucket)?;
        let r = self
            .kv
            .range(RangeRequest::key(keys::object(&p, &b, key)))
            .await?;
        let obj: Option<Object> = r
            .kvs
            .first()
            .map(|kv| decode(&kv.key, &kv.value))
            .transpose()?;
        match obj {
            // Expired: gone for every reader at once, whether swept yet or not.
            Some(o) if !o.expired(crate::unix_now()) => Ok((o, r.revision)),
            _ => Err(Error::NotFound(format!(
                "object not found in bucket {bucket}"
            ))),
        }
    }

    /// A committed object and its segments, read at one revision.
    pub async fn get_object(
        &self,
        project: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(Object, Vec<Segment>), Error> {
        let (obj, revision) = self.object(project, bucket, key).await?;
        let segments = Scan::prefix(&*self.kv, &keys::segments_of(&obj.stream), 1000)
            .at(revision)
            .collect()
            .await?
            .iter()
            .map(|kv| decode::<Segment>(&kv.key, &kv.value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((obj, segments))
    }

    /// One segment of a committed object.
    pub async fn segment(&self, stream: &StreamId, index: u32) -> Result<Option<Segment>, Error> {
        let r = self
            .kv
            .range(RangeRequest::key(keys::segment(stream, index)))
            .await?;
        r.kvs
            .first()
            .map(|kv| decode(&kv.key, &kv.value))
            .transpose()
    }

    /// One segment with the store revision it was last written at (what a later
    /// [`Metainfo::replace_segment`] compares against).
    pub async fn segment_at(
        &self,
        stream: &StreamId,
        index: u32,
    ) -> Result<Option<(Segment, i64)>, Error> {
        let r = self
            .kv
            .range(RangeRequest::key(keys::segment(stream, index)))
            .await?;
        r.kvs
            .first()
            .map(|kv| Ok((decode(&kv.key, &kv.value)?, kv.mod_revision)))
            .transpose()
    }

    /// Writes `seg` over segment `index` of `stream` only if it is still as written at
    /// `mod_revision` and, with `claim`, its repair claim is still held under that
    /// lease: a repair's new piece list never lands on a segment deleted or overwritten
    /// meanwhile (a deleted segment has no revision to match, so it stays deleted), nor
    /// from a worker whose claim ran out. Returns whether it was written.
    pub async fn replace_segment(
        &self,
        stream: &StreamId,
        seg: &Segment,
        mod_revision: i64,
        claim: Option<i64>,
    ) -> Result<bool, Error> {
        let key = keys::segment(stream, seg.index);
        let mut txn = TxnRequest::if_unchanged(
            key.clone(),
            mod_revision,
            vec![TxnOp::Put(PutRequest::new(key, encode(seg)))],
        );
        if let Some(lease) = claim {
            txn.compare.push(Compare::new(
                keys::repair_claim(stream, seg.index),
                CompareOp::Equal,
                CompareTarget::Lease(lease),
            ));
        }
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// A page of the objects whose key starts with `prefix`, after `cursor` (empty:
    /// from the start), at most `limit` (0: [`LIST_PAGE`]).
    pub async fn list_objects(
        &self,
        project: &str,
        bucket: &str,
        prefix: &str,
        cursor: &str,
        limit: usize,
    ) -> Result<Page<(String, Object)>, Error> {
        let (p, b) = scope(project, bucket)?;
        self.bucket_exists(&p, &b).await?;
        let base = keys::objects_of(&p, &b);
        let end = orbit_kv::prefix_end(format!("{base}{prefix}").as_bytes());
        let start = page_start(&base, prefix, cursor);
        let (kvs, more) = range_page(&*self.kv, start, end, page_limit(limit), false).await?;
        let now = crate::unix_now();
        let items = kvs
            .iter()
            .map(|kv| {
                let (_, _, key) = keys::parse_object(&kv.key)?;
                Ok((key, decode::<Object>(&kv.key, &kv.value)?))
            })
            .filter(|r: &Result<(String, Object), Error>| {
                r.as_ref().map_or(true, |(_, o)| !o.expired(now))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Page { items, more })
    }

    /// Deletes every object expired at `now` with its segments (each by a compare on
    /// the object's revision, so an object overwritten meanwhile stays); returns how
    /// many went.
    pub async fn remove_expired(&self, now: u64) -> Result<usize, Error> {
        let mut removed = 0;
        let mut scan = Scan::prefix(&*self.kv, keys::OBJECTS, 1000);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let obj: Object = decode(&kv.key, &kv.value)?;
                if !obj.expired(now) {
                    continue;
                }
                let txn = TxnRequest::if_unchanged(
                    kv.key.clone(),
                    kv.mod_revision,
                    vec![
                        TxnOp::Delete(DeleteRequest::key(kv.key.clone())),
                        TxnOp::Delete(DeleteRequest::prefix(keys::segments_of(&obj.stream))),
                    ],
                );
                removed += usize::from(self.kv.txn(txn).await?.succeeded);
            }
        }
        Ok(removed)
    }

    /// Deletes an object and its segments.
    pub async fn delete_object(&self, project: &str, bucket: &str, key: &str) -> Result<(), Error> {
        let (p, b) = scope(project, bucket)?;
        let okey = keys::object(&p, &b, key);
        let r = self.kv.range(RangeRequest::key(okey.clone())).await?;
        let Some(kv) = r.kvs.first() else {
            return Err(Error::NotFound(format!(
                "object not found in bucket {bucket}"
            )));
        };
        let obj: Object = decode(&kv.key, &kv.value)?;
        let txn = TxnRequest {
            compare: vec![Compare::new(
                okey.clone(),
                CompareOp::Equal,
                CompareTarget::Mod(kv.mod_revision),
            )],
            success: vec![
                TxnOp::Delete(DeleteRequest::key(okey)),
                TxnOp::Delete(DeleteRequest::prefix(keys::segments_of(&obj.stream))),
            ],
            failure: Vec::new(),
        };
        if self.kv.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "the object changed while deleting it; try again".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_the_envelope_still_read() {
        let b: BucketRecord = decode(b"/orbit/sat/buckets/p/bkt", b"1700000000").unwrap();
        assert_eq!(b.created, 1_700_000_000);
        let old = br#"{"v":1,"project":"p","bucket":"bkt","key":"k","created":5}"#;
        let s: Stream = decode(b"/orbit/sat/streams/00", old).unwrap();
        assert_eq!(s.key, "k");
        let again: Stream = decode(b"/k", &encode(&s)).unwrap();
        assert_eq!(again, s);
        let e =
            decode::<Stream>(b"/orbit/sat/streams/01", br#"{"v":9,"project":"p"}"#).unwrap_err();
        assert!(e.to_string().contains("/orbit/sat/streams/01"), "{e}");
    }
}
