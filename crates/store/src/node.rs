//! One member of the store cluster: its Raft instance, state, servers and chores.
//!
//! Any member serves any request: writes and leader-only requests go to the leader
//! (directly when this member leads, else over the peer transport), linearizable
//! reads wait for the leader's read index, serializable reads are served locally.

use crate::compactor::Compactor;
use crate::config::{ClusterState, StoreConfig};
use crate::lease::LeaseClock;
use crate::log_store::LogStore;
use crate::mvcc::{WriteCommand, WriteResult};
use crate::network::{ForwardError, ForwardRequest, ForwardResponse, NetworkFactory, Peers};
use crate::proposer::Proposer;
use crate::raft_types::*;
use crate::read_index::ReadIndexer;
use crate::state_machine::{Shared, StateMachine};
use crate::StoreError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use orbit_kv::*;
use orbit_worker::Interval;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Most bytes in one request, as etcd's `--max-request-bytes` default.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Identity of a member, kept in its data dir: a data dir belongs to one cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberFile {
    format: u32,
    id: NodeId,
    name: String,
    token: String,
}

/// Stable 64-bit FNV-1a; member ids of an initial cluster must agree across builds.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The id of an initial member: derived from the token, its name and peer URL, so every
/// member of a new cluster computes the same membership without talking.
pub fn initial_member_id(token: &str, name: &str, peer_url: &str) -> NodeId {
    fnv64(&[token, name, peer_url]).max(1)
}

mod transfer;

/// A running store member.
pub struct StoreNode {
    id: NodeId,
    cluster_id: u64,
    config: StoreConfig,
    raft: Raft,
    shared: Arc<Shared>,
    peers: Peers,
    leases: LeaseClock,
    compactor: Compactor,
    /// A compaction is being committed.
    compacting: AtomicBool,
    proposer: Proposer,
    reads: ReadIndexer,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// True while this leader transfers its leadership (see [`transfer`]).
    transfer: watch::Sender<bool>,
    /// Counts holds of this member's elections; the newest hold's timer releases it.
    holds: Arc<std::sync::atomic::AtomicU64>,
    /// The member's background work (Raft heartbeats, lease expiry, compaction,
    /// membership chores), stopped before Raft at shutdown.
    workers: orbit_worker::Group,
    /// Held while the member runs: one process per data dir.
    _lock: std::fs::File,
}

/// Takes the data dir's lock, refusing if another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    f.try_lock().map_err(|_| {
        StoreError::Config(format!(
            "{} is in use by another process (a running member?)",
            dir.display()
        ))
    })?;
    Ok(f)
}

impl StoreNode {
    /// Starts a member as configured: opens its data dir, joins or creates its cluster
    /// and serves the etcd API on its client URL and Raft on its peer URL.
    pub async fn start(config: StoreConfig) -> Result<Arc<StoreNode>, StoreError> {
        config.validate()?;
        create_private_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let raft_dir = config.data_dir.join("raft");
        let log = LogStore::open(&raft_dir)?;
        let sm = StateMachine::open(&raft_dir, config.quota_bytes)?;
        let shared = sm.shared();
        let peers = Peers::new(config.tls.peer_client().map_err(tls_err)?);

        let member_path = config.data_dir.join("member.json");
        let known = read_member_file(&member_path)?;
        let (id, bootstrap) = match known {
            Some(m) => {
                if m.token != config.token {
                    return Err(StoreError::Config(format!(
                        "{} belongs to cluster token {:?}, not {:?}; use another data dir",
                        config.data_dir.display(),
                        m.token,
                        config.token
                    )));
                }
                (m.id, None)
            }
            None if log.is_used() => {
                return Err(StoreError::Config(format!(
                    "{} holds Raft state but no member.json; refusing to guess its identity",
                    config.data_dir.display()
                )))
            }
            None => match config.initial_cluster_state {
                ClusterState::New => {
                    let members: BTreeMap<NodeId, PeerNode> = config
                        .initial_cluster
                        .iter()
                        .map(|(name, url)| {
                            (
                                initial_member_id(&config.token, name, url),
                                PeerNode {
                                    peer_url: url.clone(),
                                },
                            )
                        })
                        .collect();
                    match config.member_id {
                        Some(id) => (
                            id,
                            Some(BTreeMap::from([(
                                id,
                                PeerNode {
                                    peer_url: config.peer_url.clone(),
                                },
                            )])),
                        ),
                        None => {
                            let id =
                                initial_member_id(&config.token, &config.name, &config.peer_url);
                            (id, Some(members))
                        }
                    }
                }
                ClusterState::Existing => match config.member_id {
                    Some(id) => (id, None),
                    None => (find_my_id(&config, &peers).await?, None),
                },
            },
        };
        write_member(&config.data_dir, id, &config.name, &config.token)?;

        let raft_config = openraft::Config {
            cluster_name: config.token.clone(),
            // openraft also uses this as the time limit of every AppendEntries call; a
            // follower slowed by a loaded machine then never answers in time and the
            // leader stalls retrying. The limit is a third of the election timeout;
            // heartbeats are sent every `heartbeat_ms` by `spawn_heartbeats` instead.
            heartbeat_interval: rpc_timeout_ms(&config),
            enable_heartbeat: false,
            election_timeout_min: config.election_ms,
            election_timeout_max: config.election_ms * 2,
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            max_in_snapshot_log_to_keep: config.snapshot_entries / 2,
            max_payload_entries: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            NetworkFactory {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| StoreError::Raft(e.to_string()))?;

        let client_listener = bind(&config.client_url).await?;
        let peer_listener = bind(&config.peer_url).await?;
        let (shutdown, _) = watch::channel(false);
        let compactor = Compactor::new(
            config.auto_compaction,
            Duration::from_millis(config.compaction_check_ms),
        );
        let node = Arc::new(StoreNode {
            id,
            cluster_id: fnv64(&[&config.token]),
            client_addr: client_listener.local_addr()?,
            peer_addr: peer_listener.local_addr()?,
            config,
            raft: raft.clone(),
            shared,
            peers,
            leases: LeaseClock::default(),
            compactor,
            compacting: AtomicBool::new(false),
            proposer: Proposer::start(raft.clone()),
            reads: ReadIndexer::start(raft.clone()),
            shutdown,
            transfer: watch::channel(false).0,
            holds: Arc::default(),
            workers: orbit_worker::Group::new(),
            _lock: lock,
        });
        let client_tls = node.config.tls.client_server().map_err(tls_err)?;
        let peer_tls = node.config.tls.peer_server().map_err(tls_err)?;
        crate::server::serve(
            node.clone(),
            (client_listener, client_tls),
            (peer_listener, peer_tls),
        )
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;

        if let Some(members) = bootstrap {
            match node.raft.initialize(members).await {
                Ok(()) => {}
                // Another member's initialize reached us first: the cluster exists.
                Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StoreError::Raft(e.to_string())),
            }
        }
        node.spawn_chores();
        node.spawn_heartbeats();
        tracing::info!(
            id = format_args!("{id:x}"),
            name = %node.config.name,
            client = %node.client_addr,
            peer = %node.peer_addr,
            "store member started"
        );
        Ok(node)
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster id reported in response headers.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The Raft instance.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The address the etcd API is served on.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The address Raft is served on.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A receiver that turns true when the member shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops the member: servers, chores and Raft.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.workers.shutdown(Duration::from_secs(2)).await;
        let _ = self.raft.shutdown().await;
        crate::metrics::METRICS.forget(self.id);
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.election_ms * 5).max(Duration::from_secs(5))
    }

    /// Sends a leader-only request to the leader, waiting out an election if needed.
    pub async fn leader_call(&self, req: ForwardRequest) -> KvResult<ForwardResponse> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            let leader = self.leader();
            let res = match leader {
                Some(l) if l == self.id => self.serve_as_leader_inner(&req).await,
                Some(l) => match self.peer_url_of(l) {
                    Some(url) => self.peers.forward(&url, &req, self.request_timeout()).await,
                    None => Err(ForwardError::NotLeader(None)),
                },
                None => Err(ForwardError::NotLeader(None)),
            };
            match res {
                Ok(r) => return Ok(r),
                Err(ForwardError::Kv(e)) => return Err(e),
                Err(ForwardError::NotLeader(_)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(KvError::NoLeader);
                    }
                    // Not proposed anywhere: safe to retry once a leader is known.
                    let mut m = self.raft.metrics();
                    let _ = tokio::time::timeout(Duration::from_millis(50), m.changed()).await;
                }
            }
        }
    }

    fn peer_url_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.peer_url.clone())
    }

    /// Serves a request forwarded by another member, if this member leads.
    pub async fn serve_as_leader(
        &self,
        req: ForwardRequest,
    ) -> Result<ForwardResponse, ForwardError> {
        self.serve_as_leader_inner(&req).await
    }

    async fn serve_as_leader_inner(
        &self,
        req: &ForwardRequest,
    ) -> Result<ForwardResponse, ForwardError> {
        match req {
            // Any member answers these: the first is how a new member learns its id,
            // the others are a leader transfer's steps.
            ForwardRequest::Members => return Ok(ForwardResponse::Members(self.members())),
            ForwardRequest::HoldElections { ms } => {
                self.hold_elections(*ms);
                return Ok(ForwardResponse::Done);
            }
            ForwardRequest::Campaign => {
                let _ = self.raft.trigger().elect().await;
                return Ok(ForwardResponse::Done);
            }
            _ => {}
        }
        let leader = self.leader();
        if leader != Some(self.id) {
            return Err(ForwardError::NotLeader(leader));
        }
        if self.transferring() && !matches!(req, ForwardRequest::MoveLeader(_)) {
            return Err(self.wait_transfer().await);
        }
        match req {
            ForwardRequest::Members
            | ForwardRequest::HoldElections { .. }
            | ForwardRequest::Campaign => unreachable!("answered above"),
            ForwardRequest::MoveLeader(target) => self.transfer_leadership(*target).await,
            ForwardRequest::Write(r) => {
                let size = bincode::serialized_size(r).unwrap_or(0);
                self.proposer
                    .propose(r.clone(), size)
                    .await
                    .map(ForwardResponse::Write)
            }
            ForwardRequest::ReadIndex => self
                .reads
                .read_index()
                .await
                .map(ForwardResponse::ReadIndex),
            ForwardRequest::LeaseKeepAlive(id) => {
                let ttl = self.shared.read().kv.leases().get(id).map(|l| l.ttl);
                let ttl = ttl.ok_or(KvError::LeaseNotFound)?;
                self.leases.renew(*id, ttl);
                Ok(ForwardResponse::LeaseKeepAlive(ttl))
            }
            ForwardRequest::LeaseTimeToLive(id) => {
                let ttl = self.shared.read().kv.leases().get(id).map(|l| l.ttl);
                let ttl = ttl.ok_or(KvError::LeaseNotFound)?;
                Ok(ForwardResponse::LeaseTimeToLive(
                    self.leases.remaining(*id, ttl),
                    ttl,
                ))
            }
            ForwardRequest::MemberAdd { peer_urls, learner } => {
                self.add_member(peer_urls.clone(), *learner).await
            }
            ForwardRequest::MemberRemove(id) => self.remove_member(*id).await,
            ForwardRequest::MemberPromote(id) => self.promote_member(*id).await,
            ForwardRequest::MemberUpdate { id, peer_urls } => {
                self.update_member(*id, peer_urls).await
            }
        }
    }

    async fn propose(&self, r: Request) -> Result<Response, ForwardError> {
        match self.raft.client_write(r).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(e) => Err(ForwardError::Kv(KvError::Unavailable(e.to_string()))),
        }
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, PeerNode>,
        retain: bool,
    ) -> Result<(), ForwardError> {
        match self.raft.change_membership(change, retain).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ForwardError::Kv(KvError::InvalidArgument(format!(
                    "membership change refused: {e}"
                ))))
            }
            Err(e) => Err(ForwardError::Kv(KvError::Unavailable(e.to_string()))),
        }
    }

    /// The URL a member is reached on: the first of `peer_urls`.
    fn first_peer_url(peer_urls: &[String]) -> Result<String, ForwardError> {
        peer_urls
            .first()
            .cloned()
            .ok_or_else(|| KvError::InvalidArgument("member peer urls not provided".into()).into())
    }

    /// Refuses `peer_urls` when one of `members` other than `except` has one of them.
    fn check_peer_urls_free(
        peer_urls: &[String],
        members: &[Member],
        except: Option<NodeId>,
    ) -> Result<(), ForwardError> {
        if members
            .iter()
            .any(|m| Some(m.id) != except && m.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(KvError::PeerUrlExists.into());
        }
        Ok(())
    }

    async fn add_member(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<ForwardResponse, ForwardError> {
        let url = Self::first_peer_url(&peer_urls)?;
        let existing = self.members();
        Self::check_peer_urls_free(&peer_urls, &existing, None)?;
        let id = {
            let state = self.shared.read();
            loop {
                let id: u64 = rand::random();
                if id != 0 && !state.removed.contains(&id) && !existing.iter().any(|m| m.id == id) {
                    break id;
                }
            }
        };
        // Joining as a learner first keeps quorum intact until the new member has caught
        // up; the promoter chore makes it a voter then, as MemberAdd asked.
        match self
            .raft
            .add_learner(id, PeerNode { peer_url: url }, false)
            .await
        {
            Ok(_) => {}
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(e) => return Err(KvError::Unavailable(e.to_string()).into()),
        }
        self.propose(Request::Member(MemberCommand::Added {
            id,
            voter: !learner,
        }))
        .await?;
        Ok(ForwardResponse::Member(Member {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: learner,
        }))
    }

    async fn remove_member(&self, id: NodeId) -> Result<ForwardResponse, ForwardError> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        if membership.get_node(&id).is_none() {
            return Err(KvError::MemberNotFound.into());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(KvError::InvalidArgument(
                    "cannot remove the last voting member".into(),
                )
                .into());
            }
            // Refuse a removal that would leave the remaining voters without a live quorum.
            let live = self.live_voters(&voters);
            let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let live_remaining = remaining.iter().filter(|v| live.contains(v)).count();
            if live_remaining < remaining.len() / 2 + 1 {
                return Err(KvError::NotEnoughStartedMembers.into());
            }
            self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await?;
        } else {
            self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await?;
        }
        self.propose(Request::Member(MemberCommand::Removed { id }))
            .await?;
        Ok(ForwardResponse::Done)
    }

    /// Voters the leader has heard from recently (itself included).
    fn live_voters(&self, voters: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let last = metrics.last_log_index.unwrap_or(0);
        let mut live = BTreeSet::from([self.id]);
        if let Some(repl) = &metrics.replication {
            for (id, matched) in repl {
                let m = matched.map(|l| l.index).unwrap_or(0);
                if voters.contains(id) && m + 1000 >= last && matched.is_some() {
                    live.insert(*id);
                }
            }
        }
        live
    }

    /// Points the membership at a member's new peer URL (etcd's MemberUpdate: the
    /// member moved; it keeps its id, log and role).
    async fn update_member(
        &self,
        id: NodeId,
        peer_urls: &[String],
    ) -> Result<ForwardResponse, ForwardError> {
        let url = Self::first_peer_url(peer_urls)?;
        let members = self.members();
        if !members.iter().any(|m| m.id == id) {
            return Err(KvError::MemberNotFound.into());
        }
        Self::check_peer_urls_free(peer_urls, &members, Some(id))?;
        // Only the address changes: the voter and learner sets stay as they are.
        self.change_membership(
            ChangeMembers::SetNodes(BTreeMap::from([(id, PeerNode { peer_url: url })])),
            true,
        )
        .await?;
        Ok(ForwardResponse::Done)
    }

    async fn promote_member(&self, id: NodeId) -> Result<ForwardResponse, ForwardError> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        if membership.get_node(&id).is_none() {
            return Err(KvError::MemberNotFound.into());
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(KvError::NotLearner.into());
        }
        if !self.caught_up(id) {
            return Err(KvError::LearnerNotReady.into());
        }
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await?;
        self.propose(Request::Member(MemberCommand::Promoted { id }))
            .await?;
        Ok(ForwardResponse::Done)
    }

    /// Whether the leader's replication to `id` is close to the end of the log.
    fn caught_up(&self, id: NodeId) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned())
            .flatten();
        matched.is_some_and(|m| m.index + 100 >= last)
    }

    /// Waits until this member has applied everything committed before now.
    pub async fn read_barrier(&self) -> KvResult<()> {
        let ForwardResponse::ReadIndex(index) = self.leader_call(ForwardRequest::ReadIndex).await?
        else {
            return Err(KvError::Unavailable("unexpected read index answer".into()));
        };
        if self
            .shared
            .read()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
            >= index
        {
            return Ok(());
        }
        self.raft
            .wait(Some(self.request_timeout()))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| KvError::Timeout)?;
        Ok(())
    }

    /// Proposes a write through the leader and returns what applying it gave.
    pub async fn write(&self, cmd: WriteCommand) -> KvResult<WriteResult> {
        self.write_request(Request::Write(cmd)).await
    }

    /// Proposes a client's write, applied only if `user` may make it (checked where it
    /// lands in the log, against the auth state there).
    pub async fn write_as(&self, user: Option<String>, cmd: WriteCommand) -> KvResult<WriteResult> {
        self.write_request(Request::AsUser { user, write: cmd })
            .await
    }

    /// Proposes a change to users, roles or auth from `caller`.
    pub async fn auth_change(
        &self,
        caller: Option<String>,
        cmd: crate::auth::AuthCommand,
    ) -> KvResult<()> {
        match self
            .leader_call(ForwardRequest::Write(Request::Auth { caller, cmd }))
            .await?
        {
            ForwardResponse::Write(Response::Auth(res)) => Ok(res?),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn write_request(&self, req: Request) -> KvResult<WriteResult> {
        if bincode::serialized_size(&req).unwrap_or(u64::MAX) > MAX_REQUEST_BYTES as u64 {
            return Err(KvError::RequestTooLarge);
        }
        let res = match self.leader_call(ForwardRequest::Write(req)).await? {
            ForwardResponse::Write(Response::Write(res)) => res,
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        };
        if matches!(res, Err(KvError::NoSpace)) && !self.shared.read().out_of_space() {
            // Over the quota: raise NOSPACE for this member, as etcd does, so every
            // write that adds data is refused until an operator clears it.
            let alarm = AlarmMember {
                member_id: self.id,
                alarm: AlarmType::NoSpace,
            };
            match self
                .member_write(MemberCommand::Alarm {
                    alarm,
                    active: true,
                })
                .await
            {
                Ok(()) => tracing::warn!("store quota exceeded: NOSPACE alarm raised"),
                Err(e) => tracing::warn!(error = %e, "raising the NOSPACE alarm failed"),
            }
        }
        res
    }

    /// The raised alarms this member has applied.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.shared.read().alarms.iter().copied().collect()
    }

    /// Lists, raises or clears alarms (etcd's Maintenance.Alarm). A list is read after
    /// a read barrier, so it shows every alarm committed before it.
    pub async fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> KvResult<Vec<AlarmMember>> {
        let matching = |s: &crate::state_machine::State| -> Vec<AlarmMember> {
            s.alarms
                .iter()
                .filter(|a| member_id == 0 || a.member_id == member_id)
                .filter(|a| alarm == AlarmType::None || a.alarm == alarm)
                .copied()
                .collect()
        };
        let one = AlarmMember { member_id, alarm };
        match action {
            AlarmAction::Get => {
                self.read_barrier().await?;
                Ok(matching(&self.shared.read()))
            }
            AlarmAction::Activate => {
                if alarm == AlarmType::None {
                    return Ok(Vec::new());
                }
                self.member_write(MemberCommand::Alarm {
                    alarm: one,
                    active: true,
                })
                .await?;
                Ok(vec![one])
            }
            AlarmAction::Deactivate => {
                self.read_barrier().await?;
                if !self.shared.read().alarms.contains(&one) {
                    return Ok(Vec::new());
                }
                self.member_write(MemberCommand::Alarm {
                    alarm: one,
                    active: false,
                })
                .await?;
                Ok(vec![one])
            }
        }
    }

    async fn member_write(&self, cmd: MemberCommand) -> KvResult<()> {
        self.leader_call(ForwardRequest::Write(Request::Member(cmd)))
            .await
            .map(|_| ())
    }

    /// The members, as etcd's MemberList shows them: the membership Raft is using
    /// (the latest in the log), with the attributes members published.
    pub fn members(&self) -> Vec<Member> {
        let effective = self.raft.metrics().borrow().membership_config.clone();
        let membership = effective.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let state = self.shared.read();
        membership
            .nodes()
            .map(|(id, node)| {
                let attrs = state.members.get(id).cloned().unwrap_or_default();
                Member {
                    id: *id,
                    name: attrs.name,
                    peer_urls: vec![node.peer_url.clone()],
                    client_urls: attrs.client_urls,
                    is_learner: !voters.contains(id) && !attrs.pending_voter,
                }
            })
            .collect()
    }

    /// Adds a member (etcd's MemberAdd).
    pub async fn member_add(&self, peer_urls: Vec<String>, learner: bool) -> KvResult<Member> {
        match self
            .leader_call(ForwardRequest::MemberAdd { peer_urls, learner })
            .await?
        {
            ForwardResponse::Member(m) => Ok(m),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Removes a member (etcd's MemberRemove).
    pub async fn member_remove(&self, id: NodeId) -> KvResult<()> {
        self.leader_call(ForwardRequest::MemberRemove(id)).await?;
        Ok(())
    }

    /// Changes a member's peer URLs (etcd's MemberUpdate).
    pub async fn member_update(&self, id: NodeId, peer_urls: Vec<String>) -> KvResult<()> {
        self.leader_call(ForwardRequest::MemberUpdate { id, peer_urls })
            .await?;
        Ok(())
    }

    /// Promotes a learner (etcd's MemberPromote).
    pub async fn member_promote(&self, id: NodeId) -> KvResult<()> {
        self.leader_call(ForwardRequest::MemberPromote(id)).await?;
        Ok(())
    }

    /// Grants a lease; `id` 0 picks a fresh one.
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse> {
        loop {
            let pick = if id == 0 {
                (rand::random::<u64>() >> 1).max(1) as i64
            } else {
                id
            };
            match self.write(WriteCommand::LeaseGrant { id: pick, ttl }).await {
                Ok(WriteResult::LeaseGrant(r)) => return Ok(r),
                Ok(other) => return Err(KvError::Unavailable(format!("unexpected {other:?}"))),
                Err(KvError::LeaseExists) if id == 0 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renews a lease; returns its TTL.
    pub async fn lease_keep_alive(&self, id: i64) -> KvResult<i64> {
        match self.leader_call(ForwardRequest::LeaseKeepAlive(id)).await? {
            ForwardResponse::LeaseKeepAlive(ttl) => Ok(ttl),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Remaining and granted TTL of a lease.
    pub async fn lease_time_to_live(&self, id: i64) -> KvResult<(i64, i64)> {
        match self
            .leader_call(ForwardRequest::LeaseTimeToLive(id))
            .await?
        {
            ForwardResponse::LeaseTimeToLive(left, granted) => Ok((left, granted)),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends a heartbeat every `heartbeat_ms` while this member leads (openraft's own
    /// heartbeats are off: their period is also its RPC time limit, see `start`).
    fn spawn_heartbeats(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = Duration::from_millis(self.config.heartbeat_ms);
        self.workers
            .spawn("raft-heartbeat", Interval::every(period), move || {
                let weak = weak.clone();
                orbit_worker::job(async move {
                    let Some(node) = weak.upgrade() else {
                        return Ok(());
                    };
                    // A transfer keeps quiet so the followers' leases run out.
                    if node.is_leader() && !node.transferring() {
                        node.raft()
                            .trigger()
                            .heartbeat()
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            });
    }

    /// The chores of a member, each its own worker on the chore tick.
    fn spawn_chores(self: &Arc<Self>) {
        let tick = Interval::every(Duration::from_millis(self.config.heartbeat_ms.max(50)));
        let weak = Arc::downgrade(self);
        let published = Arc::new(AtomicBool::new(false));
        self.workers.spawn("member-publish", tick, move || {
            let (weak, published) = (weak.clone(), published.clone());
            orbit_worker::job(async move {
                if let Some(node) = weak.upgrade() {
                    if !published.load(Ordering::Relaxed) && node.publish().await {
                        published.store(true, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        });
        let weak = Arc::downgrade(self);
        self.workers.spawn("lease-expiry", tick, move || {
            if let Some(node) = weak.upgrade() {
                node.expire_leases();
            }
            orbit_worker::job(async { Ok(()) })
        });
        let weak = Arc::downgrade(self);
        self.workers.spawn("auto-compaction", tick, move || {
            if let Some(node) = weak.upgrade() {
                node.auto_compact();
            }
            orbit_worker::job(async { Ok(()) })
        });
        let weak = Arc::downgrade(self);
        let last_leader = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.workers.spawn("raft-metrics", tick, move || {
            if let Some(node) = weak.upgrade() {
                let s = node.status();
                // The last leader known: a spell without one between two leaders
                // is still one change.
                let previous = last_leader.load(Ordering::Relaxed);
                if s.leader != 0 {
                    last_leader.store(s.leader, Ordering::Relaxed);
                }
                crate::metrics::METRICS.observe(&s, previous);
            }
            orbit_worker::job(async { Ok(()) })
        });
        let weak = Arc::downgrade(self);
        self.workers.spawn("learner-promotion", tick, move || {
            let weak = weak.clone();
            orbit_worker::job(async move {
                if let Some(node) = weak.upgrade() {
                    node.promote_caught_up_learners().await;
                }
                Ok(())
            })
        });
    }

    /// The handle of the member's worker called `name`.
    pub fn worker(&self, name: &str) -> Option<orbit_worker::Handle> {
        self.workers.handle(name)
    }

    /// The status of the member's background workers.
    pub fn worker_statuses(&self) -> Vec<orbit_worker::Status> {
        self.workers.statuses()
    }

    /// Makes this member's name and client URL known to the cluster; true once done.
    async fn publish(&self) -> bool {
        let want = (self.config.name.clone(), vec![self.advertised_client_url()]);
        let have = self
            .shared
            .read()
            .members
            .get(&self.id)
            .map(|m| (m.name.clone(), m.client_urls.clone()));
        if have.as_ref() == Some(&want) {
            return true;
        }
        if self.leader().is_none() {
            return false;
        }
        self.member_write(MemberCommand::Publish {
            id: self.id,
            name: want.0,
            client_urls: want.1,
        })
        .await
        .is_ok()
    }

    /// The client URL with the port actually bound.
    pub fn advertised_client_url(&self) -> String {
        let scheme = if self.config.tls.client_tls() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.client_addr)
    }

    fn expire_leases(self: &Arc<Self>) {
        let metrics = self.raft.metrics().borrow().clone();
        let leader_term = (metrics.state == ServerState::Leader).then_some(metrics.current_term);
        let expired = {
            let state = self.shared.read();
            self.leases.tick(leader_term, state.kv.leases())
        };
        for id in expired {
            let node = self.clone();
            tokio::spawn(async move {
                match node.write(WriteCommand::LeaseRevoke { id }).await {
                    Ok(_) | Err(KvError::LeaseNotFound) => {
                        tracing::debug!(lease = id, "lease expired")
                    }
                    Err(e) => tracing::warn!(lease = id, error = %e, "expiring lease failed"),
                }
            });
        }
    }

    /// Commits the compaction the compactor asks for, one at a time.
    fn auto_compact(self: &Arc<Self>) {
        if self.compacting.load(Ordering::Acquire) {
            return;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let leader_term = (metrics.state == ServerState::Leader).then_some(metrics.current_term);
        let target = {
            let state = self.shared.read();
            let pins = state
                .kv
                .range(&RangeRequest::prefix(orbit_kv::PIN_PREFIX))
                .map(|r| orbit_kv::pin::lowest_pin(r.kvs.iter().map(|kv| kv.value.as_slice())))
                .unwrap_or(None);
            self.compactor.tick(
                leader_term,
                state.kv.revision(),
                state.kv.compact_revision(),
                pins,
                std::time::Instant::now(),
            )
        };
        let Some(rev) = target else { return };
        self.compacting.store(true, Ordering::Release);
        let node = self.clone();
        tokio::spawn(async move {
            match node.write(WriteCommand::Compact(rev)).await {
                Ok(_) => tracing::debug!(revision = rev, "auto-compacted"),
                Err(KvError::Compacted { .. }) => {}
                Err(e) => tracing::warn!(revision = rev, error = %e, "auto-compaction failed"),
            }
            node.compacting.store(false, Ordering::Release);
        });
    }

    async fn promote_caught_up_learners(&self) {
        if self.leader() != Some(self.id) {
            return;
        }
        let pending: Vec<NodeId> = {
            let state = self.shared.read();
            let voters: BTreeSet<NodeId> = state.membership.membership().voter_ids().collect();
            state
                .members
                .iter()
                .filter(|(id, m)| m.pending_voter && !voters.contains(id))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in pending {
            if self.caught_up(id) {
                match self.promote_member(id).await {
                    Ok(_) => tracing::info!(member = format_args!("{id:x}"), "promoted to voter"),
                    Err(e) => {
                        tracing::warn!(member = format_args!("{id:x}"), error = %e, "promotion failed")
                    }
                }
            }
        }
    }

    /// Whether this member knows it was removed from its cluster: it applied its own
    /// removal, or a peer refused its messages for that reason. A removed member can
    /// never rejoin; its data dir is of no further use (etcd exits in this case).
    pub fn is_removed(&self) -> bool {
        self.peers.told_removed() || self.shared.read().removed.contains(&self.id)
    }

    /// Whether this member currently leads its cluster.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Whether this member leads and a quorum has acknowledged it within two election
    /// timeouts — a member restarted from an old leader's state may believe it leads
    /// a cluster that has long moved on without it.
    pub fn leads_with_quorum(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms < 2 * self.config.election_ms)
    }

    /// The voting members of the membership Raft is using.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().voter_ids().collect()
    }

    /// Whether a membership change is under way (a joint configuration, or the latest
    /// configuration not yet committed): the next change must wait for it.
    pub fn membership_changing(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let m = &metrics.membership_config;
        let joint = m.membership().get_joint_config().len() > 1;
        let uncommitted = m.log_id().map(|l| l.index) > metrics.last_applied.map(|l| l.index);
        joint || uncommitted
    }

    /// Whether the member `id` answers on its peer URL within `timeout`.
    pub async fn probe(&self, id: NodeId, timeout: Duration) -> bool {
        let Some(url) = self.peer_url_of(id) else {
            return false;
        };
        matches!(
            self.peers
                .forward(&url, &ForwardRequest::Members, timeout)
                .await,
            Ok(ForwardResponse::Members(_))
        )
    }

    /// Status as etcd's Maintenance.Status reports it.
    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let state = self.shared.read();
        NodeStatus {
            id: self.id,
            leader: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            raft_index: metrics.last_log_index.unwrap_or(0),
            applied_index: state.last_applied.map(|l| l.index).unwrap_or(0),
            revision: state.kv.revision(),
            db_size: state.kv.size() as i64,
            is_learner: !metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.id),
        }
    }
}

/// A member's status.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Member id.
    pub id: NodeId,
    /// Leader id, 0 if none is known.
    pub leader: NodeId,
    /// Raft term.
    pub term: u64,
    /// Last log index.
    pub raft_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Store revision.
    pub revision: i64,
    /// Bytes of data.
    pub db_size: i64,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// The time limit of one Raft RPC (see `StoreNode::start`): a third of the election
/// timeout, at least the heartbeat interval (always below the election timeout).
fn rpc_timeout_ms(config: &StoreConfig) -> u64 {
    (config.election_ms / 3).max(config.heartbeat_ms)
}

fn tls_err(e: orbit_tls::TlsError) -> StoreError {
    StoreError::Config(format!("TLS: {e}"))
}

async fn bind(url: &str) -> Result<tokio::net::TcpListener, StoreError> {
    let addr = crate::config::url_addr(url)?;
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| StoreError::Config(format!("cannot listen on {url}: {e}")))
}

/// Makes `dir` (and its parents), readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The id of the member whose data dir this is.
pub fn member_id_of(data_dir: &Path) -> Result<NodeId, StoreError> {
    read_member_file(&data_dir.join("member.json"))?
        .map(|m| m.id)
        .ok_or_else(|| {
            StoreError::Config(format!(
                "{} is not a store member's data dir (no member.json)",
                data_dir.display()
            ))
        })
}

fn read_member_file(path: &Path) -> Result<Option<MemberFile>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Records in `data_dir` that it is member `id` named `name` of the cluster `token`.
pub(crate) fn write_member(
    data_dir: &Path,
    id: NodeId,
    name: &str,
    token: &str,
) -> Result<(), StoreError> {
    write_member_file(
        &data_dir.join("member.json"),
        &MemberFile {
            format: 1,
            id,
            name: name.to_string(),
            token: token.to_string(),
        },
    )
}

fn write_member_file(path: &Path, m: &MemberFile) -> Result<(), StoreError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(m).expect("member file serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The members of a running cluster, asked of whichever of `peer_urls` answers first
/// within `timeout` each; `None` when none answers.
/// `tls` gives the peer certificate and CA for `https://` peers.
pub async fn find_cluster(
    peer_urls: &[String],
    timeout: Duration,
    tls: &orbit_tls::StoreTls,
) -> Option<Vec<Member>> {
    let peers = Peers::new(tls.peer_client().ok().flatten());
    for url in peer_urls {
        if let Ok(ForwardResponse::Members(m)) =
            peers.forward(url, &ForwardRequest::Members, timeout).await
        {
            return Some(m);
        }
    }
    None
}

/// Finds the id the cluster gave this member when it was added (etcd's
/// `--initial-cluster-state existing`), by asking the other listed members.
async fn find_my_id(config: &StoreConfig, peers: &Peers) -> Result<NodeId, StoreError> {
    let others: Vec<&String> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != config.name)
        .map(|(_, url)| url)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for url in &others {
            let asked = peers
                .forward(url, &ForwardRequest::Members, Duration::from_secs(2))
                .await;
            if let Ok(ForwardResponse::Members(members)) = asked {
                return members
                    .iter()
                    .find(|m| m.peer_urls.contains(&config.peer_url))
                    .map(|m| m.id)
                    .ok_or_else(|| {
                        StoreError::Config(format!(
                            "the cluster has no member with peer URL {}; add it first (etcdctl member add)",
                            config.peer_url
                        ))
                    });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Config(
                "could not reach any member of the existing cluster to learn this member's id"
                    .into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
