//! The uplink's side of the piecestore protocol: upload and download one piece.

use crate::pb::piecestore_client::PiecestoreClient;
use crate::pb::{upload_request, DownloadRequest, UploadRequest};
use crate::{Order, OrderLimit, PieceHash};
use orbit_identity::{Identity, NodeId, PublicKey};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Bytes per upload message, each preceded by an order for it.
pub const CHUNK: usize = 1 << 20;

/// HTTP/2 flow-control window of one piece transfer, both ways (see `connect`).
pub const WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame a node accepts.
pub const FRAME: u32 = 1 << 20;

/// Why a piece transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The node refused or failed.
    #[error("node: {0}")]
    Node(#[from] tonic::Status),
    /// The node could not be reached.
    #[error("connecting to {url}: {why}")]
    Connect {
        /// Its URL.
        url: String,
        /// Why.
        why: String,
    },
    /// What the node sent does not verify.
    #[error("node sent a bad {0}")]
    Bad(String),
}

/// A piecestore client that passes the current request id on.
pub type Piecestore = PiecestoreClient<InterceptedService<Channel, orbit_telemetry::Propagate>>;

/// A client of the node `node` at `url` (`https://host:port`): the connection is made
/// only if the node proves, in the TLS handshake, that it holds the key of that id.
pub async fn connect(url: &str, node: &NodeId) -> Result<Piecestore, TransferError> {
    let err = |why: String| TransferError::Connect {
        url: url.to_string(),
        why,
    };
    let endpoint = orbit_tls::pinned_endpoint(url)
        .map_err(|e| err(e.to_string()))?
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(4 * WINDOW)
        .connect_timeout(std::time::Duration::from_secs(5));
    let ch = orbit_tls::pinned_channel(endpoint, orbit_tls::Expect::Node(*node))
        .await
        .map_err(err)?;
    Ok(PiecestoreClient::with_interceptor(
        ch,
        orbit_telemetry::propagate as orbit_telemetry::Propagate,
    )
    .max_decoding_message_size(8 << 20)
    .max_encoding_message_size(8 << 20))
}

/// Uploads `data` as the piece `limit` allows, signing orders and the piece hash with
/// `uplink` (the key the limit names). Returns the node's receipt, verified against
/// `node_key`.
pub async fn upload(
    client: &mut Piecestore,
    limit: &OrderLimit,
    data: impl Into<bytes::Bytes>,
    uplink: &Identity,
    node_key: &PublicKey,
) -> Result<PieceHash, TransferError> {
    let data: bytes::Bytes = data.into();
    let hash = PieceHash::sign(
        limit.piece,
        *blake3::hash(&data).as_bytes(),
        data.len() as u64,
        now(),
        uplink,
    );
    let mut msgs = vec![UploadRequest {
        msg: Some(upload_request::Msg::Limit(limit.encode())),
    }];
    let mut at = 0;
    while at < data.len() {
        let end = (at + CHUNK).min(data.len());
        msgs.push(UploadRequest {
            msg: Some(upload_request::Msg::Order(
                Order::sign(limit, end as u64, uplink).encode(),
            )),
        });
        msgs.push(UploadRequest {
            msg: Some(upload_request::Msg::Chunk(data.slice(at..end))),
        });
        at = end;
    }
    msgs.push(UploadRequest {
        msg: Some(upload_request::Msg::Done(hash.encode())),
    });
    let resp = client
        .upload(futures::stream::iter(msgs))
        .await?
        .into_inner();
    let receipt =
        PieceHash::decode(&resp.receipt).map_err(|e| TransferError::Bad(e.to_string()))?;
    receipt
        .verify(node_key)
        .map_err(|e| TransferError::Bad(format!("receipt: {e}")))?;
    if receipt.hash != hash.hash || receipt.size != hash.size || receipt.piece != hash.piece {
        return Err(TransferError::Bad("receipt for other bytes".into()));
    }
    Ok(receipt)
}

/// The uploader's piece hash a node sent with a download, trusted only through its
/// chain: signed by the key the original upload limit names, that limit signed by
/// `satellite`, both for the piece `limit` allows.
fn hash_of(
    m: &crate::pb::DownloadResponse,
    limit: &OrderLimit,
    satellite: &PublicKey,
) -> Result<PieceHash, TransferError> {
    let h = PieceHash::decode(&m.hash).map_err(|e| TransferError::Bad(e.to_string()))?;
    let original =
        OrderLimit::decode(&m.original_limit).map_err(|e| TransferError::Bad(e.to_string()))?;
    original
        .verify(satellite)
        .map_err(|e| TransferError::Bad(format!("original limit: {e}")))?;
    h.verify(&original.uplink)
        .map_err(|e| TransferError::Bad(format!("piece hash: {e}")))?;
    if original.piece != limit.piece {
        return Err(TransferError::Bad("original limit of another piece".into()));
    }
    if h.piece != limit.piece {
        return Err(TransferError::Bad("hash of another piece".into()));
    }
    Ok(h)
}

/// Downloads the whole piece `limit` allows (`size` bytes) and checks it against the
/// uploader's piece hash (see [`hash_of`]); the hash is returned with the bytes. A
/// range of a piece is fetched with [`download_slice`], which can be checked.
pub async fn download(
    client: &mut Piecestore,
    limit: &OrderLimit,
    size: u64,
    uplink: &Identity,
    satellite: &PublicKey,
) -> Result<(Vec<u8>, PieceHash), TransferError> {
    let order = Order::sign(limit, size, uplink);
    let mut stream = client
        .download(DownloadRequest {
            limit: limit.encode(),
            order: order.encode(),
            offset: 0,
            size,
        })
        .await?
        .into_inner();
    let mut data = Vec::with_capacity(size as usize);
    let mut hash = None;
    while let Some(m) = stream.message().await? {
        if !m.hash.is_empty() {
            hash = Some(hash_of(&m, limit, satellite)?);
        }
        data.extend_from_slice(&m.chunk);
        if data.len() as u64 > size {
            return Err(TransferError::Bad("more bytes than asked".into()));
        }
    }
    let hash = hash.ok_or_else(|| TransferError::Bad("no piece hash".into()))?;
    if hash.size != size || data.len() as u64 != size {
        return Err(TransferError::Bad(format!(
            "{} bytes of a piece of {}, {size} asked",
            data.len(),
            hash.size
        )));
    }
    if *blake3::hash(&data).as_bytes() != hash.hash {
        return Err(TransferError::Bad(
            "piece bytes do not match their hash".into(),
        ));
    }
    Ok((data, hash))
}

/// Downloads `[offset, offset + size)` of the piece `limit` allows as a verified
/// slice ([`crate::slices`]) and returns exactly those bytes, proven against the
/// uploader's piece hash (see [`hash_of`]), with the hash and the bytes the node sent.
pub async fn download_slice(
    client: &mut Piecestore,
    limit: &OrderLimit,
    offset: u64,
    size: u64,
    signer: &Identity,
    satellite: &PublicKey,
) -> Result<(Vec<u8>, PieceHash, u64), TransferError> {
    let order = Order::sign(limit, size, signer);
    let mut stream = client
        .download_slice(DownloadRequest {
            limit: limit.encode(),
            order: order.encode(),
            offset,
            size,
        })
        .await?
        .into_inner();
    let most = crate::slices::max_encoded(size);
    let mut encoded = Vec::new();
    let mut hash = None;
    while let Some(m) = stream.message().await? {
        if !m.hash.is_empty() {
            hash = Some(hash_of(&m, limit, satellite)?);
        }
        encoded.extend_from_slice(&m.chunk);
        if encoded.len() as u64 > most {
            return Err(TransferError::Bad(
                "slice longer than its proof can be".into(),
            ));
        }
    }
    let hash = hash.ok_or_else(|| TransferError::Bad("no piece hash".into()))?;
    let data = crate::slices::verify(&hash.hash, hash.size, offset, size, &encoded)
        .map_err(|e| TransferError::Bad(e.to_string()))?;
    Ok((data, hash, encoded.len() as u64))
}

/// Hands the node `node` at `url` a garbage-collection filter with its signed header,
/// in chunks; returns whether the node stored it (false: it holds one as new).
pub async fn retain(
    url: &str,
    node: &NodeId,
    header: &crate::RetainHeader,
    filter: &[u8],
) -> Result<bool, TransferError> {
    use crate::pb::{retain_request, RetainRequest};
    let mut c = connect(url, node).await?;
    let mut msgs = vec![RetainRequest {
        msg: Some(retain_request::Msg::Header(header.encode())),
    }];
    for c in filter.chunks(CHUNK) {
        msgs.push(RetainRequest {
            msg: Some(retain_request::Msg::Chunk(c.to_vec())),
        });
    }
    let r = c.retain(futures::stream::iter(msgs)).await?.into_inner();
    Ok(r.stored)
}

/// Has the node `node` at `url` bring a satellite's pieces back from its trash;
/// returns how many came back.
pub async fn restore_trash(
    url: &str,
    node: &NodeId,
    order: &crate::RestoreTrash,
) -> Result<u64, TransferError> {
    let mut c = connect(url, node).await?;
    let r = c
        .restore_trash(crate::pb::RestoreTrashRequest {
            order: order.encode(),
        })
        .await?
        .into_inner();
    Ok(r.restored)
}

/// Pings the node at `url` with a fresh challenge and checks that the answer is
/// signed by `node_key`: a node is only heard from when it proves who it is.
pub async fn ping(url: &str, node_key: &PublicKey) -> Result<(), TransferError> {
    let mut c = connect(url, &node_key.id()).await?;
    let challenge: [u8; 32] = rand::random();
    let r = c
        .ping(crate::pb::PingRequest {
            challenge: challenge.to_vec(),
        })
        .await?
        .into_inner();
    if r.node_key != node_key.0 {
        return Err(TransferError::Bad(format!(
            "ping answered by another node than {}",
            node_key.id()
        )));
    }
    node_key
        .verify(&crate::ping_signing_bytes(&challenge), &r.signature)
        .map_err(|e| TransferError::Bad(format!("ping answer: {e}")))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
