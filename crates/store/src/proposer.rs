//! Group commit on the leader: writes that arrive while earlier ones are being
//! committed are proposed together as one log entry.
//!
//! openraft persists and replicates one append at a time, so proposing each write on
//! its own costs one fsync (and one replication round) per write. Here at most
//! [`IN_FLIGHT`] proposals run at once; whatever queues up meanwhile goes into the next
//! one, so under load one fsync covers many writes while a lone write still goes out at
//! once. Each write keeps its own revision and result.

use crate::network::ForwardError;
use crate::raft_types::*;
use openraft::error::{ClientWriteError, RaftError};
use orbit_kv::KvError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Proposals in flight at once. One measured best: openraft flushes one append at a
/// time anyway, and a second slot mostly carried single writes that the next batch
/// would have taken.
const IN_FLIGHT: usize = 1;
/// Most requests in one entry.
const MAX_BATCH: usize = 1024;
/// Most bytes of requests in one entry.
const MAX_BATCH_BYTES: u64 = 4 << 20;

type Reply = oneshot::Sender<Result<Response, ForwardError>>;

/// Queues writes for the leader's Raft instance.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<(Request, u64, Reply)>,
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Proposes `req` (of `size` bytes) and waits for its result.
    pub async fn propose(&self, req: Request, size: u64) -> Result<Response, ForwardError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((req, size, reply))
            .map_err(|_| KvError::Unavailable("member is shutting down".into()))?;
        rx.await
            .map_err(|_| KvError::Unavailable("member is shutting down".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Request, u64, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while waiting for a slot joins this proposal.
        let mut bytes = first.1;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.1;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        tracing::trace!(requests = batch.len(), bytes, "proposing");
        let raft = raft.clone();
        tokio::spawn(async move {
            let (reqs, replies): (Vec<Request>, Vec<Reply>) =
                batch.into_iter().map(|(r, _, reply)| (r, reply)).unzip();
            let single = reqs.len() == 1;
            let req = if single {
                reqs.into_iter().next().expect("one request")
            } else {
                Request::Batch(reqs)
            };
            let res = raft.client_write(req).await;
            drop(permit);
            match res {
                Ok(resp) => match resp.data {
                    Response::Batch(results) if !single => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    other => {
                        for reply in replies {
                            let _ = reply.send(Ok(other.clone()));
                        }
                    }
                },
                Err(e) => {
                    let err = match e {
                        // Not appended: the caller may try the new leader.
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            ForwardError::NotLeader(f.leader_id)
                        }
                        other => ForwardError::Kv(KvError::Unavailable(other.to_string())),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
