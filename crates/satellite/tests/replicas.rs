//! `satellite run api` replicas in `fixed` and `external` mode, as separate processes.

mod common;

use common::replicas::{get, row, satellite, wait_health, wait_status, wait_table, Replicas};
use orbit_testkit::{free_port, EtcdCluster};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_mode_works_while_a_quorum_of_store_replicas_is_up() {
    // Replicas 1-3 run store members, replica 4 only uses them.
    let table: String = (1..=4)
        .map(|id| row(id, free_port(), free_port(), id <= 3))
        .collect();
    let mut r = Replicas::new(satellite(), &table, "fixed", 4);
    for i in 0..4 {
        r.spawn(i);
    }
    for i in 0..4 {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    // Members publish their names shortly after the cluster forms.
    let status = wait_status(r.status[3], |s| s.matches("\"name\":\"n").count() == 3).await;
    assert!(status.contains("\"runs_store_member\":false"), "{status}");
    let (_, status) = get(r.status[0], "/status").await;
    assert!(status.contains("\"runs_store_member\":true"), "{status}");
    // Every replica heartbeats its row; `storage status` shows the table.
    let clients: Vec<String> = (0..3).map(|i| r.client_url(i)).collect();
    let table = wait_table(&clients, |t| t.matches(" live ").count() == 4).await;
    assert_eq!(table.matches(" yes ").count(), 3, "{table}");

    // One store replica down: everyone still works, and its row goes dead once its
    // lease expires.
    r.kill(0);
    for i in 1..4 {
        wait_health(r.status[i], 200, Duration::from_secs(15)).await;
    }
    let table = wait_table(&clients[1..], |t| t.matches(" dead ").count() == 1).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains(" dead ")),
        "{table}"
    );
    // Two of three down: no quorum, the store-less replica reports it.
    r.kill(1);
    wait_health(r.status[3], 503, Duration::from_secs(15)).await;
    // Back to a quorum: healthy again, on the same data dirs.
    r.spawn(0);
    wait_health(r.status[3], 200, Duration::from_secs(30)).await;
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_mode_uses_a_real_etcd() {
    let etcd = EtcdCluster::start(3).await;
    let table: String = etcd
        .endpoints()
        .iter()
        .enumerate()
        .map(|(i, url)| {
            format!(
                "[[replica]]\nid = {}\nstore_name = \"e{i}\"\nclient_url = \"{url}\"\n",
                i + 1
            )
        })
        .collect();
    let mut r = Replicas::new(satellite(), &table, "external", 2);
    r.spawn(0);
    r.spawn(1);
    for i in 0..2 {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
        let status = wait_status(r.status[i], |s| s.matches("\"name\":\"e").count() == 3).await;
        assert!(status.contains("\"mode\":\"external\""), "{status}");
    }
}

#[test]
fn a_wrong_table_is_refused_at_start() {
    let table = format!("{}{}", row(1, 1, 2, true), row(1, 3, 4, true));
    let r = Replicas::new(satellite(), &table, "fixed", 1);
    let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
        .args(["run", "api", "--config"])
        .arg(r.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replica id 1 appears twice"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_only_replica_needs_no_row_and_runs_no_member() {
    let mut r = Replicas::new(
        satellite(),
        &row(1, free_port(), free_port(), true),
        "fixed",
        1,
    );
    r.spawn(0);
    wait_health(r.status[0], 200, Duration::from_secs(30)).await;
    let run = |id: &str, extra: &[&str], status: u16| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_satellite"));
        c.args(["run", "repair", "--config"])
            .arg(r.config())
            .args(["--replica-id", id, "--status-addr"])
            .arg(format!("127.0.0.1:{status}"))
            .arg("--data-dir")
            .arg(r.dir.path().join(format!("worker-{id}")))
            .args(extra)
            .env("ORBIT_VERSION_UNCHECKED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    // An id without a row is a typo unless the replica says it is client-only.
    let out = run("9", &[], free_port()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("client_only"),
        "{err}"
    );
    let out = run("1", &["--client-only"], free_port()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("has a row"), "{err}");
    // `auto`: a random id of its own, a client of the table's members.
    let port = free_port();
    let mut worker = run("auto", &[], port).spawn().unwrap();
    wait_health(port, 200, Duration::from_secs(30)).await;
    let status = wait_status(port, |s| s.contains("\"runs_store_member\":false")).await;
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(s["replica_id"].as_u64().unwrap() >= 1 << 62, "{status}");
    let table = wait_table(&[r.client_url(0)], |t| t.matches(" live ").count() == 2).await;
    assert_eq!(table.matches(" yes ").count(), 1, "{table}");
    worker.kill().unwrap();
    worker.wait().unwrap();
}
