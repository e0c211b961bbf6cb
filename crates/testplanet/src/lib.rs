//! `testplanet`: an orbit network in one process — a satellite's API on a real
//! embedded store member, N storage nodes with real piece files, and uplinks — on free
//! loopback ports and temporary directories, for integration tests.

use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_satellite_api::service::{Charges, SatelliteApi, StorageConfig};
use orbit_satellite_model::nodes::SelectionConfig;
use orbit_testkit::{OrbitCluster, Timings};
use std::sync::Arc;
use storagenode::node::{Node, NodeConfig, TrustedSatellite};
use tempfile::TempDir;
use uplink::project::{Access, Options, Project};

/// `n` pseudo-random bytes (xorshift from `seed`): incompressible test data, fast to
/// make by the hundreds of MiB even in a debug build.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = seed | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

/// Bytes each test node may store.
pub const NODE_CAPACITY: u64 = 4 << 30;

/// A satellite API replica serving on loopback.
pub struct ApiReplica {
    /// Its URL.
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ApiReplica {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A network in one process.
pub struct Planet {
    /// The store the satellite keeps everything in.
    pub store: OrbitCluster,
    /// The satellite's identity.
    pub satellite: Identity,
    /// The satellite's API.
    pub api: SatelliteApi,
    /// The first API replica.
    pub replica: ApiReplica,
    /// Storage nodes (None once stopped).
    pub nodes: Vec<Option<Node>>,
    node_dirs: Vec<TempDir>,
    /// An access grant to the project `test` (passphrase `correct horse`).
    pub access: Access,
}

/// Serves the satellite API `api` on a free port (with the payments API when it
/// charges).
pub async fn serve(api: &SatelliteApi) -> ApiReplica {
    let payments = api.charges.as_ref().map(|c| {
        orbit_payments::PaymentsService::new(
            c.escrow.clone(),
            orbit_payments::PaymentsConfig {
                escrow: c.escrow.address(),
                recipient: orbit_payments::Wallet::random().address(),
                group_id: [0; 32],
                expiry_threshold_s: c.expiry_threshold_s,
                request_skew_s: 300,
                prices: c.prices.clone(),
            },
        )
        .server()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the API");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let (meta, nodes) = (api.metainfo_server(), api.nodes_server());
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                meta.max_decoding_message_size(16 << 20)
                    .max_encoding_message_size(16 << 20),
            )
            .add_service(nodes)
            .add_optional_service(payments)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("API server");
    });
    ApiReplica { url, server }
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
        let charges = Charges {
            escrow: orbit_payments::Escrow::new(
                kv.clone(),
                orbit_payments::Wallet::random().address(),
            ),
            prices: prices.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            expiry_threshold_s: 60,
        };
        Self::on(store, kv, n, Some(charges)).await
    }

    async fn on(
        store: OrbitCluster,
        kv: Arc<dyn Kv>,
        n: usize,
        charges: Option<Charges>,
    ) -> Planet {
        let satellite = Identity::generate();
        let mut api = SatelliteApi::new(
            kv,
            satellite.clone(),
            // Every node is on 127.0.0.1: one per /24 would allow only one.
            SelectionConfig {
                distinct_networks: false,
                ..SelectionConfig::default()
            },
            StorageConfig::default(),
        );
        api.charges = charges;
        let replica = serve(&api).await;
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

    /// Node `i`'s directory.
    pub fn node_dir(&self, i: usize) -> &std::path::Path {
        self.node_dirs[i].path()
    }

    /// Another API replica on the same store.
    pub async fn another_replica(&self) -> ApiReplica {
        let mut api = SatelliteApi::new(
            Arc::new(self.store.embedded(0)),
            self.satellite.clone(),
            SelectionConfig {
                distinct_networks: false,
                ..SelectionConfig::default()
            },
            StorageConfig::default(),
        );
        api.charges = self.api.charges.clone();
        serve(&api).await
    }
}
