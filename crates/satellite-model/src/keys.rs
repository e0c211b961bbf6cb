//! Every key the satellite keeps in the store, built and parsed here and nowhere else.
//!
//! | prefix | key | record |
//! |---|---|---|
//! | `/orbit/sat/buckets/` | `<project>/<bucket>` | [`crate::metainfo::BucketRecord`] |
//! | `/orbit/sat/objects/` | `<project>/<bucket>/<object key>` | [`crate::metainfo::Object`] |
//! | `/orbit/sat/streams/` | `<stream id hex>` | [`crate::metainfo::Stream`] |
//! | `/orbit/sat/segments/` | `<stream id hex>/<index, 10 digits>` | [`crate::metainfo::Segment`] |
//! | `/orbit/sat/nodes/` | `<node id>` | [`crate::nodes::NodeRecord`] |
//! | `/orbit/sat/settled/` | `<serial hex>` | [`crate::orders::Settled`] |
//! | `/orbit/sat/apikeys/` | `<key head hex>` | [`crate::apikeys::KeyRecord`] |
//! | `/orbit/sat/revoked/` | `<tag hex>` | [`crate::apikeys::Revocation`] |
//! | `/orbit/sat/projects/` | `<project>` | [`crate::accounting::ProjectRecord`] |
//! | `/orbit/sat/accounting/…` | see the constants | [`crate::accounting`] |
//! | `/orbit/sat/console/…` | see the constants | [`crate::console`] |
//! | `/orbit/sat/schema` | — | [`crate::schema::Schema`] |
//!
//! Project and bucket names are [`Project`] and [`Bucket`], which only valid names
//! become: neither can hold `/`, so no name reaches into another's key space. An
//! object key is the last component, so it may hold anything up to its length limit.

use crate::Error;
use orbit_identity::{hex_decode, hex_encode, NodeId};

/// Everything the satellite keeps.
pub const ROOT: &str = "/orbit/sat/";
/// Buckets, by project.
pub const BUCKETS: &str = "/orbit/sat/buckets/";
/// Committed objects, by project and bucket.
pub const OBJECTS: &str = "/orbit/sat/objects/";
/// Uploads in progress.
pub const STREAMS: &str = "/orbit/sat/streams/";
/// Segments, by stream.
pub const SEGMENTS: &str = "/orbit/sat/segments/";
/// Storage nodes.
pub const NODES: &str = "/orbit/sat/nodes/";
/// Settled order serials.
pub const SETTLED: &str = "/orbit/sat/settled/";
/// API key secrets, by key head.
pub const APIKEYS: &str = "/orbit/sat/apikeys/";
/// Revoked API key tags.
pub const REVOKED: &str = "/orbit/sat/revoked/";
/// The data model's schema version.
pub const SCHEMA: &str = "/orbit/sat/schema";
/// Console accounts, `<account id>`.
pub const CONSOLE_ACCOUNTS: &str = "/orbit/sat/console/accounts/";
/// Console accounts by email, `<BLAKE3 of the normalized email, hex>`: an email holds
/// any characters, a hash none that reach into another key.
pub const CONSOLE_EMAILS: &str = "/orbit/sat/console/emails/";
/// Console sessions, under their lease: `<account id>/<BLAKE3 of the token, hex>`.
pub const CONSOLE_SESSIONS: &str = "/orbit/sat/console/sessions/";
/// Email confirmation and password reset tokens, under their lease:
/// `<BLAKE3 of the token, hex>`.
pub const CONSOLE_TOKENS: &str = "/orbit/sat/console/tokens/";
/// Failed logins per email, under a lease of the counting window:
/// `<BLAKE3 of the normalized email, hex>`.
pub const CONSOLE_LOGINS: &str = "/orbit/sat/console/logins/";
/// Console projects by owner: `<account id>/<project>`.
pub const CONSOLE_PROJECTS: &str = "/orbit/sat/console/projects/";
/// API keys the console made, by project: `<project>/<key head hex>`.
pub const CONSOLE_KEYS: &str = "/orbit/sat/console/keys/";
/// Repair queue entries, by segment: `<stream hex>/<index>`.
pub const REPAIR_ENTRIES: &str = "/orbit/sat/repair/segments/";
/// Repair queue pointers, least healthy first: `<healthy>/<stream hex>/<index>`.
pub const REPAIR_QUEUE: &str = "/orbit/sat/repair/queue/";
/// Repair claims: the worker repairing a segment, under its lease: `<stream hex>/<index>`.
pub const REPAIR_CLAIMS: &str = "/orbit/sat/repair/claims/";
/// Elected processes' leader keys: the holder's name, under its lease.
pub const LEADERS: &str = "/orbit/sat/leaders/";
/// Segments to audit, sampled by the last complete loop pass: `<stream hex>/<index>`.
pub const AUDIT_QUEUE: &str = "/orbit/sat/audit/queue/";
/// Contained nodes' pending reverifications, one per node: `<node id>`.
pub const AUDIT_REVERIFY: &str = "/orbit/sat/audit/reverify/";
/// Garbage collection: each node's piece count as the last complete pass found it,
/// `<node id>`.
pub const GC_COUNTS: &str = "/orbit/sat/gc/counts/";
/// Garbage collection: each node's newest filter's head, `<node id>`.
pub const GC_LATEST: &str = "/orbit/sat/gc/latest/";
/// Garbage collection: filter bytes in chunks, `<node id>/<pass>/<chunk>`.
pub const GC_FILTERS: &str = "/orbit/sat/gc/filters/";
/// Garbage collection: the newest filter sent to each node, `<node id>`.
pub const GC_SENT: &str = "/orbit/sat/gc/sent/";
/// Tallies: bytes each node stores, per tally, `<at>/<node id>`.
pub const TALLY_NODES: &str = "/orbit/sat/tally/nodes/";
/// Tallies: bytes, segments and objects per bucket, per tally,
/// `<at>/<project>/<bucket>`.
pub const TALLY_BUCKETS: &str = "/orbit/sat/tally/buckets/";
/// Tallies: when the last one was taken.
pub const TALLY_LAST: &str = "/orbit/sat/tally/last";
/// Accounting: settled orders not yet rolled up, `<serial hex>`.
pub const ACCOUNTING_ORDERS: &str = "/orbit/sat/accounting/orders/";
/// Accounting: payments taken through channels not yet rolled up,
/// `<channel>/<nonce>/<authorized>` (each 20 digits: the authorized amount only
/// grows on a nonce, so every payment has its own key).
pub const ACCOUNTING_PAYMENTS: &str = "/orbit/sat/accounting/payments/";
/// Accounting: bandwidth per node and hour, `<hour start>/<node id>`.
pub const HOURLY_NODES: &str = "/orbit/sat/accounting/hourly/nodes/";
/// Accounting: bandwidth per bucket and hour, `<hour start>/<project>/<bucket>`.
pub const HOURLY_BUCKETS: &str = "/orbit/sat/accounting/hourly/buckets/";
/// Accounting: storage and bandwidth per node and day, `<YYYY-MM-DD>/<node id>`.
pub const DAILY_NODES: &str = "/orbit/sat/accounting/daily/nodes/";
/// Accounting: storage and bandwidth per bucket and day,
/// `<YYYY-MM-DD>/<project>/<bucket>`.
pub const DAILY_BUCKETS: &str = "/orbit/sat/accounting/daily/buckets/";
/// Accounting: each project's settled bandwidth and payments per month,
/// `<project>/<YYYY-MM>` (what its egress limit is checked against).
pub const PROJECT_MONTHS: &str = "/orbit/sat/accounting/projects/";
/// Projects' settings (limits), `<project>`.
pub const PROJECTS: &str = "/orbit/sat/projects/";
/// Segments committed since the last tally, `<project>/<stream hex>/<index>`: with
/// the tally, a project's current storage.
pub const USAGE_ADDED: &str = "/orbit/sat/usage/added/";
/// Operators' requests to elected processes for a run now, `<process>`.
pub const REQUESTS: &str = "/orbit/sat/requests/";
/// Audit claims: the worker auditing a segment or reverifying a node, under its
/// lease: `segment/<stream hex>/<index>` or `node/<node id>`.
pub const AUDIT_CLAIMS: &str = "/orbit/sat/audit/claims/";

/// The prefixes that hold versioned records (what a migration walks).
pub const RECORD_PREFIXES: &[&str] = &[
    BUCKETS, OBJECTS, STREAMS, SEGMENTS, NODES, SETTLED, APIKEYS, REVOKED,
];

/// Longest object key, in bytes (as the uplink encodes it).
pub const MAX_OBJECT_KEY: usize = 4096;

/// A stream's id: where an object's segments are.
pub type StreamId = [u8; 16];

/// A valid project name: 1 to 64 of A-Z, a-z, 0-9, '-', '_' and '.', starting with a
/// letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Project(String);

impl Project {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Project, Error> {
        let ok = (1..=64).contains(&name.len())
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
        if ok {
            Ok(Project(name.to_string()))
        } else {
            Err(Error::Invalid(format!(
                "project name {:?}: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting with a letter or digit",
                name.chars().take(80).collect::<String>()
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid bucket name, as S3 allows them: 3 to 63 of a-z, 0-9, '-' and '.'.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(String);

impl Bucket {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Bucket, Error> {
        let ok = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
        if ok {
            Ok(Bucket(name.to_string()))
        } else {
            Err(Error::Invalid(format!(
                "bucket name {:?}: 3 to 63 characters of a-z, 0-9, '-' and '.'",
                name.chars().take(80).collect::<String>()
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks an object key: not empty, at most [`MAX_OBJECT_KEY`] bytes.
pub fn check_object_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::Invalid("empty object key".into()));
    }
    if key.len() > MAX_OBJECT_KEY {
        return Err(Error::Invalid(format!(
            "object key of {} bytes; at most {MAX_OBJECT_KEY}",
            key.len()
        )));
    }
    Ok(())
}

/// A bucket's record.
pub fn bucket(p: &Project, b: &Bucket) -> String {
    format!("{BUCKETS}{}/{}", p.0, b.0)
}

/// Where a project's buckets are.
pub fn buckets_of(p: &Project) -> String {
    format!("{BUCKETS}{}/", p.0)
}

/// Where a bucket's objects are.
pub fn objects_of(p: &Project, b: &Bucket) -> String {
    format!("{OBJECTS}{}/{}/", p.0, b.0)
}

/// A committed object's record.
pub fn object(p: &Project, b: &Bucket, key: &str) -> String {
    format!("{}{key}", objects_of(p, b))
}

/// A pending upload's record.
pub fn stream(id: &StreamId) -> String {
    format!("{STREAMS}{}", hex_encode(id))
}

/// Where a stream's segments are.
pub fn segments_of(id: &StreamId) -> String {
    format!("{SEGMENTS}{}/", hex_encode(id))
}

/// A segment's record (zero-padded so segments list in order).
pub fn segment(id: &StreamId, index: u32) -> String {
    format!("{}{index:010}", segments_of(id))
}

/// The keys of segment range `i` of `n`: segments whose stream id starts in the
/// `i`-th of `n` equal slices of the first two bytes (stream ids are random, so the
/// slices hold about as many segments each). Together the ranges cover every segment
/// exactly once.
pub fn segment_range(i: usize, n: usize) -> (Vec<u8>, Vec<u8>) {
    let n = n.clamp(1, 1 << 16);
    let bound = |j: usize| (j << 16) / n;
    let at = |b: usize| format!("{SEGMENTS}{b:04x}").into_bytes();
    let start = if i == 0 {
        SEGMENTS.as_bytes().to_vec()
    } else {
        at(bound(i))
    };
    let end = if i + 1 >= n {
        orbit_kv::prefix_end(SEGMENTS.as_bytes())
    } else {
        at(bound(i + 1))
    };
    (start, end)
}

/// The repair queue entry of a segment.
pub fn repair_entry(id: &StreamId, index: u32) -> String {
    format!("{REPAIR_ENTRIES}{}/{index:010}", hex_encode(id))
}

/// The queue pointer of a segment with `healthy` healthy pieces.
pub fn repair_pointer(healthy: u32, id: &StreamId, index: u32) -> String {
    format!("{REPAIR_QUEUE}{healthy:05}/{}/{index:010}", hex_encode(id))
}

/// The claim key of a segment being repaired.
pub fn repair_claim(id: &StreamId, index: u32) -> String {
    format!("{REPAIR_CLAIMS}{}/{index:010}", hex_encode(id))
}

/// The entry a queue pointer names.
pub fn parse_repair_pointer(key: &[u8]) -> Result<(StreamId, u32), Error> {
    let (_, seg) = rest(key, REPAIR_QUEUE)?
        .split_once('/')
        .ok_or_else(|| malformed(key))?;
    let (s, i) = seg.split_once('/').ok_or_else(|| malformed(key))?;
    Ok((stream_id(s, key)?, i.parse().map_err(|_| malformed(key))?))
}

/// A segment's audit job.
pub fn audit_job(id: &StreamId, index: u32) -> String {
    format!("{AUDIT_QUEUE}{}/{index:010}", hex_encode(id))
}

/// A contained node's pending reverification.
pub fn audit_reverify(node: &NodeId) -> String {
    format!("{AUDIT_REVERIFY}{node}")
}

/// The claim key of a segment's audit.
pub fn audit_segment_claim(id: &StreamId, index: u32) -> String {
    format!("{AUDIT_CLAIMS}segment/{}/{index:010}", hex_encode(id))
}

/// The claim key of a node's reverification.
pub fn audit_node_claim(node: &NodeId) -> String {
    format!("{AUDIT_CLAIMS}node/{node}")
}

/// A node's piece count for garbage collection.
pub fn gc_count(node: &NodeId) -> String {
    format!("{GC_COUNTS}{node}")
}

/// A node's newest filter's head.
pub fn gc_latest(node: &NodeId) -> String {
    format!("{GC_LATEST}{node}")
}

/// Where a node's filter of the pass at revision `pass` is kept, chunk by chunk.
pub fn gc_filter_prefix(node: &NodeId, pass: i64) -> String {
    format!("{GC_FILTERS}{node}/{pass:020}/")
}

/// Every filter of a node.
pub fn gc_filters_of(node: &NodeId) -> String {
    format!("{GC_FILTERS}{node}/")
}

/// The newest filter sent to a node.
pub fn gc_sent(node: &NodeId) -> String {
    format!("{GC_SENT}{node}")
}

/// A node's tally taken at `at`.
pub fn tally_node(at: u64, node: &NodeId) -> String {
    format!("{TALLY_NODES}{at:020}/{node}")
}

/// A bucket's tally taken at `at`.
pub fn tally_bucket(at: u64, p: &Project, b: &Bucket) -> String {
    format!("{}{}", tally_buckets_of(at, p), b.0)
}

/// The first key under `prefix` of time `t` or later, for the prefixes whose keys
/// start with a 20-digit unix time (tallies, hourly rollups): a range bound.
pub fn at_or_after(prefix: &str, t: u64) -> String {
    format!("{prefix}{t:020}")
}

/// Where a project's bucket tallies taken at `at` are.
pub fn tally_buckets_of(at: u64, p: &Project) -> String {
    format!("{TALLY_BUCKETS}{at:020}/{}/", p.0)
}

/// Where the days of month `month` (`YYYY-MM`) are under `prefix` (a daily prefix).
pub fn days_of(prefix: &str, month: &str) -> String {
    format!("{prefix}{month}-")
}

/// The project and month of a project-month key.
pub fn parse_project_month(key: &[u8]) -> Result<(Project, String), Error> {
    let (p, m) = rest(key, PROJECT_MONTHS)?
        .split_once('/')
        .ok_or_else(|| malformed(key))?;
    Ok((Project::new(p)?, m.to_string()))
}

/// A settled order waiting for its rollup.
pub fn accounting_order(serial: &[u8; 16]) -> String {
    format!("{ACCOUNTING_ORDERS}{}", hex_encode(serial))
}

/// A payment waiting for its rollup.
pub fn accounting_payment(channel: u64, nonce: u64, authorized: u64) -> String {
    format!("{ACCOUNTING_PAYMENTS}{channel:020}/{nonce:020}/{authorized:020}")
}

/// A node's bandwidth in the hour starting at `hour`.
pub fn hourly_node(hour: u64, node: &NodeId) -> String {
    format!("{HOURLY_NODES}{hour:020}/{node}")
}

/// A bucket's bandwidth in the hour starting at `hour`.
pub fn hourly_bucket(hour: u64, p: &Project, b: &Bucket) -> String {
    format!("{HOURLY_BUCKETS}{hour:020}/{}/{}", p.0, b.0)
}

/// Every bucket's hourly rollup of `p` in the hour starting at `hour`.
pub fn hourly_buckets_of(hour: u64, p: &Project) -> String {
    format!("{HOURLY_BUCKETS}{hour:020}/{}/", p.0)
}

/// A node's day (`YYYY-MM-DD`).
pub fn daily_node(day: &str, node: &NodeId) -> String {
    format!("{DAILY_NODES}{day}/{node}")
}

/// A bucket's day (`YYYY-MM-DD`).
pub fn daily_bucket(day: &str, p: &Project, b: &Bucket) -> String {
    format!("{DAILY_BUCKETS}{day}/{}/{}", p.0, b.0)
}

/// Every bucket's day rollup of `p` on `day`.
pub fn daily_buckets_of(day: &str, p: &Project) -> String {
    format!("{DAILY_BUCKETS}{day}/{}/", p.0)
}

/// A project's month (`YYYY-MM`).
pub fn project_month(p: &Project, month: &str) -> String {
    format!("{PROJECT_MONTHS}{}/{month}", p.0)
}

/// A project's settings.
pub fn project(p: &Project) -> String {
    format!("{PROJECTS}{}", p.0)
}

/// Where a project's segments committed since the last tally are.
pub fn usage_added_of(p: &Project) -> String {
    format!("{USAGE_ADDED}{}/", p.0)
}

/// A segment committed since the last tally.
pub fn usage_added(p: &Project, id: &StreamId, index: u32) -> String {
    format!("{}{}/{index:010}", usage_added_of(p), hex_encode(id))
}

/// The project and bucket at the end of a key under `prefix` followed by a
/// fixed-width field: `<prefix><field>/<project>/<bucket>`.
pub fn parse_bucket_after(key: &[u8], prefix: &str) -> Result<(String, Project, Bucket), Error> {
    let mut parts = rest(key, prefix)?.splitn(3, '/');
    let (Some(f), Some(p), Some(b)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(key));
    };
    Ok((f.to_string(), Project::new(p)?, Bucket::new(b)?))
}

/// The leading field and node of a key `<prefix><field>/<node id>`.
pub fn parse_node_after(key: &[u8], prefix: &str) -> Result<(String, NodeId), Error> {
    let (f, n) = rest(key, prefix)?
        .split_once('/')
        .ok_or_else(|| malformed(key))?;
    Ok((f.to_string(), NodeId::parse(n).map_err(|_| malformed(key))?))
}

/// The run request for the elected process `name`.
pub fn request(name: &str) -> String {
    format!("{REQUESTS}{name}")
}

/// The leader key of the elected process `name` (`loop`, ...).
pub fn leader(name: &str) -> String {
    format!("{LEADERS}{name}")
}

/// A node's record.
pub fn node(id: &NodeId) -> String {
    format!("{NODES}{id}")
}

/// A settled serial's record.
pub fn settled(serial: &[u8; 16]) -> String {
    format!("{SETTLED}{}", hex_encode(serial))
}

/// An API key's secret.
pub fn apikey(head: &[u8; 16]) -> String {
    format!("{APIKEYS}{}", hex_encode(head))
}

/// A revoked tag.
pub fn revoked(tag: &[u8; 32]) -> String {
    format!("{REVOKED}{}", hex_encode(tag))
}

fn rest<'a>(key: &'a [u8], prefix: &str) -> Result<&'a str, Error> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(prefix))
        .ok_or_else(|| malformed(key))
}

fn malformed(key: &[u8]) -> Error {
    Error::Internal(format!(
        "malformed key {:?} in the satellite's key space",
        String::from_utf8_lossy(key)
    ))
}

fn stream_id(hex: &str, key: &[u8]) -> Result<StreamId, Error> {
    hex_decode(hex)
        .ok()
        .and_then(|b| StreamId::try_from(b.as_slice()).ok())
        .ok_or_else(|| malformed(key))
}

/// The project and bucket of a bucket key.
pub fn parse_bucket(key: &[u8]) -> Result<(Project, Bucket), Error> {
    let (p, b) = rest(key, BUCKETS)?
        .split_once('/')
        .ok_or_else(|| malformed(key))?;
    Ok((Project::new(p)?, Bucket::new(b)?))
}

/// The project, bucket and object key of an object key.
pub fn parse_object(key: &[u8]) -> Result<(Project, Bucket, String), Error> {
    let mut parts = rest(key, OBJECTS)?.splitn(3, '/');
    let (Some(p), Some(b), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(key));
    };
    Ok((Project::new(p)?, Bucket::new(b)?, k.to_string()))
}

/// The stream of a pending upload's key.
pub fn parse_stream(key: &[u8]) -> Result<StreamId, Error> {
    stream_id(rest(key, STREAMS)?, key)
}

/// The stream and index of a segment key.
pub fn parse_segment(key: &[u8]) -> Result<(StreamId, u32), Error> {
    let (s, i) = rest(key, SEGMENTS)?
        .split_once('/')
        .ok_or_else(|| malformed(key))?;
    let index = i.parse().map_err(|_| malformed(key))?;
    Ok((stream_id(s, key)?, index))
}

/// The node of a node key.
pub fn parse_node(key: &[u8]) -> Result<NodeId, Error> {
    NodeId::parse(rest(key, NODES)?).map_err(|_| malformed(key))
}

/// A console account's record: `id` is hex the model made.
pub fn console_account(id: &str) -> String {
    format!("{CONSOLE_ACCOUNTS}{id}")
}

/// The email index entry of a normalized email.
pub fn console_email(normalized: &str) -> String {
    format!(
        "{CONSOLE_EMAILS}{}",
        blake3::hash(normalized.as_bytes()).to_hex()
    )
}

/// A session of `account` by its token.
pub fn console_session(account: &str, token: &str) -> String {
    format!(
        "{CONSOLE_SESSIONS}{account}/{}",
        blake3::hash(token.as_bytes()).to_hex()
    )
}

/// Every session of `account`.
pub fn console_sessions_of(account: &str) -> String {
    format!("{CONSOLE_SESSIONS}{account}/")
}

/// A confirmation or reset token.
pub fn console_token(token: &str) -> String {
    format!(
        "{CONSOLE_TOKENS}{}",
        blake3::hash(token.as_bytes()).to_hex()
    )
}

/// The failed-login counter of a normalized email.
pub fn console_logins(normalized: &str) -> String {
    format!(
        "{CONSOLE_LOGINS}{}",
        blake3::hash(normalized.as_bytes()).to_hex()
    )
}

/// A console project of `owner`.
pub fn console_project(owner: &str, p: &Project) -> String {
    format!("{CONSOLE_PROJECTS}{owner}/{}", p.as_str())
}

/// Every console project of `owner`.
pub fn console_projects_of(owner: &str) -> String {
    format!("{CONSOLE_PROJECTS}{owner}/")
}

/// A console-made API key of `p`.
pub fn console_key(p: &Project, head: &[u8; 16]) -> String {
    format!("{CONSOLE_KEYS}{}/{}", p.as_str(), hex_encode(head))
}

/// Every console-made API key of `p`.
pub fn console_keys_of(p: &Project) -> String {
    format!("{CONSOLE_KEYS}{}/", p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ranges_cover_every_stream_once() {
        for n in [1, 2, 3, 4, 7, 16] {
            let ranges: Vec<_> = (0..n).map(|i| segment_range(i, n)).collect();
            for w in ranges.windows(2) {
                assert_eq!(w[0].1, w[1].0, "ranges of {n} must abut");
            }
            assert_eq!(ranges[0].0, SEGMENTS.as_bytes());
            assert_eq!(ranges[n - 1].1, orbit_kv::prefix_end(SEGMENTS.as_bytes()));
            for id in [
                [0u8; 16],
                [0x7f; 16],
                [0xff; 16],
                [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ] {
                let key = segment(&id, 3).into_bytes();
                let holding = ranges
                    .iter()
                    .filter(|(a, b)| {
                        a.as_slice() <= key.as_slice() && key.as_slice() < b.as_slice()
                    })
                    .count();
                assert_eq!(holding, 1, "stream {id:?} in {n} ranges");
            }
        }
    }

    #[test]
    fn keys_parse_back_and_hostile_names_never_become_keys() {
        let p = Project::new("acme-1").unwrap();
        let b = Bucket::new("photos").unwrap();
        assert_eq!(
            parse_bucket(bucket(&p, &b).as_bytes()).unwrap(),
            (p.clone(), b.clone())
        );
        let o = object(&p, &b, "a/b/../c");
        assert_eq!(
            parse_object(o.as_bytes()).unwrap(),
            (p.clone(), b.clone(), "a/b/../c".to_string())
        );
        let s = [7u8; 16];
        assert_eq!(parse_stream(stream(&s).as_bytes()).unwrap(), s);
        assert_eq!(parse_segment(segment(&s, 42).as_bytes()).unwrap(), (s, 42));
        assert!(segment(&s, 2) < segment(&s, 10), "segments list in order");
        for bad in ["", "a/xyz", "..", "a\0b", ".x", &"p".repeat(65), "a b"] {
            assert!(Project::new(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "ab", "a/b", "..", "UPPER", &"b".repeat(64), "a\0bc"] {
            assert!(Bucket::new(bad).is_err(), "{bad:?}");
        }
        assert!(check_object_key("").is_err());
        assert!(check_object_key(&"k".repeat(MAX_OBJECT_KEY + 1)).is_err());
        assert!(parse_segment(b"/orbit/sat/segments/zz/1").is_err());
        assert!(parse_bucket(b"/orbit/sat/buckets/a/xyz/bkt1").is_err());
    }
}
