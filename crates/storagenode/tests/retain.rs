//! Garbage collection on a real node: a filter from a trusted satellite is stored
//! durably and applied (pieces not in it go to the trash, those in it stay), only a
//! newer filter replaces it, untrusted or tampered filters are refused, a node
//! restarted before applying applies it at start, a download revives a trashed piece,
//! the satellite's order restores the trash, and old trash is emptied.

use orbit_identity::Identity;
use orbit_protocol::bloom::Filter;
use orbit_protocol::client::{connect, download, restore_trash, retain, upload, TransferError};
use orbit_protocol::{Action, OrderLimit, PieceId, RestoreTrash, RetainHeader};
use storagenode::node::{Node, NodeConfig, TrustedSatellite};
use storagenode::service::unix_now;

fn config(dir: &std::path::Path, sat: &Identity) -> NodeConfig {
    NodeConfig {
        dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        external_url: None,
        capacity: 1 << 30,
        // Nobody answers there: check-ins fail quietly, which this test does not need.
        satellites: vec![TrustedSatellite {
            url: "https://127.0.0.1:1".into(),
            key: orbit_identity::hex_encode(&sat.public().0),
        }],
        check_in_s: 3600,
        retain_skew_s: 0,
        trash_days: 7,
        retain_interval_s: 3600,
        version_url: None,
        debug_addr: None,
    }
}

fn limit(
    sat: &Identity,
    up: &Identity,
    node: &Identity,
    piece: PieceId,
    action: Action,
) -> OrderLimit {
    OrderLimit {
        serial: rand::random(),
        satellite: sat.id(),
        uplink: up.public(),
        node: node.id(),
        piece,
        action,
        limit: 4096,
        piece_expiration: 0,
        order_expiration: unix_now() + 3600,
        metadata: Vec::new(),
        signature: Vec::new(),
    }
    .sign(sat)
}

fn code(e: TransferError) -> tonic::Code {
    match e {
        TransferError::Node(s) => s.code(),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_trash_garbage_keep_live_pieces_and_the_trash_comes_back() {
    let (sat, up) = (Identity::generate(), Identity::generate());
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path(), &sat)).await.unwrap();
    let me = node.identity.clone();
    let mut c = connect(&node.url, &node.identity.id()).await.unwrap();
    let pieces: Vec<PieceId> = (0..20).map(|_| PieceId::random()).collect();
    for p in &pieces {
        let l = limit(&sat, &up, &me, *p, Action::Put);
        upload(&mut c, &l, vec![5u8; 3000], &up, &me.public())
            .await
            .unwrap();
    }
    let (live, garbage) = pieces.split_at(10);
    let mut f = Filter::new(10, 0.01);
    for p in live {
        f.add(p);
    }
    let bytes = f.encode();
    let created = unix_now() + 5;
    let header = RetainHeader::sign(&sat, me.id(), created, 7, 10, &bytes);

    // Refused: an untrusted satellite, a tampered filter, another node's filter.
    let other = Identity::generate();
    let e = retain(
        &node.url,
        &node.identity.id(),
        &RetainHeader::sign(&other, me.id(), created, 7, 10, &bytes),
        &bytes,
    )
    .await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::PermissionDenied);
    let mut tampered = bytes.clone();
    tampered[40] ^= 1;
    let e = retain(&node.url, &node.identity.id(), &header, &tampered).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::InvalidArgument);
    let e = retain(
        &node.url,
        &node.identity.id(),
        &RetainHeader::sign(&sat, other.id(), created, 7, 10, &bytes),
        &bytes,
    )
    .await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::InvalidArgument);
    let mut forged = header.clone();
    forged.created += 100;
    let e = retain(&node.url, &node.identity.id(), &forged, &bytes).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::Unauthenticated);

    // Stored; the same or an older filter is ignored.
    assert!(retain(&node.url, &node.identity.id(), &header, &bytes)
        .await
        .unwrap());
    assert!(!retain(&node.url, &node.identity.id(), &header, &bytes)
        .await
        .unwrap());
    let empty = Filter::new(0, 0.1).encode();
    let older = RetainHeader::sign(&sat, me.id(), created - 3, 9, 0, &empty);
    assert!(!retain(&node.url, &node.identity.id(), &older, &empty)
        .await
        .unwrap());
    let earlier_pass = RetainHeader::sign(&sat, me.id(), created, 6, 0, &empty);
    assert!(
        !retain(&node.url, &node.identity.id(), &earlier_pass, &empty)
            .await
            .unwrap()
    );

    // Restarted before applying it: the node applies it as it starts.
    let used = node.pieces.used();
    drop(c);
    drop(node);
    let node = Node::start(config(dir.path(), &sat)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.pieces.trashed() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stored filter was never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    node.run_retain_once().await.unwrap();
    assert_eq!(
        node.pieces.used(),
        used,
        "trashed bytes still count as used"
    );
    let on_disk: Vec<PieceId> = node
        .pieces
        .pieces()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for p in live {
        assert!(on_disk.contains(p), "a live piece was trashed");
    }
    let trashed: Vec<&PieceId> = garbage.iter().filter(|p| !on_disk.contains(p)).collect();
    // The filter keeps a garbage piece only by a false positive (1% here).
    assert!(
        trashed.len() >= 8,
        "{} of 10 garbage pieces trashed",
        trashed.len()
    );

    // A download of a trashed piece revives it.
    let mut c = connect(&node.url, &node.identity.id()).await.unwrap();
    let g = limit(&sat, &up, &me, *trashed[0], Action::Get);
    let (data, _) = download(&mut c, &g, 3000, &up, &sat.public())
        .await
        .unwrap();
    assert_eq!(data, vec![5u8; 3000]);
    assert!(node
        .pieces
        .pieces()
        .unwrap()
        .iter()
        .any(|(id, _)| id == trashed[0]));

    // Only the satellite can restore; then every trashed piece is back.
    let e = restore_trash(
        &node.url,
        &node.identity.id(),
        &RestoreTrash::sign(&other, me.id(), unix_now()),
    )
    .await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::PermissionDenied);
    let back = restore_trash(
        &node.url,
        &node.identity.id(),
        &RestoreTrash::sign(&sat, me.id(), unix_now()),
    )
    .await
    .unwrap();
    assert_eq!(back as usize, trashed.len() - 1);
    assert_eq!(node.pieces.trashed(), 0);
    assert_eq!(node.pieces.pieces().unwrap().len(), 20);

    // Trash older than its days is emptied, and its bytes are free again.
    for p in garbage {
        node.pieces.trash(p, unix_now()).unwrap();
    }
    assert_eq!(
        node.pieces.empty_trash(7, unix_now()).unwrap(),
        0,
        "not old yet"
    );
    let gone = node.pieces.empty_trash(7, unix_now() + 8 * 86_400).unwrap();
    assert_eq!(gone, 10);
    assert_eq!(node.pieces.trashed(), 0);
    assert!(node.pieces.used() < used);
    let g = limit(&sat, &up, &me, garbage[0], Action::Get);
    let e = download(&mut c, &g, 3000, &up, &sat.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::NotFound);
}
