//! Claims on jobs, each a key that exists only while its holder's lease lives: the
//! repair and audit queues hand out jobs through them, so two workers never hold one
//! job, and a worker that dies frees its jobs when its lease runs out.

use crate::Error;
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, PutRequest, RangeRequest, TxnRequest,
};

/// Takes the claim `key` for `holder` under `lease` if nobody holds it and `guard`
/// (a key and the mod revision it was read at) is unchanged: a job taken from a queue
/// entry that changed or went meanwhile is not taken.
pub async fn take(
    kv: &dyn Kv,
    key: String,
    holder: &str,
    lease: i64,
    guard: Option<(String, i64)>,
) -> Result<bool, Error> {
    let mut compare = vec![Compare::new(
        key.clone(),
        CompareOp::Equal,
        CompareTarget::Create(0),
    )];
    if let Some((k, rev)) = guard {
        compare.push(Compare::new(k, CompareOp::Equal, CompareTarget::Mod(rev)));
    }
    let txn = TxnRequest {
        compare,
        success: vec![orbit_kv::TxnOp::Put(PutRequest {
            lease,
            ..PutRequest::new(key, holder)
        })],
        failure: Vec::new(),
    };
    Ok(kv.txn(txn).await?.succeeded)
}

/// Gives a claim up.
pub async fn release(kv: &dyn Kv, key: String) -> Result<(), Error> {
    kv.delete(DeleteRequest::key(key)).await?;
    Ok(())
}

/// Who holds the claim `key`, if anyone.
pub async fn holder(kv: &dyn Kv, key: String) -> Result<Option<String>, Error> {
    let r = kv.range(RangeRequest::key(key)).await?;
    Ok(r.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}
