//! Version checks through real processes: `satellite run version` serves rules; a
//! process whose version is refused, and one whose version server does not answer,
//! do not start and say why; an allowed one starts and reports its verdict in its
//! status; storage nodes below the storage-node minimum get no uploads, and one that
//! checks with the version server itself does not start.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::{row, satellite, status, wait_health, Replicas};
use orbit_testkit::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uplink::project::Options;

/// Starts `satellite run version` on `config`, waiting until it listens.
fn version_server(config: &std::path::Path, port: u16) -> Child {
    let child = Command::new(satellite())
        .args(["run", "version", "--config"])
        .arg(config)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the version server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Runs `satellite run <process>` as replica `i` and waits for it to exit; its
/// stderr.
fn refused(r: &Replicas, i: usize, process: &str) -> String {
    let out = Command::new(satellite())
        .args(["run", process, "--config"])
        .arg(&r.configs[i])
        .args(["--replica-id", &(i + 1).to_string()])
        .arg("--data-dir")
        .arg(r.data_dir(i))
        .args(["--status-addr", &format!("127.0.0.1:{}", r.status[i])])
        .env("ORBIT_VERSION_UNCHECKED", "false")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{process} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_or_unchecked_versions_do_not_start_and_allowed_ones_do() {
    let me = env!("CARGO_PKG_VERSION");
    let vport = free_port();
    let table: String = (1..=4)
        .map(|id| row(id, free_port(), free_port(), id == 1))
        .collect();
    let sections = format!(
        "[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n\
         [version]\nurl = \"http://127.0.0.1:{vport}\"\ninterval_s = 1\n\
         [version.server.processes.repair]\nminimum = \"99.0.0\"\nsuggested = \"99.1.0\"\n\
         [version.server.processes.storagenode]\nminimum = \"99.0.0\"\nsuggested = \"99.0.0\"\n\
         {table}"
    );
    let mut r = Replicas::with(satellite(), &sections, "fixed", 4, "");
    r.set_env("ORBIT_VERSION_UNCHECKED", "false");

    // No version server yet: nothing starts, and the message says what to do.
    let e = refused(&r, 0, "api");
    assert!(
        e.contains(&format!("api {me}")) && e.contains(&format!("127.0.0.1:{vport}")),
        "{e}"
    );
    assert!(e.contains("unchecked = true"), "{e}");

    let mut server = version_server(&r.config(), vport);
    // The api (default rule: this version) starts and reports its verdict.
    r.spawn(0);
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    let v = status(r.status[0]).await["version"].clone();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(
        (v["version"].as_str(), v["minimum"].as_str()),
        (Some(me), Some(me))
    );
    // Repair needs 99.0.0: refused, naming the versions.
    let e = refused(&r, 1, "repair");
    assert!(
        e.contains("must run at least 99.0.0") && e.contains("suggested 99.1.0") && e.contains(me),
        "{e}"
    );
    // Loop is allowed.
    r.spawn_as(2, "loop");
    wait_health(r.status[2], 200, Duration::from_secs(30)).await;

    // Nodes run this version, below the storage-node minimum of 99.0.0: they check
    // in, but no upload is given them.
    let identity =
        orbit_identity::Identity::load_or_create(&r.dir.path().join("satellite.key")).unwrap();
    let key = orbit_identity::hex_encode(&identity.public().0);
    let url = r.api_url(0);
    let kv: std::sync::Arc<dyn orbit_kv::Kv> = std::sync::Arc::new(
        orbit_kv::RemoteKv::connect(&[r.client_url(0)])
            .await
            .unwrap(),
    );
    let nodes = orbit_satellite_model::nodes::Nodes::new(kv.clone(), Default::default());
    let mut sn = StorageNodes::new();
    for _ in 0..2 {
        sn.start(&url, &key);
    }
    wait_nodes(&nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let api_key = orbit_satellite_model::apikeys::ApiKeys::new(kv)
        .create("v")
        .await
        .unwrap();
    let access =
        uplink::project::Access::new(&url, identity.public(), &api_key.serialize(), "v").unwrap();
    let options = Options {
        k: 1,
        repair: 1,
        success: 2,
        total: 2,
        segment_size: 64 << 10,
        inline_max: 16,
    };
    let p = uplink::project::Project::open(access, options)
        .await
        .unwrap();
    p.create_bucket("bkt").await.unwrap();
    let e = p
        .upload("bkt", "x", &[7u8; 4096][..], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage nodes needed"), "{e}");

    // A node that asks the version server itself (version_url) does not start below
    // the storage-node minimum, and says why.
    let i = sn.start_with(
        &url,
        &key,
        &format!("version_url = \"http://127.0.0.1:{vport}\""),
    );
    let out = Command::new(common::nodes::storagenode())
        .args(["run", "--dir"])
        .arg(sn.node_dir(i))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("storagenode must run at least 99.0.0") && e.contains(me),
        "{e}"
    );

    // The server goes: running processes keep running and report it.
    server.kill().unwrap();
    server.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = status(r.status[2]).await["version"].clone();
        if v["allowed"] == false {
            assert!(
                v["message"].as_str().unwrap().contains("version check"),
                "{v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the re-check never noticed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_health(r.status[2], 200, Duration::from_secs(5)).await;
}
