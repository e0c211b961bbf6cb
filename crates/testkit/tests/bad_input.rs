//! Bad input over the etcd protocol gets etcd's errors, and the store keeps working.

use orbit_kv::*;
use orbit_testkit::{OrbitCluster, Timings};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_messages_and_full_quota_are_refused_cleanly() {
    let c =
        OrbitCluster::start_configured(3, Timings::FAST, |cfg| cfg.quota_bytes = 64 * 1024).await;
    let kv = c.remote().await;
    kv.put(PutRequest::new("small", "v")).await.unwrap();

    // Beyond the gRPC message limit (request limit + framing slack): refused by the
    // transport, as etcd's gRPC server does.
    let e = kv
        .put(PutRequest::new("huge", vec![1u8; 3 << 20]))
        .await
        .unwrap_err();
    assert!(!matches!(e, KvError::NoSpace), "{e}");

    // Quota: writes that would pass it get "database space exceeded"…
    let mut refused = None;
    for i in 0..100 {
        match kv
            .put(PutRequest::new(format!("fill/{i}"), vec![0u8; 4096]))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(refused, Some(KvError::NoSpace));
    // …and raise a NOSPACE alarm, as etcd: one member's, listed by every member.
    let alarms = kv
        .alarm(AlarmAction::Get, 0, AlarmType::None)
        .await
        .unwrap();
    let members: Vec<u64> = kv.members().await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].alarm, AlarmType::NoSpace);
    assert!(members.contains(&alarms[0].member_id), "{alarms:?}");
    for i in 0..3 {
        let each = c
            .embedded(i)
            .alarm(AlarmAction::Get, 0, AlarmType::None)
            .await;
        assert_eq!(each.unwrap(), alarms, "member {i}");
    }
    // Reads and deletes still work, and deleting plus compacting frees space…
    assert_eq!(kv.get(b"small").await.unwrap().unwrap().value, b"v");
    let d = kv.delete(DeleteRequest::prefix("fill/")).await.unwrap();
    assert!(d.deleted > 0);
    kv.compact(d.revision).await.unwrap();
    // …but writes that add data wait for the alarm to be cleared (etcdctl alarm disarm).
    assert_eq!(
        kv.put(PutRequest::new("after", "x")).await.unwrap_err(),
        KvError::NoSpace
    );
    assert_eq!(kv.lease_grant(10, 0).await.unwrap_err(), KvError::NoSpace);
    let cleared = kv
        .alarm(
            AlarmAction::Deactivate,
            alarms[0].member_id,
            AlarmType::NoSpace,
        )
        .await
        .unwrap();
    assert_eq!(cleared, alarms);
    assert!(kv
        .alarm(AlarmAction::Get, 0, AlarmType::None)
        .await
        .unwrap()
        .is_empty());
    kv.put(PutRequest::new("after", vec![0u8; 4096]))
        .await
        .unwrap();

    // Compacted and future revisions, unknown leases.
    assert!(matches!(
        kv.range(RangeRequest {
            revision: 2,
            ..RangeRequest::key("small")
        })
        .await,
        Err(KvError::Compacted { .. })
    ));
    assert_eq!(
        kv.range(RangeRequest {
            revision: 1 << 40,
            ..RangeRequest::key("small")
        })
        .await,
        Err(KvError::FutureRevision)
    );
    assert_eq!(kv.lease_revoke(12345).await, Err(KvError::LeaseNotFound));
    assert_eq!(
        kv.lease_grant(9_000_000_001, 0).await.unwrap_err(),
        KvError::LeaseTtlTooLarge
    );
    // The store is still fine.
    let p = kv.put(PutRequest::new("still", "working")).await.unwrap();
    assert!(p.revision > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_invalid_argument() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let mut client = c.remote().await.client();
    // A compare whose target names one field but carries another.
    let raw = etcd_client::proto::PbCompare {
        result: 0,
        target: etcd_client::proto::PbCompareTarget::Mod as i32,
        key: b"k".to_vec(),
        range_end: vec![],
        target_union: Some(etcd_client::proto::PbTargetUnion::Value(b"x".to_vec())),
    };
    let e = orbit_kv::pb::compare_from_pb(raw).unwrap_err();
    assert!(matches!(e, KvError::InvalidArgument(_)), "{e}");
    // An empty key over the wire.
    let e = client.put("", "v", None).await.unwrap_err();
    assert!(e.to_string().contains("key is not provided"), "{e}");
    client.put("k", "v", None).await.unwrap();
}
