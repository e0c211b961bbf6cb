//! Objects through a whole network in one process: a satellite API on a real store
//! member, ten storage nodes with real piece files, and the uplink library.

use orbit_testplanet::Planet;
use uplink::project::{Access, Options, Project};

fn random(n: usize) -> Vec<u8> {
    orbit_testplanet::random_bytes(n, rand::random())
}

async fn round_trip(p: &Project, bucket: &str, key: &str, data: &[u8]) -> Vec<u8> {
    let n = p.upload(bucket, key, data, &|_| {}).await.unwrap();
    assert_eq!(n, data.len() as u64);
    let mut back = Vec::new();
    p.download(bucket, key, &mut back, &|_| {}).await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_of_every_size_come_back_byte_for_byte() {
    let planet = Planet::start(10).await;
    // Small segments make the multi-segment paths cheap to reach in a debug build;
    // the 64 MiB + 1 case below uses the real segment size.
    let p = planet.project(Options::default()).await;
    p.create_bucket("sizes").await.unwrap();
    for size in [0usize, 1, 4096, 4097, 1 << 20] {
        let data = random(size);
        assert!(
            round_trip(&p, "sizes", &format!("obj/{size}"), &data).await == data,
            "size {size}"
        );
    }
    let big = (64 << 20) + 1;
    let data = random(big);
    assert!(
        round_trip(&p, "sizes", "big/64MiB+1", &data).await == data,
        "64 MiB + 1"
    );
    let listed = p.list("sizes", "obj/").await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().any(|l| l.key == "obj/4097" && l.size == 4097));
    // The satellite sees only encrypted keys.
    let raw = planet
        .api
        .meta
        .list_objects("test", "sizes", "", "", 0)
        .await
        .unwrap();
    assert!(raw.items.iter().all(|(k, _)| !k.contains("obj")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_mib_round_trip() {
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("large").await.unwrap();
    let data = random(200 << 20);
    assert!(round_trip(&p, "large", "200MiB", &data).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_survive_lost_and_corrupt_pieces() {
    let mut planet = Planet::start(10).await;
    // Every one of the 10 pieces stored (success = total): then losing any
    // total − k = 6 nodes leaves k pieces. (With the default success of 8, the long
    // tail's two are cancelled, and any success − k = 4 may be lost.)
    let options = Options {
        segment_size: 1 << 20,
        success: 10,
        ..Options::default()
    };
    let p = planet.project(options).await;
    p.create_bucket("durable").await.unwrap();
    let data = random(3 << 20);
    p.upload("durable", "x", &data[..], &|_| {}).await.unwrap();
    // Corrupt one byte of every piece file on node 0: detected, other pieces used.
    let mut corrupted = 0;
    for e in orbit_testplanet::files(&planet.node_dir(0).join("storage/pieces")) {
        let mut b = std::fs::read(&e).unwrap();
        // A byte of the piece's data (the file ends with its tree).
        let at = storagenode::pieces::HEADER_BYTES as usize + 10;
        b[at] ^= 0x55;
        std::fs::write(&e, b).unwrap();
        corrupted += 1;
    }
    // Five more nodes stopped: exactly k = 4 good pieces are left, beside the corrupt.
    for i in 5..10 {
        planet.stop_node(i);
    }
    let mut back = Vec::new();
    p.download("durable", "x", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(
        back == data,
        "identical with 5 nodes down and one corrupt ({corrupted} pieces)"
    );
    // With total − k = 6 nodes down (and nothing corrupt beyond them): still identical.
    let mut planet2 = Planet::start(10).await;
    let p2 = planet2.project(options).await;
    p2.create_bucket("durable").await.unwrap();
    p2.upload("durable", "x", &data[..], &|_| {}).await.unwrap();
    for i in 0..6 {
        planet2.stop_node(i);
    }
    let mut back = Vec::new();
    p2.download("durable", "x", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == data, "identical with total − k nodes down");
    // One more down: fewer than k pieces, a clear error.
    planet2.stop_node(6);
    let err = p2
        .download("durable", "x", &mut Vec::new(), &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("good pieces"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_passphrase_gives_an_error_never_garbage() {
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("secret").await.unwrap();
    p.upload("secret", "note", &b"the plans"[..], &|_| {})
        .await
        .unwrap();
    p.upload("secret", "big", &random(100_000)[..], &|_| {})
        .await
        .unwrap();
    let wrong = Access::new(
        &planet.access.satellite,
        planet.satellite.public(),
        &planet.access.api_key,
        "wrong horse",
    )
    .unwrap();
    let q = Project::open(wrong, Options::default()).await.unwrap();
    for key in ["note", "big"] {
        let err = q
            .download("secret", key, &mut Vec::new(), &|_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("wrong passphrase") || err.to_string().contains("not found"),
            "{err}"
        );
    }
    // Listing with the wrong key: an error too, not garbage names.
    assert!(q.list("secret", "").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_uploaded_through_one_replica_is_served_by_another() {
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("shared").await.unwrap();
    let data = random(300_000);
    p.upload("shared", "a/b", &data[..], &|_| {}).await.unwrap();
    let other = planet.another_replica().await;
    let access = Access {
        satellite: other.url.clone(),
        ..planet.access.clone()
    };
    let q = Project::open(access, Options::default()).await.unwrap();
    assert_eq!(q.list("shared", "a/").await.unwrap()[0].key, "a/b");
    let mut back = Vec::new();
    q.download("shared", "a/b", &mut back, &|_| {})
        .await
        .unwrap();
    assert!(back == data);
    q.delete("shared", "a/b").await.unwrap();
    assert!(p.list("shared", "").await.unwrap().is_empty());
    p.delete_bucket("shared").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_key_caveats_hold_and_a_revoked_key_is_refused_by_every_replica() {
    use orbit_satellite_model::apikeys::{ApiKey, Caveat};
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("keys").await.unwrap();
    p.upload("keys", "docs/a", &b"a"[..], &|_| {})
        .await
        .unwrap();
    let full = ApiKey::parse(&planet.access.api_key).unwrap();
    let with = |key: &ApiKey, url: &str| Access {
        satellite: url.to_string(),
        api_key: key.serialize(),
        ..planet.access.clone()
    };
    let other = planet.another_replica().await;
    // Read-only: reads, no writes.
    let ro = full.restrict(Caveat::ReadOnly);
    let q = Project::open(with(&ro, &planet.replica.url), Options::default())
        .await
        .unwrap();
    q.download("keys", "docs/a", &mut Vec::new(), &|_| {})
        .await
        .unwrap();
    let err = q
        .upload("keys", "docs/b", &b"b"[..], &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // Expired.
    let old = full.restrict(Caveat::NotAfter(1));
    let q = Project::open(with(&old, &planet.replica.url), Options::default())
        .await
        .unwrap();
    assert!(q
        .list("keys", "")
        .await
        .unwrap_err()
        .to_string()
        .contains("expired"));
    // A caveat cannot be dropped from a key.
    let mut lifted = ro.clone();
    lifted.caveats.clear();
    let q = Project::open(with(&lifted, &planet.replica.url), Options::default())
        .await
        .unwrap();
    assert!(q
        .upload("keys", "docs/c", &b"c"[..], &|_| {})
        .await
        .is_err());
    // Revoking the read-only key: refused on both replicas; the full key still works.
    planet.api.keys.revoke(&ro, 0).await.unwrap();
    for url in [&planet.replica.url, &other.url] {
        let q = Project::open(with(&ro, url), Options::default())
            .await
            .unwrap();
        let err = q.list("keys", "").await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        // And a key restricted from the revoked one.
        let narrower = ro.restrict(Caveat::NotAfter(u64::MAX));
        let q = Project::open(with(&narrower, url), Options::default())
            .await
            .unwrap();
        assert!(q
            .list("keys", "")
            .await
            .unwrap_err()
            .to_string()
            .contains("revoked"));
        let q = Project::open(with(&full, url), Options::default())
            .await
            .unwrap();
        assert_eq!(q.list("keys", "").await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_settle_their_orders_once() {
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("orders").await.unwrap();
    p.upload("orders", "x", &random(50_000)[..], &|_| {})
        .await
        .unwrap();
    p.download("orders", "x", &mut Vec::new(), &|_| {})
        .await
        .unwrap();
    let mut settled = 0;
    for n in planet.nodes.iter().flatten() {
        let before = n.reporter.unsettled_count();
        n.run_chores_once().await.unwrap();
        settled += before - n.reporter.unsettled_count();
        assert_eq!(n.reporter.unsettled_count(), 0);
    }
    // 8 uploads kept (long tail cancelled) and at least 4 downloads.
    assert!(settled >= 12, "{settled}");
    let rows = planet.store.embedded(0);
    use orbit_kv::Kv;
    let count = rows
        .range(orbit_kv::RangeRequest {
            count_only: true,
            ..orbit_kv::RangeRequest::prefix("/orbit/sat/settled/")
        })
        .await
        .unwrap()
        .count;
    assert_eq!(count as usize, settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_requests_are_paid_through_a_payment_channel() {
    use orbit_payments::{Payer, Wallet};
    let planet = Planet::start_paid(10, &[("upload_segment", 7), ("download_segment", 3)]).await;
    let charges = planet.api.charges.clone().unwrap();
    let user = Wallet::random();
    charges
        .escrow
        .deposit(&user.address(), 10_000)
        .await
        .unwrap();
    let payer = std::sync::Arc::new(
        Payer::connect(&planet.replica.url, &planet.satellite.public(), user)
            .await
            .unwrap(),
    );
    let ch = payer
        .open(1_000, orbit_payments::api::unix_now() + 3600, None)
        .await
        .unwrap();
    let options = Options {
        segment_size: 1 << 20,
        ..Options::default()
    };
    // Without paying: refused, with a message saying why.
    let free = planet.project(options).await;
    free.create_bucket("paid").await.unwrap();
    let err = free
        .upload("paid", "x", &random(100_000)[..], &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("payment required"), "{err}");
    // Paying: 3 segments up (7 each), 3 down (3 each).
    let p = planet
        .project(options)
        .await
        .with_payments(payer.clone(), ch.id);
    let data = random(3 << 20);
    p.upload("paid", "x", &data[..], &|_| {}).await.unwrap();
    let mut back = Vec::new();
    p.download("paid", "x", &mut back, &|_| {}).await.unwrap();
    assert!(back == data);
    assert_eq!(
        charges.escrow.channel(ch.id).await.unwrap().authorized,
        3 * 7 + 3 * 3
    );
    // A claim moves the channel's nonce behind the uplink's back: it catches up.
    charges.escrow.start_claim(ch.id).await.unwrap().unwrap();
    p.download("paid", "x", &mut Vec::new(), &|_| {})
        .await
        .unwrap();
    let after = charges.escrow.channel(ch.id).await.unwrap();
    assert_eq!((after.nonce, after.authorized), (1, 3 * 3));
}
