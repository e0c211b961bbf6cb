//! The piecestore over real gRPC on loopback with real piece files: round trips, and
//! every kind of bad order limit refused with nothing stored.

use orbit_identity::Identity;
use orbit_protocol::client::{connect, download, download_slice, upload, TransferError};
use orbit_protocol::{Action, OrderLimit, PieceId};
use std::sync::Arc;
use storagenode::orders::Orders;
use storagenode::pieces::PieceStore;
use storagenode::serials::UsedSerials;
use storagenode::service::{unix_now, PiecestoreService};

struct Node {
    dir: tempfile::TempDir,
    id: Identity,
    url: String,
    pieces: Arc<PieceStore>,
    orders: Arc<Orders>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start(
    satellite: &Identity,
    capacity: u64,
    dir: Option<tempfile::TempDir>,
    id: Option<Identity>,
) -> Node {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let id = id.unwrap_or_else(Identity::generate);
    let pieces = Arc::new(PieceStore::open(dir.path(), capacity).unwrap());
    let serials = Arc::new(UsedSerials::open(&dir.path().join("serials"), unix_now()).unwrap());
    let orders = Arc::new(Orders::open(&dir.path().join("orders")).unwrap());
    let svc = PiecestoreService::new(
        id.clone(),
        &[satellite.public()],
        pieces.clone(),
        serials,
        orders.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let tls = orbit_tls::identity_server(&id).unwrap();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(svc.server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Node {
        dir,
        id,
        url,
        pieces,
        orders,
        server,
    }
}

fn limit(
    sat: &Identity,
    uplink: &Identity,
    node: &Identity,
    piece: PieceId,
    action: Action,
    bytes: u64,
) -> OrderLimit {
    OrderLimit {
        serial: rand::random(),
        satellite: sat.id(),
        uplink: uplink.public(),
        node: node.id(),
        piece,
        action,
        limit: bytes,
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

#[tokio::test]
async fn pieces_round_trip_and_survive_a_restart() {
    let (sat, up) = (Identity::generate(), Identity::generate());
    let node = start(&sat, 1 << 30, None, None).await;
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    for size in [0usize, 1, 4096, 1_000_003] {
        let data: Vec<u8> = (0..size).map(|_| rand::random()).collect();
        let piece = PieceId::random();
        let put = limit(&sat, &up, &node.id, piece, Action::Put, size as u64);
        let receipt = upload(&mut c, &put, data.clone(), &up, &node.id.public())
            .await
            .unwrap();
        assert_eq!(receipt.size, size as u64);
        let get = limit(&sat, &up, &node.id, piece, Action::Get, size as u64);
        let (back, _) = download(&mut c, &get, size as u64, &up, &sat.public())
            .await
            .unwrap();
        assert_eq!(back, data, "size {size}");
        if size > 10 {
            let get = limit(&sat, &up, &node.id, piece, Action::Get, 10);
            // A range is proven against the piece's hash as a slice.
            let (part, hash, _) = download_slice(&mut c, &get, 3, 7, &up, &sat.public())
                .await
                .unwrap();
            assert_eq!(part, &data[3..10]);
            assert_eq!(hash.size, size as u64);
        }
    }
    // Every served transfer left an order to settle (the empty upload used nothing).
    assert_eq!(node.orders.unsettled().unwrap().len(), 3 + 4 + 2);
    // Restarted on the same dir: pieces and used serials are still there.
    let piece = PieceId::random();
    let put = limit(&sat, &up, &node.id, piece, Action::Put, 5);
    upload(&mut c, &put, b"hello".to_vec(), &up, &node.id.public())
        .await
        .unwrap();
    let used = node.pieces.used();
    let (dir, id) = {
        let mut n = node;
        n.server.abort();
        (
            std::mem::replace(&mut n.dir, tempfile::tempdir().unwrap()),
            n.id.clone(),
        )
    };
    let node = start(&sat, 1 << 30, Some(dir), Some(id)).await;
    assert_eq!(node.pieces.used(), used);
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    assert_eq!(
        code(
            upload(&mut c, &put, b"hello".to_vec(), &up, &node.id.public())
                .await
                .unwrap_err()
        ),
        tonic::Code::AlreadyExists
    );
    let get = limit(&sat, &up, &node.id, piece, Action::Get, 5);
    assert_eq!(
        download(&mut c, &get, 5, &up, &sat.public())
            .await
            .unwrap()
            .0,
        b"hello"
    );
}

#[tokio::test]
async fn bad_order_limits_are_refused_and_nothing_is_stored() {
    let (sat, up) = (Identity::generate(), Identity::generate());
    let node = start(&sat, 1 << 20, None, None).await;
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    let data = vec![7u8; 1000];
    let key = node.id.public();
    let piece = PieceId::random();
    // Forged: signed by a satellite the node does not trust.
    let stranger = Identity::generate();
    let l = limit(&stranger, &up, &node.id, piece, Action::Put, 1000);
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::PermissionDenied
    );
    // Forged: claims the trusted satellite but signed by another key.
    let mut l = limit(&stranger, &up, &node.id, piece, Action::Put, 1000);
    l.satellite = sat.id();
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::Unauthenticated
    );
    // Tampered after signing: a bigger limit.
    let mut l = limit(&sat, &up, &node.id, piece, Action::Put, 10);
    l.limit = 1000;
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::Unauthenticated
    );
    // Expired.
    let mut l = limit(&sat, &up, &node.id, piece, Action::Put, 1000);
    l.order_expiration = unix_now() - 1;
    let l = l.sign(&sat);
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::FailedPrecondition
    );
    // For another node, or another action.
    let other = Identity::generate();
    let l = limit(&sat, &up, &other, piece, Action::Put, 1000);
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::InvalidArgument
    );
    let l = limit(&sat, &up, &node.id, piece, Action::Get, 1000);
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::PermissionDenied
    );
    // More data than the limit allows.
    let l = limit(&sat, &up, &node.id, piece, Action::Put, 999);
    assert!(upload(&mut c, &l, data.clone(), &up, &key).await.is_err());
    // Orders and hash signed by someone else than the limit's uplink.
    let l = limit(&sat, &up, &node.id, piece, Action::Put, 1000);
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &Identity::generate(), &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::Unauthenticated
    );
    // A full node says so.
    let l = limit(&sat, &up, &node.id, piece, Action::Put, 2 << 20);
    assert_eq!(
        code(
            upload(&mut c, &l, vec![1; 10], &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::ResourceExhausted
    );
    // Nothing was stored by any of them; a download of the piece finds nothing.
    assert_eq!(node.pieces.used(), 0);
    let l = limit(&sat, &up, &node.id, piece, Action::Get, 1000);
    assert_eq!(
        code(
            download(&mut c, &l, 1000, &up, &sat.public())
                .await
                .unwrap_err()
        ),
        tonic::Code::NotFound
    );
    // A good limit works once; its replay is refused.
    let l = limit(&sat, &up, &node.id, piece, Action::Put, 1000);
    upload(&mut c, &l, data.clone(), &up, &key).await.unwrap();
    assert_eq!(
        code(
            upload(&mut c, &l, data.clone(), &up, &key)
                .await
                .unwrap_err()
        ),
        tonic::Code::AlreadyExists
    );
    let g = limit(&sat, &up, &node.id, piece, Action::Get, 1000);
    download(&mut c, &g, 1000, &up, &sat.public())
        .await
        .unwrap();
    assert_eq!(
        code(
            download(&mut c, &g, 1000, &up, &sat.public())
                .await
                .unwrap_err()
        ),
        tonic::Code::AlreadyExists
    );
    // A download's order must cover what it asks.
    let g = limit(&sat, &up, &node.id, piece, Action::Get, 10);
    assert!(download(&mut c, &g, 1000, &up, &sat.public())
        .await
        .is_err());
}

#[tokio::test]
async fn a_corrupted_piece_is_detected_by_the_downloader() {
    let (sat, up) = (Identity::generate(), Identity::generate());
    let node = start(&sat, 1 << 20, None, None).await;
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    let piece = PieceId::random();
    let l = limit(&sat, &up, &node.id, piece, Action::Put, 5000);
    upload(&mut c, &l, vec![3u8; 5000], &up, &node.id.public())
        .await
        .unwrap();
    // Flip a data byte in the piece file on disk.
    let hex = piece.hex();
    let path = node
        .dir
        .path()
        .join("pieces")
        .join(&hex[..2])
        .join(format!("{hex}.piece"));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let g = limit(&sat, &up, &node.id, piece, Action::Get, 5000);
    match download(&mut c, &g, 5000, &up, &sat.public()).await {
        Err(TransferError::Bad(why)) => assert!(why.contains("do not match"), "{why}"),
        other => panic!("corruption not detected: {other:?}"),
    }
}

#[tokio::test]
async fn repair_limits_move_pieces_and_pings_prove_the_nodes_key() {
    let (sat, up) = (Identity::generate(), Identity::generate());
    let node = start(&sat, 1 << 20, None, None).await;
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    let piece = PieceId::random();
    // The satellite's repair stores and reads pieces with its own key.
    let put = limit(&sat, &sat, &node.id, piece, Action::PutRepair, 3000);
    upload(&mut c, &put, vec![9u8; 3000], &sat, &node.id.public())
        .await
        .unwrap();
    let get = limit(&sat, &sat, &node.id, piece, Action::GetRepair, 3000);
    let (data, _) = download(&mut c, &get, 3000, &sat, &sat.public())
        .await
        .unwrap();
    assert_eq!(data, vec![9u8; 3000]);
    // An uplink can read a repaired piece as any other; a GET_REPAIR limit cannot
    // upload, a PUT_REPAIR one cannot download.
    let g = limit(&sat, &up, &node.id, piece, Action::Get, 3000);
    download(&mut c, &g, 3000, &up, &sat.public())
        .await
        .unwrap();
    let wrong = limit(
        &sat,
        &sat,
        &node.id,
        PieceId::random(),
        Action::GetRepair,
        10,
    );
    let e = upload(&mut c, &wrong, vec![1u8; 10], &sat, &node.id.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::PermissionDenied);
    let wrong = limit(&sat, &sat, &node.id, piece, Action::PutRepair, 3000);
    let e = download(&mut c, &wrong, 3000, &sat, &sat.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::PermissionDenied);
    // Both repair transfers are recorded for settlement, with their action.
    let actions: Vec<Action> = node
        .orders
        .unsettled()
        .unwrap()
        .iter()
        .map(|s| s.limit.action)
        .collect();
    assert!(actions.contains(&Action::PutRepair) && actions.contains(&Action::GetRepair));

    // A ping is answered with the node's key; expecting another key fails already
    // at the TLS handshake, before any request is sent.
    orbit_protocol::client::ping(&node.url, &node.id.public())
        .await
        .unwrap();
    let e = orbit_protocol::client::ping(&node.url, &Identity::generate().public()).await;
    let e = e.unwrap_err().to_string();
    assert!(e.contains("not the expected node id"), "{e}");
    let e = orbit_protocol::client::ping("https://127.0.0.1:1", &node.id.public()).await;
    assert!(matches!(e, Err(TransferError::Connect { .. })));
}

#[tokio::test]
async fn audit_slices_prove_kilobytes_of_a_piece_and_rot_is_refused_at_the_source() {
    use storagenode::pieces::HEADER_BYTES;
    let (sat, up) = (Identity::generate(), Identity::generate());
    let node = start(&sat, 1 << 30, None, None).await;
    let mut c = connect(&node.url, &node.id.id()).await.unwrap();
    let piece = PieceId::random();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let put = limit(&sat, &up, &node.id, piece, Action::Put, data.len() as u64);
    upload(&mut c, &put, data.clone(), &up, &node.id.public())
        .await
        .unwrap();
    let audit = |n: u64| limit(&sat, &sat, &node.id, piece, Action::GetAudit, n);
    // The satellite proves 1 KiB of the piece with one 16 KiB group and its path.
    let (got, hash, moved) =
        download_slice(&mut c, &audit(1024), 150_000, 1024, &sat, &sat.public())
            .await
            .unwrap();
    assert_eq!(got, &data[150_000..151_024]);
    assert_eq!(hash.size, 300_000);
    assert!(moved <= 16_384 + 64 * 8, "{moved} bytes moved");
    // A GET_AUDIT limit reads; it cannot store.
    let e = upload(&mut c, &audit(10), vec![1u8; 10], &sat, &node.id.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::PermissionDenied);
    // Beyond the piece: refused as such.
    let e = download_slice(&mut c, &audit(10), 299_995, 10, &sat, &sat.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::OutOfRange);

    // A rotten byte: the node's own tree disowns its group, the rest still proves.
    let hex = piece.hex();
    let path = node
        .dir
        .path()
        .join("pieces")
        .join(&hex[..2])
        .join(format!("{hex}.piece"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES as usize + 150_500] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let e = download_slice(&mut c, &audit(1024), 150_000, 1024, &sat, &sat.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::DataLoss);
    let (got, _, _) = download_slice(&mut c, &audit(1024), 10_000, 1024, &sat, &sat.public())
        .await
        .unwrap();
    assert_eq!(got, &data[10_000..11_024]);
    bytes[HEADER_BYTES as usize + 150_500] ^= 0x20;

    // A piece stored in format 1 (no tree kept) is proven from its bytes.
    let size = HEADER_BYTES as usize + data.len();
    bytes.truncate(size);
    bytes[4..6].copy_from_slice(&1u16.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (got, _, _) = download_slice(&mut c, &audit(5000), 290_000, 5000, &sat, &sat.public())
        .await
        .unwrap();
    assert_eq!(got, &data[290_000..295_000]);
    // A format-2 file cut short is corrupt, not misread.
    bytes[4..6].copy_from_slice(&2u16.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = download_slice(&mut c, &audit(1024), 0, 1024, &sat, &sat.public()).await;
    assert_eq!(code(e.unwrap_err()), tonic::Code::DataLoss);
    // Every audit read was recorded for settlement as GET_AUDIT.
    let audits = node
        .orders
        .unsettled()
        .unwrap()
        .iter()
        .filter(|s| s.limit.action == Action::GetAudit)
        .count();
    assert_eq!(audits, 3);
}
