//! `satellite sim run` as a user runs it: one command starts the whole network as
//! separate processes and prints an access grant; an upload with that grant survives
//! a storage node SIGKILLed by hand (the sim's own repair brings the segment back to
//! full health); SIGTERM stops every process; `sim destroy` removes the directory and
//! refuses one that is not a sim's.

mod common;

use common::replicas::{satellite, send_tls};
use orbit_identity::Identity;
use orbit_kv::{Kv, RemoteKv};
use orbit_satellite_model::metainfo::Metainfo;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uplink::project::{Access, Project};

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_network_starts_repairs_a_killed_node_and_stops() {
    // The storagenode binary beside the satellite's.
    let _ = common::nodes::storagenode();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let out_path = tmp.path().join("sim.out");
    let mut sim = Command::new(satellite())
        .args(["sim", "run", "--nodes", "6", "--dir"])
        .arg(&dir)
        .env("ORBIT_VERSION_UNCHECKED", "false")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("sim.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !std::fs::read_to_string(&out_path)
        .unwrap()
        .contains("sim ready")
    {
        assert!(
            sim.try_wait().unwrap().is_none(),
            "the sim exited: {}{}",
            std::fs::read_to_string(&out_path).unwrap(),
            std::fs::read_to_string(tmp.path().join("sim.err")).unwrap()
        );
        assert!(Instant::now() < deadline, "the sim did not get ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let printed = std::fs::read_to_string(&out_path).unwrap();
    let grant = std::fs::read_to_string(dir.join("access")).unwrap();
    assert!(printed.contains(grant.trim()), "the grant is printed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("access"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let layout: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("sim.toml")).unwrap()).unwrap();
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("satellite.toml")).unwrap()).unwrap();

    // The grant works as printed.
    let access = Access::parse(grant.trim()).unwrap();
    let options = common::small_options(2, 3, 4);
    let p = Project::open(access.clone(), options).await.unwrap();
    p.create_bucket("demo").await.unwrap();
    let data = orbit_testkit::random_bytes(150 << 10, 5);
    p.upload("demo", "file", &data[..], &|_| {}).await.unwrap();

    // SIGKILL a node holding a piece of the first segment.
    let client = layout["processes"][0]["client"].as_integer().unwrap();
    let kv: Arc<dyn Kv> = Arc::new(
        RemoteKv::connect(&[format!("http://127.0.0.1:{client}")])
            .await
            .unwrap(),
    );
    let meta = Metainfo::new(kv.clone());
    let enc = uplink::crypt::encrypt_path(&access.root, "demo", "file");
    let segs = meta.get_object("sim", "demo", &enc).await.unwrap().1;
    let victim = segs[0].pieces[0].1;
    let name = (1..=6)
        .map(|i| format!("node{i}"))
        .find(|n| {
            Identity::load_or_create(&dir.join("nodes").join(n).join("identity.key"))
                .unwrap()
                .id()
                == victim
        })
        .unwrap();
    let pid = std::fs::read_to_string(dir.join("pids").join(&name)).unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap()
        .success());

    // Once it is offline (10 s window), a pass asked through the private API queues
    // the segment and the sim's repair process (every 10 s) rebuilds it elsewhere.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let port = config["private_api"]["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = config["private_api"]["token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let segs = meta.get_object("sim", "demo", &enc).await.unwrap().1;
        let s = &segs[0];
        if s.pieces.len() == 4 && s.pieces.iter().all(|(_, n)| *n != victim) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "segment 0 was not repaired: {:?}",
            s.pieces
        );
        let (code, body) = send_tls(
            port,
            &access.satellite_key,
            "POST",
            "/v1/loop/run",
            token,
            "",
        )
        .await;
        assert_eq!(code, 202, "{body}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut back = Vec::new();
    p.download("demo", "file", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == data);
    let printed = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        printed.contains(&format!("{name} exited")),
        "the sim says the node exited: {printed}"
    );

    // SIGTERM stops it all; destroy removes the directory, and only a sim's.
    let pids: Vec<String> = std::fs::read_dir(dir.join("pids"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(pids.len() >= 18, "{pids:?}");
    let busy = Command::new(satellite())
        .args(["sim", "destroy", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!busy.status.success(), "a running sim is not destroyed");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("running"));
    assert!(Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = sim.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the sim did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "{status}");
    for pid in &pids {
        assert!(!alive(pid.trim()), "process {pid} outlived the sim");
    }
    let other = tmp.path().join("not-a-sim");
    std::fs::create_dir_all(&other).unwrap();
    let refused = Command::new(satellite())
        .args(["sim", "destroy", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(other.exists());
    let ok = Command::new(satellite())
        .args(["sim", "destroy", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(!dir.exists());
}
