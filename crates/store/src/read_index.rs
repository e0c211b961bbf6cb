//! Read index on the leader, shared by the reads that wait for it.
//!
//! A linearizable read needs the leader to confirm it still leads (a heartbeat round
//! to a quorum) and then a state applied up to the commit index it had then. A
//! confirmation that starts after a read arrived is valid for that read, so every read
//! queued while one round runs is served by the next round: one heartbeat round per
//! batch of reads instead of one per read.

use crate::network::ForwardError;
use crate::raft_types::*;
use openraft::error::{CheckIsLeaderError, RaftError};
use orbit_kv::KvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};

type Reply = oneshot::Sender<Result<u64, ForwardError>>;

/// Hands out read indexes on the leader.
#[derive(Clone)]
pub struct ReadIndexer {
    tx: mpsc::UnboundedSender<Reply>,
}

impl ReadIndexer {
    /// Starts the task that confirms leadership for `raft`.
    pub fn start(raft: Raft) -> ReadIndexer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        ReadIndexer { tx }
    }

    /// The log index a linearizable read arriving now must wait for.
    pub async fn read_index(&self) -> Result<u64, ForwardError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(reply)
            .map_err(|_| KvError::Unavailable("member is shutting down".into()))?;
        rx.await
            .map_err(|_| KvError::Unavailable("member is shutting down".into()))?
    }
}

/// How long a round may keep retrying when a quorum does not answer in time.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// One leadership confirmation. A round that misses a quorum (followers slow under
/// load, or one briefly away) is retried: a read may wait, but it must not fail
/// while the leader still leads.
async fn confirm(raft: &Raft) -> Result<u64, ForwardError> {
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match raft.get_read_log_id().await {
            Ok((read_id, _)) => return Ok(read_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                return Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))
                if Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "read index round missed a quorum; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(ForwardError::Kv(KvError::Unavailable(e.to_string()))),
        }
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Reply>) {
    while let Some(first) = rx.recv().await {
        // Only reads that arrived before this round starts join it.
        let mut waiting = vec![first];
        while let Ok(next) = rx.try_recv() {
            waiting.push(next);
        }
        let res = confirm(&raft).await;
        for reply in waiting {
            let _ = reply.send(res.clone());
        }
    }
}
