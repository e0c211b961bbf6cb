//! The satellite's records in the store: projects are isolated whatever their names,
//! a check-in racing another change of a node record loses neither, and a corrupt or
//! unknown-format record is an error that names its key.

use orbit_identity::Identity;
use orbit_kv::{Kv, PutRequest};
use orbit_protocol::CheckIn;
use orbit_satellite_api::apikey::ApiKeys;
use orbit_satellite_api::metainfo::Metainfo;
use orbit_satellite_api::nodes::{Nodes, SelectionConfig};
use orbit_satellite_api::ApiError;
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
            meta.list_objects("a", &b, "")
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
            meta.list_buckets(p).await.unwrap(),
            vec!["bkt1".to_string()]
        );
        let listed = meta.list_objects(p, "bkt1", "").await.unwrap();
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
    assert!(meta.list_objects("a", "bkt1", "").await.unwrap().is_empty());
    assert_eq!(
        meta.list_objects("b", "bkt1", "").await.unwrap().len(),
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
            address: "http://127.0.0.1:9".into(),
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
        tokio::spawn(async move { nodes.disqualify(&id).await.map(|_| ()) })
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
    let rec = serde_json::json!({
        "v": 2, "id": good.id(), "key": good.public(), "address": "http://x:1",
        "free": 1, "version": "t", "last_seen": 1, "disqualified": false,
    });
    let key = format!("/orbit/sat/nodes/{}", good.id());
    kv.put(PutRequest::new(key.clone(), rec.to_string()))
        .await
        .unwrap();
    let e = nodes.get(&good.id()).await.unwrap_err().to_string();
    assert!(e.contains(&key) && e.contains("version 2"), "{e}");
}
