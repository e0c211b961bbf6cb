//! Backup and restore through real processes: a 3-member store takes 100,000 keys with
//! leases and history; Debian's `etcdctl snapshot save` takes a backup over the
//! Maintenance Snapshot RPC; `satellite storage snapshot status` describes it; a cut
//! short copy is refused without writing anything; `snapshot restore` makes three new
//! members from it, which start as one cluster with every key, version, lease and
//! revision as before, and the old history.

mod common;

use common::replicas::satellite;
use orbit_kv::{DeleteRequest, Kv, PutRequest, RangeRequest, RemoteKv, TxnOp, TxnRequest};
use orbit_testkit::{process::ProcCluster, Timings};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every key at `revision` (0: now), page by page: key, value, revisions, version, lease.
async fn dump(kv: &RemoteKv, revision: i64) -> (i64, Vec<orbit_kv::KeyValue>) {
    let mut out = Vec::new();
    let mut from = vec![0u8];
    let mut at = revision;
    loop {
        let r = kv
            .range(RangeRequest {
                key: from.clone(),
                range_end: vec![0],
                limit: 20_000,
                revision: at,
                ..Default::default()
            })
            .await
            .unwrap();
        // Every page at the first page's revision: one consistent view.
        at = r.revision.min(if at == 0 { r.revision } else { at });
        let last = r.kvs.last().map(|k| k.key.clone());
        out.extend(r.kvs);
        match (r.more, last) {
            (true, Some(mut k)) => {
                k.push(0);
                from = k;
            }
            _ => return (at, out),
        }
    }
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(satellite()).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_with_every_key_lease_and_revision() {
    let old = ProcCluster::start(satellite(), 3, Timings::FAST).await;
    let kv = old.client().await;
    let short = kv.lease_grant(600, 0).await.unwrap().id;
    let long = kv.lease_grant(86_400, 0).await.unwrap().id;
    // 100,000 keys, 128 to a transaction; every tenth on a lease.
    for batch in 0..(100_000 / 125) {
        let ops = (0..125)
            .map(|j| {
                let i = batch * 125 + j;
                let mut p = PutRequest::new(format!("key/{i:06}"), format!("value {i}"));
                if i % 10 == 0 {
                    p.lease = if i % 20 == 0 { short } else { long };
                }
                TxnOp::Put(p)
            })
            .collect();
        let r = kv
            .txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(r.succeeded);
    }
    let middle = dump(&kv, 0).await.0;
    // History: a thousand keys written again twice, five hundred deleted, and
    // compaction up to a point before them.
    kv.compact(middle - 100).await.unwrap();
    for round in 0..2 {
        for i in (0..100_000).step_by(100) {
            kv.put(PutRequest::new(
                format!("key/{i:06}"),
                format!("again {round}"),
            ))
            .await
            .unwrap();
        }
    }
    for i in (50..100_000).step_by(200) {
        kv.delete(DeleteRequest::key(format!("key/{i:06}")))
            .await
            .unwrap();
    }
    let (revision, before) = dump(&kv, 0).await;
    let ours =
        |kvs: &[orbit_kv::KeyValue]| kvs.iter().filter(|k| k.key.starts_with(b"key/")).count();
    assert_eq!(ours(&before), 100_000 - 500);
    let (_, then) = dump(&kv, middle).await;
    assert_eq!(ours(&then), 100_000);

    // etcdctl's backup, through the Snapshot RPC.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &old.endpoint(1), "snapshot", "save"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl snapshot save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = file.display().to_string();
    let (ok, status) = run(&["storage", "snapshot", "status", &f, "-w", "json"]);
    assert!(ok, "{status}");
    let s: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(s["revision"], revision, "{s}");
    assert_eq!(s["totalKey"], before.len(), "{s}");
    assert_eq!(s["leases"], 2, "{s}");
    assert_eq!(
        s["totalSize"],
        std::fs::metadata(&file).unwrap().len(),
        "{s}"
    );
    let (ok, table) = run(&["storage", "snapshot", "status", &f]);
    assert!(
        ok && table.contains(&format!("| {revision} | {} |", before.len())),
        "{table}"
    );

    // Our own `save` takes the same state.
    let mine = dir.path().join("ours.backup");
    let (ok, said) = run(&[
        "storage",
        "snapshot",
        "save",
        &mine.display().to_string(),
        "--endpoints",
        &old.endpoint(2),
    ]);
    assert!(
        ok && said.contains(&format!("revision {revision}")),
        "{said}"
    );

    // A cut-short copy is refused and writes nothing.
    let new = ProcCluster::prepared(satellite(), 3, Timings::FAST);
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (name, data_dir) = new.member(0);
    let initial = new.initial_cluster();
    let restore = |file: &str, name: &str, data_dir: &std::path::Path| {
        run(&[
            "storage",
            "snapshot",
            "restore",
            file,
            "--name",
            name,
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            ProcCluster::TOKEN,
            "--data-dir",
            &data_dir.display().to_string(),
        ])
    };
    let (ok, said) = restore(&cut.display().to_string(), &name, &data_dir);
    assert!(!ok && said.contains("cut short"), "{said}");
    assert!(
        !data_dir.exists(),
        "a refused restore made {}",
        data_dir.display()
    );
    let (ok, said) = run(&["storage", "snapshot", "status", &cut.display().to_string()]);
    assert!(!ok && said.contains("cut short"), "{said}");

    // Three new members from the backup, started as usual.
    let mut new = new;
    for i in 0..3 {
        let (name, data_dir) = new.member(i);
        let (ok, said) = restore(&f, &name, &data_dir);
        assert!(ok, "{said}");
        new.spawn(i);
    }
    let client = new.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (rev, after) = loop {
        match tokio::time::timeout(Duration::from_secs(5), async {
            client
                .range(RangeRequest::key("key/000001"))
                .await
                .map(|r| r.revision)
        })
        .await
        {
            Ok(Ok(_)) => break dump(&client, 0).await,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "the restored cluster never answered"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(rev, revision, "the revision is the backup's");
    assert!(after == before, "the keys differ after the restore");
    assert!(dump(&client, middle).await.1 == then, "the history differs");
    let compacted = client
        .range(RangeRequest {
            key: b"key/000001".to_vec(),
            revision: middle - 200,
            ..Default::default()
        })
        .await;
    assert!(compacted.is_err(), "a revision compacted away came back");
    let mut leases = client.leases().await.unwrap();
    leases.sort();
    let mut want = vec![short, long];
    want.sort();
    assert_eq!(leases, want);
    for (id, ttl) in [(short, 600), (long, 86_400)] {
        let was = kv.lease_time_to_live(id, true).await.unwrap();
        let t = client.lease_time_to_live(id, true).await.unwrap();
        assert_eq!(t.granted_ttl, ttl);
        assert!(t.ttl > 0 && t.ttl <= ttl);
        let (mut a, mut b) = (was.keys, t.keys);
        a.sort();
        b.sort();
        assert!(
            a.len() >= 4_000 && a == b,
            "lease {id}: {} keys, restored {}",
            a.len(),
            b.len()
        );
    }
    // The new cluster is a cluster: three members, and it takes writes on all.
    assert_eq!(client.members().await.unwrap().len(), 3);
    for i in 0..3 {
        new.client_of(i)
            .await
            .put(PutRequest::new(format!("after/{i}"), "x"))
            .await
            .unwrap();
    }
    assert_eq!(
        client
            .range(RangeRequest::key("after/2"))
            .await
            .unwrap()
            .revision,
        revision + 3
    );
}
