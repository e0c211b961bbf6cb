//! The satellite's table of storage nodes: check-ins, and selecting nodes for new
//! pieces from a cache of the table that a background worker refreshes.

use crate::keys;
use crate::reputation::{AuditOutcome, Reputation, ReputationConfig, ReputationEvent};
use crate::{decode, Error};
use orbit_identity::{NodeId, PublicKey};
use orbit_kv::record::encode;
use orbit_kv::{Kv, PutRequest, RangeRequest, Scan, TxnOp, TxnRequest};
use orbit_protocol::CheckIn;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the satellite knows of a node. Record version 2 adds its reputation (version
/// 1 records read with a new node's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub id: NodeId,
    /// Its key.
    pub key: PublicKey,
    /// Its piecestore URL.
    pub address: String,
    /// Bytes free at its last check-in.
    pub free: u64,
    /// Its version.
    pub version: String,
    /// Unix time (s) of its last check-in.
    pub last_seen: u64,
    /// Never selected again.
    pub disqualified: bool,
    /// Unix time (s) the uptime process last reached it (0: never).
    #[serde(default)]
    pub last_contact: u64,
    /// Unix time (s) the uptime process last failed to reach it (0: never).
    #[serde(default)]
    pub last_contact_failure: u64,
    /// Failed contacts since the last successful one.
    #[serde(default)]
    pub contact_failures: u32,
    /// What audits and contacts say of it.
    #[serde(default)]
    pub reputation: Reputation,
}

impl orbit_kv::record::Versioned for NodeRecord {
    const NAME: &'static str = "node record";
    const VERSION: u32 = 2;
    fn upgrade(version: u32, body: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        (version == 1).then(|| serde_json::from_value(body))
    }
    fn legacy(value: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        crate::legacy_v1(value)
    }
}

impl NodeRecord {
    /// Unix time (s) the satellite last heard from it: its check-in or the uptime
    /// process's contact, whichever is newer.
    pub fn last_heard(&self) -> u64 {
        self.last_seen.max(self.last_contact)
    }

    /// Whether it counts as online at `now` with the online window `window_s`: heard
    /// from within it.
    pub fn online(&self, now: u64, window_s: u64) -> bool {
        now.saturating_sub(self.last_heard()) <= window_s
    }

    /// A node first heard from now.
    pub fn new(id: NodeId, key: PublicKey) -> NodeRecord {
        NodeRecord {
            id,
            key,
            address: String::new(),
            free: 0,
            version: String::new(),
            last_seen: 0,
            disqualified: false,
            last_contact: 0,
            last_contact_failure: 0,
            contact_failures: 0,
            reputation: Reputation::default(),
        }
    }
}

/// Nodes and networks a selection must avoid: a repair's new pieces go neither to
/// the segment's nodes nor to their networks.
#[derive(Clone, Debug, Default)]
pub struct Exclude {
    /// These nodes.
    pub nodes: HashSet<NodeId>,
    /// Nodes in these networks (see [`network_of`]).
    pub networks: HashSet<String>,
}

/// How nodes are chosen.
#[derive(Clone, Debug)]
pub struct SelectionConfig {
    /// A node is online if it checked in within this many seconds.
    pub online_window_s: u64,
    /// At most one node per /24 network (IPv4) or per host name.
    pub distinct_networks: bool,
    /// Check-ins signed further than this from now are refused, seconds.
    pub check_in_skew_s: u64,
    /// Share of each upload's nodes, percent, chosen among nodes still being vetted
    /// (on average: a fraction of a node is rounded up or down at random).
    pub new_node_percent: u32,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            online_window_s: 3600,
            distinct_networks: true,
            check_in_skew_s: 600,
            new_node_percent: 5,
        }
    }
}

/// How many of `n` nodes go to new nodes at `percent`: the exact share on average.
fn new_share(n: usize, percent: u32) -> usize {
    let want = n as f64 * f64::from(percent.min(100)) / 100.0;
    let whole = want.floor();
    whole as usize + usize::from(rand::random::<f64>() < want - whole)
}

/// The node table.
#[derive(Clone)]
pub struct Nodes {
    kv: Arc<dyn Kv>,
    config: SelectionConfig,
    cache: Arc<Mutex<Option<Cached>>>,
    minimum: Arc<Mutex<Option<semver::Version>>>,
}

/// The node table as last read for selection.
struct Cached {
    nodes: Vec<NodeRecord>,
    at: Instant,
}

/// A selection that finds too few nodes in the cache reads the table again, at most
/// this often (new nodes become selectable at once, a flood of uploads to a too-small
/// network does not become a flood of table reads).
const RELOAD_AFTER: Duration = Duration::from_secs(1);

/// The network a node is in, for "one node per network": the /24 of an IPv4
/// address, else the host.
pub fn network_of(address: &str) -> String {
    let host = address
        .split("://")
        .nth(1)
        .unwrap_or(address)
        .rsplit_once(':')
        .map_or(address, |(h, _)| h);
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => {
            let o = ip.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Err(_) => host.to_string(),
    }
}

impl Nodes {
    /// The table in `kv`.
    pub fn new(kv: Arc<dyn Kv>, config: SelectionConfig) -> Nodes {
        Nodes {
            kv,
            config,
            cache: Arc::default(),
            minimum: Arc::default(),
        }
    }

    /// Records a check-in signed by `key`.
    pub async fn check_in(
        &self,
        key: PublicKey,
        body: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<NodeRecord, Error> {
        key.verify(body, signature)
            .map_err(|e| Error::Unauthenticated(format!("check-in: {e}")))?;
        let c = CheckIn::decode(body).map_err(|e| Error::Invalid(e.to_string()))?;
        if c.timestamp.abs_diff(now) > self.config.check_in_skew_s {
            return Err(Error::Invalid(format!(
                "check-in signed at {}, now is {now}: check the node's clock",
                c.timestamp
            )));
        }
        if !c.address.starts_with("https://") {
            return Err(Error::Invalid(format!(
                "node address {:?} must be https://host:port: the piecestore speaks TLS only",
                c.address
            )));
        }
        // Only what a check-in reports changes; what others wrote (disqualification,
        // reputation) stays, by a compare on the record's revision.
        self.update(&key.id(), |old| {
            let mut n = old
                .cloned()
                .unwrap_or_else(|| NodeRecord::new(key.id(), key));
            n.address = c.address.clone();
            n.free = c.free;
            n.version = c.version.clone();
            n.last_seen = now;
            // A check-in is a successful contact.
            n.contact_failures = 0;
            n
        })
        .await
    }

    /// The record of the node that signed `body` (a stats request to the satellite
    /// `satellite`) with `key`, at `now`: a node reads only its own.
    pub async fn own_record(
        &self,
        key: PublicKey,
        body: &[u8],
        signature: &[u8],
        satellite: &NodeId,
        now: u64,
    ) -> Result<NodeRecord, Error> {
        key.verify(body, signature)
            .map_err(|e| Error::Unauthenticated(format!("stats request: {e}")))?;
        let r = orbit_protocol::NodeStatsRequest::decode(body)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if r.satellite != *satellite {
            return Err(Error::Invalid(
                "a stats request for another satellite".into(),
            ));
        }
        if r.timestamp.abs_diff(now) > self.config.check_in_skew_s {
            return Err(Error::Invalid(format!(
                "stats request signed at {}, now is {now}: check the node's clock",
                r.timestamp
            )));
        }
        self.get(&key.id())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no node {}: check in first", key.id())))
    }

    /// Records the uptime process's contact with a node at `now`: reached (`ok`) or
    /// not, in its record and its online score. Unknown nodes are not created.
    pub async fn record_contact(
        &self,
        id: &NodeId,
        ok: bool,
        now: u64,
        config: &ReputationConfig,
    ) -> Result<NodeRecord, Error> {
        let Some(first) = self.get(id).await? else {
            return Err(Error::NotFound(format!("no node {id}")));
        };
        self.update(id, |old| {
            let mut n = old.cloned().unwrap_or_else(|| first.clone());
            if ok {
                n.last_contact = n.last_contact.max(now);
                n.contact_failures = 0;
            } else {
                n.last_contact_failure = n.last_contact_failure.max(now);
                n.contact_failures = n.contact_failures.saturating_add(1);
            }
            n.reputation.contact(ok, config);
            n
        })
        .await
    }

    /// Applies audit outcomes to a node's reputation at `now` (disqualifying it when
    /// its score falls far enough): the record and the changes of standing. Unknown
    /// nodes are not created.
    pub async fn record_audits(
        &self,
        id: &NodeId,
        outcomes: &[AuditOutcome],
        config: &ReputationConfig,
        now: u64,
    ) -> Result<(NodeRecord, Vec<ReputationEvent>), Error> {
        let Some(first) = self.get(id).await? else {
            return Err(Error::NotFound(format!("no node {id}")));
        };
        let events = Mutex::new(Vec::new());
        let rec = self
            .update(id, |old| {
                let mut n = old.cloned().unwrap_or_else(|| first.clone());
                // Computed afresh on every try: only the try that lands counts.
                let mut ev = Vec::new();
                for o in outcomes {
                    ev.extend(n.reputation.apply(*o, config, now));
                }
                n.disqualified |= n.reputation.disqualified_at != 0;
                *events.lock().unwrap() = ev;
                n
            })
            .await?;
        Ok((rec, events.into_inner().unwrap()))
    }

    /// Disqualifies a node for good at `now`, for `reason`: it gets no new pieces and
    /// its pieces count as gone. A node disqualified already keeps its first reason.
    pub async fn disqualify(
        &self,
        id: &NodeId,
        reason: &str,
        now: u64,
    ) -> Result<NodeRecord, Error> {
        let Some(first) = self.get(id).await? else {
            return Err(Error::NotFound(format!("no node {id}")));
        };
        self.update(id, |old| {
            let mut n = old.cloned().unwrap_or_else(|| first.clone());
            if n.reputation.disqualified_at == 0 {
                n.reputation.disqualified_at = now.max(1);
                n.reputation.disqualified_reason = reason.to_string();
            }
            n.disqualified = true;
            n
        })
        .await
    }

    /// Lifts a node's disqualification (an operator's decision, say after a mistaken
    /// one): it is selectable again, with its audit reputation started afresh so the
    /// next audit does not disqualify it again on the old score.
    pub async fn reinstate(&self, id: &NodeId) -> Result<NodeRecord, Error> {
        let Some(first) = self.get(id).await? else {
            return Err(Error::NotFound(format!("no node {id}")));
        };
        self.update(id, |old| {
            let mut n = old.cloned().unwrap_or_else(|| first.clone());
            n.disqualified = false;
            n.reputation.disqualified_at = 0;
            n.reputation.disqualified_reason.clear();
            n.reputation.audit = Default::default();
            n.reputation.unknown = Default::default();
            n.reputation.suspended_at = 0;
            n
        })
        .await
    }

    /// Replaces a node's record by `f` of its current one, retrying while others
    /// change it meanwhile, so no concurrent update is lost.
    async fn update(
        &self,
        id: &NodeId,
        f: impl Fn(Option<&NodeRecord>) -> NodeRecord,
    ) -> Result<NodeRecord, Error> {
        let key = keys::node(id);
        for attempt in 0..32u64 {
            let cur = self.kv.range(RangeRequest::key(key.clone())).await?;
            let (rev, old) = match cur.kvs.first() {
                Some(kv) => (kv.mod_revision, Some(decode(&kv.key, &kv.value)?)),
                None => (0, None),
            };
            let rec = f(old.as_ref());
            let txn = TxnRequest::if_unchanged(
                key.clone(),
                rev,
                vec![TxnOp::Put(PutRequest::new(key.clone(), encode(&rec)))],
            );
            if self.kv.txn(txn).await?.succeeded {
                self.cached(&rec);
                return Ok(rec);
            }
            // Lost a race: back off a little, at random, so racers spread out.
            let ms = rand::random::<u64>() % (2 * attempt + 2);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Err(Error::Unavailable(format!(
            "node {id}: its record keeps changing; try again"
        )))
    }

    /// A node's record.
    pub async fn get(&self, id: &NodeId) -> Result<Option<NodeRecord>, Error> {
        let r = self.kv.range(RangeRequest::key(keys::node(id))).await?;
        r.kvs
            .first()
            .map(|kv| decode(&kv.key, &kv.value))
            .transpose()
    }

    /// The records of `ids`, read in one request at one revision (absent nodes are
    /// missing from the map).
    pub async fn get_many(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, NodeRecord>, Error> {
        let recs: Vec<NodeRecord> = crate::read_many(&*self.kv, ids.iter().map(keys::node)).await?;
        Ok(recs.into_iter().map(|r| (r.id, r)).collect())
    }

    /// Every node, read in pages at one revision.
    pub async fn all(&self) -> Result<Vec<NodeRecord>, Error> {
        Scan::prefix(&*self.kv, keys::NODES, 1000)
            .collect()
            .await?
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    /// Puts a record this replica just wrote into the selection cache: a node that
    /// checked in here is selectable at once, a disqualified one no longer.
    fn cached(&self, rec: &NodeRecord) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_mut() {
            match c.nodes.iter_mut().find(|n| n.id == rec.id) {
                Some(n) => *n = rec.clone(),
                None => c.nodes.push(rec.clone()),
            }
        }
    }

    /// Reads the node table into the selection cache (the background refresh).
    pub async fn refresh(&self) -> Result<usize, Error> {
        let mut nodes = self.all().await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // What this replica wrote while the table was being read is newer than what
        // the read saw (nodes are never deleted, a disqualification is permanent).
        if let Some(old) = cache.as_ref() {
            let read: HashMap<NodeId, usize> =
                nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
            for o in &old.nodes {
                match read.get(&o.id) {
                    Some(&i) => {
                        let n = &mut nodes[i];
                        if o.last_heard() > n.last_heard() || (o.disqualified && !n.disqualified) {
                            *n = o.clone();
                        }
                    }
                    None => nodes.push(o.clone()),
                }
            }
        }
        let n = nodes.len();
        *cache = Some(Cached {
            nodes,
            at: Instant::now(),
        });
        Ok(n)
    }

    /// Chooses `n` nodes at random among those online, neither disqualified nor
    /// suspended, with `piece_size` free, at most one per network (if so configured),
    /// from the cache; when the cache has too few, it is read again first (at most
    /// every second). About `new_node_percent` of them are nodes still being vetted,
    /// the rest vetted ones; when either kind falls short the other fills in (a new
    /// network, all of it unvetted, still takes uploads).
    pub async fn select(
        &self,
        n: usize,
        piece_size: u64,
        now: u64,
    ) -> Result<Vec<NodeRecord>, Error> {
        self.select_excluding(n, piece_size, now, &Exclude::default())
            .await
    }

    /// Like [`Nodes::select`], avoiding the nodes and networks in `exclude`.
    pub async fn select_excluding(
        &self,
        n: usize,
        piece_size: u64,
        now: u64,
        exclude: &Exclude,
    ) -> Result<Vec<NodeRecord>, Error> {
        let chosen = self.select_at_most(n, piece_size, now, exclude).await?;
        if chosen.len() < n {
            return Err(Error::Unavailable(format!(
                "{n} storage nodes needed, {} eligible (online, with space, distinct networks)",
                chosen.len()
            )));
        }
        Ok(chosen)
    }

    /// Like [`Nodes::select_excluding`], returning fewer than `n` when fewer are
    /// eligible (a repair takes what it can get).
    pub async fn select_at_most(
        &self,
        n: usize,
        piece_size: u64,
        now: u64,
        exclude: &Exclude,
    ) -> Result<Vec<NodeRecord>, Error> {
        let fresh = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match &*cache {
                Some(c) => {
                    let chosen = self.choose(&c.nodes, n, piece_size, now, exclude);
                    if chosen.len() == n {
                        return Ok(chosen);
                    }
                    c.at.elapsed() < RELOAD_AFTER
                }
                None => false,
            }
        };
        if !fresh {
            self.refresh().await?;
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let nodes = cache.as_ref().map_or(&[][..], |c| &c.nodes[..]);
        Ok(self.choose(nodes, n, piece_size, now, exclude))
    }

    fn choose(
        &self,
        nodes: &[NodeRecord],
        n: usize,
        piece_size: u64,
        now: u64,
        exclude: &Exclude,
    ) -> Vec<NodeRecord> {
        let minimum = self
            .minimum
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        choose(
            &self.config,
            minimum.as_ref(),
            nodes,
            n,
            piece_size,
            now,
            exclude,
        )
    }

    /// Sets the lowest storage-node version selected for new pieces (none: any);
    /// a node whose checked-in version is lower or does not parse gets none.
    pub fn set_minimum_version(&self, v: Option<semver::Version>) {
        *self.minimum.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }
}

/// Whether a node's checked-in version is at least `minimum`.
fn recent_enough(version: &str, minimum: Option<&semver::Version>) -> bool {
    minimum.is_none_or(|m| semver::Version::parse(version).is_ok_and(|v| v >= *m))
}

/// `n` eligible nodes of `nodes` (see [`Nodes::select`]).
fn choose(
    config: &SelectionConfig,
    minimum: Option<&semver::Version>,
    nodes: &[NodeRecord],
    n: usize,
    piece_size: u64,
    now: u64,
    exclude: &Exclude,
) -> Vec<NodeRecord> {
    use rand::seq::SliceRandom;
    let distinct = config.distinct_networks;
    let mut candidates: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|r| {
            let barred = r.disqualified
                || r.reputation.suspended()
                || exclude.nodes.contains(&r.id)
                || (distinct && exclude.networks.contains(&network_of(&r.address)));
            !barred
                && r.free >= piece_size
                && r.online(now, config.online_window_s)
                && recent_enough(&r.version, minimum)
        })
        .collect();
    candidates.shuffle(&mut rand::thread_rng());
    let (vetted, new): (Vec<&NodeRecord>, Vec<&NodeRecord>) =
        candidates.into_iter().partition(|r| r.reputation.vetted());
    let mut networks = HashSet::new();
    let mut chosen: Vec<NodeRecord> = Vec::with_capacity(n);
    let mut take = |from: &[&NodeRecord], upto: usize, chosen: &mut Vec<NodeRecord>| {
        for r in from {
            if chosen.len() >= upto {
                break;
            }
            if chosen.iter().any(|c| c.id == r.id) {
                continue;
            }
            if !distinct || networks.insert(network_of(&r.address)) {
                chosen.push((*r).clone());
            }
        }
    };
    take(&new, new_share(n, config.new_node_percent), &mut chosen);
    take(&vetted, n, &mut chosen);
    take(&new, n, &mut chosen);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: usize, vetted: bool) -> NodeRecord {
        let key = orbit_identity::Identity::generate().public();
        let mut n = NodeRecord::new(key.id(), key);
        n.address = format!("https://10.0.{i}.1:1");
        n.free = 1 << 30;
        n.last_seen = 1000;
        n.reputation.vetted_at = u64::from(vetted);
        n
    }

    #[test]
    fn nodes_below_the_minimum_version_or_without_a_semantic_one_get_no_pieces() {
        let versions = ["0.1.0", "0.2.0", "1.0.0", "junk", "0.2.1", "0.1.9"];
        let nodes: Vec<NodeRecord> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| NodeRecord {
                version: v.to_string(),
                ..node(i, true)
            })
            .collect();
        let config = SelectionConfig::default();
        let min = semver::Version::new(0, 2, 0);
        let chosen = choose(&config, Some(&min), &nodes, 6, 1, 1000, &Exclude::default());
        let mut got: Vec<&str> = chosen.iter().map(|n| n.version.as_str()).collect();
        got.sort();
        assert_eq!(got, ["0.2.0", "0.2.1", "1.0.0"]);
        assert_eq!(
            choose(&config, None, &nodes, 6, 1, 1000, &Exclude::default()).len(),
            6
        );
    }

    #[test]
    fn selection_gives_new_nodes_their_share_and_suspended_or_disqualified_none() {
        let config = SelectionConfig {
            new_node_percent: 25,
            ..SelectionConfig::default()
        };
        let mut nodes: Vec<NodeRecord> = (0..40).map(|i| node(i, i < 30)).collect();
        nodes[0].reputation.suspended_at = 5;
        nodes[1].disqualified = true;
        let (bad_a, bad_b) = (nodes[0].id, nodes[1].id);
        let mut new_picks = 0;
        for _ in 0..200 {
            let chosen = choose(&config, None, &nodes, 8, 1, 1000, &Exclude::default());
            assert_eq!(chosen.len(), 8);
            assert!(chosen.iter().all(|c| c.id != bad_a && c.id != bad_b));
            let ids: HashSet<_> = chosen.iter().map(|c| c.id).collect();
            assert_eq!(ids.len(), 8, "a node chosen twice");
            new_picks += chosen.iter().filter(|c| !c.reputation.vetted()).count();
        }
        // 25% of 8 = 2 per upload, exactly.
        assert_eq!(new_picks, 400);
        // Too few vetted nodes: new ones fill in; too few new ones: vetted ones do.
        let fresh: Vec<NodeRecord> = (0..10).map(|i| node(i, false)).collect();
        assert_eq!(
            choose(&config, None, &fresh, 10, 1, 1000, &Exclude::default()).len(),
            10
        );
        let old: Vec<NodeRecord> = (0..10).map(|i| node(i, true)).collect();
        assert_eq!(
            choose(&config, None, &old, 10, 1, 1000, &Exclude::default()).len(),
            10
        );
        // A fraction of a node is rounded at random: 5% of 10 is one node in two.
        let config = SelectionConfig::default();
        let picks: usize = (0..2000)
            .map(|_| {
                choose(&config, None, &nodes, 10, 1, 1000, &Exclude::default())
                    .iter()
                    .filter(|c| !c.reputation.vetted())
                    .count()
            })
            .sum();
        assert!(
            (800..1200).contains(&picks),
            "{picks} new nodes in 2000 uploads"
        );
    }

    #[test]
    fn networks_are_slash_24s_or_hosts() {
        assert_eq!(network_of("https://10.1.2.3:7777"), "10.1.2.0/24");
        assert_eq!(network_of("https://10.1.2.200:1"), "10.1.2.0/24");
        assert_ne!(
            network_of("https://10.1.3.3:1"),
            network_of("https://10.1.2.3:1")
        );
        assert_eq!(network_of("https://node.example:1"), "node.example");
    }
}
