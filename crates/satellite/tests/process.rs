//! One real `satellite run api` process: its workers and their status on the status
//! endpoint, trigger and pause through it, shutdown outside in (API, the services'
//! workers, the replica's, the store's) on SIGTERM; and `satellite config show`.

mod common;

use common::replicas::{get, post, row, satellite, wait_health, Replicas};
use orbit_testkit::free_port;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

async fn status(port: u16) -> Value {
    let (code, body) = get(port, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn worker<'a>(s: &'a Value, list: &str, name: &str) -> &'a Value {
    s[list]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == name))
        .unwrap_or_else(|| panic!("no worker {name} in {list}: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_show_on_the_status_endpoint_obey_triggers_and_stop_outside_in() {
    let table = row(1, free_port(), free_port(), true);
    let mut r = Replicas::with(
        satellite(),
        &format!("[storage]\ndistinct_networks = false\nsweep_interval_s = 3600\n{table}"),
        "fixed",
        1,
        "",
    );
    r.set_env("ORBIT_LOG", "info,orbit_worker=debug,openraft=warn");
    r.spawn(0);
    let port = r.status[0];
    wait_health(port, 200, Duration::from_secs(30)).await;

    let s = status(port).await;
    for name in [
        "replica-heartbeat",
        "node-selection-cache",
        "expired-serials",
        "abandoned-uploads",
    ] {
        worker(&s, "workers", name);
    }
    for name in ["raft-heartbeat", "lease-expiry", "auto-compaction"] {
        worker(&s, "store_workers", name);
    }
    assert!(worker(&s, "workers", "replica-heartbeat")["runs"].as_u64() > Some(0));
    // The sweep runs hourly here: only a trigger runs it now.
    assert_eq!(worker(&s, "workers", "expired-serials")["runs"], 0);

    let path = "/workers/expired-serials/trigger";
    assert_eq!(post(port, path, "").await.0, 401, "no token");
    assert_eq!(post(port, path, "wrong").await.0, 401, "wrong token");
    assert_eq!(post(port, path, "replica-test").await, (200, "ok\n".into()));
    let s = status(port).await;
    let w = worker(&s, "workers", "expired-serials");
    assert_eq!(w["runs"], 1, "{w}");
    assert!(w["last_error"].is_null(), "{w}");
    assert_eq!(
        post(port, "/workers/nothing/trigger", "replica-test")
            .await
            .0,
        404
    );

    assert_eq!(
        post(port, "/workers/abandoned-uploads/pause", "replica-test")
            .await
            .0,
        200
    );
    assert_eq!(
        worker(&status(port).await, "workers", "abandoned-uploads")["paused"],
        true
    );
    assert_eq!(
        post(port, "/workers/abandoned-uploads/resume", "replica-test")
            .await
            .0,
        200
    );
    assert_eq!(
        worker(&status(port).await, "workers", "abandoned-uploads")["paused"],
        false
    );

    let exit = r.terminate(0, Duration::from_secs(20));
    assert!(
        exit.is_some_and(|e| e.success()),
        "no clean exit on SIGTERM: {exit:?}"
    );
    // Outside in: the API, then the services' workers (last started first), then the
    // replica's own, then the store member's.
    let log = r.log(0);
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("{what:?} not in the log:\n{log}"))
    };
    let order = [
        at("API stopped"),
        at("worker stopped worker=abandoned-uploads"),
        at("worker stopped worker=expired-serials"),
        at("worker stopped worker=node-selection-cache"),
        at("worker stopped worker=replica-heartbeat"),
        at("worker stopped worker=raft-heartbeat"),
        at("replica stopped"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "shutdown out of order {order:?}:\n{log}"
    );
}

#[test]
fn config_show_prints_the_effective_configuration_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("satellite.toml");
    let table = row(1, free_port(), free_port(), true);
    std::fs::write(
        &file,
        format!("replica_id = 1\nmode = \"fixed\"\ntoken = \"s3cret\"\n[storage]\n{table}"),
    )
    .unwrap();
    let out = Command::new(satellite())
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "replica_heartbeat_ms = 1000",
        "[api]",
        "addr = \"127.0.0.1:7778\"",
        "[storage]",
        "abandoned_upload_s = 86400",
        "[[replica]]",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    assert!(!text.contains("s3cret"), "the token is shown:\n{text}");

    std::fs::write(
        &file,
        format!("replica_id = 1\nmode = \"fixed\"\n[storage]\nsweep_intervall_s = 5\n{table}"),
    )
    .unwrap();
    let out = Command::new(satellite())
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("[storage]") && err.contains("sweep_intervall_s"),
        "{err}"
    );
}
