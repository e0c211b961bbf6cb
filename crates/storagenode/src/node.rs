//! A running storage node: identity, piece store, piecestore server, and its chores —
//! checking in with each trusted satellite and settling served orders.

use crate::orders::Orders;
use crate::pieces::PieceStore;
use crate::retain::RetainStore;
use crate::serials::UsedSerials;
use crate::service::{unix_now, PiecestoreService};
use anyhow::Context;
use orbit_identity::{Identity, PublicKey};
use orbit_protocol::satellite_pb as pb;
use orbit_protocol::{encode_served, CheckIn};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A satellite the node trusts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedSatellite {
    /// Its API URL.
    pub url: String,
    /// Its public key, hex.
    pub key: String,
}

/// A node's configuration (`storagenode.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Identity, pieces, serials and orders live here.
    pub dir: PathBuf,
    /// Where the piecestore listens (port 0: any).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL satellites and uplinks reach it on (default: `https://` + the bound
    /// address); the piecestore speaks TLS only.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Bytes of pieces it may store.
    pub capacity: u64,
    /// Satellites whose order limits it accepts.
    #[serde(default, rename = "satellite")]
    pub satellites: Vec<TrustedSatellite>,
    /// Seconds between check-ins (and settlements).
    #[serde(default = "default_interval")]
    pub check_in_s: u64,
    /// Garbage collection trashes only pieces stored this long before a filter's
    /// creation time, seconds: an upload's pieces land before its segment is committed.
    #[serde(default = "default_retain_skew")]
    pub retain_skew_s: u64,
    /// Days a trashed piece is kept before it is deleted.
    #[serde(default = "default_trash_days")]
    pub trash_days: u64,
    /// Seconds between looks for retain filters to apply and trash to empty.
    #[serde(default = "default_retain_interval")]
    pub retain_interval_s: u64,
    /// The satellite operator's version server (`http://host:port`): when set, the
    /// node does not start unless it allows this version as `storagenode`. Unset,
    /// the satellites' own minimum still keeps an old node from new pieces.
    #[serde(default)]
    pub version_url: Option<String>,
    /// Where to serve the node's Prometheus metrics (`GET /metrics`); unset: nowhere.
    #[serde(default)]
    pub debug_addr: Option<String>,
}

fn default_retain_skew() -> u64 {
    24 * 3600
}
fn default_trash_days() -> u64 {
    7
}
fn default_retain_interval() -> u64 {
    60
}

fn default_listen() -> String {
    "127.0.0.1:7779".into()
}
fn default_interval() -> u64 {
    60
}

impl TrustedSatellite {
    /// The satellite's key.
    pub fn public_key(&self) -> anyhow::Result<PublicKey> {
        PublicKey::parse(&self.key).with_context(|| format!("satellite {}", self.url))
    }

    /// A client of its node API, over TLS to a server that must hold its key.
    pub async fn client(
        &self,
    ) -> anyhow::Result<pb::nodes_client::NodesClient<tonic::transport::Channel>> {
        let endpoint =
            orbit_tls::pinned_endpoint(&self.url)?.connect_timeout(Duration::from_secs(10));
        let channel =
            orbit_tls::pinned_channel(endpoint, orbit_tls::Expect::Key(self.public_key()?))
                .await
                .map_err(|e| anyhow::anyhow!("satellite {}: {e}", self.url))?;
        Ok(pb::nodes_client::NodesClient::new(channel))
    }
}

/// What checking in and settling need of a node.
pub struct Reporter {
    identity: Identity,
    url: String,
    pieces: Arc<PieceStore>,
    orders: Arc<Orders>,
}

impl Reporter {
    fn signed(&self, body: Vec<u8>) -> pb::SignedMsg {
        pb::SignedMsg {
            node_key: self.identity.public().0.to_vec(),
            signature: self.identity.sign(&body),
            body,
        }
    }

    async fn client(
        s: &TrustedSatellite,
    ) -> anyhow::Result<pb::nodes_client::NodesClient<tonic::transport::Channel>> {
        s.client().await
    }

    /// Tells a satellite where this node is and how much it can store.
    pub async fn check_in(&self, s: &TrustedSatellite) -> anyhow::Result<()> {
        let body = CheckIn {
            address: self.url.clone(),
            free: self.pieces.free(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            timestamp: unix_now(),
        }
        .encode();
        Self::client(s).await?.check_in(self.signed(body)).await?;
        Ok(())
    }

    /// Hands the orders served under a satellite's limits to it; forgets those it
    /// settled or refused for good. Returns how many it settled.
    pub async fn settle(&self, s: &TrustedSatellite) -> anyhow::Result<usize> {
        let sat = s.public_key()?.id();
        let served: Vec<_> = self
            .orders
            .unsettled()?
            .into_iter()
            .filter(|o| o.limit.satellite == sat)
            .collect();
        if served.is_empty() {
            return Ok(0);
        }
        let resp = Self::client(s)
            .await?
            .settle(self.signed(encode_served(&served)))
            .await?
            .into_inner();
        let done: std::collections::HashSet<Vec<u8>> =
            resp.settled.iter().chain(&resp.rejected).cloned().collect();
        self.orders
            .forget(|o| done.contains(o.limit.serial.as_slice()))?;
        Ok(resp.settled.len())
    }

    /// Transfers served and not yet settled.
    pub fn unsettled_count(&self) -> usize {
        self.orders.unsettled().map(|v| v.len()).unwrap_or(0)
    }

    /// One round of chores: check in with and settle at every satellite.
    /// Checks in with every satellite; the failures, one per satellite.
    pub async fn check_in_all(&self, satellites: &[TrustedSatellite]) -> orbit_worker::JobResult {
        let mut failed = Vec::new();
        for s in satellites {
            if let Err(e) = self.check_in(s).await {
                failed.push(format!("check-in with {}: {e}", s.url));
            }
        }
        joined(failed)
    }

    /// Settles with every satellite; the failures, one per satellite.
    pub async fn settle_all(&self, satellites: &[TrustedSatellite]) -> orbit_worker::JobResult {
        let mut failed = Vec::new();
        for s in satellites {
            match self.settle(s).await {
                Ok(n) if n > 0 => tracing::info!(satellite = %s.url, orders = n, "orders settled"),
                Ok(_) => {}
                Err(e) => failed.push(format!("settlement with {}: {e}", s.url)),
            }
        }
        joined(failed)
    }
}

fn joined(failed: Vec<String>) -> orbit_worker::JobResult {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// A running node.
pub struct Node {
    /// Its identity.
    pub identity: Identity,
    /// Its piecestore URL.
    pub url: String,
    /// Its piece store.
    pub pieces: Arc<PieceStore>,
    /// Check-ins and settlement.
    pub reporter: Arc<Reporter>,
    /// Garbage-collection filters received.
    pub retain: Arc<RetainStore>,
    /// Check-ins and settlement, as workers.
    workers: orbit_worker::Group,
    server: tokio::task::JoinHandle<()>,
    /// The metrics endpoint, if configured, and its address.
    debug: Option<(tokio::task::JoinHandle<()>, std::net::SocketAddr)>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // The workers go with the group.
        self.server.abort();
        if let Some((task, _)) = &self.debug {
            task.abort();
        }
    }
}

impl Node {
    /// Sets up (identity created once, 0600) and starts a node.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        if let Some(url) = &config.version_url {
            let section = orbit_version::VersionSection {
                url: url.clone(),
                ..Default::default()
            };
            let c = orbit_version::check(&section, "storagenode", orbit_version::VERSION, "node")
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!("{}", c.message);
        }
        std::fs::create_dir_all(&config.dir)?;
        let identity = Identity::load_or_create(&config.dir.join("identity.key"))?;
        let trusted = config
            .satellites
            .iter()
            .map(|s| s.public_key())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pieces = Arc::new(PieceStore::open(
            &config.dir.join("storage"),
            config.capacity,
        )?);
        let serials = Arc::new(UsedSerials::open(&config.dir.join("serials"), unix_now())?);
        let orders = Arc::new(Orders::open(&config.dir.join("orders"))?);
        let retain = Arc::new(RetainStore::open(&config.dir.join("retain"))?);
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let debug = match &config.debug_addr {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("debug address {addr}"))?;
                let at = l.local_addr()?;
                Some((orbit_telemetry::serve(l, std::future::pending()), at))
            }
            None => None,
        };
        let url = config
            .external_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", listener.local_addr().expect("bound")));
        // The piecestore speaks TLS with the node's identity key, which uplinks and
        // satellites pin by the node id in their order limits and node records.
        let builder = tonic::transport::Server::builder()
            .tls_config(orbit_tls::identity_server(&identity)?)
            .context("piecestore TLS")?;
        let svc = PiecestoreService::new(
            identity.clone(),
            &trusted,
            pieces.clone(),
            serials,
            orders.clone(),
        )
        .with_retain(retain.clone());
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            // Pieces are MiBs: large HTTP/2 windows and frames spare a flow-control
            // round trip per 64 KiB and a frame per 16 KiB.
            if let Err(e) = builder
                .initial_stream_window_size(orbit_protocol::client::WINDOW)
                .initial_connection_window_size(4 * orbit_protocol::client::WINDOW)
                .max_frame_size(orbit_protocol::client::FRAME)
                .layer(orbit_telemetry::RpcLayer)
                .add_service(svc.server())
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "piecestore server failed");
            }
        });
        let reporter = Arc::new(Reporter {
            identity: identity.clone(),
            url: url.clone(),
            pieces: pieces.clone(),
            orders,
        });
        // The first check-in before returning: a started node is selectable.
        for s in &config.satellites {
            if let Err(e) = reporter.check_in(s).await {
                tracing::warn!(satellite = %s.url, error = %e, "check-in failed; retrying later");
            }
        }
        let workers = orbit_worker::Group::new();
        let every = orbit_worker::Interval::every(Duration::from_secs(config.check_in_s.max(1)));
        let (r, sats) = (reporter.clone(), Arc::new(config.satellites.clone()));
        let label = crate::metrics::node(&identity.id().to_string());
        crate::metrics::METRICS
            .used
            .get_or_create(&label)
            .set(pieces.used() as i64);
        workers.spawn("check-in", every, move || {
            let (r, sats) = (r.clone(), sats.clone());
            orbit_worker::job(async move { r.check_in_all(&sats).await })
        });
        let (r, sats) = (reporter.clone(), Arc::new(config.satellites));
        workers.spawn("settlement", every, move || {
            let (r, sats) = (r.clone(), sats.clone());
            orbit_worker::job(async move { r.settle_all(&sats).await })
        });
        // Starting now: a filter stored before a restart is applied at once.
        let every =
            orbit_worker::Interval::every(Duration::from_secs(config.retain_interval_s.max(1)))
                .starting_now();
        let (rs, ps) = (retain.clone(), pieces.clone());
        let (skew, days) = (config.retain_skew_s, config.trash_days);
        workers.spawn("retain", every, move || {
            let (rs, ps, label) = (rs.clone(), ps.clone(), label.clone());
            orbit_worker::job(async move {
                tokio::task::spawn_blocking(move || {
                    let now = unix_now();
                    let m = &*crate::metrics::METRICS;
                    let applied = rs.apply(&ps, skew, now).map_err(|e| e.to_string())?;
                    let trashed: u64 = applied.iter().map(|a| a.trashed).sum();
                    m.trashed.get_or_create(&label).inc_by(trashed);
                    let emptied = ps.empty_trash(days, now).map_err(|e| e.to_string())?;
                    m.trash_emptied.get_or_create(&label).inc_by(emptied);
                    let expired = ps.delete_expired(now).map_err(|e| e.to_string())?;
                    m.expired.get_or_create(&label).inc_by(expired);
                    m.used.get_or_create(&label).set(ps.used() as i64);
                    if expired > 0 {
                        tracing::info!(pieces = expired, "expired pieces deleted");
                    }
                    Ok(())
                })
                .await
                .map_err(|e| format!("retain: {e}"))?
            })
        });
        Ok(Node {
            identity,
            url,
            pieces,
            reporter,
            retain,
            workers,
            server,
            debug,
        })
    }

    /// Where the node serves its metrics, if anywhere.
    pub fn debug_addr(&self) -> Option<std::net::SocketAddr> {
        self.debug.as_ref().map(|(_, a)| *a)
    }

    /// Applies stored retain filters, empties old trash and deletes expired pieces
    /// now, and waits.
    pub async fn run_retain_once(&self) -> orbit_worker::JobResult {
        match self.workers.handle("retain") {
            Some(h) => h.trigger_wait().await,
            None => Ok(()),
        }
    }

    /// Runs the check-in and settlement workers now and waits for them (tests trigger
    /// them instead of waiting).
    pub async fn run_chores_once(&self) -> orbit_worker::JobResult {
        for name in ["check-in", "settlement"] {
            if let Some(h) = self.workers.handle(name) {
                h.trigger_wait().await?;
            }
        }
        Ok(())
    }

    /// The status of the node's workers.
    pub fn worker_statuses(&self) -> Vec<orbit_worker::Status> {
        self.workers.statuses()
    }
}
