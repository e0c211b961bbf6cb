//! The replicated state: a multi-version key-value map with etcd's revision semantics,
//! and the leases that keys hang on.
//!
//! Everything here is deterministic: every member applies the same committed commands
//! in the same order and reaches the same state. Time never enters: lease expiry is
//! decided by the leader and arrives as a revoke command.

use orbit_kv::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most operations in one branch of a txn, and most compares (etcd's `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// Longest lease TTL etcd accepts, seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// Shortest lease TTL granted; shorter asks are raised to it (as etcd's minimum lease TTL).
pub const MIN_LEASE_TTL: i64 = 2;
/// Bytes charged to the quota per stored version beside its key and value.
const VERSION_OVERHEAD: u64 = 64;

/// One stored version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Version {
    mod_revision: i64,
    create_revision: i64,
    version: i64,
    lease: i64,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    /// A delete: the key does not exist from `mod_revision` on.
    tombstone: bool,
}

/// A lease as replicated: its TTL and its keys. When it expires is the leader's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The TTL it was granted with, seconds.
    pub ttl: i64,
    /// Keys attached to it.
    pub keys: BTreeSet<Vec<u8>>,
}

/// The multi-version key-value state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mvcc {
    revision: i64,
    compact_revision: i64,
    /// Each key's versions, oldest first.
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// The keys changed at each revision, in the order they changed (for watch history).
    changes: BTreeMap<i64, Vec<Vec<u8>>>,
    leases: BTreeMap<i64, Lease>,
    /// Bytes of stored data, as charged to the quota.
    size: u64,
}

impl Default for Mvcc {
    fn default() -> Self {
        // etcd's first revision is 1; the first write makes it 2.
        Self {
            revision: 1,
            compact_revision: 0,
            keys: BTreeMap::new(),
            changes: BTreeMap::new(),
            leases: BTreeMap::new(),
            size: 0,
        }
    }
}

/// The range of keys `[key, range_end)` as etcd reads it.
enum KeyRange<'a> {
    One(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        if range_end.is_empty() {
            KeyRange::One(key)
        } else if range_end == [0] {
            KeyRange::From(key)
        } else {
            KeyRange::Between(key, range_end)
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::One(key) => k == *key,
            KeyRange::From(key) => k >= *key,
            KeyRange::Between(key, end) => k >= *key && k < *end,
        }
    }

    /// Whether two ranges share a key (for etcd's duplicate-key check).
    fn overlaps(&self, other: &KeyRange) -> bool {
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        let a_before_b_end = b1.as_ref().is_none_or(|e| a0 < e.as_slice());
        let b_before_a_end = a1.as_ref().is_none_or(|e| b0 < e.as_slice());
        a_before_b_end && b_before_a_end
    }

    /// Inclusive start and exclusive end (None: unbounded).
    fn bounds(&self) -> (&[u8], Option<Vec<u8>>) {
        match self {
            KeyRange::One(key) => {
                let mut end = key.to_vec();
                end.push(0);
                (key, Some(end))
            }
            KeyRange::From(key) => (key, None),
            KeyRange::Between(key, end) => (key, Some(end.to_vec())),
        }
    }
}

/// A change made by a write, as watchers see it. `prev_kv` is always filled; the
/// watch layer drops it for watchers that did not ask.
pub type Changes = Vec<Event>;

/// A write in progress: every change it makes shares one revision.
struct WriteCtx {
    revision: i64,
    wrote: bool,
    events: Changes,
}

impl Mvcc {
    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision history is compacted up to (inclusive).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Versions kept in the history, tombstones included (what compaction bounds).
    pub fn stored_versions(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Keys that exist now (not deleted).
    pub fn live_keys(&self) -> usize {
        self.keys
            .values()
            .filter(|v| v.last().is_some_and(|v| !v.tombstone))
            .count()
    }

    /// Bytes of stored data as charged to the quota.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The live leases.
    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    fn visible(versions: &[Version], rev: i64) -> Option<&Version> {
        let idx = versions.partition_point(|v| v.mod_revision <= rev);
        if idx == 0 {
            return None;
        }
        let v = &versions[idx - 1];
        (!v.tombstone).then_some(v)
    }

    fn latest(&self, key: &[u8]) -> Option<&Version> {
        self.keys
            .get(key)
            .and_then(|vs| vs.last())
            .filter(|v| !v.tombstone)
    }

    fn to_kv(key: &[u8], v: &Version) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: v.value.clone(),
            create_revision: v.create_revision,
            mod_revision: v.mod_revision,
            version: v.version,
            lease: v.lease,
        }
    }

    fn check_read_revision(&self, rev: i64) -> KvResult<i64> {
        if rev <= 0 {
            return Ok(self.revision);
        }
        if rev > self.revision {
            return Err(KvError::FutureRevision);
        }
        if rev < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        Ok(rev)
    }

    fn iter_range<'a>(
        &'a self,
        range: &'a KeyRange<'a>,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Vec<Version>)> + 'a> {
        use std::ops::Bound::*;
        match range {
            KeyRange::One(key) => Box::new(self.keys.get_key_value(*key).into_iter()),
            KeyRange::From(key) => {
                Box::new(self.keys.range::<[u8], _>((Included(*key), Unbounded)))
            }
            KeyRange::Between(key, end) => {
                if key >= end {
                    Box::new(std::iter::empty())
                } else {
                    Box::new(self.keys.range::<[u8], _>((Included(*key), Excluded(*end))))
                }
            }
        }
    }

    /// Serves a Range.
    pub fn range(&self, req: &RangeRequest) -> KvResult<RangeResponse> {
        let rev = self.check_read_revision(req.revision)?;
        Ok(self.range_at(req, rev))
    }

    /// Reads the range as of `rev`, which the caller has checked.
    fn range_at(&self, req: &RangeRequest, rev: i64) -> RangeResponse {
        let range = KeyRange::new(&req.key, &req.range_end);
        // With revision filters, everything is collected, filtered, then cut to the
        // limit, as etcd does; the count stays that of the whole range.
        let filtered = req.has_revision_filters();
        let sorted =
            req.sort_order != SortOrder::None || req.sort_target != SortTarget::Key || filtered;
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        let mut count = 0i64;
        let mut kvs = Vec::new();
        for (key, versions) in self.iter_range(&range) {
            let Some(v) = Self::visible(versions, rev) else {
                continue;
            };
            count += 1;
            if req.count_only || (!sorted && kvs.len() >= limit) {
                continue;
            }
            let mut kv = Self::to_kv(key, v);
            if req.keys_only {
                kv.value.clear();
            }
            kvs.push(kv);
        }
        let mut truncated = false;
        if filtered {
            kvs.retain(|kv| req.passes_filters(kv));
        }
        if sorted {
            let order = match req.sort_order {
                // etcd sorts ascending when a target but no order is given.
                SortOrder::None | SortOrder::Ascend => SortOrder::Ascend,
                SortOrder::Descend => SortOrder::Descend,
            };
            kvs.sort_by(|a, b| {
                let ord = match req.sort_target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                };
                if order == SortOrder::Descend {
                    ord.reverse()
                } else {
                    ord
                }
            });
            truncated = kvs.len() > limit;
            kvs.truncate(limit);
        }
        let more = if filtered {
            // etcd: more when the filtered keys did not fit the limit.
            truncated
        } else {
            (kvs.len() as i64) < count && !req.count_only
        };
        RangeResponse {
            revision: self.revision.max(rev),
            more,
            kvs,
            count,
        }
    }

    /// Checks a write before any of it is applied, so a refused write changes nothing.
    fn check_put(&self, req: &PutRequest) -> KvResult<()> {
        if req.key.is_empty() {
            return Err(KvError::KeyNotProvided);
        }
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(KvError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.latest(&req.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        if req.ignore_value && !req.value.is_empty() {
            return Err(KvError::InvalidArgument("value is provided".into()));
        }
        if req.ignore_lease && req.lease != 0 {
            return Err(KvError::InvalidArgument("lease is provided".into()));
        }
        Ok(())
    }

    fn check_txn(&self, req: &TxnRequest) -> KvResult<()> {
        if req.compare.len() > MAX_TXN_OPS
            || req.success.len() > MAX_TXN_OPS
            || req.failure.len() > MAX_TXN_OPS
        {
            return Err(KvError::TooManyOps);
        }
        for branch in [&req.success, &req.failure] {
            let mut puts: Vec<&[u8]> = Vec::new();
            let mut deletes: Vec<KeyRange> = Vec::new();
            for op in branch.iter() {
                match op {
                    TxnOp::Range(r) => {
                        self.check_read_revision(r.revision)?;
                        if r.has_revision_filters() {
                            return Err(KvError::InvalidArgument(
                                "revision filters are not supported in a txn's range; use a plain range".into(),
                            ));
                        }
                    }
                    TxnOp::Put(p) => {
                        self.check_put(p)?;
                        if puts.contains(&p.key.as_slice()) {
                            return Err(KvError::DuplicateKey);
                        }
                        puts.push(&p.key);
                    }
                    TxnOp::Delete(d) => {
                        if d.key.is_empty() {
                            return Err(KvError::KeyNotProvided);
                        }
                        deletes.push(KeyRange::new(&d.key, &d.range_end));
                    }
                    TxnOp::Txn(t) => self.check_txn(t)?,
                }
            }
            for p in &puts {
                let one = KeyRange::One(p);
                if deletes.iter().any(|d| d.overlaps(&one)) {
                    return Err(KvError::DuplicateKey);
                }
            }
        }
        Ok(())
    }

    fn quota_check(&self, incoming: u64, quota: u64) -> KvResult<()> {
        if quota > 0 && self.size + incoming > quota {
            return Err(KvError::NoSpace);
        }
        Ok(())
    }

    fn put_bytes(req: &PutRequest) -> u64 {
        (req.key.len() + req.value.len()) as u64 + VERSION_OVERHEAD
    }

    fn txn_put_bytes(req: &TxnRequest) -> u64 {
        [&req.success, &req.failure]
            .into_iter()
            .flatten()
            .map(|op| match op {
                TxnOp::Put(p) => Self::put_bytes(p),
                TxnOp::Txn(t) => Self::txn_put_bytes(t),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    fn begin(&self) -> WriteCtx {
        WriteCtx {
            revision: self.revision + 1,
            wrote: false,
            events: Vec::new(),
        }
    }

    fn commit(&mut self, ctx: WriteCtx) -> Changes {
        if ctx.wrote {
            self.revision = ctx.revision;
        }
        ctx.events
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if lease != 0 {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.remove(key);
            }
        }
    }

    fn do_put(&mut self, ctx: &mut WriteCtx, req: &PutRequest) -> PutResponse {
        let prev = self.latest(&req.key).cloned();
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            prev.as_ref().map(|p| p.lease).unwrap_or_default()
        } else {
            req.lease
        };
        let version = Version {
            mod_revision: ctx.revision,
            create_revision: prev.as_ref().map_or(ctx.revision, |p| p.create_revision),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
            value,
            tombstone: false,
        };
        if let Some(p) = &prev {
            if p.lease != lease {
                self.detach(p.lease, &req.key);
            }
        }
        if lease != 0 {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(req.key.clone());
            }
        }
        let kv = Self::to_kv(&req.key, &version);
        let prev_kv = prev.as_ref().map(|p| Self::to_kv(&req.key, p));
        self.size += (req.key.len() + version.value.len()) as u64 + VERSION_OVERHEAD;
        self.record(ctx, &req.key, version);
        ctx.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev_kv.clone(),
        });
        PutResponse {
            revision: ctx.revision,
            prev_kv: if req.prev_kv { prev_kv } else { None },
        }
    }

    fn record(&mut self, ctx: &mut WriteCtx, key: &[u8], version: Version) {
        ctx.wrote = true;
        self.keys.entry(key.to_vec()).or_default().push(version);
        self.changes
            .entry(ctx.revision)
            .or_default()
            .push(key.to_vec());
    }

    fn do_delete(&mut self, ctx: &mut WriteCtx, req: &DeleteRequest) -> DeleteResponse {
        let range = KeyRange::new(&req.key, &req.range_end);
        let live: Vec<(Vec<u8>, Version)> = self
            .iter_range(&range)
            .filter_map(|(k, vs)| {
                vs.last()
                    .filter(|v| !v.tombstone)
                    .map(|v| (k.clone(), v.clone()))
            })
            .collect();
        let mut prev_kvs = Vec::new();
        for (key, prev) in &live {
            self.detach(prev.lease, key);
            let tomb = Version {
                mod_revision: ctx.revision,
                create_revision: 0,
                version: 0,
                lease: 0,
                value: Vec::new(),
                tombstone: true,
            };
            self.size += key.len() as u64 + VERSION_OVERHEAD;
            self.record(ctx, key, tomb);
            let prev_kv = Self::to_kv(key, prev);
            ctx.events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    mod_revision: ctx.revision,
                    ..Default::default()
                },
                prev_kv: Some(prev_kv.clone()),
            });
            if req.prev_kv {
                prev_kvs.push(prev_kv);
            }
        }
        DeleteResponse {
            revision: ctx.revision,
            deleted: live.len() as i64,
            prev_kvs,
        }
    }

    fn compare_holds(&self, c: &Compare) -> bool {
        let range = KeyRange::new(&c.key, &c.range_end);
        let check = |v: Option<&Version>| -> bool {
            use std::cmp::Ordering;
            let ord: Ordering = match &c.target {
                CompareTarget::Value(want) => match v {
                    // A compare on the value of a missing key fails, as in etcd.
                    None => return false,
                    Some(v) => v.value.as_slice().cmp(want.as_slice()),
                },
                CompareTarget::Version(want) => v.map_or(0, |v| v.version).cmp(want),
                CompareTarget::Create(want) => v.map_or(0, |v| v.create_revision).cmp(want),
                CompareTarget::Mod(want) => v.map_or(0, |v| v.mod_revision).cmp(want),
                CompareTarget::Lease(want) => v.map_or(0, |v| v.lease).cmp(want),
            };
            match c.op {
                CompareOp::Equal => ord == Ordering::Equal,
                CompareOp::NotEqual => ord != Ordering::Equal,
                CompareOp::Greater => ord == Ordering::Greater,
                CompareOp::Less => ord == Ordering::Less,
            }
        };
        match range {
            KeyRange::One(key) => check(self.latest(key)),
            _ => {
                let mut live = self
                    .iter_range(&range)
                    .filter_map(|(_, vs)| vs.last().filter(|v| !v.tombstone))
                    .peekable();
                // As etcd: an empty range compares like one missing key.
                if live.peek().is_none() {
                    return check(None);
                }
                live.all(|v| check(Some(v)))
            }
        }
    }

    fn do_txn(&mut self, ctx: &mut WriteCtx, req: &TxnRequest) -> TxnResponse {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        let branch = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                TxnOp::Range(r) => {
                    // Reads inside a txn see its own earlier writes; the asked revision
                    // was checked before the txn started.
                    let rev = if r.revision > 0 {
                        r.revision
                    } else if ctx.wrote {
                        ctx.revision
                    } else {
                        self.revision
                    };
                    TxnOpResponse::Range(self.range_at(r, rev))
                }
                TxnOp::Put(p) => TxnOpResponse::Put(self.do_put(ctx, p)),
                TxnOp::Delete(d) => TxnOpResponse::Delete(self.do_delete(ctx, d)),
                TxnOp::Txn(t) => TxnOpResponse::Txn(self.do_txn(ctx, t)),
            });
        }
        TxnResponse {
            revision: ctx.revision,
            succeeded,
            responses,
        }
    }

    /// Serves a txn whose branches only read, without a log entry.
    pub fn read_txn(&self, req: &TxnRequest) -> KvResult<TxnResponse> {
        self.check_txn(req)?;
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        let branch = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            match op {
                TxnOp::Range(r) => responses.push(TxnOpResponse::Range(self.range(r)?)),
                _ => {
                    return Err(KvError::InvalidArgument(
                        "read_txn given a txn that writes".into(),
                    ))
                }
            }
        }
        Ok(TxnResponse {
            revision: self.revision,
            succeeded,
            responses,
        })
    }

    /// Applies one write command; the result and the changes watchers should see.
    pub fn apply(&mut self, cmd: &WriteCommand, quota: u64) -> (KvResult<WriteResult>, Changes) {
        match self.try_apply(cmd, quota) {
            Ok((res, changes)) => (Ok(res), changes),
            Err(e) => (Err(e), Vec::new()),
        }
    }

    fn try_apply(&mut self, cmd: &WriteCommand, quota: u64) -> KvResult<(WriteResult, Changes)> {
        match cmd {
            WriteCommand::Put(req) => {
                self.check_put(req)?;
                self.quota_check(Self::put_bytes(req), quota)?;
                let mut ctx = self.begin();
                let resp = self.do_put(&mut ctx, req);
                Ok((WriteResult::Put(resp), self.commit(ctx)))
            }
            WriteCommand::Delete(req) => {
                if req.key.is_empty() {
                    return Err(KvError::KeyNotProvided);
                }
                let mut ctx = self.begin();
                let mut resp = self.do_delete(&mut ctx, req);
                let changes = self.commit(ctx);
                resp.revision = self.revision;
                Ok((WriteResult::Delete(resp), changes))
            }
            WriteCommand::Txn(req) => {
                self.check_txn(req)?;
                self.quota_check(Self::txn_put_bytes(req), quota)?;
                let mut ctx = self.begin();
                let mut resp = self.do_txn(&mut ctx, req);
                let changes = self.commit(ctx);
                set_txn_revision(&mut resp, self.revision);
                Ok((WriteResult::Txn(resp), changes))
            }
            WriteCommand::Compact(rev) => {
                self.compact(*rev)?;
                Ok((WriteResult::Compact(self.revision), Vec::new()))
            }
            WriteCommand::LeaseGrant { id, ttl } => {
                if *ttl > MAX_LEASE_TTL {
                    return Err(KvError::LeaseTtlTooLarge);
                }
                if *id <= 0 {
                    return Err(KvError::InvalidArgument("lease id must be positive".into()));
                }
                if self.leases.contains_key(id) {
                    return Err(KvError::LeaseExists);
                }
                let ttl = (*ttl).max(MIN_LEASE_TTL);
                self.leases.insert(
                    *id,
                    Lease {
                        ttl,
                        keys: BTreeSet::new(),
                    },
                );
                Ok((
                    WriteResult::LeaseGrant(LeaseGrantResponse {
                        revision: self.revision,
                        id: *id,
                        ttl,
                    }),
                    Vec::new(),
                ))
            }
            WriteCommand::LeaseRevoke { id } => {
                let lease = self.leases.remove(id).ok_or(KvError::LeaseNotFound)?;
                let mut ctx = self.begin();
                for key in &lease.keys {
                    self.do_delete(&mut ctx, &DeleteRequest::key(key.clone()));
                }
                let changes = self.commit(ctx);
                Ok((WriteResult::LeaseRevoke(self.revision), changes))
            }
        }
    }

    /// Drops the history older than `rev`, keeping what a read at `rev` sees.
    pub fn compact(&mut self, rev: i64) -> KvResult<()> {
        if rev > self.revision {
            return Err(KvError::FutureRevision);
        }
        if rev <= self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let mut freed = 0u64;
        self.keys.retain(|key, versions| {
            let idx = versions.partition_point(|v| v.mod_revision <= rev);
            // Keep the version a read at `rev` sees, and a delete made at `rev` itself
            // (a watch from `rev` still reports it, as etcd's does); an older delete goes.
            let keep_from = if idx > 0
                && (!versions[idx - 1].tombstone || versions[idx - 1].mod_revision == rev)
            {
                idx - 1
            } else {
                idx
            };
            for v in versions.drain(..keep_from) {
                freed += (key.len() + v.value.len()) as u64 + VERSION_OVERHEAD;
            }
            !versions.is_empty()
        });
        self.size = self.size.saturating_sub(freed);
        self.changes = self.changes.split_off(&rev);
        self.compact_revision = rev;
        Ok(())
    }

    /// The changes to `[key, range_end)` from revision `from` on, in revision order.
    /// `from` must be at or above the compaction point.
    pub fn history(&self, key: &[u8], range_end: &[u8], from: i64) -> KvResult<Changes> {
        if from < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let range = KeyRange::new(key, range_end);
        let mut out = Vec::new();
        for (rev, keys) in self.changes.range(from..) {
            for k in keys.iter().filter(|k| range.contains(k)) {
                let versions = &self.keys[k];
                let idx = versions.partition_point(|v| v.mod_revision < *rev);
                let v = &versions[idx];
                let prev_kv = versions[..idx]
                    .last()
                    .filter(|p| !p.tombstone)
                    .map(|p| Self::to_kv(k, p));
                out.push(if v.tombstone {
                    Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: k.clone(),
                            mod_revision: *rev,
                            ..Default::default()
                        },
                        prev_kv,
                    }
                } else {
                    Event {
                        kind: EventKind::Put,
                        kv: Self::to_kv(k, v),
                        prev_kv,
                    }
                });
            }
        }
        Ok(out)
    }

    /// Keys attached to a lease.
    pub fn lease_keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
    }
}

fn set_txn_revision(resp: &mut TxnResponse, revision: i64) {
    resp.revision = revision;
    for r in &mut resp.responses {
        match r {
            TxnOpResponse::Range(r) => r.revision = revision,
            TxnOpResponse::Put(r) => r.revision = revision,
            TxnOpResponse::Delete(r) => r.revision = revision,
            TxnOpResponse::Txn(t) => set_txn_revision(t, revision),
        }
    }
}

/// A command that changes the key-value state, as replicated through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCommand {
    /// Put one key.
    Put(PutRequest),
    /// Delete a key or range.
    Delete(DeleteRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// Compact history up to a revision.
    Compact(i64),
    /// Grant a lease (the id is chosen before proposing, so every member agrees).
    LeaseGrant {
        /// Lease id.
        id: i64,
        /// Asked TTL, seconds.
        ttl: i64,
    },
    /// Revoke (or expire) a lease and delete its keys in one revision.
    LeaseRevoke {
        /// Lease id.
        id: i64,
    },
}

/// The result of a [`WriteCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// Of a put.
    Put(PutResponse),
    /// Of a delete.
    Delete(DeleteResponse),
    /// Of a txn.
    Txn(TxnResponse),
    /// Of a compaction: the revision.
    Compact(i64),
    /// Of a lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// Of a lease revoke: the revision.
    LeaseRevoke(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(m: &mut Mvcc, k: &str, v: &str) -> PutResponse {
        match m
            .apply(&WriteCommand::Put(PutRequest::new(k, v)), 0)
            .0
            .unwrap()
        {
            WriteResult::Put(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn get(m: &Mvcc, k: &str) -> Option<KeyValue> {
        m.range(&RangeRequest::key(k))
            .unwrap()
            .kvs
            .into_iter()
            .next()
    }

    #[test]
    fn revisions_and_versions_follow_etcd() {
        let mut m = Mvcc::default();
        assert_eq!(m.revision(), 1);
        assert_eq!(put(&mut m, "a", "1").revision, 2);
        put(&mut m, "a", "2");
        let kv = get(&m, "a").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        let (res, ev) = m.apply(&WriteCommand::Delete(DeleteRequest::key("a")), 0);
        assert!(matches!(
            res,
            Ok(WriteResult::Delete(DeleteResponse {
                deleted: 1,
                revision: 4,
                ..
            }))
        ));
        assert_eq!(ev.len(), 1);
        assert!(get(&m, "a").is_none());
        // Deleting nothing does not make a revision.
        let (res, _) = m.apply(&WriteCommand::Delete(DeleteRequest::key("a")), 0);
        assert!(matches!(
            res,
            Ok(WriteResult::Delete(DeleteResponse {
                deleted: 0,
                revision: 4,
                ..
            }))
        ));
        // Re-creation starts a new generation.
        put(&mut m, "a", "3");
        let kv = get(&m, "a").unwrap();
        assert_eq!((kv.create_revision, kv.version), (5, 1));
        // Past revisions stay readable.
        let old = m
            .range(&RangeRequest {
                revision: 3,
                ..RangeRequest::key("a")
            })
            .unwrap();
        assert_eq!(old.kvs[0].value, b"2");
        assert!(m
            .range(&RangeRequest {
                revision: 4,
                ..RangeRequest::key("a")
            })
            .unwrap()
            .kvs
            .is_empty());
        assert_eq!(
            m.range(&RangeRequest {
                revision: 99,
                ..RangeRequest::key("a")
            }),
            Err(KvError::FutureRevision)
        );
    }

    #[test]
    fn ranges_limits_sorting_and_counts() {
        let mut m = Mvcc::default();
        for (k, v) in [("p/a", "3"), ("p/b", "1"), ("p/c", "2"), ("q", "0")] {
            put(&mut m, k, v);
        }
        let r = m
            .range(&RangeRequest {
                limit: 2,
                ..RangeRequest::prefix("p/")
            })
            .unwrap();
        assert_eq!(r.kvs.len(), 2);
        assert!(r.more);
        assert_eq!(r.count, 3);
        let r = m
            .range(&RangeRequest {
                sort_target: SortTarget::Value,
                sort_order: SortOrder::Descend,
                ..RangeRequest::prefix("p/")
            })
            .unwrap();
        let vals: Vec<_> = r.kvs.iter().map(|k| k.value.clone()).collect();
        assert_eq!(vals, vec![b"3".to_vec(), b"2".to_vec(), b"1".to_vec()]);
        let r = m
            .range(&RangeRequest {
                count_only: true,
                ..RangeRequest::prefix("p/")
            })
            .unwrap();
        assert!(r.kvs.is_empty() && r.count == 3);
        let r = m
            .range(&RangeRequest {
                keys_only: true,
                ..RangeRequest::key("q")
            })
            .unwrap();
        assert!(r.kvs[0].value.is_empty());
        // [0] as range end: every key from `key` on.
        let r = m
            .range(&RangeRequest {
                key: b"p/b".to_vec(),
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.count, 3);
    }

    #[test]
    fn txn_compare_and_swap() {
        let mut m = Mvcc::default();
        let rev = put(&mut m, "k", "v1").revision;
        let cas = |m: &mut Mvcc, expect: i64, new: &str| {
            let t = TxnRequest {
                compare: vec![Compare::new(
                    "k",
                    CompareOp::Equal,
                    CompareTarget::Mod(expect),
                )],
                success: vec![
                    TxnOp::Put(PutRequest::new("k", new)),
                    TxnOp::Range(RangeRequest::key("k")),
                ],
                failure: vec![TxnOp::Range(RangeRequest::key("k"))],
            };
            match m.apply(&WriteCommand::Txn(t), 0).0.unwrap() {
                WriteResult::Txn(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let ok = cas(&mut m, rev, "v2");
        assert!(ok.succeeded);
        assert_eq!(ok.revision, rev + 1);
        // The read inside the txn sees the txn's own write.
        match &ok.responses[1] {
            TxnOpResponse::Range(r) => assert_eq!(r.kvs[0].value, b"v2"),
            other => panic!("{other:?}"),
        }
        let stale = cas(&mut m, rev, "v3");
        assert!(!stale.succeeded);
        assert_eq!(stale.revision, rev + 1, "a failed CAS makes no revision");
        assert_eq!(get(&m, "k").unwrap().value, b"v2");
        // Missing key: version 0 compares equal; value compare fails.
        let t = TxnRequest {
            compare: vec![Compare::new(
                "nope",
                CompareOp::Equal,
                CompareTarget::Version(0),
            )],
            success: vec![TxnOp::Put(PutRequest::new("nope", "x"))],
            failure: vec![],
        };
        let r = m.apply(&WriteCommand::Txn(t), 0).0.unwrap();
        assert!(matches!(
            r,
            WriteResult::Txn(TxnResponse {
                succeeded: true,
                ..
            })
        ));
    }

    #[test]
    fn txn_limits_and_duplicates_change_nothing() {
        let mut m = Mvcc::default();
        let many = TxnRequest {
            success: (0..=MAX_TXN_OPS)
                .map(|i| TxnOp::Put(PutRequest::new(format!("k{i}"), "v")))
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            m.apply(&WriteCommand::Txn(many), 0).0,
            Err(KvError::TooManyOps)
        );
        let dup = TxnRequest {
            success: vec![
                TxnOp::Put(PutRequest::new("a", "1")),
                TxnOp::Put(PutRequest::new("a", "2")),
            ],
            ..Default::default()
        };
        assert_eq!(
            m.apply(&WriteCommand::Txn(dup), 0).0,
            Err(KvError::DuplicateKey)
        );
        let del_overlap = TxnRequest {
            success: vec![
                TxnOp::Delete(DeleteRequest::prefix("a")),
                TxnOp::Put(PutRequest::new("ab", "2")),
            ],
            ..Default::default()
        };
        assert_eq!(
            m.apply(&WriteCommand::Txn(del_overlap), 0).0,
            Err(KvError::DuplicateKey)
        );
        let bad_lease = TxnRequest {
            success: vec![
                TxnOp::Put(PutRequest::new("b", "1")),
                TxnOp::Put(PutRequest {
                    lease: 42,
                    ..PutRequest::new("c", "1")
                }),
            ],
            ..Default::default()
        };
        assert_eq!(
            m.apply(&WriteCommand::Txn(bad_lease), 0).0,
            Err(KvError::LeaseNotFound)
        );
        assert_eq!(m.revision(), 1);
        assert!(get(&m, "b").is_none());
    }

    #[test]
    fn bad_puts_are_refused() {
        let mut m = Mvcc::default();
        assert_eq!(
            m.apply(&WriteCommand::Put(PutRequest::new("", "v")), 0).0,
            Err(KvError::KeyNotProvided)
        );
        let ign = PutRequest {
            ignore_value: true,
            ..PutRequest::new("x", "")
        };
        assert_eq!(
            m.apply(&WriteCommand::Put(ign.clone()), 0).0,
            Err(KvError::KeyNotFound)
        );
        put(&mut m, "x", "keep");
        assert!(m.apply(&WriteCommand::Put(ign), 0).0.is_ok());
        assert_eq!(get(&m, "x").unwrap().value, b"keep");
        // Quota: a put that would pass it is refused; deletes still work.
        let big = PutRequest::new("big", vec![0u8; 1000]);
        assert_eq!(
            m.apply(&WriteCommand::Put(big), 500).0,
            Err(KvError::NoSpace)
        );
        assert!(m
            .apply(&WriteCommand::Delete(DeleteRequest::key("x")), 500)
            .0
            .is_ok());
    }

    #[test]
    fn leases_attach_and_revoke_in_one_revision() {
        let mut m = Mvcc::default();
        let grant = m
            .apply(&WriteCommand::LeaseGrant { id: 7, ttl: 1 }, 0)
            .0
            .unwrap();
        assert!(matches!(
            grant,
            WriteResult::LeaseGrant(LeaseGrantResponse {
                id: 7,
                ttl: MIN_LEASE_TTL,
                ..
            })
        ));
        assert_eq!(
            m.apply(&WriteCommand::LeaseGrant { id: 7, ttl: 5 }, 0).0,
            Err(KvError::LeaseExists)
        );
        for k in ["l/a", "l/b"] {
            m.apply(
                &WriteCommand::Put(PutRequest {
                    lease: 7,
                    ..PutRequest::new(k, "v")
                }),
                0,
            )
            .0
            .unwrap();
        }
        put(&mut m, "other", "v");
        let before = m.revision();
        let (res, events) = m.apply(&WriteCommand::LeaseRevoke { id: 7 }, 0);
        assert_eq!(res, Ok(WriteResult::LeaseRevoke(before + 1)));
        assert_eq!(events.len(), 2);
        assert!(events
            .iter()
            .all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == before + 1));
        assert!(get(&m, "l/a").is_none() && get(&m, "other").is_some());
        assert_eq!(
            m.apply(&WriteCommand::LeaseRevoke { id: 7 }, 0).0,
            Err(KvError::LeaseNotFound)
        );
    }

    #[test]
    fn compaction_keeps_what_reads_at_its_revision_see() {
        let mut m = Mvcc::default();
        put(&mut m, "a", "1"); // 2
        put(&mut m, "a", "2"); // 3
        put(&mut m, "b", "1"); // 4
        m.apply(&WriteCommand::Delete(DeleteRequest::key("b")), 0)
            .0
            .unwrap(); // 5
        put(&mut m, "a", "3"); // 6
        m.apply(&WriteCommand::Compact(5), 0).0.unwrap();
        assert_eq!(
            m.range(&RangeRequest {
                revision: 4,
                ..RangeRequest::key("a")
            }),
            Err(KvError::Compacted {
                compact_revision: 5
            })
        );
        let at5 = m
            .range(&RangeRequest {
                revision: 5,
                ..RangeRequest::prefix("")
            })
            .unwrap();
        assert_eq!(at5.kvs.len(), 1);
        assert_eq!(at5.kvs[0].value, b"2");
        assert_eq!(
            m.apply(&WriteCommand::Compact(5), 0).0,
            Err(KvError::Compacted {
                compact_revision: 5
            })
        );
        assert_eq!(
            m.apply(&WriteCommand::Compact(60), 0).0,
            Err(KvError::FutureRevision)
        );
        // History from the compaction revision itself is kept (etcd serves a watch
        // from it, with the delete made there); only older history is gone.
        assert!(matches!(
            m.history(b"a", b"", 4),
            Err(KvError::Compacted { .. })
        ));
        let from5 = m.history(b"", &[0], 5).unwrap();
        assert_eq!(from5.len(), 2);
        assert_eq!(from5[0].kind, EventKind::Delete);
        assert_eq!(from5[0].kv.key, b"b");
        let h = m.history(b"a", b"", 6).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].prev_kv.as_ref().unwrap().value, b"2");
    }

    #[test]
    fn history_is_in_revision_order_with_prev_kv() {
        let mut m = Mvcc::default();
        put(&mut m, "w/a", "1");
        put(&mut m, "w/b", "1");
        put(&mut m, "w/a", "2");
        m.apply(&WriteCommand::Delete(DeleteRequest::prefix("w/")), 0)
            .0
            .unwrap();
        let h = m.history(b"w/", &prefix_end(b"w/"), 2).unwrap();
        let seen: Vec<(EventKind, i64)> = h.iter().map(|e| (e.kind, e.kv.mod_revision)).collect();
        assert_eq!(
            seen,
            vec![
                (EventKind::Put, 2),
                (EventKind::Put, 3),
                (EventKind::Put, 4),
                (EventKind::Delete, 5),
                (EventKind::Delete, 5)
            ]
        );
        assert_eq!(h[2].prev_kv.as_ref().unwrap().value, b"1");
        assert!(h[0].prev_kv.is_none());
    }
}
