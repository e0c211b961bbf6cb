//! Store authentication with real processes.
//!
//! - A satellite whose store has auth enabled: the replica that runs the member uses
//!   it in-process; a store-client replica authenticates as the least-privileged
//!   `satellite` user of docs/store.md's layout and works; a wrong password, or a user
//!   whose role does not cover orbit's keys, stops it with the store's reason; a
//!   client with no user is refused. Administered with Debian's etcdctl.
//! - Auth over mutual TLS: with client-certificate auth the certificate's common name
//!   is the user (etcdctl with alice's certificate gets alice's permissions, and a
//!   certificate of a name that is no user gets nothing); a token beats the name.

mod common;

use common::replicas::{row, satellite, send_tls, wait_health, Replicas};
use orbit_testkit::Timings;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs etcdctl against `endpoint` with `args`; (success, stdout + stderr).
fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--command-timeout=5s",
            "--dial-timeout=3s",
            &format!("--endpoints={endpoint}"),
        ])
        .args(args)
        .output()
        .expect("etcdctl is installed (scripts/setup.sh installs Debian's etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// etcdctl that must succeed.
fn ok(endpoint: &str, args: &[&str]) -> String {
    let (good, out) = etcdctl(endpoint, args);
    assert!(good, "etcdctl {args:?}: {out}");
    out
}

/// Waits until replica `i` has exited; its log.
async fn wait_exit(r: &mut Replicas, i: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = r.exited(i) {
            assert!(!status.success(), "replica {} exited 0", i + 1);
            return r.log(i);
        }
        assert!(
            Instant::now() < deadline,
            "replica {} kept running: {}",
            i + 1,
            r.log(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satellite_processes_use_a_store_with_auth_as_their_least_privileged_user() {
    const TOKEN: &str = "store-auth-private-api";
    let private_port = orbit_testkit::free_port();
    let table = format!(
        "[private_api]\naddr = \"127.0.0.1:{private_port}\"\ntoken = \"{TOKEN}\"\n{}{}",
        row(
            1,
            orbit_testkit::free_port(),
            orbit_testkit::free_port(),
            true
        ),
        row(
            2,
            orbit_testkit::free_port(),
            orbit_testkit::free_port(),
            false
        ),
    );
    let mut r = Replicas::with(
        satellite(),
        &table,
        "fixed",
        2,
        "store_user = \"satellite\"\n",
    );
    r.spawn(0);
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    let store = r.client_url(0);

    // docs/store.md's layout: root for operators, one role on orbit's keys for the
    // satellite's processes.
    ok(&store, &["user", "add", "root:rootpw"]);
    ok(&store, &["user", "grant-role", "root", "root"]);
    ok(&store, &["role", "add", "orbit-satellite"]);
    ok(
        &store,
        &[
            "role",
            "grant-permission",
            "orbit-satellite",
            "readwrite",
            "--prefix=true",
            "/orbit/",
        ],
    );
    ok(&store, &["user", "add", "satellite:satpw"]);
    ok(
        &store,
        &["user", "grant-role", "satellite", "orbit-satellite"],
    );
    ok(&store, &["role", "add", "elsewhere"]);
    ok(
        &store,
        &[
            "role",
            "grant-permission",
            "elsewhere",
            "readwrite",
            "--prefix=true",
            "/app/",
        ],
    );
    ok(&store, &["user", "add", "outsider:outpw"]);
    ok(&store, &["user", "grant-role", "outsider", "elsewhere"]);
    let enabled = ok(&store, &["auth", "enable"]);
    assert!(enabled.contains("Authentication Enabled"), "{enabled}");

    // Without a user the store serves nothing; root reads orbit's keys.
    let (good, out) = etcdctl(&store, &["get", "--prefix", "/orbit/", "--keys-only"]);
    assert!(!good && out.contains("user name is empty"), "{out}");
    let keys = ok(
        &store,
        &[
            "--user=root:rootpw",
            "get",
            "--prefix",
            "/orbit/replicas/",
            "--keys-only",
        ],
    );
    assert!(keys.contains("/orbit/replicas/replica-test/"), "{keys}");

    // The member's own replica keeps working in-process: it heartbeats on.
    wait_health(r.status[0], 200, Duration::from_secs(10)).await;

    // A store-client replica with the satellite user's password serves.
    r.set_env("ORBIT_STORE_PASSWORD", "satpw");
    r.spawn_as(1, "private-api");
    wait_health(r.status[1], 200, Duration::from_secs(30)).await;
    let key = r.satellite_key(1);
    let (code, body) = send_tls(private_port, &key, "GET", "/v1/repair/queue", TOKEN, "").await;
    assert_eq!(code, 200, "{body}");
    let rows = ok(
        &store,
        &[
            "--user=satellite:satpw",
            "get",
            "--prefix",
            "/orbit/replicas/replica-test/",
            "--keys-only",
        ],
    );
    assert!(
        rows.lines().filter(|l| !l.is_empty()).count() >= 2,
        "{rows}"
    );
    // …and may not read beyond orbit's keys, or administer the store.
    let (good, out) = etcdctl(&store, &["--user=satellite:satpw", "put", "/app/x", "1"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    let (good, out) = etcdctl(&store, &["--user=satellite:satpw", "user", "list"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    r.terminate(1, Duration::from_secs(10));

    // A wrong password stops it at start, saying so.
    r.set_env("ORBIT_STORE_PASSWORD", "wrong");
    r.spawn_as(1, "private-api");
    let log = wait_exit(&mut r, 1).await;
    assert!(log.contains("authentication failed"), "{log}");

    // A user whose role is elsewhere: refused on orbit's keys.
    let config = std::fs::read_to_string(r.config())
        .unwrap()
        .replace("store_user = \"satellite\"", "store_user = \"outsider\"");
    r.set_config(1, &config);
    r.set_env("ORBIT_STORE_PASSWORD", "outpw");
    r.spawn_as(1, "private-api");
    let log = wait_exit(&mut r, 1).await;
    assert!(log.contains("permission denied"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_client_certificate_auth_the_certificates_name_is_the_user() {
    let mut c = common::ProcCluster::start_tls(
        Path::new(env!("CARGO_BIN_EXE_satellite")),
        3,
        Timings::FAST,
    )
    .await;
    let tls = c.tls.as_ref().unwrap();
    let pki = &tls.pki;
    let (admin, alice, mallory) = (tls.client.clone(), pki.issue("alice"), pki.issue("mallory"));
    let root_cert = pki.issue("root");
    let ep = format!("https://127.0.0.1:{}", c.members[0].client);
    let ca = format!("--cacert={}", pki.ca_file.display());
    let with = |cert: &orbit_testkit::pki::CertFiles| {
        vec![
            ca.clone(),
            format!("--cert={}", cert.cert.display()),
            format!("--key={}", cert.key.display()),
        ]
    };
    let run = |cert: &orbit_testkit::pki::CertFiles, args: &[&str]| {
        let mut all: Vec<String> = with(cert);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        etcdctl(&ep, &all)
    };
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "--prefix=true",
            "app/",
        ],
        // No password: alice is alice only through her certificate.
        &["user", "add", "alice", "--no-password"],
        &["user", "grant-role", "alice", "app"],
        &["put", "other", "secret"],
        &["auth", "enable"],
    ] {
        let (good, out) = run(&admin, args);
        assert!(good, "{args:?}: {out}");
    }

    // Alice's certificate: her keys, and nothing else.
    let (good, out) = run(&alice, &["put", "app/x", "from alice"]);
    assert!(good, "{out}");
    let (good, out) = run(&alice, &["get", "app/x"]);
    assert!(good && out.contains("from alice"), "{out}");
    let (good, out) = run(&alice, &["get", "other"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    // A password for a no-password user fails.
    let (good, out) = run(&alice, &["--user=alice:guess", "get", "app/x"]);
    assert!(!good && out.contains("authentication failed"), "{out}");
    // Mallory's certificate is signed by the same CA, but mallory is no user.
    let (good, out) = run(&mallory, &["get", "app/x"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    let (good, out) = run(&mallory, &["put", "app/x", "mallory"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    // The admin certificate's name is no user either, now that auth is on…
    let (good, out) = run(&admin, &["get", "other"]);
    assert!(!good && out.contains("permission denied"), "{out}");
    // …but a token beats the certificate's name, and root's certificate is root.
    let (good, out) = run(&admin, &["--user=root:rootpw", "get", "other"]);
    assert!(good && out.contains("secret"), "{out}");
    let (good, out) = run(&root_cert, &["user", "list"]);
    assert!(good && out.contains("alice"), "{out}");
    // Nothing mallory tried landed.
    let (good, out) = run(&root_cert, &["get", "app/x"]);
    assert!(
        good && out.contains("from alice") && !out.contains("mallory"),
        "{out}"
    );
    // Every member knows the users: alice on another member.
    let other = format!("https://127.0.0.1:{}", c.members[2].client);
    let mut args = with(&alice);
    args.extend(["get".into(), "app/x".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (good, out) = etcdctl(&other, &args);
    assert!(good && out.contains("from alice"), "{out}");
    c.kill(0);
}
