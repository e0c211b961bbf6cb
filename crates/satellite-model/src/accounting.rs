//! Accounting in the store: every settled order and every channel payment counted
//! exactly once, rolled up per hour, per day and per month; project limits; storage
//! node payouts and project invoices for a period.
//!
//! The flow (keys in [`crate::keys`]):
//!
//! - Settlement writes each order's [`SettledOrder`] under `accounting/orders/` in the
//!   same transaction that marks its serial settled; a paid request writes its
//!   [`PaymentRecord`] in the transaction that takes the payment. Neither can be
//!   counted twice or lost: they exist exactly when the settlement or payment does.
//! - [`Accounting::roll_orders`] folds those into hourly rollups per node and per
//!   bucket and into each project's month, deleting what it folded. A fold is one
//!   transaction that compares every source and every rollup it read against their
//!   revisions: when two accounting processes race, one fold commits and the other
//!   reads again, so a unit is in exactly one place — its source or its rollup.
//! - [`Accounting::roll_days`] folds the hourly rollups and the tallies of days that
//!   are over into daily rollups the same way (the newest tally stays: it is what
//!   storage limits read).
//! - [`Accounting::period`] reads a month from whatever stage each unit is at, so a
//!   report is exact whenever it is taken.

use crate::keys::{self, Bucket, Project};
use crate::tally::{BucketTally, LastTally, NodeTally};
use crate::{decode, Error};
use orbit_identity::NodeId;
use orbit_kv::record::{encode, Versioned};
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyValue, Kv, PutRequest, RangeRequest,
    TxnOp, TxnOpResponse, TxnRequest,
};
use orbit_protocol::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes moved, by action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Uploads to nodes (ingress).
    pub put: u64,
    /// Downloads from nodes (egress).
    pub get: u64,
    /// Repaired pieces stored.
    pub put_repair: u64,
    /// Pieces read for repair.
    pub get_repair: u64,
    /// Slices read for audits.
    pub get_audit: u64,
}

impl Bandwidth {
    /// Adds `amount` bytes of `action`.
    pub fn add(&mut self, action: Action, amount: u64) {
        let slot = match action {
            Action::Put => &mut self.put,
            Action::Get => &mut self.get,
            Action::PutRepair => &mut self.put_repair,
            Action::GetRepair => &mut self.get_repair,
            Action::GetAudit => &mut self.get_audit,
        };
        *slot = slot.saturating_add(amount);
    }

    /// Adds another's.
    pub fn merge(&mut self, o: &Bandwidth) {
        self.put = self.put.saturating_add(o.put);
        self.get = self.get.saturating_add(o.get);
        self.put_repair = self.put_repair.saturating_add(o.put_repair);
        self.get_repair = self.get_repair.saturating_add(o.get_repair);
        self.get_audit = self.get_audit.saturating_add(o.get_audit);
    }
}

/// A settled order not yet rolled up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledOrder {
    /// The node that served it.
    pub node: NodeId,
    /// What it did.
    pub action: Action,
    /// Bytes.
    pub amount: u64,
    /// Unix time (s) of settlement.
    pub at: u64,
    /// The project it is accounted to (empty: the satellite's own, repair or audit).
    pub project: String,
    /// Its bucket (empty with the project).
    pub bucket: String,
}

crate::versioned_v1!(SettledOrder, "settled order for accounting");

/// A payment taken through a channel, not yet rolled up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// The project whose request it paid for.
    pub project: String,
    /// The channel.
    pub channel: u64,
    /// The channel's nonce.
    pub nonce: u64,
    /// The channel's authorized amount on that nonce after it (amounts only grow on
    /// a nonce, so this names the payment).
    pub authorized: u64,
    /// What this payment added to it.
    pub amount: u64,
    /// Unix time (s).
    pub at: u64,
}

crate::versioned_v1!(PaymentRecord, "payment record");

/// A node's or a bucket's bandwidth in one hour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRollup {
    /// Bytes by action.
    pub bandwidth: Bandwidth,
    /// Orders counted.
    pub orders: u64,
}

crate::versioned_v1!(HourRollup, "hourly rollup");

/// A node's day: what it stored and moved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeDay {
    /// Bytes by action.
    pub bandwidth: Bandwidth,
    /// Orders counted.
    pub orders: u64,
    /// Byte-hours stored (from the tallies).
    pub byte_hours: f64,
    /// Tallies counted.
    pub tallies: u64,
}

crate::versioned_v1!(NodeDay, "node day rollup");

/// A bucket's day: what it stored and moved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketDay {
    /// Bytes by action.
    pub bandwidth: Bandwidth,
    /// Orders counted.
    pub orders: u64,
    /// Byte-hours stored (from the tallies).
    pub byte_hours: f64,
    /// Segment-hours stored.
    pub segment_hours: f64,
    /// Tallies counted.
    pub tallies: u64,
    /// Unix time (s) of the newest tally counted.
    pub last_at: u64,
    /// Bytes at that tally.
    pub bytes: u64,
    /// Segments at that tally.
    pub segments: u64,
    /// Objects at that tally.
    pub objects: u64,
}

crate::versioned_v1!(BucketDay, "bucket day rollup");

/// A project's month: settled bandwidth and payments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectMonth {
    /// Bytes by action.
    pub bandwidth: Bandwidth,
    /// Paid through channels.
    pub paid: u64,
    /// Payments counted.
    pub payments: u64,
}

crate::versioned_v1!(ProjectMonth, "project month rollup");

/// What a project may use; `None`: no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes stored (encrypted, as tallied).
    pub storage: Option<u64>,
    /// Bytes downloaded from nodes per calendar month (UTC).
    pub egress: Option<u64>,
    /// Segments stored.
    pub segments: Option<u64>,
}

/// A project's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    /// Its limits.
    pub limits: Limits,
    /// Unix time (s) of the last change.
    pub updated: u64,
}

crate::versioned_v1!(ProjectRecord, "project record");

/// A segment committed since the last tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// Its encrypted bytes.
    pub bytes: u64,
}

crate::versioned_v1!(Added, "added segment record");

/// A rollup a fold adds to: its record type and how two add up.
#[derive(Clone, Debug)]
enum Delta {
    Hour(HourRollup),
    NodeDay(NodeDay),
    BucketDay(BucketDay),
    Month(ProjectMonth),
}

impl Delta {
    fn merge(&mut self, o: &Delta) {
        match (self, o) {
            (Delta::Hour(a), Delta::Hour(b)) => merge_hour(a, b),
            (Delta::NodeDay(a), Delta::NodeDay(b)) => merge_node_day(a, b),
            (Delta::BucketDay(a), Delta::BucketDay(b)) => merge_bucket_day(a, b),
            (Delta::Month(a), Delta::Month(b)) => merge_month(a, b),
            // Keys name their record type, so one key never gets two kinds.
            _ => unreachable!("two kinds of rollup under one key"),
        }
    }

    /// The record at `key` after this delta, from its current value.
    fn apply(&self, key: &[u8], current: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        fn add<T: Versioned + Default>(
            key: &[u8],
            cur: Option<&[u8]>,
            f: impl FnOnce(&mut T),
        ) -> Result<Vec<u8>, Error> {
            let mut t = match cur {
                Some(v) => decode::<T>(key, v)?,
                None => T::default(),
            };
            f(&mut t);
            Ok(encode(&t))
        }
        match self {
            Delta::Hour(d) => add(key, current, |t: &mut HourRollup| merge_hour(t, d)),
            Delta::NodeDay(d) => add(key, current, |t: &mut NodeDay| merge_node_day(t, d)),
            Delta::BucketDay(d) => add(key, current, |t: &mut BucketDay| merge_bucket_day(t, d)),
            Delta::Month(d) => add(key, current, |t: &mut ProjectMonth| merge_month(t, d)),
        }
    }
}

fn merge_hour(a: &mut HourRollup, b: &HourRollup) {
    a.bandwidth.merge(&b.bandwidth);
    a.orders += b.orders;
}

fn merge_node_day(a: &mut NodeDay, b: &NodeDay) {
    a.bandwidth.merge(&b.bandwidth);
    a.orders += b.orders;
    a.byte_hours += b.byte_hours;
    a.tallies += b.tallies;
}

fn merge_bucket_day(a: &mut BucketDay, b: &BucketDay) {
    a.bandwidth.merge(&b.bandwidth);
    a.orders += b.orders;
    a.byte_hours += b.byte_hours;
    a.segment_hours += b.segment_hours;
    a.tallies += b.tallies;
    if b.tallies > 0 && b.last_at >= a.last_at {
        a.last_at = b.last_at;
        a.bytes = b.bytes;
        a.segments = b.segments;
        a.objects = b.objects;
    }
}

/// Adds bucket `b`'s day to `sum`, the same day of other buckets: bandwidth, hours
/// and sizes all add up.
fn side_by_side(sum: &mut BucketDay, b: &BucketDay) {
    sum.bandwidth.merge(&b.bandwidth);
    sum.orders += b.orders;
    sum.byte_hours += b.byte_hours;
    sum.segment_hours += b.segment_hours;
    sum.tallies = sum.tallies.max(b.tallies);
    sum.last_at = sum.last_at.max(b.last_at);
    sum.bytes += b.bytes;
    sum.segments += b.segments;
    sum.objects += b.objects;
}

fn merge_month(a: &mut ProjectMonth, b: &ProjectMonth) {
    a.bandwidth.merge(&b.bandwidth);
    a.paid = a.paid.saturating_add(b.paid);
    a.payments += b.payments;
}

/// Rollup deltas by key.
type Deltas = BTreeMap<String, Delta>;

fn push(d: &mut Deltas, key: String, delta: Delta) {
    match d.get_mut(&key) {
        Some(cur) => cur.merge(&delta),
        None => {
            d.insert(key, delta);
        }
    }
}

/// The start (unix s) of the hour holding `t`.
pub fn hour_of(t: u64) -> u64 {
    t - t % 3600
}

/// The start (unix s) of the UTC day holding `t`.
pub fn day_start(t: u64) -> u64 {
    t - t % 86_400
}

fn date(t: u64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .unwrap_or_default()
        .date_naive()
}

/// The UTC day holding `t`, `YYYY-MM-DD`.
pub fn day_of(t: u64) -> String {
    date(t).format("%Y-%m-%d").to_string()
}

/// The UTC month holding `t`, `YYYY-MM`.
pub fn month_of(t: u64) -> String {
    date(t).format("%Y-%m").to_string()
}

/// The first and the past-the-last second of month `YYYY-MM` (UTC).
pub fn month_bounds(month: &str) -> Result<(u64, u64), Error> {
    let bad = || Error::Invalid(format!("period {month:?}: a month is YYYY-MM"));
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if month.len() != 7 || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    let next = if m == 12 {
        chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
    }
    .ok_or_else(bad)?;
    let at = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() as u64;
    Ok((at(first), at(next)))
}

/// The rollups a settled order adds to: its node's hour, its bucket's hour and its
/// project's month.
fn order_deltas(o: &SettledOrder, d: &mut Deltas) -> Result<(), Error> {
    let mut bw = Bandwidth::default();
    bw.add(o.action, o.amount);
    let hour = HourRollup {
        bandwidth: bw,
        orders: 1,
    };
    push(
        d,
        keys::hourly_node(hour_of(o.at), &o.node),
        Delta::Hour(hour.clone()),
    );
    if !o.project.is_empty() {
        let (p, b) = (Project::new(&o.project)?, Bucket::new(&o.bucket)?);
        push(
            d,
            keys::hourly_bucket(hour_of(o.at), &p, &b),
            Delta::Hour(hour),
        );
        let month = ProjectMonth {
            bandwidth: bw,
            ..Default::default()
        };
        push(
            d,
            keys::project_month(&p, &month_of(o.at)),
            Delta::Month(month),
        );
    }
    Ok(())
}

/// The rollup a payment adds to: its project's month.
fn payment_deltas(p: &PaymentRecord, d: &mut Deltas) -> Result<(), Error> {
    let month = ProjectMonth {
        paid: p.amount,
        payments: 1,
        ..Default::default()
    };
    let project = Project::new(&p.project)?;
    push(
        d,
        keys::project_month(&project, &month_of(p.at)),
        Delta::Month(month),
    );
    Ok(())
}

/// The day a node's hourly rollup at `key` adds to.
fn node_hour_deltas(key: &[u8], h: &HourRollup, d: &mut Deltas) -> Result<(), Error> {
    let (hour, node) = keys::parse_node_after(key, keys::HOURLY_NODES)?;
    let day = day_of(parse_time(&hour, key)?);
    let nd = NodeDay {
        bandwidth: h.bandwidth,
        orders: h.orders,
        ..Default::default()
    };
    push(d, keys::daily_node(&day, &node), Delta::NodeDay(nd));
    Ok(())
}

/// The day a bucket's hourly rollup at `key` adds to.
fn bucket_hour_deltas(key: &[u8], h: &HourRollup, d: &mut Deltas) -> Result<(), Error> {
    let (hour, p, b) = keys::parse_bucket_after(key, keys::HOURLY_BUCKETS)?;
    let day = day_of(parse_time(&hour, key)?);
    let bd = BucketDay {
        bandwidth: h.bandwidth,
        orders: h.orders,
        ..Default::default()
    };
    push(d, keys::daily_bucket(&day, &p, &b), Delta::BucketDay(bd));
    Ok(())
}

/// The day a node tally adds to (all of its interval counts on the day it was
/// taken).
fn node_tally_deltas(t: &NodeTally, d: &mut Deltas) {
    let nd = NodeDay {
        byte_hours: t.byte_hours,
        tallies: 1,
        ..Default::default()
    };
    push(
        d,
        keys::daily_node(&day_of(t.at), &t.node),
        Delta::NodeDay(nd),
    );
}

/// The day a bucket tally adds to.
fn bucket_tally_deltas(t: &BucketTally, d: &mut Deltas) -> Result<(), Error> {
    let hours = t.interval_s as f64 / 3600.0;
    let bd = BucketDay {
        byte_hours: t.bytes as f64 * hours,
        segment_hours: t.segments as f64 * hours,
        tallies: 1,
        last_at: t.at,
        bytes: t.bytes,
        segments: t.segments,
        objects: t.objects,
        ..Default::default()
    };
    let (p, b) = (Project::new(&t.project)?, Bucket::new(&t.bucket)?);
    push(
        d,
        keys::daily_bucket(&day_of(t.at), &p, &b),
        Delta::BucketDay(bd),
    );
    Ok(())
}

fn parse_time(field: &str, key: &[u8]) -> Result<u64, Error> {
    field.parse().map_err(|_| {
        Error::Internal(format!(
            "malformed time in key {:?}",
            String::from_utf8_lossy(key)
        ))
    })
}

/// How a fold's sources become deltas.
type ToDeltas = fn(&KeyValue, &mut Deltas) -> Result<(), Error>;

/// The most operations of one fold transaction (below etcd's default of 128).
const FOLD_OPS: usize = 120;
/// Sources read per fold.
const FOLD_PAGE: i64 = 40;
/// Folds in a row that may lose a race on the same page (no one folding it) before
/// giving up for this round.
const FOLD_CONFLICTS: usize = 64;

/// What a round of rolling up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rolled {
    /// Sources folded (and deleted).
    pub folded: usize,
    /// Folds that lost a race to another process and were read again.
    pub conflicts: usize,
}

/// A month's usage, from every stage its units are at.
#[derive(Clone, Debug, Default)]
pub struct PeriodUsage {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Each node's storage and bandwidth.
    pub nodes: BTreeMap<NodeId, NodeDay>,
    /// Each bucket's, by (project, bucket).
    pub buckets: BTreeMap<(String, String), BucketDay>,
    /// Each project's payments and settled bandwidth.
    pub projects: BTreeMap<String, ProjectMonth>,
}

/// Accounting over the store.
#[derive(Clone)]
pub struct Accounting {
    kv: Arc<dyn Kv>,
}

impl Accounting {
    /// Accounting in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Accounting {
        Accounting { kv }
    }

    /// Folds every settled order and payment waiting into the hourly and monthly
    /// rollups.
    pub async fn roll_orders(&self) -> Result<Rolled, Error> {
        let mut r = self
            .drain(keys::ACCOUNTING_ORDERS, None, |kv, d| {
                order_deltas(&decode(&kv.key, &kv.value)?, d)
            })
            .await?;
        let p = self
            .drain(keys::ACCOUNTING_PAYMENTS, None, |kv, d| {
                payment_deltas(&decode(&kv.key, &kv.value)?, d)
            })
            .await?;
        r.folded += p.folded;
        r.conflicts += p.conflicts;
        Ok(r)
    }

    /// Folds the hourly rollups and tallies of every day over at `now` into daily
    /// rollups (the newest tally stays for the storage limits).
    pub async fn roll_days(&self, now: u64) -> Result<Rolled, Error> {
        let today = day_start(now);
        let last: Option<LastTally> = crate::read_one(&*self.kv, keys::TALLY_LAST).await?;
        let tallies_end = last.map_or(today, |l| l.at.min(today));
        let mut total = Rolled::default();
        let stages: [(&str, u64, ToDeltas); 4] = [
            (keys::HOURLY_NODES, today, |kv, d| {
                node_hour_deltas(&kv.key, &decode(&kv.key, &kv.value)?, d)
            }),
            (keys::HOURLY_BUCKETS, today, |kv, d| {
                bucket_hour_deltas(&kv.key, &decode(&kv.key, &kv.value)?, d)
            }),
            (keys::TALLY_NODES, tallies_end, |kv, d| {
                node_tally_deltas(&decode(&kv.key, &kv.value)?, d);
                Ok(())
            }),
            (keys::TALLY_BUCKETS, tallies_end, |kv, d| {
                bucket_tally_deltas(&decode(&kv.key, &kv.value)?, d)
            }),
        ];
        for (prefix, end, to) in stages {
            let r = self
                .drain(
                    prefix,
                    Some(keys::at_or_after(prefix, end).into_bytes()),
                    to,
                )
                .await?;
            total.folded += r.folded;
            total.conflicts += r.conflicts;
        }
        Ok(total)
    }

    /// Folds the sources under `prefix` (up to `end`) into their rollups, deleting
    /// them, page by page; each page is one transaction that commits only if nothing
    /// it read changed.
    async fn drain(
        &self,
        prefix: &str,
        end: Option<Vec<u8>>,
        to: ToDeltas,
    ) -> Result<Rolled, Error> {
        let end = end.unwrap_or_else(|| orbit_kv::prefix_end(prefix.as_bytes()));
        let mut done = Rolled::default();
        let mut lost = 0;
        let mut first: Option<Vec<u8>> = None;
        loop {
            let mut req = RangeRequest::key(prefix);
            req.range_end = end.clone();
            req.limit = FOLD_PAGE;
            let page = self.kv.range(req).await?.kvs;
            if page.is_empty() {
                return Ok(done);
            }
            // A page that starts elsewhere than the last one means another process
            // folded what this one lost: progress, so no reason to give up.
            if first.as_deref() != Some(page[0].key.as_slice()) {
                lost = 0;
                first = Some(page[0].key.clone());
            }
            // As many sources as fit one transaction with their rollups.
            let (mut sources, mut deltas) = (Vec::new(), Deltas::new());
            for kv in &page {
                let mut mine = Deltas::new();
                to(kv, &mut mine)?;
                let new = mine.keys().filter(|k| !deltas.contains_key(*k)).count();
                if !sources.is_empty() && sources.len() + 1 + deltas.len() + new > FOLD_OPS {
                    break;
                }
                sources.push(kv);
                for (k, v) in mine {
                    push(&mut deltas, k, v);
                }
            }
            if self.fold(&sources, &deltas).await? {
                done.folded += sources.len();
                lost = 0;
            } else {
                done.conflicts += 1;
                lost += 1;
                if lost >= FOLD_CONFLICTS {
                    return Err(Error::Unavailable(format!(
                        "accounting: {lost} folds in a row lost a race under {prefix}"
                    )));
                }
                // Out of step with whoever won, so the next try is not the same race.
                let pause = rand::random::<u64>() % (1 + 2 * lost as u64);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
        }
    }

    /// One fold: the rollups `deltas` name, as read now, plus the deltas, written
    /// with the `sources` deleted — if neither changed since read.
    async fn fold(&self, sources: &[&KeyValue], deltas: &Deltas) -> Result<bool, Error> {
        let read = TxnRequest {
            compare: Vec::new(),
            success: deltas
                .keys()
                .map(|k| TxnOp::Range(RangeRequest::key(k.clone())))
                .collect(),
            failure: Vec::new(),
        };
        let current = self.kv.txn(read).await?.responses;
        let mut compare = Vec::with_capacity(sources.len() + deltas.len());
        let mut success = Vec::with_capacity(sources.len() + deltas.len());
        for s in sources {
            compare.push(Compare::new(
                s.key.clone(),
                CompareOp::Equal,
                CompareTarget::Mod(s.mod_revision),
            ));
            success.push(TxnOp::Delete(DeleteRequest::key(s.key.clone())));
        }
        for ((key, delta), r) in deltas.iter().zip(current) {
            let TxnOpResponse::Range(r) = r else {
                return Err(Error::Internal(
                    "a read transaction answered a write".into(),
                ));
            };
            let cur = r.kvs.first();
            // Absent reads as revision 0, so a rollup created meanwhile is a conflict.
            compare.push(Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::Mod(cur.map_or(0, |kv| kv.mod_revision)),
            ));
            let value = delta.apply(key.as_bytes(), cur.map(|kv| kv.value.as_slice()))?;
            success.push(TxnOp::Put(PutRequest::new(key.clone(), value)));
        }
        let txn = TxnRequest {
            compare,
            success,
            failure: Vec::new(),
        };
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// Month `month`'s usage (`YYYY-MM`), summing the daily rollups with whatever
    /// has not been folded into them yet, so it is exact at any time.
    pub async fn period(&self, month: &str) -> Result<PeriodUsage, Error> {
        let (from, to) = month_bounds(month)?;
        let mut d = Deltas::new();
        let scan = |prefix: &str, a: u64, b: u64| {
            let (a, b) = (keys::at_or_after(prefix, a), keys::at_or_after(prefix, b));
            orbit_kv::Scan::new(&*self.kv, a.into_bytes(), b.into_bytes(), 1000).collect()
        };
        // Pending orders and payments (by their time, which the key does not hold).
        for kv in orbit_kv::Scan::prefix(&*self.kv, keys::ACCOUNTING_ORDERS, 1000)
            .collect()
            .await?
        {
            let o: SettledOrder = decode(&kv.key, &kv.value)?;
            if (from..to).contains(&o.at) {
                order_deltas(&o, &mut d)?;
            }
        }
        for kv in orbit_kv::Scan::prefix(&*self.kv, keys::ACCOUNTING_PAYMENTS, 1000)
            .collect()
            .await?
        {
            let p: PaymentRecord = decode(&kv.key, &kv.value)?;
            if (from..to).contains(&p.at) {
                payment_deltas(&p, &mut d)?;
            }
        }
        // Hourly rollups: those just made from pending orders, and the stored ones.
        let mut hourly = Deltas::new();
        for (k, v) in std::mem::take(&mut d) {
            if k.starts_with(keys::HOURLY_NODES) || k.starts_with(keys::HOURLY_BUCKETS) {
                hourly.insert(k, v);
            } else {
                d.insert(k, v);
            }
        }
        for prefix in [keys::HOURLY_NODES, keys::HOURLY_BUCKETS] {
            for kv in scan(prefix, from, to).await? {
                let h: HourRollup = decode(&kv.key, &kv.value)?;
                push(
                    &mut hourly,
                    String::from_utf8_lossy(&kv.key).into(),
                    Delta::Hour(h),
                );
            }
        }
        for (k, v) in &hourly {
            let Delta::Hour(h) = v else { continue };
            if k.starts_with(keys::HOURLY_NODES) {
                node_hour_deltas(k.as_bytes(), h, &mut d)?;
            } else {
                bucket_hour_deltas(k.as_bytes(), h, &mut d)?;
            }
        }
        for kv in scan(keys::TALLY_NODES, from, to).await? {
            node_tally_deltas(&decode(&kv.key, &kv.value)?, &mut d);
        }
        for kv in scan(keys::TALLY_BUCKETS, from, to).await? {
            bucket_tally_deltas(&decode(&kv.key, &kv.value)?, &mut d)?;
        }
        // The days already rolled up, and the months.
        let days = |prefix: &str| {
            let p = keys::days_of(prefix, month);
            orbit_kv::Scan::prefix(&*self.kv, &p, 1000).collect()
        };
        for kv in days(keys::DAILY_NODES).await? {
            let nd: NodeDay = decode(&kv.key, &kv.value)?;
            push(
                &mut d,
                String::from_utf8_lossy(&kv.key).into(),
                Delta::NodeDay(nd),
            );
        }
        for kv in days(keys::DAILY_BUCKETS).await? {
            let bd: BucketDay = decode(&kv.key, &kv.value)?;
            push(
                &mut d,
                String::from_utf8_lossy(&kv.key).into(),
                Delta::BucketDay(bd),
            );
        }
        for kv in orbit_kv::Scan::prefix(&*self.kv, keys::PROJECT_MONTHS, 1000)
            .collect()
            .await?
        {
            if keys::parse_project_month(&kv.key)?.1 == month {
                let m: ProjectMonth = decode(&kv.key, &kv.value)?;
                push(
                    &mut d,
                    String::from_utf8_lossy(&kv.key).into(),
                    Delta::Month(m),
                );
            }
        }
        let mut out = PeriodUsage {
            month: month.to_string(),
            ..Default::default()
        };
        for (k, v) in d {
            match v {
                Delta::NodeDay(nd) => {
                    let (_, node) = keys::parse_node_after(k.as_bytes(), keys::DAILY_NODES)?;
                    merge_node_day(out.nodes.entry(node).or_default(), &nd);
                }
                Delta::BucketDay(bd) => {
                    let (_, p, b) = keys::parse_bucket_after(k.as_bytes(), keys::DAILY_BUCKETS)?;
                    let e = out
                        .buckets
                        .entry((p.as_str().to_string(), b.as_str().to_string()))
                        .or_default();
                    merge_bucket_day(e, &bd);
                }
                Delta::Month(m) => {
                    let (p, _) = keys::parse_project_month(k.as_bytes())?;
                    let e = out.projects.entry(p.as_str().to_string()).or_default();
                    merge_month(e, &m);
                }
                Delta::Hour(_) => {}
            }
        }
        Ok(out)
    }
}

/// The records settlement writes beside a settled serial: the order for
/// accounting.
pub fn settled_order_op(serial: &[u8; 16], o: &SettledOrder) -> TxnOp {
    TxnOp::Put(PutRequest::new(keys::accounting_order(serial), encode(o)))
}

/// The record a paid request writes in the payment's transaction.
pub fn payment_op(p: &PaymentRecord) -> TxnOp {
    TxnOp::Put(PutRequest::new(
        keys::accounting_payment(p.channel, p.nonce, p.authorized),
        encode(p),
    ))
}

/// Projects' limits and current usage.
#[derive(Clone)]
pub struct Usage {
    kv: Arc<dyn Kv>,
}

/// A project's storage as the API checks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Bytes.
    pub bytes: u64,
    /// Segments.
    pub segments: u64,
}

impl Usage {
    /// Usage in `kv`.
    pub fn new(kv: Arc<dyn Kv>) -> Usage {
        Usage { kv }
    }

    /// A project's settings (the defaults, no limits, when it has none).
    pub async fn project(&self, project: &str) -> Result<ProjectRecord, Error> {
        let p = Project::new(project)?;
        Ok(crate::read_one(&*self.kv, keys::project(&p))
            .await?
            .unwrap_or_default())
    }

    /// Sets a project's limits.
    pub async fn set_limits(&self, project: &str, limits: Limits, now: u64) -> Result<(), Error> {
        let p = Project::new(project)?;
        let rec = ProjectRecord {
            limits,
            updated: now,
        };
        self.kv
            .put(PutRequest::new(keys::project(&p), encode(&rec)))
            .await?;
        Ok(())
    }

    /// The op that counts a committed segment towards its project's storage until
    /// the next tally counts it.
    pub fn added_op(project: &Project, stream: &keys::StreamId, index: u32, bytes: u64) -> TxnOp {
        TxnOp::Put(PutRequest::new(
            keys::usage_added(project, stream, index),
            encode(&Added { bytes }),
        ))
    }

    /// A project's storage now: its buckets at the last tally, plus the segments
    /// committed after that tally's pass (deletions count from the next tally).
    pub async fn stored(&self, project: &str) -> Result<Stored, Error> {
        let p = Project::new(project)?;
        let last: Option<LastTally> = crate::read_one(&*self.kv, keys::TALLY_LAST).await?;
        let mut s = Stored::default();
        let pass = match last {
            Some(l) => {
                let at = keys::tally_buckets_of(l.at, &p);
                let tallies: Vec<BucketTally> = crate::read_prefix(&*self.kv, &at).await?;
                for t in tallies {
                    s.bytes = s.bytes.saturating_add(t.bytes);
                    s.segments += t.segments;
                }
                l.pass
            }
            None => 0,
        };
        for kv in orbit_kv::Scan::prefix(&*self.kv, &keys::usage_added_of(&p), 1000)
            .collect()
            .await?
        {
            if kv.mod_revision > pass {
                let a: Added = decode(&kv.key, &kv.value)?;
                s.bytes = s.bytes.saturating_add(a.bytes);
                s.segments += 1;
            }
        }
        Ok(s)
    }

    /// Deletes the added-segment records a tally of the pass at revision `pass` has
    /// counted.
    pub async fn prune_added(&self, pass: i64) -> Result<usize, Error> {
        let mut ops = Vec::new();
        let mut scan = orbit_kv::Scan::prefix(&*self.kv, keys::USAGE_ADDED, 1000);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                if kv.mod_revision <= pass {
                    ops.push(kv.key);
                }
            }
        }
        let n = ops.len();
        for batch in ops.chunks(100) {
            // Each only if not rewritten since the pass (a retried commit).
            let txn = TxnRequest {
                compare: batch
                    .iter()
                    .map(|k| Compare::new(k.clone(), CompareOp::Less, CompareTarget::Mod(pass + 1)))
                    .collect(),
                success: batch
                    .iter()
                    .map(|k| TxnOp::Delete(DeleteRequest::key(k.clone())))
                    .collect(),
                failure: Vec::new(),
            };
            self.kv.txn(txn).await?;
        }
        Ok(n)
    }

    /// A project's month.
    pub async fn month(&self, project: &str, month: &str) -> Result<ProjectMonth, Error> {
        let p = Project::new(project)?;
        Ok(crate::read_one(&*self.kv, keys::project_month(&p, month))
            .await?
            .unwrap_or_default())
    }

    /// Refuses an upload to a project at or over its storage or segment limit.
    pub async fn check_upload(&self, project: &str) -> Result<(), Error> {
        let l = self.project(project).await?.limits;
        if l.storage.is_none() && l.segments.is_none() {
            return Ok(());
        }
        let s = self.stored(project).await?;
        if let Some(max) = l.storage.filter(|&m| s.bytes >= m) {
            return Err(Error::LimitExceeded(format!(
                "project {project} has reached its storage limit: {} of {max} bytes stored; delete data or ask the satellite's operator for a higher limit",
                s.bytes
            )));
        }
        if let Some(max) = l.segments.filter(|&m| s.segments >= m) {
            return Err(Error::LimitExceeded(format!(
                "project {project} has reached its segment limit: {} of {max} segments stored; delete data or ask the satellite's operator for a higher limit",
                s.segments
            )));
        }
        Ok(())
    }

    /// Refuses a download for a project at or over this month's egress limit.
    pub async fn check_download(&self, project: &str, now: u64) -> Result<(), Error> {
        let Some(max) = self.project(project).await?.limits.egress else {
            return Ok(());
        };
        let month = month_of(now);
        let used = self.month(project, &month).await?.bandwidth.get;
        if used >= max {
            return Err(Error::LimitExceeded(format!(
                "project {project} has reached its egress limit for {month}: {used} of {max} bytes downloaded; it resets next month, or ask the satellite's operator for a higher limit"
            )));
        }
        Ok(())
    }
}

/// What storage nodes are paid, in the escrow's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rates {
    /// Per TB-month stored (10¹² bytes for 720 hours).
    pub storage_tb_month: u64,
    /// Per TB downloaded by uplinks.
    pub egress_tb: u64,
    /// Per TB read for repair.
    pub repair_egress_tb: u64,
    /// Per TB read for audits.
    pub audit_egress_tb: u64,
}

/// What projects are charged, in the escrow's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Per TB-month stored.
    pub storage_tb_month: u64,
    /// Per TB downloaded.
    pub egress_tb: u64,
    /// Per segment-month stored.
    pub segment_month: u64,
}

/// The defaults are in millionths of the escrow's unit: with a unit of one dollar,
/// Storj's published figures ($1.50/TB-month stored; $2/TB of egress, repair and
/// audit egress).
impl Default for Rates {
    fn default() -> Self {
        Rates {
            storage_tb_month: 1_500_000,
            egress_tb: 2_000_000,
            repair_egress_tb: 2_000_000,
            audit_egress_tb: 2_000_000,
        }
    }
}

/// In millionths of the escrow's unit, like [`Rates`]: Storj's $4/TB-month stored
/// and $7/TB of egress; segment fees are off by default.
impl Default for Prices {
    fn default() -> Self {
        Prices {
            storage_tb_month: 4_000_000,
            egress_tb: 7_000_000,
            segment_month: 0,
        }
    }
}

const TB: f64 = 1e12;
const MONTH_HOURS: f64 = 720.0;

fn per_tb(bytes: u64, rate: u64) -> u64 {
    ((bytes as u128 * rate as u128) / 1_000_000_000_000) as u64
}

fn per_tb_month(byte_hours: f64, rate: u64) -> u64 {
    (byte_hours * rate as f64 / (TB * MONTH_HOURS)) as u64
}

fn as_text<S: serde::Serializer>(n: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// A storage node's pay for a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payout {
    /// The node (as its id's text in reports).
    #[serde(serialize_with = "as_text")]
    pub node: NodeId,
    /// Byte-hours stored.
    pub byte_hours: f64,
    /// Bytes moved, by action.
    pub bandwidth: Bandwidth,
    /// For storage.
    pub storage: u64,
    /// For egress.
    pub egress: u64,
    /// For repair egress.
    pub repair: u64,
    /// For audit egress.
    pub audit: u64,
    /// All of it.
    pub total: u64,
}

/// A project's invoice for a period, and what it paid through channels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Invoice {
    /// The project.
    pub project: String,
    /// Byte-hours stored.
    pub byte_hours: f64,
    /// Segment-hours stored.
    pub segment_hours: f64,
    /// Bytes moved, by action.
    pub bandwidth: Bandwidth,
    /// For storage.
    pub storage: u64,
    /// For egress.
    pub egress: u64,
    /// For segments.
    pub segments: u64,
    /// All of it.
    pub total: u64,
    /// Paid through payment channels in the period.
    pub paid: u64,
    /// Payments counted.
    pub payments: u64,
    /// Still owed (negative: paid ahead).
    pub due: i128,
}

impl Invoice {
    /// `project`'s invoice for what it stored and moved (`d`) and paid (`m`).
    pub fn new(project: &str, d: &BucketDay, m: &ProjectMonth, prices: &Prices) -> Invoice {
        let storage = per_tb_month(d.byte_hours, prices.storage_tb_month);
        let egress = per_tb(d.bandwidth.get, prices.egress_tb);
        let segments = (d.segment_hours * prices.segment_month as f64 / MONTH_HOURS) as u64;
        let total = storage + egress + segments;
        Invoice {
            project: project.to_string(),
            byte_hours: d.byte_hours,
            segment_hours: d.segment_hours,
            bandwidth: d.bandwidth,
            storage,
            egress,
            segments,
            total,
            paid: m.paid,
            payments: m.payments,
            due: total as i128 - m.paid as i128,
        }
    }
}

/// One project's month, day by day, as the accounting process has rolled it up.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProjectPeriod {
    /// `YYYY-MM`.
    pub month: String,
    /// Each rolled-up day (`YYYY-MM-DD`) with its buckets summed: bandwidth and
    /// byte-hours added, bytes, segments and objects as of the day's last tally.
    pub days: Vec<(String, BucketDay)>,
    /// Today, when the month holds it: not rolled up until it is over, so the last
    /// entry of `days` is only so far — its hourly bandwidth and the last tally's
    /// sizes; its byte-hours count once the day is folded.
    pub partial: Option<String>,
    /// The month's totals.
    pub totals: BucketDay,
    /// Its settled bandwidth and payments.
    pub settled: ProjectMonth,
}

impl Accounting {
    /// `p`'s day starting at `today`, so far at `now`: its hourly rollups (one read
    /// per hour) with the sizes of the last tally; byte-hours stay for the fold.
    async fn today_so_far(&self, p: &Project, today: u64, now: u64) -> Result<BucketDay, Error> {
        let mut deltas = Deltas::new();
        let mut hour = today;
        while hour <= now {
            let got = self
                .kv
                .range(RangeRequest::prefix(keys::hourly_buckets_of(hour, p)))
                .await?;
            for kv in &got.kvs {
                bucket_hour_deltas(&kv.key, &decode(&kv.key, &kv.value)?, &mut deltas)?;
            }
            hour += 3600;
        }
        let last: Option<crate::tally::LastTally> =
            crate::read_one(&*self.kv, keys::TALLY_LAST).await?;
        if let Some(last) = last.filter(|l| l.at >= today) {
            let got = self
                .kv
                .range(RangeRequest::prefix(keys::tally_buckets_of(last.at, p)))
                .await?;
            for kv in &got.kvs {
                bucket_tally_deltas(&decode(&kv.key, &kv.value)?, &mut deltas)?;
            }
        }
        let mut sum = BucketDay::default();
        for d in deltas.values() {
            if let Delta::BucketDay(b) = d {
                side_by_side(&mut sum, b);
            }
        }
        // One tally's interval is not the day's storage: the fold counts it whole.
        sum.byte_hours = 0.0;
        sum.segment_hours = 0.0;
        Ok(sum)
    }

    /// `project`'s month `month`, from the daily and monthly rollups and, for today
    /// (at `now`), its hourly rollups and the last tally: small range reads of this
    /// project's keys only, never a scan of other projects.
    pub async fn project_period(
        &self,
        project: &str,
        month: &str,
        now: u64,
    ) -> Result<ProjectPeriod, Error> {
        let p = Project::new(project)?;
        let (from, to) = month_bounds(month)?;
        let mut out = ProjectPeriod {
            month: month.to_string(),
            ..Default::default()
        };
        let mut t = from;
        while t < to {
            let day = day_of(t);
            let got = self
                .kv
                .range(RangeRequest::prefix(keys::daily_buckets_of(&day, &p)))
                .await?;
            if !got.kvs.is_empty() {
                let mut sum = BucketDay::default();
                for kv in &got.kvs {
                    side_by_side(&mut sum, &decode(&kv.key, &kv.value)?);
                }
                merge_bucket_day(&mut out.totals, &sum);
                out.days.push((day, sum));
            }
            t += 86_400;
        }
        let today = day_start(now);
        if (from..to).contains(&today) {
            let sum = self.today_so_far(&p, today, now).await?;
            if sum.orders > 0 || sum.tallies > 0 {
                let day = day_of(today);
                merge_bucket_day(&mut out.totals, &sum);
                match out.days.last_mut() {
                    // Folded early (a clock behind the folder's): one day still.
                    Some((d, last)) if *d == day => merge_bucket_day(last, &sum),
                    _ => out.days.push((day.clone(), sum)),
                }
                out.partial = Some(day);
            }
        }
        if let Some(m) =
            crate::read_one::<ProjectMonth>(&*self.kv, keys::project_month(&p, month)).await?
        {
            out.settled = m;
        }
        Ok(out)
    }
}

/// A period's payouts and invoices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `YYYY-MM`.
    pub period: String,
    /// Storage nodes' pay.
    pub payouts: Vec<Payout>,
    /// Projects' invoices.
    pub invoices: Vec<Invoice>,
}

impl Report {
    /// Prices `usage`.
    pub fn new(usage: &PeriodUsage, rates: &Rates, prices: &Prices) -> Report {
        let payouts = usage
            .nodes
            .iter()
            .map(|(node, d)| {
                let storage = per_tb_month(d.byte_hours, rates.storage_tb_month);
                let egress = per_tb(d.bandwidth.get, rates.egress_tb);
                let repair = per_tb(d.bandwidth.get_repair, rates.repair_egress_tb);
                let audit = per_tb(d.bandwidth.get_audit, rates.audit_egress_tb);
                Payout {
                    node: *node,
                    byte_hours: d.byte_hours,
                    bandwidth: d.bandwidth,
                    storage,
                    egress,
                    repair,
                    audit,
                    total: storage + egress + repair + audit,
                }
            })
            .collect();
        let mut per_project: BTreeMap<&str, BucketDay> = BTreeMap::new();
        for ((p, _), d) in &usage.buckets {
            merge_bucket_day(per_project.entry(p).or_default(), d);
        }
        for p in usage.projects.keys() {
            per_project.entry(p).or_default();
        }
        let invoices = per_project
            .into_iter()
            .map(|(p, d)| {
                let m = usage.projects.get(p).cloned().unwrap_or_default();
                Invoice::new(p, &d, &m, prices)
            })
            .collect();
        Report {
            period: usage.month.clone(),
            payouts,
            invoices,
        }
    }

    /// As CSV: one row per payout and per invoice, every column present in each
    /// (names and ids are validated, so no field needs quoting).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "period,kind,id,byte_hours,segment_hours,ingress_bytes,egress_bytes,repair_egress_bytes,audit_egress_bytes,storage,egress,repair,audit,segments,total,paid,due\n",
        );
        for p in &self.payouts {
            let b = &p.bandwidth;
            out += &format!(
                "{},payout,{},{:.3},0,{},{},{},{},{},{},{},{},0,{},0,0\n",
                self.period,
                p.node,
                p.byte_hours,
                b.put + b.put_repair,
                b.get,
                b.get_repair,
                b.get_audit,
                p.storage,
                p.egress,
                p.repair,
                p.audit,
                p.total
            );
        }
        for i in &self.invoices {
            let b = &i.bandwidth;
            out += &format!(
                "{},invoice,{},{:.3},{:.3},{},{},0,0,{},{},0,0,{},{},{},{}\n",
                self.period,
                i.project,
                i.byte_hours,
                i.segment_hours,
                b.put,
                b.get,
                i.storage,
                i.egress,
                i.segments,
                i.total,
                i.paid,
                i.due
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days_are_utc_calendar_ones() {
        assert_eq!(
            month_bounds("2026-12").unwrap(),
            (1_796_083_200, 1_798_761_600)
        );
        assert_eq!(month_of(1_796_083_200), "2026-12");
        assert_eq!(month_of(1_796_083_199), "2026-11");
        assert_eq!(day_of(1_796_083_200 + 86_399), "2026-12-01");
        for bad in ["2026-13", "2026-1", "26-01", "x", "2026-00", "2026/01"] {
            assert!(month_bounds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_report_prices_usage_and_reconciles_payments() {
        let node = NodeId([1; 32]);
        let mut u = PeriodUsage {
            month: "2026-12".into(),
            ..Default::default()
        };
        let mut bw = Bandwidth::default();
        bw.add(Action::Get, 2_000_000_000_000);
        bw.add(Action::GetRepair, 1_000_000_000_000);
        bw.add(Action::GetAudit, 500_000_000_000);
        u.nodes.insert(
            node,
            NodeDay {
                bandwidth: bw,
                byte_hours: 720e12,
                ..Default::default()
            },
        );
        u.buckets.insert(
            ("p1".into(), "bkt".into()),
            BucketDay {
                bandwidth: bw,
                byte_hours: 360e12,
                segment_hours: 7200.0,
                ..Default::default()
            },
        );
        u.projects.insert(
            "p1".into(),
            ProjectMonth {
                paid: 10,
                payments: 2,
                ..Default::default()
            },
        );
        let rates = Rates {
            storage_tb_month: 1500,
            egress_tb: 2000,
            repair_egress_tb: 1000,
            audit_egress_tb: 1000,
        };
        let prices = Prices {
            storage_tb_month: 4000,
            egress_tb: 7000,
            segment_month: 1,
        };
        let r = Report::new(&u, &rates, &prices);
        let p = &r.payouts[0];
        assert_eq!(
            (p.storage, p.egress, p.repair, p.audit),
            (1500, 4000, 1000, 500)
        );
        assert_eq!(p.total, 7000);
        let i = &r.invoices[0];
        assert_eq!((i.storage, i.egress, i.segments), (2000, 14000, 10));
        assert_eq!((i.total, i.paid, i.due), (16010, 10, 16000));
        let csv = r.csv();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.contains(",invoice,p1,"), "{csv}");
    }
}
