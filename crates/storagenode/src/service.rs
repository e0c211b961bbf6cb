//! The piecestore service: uploads and downloads, each allowed by an order limit that
//! a trusted satellite signed for this node and this action, unexpired, with a serial
//! never used before.

use crate::orders::{Orders, Served};
use crate::pieces::{PieceError, PieceHeader, PieceStore};
use crate::retain::RetainStore;
use crate::serials::UsedSerials;
use orbit_identity::{Identity, NodeId, PublicKey};
use orbit_protocol::pb::piecestore_server::{Piecestore, PiecestoreServer};
use orbit_protocol::pb::{
    retain_request, upload_request, DownloadRequest, DownloadResponse, PingRequest, PingResponse,
    RestoreTrashRequest, RestoreTrashResponse, RetainRequest, RetainResponse, UploadRequest,
    UploadResponse,
};
use orbit_protocol::{Order, OrderLimit, PieceHash, RestoreTrash, RetainHeader};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Bytes per download message.
const CHUNK: usize = 1 << 20;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl From<PieceError> for Status {
    fn from(e: PieceError) -> Status {
        match e {
            PieceError::NotFound(_) => Status::not_found(e.to_string()),
            PieceError::Full { .. } => Status::resource_exhausted(e.to_string()),
            PieceError::Corrupt { .. } => Status::data_loss(e.to_string()),
            PieceError::Range(_) => Status::out_of_range(e.to_string()),
            PieceError::Io(_) => Status::internal(e.to_string()),
        }
    }
}

/// A node's piecestore.
pub struct PiecestoreService {
    identity: Identity,
    trusted: HashMap<NodeId, PublicKey>,
    pieces: Arc<PieceStore>,
    serials: Arc<UsedSerials>,
    orders: Arc<Orders>,
    retain: Option<Arc<RetainStore>>,
}

/// How far from the node's clock a satellite's signed restore order may be, seconds.
const ORDER_SKEW_S: u64 = 600;

impl PiecestoreService {
    /// The service of `identity`, taking limits from the `trusted` satellites' keys.
    pub fn new(
        identity: Identity,
        trusted: &[PublicKey],
        pieces: Arc<PieceStore>,
        serials: Arc<UsedSerials>,
        orders: Arc<Orders>,
    ) -> PiecestoreService {
        PiecestoreService {
            identity,
            trusted: trusted.iter().map(|k| (k.id(), *k)).collect(),
            pieces,
            serials,
            orders,
            retain: None,
        }
    }

    /// Accepts garbage-collection filters into `retain`.
    pub fn with_retain(mut self, retain: Arc<RetainStore>) -> PiecestoreService {
        self.retain = Some(retain);
        self
    }

    /// The key of the trusted satellite `id`, or why it is refused.
    fn trusted_key(&self, id: &NodeId, what: &str) -> Result<PublicKey, Status> {
        self.trusted.get(id).copied().ok_or_else(|| {
            Status::permission_denied(format!(
                "{what} from satellite {id}, which this node does not trust"
            ))
        })
    }

    /// As a tonic server.
    pub fn server(self) -> PiecestoreServer<PiecestoreService> {
        PiecestoreServer::new(self)
            .max_decoding_message_size(8 << 20)
            .max_encoding_message_size(8 << 20)
    }

    /// Accepts a limit for a transfer of `kind` (`put`: an upload, an uplink's or a
    /// repair's; else a download) or says why not; spends its serial.
    fn check_limit(&self, bytes: &[u8], put: bool) -> Result<OrderLimit, Status> {
        let limit =
            OrderLimit::decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = self.trusted.get(&limit.satellite).ok_or_else(|| {
            Status::permission_denied(format!(
                "order limit from satellite {} which this node does not trust",
                limit.satellite
            ))
        })?;
        limit
            .verify(key)
            .map_err(|e| Status::unauthenticated(format!("order limit: {e}")))?;
        if limit.node != self.identity.id() {
            return Err(Status::invalid_argument(format!(
                "order limit is for node {}, this is {}",
                limit.node,
                self.identity.id()
            )));
        }
        let allowed = match put {
            true => limit.action.is_put(),
            false => limit.action.is_get(),
        };
        if !allowed {
            return Err(Status::permission_denied(format!(
                "order limit allows {:?}, not {}",
                limit.action,
                if put { "an upload" } else { "a download" }
            )));
        }
        let now = unix_now();
        if limit.order_expiration <= now {
            return Err(Status::failed_precondition(format!(
                "order limit expired at {} (now {now})",
                limit.order_expiration
            )));
        }
        match self.serials.use_once(limit.serial, limit.order_expiration) {
            Ok(true) => Ok(limit),
            Ok(false) => Err(Status::already_exists(
                "order limit serial already used: a replay",
            )),
            Err(e) => Err(Status::internal(format!("recording the serial: {e}"))),
        }
    }
}

fn order_for(limit: &OrderLimit, bytes: &[u8]) -> Result<Order, Status> {
    let order = Order::decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
    order
        .verify(limit)
        .map_err(|e| Status::unauthenticated(format!("order: {e}")))?;
    if order.amount > limit.limit {
        return Err(Status::invalid_argument(format!(
            "order for {} bytes exceeds the limit's {}",
            order.amount, limit.limit
        )));
    }
    Ok(order)
}

/// Runs disk work without holding up the runtime's other tasks (other transfers),
/// where the runtime allows it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

type DownloadStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<DownloadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Piecestore for PiecestoreService {
    async fn upload(
        &self,
        request: Request<Streaming<UploadRequest>>,
    ) -> Result<Response<UploadResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .and_then(|m| m.msg)
            .ok_or_else(|| Status::invalid_argument("an upload starts with its order limit"))?;
        let upload_request::Msg::Limit(limit) = first else {
            return Err(Status::invalid_argument(
                "an upload starts with its order limit",
            ));
        };
        let limit = self.check_limit(&limit, true)?;
        let mut writer = self.pieces.writer(limit.piece, limit.limit)?;
        let mut last_order: Option<Order> = None;
        while let Some(msg) = stream.message().await? {
            match msg.msg {
                Some(upload_request::Msg::Order(o)) => {
                    let order = order_for(&limit, &o)?;
                    if last_order.as_ref().is_some_and(|l| order.amount < l.amount) {
                        return Err(Status::invalid_argument("orders must not shrink"));
                    }
                    last_order = Some(order);
                }
                Some(upload_request::Msg::Chunk(data)) => {
                    let after = writer.size() + data.len() as u64;
                    let allowed = last_order.as_ref().map_or(0, |o| o.amount);
                    if after > allowed {
                        return Err(Status::failed_precondition(format!(
                            "{after} bytes sent, the uplink's orders allow {allowed}"
                        )));
                    }
                    // Buffered by the page cache: cheap; the fsync at commit is not.
                    writer.write(&data)?;
                }
                Some(upload_request::Msg::Done(h)) => {
                    let hash = PieceHash::decode(&h)
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                    hash.verify(&limit.uplink)
                        .map_err(|e| Status::unauthenticated(format!("piece hash: {e}")))?;
                    if hash.piece != limit.piece
                        || hash.size != writer.size()
                        || hash.hash != writer.hash()
                    {
                        return Err(Status::invalid_argument(
                            "the piece hash does not match the bytes received",
                        ));
                    }
                    let header = PieceHeader {
                        limit: limit.clone(),
                        hash: hash.clone(),
                        stored_at: unix_now(),
                    };
                    blocking(|| writer.commit(&header))?;
                    if let Some(order) = last_order {
                        self.orders
                            .record(&Served {
                                limit: limit.clone(),
                                order,
                            })
                            .map_err(|e| Status::internal(format!("recording the order: {e}")))?;
                    }
                    let receipt = PieceHash::sign(
                        hash.piece,
                        hash.hash,
                        hash.size,
                        unix_now(),
                        &self.identity,
                    );
                    return Ok(Response::new(UploadResponse {
                        receipt: receipt.encode(),
                    }));
                }
                Some(upload_request::Msg::Limit(_)) => {
                    return Err(Status::invalid_argument("one order limit per upload"))
                }
                None => return Err(Status::invalid_argument("empty upload message")),
            }
        }
        // The uplink went away (or cancelled this piece): nothing is kept.
        Err(Status::cancelled("upload ended before its piece hash"))
    }

    type DownloadStream = DownloadStream;

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let challenge = request.into_inner().challenge;
        if challenge.len() > 64 {
            return Err(Status::invalid_argument(
                "a ping challenge is at most 64 bytes",
            ));
        }
        Ok(Response::new(PingResponse {
            node_key: self.identity.public().0.to_vec(),
            signature: self
                .identity
                .sign(&orbit_protocol::ping_signing_bytes(&challenge)),
        }))
    }

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let r = request.into_inner();
        let limit = self.allowed_get(&r)?;
        let (header, mut reader) = self.pieces.read(&limit.0.piece, r.offset, r.size)?;
        self.record(limit)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut first = Some((header.hash.encode(), header.limit.encode()));
            loop {
                let msg = match reader.next_chunk(CHUNK) {
                    Ok(c) if c.is_empty() && first.is_none() => return,
                    Ok(chunk) => {
                        let (hash, original_limit) = first.take().unwrap_or_default();
                        Ok(DownloadResponse {
                            chunk: chunk.into(),
                            hash,
                            original_limit,
                        })
                    }
                    Err(e) => Err(Status::from(e)),
                };
                let end = msg.is_err();
                if tx.blocking_send(msg).is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn retain(
        &self,
        request: Request<Streaming<RetainRequest>>,
    ) -> Result<Response<RetainResponse>, Status> {
        let Some(store) = self.retain.clone() else {
            return Err(Status::unimplemented("this node keeps no retain filters"));
        };
        let mut stream = request.into_inner();
        let Some(retain_request::Msg::Header(h)) = stream.message().await?.and_then(|m| m.msg)
        else {
            return Err(Status::invalid_argument(
                "a retain request starts with its header",
            ));
        };
        let header =
            RetainHeader::decode(&h).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = self.trusted_key(&header.satellite, "a retain filter")?;
        header
            .verify(&key)
            .map_err(|e| Status::unauthenticated(format!("retain header: {e}")))?;
        if header.node != self.identity.id() {
            return Err(Status::invalid_argument("a retain filter for another node"));
        }
        let mut filter = Vec::with_capacity(header.bytes.min(64 << 20) as usize);
        while let Some(m) = stream.message().await? {
            match m.msg {
                Some(retain_request::Msg::Chunk(c)) => {
                    if filter.len() as u64 + c.len() as u64 > header.bytes {
                        return Err(Status::invalid_argument(
                            "more filter bytes than the header says",
                        ));
                    }
                    filter.extend_from_slice(&c);
                }
                _ => return Err(Status::invalid_argument("one header per retain request")),
            }
        }
        if filter.len() as u64 != header.bytes || *blake3::hash(&filter).as_bytes() != header.hash {
            return Err(Status::invalid_argument(
                "the filter does not match its signed header",
            ));
        }
        orbit_protocol::bloom::Filter::decode(&filter)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let stored = tokio::task::spawn_blocking(move || store.store(&header, &filter))
            .await
            .map_err(|e| Status::internal(format!("storing the filter: {e}")))??;
        Ok(Response::new(RetainResponse { stored }))
    }

    async fn restore_trash(
        &self,
        request: Request<RestoreTrashRequest>,
    ) -> Result<Response<RestoreTrashResponse>, Status> {
        let order = RestoreTrash::decode(&request.into_inner().order)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = self.trusted_key(&order.satellite, "a restore-trash order")?;
        order
            .verify(&key)
            .map_err(|e| Status::unauthenticated(format!("restore-trash order: {e}")))?;
        if order.node != self.identity.id() {
            return Err(Status::invalid_argument(
                "a restore-trash order for another node",
            ));
        }
        if order.timestamp.abs_diff(unix_now()) > ORDER_SKEW_S {
            return Err(Status::invalid_argument(
                "a restore-trash order signed too long ago",
            ));
        }
        let pieces = self.pieces.clone();
        let restored = tokio::task::spawn_blocking(move || pieces.restore_trash(&order.satellite))
            .await
            .map_err(|e| Status::internal(format!("restoring the trash: {e}")))??;
        Ok(Response::new(RestoreTrashResponse { restored }))
    }

    type DownloadSliceStream = DownloadStream;

    async fn download_slice(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let r = request.into_inner();
        let limit = self.allowed_get(&r)?;
        let pieces = self.pieces.clone();
        let piece = limit.0.piece;
        let (header, proof) =
            tokio::task::spawn_blocking(move || pieces.slice(&piece, r.offset, r.size))
                .await
                .map_err(|e| Status::internal(format!("proving a slice: {e}")))??;
        self.record(limit)?;
        let mut first = Some((header.hash.encode(), header.limit.encode()));
        let msgs: Vec<Result<DownloadResponse, Status>> = proof
            .chunks(CHUNK)
            .map(|c| {
                let (hash, original_limit) = first.take().unwrap_or_default();
                Ok(DownloadResponse {
                    chunk: c.to_vec().into(),
                    hash,
                    original_limit,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(msgs))))
    }
}

impl PiecestoreService {
    /// The limit and order of a download request, checked: a read action, an order
    /// for at least the bytes asked.
    fn allowed_get(&self, r: &DownloadRequest) -> Result<(OrderLimit, Order), Status> {
        let limit = self.check_limit(&r.limit, false)?;
        let order = order_for(&limit, &r.order)?;
        if order.amount < r.size {
            return Err(Status::failed_precondition(format!(
                "order for {} bytes, {} asked",
                order.amount, r.size
            )));
        }
        Ok((limit, order))
    }

    /// Records a served download's order, to settle with the satellite.
    fn record(&self, (limit, order): (OrderLimit, Order)) -> Result<(), Status> {
        self.orders
            .record(&Served { limit, order })
            .map_err(|e| Status::internal(format!("recording the order: {e}")))
    }
}
