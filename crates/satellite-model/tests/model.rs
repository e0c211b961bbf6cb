//! The satellite's records in the store: projects are isolated whatever their names,
//! a check-in racing another change of a node record loses neither, and a corrupt or
//! unknown-format record is an error that names its key.

use orbit_identity::Identity;
use orbit_kv::{Kv, PutRequest};
use orbit_protocol::CheckIn;
use orbit_satellite_model::apikeys::ApiKeys;
use orbit_satellite_model::metainfo::Metainfo;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::Error as ApiError;
use orbit_testkit::{OrbitCluster, Timings};
use std::sync::Arc;

fn hostile() -> Vec<String> {
    vec![
        "a/xyz".into(),
        "..".into(),
        ".".into(),
        "".into(),
        "x".repeat(1024),
        "a\0b".into(),
        "../b".into(),
        "bkt1/".into(),
        "Ä".into(),
    ]
}

#[tokio::test]
async fn hostile_names_are_refused_and_no_request_crosses_a_project() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let keys = ApiKeys::new(kv.clone());
    let meta = Metainfo::new(kv.clone());
    for p in hostile() {
        let e = keys.create(&p).await.unwrap_err().to_string();
        assert!(e.contains("project name"), "{p:?}: {e}");
        assert!(
            e.len() < 400,
            "the message quotes a whole hostile name: {e}"
        );
    }
    for b in hostile() {
        let e = meta.create_bucket("a", &b, 1).await.unwrap_err();
        assert!(matches!(e, ApiError::Invalid(_)), "{b:?}: {e}");
        assert!(e.to_string().contains("bucket name"), "{e}");
        for e in [
            meta.get_object("a", &b, "k").await.map(|_| ()).unwrap_err(),
            meta.list_objects("a", &b, "", "", 0)
                .await
                .map(|_| ())
                .unwrap_err(),
            meta.delete_object("a", &b, "k").await.unwrap_err(),
            meta.delete_bucket("a", &b).await.unwrap_err(),
            meta.begin_object("a", &b, "k", 1)
                .await
                .map(|_| ())
                .unwrap_err(),
        ] {
            assert!(matches!(e, ApiError::Invalid(_)), "{b:?}: {e}");
        }
    }
    // Project "a" and "b" with the same bucket and object names: each sees its own.
    let names = ["k", "dir/k", "../k", "k\0", "..", &"z".repeat(1000)];
    for p in ["a", "b"] {
        meta.create_bucket(p, "bkt1", 1).await.unwrap();
        for k in names {
            let s = meta.begin_object(p, "bkt1", k, 1).await.unwrap();
            meta.commit_object(p, &s, p.as_bytes().to_vec(), 2)
                .await
                .unwrap();
        }
    }
    for p in ["a", "b"] {
        assert_eq!(
            meta.list_buckets(p, "", 0).await.unwrap().items,
            vec!["bkt1".to_string()]
        );
        let listed = meta.list_objects(p, "bkt1", "", "", 0).await.unwrap().items;
        assert_eq!(listed.len(), names.len());
        assert!(listed.iter().all(|(_, o)| o.metadata == p.as_bytes()));
        for k in names {
            let (o, _) = meta.get_object(p, "bkt1", k).await.unwrap();
            assert_eq!(o.metadata, p.as_bytes());
        }
    }
    // Deleting in one project leaves the other's objects alone.
    for k in names {
        meta.delete_object("a", "bkt1", k).await.unwrap();
    }
    assert!(meta
        .list_objects("a", "bkt1", "", "", 0)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        meta.list_objects("b", "bkt1", "", "", 0)
            .await
            .unwrap()
            .items
            .len(),
        names.len()
    );
    // An over-long object key is refused with the limit named.
    let e = meta
        .begin_object("b", "bkt1", &"k".repeat(5000), 1)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at most 4096"), "{e}");
}

#[tokio::test]
async fn check_ins_racing_a_disqualification_lose_neither() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let node = Identity::generate();
    let check_in = |now: u64| {
        let body = CheckIn {
            address: "https://127.0.0.1:9".into(),
            free: now,
            version: "t".into(),
            timestamp: now,
        }
        .encode();
        let sig = node.sign(&body);
        let nodes = nodes.clone();
        let key = node.public();
        async move { nodes.check_in(key, &body, &sig, now).await.map(|_| ()) }
    };
    check_in(1_000_000).await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=20u64 {
        tasks.push(tokio::spawn(check_in(1_000_000 + i)));
    }
    let dq = {
        let nodes = nodes.clone();
        let id = node.id();
        tokio::spawn(async move { nodes.disqualify(&id, "test", 1).await.map(|_| ()) })
    };
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    dq.await.unwrap().unwrap();
    check_in(1_000_100).await.unwrap();
    let rec = nodes.get(&node.id()).await.unwrap().unwrap();
    assert!(
        rec.disqualified,
        "a check-in overwrote the disqualification"
    );
    assert_eq!(rec.last_seen, 1_000_100);
}

#[tokio::test]
async fn audit_outcomes_racing_check_ins_are_all_counted_and_disqualification_sticks() {
    use orbit_satellite_model::reputation::{AuditOutcome, ReputationConfig};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let node = Identity::generate();
    let check_in = |now: u64| {
        let body = CheckIn {
            address: "https://127.0.0.1:9".into(),
            free: 1,
            version: "t".into(),
            timestamp: now,
        }
        .encode();
        let sig = node.sign(&body);
        let nodes = nodes.clone();
        let key = node.public();
        async move { nodes.check_in(key, &body, &sig, now).await.map(|_| ()) }
    };
    check_in(1_000_000).await.unwrap();
    let config = ReputationConfig {
        initial_alpha: 10.0,
        ..ReputationConfig::default()
    };
    let mut tasks = Vec::new();
    for i in 1..=10u64 {
        tasks.push(tokio::spawn(check_in(1_000_000 + i)));
        let (nodes, id) = (nodes.clone(), node.id());
        tasks.push(tokio::spawn(async move {
            nodes
                .record_audits(
                    &id,
                    &[AuditOutcome::Success, AuditOutcome::Offline],
                    &config,
                    5,
                )
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rec = nodes.get(&node.id()).await.unwrap().unwrap();
    assert_eq!(rec.reputation.audits.success, 10);
    assert_eq!(rec.reputation.audits.offline, 10);
    assert!(rec.last_seen > 1_000_000, "the check-ins landed too");
    assert!(!rec.disqualified);
    // With α₀ = 10, one failure takes the score below 0.96: disqualified with its
    // reason and time, and a later check-in keeps it so.
    let (rec, events) = nodes
        .record_audits(&node.id(), &[AuditOutcome::Failure], &config, 9)
        .await
        .unwrap();
    assert!(rec.disqualified, "{rec:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(rec.reputation.disqualified_at, 9);
    assert!(rec.reputation.disqualified_reason.contains("audit score"));
    check_in(1_000_100).await.unwrap();
    let rec = nodes.get(&node.id()).await.unwrap().unwrap();
    assert!(rec.disqualified && rec.reputation.disqualified_at == 9);
}

#[tokio::test]
async fn corrupt_and_unknown_version_records_are_errors_naming_the_key() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    let id = Identity::generate().id();
    let key = format!("/orbit/sat/nodes/{id}");
    kv.put(PutRequest::new(key.clone(), "{not json"))
        .await
        .unwrap();
    let e = nodes.get(&id).await.unwrap_err().to_string();
    assert!(e.contains(&key) && e.contains("corrupt"), "{e}");
    assert!(nodes.all().await.is_err(), "a corrupt record was skipped");
    let good = Identity::generate();
    let body = serde_json::json!({
        "id": good.id(), "key": good.public(), "address": "https://x:1",
        "free": 1, "version": "t", "last_seen": 1, "disqualified": false,
    });
    let key = format!("/orbit/sat/nodes/{}", good.id());
    // Version 1 (before reputations) reads with a new node's reputation...
    let rec = serde_json::json!({"v": 1, "r": body});
    kv.put(PutRequest::new(key.clone(), rec.to_string()))
        .await
        .unwrap();
    let old = nodes.get(&good.id()).await.unwrap().unwrap();
    assert_eq!(old.reputation, Default::default());
    // ...a version from a newer build is refused naming the key.
    let rec = serde_json::json!({"v": 3, "r": body});
    kv.put(PutRequest::new(key.clone(), rec.to_string()))
        .await
        .unwrap();
    let e = nodes.get(&good.id()).await.unwrap_err().to_string();
    assert!(e.contains(&key) && e.contains("version 3"), "{e}");
    // A record in no known layout at all.
    let rec = serde_json::json!({"v": 7, "id": good.id()});
    kv.put(PutRequest::new(key.clone(), rec.to_string()))
        .await
        .unwrap();
    let e = nodes.get(&good.id()).await.unwrap_err().to_string();
    assert!(e.contains(&key) && e.contains("corrupt"), "{e}");
}

/// What every satellite before the record envelope wrote, one record of each kind.
async fn write_schema_1(kv: &dyn Kv) -> Vec<String> {
    let node = Identity::generate();
    let stream = "00112233445566778899aabbccddeeff";
    let records = [
        (
            "/orbit/sat/buckets/p/bkt1".to_string(),
            "1700000000".to_string(),
        ),
        (
            "/orbit/sat/objects/p/bkt1/k".into(),
            serde_json::json!({"v": 1, "stream": vec![0u8; 16], "metadata": [1, 2], "created": 5})
                .to_string(),
        ),
        (
            format!("/orbit/sat/streams/{stream}"),
            r#"{"v":1,"project":"p","bucket":"bkt1","key":"k2","created":6}"#.into(),
        ),
        (
            format!("/orbit/sat/segments/{stream}/0000000000"),
            serde_json::json!({"v": 1, "index": 0, "encrypted_size": 3, "inline": [1, 2, 3],
                "redundancy": {"k": 1, "repair": 1, "success": 1, "total": 1},
                "root": vec![0u8; 32], "piece_size": 0, "pieces": []})
            .to_string(),
        ),
        (
            format!("/orbit/sat/nodes/{}", node.id()),
            serde_json::json!({"v": 1, "id": node.id(), "key": node.public(),
                "address": "https://127.0.0.1:1", "free": 1, "version": "t", "last_seen": 1,
                "disqualified": false})
            .to_string(),
        ),
        (
            "/orbit/sat/settled/00000000000000000000000000000001".into(),
            serde_json::json!({"v": 1, "node": node.id(), "action": "Get", "amount": 1, "at": 1})
                .to_string(),
        ),
        (
            "/orbit/sat/apikeys/00000000000000000000000000000002".into(),
            serde_json::json!({"v": 1, "secret": vec![3u8; 32], "project": "p"}).to_string(),
        ),
        (
            format!("/orbit/sat/revoked/{}", "ab".repeat(32)),
            "1".into(),
        ),
    ];
    for (k, v) in &records {
        kv.put(PutRequest::new(k.clone(), v.clone())).await.unwrap();
    }
    records.into_iter().map(|(k, _)| k).collect()
}

#[tokio::test]
async fn a_store_written_before_the_envelope_is_migrated_once_and_reads_the_same() {
    use orbit_kv::record::is_enveloped;
    use orbit_satellite_model::schema::{migrate, Migration, SCHEMA};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let keys = write_schema_1(&*kv).await;
    let meta = Metainfo::new(kv.clone());
    // Readable before the migration...
    let before = meta.get_object("p", "bkt1", "k").await.unwrap().0;
    assert_eq!(
        meta.list_buckets("p", "", 0).await.unwrap().items,
        vec!["bkt1".to_string()]
    );
    let done = migrate(&*kv).await.unwrap();
    assert_eq!(
        done,
        Migration {
            from: 1,
            rewritten: keys.len()
        }
    );
    for k in &keys {
        let r = kv
            .range(orbit_kv::RangeRequest::key(k.clone()))
            .await
            .unwrap();
        assert!(is_enveloped(&r.kvs[0].value), "{k} not migrated");
    }
    // ...and after, the same.
    assert_eq!(meta.get_object("p", "bkt1", "k").await.unwrap().0, before);
    let nodes = Nodes::new(kv.clone(), SelectionConfig::default());
    assert_eq!(nodes.all().await.unwrap().len(), 1);
    // Once: a second start finds the schema record and rewrites nothing.
    let again = migrate(&*kv).await.unwrap();
    assert_eq!((again.from, again.rewritten), (SCHEMA, 0));
    // A store from a newer orbit is refused with what to do.
    kv.put(PutRequest::new(
        orbit_satellite_model::keys::SCHEMA,
        r#"{"v":1,"r":{"version":99}}"#,
    ))
    .await
    .unwrap();
    let e = migrate(&*kv).await.unwrap_err().to_string();
    assert!(e.contains("schema 99") && e.contains("newer"), "{e}");
}

#[tokio::test]
async fn segments_of_schema_2_are_rewritten_with_hex_ids_and_read_the_same() {
    use orbit_kv::record::version;
    use orbit_satellite_model::metainfo::Segment;
    use orbit_satellite_model::schema::{migrate, SCHEMA};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    kv.put(PutRequest::new(
        orbit_satellite_model::keys::SCHEMA,
        r#"{"v":1,"r":{"version":2}}"#,
    ))
    .await
    .unwrap();
    let node = Identity::generate().id();
    let key = format!("/orbit/sat/segments/{}/0000000000", "ab".repeat(16));
    let body = serde_json::json!({"index": 0, "encrypted_size": 9, "inline": null,
        "redundancy": {"k": 1, "repair": 1, "success": 2, "total": 2},
        "root": vec![7u8; 32], "piece_size": 5, "pieces": [[0, node], [1, node]]});
    let v1 = serde_json::json!({"v": 1, "r": body}).to_string();
    kv.put(PutRequest::new(key.clone(), v1.clone()))
        .await
        .unwrap();
    let before: Segment = orbit_kv::record::decode(key.as_bytes(), v1.as_bytes()).unwrap();
    assert_eq!(before.root.0, [7u8; 32]);
    assert_eq!(before.pieces, vec![(0, node), (1, node)]);
    let done = migrate(&*kv).await.unwrap();
    assert_eq!((done.from, done.rewritten), (2, 1));
    let r = kv
        .range(orbit_kv::RangeRequest::key(key.clone()))
        .await
        .unwrap();
    let stored = &r.kvs[0].value;
    assert_eq!(version(stored), Some(2));
    let text = String::from_utf8_lossy(stored);
    assert!(text.contains(&"07".repeat(32)), "{text}");
    assert!(text.contains(&node.to_string()), "{text}");
    let after: Segment = orbit_kv::record::decode(key.as_bytes(), stored).unwrap();
    assert_eq!(after, before);
    assert_eq!(migrate(&*kv).await.unwrap().from, SCHEMA);
}

#[tokio::test]
async fn listings_page_through_every_item_once() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let meta = Metainfo::new(kv.clone());
    for b in ["bkt-a", "bkt-b", "bkt-c"] {
        meta.create_bucket("p", b, 1).await.unwrap();
    }
    let mut buckets = Vec::new();
    loop {
        let page = meta
            .list_buckets("p", buckets.last().map_or("", |b: &String| b), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        buckets.extend(page.items);
        if !page.more {
            break;
        }
    }
    assert_eq!(buckets, ["bkt-a", "bkt-b", "bkt-c"]);
    let names: Vec<String> = (0..25).map(|i| format!("dir/{i:03}")).collect();
    for n in names.iter().chain(["other".to_string()].iter()) {
        let s = meta.begin_object("p", "bkt-a", n, 1).await.unwrap();
        meta.commit_object("p", &s, Vec::new(), 1).await.unwrap();
    }
    let mut listed: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let cursor = listed.last().cloned().unwrap_or_default();
        let page = meta
            .list_objects("p", "bkt-a", "dir/", &cursor, 10)
            .await
            .unwrap();
        pages += 1;
        listed.extend(page.items.into_iter().map(|(k, _)| k));
        if !page.more {
            break;
        }
    }
    assert_eq!(
        listed, names,
        "every object under the prefix once, in order"
    );
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn expired_serials_are_swept_and_a_replay_is_refused_before_and_after() {
    use orbit_protocol::{encode_served, Action, Order, PieceId, Served};
    use orbit_satellite_model::nodes::NodeRecord;
    use orbit_satellite_model::orders::Orders;
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let orders = Orders::new(kv.clone(), Identity::generate(), 60);
    let (node, uplink) = (Identity::generate(), Identity::generate());
    let rec = NodeRecord {
        id: node.id(),
        key: node.public(),
        address: "https://127.0.0.1:1".into(),
        free: 1 << 30,
        version: "t".into(),
        last_seen: 0,
        disqualified: false,
        last_contact: 0,
        last_contact_failure: 0,
        contact_failures: 0,
        reputation: Default::default(),
    };
    let limit = orders.limit(
        &rec,
        PieceId::random(),
        Action::Get,
        1000,
        uplink.public(),
        1000,
    );
    let body = encode_served(&[Served {
        order: Order::sign(&limit, 700, &uplink),
        limit,
    }]);
    let sig = node.sign(&body);
    let settle = |now| orders.settle(node.public(), &body, &sig, now);
    assert_eq!(settle(1000).await.unwrap().0.len(), 1);
    // Not yet expired: the record stays and the replay is refused.
    assert_eq!(orders.remove_expired(1030).await.unwrap(), 0);
    assert_eq!(settle(1030).await.unwrap().1.len(), 1);
    // Expired: swept, and the replay is still refused (the limit itself has expired).
    assert_eq!(orders.remove_expired(1061).await.unwrap(), 1);
    let left = kv
        .range(orbit_kv::RangeRequest::prefix("/orbit/sat/settled/"))
        .await
        .unwrap();
    assert_eq!(left.count, 0);
    let (ok, refused) = settle(1061).await.unwrap();
    assert_eq!((ok.len(), refused.len()), (0, 1));
}

#[tokio::test]
async fn abandoned_uploads_are_swept_with_their_segments() {
    use orbit_satellite_model::metainfo::{Redundancy, Segment};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let meta = Metainfo::new(kv.clone());
    meta.create_bucket("p", "bkt1", 1).await.unwrap();
    let old = meta.begin_object("p", "bkt1", "old", 100).await.unwrap();
    let fresh = meta.begin_object("p", "bkt1", "fresh", 5000).await.unwrap();
    let seg = Segment {
        index: 0,
        encrypted_size: 3,
        inline: Some(vec![1, 2, 3]),
        redundancy: Redundancy {
            k: 1,
            repair: 1,
            success: 1,
            total: 1,
        },
        root: Default::default(),
        piece_size: 0,
        created: 0,
        expires: 0,
        pieces: Vec::new(),
    };
    meta.commit_segment("p", &old, &seg).await.unwrap();
    meta.commit_segment("p", &fresh, &seg).await.unwrap();
    assert_eq!(meta.remove_abandoned(5100, 3600).await.unwrap(), 1);
    let segs = kv
        .range(orbit_kv::RangeRequest::prefix("/orbit/sat/segments/"))
        .await
        .unwrap();
    assert_eq!(segs.count, 1, "the abandoned upload's segment went with it");
    assert!(meta
        .commit_object("p", &old, Vec::new(), 5200)
        .await
        .is_err());
    meta.commit_object("p", &fresh, Vec::new(), 5200)
        .await
        .unwrap();
    meta.get_object("p", "bkt1", "fresh").await.unwrap();
}

#[tokio::test]
async fn audit_queues_replace_older_samples_and_hand_each_job_to_one_worker() {
    use orbit_satellite_model::audit::{AuditQueue, Pending, ReverifyQueue};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let q = AuditQueue::new(kv.clone());
    let s = |i: u8| [i; 16];
    q.replace(&[(s(1), 0), (s(2), 0), (s(3), 1)], 10, 100)
        .await
        .unwrap();
    // The next sample replaces the last; a segment in both stays, once.
    let dropped = q.replace(&[(s(3), 1), (s(4), 0)], 20, 200).await.unwrap();
    assert_eq!(dropped, 2);
    let mut jobs: Vec<_> = q
        .jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| (j.stream, j.pass))
        .collect();
    jobs.sort();
    assert_eq!(jobs, vec![(s(3), 20), (s(4), 20)]);
    // Two workers claim: each job once, then nothing is left to claim.
    let (la, lb) = (
        kv.lease_grant(30, 0).await.unwrap().id,
        kv.lease_grant(30, 0).await.unwrap().id,
    );
    let a = q.claim("a", la).await.unwrap().unwrap();
    let b = q.claim("b", lb).await.unwrap().unwrap();
    assert_ne!((a.stream, a.index), (b.stream, b.index));
    assert!(q.claim("a", la).await.unwrap().is_none());
    assert_eq!(
        q.holder(&a.stream, a.index).await.unwrap().as_deref(),
        Some("a")
    );
    // A dead worker's claims go with its lease; its job can be taken again.
    kv.lease_revoke(lb).await.unwrap();
    let again = q.claim("a", la).await.unwrap().unwrap();
    assert_eq!((again.stream, again.index), (b.stream, b.index));
    q.done(&a).await.unwrap();
    q.done(&again).await.unwrap();
    assert!(q.jobs().await.unwrap().is_empty());

    // One pending reverification per node.
    let r = ReverifyQueue::new(kv.clone());
    let node = Identity::generate().id();
    let p = Pending {
        node,
        stream: s(9),
        index: 2,
        piece: 4,
        offset: 16384,
        len: 1024,
        attempts: 0,
        inserted: 5,
        last_attempt: 5,
    };
    assert!(r.contain(&p).await.unwrap());
    assert!(!r
        .contain(&Pending {
            piece: 7,
            ..p.clone()
        })
        .await
        .unwrap());
    let any = |_: &Pending| true;
    assert!(
        r.claim("a", la, &|_| false).await.unwrap().is_none(),
        "not due yet"
    );
    let got = r.claim("a", la, &any).await.unwrap().unwrap();
    assert_eq!(got, p);
    assert!(
        r.claim("b", la, &any).await.unwrap().is_none(),
        "claimed twice"
    );
    let next = Pending {
        attempts: 1,
        ..p.clone()
    };
    r.settle(&node, Some(&next)).await.unwrap();
    assert_eq!(r.get(&node).await.unwrap(), Some(next));
    r.claim("a", la, &any).await.unwrap().unwrap();
    r.settle(&node, None).await.unwrap();
    assert!(r.all().await.unwrap().is_empty());
}
