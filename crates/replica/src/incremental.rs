//! Mode incremental: the replicas grow and shrink their store cluster themselves
//! (seed 000's algorithm, made safe).
//!
//! - **One cluster per token.** Only the designated replica (`bootstrap_replica`, by
//!   default the lowest id, or one started with `bootstrap = true`) creates a cluster,
//!   only when its data dir has never belonged to one, and only after no other
//!   replica's peer URL answers. Its member takes a random id, so ids are never reused
//!   even if a cluster is ever created again under the same name.
//! - **One coordinator.** Only the replica whose member leads changes the membership,
//!   one change at a time, and only once the previous change is committed; Raft
//!   refuses proposals from a deposed leader, so a stale coordinator cannot race.
//! - **Growing.** While voters < `number_of_nodes(live replicas)` and no learner is
//!   pending, the coordinator adds the lowest-id live replica without a member as a learner and
//!   writes it an assignment (`assign/<replica id>`: member id). That replica starts its
//!   member with that id, catches up, and the coordinator promotes it and deletes the
//!   assignment (a voter's id is never started again from an empty dir); the replica's
//!   heartbeat then says it runs a store node. A learner not promoted within `learner_timeout_ms`
//!   is removed (and gives up by itself), and the next replica is tried.
//! - **Shrinking and healing.** A member is dead when its replica's lease has expired
//!   (or its replica, alive, says it runs no member: it lost its data dir) and it has
//!   failed its health check (its peer URL does not answer) for `member_dead_ms`; dead members are removed first, then, while voters > required,
//!   the member of the highest replica id other than the coordinator's own. The store
//!   refuses a removal that would leave the remaining voters without a live quorum.
//! - **Leaving.** A replica whose member was removed (it applied its own removal, a
//!   peer refused it for that reason, or — leaderless for a learner timeout — the
//!   cluster asked through another replica's peer URL no longer lists it) stops it and
//!   moves its data dir aside to `store.retired`; if asked again it joins as a new
//!   member.

use crate::table::{self, number_of_nodes, table_prefix};
use crate::{store_config, NodeSlot, ReplicaConfig, ReplicaError};
use orbit_kv::{DeleteRequest, Kv, KvResult, PutRequest, RangeRequest};
use orbit_store::{find_cluster, ClusterState, StoreNode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a health check of another member may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a replica that failed to join is passed over, in learner timeouts.
const SKIP_TIMEOUTS: u32 = 3;

/// What the coordinator tells a replica it added as a learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Assignment {
    /// Format version.
    v: u32,
    /// The member id the cluster gave it.
    member_id: u64,
    /// The peer URL it was added with.
    peer_url: String,
}

fn assign_prefix(token: &str) -> String {
    format!("{}assign/", table_prefix(token))
}

fn assign_key(token: &str, replica: u64) -> String {
    format!("{}{replica}", assign_prefix(token))
}

/// Deletes the assignment of `replica`'s member, if it has one: its member was
/// promoted or removed.
async fn end_assignment(kv: &dyn Kv, token: &str, replica: Option<u64>) -> KvResult<()> {
    if let Some(r) = replica {
        kv.delete(DeleteRequest::key(assign_key(token, r))).await?;
    }
    Ok(())
}

/// Starts the member a replica's data dir already holds, or, on the designated
/// replica with a fresh data dir and no cluster answering, creates the cluster.
pub(crate) async fn start(config: &ReplicaConfig) -> Result<Option<Arc<StoreNode>>, ReplicaError> {
    let store = store_config(config);
    if store.data_dir.join("member.json").exists() {
        // It has belonged to a cluster: restart that member, never bootstrap.
        mark_belonged(&config.data_dir)?;
        return Ok(Some(StoreNode::start(store).await?));
    }
    let designated = config.bootstrap || config.bootstrapper() == config.replica_id;
    if !designated {
        return Ok(None);
    }
    if has_belonged(&config.data_dir) {
        tracing::info!("this data dir has belonged to a cluster; it never creates one, only joins");
        return Ok(None);
    }
    let others: Vec<String> = config
        .replicas
        .iter()
        .filter(|r| r.id != config.replica_id)
        .map(|r| r.peer_url.clone())
        .collect();
    if let Some(members) = find_cluster(&others, PROBE_TIMEOUT, &config.store_tls).await {
        tracing::info!(
            members = members.len(),
            "a cluster already runs; this replica joins it when asked"
        );
        return Ok(None);
    }
    tracing::info!("no cluster answers; creating a one-member cluster");
    mark_belonged(&config.data_dir)?;
    let node = StoreNode::start(orbit_store::StoreConfig {
        initial_cluster_state: ClusterState::New,
        member_id: Some(fresh_member_id()),
        ..store
    })
    .await?;
    Ok(Some(node))
}

fn fresh_member_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// The loop every replica runs in mode incremental.
pub(crate) struct Manager {
    config: ReplicaConfig,
    kv: Arc<dyn Kv>,
    slot: NodeSlot,
    runs_node: Arc<AtomicBool>,
    /// When this replica's member was first seen not being a voter.
    learner_since: Option<Instant>,
    /// When this replica's member was first seen without a known leader.
    leaderless_since: Option<Instant>,
    /// Member ids this replica gave up on; never started again.
    given_up: BTreeSet<u64>,
    coordinator: Coordinator,
}

impl Manager {
    pub(crate) fn new(
        config: ReplicaConfig,
        kv: Arc<dyn Kv>,
        slot: NodeSlot,
        runs_node: Arc<AtomicBool>,
    ) -> Manager {
        Manager {
            config,
            kv,
            slot,
            runs_node,
            learner_since: None,
            leaderless_since: None,
            given_up: BTreeSet::new(),
            coordinator: Coordinator::default(),
        }
    }

    /// Runs the manager as the `cluster-manager` worker of `workers`, a step every
    /// replica heartbeat.
    pub(crate) fn spawn(self, workers: &orbit_worker::Group) -> orbit_worker::Handle {
        let tick = Duration::from_millis(self.config.replica_heartbeat_ms);
        let me = Arc::new(tokio::sync::Mutex::new(self));
        workers.spawn(
            "cluster-manager",
            orbit_worker::Interval::every(tick).starting_now(),
            move || {
                let me = me.clone();
                orbit_worker::job(async move { me.lock().await.step().await })
            },
        )
    }

    /// One step: tend this replica's own member, then coordinate if it leads.
    async fn step(&mut self) -> orbit_worker::JobResult {
        self.tend_own_member().await;
        match self.slot.get() {
            Some(node) if node.leads_with_quorum() => self
                .coordinate(&node)
                .await
                .map_err(|e| format!("coordination step: {e}")),
            _ => {
                self.coordinator = Coordinator::default();
                Ok(())
            }
        }
    }

    fn learner_timeout(&self) -> Duration {
        Duration::from_millis(self.config.learner_timeout_ms)
    }

    /// Starts the member the coordinator assigned, gives up on one that did not catch
    /// up, and retires one that was removed.
    async fn tend_own_member(&mut self) {
        let Some(node) = self.slot.get() else {
            self.runs_node.store(false, Ordering::Relaxed);
            if let Err(e) = self.join_if_assigned().await {
                tracing::debug!(error = %e, "reading this replica's assignment failed");
            }
            return;
        };
        if node.is_removed() {
            self.retire("it was removed from the cluster").await;
            return;
        }
        if self.forgotten(&node).await {
            self.retire("the cluster no longer lists it").await;
            return;
        }
        if node.voters().contains(&node.id()) {
            self.learner_since = None;
            self.runs_node.store(true, Ordering::Relaxed);
            return;
        }
        self.runs_node.store(false, Ordering::Relaxed);
        // The coordinator removes a learner after the same timeout; waiting a little
        // longer lets it be promoted at the last moment rather than abandoned.
        let since = *self.learner_since.get_or_insert_with(Instant::now);
        if since.elapsed() > self.learner_timeout() + self.learner_timeout() / 4 {
            self.given_up.insert(node.id());
            self.retire("it did not catch up in time").await;
        }
    }

    /// Whether the member has gone without a leader for a learner timeout while the
    /// cluster, asked through another replica's peer URL, does not list it: removed
    /// while this replica was away, with no peer left that could say so (the members
    /// it knew are gone, or their URLs now serve their successors).
    async fn forgotten(&mut self, node: &StoreNode) -> bool {
        let leader = node.status().leader;
        // A leader no quorum answers is no leader.
        let led = leader != 0 && (leader != node.id() || node.leads_with_quorum());
        if led {
            self.leaderless_since = None;
            return false;
        }
        let since = *self.leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.learner_timeout() {
            return false;
        }
        let others: Vec<String> = self
            .config
            .replicas
            .iter()
            .filter(|r| r.id != self.config.replica_id)
            .map(|r| r.peer_url.clone())
            .collect();
        match find_cluster(&others, PROBE_TIMEOUT, &self.config.store_tls).await {
            Some(members) => !members.is_empty() && !members.iter().any(|m| m.id == node.id()),
            None => false,
        }
    }

    async fn join_if_assigned(&mut self) -> KvResult<()> {
        let key = assign_key(&self.config.token, self.config.replica_id);
        let got = self.kv.range(RangeRequest::key(key)).await?;
        let Some(a) = got
            .kvs
            .first()
            .and_then(|kv| serde_json::from_slice::<Assignment>(&kv.value).ok())
        else {
            return Ok(());
        };
        if self.given_up.contains(&a.member_id) {
            return Ok(());
        }
        tracing::info!(
            member = format_args!("{:x}", a.member_id),
            "joining the store cluster as a learner"
        );
        if let Err(e) = mark_belonged(&self.config.data_dir) {
            tracing::warn!(error = %e, "could not record that this data dir joins a cluster");
            return Ok(());
        }
        let started = StoreNode::start(orbit_store::StoreConfig {
            initial_cluster_state: ClusterState::Existing,
            member_id: Some(a.member_id),
            ..store_config(&self.config)
        })
        .await;
        match started {
            Ok(node) => {
                self.slot.set(Some(node));
                self.learner_since = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start the assigned member");
                self.given_up.insert(a.member_id);
            }
        }
        Ok(())
    }

    /// Stops this replica's member and moves its data dir aside.
    async fn retire(&mut self, why: &str) {
        self.runs_node.store(false, Ordering::Relaxed);
        self.learner_since = None;
        self.leaderless_since = None;
        if let Some(node) = self.slot.set(None) {
            tracing::warn!(
                member = format_args!("{:x}", node.id()),
                "stopping this replica's store member: {why}"
            );
            node.shutdown().await;
        }
        let dir = store_config(&self.config).data_dir;
        let aside = retired_dir(&dir);
        let moved = std::fs::remove_dir_all(&aside)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .and_then(|()| std::fs::rename(&dir, &aside));
        if let Err(e) = moved {
            tracing::error!(error = %e, dir = %dir.display(), "could not move the retired member's data dir aside");
        }
    }

    /// One coordination step on the leader's replica: at most one membership change.
    async fn coordinate(&mut self, node: &Arc<StoreNode>) -> KvResult<()> {
        if node.membership_changing() {
            return Ok(());
        }
        let token = &self.config.token;
        let members = node.members();
        let voters = node.voters();
        let rows = table::read_table(&*self.kv, token).await?;
        // Client-only replicas (no row) never hold a member: they do not count.
        let live: BTreeSet<u64> = rows
            .iter()
            .filter(|r| r.live && self.config.replicas.iter().any(|c| c.id == r.last.id))
            .map(|r| r.last.id)
            .collect();
        let required = number_of_nodes(live.len(), self.config.max_store_nodes);
        let replica_of = |m: &orbit_kv::Member| {
            self.config
                .replicas
                .iter()
                .find(|r| m.peer_urls.contains(&r.peer_url))
                .map(|r| r.id)
        };
        let learner_timeout = self.learner_timeout();
        let c = &mut self.coordinator;
        let now = Instant::now();
        c.skip.retain(|_, until| *until > now);

        // Health of the other members, and how long each has been failing.
        for m in members.iter().filter(|m| m.id != node.id()) {
            if node.probe(m.id, PROBE_TIMEOUT).await {
                c.unhealthy_since.remove(&m.id);
            } else {
                c.unhealthy_since.entry(m.id).or_insert(now);
            }
        }
        let present: BTreeSet<u64> = members.iter().map(|m| m.id).collect();
        c.unhealthy_since.retain(|id, _| present.contains(id));
        c.learner_since.retain(|id, _| present.contains(id));
        let dead_after = Duration::from_millis(self.config.member_dead_ms);
        // A replica that is live but says it runs no member has lost it (its data dir
        // was replaced, say): that member is as dead as one whose replica is gone.
        let runs_member =
            |r: u64| live.contains(&r) && rows.iter().any(|t| t.last.id == r && t.last.store_node);
        let is_dead = |m: &orbit_kv::Member, c: &Coordinator| {
            m.id != node.id()
                && replica_of(m).is_none_or(|r| !runs_member(r))
                && c.unhealthy_since
                    .get(&m.id)
                    .is_some_and(|t| t.elapsed() >= dead_after)
        };

        // Learners: promote once caught up, remove once out of time.
        let learners: Vec<&orbit_kv::Member> =
            members.iter().filter(|m| !voters.contains(&m.id)).collect();
        for m in &learners {
            let since = *c.learner_since.entry(m.id).or_insert(now);
            match node.member_promote(m.id).await {
                Ok(()) => {
                    tracing::info!(member = format_args!("{:x}", m.id), "promoted to voter");
                    // A voter's id must never be started again from an empty data dir
                    // (it could vote without the log it promised to keep).
                    end_assignment(&*self.kv, token, replica_of(m)).await?;
                    return Ok(());
                }
                Err(orbit_kv::KvError::LearnerNotReady) => {}
                Err(e) => return Err(e),
            }
            if since.elapsed() >= learner_timeout {
                tracing::warn!(
                    member = format_args!("{:x}", m.id),
                    "learner did not catch up in time; removing it"
                );
                node.member_remove(m.id).await?;
                if let Some(r) = replica_of(m) {
                    c.skip.insert(r, now + learner_timeout * SKIP_TIMEOUTS);
                }
                end_assignment(&*self.kv, token, replica_of(m)).await?;
                return Ok(());
            }
        }

        // Dead voters go first.
        for m in members.iter().filter(|m| voters.contains(&m.id)) {
            if is_dead(m, c) {
                tracing::warn!(member = format_args!("{:x}", m.id), name = %m.name, "removing a dead member");
                node.member_remove(m.id).await?;
                end_assignment(&*self.kv, token, replica_of(m)).await?;
                return Ok(());
            }
        }

        // One learner at a time: it catches up, is promoted or removed, then the next.
        if learners.is_empty() && voters.len() < required {
            let candidate = self.config.replicas.iter().filter(|r| {
                live.contains(&r.id)
                    && !c.skip.contains_key(&r.id)
                    && !members.iter().any(|m| m.peer_urls.contains(&r.peer_url))
                    // A replica still reporting a member must first retire it.
                    && !rows.iter().any(|t| t.last.id == r.id && t.last.store_node)
            });
            if let Some(r) = candidate.min_by_key(|r| r.id) {
                let m = node.member_add(vec![r.peer_url.clone()], true).await?;
                tracing::info!(
                    replica = r.id,
                    member = format_args!("{:x}", m.id),
                    "added a learner"
                );
                c.learner_since.insert(m.id, now);
                let a = Assignment {
                    v: 1,
                    member_id: m.id,
                    peer_url: r.peer_url.clone(),
                };
                let body = serde_json::to_vec(&a).expect("assignment serializes");
                self.kv
                    .put(PutRequest::new(assign_key(token, r.id), body))
                    .await?;
                return Ok(());
            }
        }

        if voters.len() > required && learners.is_empty() {
            // A voter failing its health check is on its way out as a dead member: a
            // replica's lease can run out before its member counts as dead, and
            // shrinking a healthy voter meanwhile would leave the dead one voting.
            let failing = members.iter().any(|m| {
                voters.contains(&m.id) && m.id != node.id() && c.unhealthy_since.contains_key(&m.id)
            });
            if failing {
                return Ok(());
            }
            // Members whose replica is gone first, then members no replica owns, then
            // the highest replica id; never our own.
            let victim = members
                .iter()
                .filter(|m| voters.contains(&m.id) && m.id != node.id())
                .max_by_key(|m| {
                    let owner = replica_of(m);
                    (
                        owner.is_some_and(|r| !runs_member(r)),
                        owner.map_or(u64::MAX, |r| r),
                    )
                });
            if let Some(m) = victim {
                tracing::info!(member = format_args!("{:x}", m.id), name = %m.name, required, "removing a member the cluster no longer needs");
                node.member_remove(m.id).await?;
                end_assignment(&*self.kv, token, replica_of(m)).await?;
                return Ok(());
            }
        }

        // Assignments left by a coordinator that died between two steps: for members
        // gone, or already voting.
        let assigned = self
            .kv
            .range(RangeRequest::prefix(assign_prefix(token)))
            .await?;
        for kv in &assigned.kvs {
            if let Ok(a) = serde_json::from_slice::<Assignment>(&kv.value) {
                if !present.contains(&a.member_id) || voters.contains(&a.member_id) {
                    self.kv.delete(DeleteRequest::key(kv.key.clone())).await?;
                }
            }
        }
        Ok(())
    }
}

/// The file that records that a replica's data dir has belonged to a cluster.
fn belonged_marker(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("has-belonged-to-a-cluster")
}

/// Whether the data dir has ever run a member (of any cluster): then it never
/// creates a cluster, even after its member was retired.
fn has_belonged(data_dir: &std::path::Path) -> bool {
    belonged_marker(data_dir).exists()
}

/// Records, durably, that the data dir runs a member from now on.
fn mark_belonged(data_dir: &std::path::Path) -> std::io::Result<()> {
    if has_belonged(data_dir) {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir)?;
    let f = std::fs::File::create(belonged_marker(data_dir))?;
    f.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Where a retired member's data dir is moved.
fn retired_dir(dir: &std::path::Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".retired");
    dir.with_file_name(name)
}

/// What the coordinator remembers between steps (lost when leadership moves, which
/// only delays a removal).
#[derive(Default)]
struct Coordinator {
    /// Since when each failing member has failed its health check.
    unhealthy_since: HashMap<u64, Instant>,
    /// Since when each learner has been one.
    learner_since: HashMap<u64, Instant>,
    /// Replicas passed over until the given time, after a failed join.
    skip: HashMap<u64, Instant>,
}
