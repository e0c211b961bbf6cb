//! `testplanet`: an orbit network in one process — a satellite's API on a real
//! embedded store member, N storage nodes with real piece files, and uplinks — on free
//! loopback ports and temporary directories, for integration tests.

use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_satellite_api::service::SatelliteApi;
use orbit_satellite_api::StorageSection;
use orbit_testkit::{OrbitCluster, Timings};
use satellite::accounting::AccountingProcess;
use satellite::api::{ApiProcess, ApiSection, Serving};
use satellite::audit::AuditProcess;
use satellite::config::Services;
use satellite::gc::GcProcess;
use satellite::repair::RepairProcess;
use satellite::segment_loop::LoopProcess;
use std::sync::Arc;
use storagenode::node::{Node, NodeConfig, TrustedSatellite};
use tempfile::TempDir;
use uplink::project::{Access, Options, Project};

pub use orbit_testkit::random_bytes;

/// Bytes each test node may store.
pub const NODE_CAPACITY: u64 = 4 << 30;

/// A satellite API replica serving on loopback.
pub struct ApiReplica {
    /// Its URL.
    pub url: String,
    /// The process, as `satellite run api` builds it.
    pub process: ApiProcess,
    serving: Option<Serving>,
    /// Its background workers (trigger them instead of waiting).
    pub workers: orbit_worker::Group,
}

impl ApiReplica {
    /// Stops serving and its workers.
    pub async fn stop(mut self) {
        if let Some(s) = self.serving.take() {
            s.stop(std::time::Duration::from_secs(5)).await;
        }
        self.workers
            .shutdown(std::time::Duration::from_secs(5))
            .await;
    }
}

/// A network in one process.
pub struct Planet {
    /// The store the satellite keeps everything in.
    pub store: OrbitCluster,
    /// The satellite's identity.
    pub satellite: Identity,
    /// The satellite's API (of the first replica).
    pub api: SatelliteApi,
    /// The first API replica.
    pub replica: ApiReplica,
    /// Storage nodes (None once stopped).
    pub nodes: Vec<Option<Node>>,
    node_dirs: Vec<TempDir>,
    /// An access grant to the project `test` (passphrase `correct horse`).
    pub access: Access,
    services: Services,
}

/// The service sections of a test satellite: on a free loopback port, every node
/// selectable (they all share 127.0.0.1, so one per /24 would allow only one).
pub fn services(payments: Option<orbit_payments::PaymentsConfig>) -> Services {
    Services {
        api: ApiSection {
            addr: "127.0.0.1:0".into(),
        },
        storage: Some(StorageSection {
            distinct_networks: false,
            ..StorageSection::default()
        }),
        payments,
        segment_loop: None,
        repair: None,
        uptime: None,
        audit: None,
        gc: None,
        reputation: None,
        accounting: None,
        version: None,
        private_api: None,
        console: None,
    }
}

/// Builds and serves an `api` process from `services` on `kv`, as `satellite`.
pub async fn serve(services: &Services, kv: Arc<dyn Kv>, satellite: &Identity) -> ApiReplica {
    let workers = orbit_worker::Group::new();
    let process = ApiProcess::build(services, kv, satellite.clone(), &workers)
        .await
        .expect("building the api process");
    let serving = process.serve().await.expect("serving the API");
    ApiReplica {
        url: serving.url.clone(),
        process,
        serving: Some(serving),
        workers,
    }
}

impl Planet {
    /// A satellite and `n` storage nodes, all checked in.
    pub async fn start(n: usize) -> Planet {
        let store = OrbitCluster::start(1, Timings::FAST).await;
        let kv: Arc<dyn Kv> = Arc::new(store.embedded(0));
        Self::on(store, kv, n, None).await
    }

    /// Like [`Planet::start`], charging `prices` (by request kind) through payment
    /// channels on a fresh escrow.
    pub async fn start_paid(n: usize, prices: &[(&str, u64)]) -> Planet {
        let store = OrbitCluster::start(1, Timings::FAST).await;
        let kv: Arc<dyn Kv> = Arc::new(store.embedded(0));
        let payments = orbit_payments::PaymentsConfig {
            escrow: orbit_payments::Wallet::random().address(),
            recipient: orbit_payments::Wallet::random().address(),
            group_id: [0; 32],
            expiry_threshold_s: 60,
            request_skew_s: 300,
            prices: prices.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        Self::on(store, kv, n, Some(payments)).await
    }

    async fn on(
        store: OrbitCluster,
        kv: Arc<dyn Kv>,
        n: usize,
        payments: Option<orbit_payments::PaymentsConfig>,
    ) -> Planet {
        let satellite = Identity::generate();
        let services = services(payments);
        let replica = serve(&services, kv, &satellite).await;
        let api = replica
            .process
            .storage
            .clone()
            .expect("the storage API is configured");
        let mut nodes = Vec::new();
        let mut node_dirs = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("temp dir");
            let node = Node::start(NodeConfig {
                dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".into(),
                external_url: None,
                capacity: NODE_CAPACITY,
                satellites: vec![TrustedSatellite {
                    url: replica.url.clone(),
                    key: orbit_identity::hex_encode(&satellite.public().0),
                }],
                check_in_s: 3600,
                // Garbage is what was stored 2 s before a filter: tests wait that out.
                retain_skew_s: 2,
                trash_days: 7,
                // Tests apply filters with `run_retain_once`.
                retain_interval_s: 3600,
                version_url: None,
                debug_addr: None,
            })
            .await
            .expect("starting a storage node");
            nodes.push(Some(node));
            node_dirs.push(dir);
        }
        let key = api.keys.create("test").await.expect("creating an API key");
        let access = Access::new(
            &replica.url,
            satellite.public(),
            &key.serialize(),
            "correct horse",
        )
        .expect("access grant");
        Planet {
            store,
            satellite,
            api,
            replica,
            nodes,
            node_dirs,
            access,
            services,
        }
    }

    /// A project handle for the planet's access grant.
    pub async fn project(&self, options: Options) -> Project {
        Project::open(self.access.clone(), options)
            .await
            .expect("opening the project")
    }

    /// Stops node `i` (its server goes away; its files stay).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// The index of the running node `id`.
    pub fn node_index(&self, id: &orbit_identity::NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.identity.id() == *id))
            .expect("a node of the planet")
    }

    /// Node `i`'s directory.
    pub fn node_dir(&self, i: usize) -> &std::path::Path {
        self.node_dirs[i].path()
    }

    /// A `loop` process on the planet's store, built as `satellite run loop` builds it
    /// (passes hourly: tests run them with `run_pass`), and its workers.
    pub fn loop_process(&self, name: &str) -> (LoopProcess, orbit_worker::Group) {
        let workers = orbit_worker::Group::new();
        let p = LoopProcess::build(
            &self.services,
            Arc::new(self.store.embedded(0)),
            name,
            &workers,
        );
        (p, workers)
    }

    /// A `repair` process on the planet's store with `section` (its own interval
    /// is an hour: tests call `run_once`), built as `satellite run repair` builds it.
    pub fn repair_process(
        &self,
        name: &str,
        section: orbit_repair::RepairSection,
    ) -> (RepairProcess, orbit_worker::Group) {
        let workers = orbit_worker::Group::new();
        let services = Services {
            repair: Some(orbit_repair::RepairSection {
                interval_s: 3600,
                ..section
            }),
            ..self.services.clone()
        };
        let p = RepairProcess::build(
            &services,
            Arc::new(self.store.embedded(0)),
            self.satellite.clone(),
            name,
            &workers,
        );
        (p, workers)
    }

    /// An `audit` process on the planet's store with `section` and `reputation` (its
    /// own interval is an hour: tests call `run_once`), built as `satellite run audit`
    /// builds it.
    pub fn audit_process(
        &self,
        name: &str,
        section: orbit_audit::AuditSection,
        reputation: orbit_satellite_model::reputation::ReputationConfig,
    ) -> (AuditProcess, orbit_worker::Group) {
        let workers = orbit_worker::Group::new();
        let services = Services {
            audit: Some(orbit_audit::AuditSection {
                interval_s: 3600,
                ..section
            }),
            reputation: Some(reputation),
            ..self.services.clone()
        };
        let p = AuditProcess::build(
            &services,
            Arc::new(self.store.embedded(0)),
            self.satellite.clone(),
            name,
            &workers,
        );
        (p, workers)
    }

    /// Sets the `[gc]` section the planet's loop and gc processes are built with.
    pub fn set_gc(&mut self, section: orbit_gc::GcSection) {
        self.services.gc = Some(section);
    }

    /// A `gc` process on the planet's store (its own interval is the section's: tests
    /// call `sender.run_once`), built as `satellite run gc` builds it.
    pub fn gc_process(&self, name: &str) -> (GcProcess, orbit_worker::Group) {
        let workers = orbit_worker::Group::new();
        let p = GcProcess::build(
            &self.services,
            Arc::new(self.store.embedded(0)),
            self.satellite.clone(),
            name,
            &workers,
        );
        (p, workers)
    }

    /// An accounting process on the satellite's store (any number may run).
    pub fn accounting_process(&self) -> (AccountingProcess, orbit_worker::Group) {
        let workers = orbit_worker::Group::new();
        let p =
            AccountingProcess::build(&self.services, Arc::new(self.store.embedded(0)), &workers);
        (p, workers)
    }

    /// The satellite as its nodes trust it (what they settle with).
    pub fn trusted(&self) -> TrustedSatellite {
        TrustedSatellite {
            url: self.replica.url.clone(),
            key: orbit_identity::hex_encode(&self.satellite.public().0),
        }
    }

    /// Another API replica on the same store.
    pub async fn another_replica(&self) -> ApiReplica {
        serve(
            &self.services,
            Arc::new(self.store.embedded(0)),
            &self.satellite,
        )
        .await
    }
}

/// Every file under `dir`, recursively (a node's piece files, say).
pub fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
