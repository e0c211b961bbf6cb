//! Objects through a whole network in one process: a satellite API on a real store
//! member, ten storage nodes with real piece files, and the uplink library.

use orbit_testplanet::Planet;
use uplink::project::{Access, Options, Project};

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x: u64 = rand::random();
    for chunk in v.chunks_mut(8) {
        // xorshift: fast enough for hundreds of MiB in a debug build.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
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
        assert!(round_trip(&p, "sizes", &format!("obj/{size}"), &data).await == data, "size {size}");
    }
    let big = (64 << 20) + 1;
    let data = random(big);
    assert!(round_trip(&p, "sizes", "big/64MiB+1", &data).await == data, "64 MiB + 1");
    let listed = p.list("sizes", "obj/").await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().any(|l| l.key == "obj/4097" && l.size == 4097));
    // The satellite sees only encrypted keys.
    let raw = planet.api.meta.list_objects("test", "sizes", "").await.unwrap();
    assert!(raw.iter().all(|(k, _)| !k.contains("obj")));
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
    let options = Options {
        segment_size: 1 << 20,
        ..Options::default()
    };
    let p = planet.project(options).await;
    p.create_bucket("durable").await.unwrap();
    let data = random(3 << 20);
    p.upload("durable", "x", &data[..], &|_| {}).await.unwrap();
    // Corrupt one byte of every piece file on node 0: detected, other pieces used.
    let mut corrupted = 0;
    for e in walk(&planet.node_dir(0).join("storage/pieces")) {
        let mut b = std::fs::read(&e).unwrap();
        let at = b.len() - 1;
        b[at] ^= 0x55;
        std::fs::write(&e, b).unwrap();
        corrupted += 1;
    }
    // total − k = 6 nodes gone (nodes 4..10 stopped), node 0 corrupt: the pieces of
    // the other 3 nodes plus whatever the corrupt node cannot give... so keep exactly
    // k good ones: stop 5 others.
    for i in 5..10 {
        planet.stop_node(i);
    }
    let mut back = Vec::new();
    p.download("durable", "x", &mut back, &|_| {}).await.unwrap();
    assert!(back == data, "identical with 5 nodes down and one corrupt ({corrupted} pieces)");
    // With total − k = 6 nodes down (and nothing corrupt beyond them): still identical.
    let mut planet2 = Planet::start(10).await;
    let p2 = planet2.project(options).await;
    p2.create_bucket("durable").await.unwrap();
    p2.upload("durable", "x", &data[..], &|_| {}).await.unwrap();
    for i in 0..6 {
        planet2.stop_node(i);
    }
    let mut back = Vec::new();
    p2.download("durable", "x", &mut back, &|_| {}).await.unwrap();
    assert!(back == data, "identical with total − k nodes down");
    // One more down: fewer than k pieces, a clear error.
    planet2.stop_node(6);
    let err = p2.download("durable", "x", &mut Vec::new(), &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("good pieces"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_passphrase_gives_an_error_never_garbage() {
    let planet = Planet::start(10).await;
    let p = planet.project(Options::default()).await;
    p.create_bucket("secret").await.unwrap();
    p.upload("secret", "note", &b"the plans"[..], &|_| {}).await.unwrap();
    p.upload("secret", "big", &random(100_000)[..], &|_| {}).await.unwrap();
    let wrong = Access::new(&planet.access.satellite, planet.satellite.public(), &planet.access.api_key, "wrong horse").unwrap();
    let q = Project::open(wrong, Options::default()).await.unwrap();
    for key in ["note", "big"] {
        let err = q.download("secret", key, &mut Vec::new(), &|_| {}).await.unwrap_err();
        assert!(err.to_string().contains("wrong passphrase") || err.to_string().contains("not found"), "{err}");
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
    q.download("shared", "a/b", &mut back, &|_| {}).await.unwrap();
    assert!(back == data);
    q.delete("shared", "a/b").await.unwrap();
    assert!(p.list("shared", "").await.unwrap().is_empty());
    p.delete_bucket("shared").await.unwrap();
}
