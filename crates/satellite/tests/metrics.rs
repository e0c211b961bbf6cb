//! Metrics and request ids through real processes. A satellite split into `api` (with
//! the store member), `loop`, `repair`, `uptime`, `audit` and `gc`, and five
//! `storagenode` processes serving their debug address: every `/metrics` parses as
//! OpenMetrics with the reference parser, and the named series move when the work
//! happens — an upload counts RPCs on the satellite and the nodes, a pass counts
//! segments, GC sends filters and the nodes trash garbage, an audit counts successes,
//! a killed node shows offline, the checker queues its segments and a repair
//! increments repairs done. One upload's request id shows in the satellite's and a
//! node's logs. A standalone store member (`--listen-metrics-urls`) and the version
//! server (`--debug-addr`) serve theirs too.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::{pass, satellite, trigger};
use orbit_satellite_model::metainfo::Metainfo;
use orbit_testkit::free_port;
use orbit_testkit::metrics::{has, scrape, sum, Sample};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uplink::project::Options;

const ID: &str = "metrics-test-upload-7f3a";

/// Scrapes `port` until it answers and `ok` holds, or panics.
async fn scrape_until(port: u16, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, text) = orbit_testkit::replicas::get(port, "/metrics").await;
        if code == 200 {
            let s = orbit_testkit::metrics::parse(&text);
            if ok(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{what}: never seen on {port}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_serves_metrics_that_move_with_the_work() {
    // Child processes inherit it: RPC answers are logged with their request ids.
    std::env::set_var("ORBIT_LOG", "info,openraft=warn,orbit_telemetry=debug");
    let sat = common::network::start(
        "online_window_s = 3\n\
         [loop]\ninterval_s = 3600\nleader_ttl_s = 2\n\
         [repair]\ninterval_s = 3600\nlease_ttl_s = 2\n\
         [uptime]\ninterval_s = 3600\nstale_s = 1\nleader_ttl_s = 2\n\
         [audit]\ninterval_s = 3600\nlease_ttl_s = 2\ntimeout_s = 2\n\
         [gc]\ninterval_s = 3600\nleader_ttl_s = 2\n",
        &["loop", "repair", "uptime", "audit", "gc"],
    )
    .await;
    let r = &sat.r;
    let (api, lp, rp, up, au, gc) = (
        r.status[0],
        r.status[1],
        r.status[2],
        r.status[3],
        r.status[4],
        r.status[5],
    );
    let mut sn = StorageNodes::new();
    let mut debug = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        sn.start_with(
            &sat.url,
            &sat.key,
            &format!("debug_addr = \"127.0.0.1:{port}\"\nretain_skew_s = 1\nretain_interval_s = 1"),
        );
        debug.push(port);
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let options = Options {
        k: 2,
        repair: 3,
        success: 4,
        total: 4,
        segment_size: 64 << 10,
        inline_max: 1024,
    };
    let (access, p) = sat.project("metrics", options).await;
    p.create_bucket("mbkt").await.unwrap();
    let keep = orbit_testkit::random_bytes(100 << 10, 1);
    orbit_telemetry::with_request_id(ID, p.upload("mbkt", "keep", &keep[..], &|_| {}))
        .await
        .unwrap();
    let gone = orbit_testkit::random_bytes(80 << 10, 2);
    p.upload("mbkt", "gone", &gone[..], &|_| {}).await.unwrap();

    // The uplink library's own series, through its hook.
    let own = orbit_testkit::metrics::parse(&uplink::metrics::text());
    assert_eq!(
        sum(
            &own,
            "orbit_uplink_operations_total",
            &[("op", "upload"), ("result", "ok")]
        ),
        2.0
    );

    // The API: its RPCs by method and code, its store member's Raft state.
    let s = scrape(api).await;
    assert!(
        sum(
            &s,
            "orbit_rpc_requests_total",
            &[("method", "BeginObject"), ("code", "Ok")]
        ) >= 2.0
    );
    assert!(has(&s, "orbit_rpc_request_duration_seconds_bucket"));
    assert!(sum(&s, "orbit_store_raft_term", &[]) >= 1.0);
    assert_eq!(sum(&s, "orbit_store_has_leader", &[]), 1.0);
    assert_eq!(sum(&s, "orbit_store_is_leader", &[]), 1.0);
    assert!(sum(&s, "orbit_store_proposals_applied", &[]) >= 1.0);
    assert!(has(&s, "orbit_store_apply_lag"));
    assert!(
        sum(
            &s,
            "orbit_worker_runs_total",
            &[("worker", "node-selection-cache")]
        ) >= 1.0
    );
    // Every node that took a piece of the traced upload logged its id, and so did the
    // satellite.
    assert!(r.log(0).contains(ID), "the API's log lacks the request id");
    let traced = (0..5)
        .filter(|i| {
            std::fs::read_to_string(sn.dir.path().join(format!("node{i}.log")))
                .unwrap()
                .contains(ID)
        })
        .count();
    assert!(
        traced >= 4,
        "each node of the upload logs its id: {traced} do"
    );
    let mut uploads = 0.0;
    for &port in &debug {
        let s = scrape(port).await;
        uploads += sum(
            &s,
            "orbit_rpc_requests_total",
            &[("method", "Upload"), ("code", "Ok")],
        );
        assert!(has(&s, "orbit_storagenode_used_bytes"));
    }
    // Per segment 4 pieces: 2 segments of keep, 2 of gone.
    assert!(uploads >= 16.0, "{uploads} uploads counted");

    // A pass counts segments; GC's filters of the next pass go out and the nodes
    // trash the deleted object's pieces.
    assert_eq!(pass(r, 1).await["complete"], true);
    let s = scrape(lp).await;
    assert_eq!(
        sum(&s, "orbit_loop_passes_total", &[("result", "complete")]),
        1.0
    );
    assert_eq!(sum(&s, "orbit_loop_segments_total", &[]), 4.0);
    assert!(has(&s, "orbit_loop_pass_duration_seconds_bucket"));
    assert!(sum(&s, "orbit_loop_segments_per_second", &[]) > 0.0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    p.delete("mbkt", "gone").await.unwrap();
    // Garbage must be older than the newest live segment (less the nodes' skew).
    let later = orbit_testkit::random_bytes(80 << 10, 3);
    p.upload("mbkt", "later", &later[..], &|_| {})
        .await
        .unwrap();
    assert_eq!(pass(r, 1).await["complete"], true);
    let published = sum(&scrape(lp).await, "orbit_gc_filters_published_total", &[]);
    assert!(published >= 4.0, "{published} filters published");
    trigger(r, 5, "gc").await;
    assert_eq!(
        sum(&scrape(gc).await, "orbit_gc_filters_sent_total", &[]),
        published
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut trashed = 0.0;
        for &port in &debug {
            trashed += sum(
                &scrape(port).await,
                "orbit_storagenode_pieces_trashed_total",
                &[],
            );
        }
        if trashed >= 4.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes trashed {trashed} pieces"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An audit round counts its outcomes.
    assert_eq!(sum(&scrape(au).await, "orbit_audits_total", &[]), 0.0);
    trigger(r, 4, "audit").await;
    assert!(
        sum(
            &scrape(au).await,
            "orbit_audits_total",
            &[("outcome", "success")]
        ) >= 1.0
    );

    // A killed node shows offline; the checker queues the injured segment and a
    // repair increments repairs done.
    let enc = uplink::crypt::encrypt_path(&access.root, "mbkt", "keep");
    let segs = Metainfo::new(sat.kv.clone())
        .get_object("metrics", "mbkt", &enc)
        .await
        .unwrap()
        .1;
    let victim = segs[0].pieces[0].1;
    let i = sn.ids.iter().position(|n| *n == victim).unwrap();
    sn.kill(i);
    tokio::time::sleep(Duration::from_secs(4)).await;
    trigger(r, 3, "uptime").await;
    let s = scrape(up).await;
    assert_eq!(
        sum(&s, "orbit_nodes", &[("state", "offline")]),
        1.0,
        "{s:?}"
    );
    assert_eq!(sum(&s, "orbit_nodes", &[]), 5.0);
    assert_eq!(
        sum(
            &scrape(rp).await,
            "orbit_repair_jobs_total",
            &[("outcome", "repaired")]
        ),
        0.0
    );
    assert_eq!(pass(r, 1).await["complete"], true);
    assert!(sum(&scrape(lp).await, "orbit_repair_queue_length", &[]) >= 1.0);
    trigger(r, 2, "repair").await;
    let s = scrape_until(rp, "a repair", |s| {
        sum(s, "orbit_repair_jobs_total", &[("outcome", "repaired")]) >= 1.0
    })
    .await;
    assert!(sum(&s, "orbit_repair_pieces_uploaded_total", &[]) >= 1.0);
    assert!(
        sum(
            &s,
            "orbit_worker_runs_total",
            &[("worker", "repair"), ("result", "ok")]
        ) >= 1.0
    );
    let mut back = Vec::new();
    p.download("mbkt", "keep", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_member_and_the_version_server_serve_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let mut member = Command::new(satellite())
        .args(["storage", "init", "--name", "m1", "--data-dir"])
        .arg(dir.path().join("m1"))
        .args(["--client-url", &format!("http://127.0.0.1:{client}")])
        .args(["--peer-url", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{metrics}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = scrape_until(metrics, "a leader", |s| {
        sum(s, "orbit_store_is_leader", &[]) == 1.0
    })
    .await;
    assert_eq!(sum(&s, "orbit_store_leader_changes_seen_total", &[]), 0.0);
    let put = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=127.0.0.1:{client}"))
        .args(["put", "k", "v"])
        .output()
        .unwrap();
    assert!(put.status.success(), "{put:?}");
    // The member's gauges follow its state on the heartbeat tick.
    let s = scrape_until(metrics, "the put's revision", |s| {
        sum(s, "orbit_store_revision", &[]) >= 2.0
    })
    .await;
    assert_eq!(
        sum(
            &s,
            "orbit_rpc_requests_total",
            &[("service", "etcdserverpb.KV"), ("method", "Put")]
        ),
        1.0
    );
    member.kill().unwrap();
    member.wait().unwrap();

    let config = dir.path().join("version.toml");
    std::fs::write(
        &config,
        format!(
            "replica_id = 1\nmode = \"external\"\n{}[version.server]\n",
            common::replicas::row(1, free_port(), free_port(), false)
        ),
    )
    .unwrap();
    let (port, debug) = (free_port(), free_port());
    let mut version = Command::new(satellite())
        .args(["run", "version", "--config"])
        .arg(&config)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--debug-addr", &format!("127.0.0.1:{debug}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let section = orbit_version::VersionSection {
        url: format!("http://127.0.0.1:{port}"),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while orbit_version::check(&section, "api", orbit_version::VERSION, "test")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the version server never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = scrape(debug).await;
    assert!(sum(&s, "orbit_rpc_requests_total", &[("code", "Ok")]) >= 1.0);
    version.kill().unwrap();
    version.wait().unwrap();
}
