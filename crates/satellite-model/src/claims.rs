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

/// The lease a worker's claims live under: renewed while the worker lives, granted
/// anew when it ran out (claims under the old one are then free for others).
pub struct ClaimLease {
    kv: std::sync::Arc<dyn Kv>,
    ttl_s: i64,
    what: &'static str,
    lease: tokio::sync::Mutex<i64>,
}

impl ClaimLease {
    /// A lease of `ttl_s` seconds in `kv` for the claims of `what` ("repair", ...);
    /// none is granted until [`ClaimLease::keep`].
    pub fn new(kv: std::sync::Arc<dyn Kv>, ttl_s: i64, what: &'static str) -> ClaimLease {
        ClaimLease {
            kv,
            ttl_s,
            what,
            lease: tokio::sync::Mutex::new(0),
        }
    }

    /// Keeps the lease alive, granting a new one when it ran out. Returns the lease.
    pub async fn keep(&self) -> Result<i64, String> {
        let mut lease = self.lease.lock().await;
        if *lease != 0 {
            match self.kv.lease_keep_alive(*lease).await {
                Ok(ttl) if ttl > 0 => return Ok(*lease),
                Ok(_) | Err(orbit_kv::KvError::LeaseNotFound) => {
                    tracing::warn!(
                        lease = *lease,
                        what = self.what,
                        "the claims' lease ran out"
                    )
                }
                Err(e) => return Err(format!("renewing the {} lease: {e}", self.what)),
            }
        }
        let granted = self
            .kv
            .lease_grant(self.ttl_s, 0)
            .await
            .map_err(|e| format!("granting the {} lease: {e}", self.what))?;
        *lease = granted.id;
        Ok(granted.id)
    }

    /// Gives the lease up (at shutdown): the claims are free at once.
    pub async fn revoke(&self) {
        let mut lease = self.lease.lock().await;
        if *lease != 0 {
            if let Err(e) = self.kv.lease_revoke(*lease).await {
                tracing::warn!(error = %e, what = self.what, "could not revoke the claims' lease");
            }
            *lease = 0;
        }
    }
}
