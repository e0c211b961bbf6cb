//! Member-to-member transport: Raft RPCs and forwarded client requests over gRPC.

use crate::log_store::MAX_APPEND_BYTES;
use crate::node::StoreNode;
use crate::raft_types::*;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use orbit_kv::{KvError, Member};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Generated gRPC code of `proto/peer.proto`.
pub mod pb {
    tonic::include_proto!("orbit.peer");
}

use pb::peer_client::PeerClient;
use pb::peer_server::{Peer, PeerServer};
use pb::Blob;

/// A client request that only the leader can serve.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Request),
    /// Confirm leadership and tell the index a linearizable read must wait for.
    ReadIndex,
    /// Renew a lease.
    LeaseKeepAlive(i64),
    /// Remaining and granted TTL of a lease.
    LeaseTimeToLive(i64),
    /// Add a member.
    MemberAdd {
        /// Its peer URLs.
        peer_urls: Vec<String>,
        /// Whether it joins as a learner.
        learner: bool,
    },
    /// Remove a member.
    MemberRemove(NodeId),
    /// Promote a learner.
    MemberPromote(NodeId),
    /// The member list (answered by any member, leader or not).
    Members,
    /// A member's new peer URLs (added last: older members refuse what they do not
    /// know rather than misread it).
    MemberUpdate {
        /// The member.
        id: NodeId,
        /// Its peer URLs from now on.
        peer_urls: Vec<String>,
    },
    /// Make this member the leader (etcd's MoveLeader), to the leader.
    MoveLeader(NodeId),
    /// A leader transfer's step, to any voter: hold elections for `ms` (0: release).
    HoldElections {
        /// How long.
        ms: u64,
    },
    /// A leader transfer's step, to its target: campaign now.
    Campaign,
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardResponse {
    /// Of a write.
    Write(Response),
    /// The read index.
    ReadIndex(u64),
    /// The TTL after a renewal.
    LeaseKeepAlive(i64),
    /// Remaining and granted TTL.
    LeaseTimeToLive(i64, i64),
    /// The added member.
    Member(Member),
    /// The member list.
    Members(Vec<Member>),
    /// Done.
    Done,
}

/// Why a forwarded request failed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader (any more); try the one it names.
    #[error("not the leader")]
    NotLeader(Option<NodeId>),
    /// The request failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

fn encode<T: Serialize>(v: &T) -> Blob {
    Blob {
        data: bincode::serialize(v).expect("peer messages always serialize"),
    }
}

fn decode<T: DeserializeOwned>(b: &Blob) -> Result<T, tonic::Status> {
    bincode::deserialize(&b.data)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable peer message: {e}")))
}

/// The least the AppendEntries bound shrinks to.
const MIN_APPEND_BYTES: u64 = 16 << 10;

/// How many of `entries`, from the first, fit in `budget` bytes (at least one).
fn entries_within(entries: &[Entry], budget: u64) -> usize {
    let mut used = 0u64;
    for (i, e) in entries.iter().enumerate() {
        used += bincode::serialized_size(e).unwrap_or(u64::MAX);
        if i > 0 && used > budget {
            return i;
        }
    }
    entries.len()
}

/// Connections to other members, by peer URL.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// How to reach `https://` peers: their CA and this member's peer certificate.
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// Set when a peer refused our Raft message because we were removed.
    removed: Arc<std::sync::atomic::AtomicBool>,
}

/// What a member answers to Raft messages from a removed member.
const REMOVED: &str = "was removed from the cluster";

impl Peers {
    /// Connections that reach `https://` peers with `tls`.
    pub fn new(tls: Option<tonic::transport::ClientTlsConfig>) -> Peers {
        Peers {
            tls,
            ..Peers::default()
        }
    }

    /// Whether a peer has told this member it was removed from the cluster.
    pub fn told_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A client of the member at `url` (connected lazily, shared).
    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, KvError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(PeerClient::new(c.clone()).max_decoding_message_size(usize::MAX));
        }
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| KvError::InvalidArgument(format!("bad peer URL {url}: {e}")))?;
        if url.starts_with("https://") {
            let tls = self.tls.clone().ok_or_else(|| {
                KvError::InvalidArgument(format!(
                    "peer {url} speaks TLS, but this member has no peer certificate (peer_cert_file)"
                ))
            })?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| KvError::InvalidArgument(format!("peer TLS for {url}: {e}")))?;
        }
        let ch = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .connect_lazy();
        map.insert(url.to_string(), ch.clone());
        Ok(PeerClient::new(ch).max_decoding_message_size(usize::MAX))
    }

    /// Sends a request to the leader at `url`.
    pub async fn forward(
        &self,
        url: &str,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardResponse, ForwardError> {
        let mut client = self.client(url)?;
        let mut request = tonic::Request::new(encode(req));
        request.set_timeout(timeout);
        let resp = client.forward(request).await.map_err(|s| {
            if s.code() == tonic::Code::Unavailable && s.message().contains("connect") {
                // Never sent: safe to retry once the cluster knows its leader again.
                ForwardError::NotLeader(None)
            } else {
                // Sent, outcome unknown: the caller must not retry blindly.
                KvError::Unavailable(format!(
                    "forwarding to the leader at {url}: {}",
                    s.message()
                ))
                .into()
            }
        })?;
        let res: Result<ForwardResponse, ForwardError> =
            decode(resp.get_ref()).map_err(|s| KvError::Unavailable(s.message().to_string()))?;
        res
    }
}

/// Creates Raft clients of the other members.
pub struct NetworkFactory {
    /// Shared connections.
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Self::Network {
        PeerNetwork {
            target,
            url: node.peer_url.clone(),
            peers: self.peers.clone(),
            append_budget: MAX_APPEND_BYTES,
            append_in_flight: false,
        }
    }
}

/// One of the peer service's methods, called on a client.
type PeerCall =
    fn(
        PeerClient<Channel>,
        tonic::Request<Blob>,
    ) -> futures::future::BoxFuture<'static, Result<tonic::Response<Blob>, tonic::Status>>;

/// The Raft client of one other member.
pub struct PeerNetwork {
    target: NodeId,
    url: String,
    peers: Peers,
    /// Bytes of entries the next AppendEntries may carry (see `append_entries`).
    append_budget: u64,
    /// Set while an AppendEntries call runs; still set at the next call when openraft
    /// dropped the last one at its time limit.
    append_in_flight: bool,
}

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &self,
        which: PeerCall,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self
            .peers
            .client(&self.url)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        // Addressed to the member id, so a process on that URL that is some other member
        // (a removed one not yet stopped, say) refuses it instead of acting on it.
        let mut request = tonic::Request::new(encode(&(self.target, req)));
        request.set_timeout(option.hard_ttl());
        let resp = which(client, request).await.map_err(|s| {
            if s.code() == tonic::Code::PermissionDenied && s.message().contains(REMOVED) {
                self.peers
                    .removed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown {
                RPCError::Unreachable(Unreachable::new(&s))
            } else {
                RPCError::Network(NetworkError::new(&s))
            }
        })?;
        let res: Result<Resp, RaftError<NodeId, E>> =
            decode(resp.get_ref()).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        // The log reader bounds a message to MAX_APPEND_BYTES. A follower that still
        // cannot take that in within the RPC time limit would be sent it again and
        // again: halve the bound after a call that ran out of time (send a prefix and
        // tell openraft how far it got), double it after one that did not.
        if self.append_in_flight {
            self.append_budget = (self.append_budget / 2).max(MIN_APPEND_BYTES);
        }
        let whole = rpc.entries.len();
        rpc.entries
            .truncate(entries_within(&rpc.entries, self.append_budget));
        let partial = rpc.entries.len() < whole;
        let sent_up_to = rpc.entries.last().map(|e| e.log_id);
        self.append_in_flight = true;
        let resp = self
            .call(
                |mut c, r| Box::pin(async move { c.append_entries(r).await }),
                &rpc,
                &option,
            )
            .await;
        self.append_in_flight = false;
        let resp = resp?;
        if resp == AppendEntriesResponse::Success {
            self.append_budget = (self.append_budget * 2).min(MAX_APPEND_BYTES);
            if partial {
                return Ok(AppendEntriesResponse::PartialSuccess(sent_up_to));
            }
        }
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            |mut c, r| Box::pin(async move { c.install_snapshot(r).await }),
            &rpc,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.call(
            |mut c, r| Box::pin(async move { c.vote(r).await }),
            &rpc,
            &option,
        )
        .await
    }
}

/// The gRPC service other members call.
pub struct PeerService {
    node: Weak<StoreNode>,
}

impl PeerService {
    /// The service of `node`, as a tonic server.
    pub fn server(node: Weak<StoreNode>) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    fn node(&self) -> Result<Arc<StoreNode>, tonic::Status> {
        self.node
            .upgrade()
            .ok_or_else(|| tonic::Status::unavailable("member is shutting down"))
    }

    /// Decodes a Raft message, refusing it unless it is addressed to this member.
    fn addressed<T: DeserializeOwned>(
        node: &StoreNode,
        request: &tonic::Request<Blob>,
    ) -> Result<T, tonic::Status> {
        let (to, msg): (NodeId, T) = decode(request.get_ref())?;
        if to != node.id() {
            return Err(tonic::Status::failed_precondition(format!(
                "this is member {:x}, not {to:x}",
                node.id()
            )));
        }
        Ok(msg)
    }

    /// Refuses Raft messages from a removed member, so a removed member that comes back
    /// (its data dir restarted) cannot disrupt the cluster with elections.
    fn check_sender(node: &StoreNode, vote: &Vote) -> Result<(), tonic::Status> {
        match vote.leader_id.voted_for() {
            Some(id) if node.shared().read().removed.contains(&id) => Err(
                tonic::Status::permission_denied(format!("member {id:x} {REMOVED}")),
            ),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, tonic::Status> {
        let node = self.node()?;
        let req: AppendEntriesRequest<TypeConfig> = Self::addressed(&node, &request)?;
        Self::check_sender(&node, &req.vote)?;
        let res = node.raft().append_entries(req).await;
        Ok(tonic::Response::new(encode(&res)))
    }

    async fn vote(
        &self,
        request: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, tonic::Status> {
        let node = self.node()?;
        let req: VoteRequest<NodeId> = Self::addressed(&node, &request)?;
        Self::check_sender(&node, &req.vote)?;
        let res = node.raft().vote(req).await;
        Ok(tonic::Response::new(encode(&res)))
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, tonic::Status> {
        let node = self.node()?;
        let req: InstallSnapshotRequest<TypeConfig> = Self::addressed(&node, &request)?;
        Self::check_sender(&node, &req.vote)?;
        let res = node.raft().install_snapshot(req).await;
        Ok(tonic::Response::new(encode(&res)))
    }

    async fn forward(
        &self,
        request: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, tonic::Status> {
        let node = self.node()?;
        let req: ForwardRequest = decode(request.get_ref())?;
        let res = node.serve_as_leader(req).await;
        Ok(tonic::Response::new(encode(&res)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 7), index),
            payload: openraft::EntryPayload::Normal(Request::Write(
                crate::mvcc::WriteCommand::Put(orbit_kv::PutRequest::new("k", vec![0; bytes])),
            )),
        }
    }

    #[test]
    fn append_messages_are_bounded_by_size_but_always_carry_one_entry() {
        let small: Vec<Entry> = (1..=10).map(|i| entry(i, 100)).collect();
        assert_eq!(entries_within(&small, 1 << 20), 10);
        let big: Vec<Entry> = (1..=10).map(|i| entry(i, 300 << 10)).collect();
        assert_eq!(entries_within(&big, 1 << 20), 3);
        let huge = vec![entry(1, 2 << 20), entry(2, 10)];
        assert_eq!(entries_within(&huge, 1 << 20), 1);
        assert_eq!(entries_within(&[], 1 << 20), 0);
    }
}
