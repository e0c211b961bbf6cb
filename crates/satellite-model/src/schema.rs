//! The data model's version in the store, and the one-time migration of records
//! written by older satellites.
//!
//! Schema 1 (every satellite before this record existed) kept records without the
//! `{"v", "r"}` envelope: structs with a `v` field, a bucket as its bare creation
//! time, a revocation as `1`. Schema 2 envelopes every record. At start a satellite
//! process calls [`migrate`]: with no schema record it rewrites every schema-1 record
//! in the envelope (each by a compare on its revision, so a concurrent writer wins and
//! several replicas may migrate at once), then writes the schema record; a schema
//! newer than this build's stops the process with a message. Until a store is
//! migrated, the decoders still read schema-1 values.
//!
//! Schema 3 writes segments in record version 2 (ids as hex strings instead of arrays
//! of numbers): migrating to it rewrites every record below its type's current
//! version, the same way. A satellite of schema 2 cannot read version-2 segments and
//! says so, naming the key: upgrade every process of a satellite together. Schema 4
//! writes node records in version 2, with the node's reputation; schema 5 stream and
//! object records in version 2, with the object's expiry.

use crate::apikeys::{KeyRecord, Revocation};
use crate::keys;
use crate::metainfo::{BucketRecord, Object, Segment, Stream};
use crate::nodes::NodeRecord;
use crate::orders::Settled;
use crate::Error;
use orbit_kv::record::{encode, version, Versioned};
use orbit_kv::{Kv, PutRequest, RangeRequest, Scan, TxnOp, TxnRequest};
use serde::{Deserialize, Serialize};

/// The schema this build writes.
pub const SCHEMA: u32 = 5;

/// The schema record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The model's version.
    pub version: u32,
}

impl Versioned for Schema {
    const NAME: &'static str = "schema record";
    const VERSION: u32 = 1;
}

/// What a migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// The schema found (1 when there was no schema record).
    pub from: u32,
    /// Records rewritten.
    pub rewritten: usize,
}

/// The record under `prefix` at `key` in its type's current version, or `None` when
/// it is stored that way already.
fn reencode(prefix: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    fn again<T: Versioned>(key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if version(value) == Some(u64::from(T::VERSION)) {
            return Ok(None);
        }
        Ok(Some(encode(&crate::decode::<T>(key, value)?)))
    }
    match prefix {
        keys::BUCKETS => again::<BucketRecord>(key, value),
        keys::OBJECTS => again::<Object>(key, value),
        keys::STREAMS => again::<Stream>(key, value),
        keys::SEGMENTS => again::<Segment>(key, value),
        keys::NODES => again::<NodeRecord>(key, value),
        keys::SETTLED => again::<Settled>(key, value),
        keys::APIKEYS => again::<KeyRecord>(key, value),
        keys::REVOKED => again::<Revocation>(key, value),
        _ => Err(Error::Internal(format!("no record type under {prefix}"))),
    }
}

/// Brings the store's satellite records to [`SCHEMA`] (see the module docs).
pub async fn migrate(kv: &dyn Kv) -> Result<Migration, Error> {
    let r = kv.range(RangeRequest::key(keys::SCHEMA)).await?;
    let from = match r.kvs.first() {
        Some(k) => crate::decode::<Schema>(&k.key, &k.value)?.version,
        None => 1,
    };
    if from > SCHEMA {
        return Err(Error::Precondition(format!(
            "the store holds satellite schema {from}, written by a newer orbit; this build knows schema {SCHEMA}: run the newer build"
        )));
    }
    let mut done = Migration { from, rewritten: 0 };
    if from == SCHEMA {
        return Ok(done);
    }
    for prefix in keys::RECORD_PREFIXES {
        let mut scan = Scan::prefix(kv, prefix, 500);
        while let Some(page) = scan.next_page().await? {
            for old in page {
                let Some(new) = reencode(prefix, &old.key, &old.value)? else {
                    continue;
                };
                let txn = TxnRequest::if_unchanged(
                    old.key.clone(),
                    old.mod_revision,
                    vec![TxnOp::Put(PutRequest::new(old.key.clone(), new))],
                );
                // A record changed since the scan was rewritten by a current writer
                // (or deleted): nothing to migrate.
                if kv.txn(txn).await?.succeeded {
                    done.rewritten += 1;
                }
            }
        }
    }
    kv.put(PutRequest::new(
        keys::SCHEMA,
        encode(&Schema { version: SCHEMA }),
    ))
    .await?;
    Ok(done)
}
