//! The sender: hands each node its newest filter (signed by the satellite) once, and
//! records that the node acknowledged it. Filters of disqualified nodes are not sent.

use crate::GcSection;
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_protocol::RetainHeader;
use orbit_satellite_model::gc::{FilterHead, GcState};
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::unix_now;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one round of sending did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SendRound {
    /// Filters newer than what their nodes acknowledged.
    pub due: u64,
    /// Filters the nodes acknowledged this round.
    pub sent: u64,
    /// Bytes of them.
    pub bytes: u64,
    /// Failures, one line each.
    pub failed: Vec<String>,
}

/// The sender.
pub struct Sender {
    state: GcState,
    nodes: Nodes,
    identity: Identity,
    section: GcSection,
    last: Mutex<Option<SendRound>>,
}

impl Sender {
    /// A sender over `kv`, signing as the satellite `identity`.
    pub fn new(kv: Arc<dyn Kv>, identity: Identity, section: GcSection) -> Sender {
        Sender {
            state: GcState::new(kv.clone()),
            nodes: Nodes::new(kv, SelectionConfig::default()),
            identity,
            section,
            last: Mutex::new(None),
        }
    }

    /// The last round.
    pub fn last_round(&self) -> Option<SendRound> {
        self.last.lock().unwrap().clone()
    }

    /// Sends every due filter, `concurrency` at a time.
    pub async fn run_once(&self) -> Result<SendRound, String> {
        let heads = self
            .state
            .heads()
            .await
            .map_err(|e| format!("reading the filters: {e}"))?;
        let mut due = Vec::new();
        for h in heads {
            let sent = self
                .state
                .sent(&h.node)
                .await
                .map_err(|e| format!("reading what was sent: {e}"))?;
            if sent.is_none_or(|s| s.pass < h.pass) {
                due.push(h);
            }
        }
        let mut round = SendRound {
            due: due.len() as u64,
            ..SendRound::default()
        };
        use futures::stream::{self, StreamExt};
        let results: Vec<Result<u64, String>> = stream::iter(due)
            .map(|h| async move {
                self.send(&h)
                    .await
                    .map_err(|e| format!("node {}: {e}", h.node))
            })
            .buffer_unordered(self.section.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            match r {
                Ok(b) => {
                    round.sent += 1;
                    round.bytes += b;
                }
                Err(e) => round.failed.push(e),
            }
        }
        let m = &*crate::metrics::METRICS;
        m.sent.inc_by(round.sent);
        m.sent_bytes.inc_by(round.bytes);
        m.failed.inc_by(round.failed.len() as u64);
        *self.last.lock().unwrap() = Some(round.clone());
        match round.failed.is_empty() {
            true => Ok(round),
            false => Err(format!(
                "{} of {} filters not delivered: {}",
                round.failed.len(),
                round.due,
                round.failed.join("; ")
            )),
        }
    }

    async fn send(&self, head: &FilterHead) -> Result<u64, String> {
        let node = self
            .nodes
            .get(&head.node)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not in the node table")?;
        if node.disqualified {
            return Ok(0);
        }
        let filter = self.state.filter(head).await.map_err(|e| e.to_string())?;
        let header = RetainHeader::sign(
            &self.identity,
            head.node,
            head.created,
            head.pass,
            head.pieces,
            &filter,
        );
        let t = Duration::from_secs(self.section.timeout_s.max(1));
        tokio::time::timeout(
            t,
            orbit_protocol::client::retain(&node.address, &head.node, &header, &filter),
        )
        .await
        .map_err(|_| format!("no answer within {t:?}"))?
        .map_err(|e| e.to_string())?;
        // Stored, or the node holds one as new: either way it has it.
        self.state
            .mark_sent(&head.node, head.pass, unix_now())
            .await
            .map_err(|e| e.to_string())?;
        Ok(filter.len() as u64)
    }
}
