//! A satellite split into real processes for tests: replica 1 runs `api` with the
//! store member, the others the processes asked for, all on one configuration.

use super::replicas::{row, satellite, wait_health, wait_status, Replicas};
use orbit_identity::Identity;
use orbit_kv::{Kv, RemoteKv};
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_testkit::free_port;
use std::sync::Arc;
use std::time::Duration;
use uplink::project::{Access, Options, Project};

/// The running satellite.
pub struct Satellite {
    /// Its replica processes (index 0 is the api).
    pub r: Replicas,
    /// Its identity.
    pub identity: Identity,
    /// Its public key, hex, as nodes are set up with.
    pub key: String,
    /// Its store.
    pub kv: Arc<dyn Kv>,
    /// Its node table.
    pub nodes: Nodes,
    /// Its API URL.
    pub url: String,
}

/// Starts the api (replica 1) and `processes` (replicas 2, 3, … in order) on one
/// configuration with the service `sections`, and waits until each is healthy.
pub async fn start(sections: &str, processes: &[&str]) -> Satellite {
    let n = processes.len() + 1;
    let table: String = (1..=n)
        .map(|id| row(id, free_port(), free_port(), id == 1))
        .collect();
    let mut r = Replicas::with(
        satellite(),
        &format!(
            "[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n{sections}{table}"
        ),
        "fixed",
        n,
        "",
    );
    r.spawn(0);
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    wait_status(r.status[0], |s| s.contains("abandoned-uploads")).await;
    let identity = Identity::load_or_create(&r.dir.path().join("satellite.key")).unwrap();
    let key = orbit_identity::hex_encode(&identity.public().0);
    for (i, what) in processes.iter().enumerate() {
        r.spawn_as(i + 1, what);
    }
    for i in 1..n {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    let kv: Arc<dyn Kv> = Arc::new(RemoteKv::connect(&[r.client_url(0)]).await.unwrap());
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let url = r.api_url(0);
    Satellite {
        r,
        identity,
        key,
        kv,
        nodes,
        url,
    }
}

impl Satellite {
    /// An access grant to a new project `name`, and the project opened with `options`.
    pub async fn project(&self, name: &str, options: Options) -> (Access, Project) {
        let api_key = ApiKeys::new(self.kv.clone()).create(name).await.unwrap();
        let access = Access::new(
            &self.url,
            self.identity.public(),
            &api_key.serialize(),
            name,
        )
        .unwrap();
        let p = Project::open(access.clone(), options).await.unwrap();
        (access, p)
    }
}
