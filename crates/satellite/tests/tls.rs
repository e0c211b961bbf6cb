//! TLS, end to end with real processes: a 3-member store cluster with mutual TLS on
//! its client and peer ports (Debian's etcdctl with certificates is served, without
//! them refused; a peer without a trusted certificate is refused), and the satellite's
//! identity TLS (an uplink uploads over it; a client expecting another satellite key
//! is refused).

mod common;

use common::*;
use orbit_kv::{Kv, PutRequest, RangeRequest};
use orbit_testkit::pki::Pki;
use orbit_testkit::Timings;
use std::path::Path;
use std::process::Command;

/// Runs etcdctl with `args`; (success, stdout + stderr).
fn etcdctl(args: &[String]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=3s")
        .args(args)
        .output()
        .expect("etcdctl is installed (scripts/setup.sh installs Debian's etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_cluster_with_mutual_tls_serves_only_trusted_clients_and_peers() {
    // Forming the cluster at all means the members reached each other's peer ports
    // with their certificates, and the test's client reached the client ports.
    let mut c = ProcCluster::start_tls(
        Path::new(env!("CARGO_BIN_EXE_satellite")),
        3,
        Timings::FAST,
    )
    .await;
    let tls = c.tls.as_ref().unwrap();
    let (ca, client) = (tls.pki.ca_file.clone(), tls.client.clone());
    let kv = c.client().await;
    kv.put(PutRequest::new("tls/k", "over mutual TLS")).await.unwrap();

    let endpoint = format!("--endpoints=127.0.0.1:{}", c.members[1].client);
    let with_certs = [
        endpoint.clone(),
        flag("cacert", &ca),
        flag("cert", &client.cert),
        flag("key", &client.key),
    ];
    let (ok, out) = etcdctl(&[&with_certs[..], &["get".into(), "tls/k".into()]].concat());
    assert!(ok && out.contains("over mutual TLS"), "{out}");
    let (ok, out) = etcdctl(&[&with_certs[..], &["put".into(), "tls/e".into(), "v".into()]].concat());
    assert!(ok && out.contains("OK"), "{out}");

    // Without a client certificate the handshake fails; without TLS, too; with a
    // certificate from another CA, too. Nothing is written by any of them.
    let stranger = Pki::new(c.dir.path(), "stranger").issue("mallory");
    for (what, args) in [
        ("no client certificate", vec![endpoint.clone(), flag("cacert", &ca)]),
        ("no TLS", vec![endpoint.clone()]),
        (
            "a certificate another CA signed",
            vec![
                endpoint.clone(),
                flag("cacert", &ca),
                flag("cert", &stranger.cert),
                flag("key", &stranger.key),
            ],
        ),
    ] {
        let (ok, out) = etcdctl(&[&args[..], &["put".into(), "tls/bad".into(), "x".into()]].concat());
        assert!(!ok, "{what}: etcdctl was served: {out}");
    }
    let got = kv.range(RangeRequest::key("tls/bad")).await.unwrap();
    assert!(got.kvs.is_empty(), "a refused client wrote");

    // The peer port: with the CA but no certificate the handshake is refused; with a
    // member certificate TLS passes and the port answers that it serves no KV API.
    let peer = format!("--endpoints=127.0.0.1:{}", c.members[0].peer);
    let (ok, out) = etcdctl(&[peer.clone(), flag("cacert", &ca), "get".into(), "x".into()]);
    assert!(!ok && !out.to_lowercase().contains("unimplemented"), "{out}");
    let (ok, out) = etcdctl(&[
        peer,
        flag("cacert", &ca),
        flag("cert", &client.cert),
        flag("key", &client.key),
        "get".into(),
        "x".into(),
    ]);
    assert!(!ok && out.to_lowercase().contains("unimplemented"), "{out}");

    // The peers re-establish TLS after a member is SIGKILLed and restarted.
    let leader = c.leader().await.expect("a leader");
    c.kill(leader);
    let survivor = (leader + 1) % 3;
    let kv1 = c.client_of(survivor).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while kv1.put(PutRequest::new("tls/after", "1")).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no new leader over TLS");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.spawn(leader);
    c.wait_writable(std::time::Duration::from_secs(30)).await;
    let back = c.client_of(leader).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut req = RangeRequest::key("tls/after");
        req.serializable = true;
        let got = back
            .range(req)
            .await
            .map(|r| r.kvs.len())
            .unwrap_or(0);
        if got == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "restarted member did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
