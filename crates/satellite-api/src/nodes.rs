//! The satellite's table of storage nodes: check-ins, and selecting nodes for new
//! pieces.

use crate::ApiError;
use orbit_identity::{NodeId, PublicKey};
use orbit_kv::{
    Compare, CompareOp, CompareTarget, Kv, PutRequest, RangeRequest, TxnOp, TxnRequest,
};
use orbit_protocol::CheckIn;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// What the satellite knows of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Format version.
    pub v: u32,
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
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            online_window_s: 3600,
            distinct_networks: true,
            check_in_skew_s: 600,
        }
    }
}

fn node_key(id: &NodeId) -> String {
    format!("/orbit/sat/nodes/{id}")
}

/// A node record; a corrupt one or one of an unknown format is an error naming its
/// key, never skipped.
fn parse_node(key: &str, value: &[u8]) -> Result<NodeRecord, ApiError> {
    let rec: NodeRecord = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("corrupt node record at {key}: {e}")))?;
    if rec.v != 1 {
        return Err(ApiError::Internal(format!(
            "node record at {key} has format version {}, this satellite reads 1: upgrade it",
            rec.v
        )));
    }
    Ok(rec)
}

/// The node table.
#[derive(Clone)]
pub struct Nodes {
    kv: Arc<dyn Kv>,
    config: SelectionConfig,
}

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
        Nodes { kv, config }
    }

    /// Records a check-in signed by `key`.
    pub async fn check_in(
        &self,
        key: PublicKey,
        body: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<NodeRecord, ApiError> {
        key.verify(body, signature)
            .map_err(|e| ApiError::Unauthenticated(format!("check-in: {e}")))?;
        let c = CheckIn::decode(body).map_err(|e| ApiError::Invalid(e.to_string()))?;
        if c.timestamp.abs_diff(now) > self.config.check_in_skew_s {
            return Err(ApiError::Invalid(format!(
                "check-in signed at {}, now is {now}: check the node's clock",
                c.timestamp
            )));
        }
        if !c.address.starts_with("http://") && !c.address.starts_with("https://") {
            return Err(ApiError::Invalid(format!(
                "node address {:?} must be http://host:port",
                c.address
            )));
        }
        // Only what a check-in reports changes; what others wrote (disqualification)
        // stays, by a compare on the record's revision.
        self.update(&key.id(), |old| NodeRecord {
            v: 1,
            id: key.id(),
            key,
            address: c.address.clone(),
            free: c.free,
            version: c.version.clone(),
            last_seen: now,
            disqualified: old.is_some_and(|n| n.disqualified),
        })
        .await
    }

    /// Disqualifies a node for good: it gets no new pieces and its pieces count as gone.
    pub async fn disqualify(&self, id: &NodeId) -> Result<NodeRecord, ApiError> {
        let Some(first) = self.get(id).await? else {
            return Err(ApiError::NotFound(format!("no node {id}")));
        };
        self.update(id, |old| NodeRecord {
            disqualified: true,
            ..old.cloned().unwrap_or_else(|| first.clone())
        })
        .await
    }

    /// Replaces a node's record by `f` of its current one, retrying while others
    /// change it meanwhile, so no concurrent update is lost.
    async fn update(
        &self,
        id: &NodeId,
        f: impl Fn(Option<&NodeRecord>) -> NodeRecord,
    ) -> Result<NodeRecord, ApiError> {
        let key = node_key(id);
        for attempt in 0..32u64 {
            let cur = self.kv.range(RangeRequest::key(key.clone())).await?;
            let (rev, old) = match cur.kvs.first() {
                Some(kv) => (kv.mod_revision, Some(parse_node(&key, &kv.value)?)),
                None => (0, None),
            };
            let rec = f(old.as_ref());
            let txn = TxnRequest {
                compare: vec![Compare::new(
                    key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Mod(rev),
                )],
                success: vec![TxnOp::Put(PutRequest::new(
                    key.clone(),
                    serde_json::to_vec(&rec).expect("records serialize"),
                ))],
                failure: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                return Ok(rec);
            }
            // Lost a race: back off a little, at random, so racers spread out.
            let ms = rand::random::<u64>() % (2 * attempt + 2);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Err(ApiError::Unavailable(format!(
            "node {id}: its record keeps changing; try again"
        )))
    }

    /// A node's record.
    pub async fn get(&self, id: &NodeId) -> Result<Option<NodeRecord>, ApiError> {
        let key = node_key(id);
        let r = self.kv.range(RangeRequest::key(key.clone())).await?;
        r.kvs
            .first()
            .map(|kv| parse_node(&key, &kv.value))
            .transpose()
    }

    /// Every node.
    pub async fn all(&self) -> Result<Vec<NodeRecord>, ApiError> {
        let r = self
            .kv
            .range(RangeRequest::prefix("/orbit/sat/nodes/"))
            .await?;
        r.kvs
            .iter()
            .map(|kv| parse_node(&String::from_utf8_lossy(&kv.key), &kv.value))
            .collect()
    }

    /// Chooses `n` nodes at random among those online, not disqualified, with
    /// `piece_size` free, at most one per network (if so configured).
    pub async fn select(
        &self,
        n: usize,
        piece_size: u64,
        now: u64,
    ) -> Result<Vec<NodeRecord>, ApiError> {
        use rand::seq::SliceRandom;
        let mut candidates: Vec<NodeRecord> = self
            .all()
            .await?
            .into_iter()
            .filter(|r| {
                !r.disqualified
                    && r.free >= piece_size
                    && now.saturating_sub(r.last_seen) <= self.config.online_window_s
            })
            .collect();
        candidates.shuffle(&mut rand::thread_rng());
        let mut networks = HashSet::new();
        let chosen: Vec<NodeRecord> = candidates
            .into_iter()
            .filter(|r| !self.config.distinct_networks || networks.insert(network_of(&r.address)))
            .take(n)
            .collect();
        if chosen.len() < n {
            return Err(ApiError::Unavailable(format!(
                "{n} storage nodes needed, {} eligible (online, with space, distinct networks)",
                chosen.len()
            )));
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24s_or_hosts() {
        assert_eq!(network_of("http://10.1.2.3:7777"), "10.1.2.0/24");
        assert_eq!(network_of("http://10.1.2.200:1"), "10.1.2.0/24");
        assert_ne!(
            network_of("http://10.1.3.3:1"),
            network_of("http://10.1.2.3:1")
        );
        assert_eq!(network_of("http://node.example:1"), "node.example");
    }
}
