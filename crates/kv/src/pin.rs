//! Revision pins: a reader that must read at one revision for a while (a pass of the
//! satellite's segment loop) keeps that revision from automatic compaction.
//!
//! A pin is a key under [`PIN_PREFIX`] whose value is the revision in decimal. orbit's
//! store never auto-compacts past the lowest pin; a real etcd ignores pins, so with an
//! external etcd its own `--auto-compaction-retention` must cover a pass.

use crate::{Kv, KvError, KvResult, PutRequest, RangeRequest};

/// Where pins live. Outside the satellite's `/orbit/sat/` space on purpose: the store
/// reads it, not the satellite's data model.
pub const PIN_PREFIX: &str = "/orbit/store/pins/";

/// The lowest revision pinned in a range over [`PIN_PREFIX`]'s keys, ignoring values
/// that are not revisions.
pub fn lowest_pin<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<i64> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
        .filter(|r| *r > 0)
        .min()
}

/// Pins the current revision under `name` (attached to `lease`, 0 for none) and
/// returns it. The revision is readable until [`unpin`]: the pin is written, then a
/// read at the revision confirms no compaction passed it meanwhile (else it retries at
/// a newer revision).
pub async fn pin_revision(kv: &dyn Kv, name: &str, lease: i64) -> KvResult<i64> {
    let key = format!("{PIN_PREFIX}{name}");
    for _ in 0..8 {
        let rev = kv
            .range(RangeRequest {
                count_only: true,
                ..RangeRequest::key(key.clone())
            })
            .await?
            .revision;
        kv.put(PutRequest {
            lease,
            ..PutRequest::new(key.clone(), rev.to_string())
        })
        .await?;
        match kv
            .range(RangeRequest {
                count_only: true,
                revision: rev,
                ..RangeRequest::key(key.clone())
            })
            .await
        {
            Ok(_) => return Ok(rev),
            Err(KvError::Compacted { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(KvError::Unavailable(
        "could not pin a revision: compaction kept passing it".into(),
    ))
}

/// Removes the pin `name`.
pub async fn unpin(kv: &dyn Kv, name: &str) -> KvResult<()> {
    kv.delete(crate::DeleteRequest::key(format!("{PIN_PREFIX}{name}")))
        .await?;
    Ok(())
}
