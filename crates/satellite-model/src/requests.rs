//! Operators' requests to elected processes (a loop pass, a gc round now), kept in
//! the store so whichever process leads when it looks carries them out, once.

use crate::keys;
use crate::Error;
use orbit_kv::record::encode;
use orbit_kv::{DeleteRequest, Kv, PutRequest, RangeRequest, TxnOp, TxnRequest};
use serde::{Deserialize, Serialize};

/// A request for a run now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Who asked (for the log).
    pub by: String,
    /// Unix time (s) asked.
    pub at: u64,
}

crate::versioned_v1!(RunRequest, "run request");

/// Asks the leader of `process` (`loop`, `gc`) for a run; several requests before
/// it looks make one run.
pub async fn ask(kv: &dyn Kv, process: &str, by: &str, now: u64) -> Result<(), Error> {
    let r = RunRequest {
        by: by.to_string(),
        at: now,
    };
    kv.put(PutRequest::new(keys::request(process), encode(&r)))
        .await?;
    Ok(())
}

/// Takes the request for `process`, if there is one: it is deleted only if no newer
/// request replaced it meanwhile (that one stays for the next look).
pub async fn take(kv: &dyn Kv, process: &str) -> Result<Option<RunRequest>, Error> {
    let key = keys::request(process);
    let r = kv.range(RangeRequest::key(key.clone())).await?;
    let Some(found) = r.kvs.first() else {
        return Ok(None);
    };
    let req: RunRequest = crate::decode(&found.key, &found.value)?;
    let txn = TxnRequest::if_unchanged(
        key.clone(),
        found.mod_revision,
        vec![TxnOp::Delete(DeleteRequest::key(key))],
    );
    Ok(kv.txn(txn).await?.succeeded.then_some(req))
}
