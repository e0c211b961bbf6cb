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
    let mut c =
        ProcCluster::start_tls(Path::new(env!("CARGO_BIN_EXE_satellite")), 3, Timings::FAST).await;
    let tls = c.tls.as_ref().unwrap();
    let (ca, client) = (tls.pki.ca_file.clone(), tls.client.clone());
    let kv = c.client().await;
    kv.put(PutRequest::new("tls/k", "over mutual TLS"))
        .await
        .unwrap();

    let endpoint = format!("--endpoints=127.0.0.1:{}", c.members[1].client);
    let with_certs = [
        endpoint.clone(),
        flag("cacert", &ca),
        flag("cert", &client.cert),
        flag("key", &client.key),
    ];
    let (ok, out) = etcdctl(&[&with_certs[..], &["get".into(), "tls/k".into()]].concat());
    assert!(ok && out.contains("over mutual TLS"), "{out}");
    let (ok, out) =
        etcdctl(&[&with_certs[..], &["put".into(), "tls/e".into(), "v".into()]].concat());
    assert!(ok && out.contains("OK"), "{out}");

    // Without a client certificate the handshake fails; without TLS, too; with a
    // certificate from another CA, too. Nothing is written by any of them.
    let stranger = Pki::new(c.dir.path(), "stranger").issue("mallory");
    for (what, args) in [
        (
            "no client certificate",
            vec![endpoint.clone(), flag("cacert", &ca)],
        ),
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
        let (ok, out) =
            etcdctl(&[&args[..], &["put".into(), "tls/bad".into(), "x".into()]].concat());
        assert!(!ok, "{what}: etcdctl was served: {out}");
    }
    let got = kv.range(RangeRequest::key("tls/bad")).await.unwrap();
    assert!(got.kvs.is_empty(), "a refused client wrote");

    // The peer port: with the CA but no certificate the handshake is refused; with a
    // member certificate TLS passes and the port answers that it serves no KV API.
    let peer = format!("--endpoints=127.0.0.1:{}", c.members[0].peer);
    let (ok, out) = etcdctl(&[peer.clone(), flag("cacert", &ca), "get".into(), "x".into()]);
    assert!(
        !ok && !out.to_lowercase().contains("unimplemented"),
        "{out}"
    );
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
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader over TLS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.spawn(leader);
    c.wait_writable(std::time::Duration::from_secs(30)).await;
    let back = c.client_of(leader).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut req = RangeRequest::key("tls/after");
        req.serializable = true;
        let got = back.range(req).await.map(|r| r.kvs.len()).unwrap_or(0);
        if got == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restarted member did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs `curl` on the private API; (exit success, HTTP code printed by `-w`).
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_satellite_proves_its_key_to_uplinks_nodes_and_operators_over_a_mutual_tls_store() {
    use common::nodes::{uplink_cli, wait_nodes, StorageNodes};
    use common::replicas::{row_tls, satellite, send_tls, wait_health, Replicas};
    use orbit_identity::Identity;
    use uplink::project::{Access, Options, Project};

    const TOKEN: &str = "tls-private-api-token";
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new(certs.path(), "store");
    let (member, client) = (pki.issue("n1"), pki.issue("test-client"));
    let private_port = orbit_testkit::free_port();
    let table = format!(
        "[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n\
         [private_api]\naddr = \"127.0.0.1:{private_port}\"\ntoken = \"{TOKEN}\"\n{}{}",
        row_tls(
            1,
            orbit_testkit::free_port(),
            orbit_testkit::free_port(),
            true
        ),
        row_tls(
            2,
            orbit_testkit::free_port(),
            orbit_testkit::free_port(),
            false
        ),
    );
    // One certificate per replica would be usual; here the member's serves both.
    let store_tls = format!(
        "[store_tls]\ncert_file = {c:?}\nkey_file = {k:?}\ntrusted_ca_file = {ca:?}\nclient_cert_auth = true\n\
         peer_cert_file = {c:?}\npeer_key_file = {k:?}\npeer_trusted_ca_file = {ca:?}\npeer_client_cert_auth = true\n",
        c = member.cert,
        k = member.key,
        ca = pki.ca_file,
    );
    let mut r = Replicas::with(satellite(), &table, "fixed", 2, &store_tls);
    r.spawn(0);
    wait_health(r.status[0], 200, std::time::Duration::from_secs(30)).await;
    // Replica 2 is a store client only: it reaches the member with its certificate.
    r.spawn_as(1, "private-api");
    wait_health(r.status[1], 200, std::time::Duration::from_secs(30)).await;

    let store = r.client_url(0);
    assert!(store.starts_with("https://"), "{store}");
    let kv: std::sync::Arc<dyn Kv> = std::sync::Arc::new(
        orbit_kv::RemoteKv::connect_tls(
            std::slice::from_ref(&store),
            orbit_tls::TlsFiles {
                ca_file: Some(pki.ca_file.clone()),
                cert_file: Some(client.cert.clone()),
                key_file: Some(client.key.clone()),
            }
            .client_config()
            .unwrap(),
        )
        .await
        .unwrap(),
    );
    // A client without a certificate gets nothing from the store.
    let bare = orbit_kv::RemoteKv::connect_tls(
        std::slice::from_ref(&store),
        orbit_tls::TlsFiles {
            ca_file: Some(pki.ca_file.clone()),
            ..Default::default()
        }
        .client_config()
        .unwrap(),
    )
    .await;
    if let Ok(bare) = bare {
        assert!(bare.range(RangeRequest::key("x")).await.is_err());
    }

    let identity = Identity::load(&r.dir.path().join("satellite.key")).unwrap();
    let key = orbit_identity::hex_encode(&identity.public().0);
    let api = r.api_url(0);
    assert!(api.starts_with("https://"), "{api}");
    let mut sn = StorageNodes::new();
    for _ in 0..3 {
        sn.start(&api, &key);
    }
    let nodes = orbit_satellite_model::nodes::Nodes::new(kv.clone(), Default::default());
    wait_nodes(&nodes, &sn.ids.iter().copied().collect(), 3600).await;
    // Every node checked in over TLS with an https:// piecestore address.
    for n in nodes.all().await.unwrap() {
        assert!(n.address.starts_with("https://"), "{}", n.address);
    }

    // A node told the wrong satellite key refuses to talk to this satellite: it never
    // checks in, and says why.
    let impostor_key = orbit_identity::hex_encode(&Identity::generate().public().0);
    let wrong = sn.start(&api, &impostor_key);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(sn.dir.path().join(format!("node{wrong}.log")))
            .unwrap_or_default();
        if log.contains("not the expected key") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node log: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(nodes.get(&sn.ids[wrong]).await.unwrap().is_none());

    // An uplink uploads and downloads over TLS with a grant naming the satellite's
    // key: the satellite proves it to the uplink, each node its id from the limits.
    let api_key = orbit_satellite_model::apikeys::ApiKeys::new(kv.clone())
        .create("tls")
        .await
        .unwrap()
        .serialize();
    let access = Access::new(&api, identity.public(), &api_key, "tls pass").unwrap();
    let options = common::small_options(1, 2, 3);
    let p = Project::open(access.clone(), options).await.unwrap();
    p.create_bucket("tls").await.unwrap();
    let data = orbit_testkit::random_bytes(200 << 10, 7);
    p.upload("tls", "hello.bin", &data[..], &|_| {})
        .await
        .unwrap();
    let mut back = Vec::new();
    p.download("tls", "hello.bin", &mut back, &|_| {})
        .await
        .unwrap();
    assert_eq!(back, data);
    // The command line, too.
    let uplink = |args: &[&str], grant: &str| {
        Command::new(uplink_cli())
            .args(args)
            .env("ORBIT_ACCESS", grant)
            .output()
            .unwrap()
    };
    let out = uplink(&["ls", "orbit://tls"], &access.serialize());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("hello.bin"),
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // …and a grant naming another key is refused before anything is sent, by the
    // command line and the library alike.
    let impostor = Identity::generate();
    let bad = Access::new(&api, impostor.public(), &api_key, "tls pass").unwrap();
    let out = uplink(&["ls", "orbit://tls"], &bad.serialize());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not the expected key"),
        "{err}"
    );
    let e = match Project::open(bad, Options::default()).await {
        Ok(_) => panic!("a satellite with another key was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("not the expected key"), "{e}");
    // A plain-text client finds no gRPC server there.
    let plain = api.replace("https://", "http://");
    let e = match Project::open(
        Access::new(&plain, identity.public(), &api_key, "p").unwrap(),
        Options::default(),
    )
    .await
    {
        Ok(_) => panic!("http:// was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("use https://"), "{e}");

    // The private API: served to a client pinning the satellite key, refused to one
    // pinning another; curl's --pinnedpubkey takes the pin orbit prints.
    let (code, body) = send_tls(
        private_port,
        &identity.public(),
        "GET",
        "/v1/nodes",
        TOKEN,
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        send_tls(
            private_port,
            &impostor.public(),
            "GET",
            "/v1/nodes",
            TOKEN,
            ""
        )
        .await
        .0,
        0
    );
    let url = format!("https://127.0.0.1:{private_port}/v1/nodes");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let pin = orbit_tls::curl_pin(&identity.public());
    assert_eq!(
        curl(&["-k", "--pinnedpubkey", &pin, "-H", &auth, &url]),
        (true, "200".to_string())
    );
    let other_pin = orbit_tls::curl_pin(&impostor.public());
    assert!(!curl(&["-k", "--pinnedpubkey", &other_pin, "-H", &auth, &url]).0);
    // Without -k curl has no CA that signed a self-signed identity certificate.
    assert!(!curl(&["-H", &auth, &url]).0);
}
