//! The etcd v3 gRPC API of a member (KV, Watch, Lease, Cluster, Maintenance, built on
//! the service traits `etcd-client` generates; Lock and Election, generated here from
//! etcd's service definitions), and the peer server beside it.

use crate::embedded::EmbeddedKv;
use crate::mvcc::{WriteCommand, WriteResult};
use crate::network::PeerService;
use crate::node::{StoreNode, MAX_REQUEST_BYTES};
use crate::watch::Filters;
use etcd_client::proto::*;
use futures::Stream;
use orbit_kv::pb::*;
use orbit_kv::{Kv, KvError, WatchOptions};
use prost::Message;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// The version reported by Status: the etcd API level orbit speaks.
pub const API_VERSION: &str = "3.5.0";
/// Slack above the request limit for gRPC framing, as etcd allows.
const GRPC_OVERHEAD: usize = 512 * 1024;

type GrpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn st(e: KvError) -> Status {
    error_to_status(&e)
}

/// A listener and the TLS it serves (`None`: plain gRPC).
pub type Listening = (
    tokio::net::TcpListener,
    Option<tonic::transport::ServerTlsConfig>,
);

/// Starts the client (etcd API) and peer servers of `node` on the given listeners.
pub fn serve(
    node: Arc<StoreNode>,
    (client, client_tls): Listening,
    (peer, peer_tls): Listening,
) -> Result<(), tonic::transport::Error> {
    let api = Api { node: node.clone() };
    let limit = MAX_REQUEST_BYTES + GRPC_OVERHEAD;
    let mut stop = node.shutdown_signal();
    let gateway = crate::gateway::Gateway(crate::gateway::router(api.clone()));
    let client_router = builder(client_tls)?
        // etcd's JSON gateway speaks HTTP/1.1 beside gRPC on the client port.
        .accept_http1(true)
        .layer(orbit_telemetry::RpcLayer)
        .add_service(gateway)
        .add_service(PbKvServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(PbWatchServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(PbLeaseServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(PbClusterServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(lk::lock_server::LockServer::new(api.clone()))
        .add_service(el::election_server::ElectionServer::new(api.clone()))
        .add_service(au::auth_server::AuthServer::new(api.clone()))
        .add_service(PbMaintenanceServer::new(api).max_decoding_message_size(limit));
    tokio::spawn(async move {
        let res = client_router
            .serve_with_incoming_shutdown(no_delay(client), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "client server failed");
        }
    });
    let mut stop = node.shutdown_signal();
    let peer_router = builder(peer_tls)?
        .layer(orbit_telemetry::RpcLayer)
        .add_service(PeerService::server(Arc::downgrade(&node)));
    tokio::spawn(async move {
        let res = peer_router
            .serve_with_incoming_shutdown(no_delay(peer), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "peer server failed");
        }
    });
    Ok(())
}

/// A server builder serving `tls`, if any.
fn builder(
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder();
    match tls {
        Some(tls) => builder.tls_config(tls),
        None => Ok(builder),
    }
}

/// Accepted connections with Nagle's algorithm off: a gRPC answer goes out as several
/// small writes, and Nagle with delayed ACKs would hold each back ~40 ms. (tonic's own
/// `tcp_nodelay` applies only to listeners it binds itself.)
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}

/// The etcd API of one member; the gRPC services and the JSON gateway call it alike.
/// Each request acts through [`Api::kv_of`], as the user it authenticates as.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) node: Arc<StoreNode>,
}

impl Api {
    pub(crate) fn header(&self, revision: i64) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.id(),
            revision,
            raft_term: self.node.term(),
        })
    }

    pub(crate) fn revision(&self) -> i64 {
        self.node.shared().read().kv.revision()
    }

    fn check_size<M: Message>(m: &M) -> Result<(), Status> {
        if m.encoded_len() > MAX_REQUEST_BYTES {
            return Err(st(KvError::RequestTooLarge));
        }
        Ok(())
    }

    fn members_pb(&self) -> Vec<PbMember> {
        self.node.members().into_iter().map(member_to_pb).collect()
    }

    /// The user a request comes from while auth is enabled: its token's (metadata
    /// `token`, or `authorization` as the JSON gateway passes it), else, where the
    /// client port checks client certificates, the certificate's common name, as etcd.
    pub(crate) fn user_of<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        let md = request.metadata();
        let token = md
            .get("token")
            .or_else(|| md.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t));
        {
            let state = self.node.shared().read();
            if !state.auth.enabled {
                return Ok(None);
            }
            if let Some(token) = token {
                return state
                    .auth
                    .verify_token(token, crate::auth::unix_now())
                    .map(Some)
                    .map_err(|e| st(e.into()));
            }
        }
        if self.node.config().tls.client_cert_auth {
            if let Some(certs) = request.peer_certs() {
                return Ok(certs.first().and_then(|c| orbit_tls::common_name(c)));
            }
        }
        Ok(None)
    }

    /// The member's key-value interface acting for the request's user.
    pub(crate) fn kv_of<T>(&self, request: &Request<T>) -> Result<EmbeddedKv, Status> {
        Ok(EmbeddedKv::for_client(
            self.node.clone(),
            self.user_of(request)?,
        ))
    }
}

#[tonic::async_trait]
impl PbKvService for Api {
    async fn range(&self, request: Request<PbRangeRequest>) -> GrpcResult<PbRangeResponse> {
        let kv = self.kv_of(&request)?;
        let req = range_req_from_pb(request.into_inner());
        let resp = kv.range(req).await.map_err(st)?;
        let revision = resp.revision;
        let mut pb = range_resp_to_pb(resp);
        pb.header = self.header(revision);
        Ok(Response::new(pb))
    }

    type RangeStreamStream = BoxStream<PbRangeStreamResponse>;

    async fn range_stream(
        &self,
        request: Request<PbRangeRequest>,
    ) -> GrpcResult<Self::RangeStreamStream> {
        let resp = self.range(request).await?.into_inner();
        let item = PbRangeStreamResponse {
            range_response: Some(resp),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(item)]))))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> GrpcResult<PbPutResponse> {
        Self::check_size(request.get_ref())?;
        let kv = self.kv_of(&request)?;
        let resp = kv
            .put(put_req_from_pb(request.into_inner()))
            .await
            .map_err(st)?;
        let revision = resp.revision;
        let mut pb = put_resp_to_pb(resp);
        pb.header = self.header(revision);
        Ok(Response::new(pb))
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> GrpcResult<PbDeleteResponse> {
        let kv = self.kv_of(&request)?;
        let resp = kv
            .delete(delete_req_from_pb(request.into_inner()))
            .await
            .map_err(st)?;
        let revision = resp.revision;
        let mut pb = delete_resp_to_pb(resp);
        pb.header = self.header(revision);
        Ok(Response::new(pb))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> GrpcResult<PbTxnResponse> {
        Self::check_size(request.get_ref())?;
        let kv = self.kv_of(&request)?;
        let req = txn_req_from_pb(request.into_inner()).map_err(st)?;
        let resp = kv.txn(req).await.map_err(st)?;
        let revision = resp.revision;
        let mut pb = txn_resp_to_pb(resp);
        fill_headers(&mut pb, self.header(revision));
        Ok(Response::new(pb))
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> GrpcResult<PbCompactionResponse> {
        let kv = self.kv_of(&request)?;
        // etcd allows compaction to admins only.
        kv.require_admin().map_err(st)?;
        let rev = request.into_inner().revision;
        let res = kv.write(WriteCommand::Compact(rev)).await.map_err(st)?;
        let revision = match res {
            WriteResult::Compact(r) => r,
            _ => self.revision(),
        };
        Ok(Response::new(PbCompactionResponse {
            header: self.header(revision),
        }))
    }
}

/// etcd puts a header on every nested response of a txn.
fn fill_headers(t: &mut PbTxnResponse, header: Option<PbResponseHeader>) {
    t.header = header;
    for r in &mut t.responses {
        match &mut r.response {
            Some(PbTxnOpResponse::ResponseRange(x)) => x.header = header,
            Some(PbTxnOpResponse::ResponsePut(x)) => x.header = header,
            Some(PbTxnOpResponse::ResponseDeleteRange(x)) => x.header = header,
            Some(PbTxnOpResponse::ResponseTxn(x)) => fill_headers(x, header),
            None => {}
        }
    }
}

#[tonic::async_trait]
impl PbWatchService for Api {
    type WatchStream = BoxStream<PbWatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<PbWatchRequest>>,
    ) -> GrpcResult<Self::WatchStream> {
        // As etcd, a bad token shows as each watch being refused, not the stream.
        let kv = self
            .kv_of(&request)
            .unwrap_or_else(|_| EmbeddedKv::for_client(self.node.clone(), None));
        Ok(Response::new(self.watch_stream(kv, request.into_inner())))
    }
}

impl Api {
    /// The watch responses to a stream of watch requests (gRPC's, or the JSON
    /// gateway's one request): ends when the requests end or the answer is dropped.
    pub(crate) fn watch_stream(
        &self,
        kv: EmbeddedKv,
        mut input: impl Stream<Item = Result<PbWatchRequest, Status>> + Send + Unpin + 'static,
    ) -> BoxStream<PbWatchResponse> {
        use tokio_stream::StreamExt as _;
        let (tx, rx) = mpsc::channel::<Result<PbWatchResponse, Status>>(256);
        let api = self.clone();
        tokio::spawn(async move {
            let mut watchers: HashMap<i64, tokio::task::JoinHandle<()>> = HashMap::new();
            let mut next_id = 0i64;
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => break,
                    m = input.next() => m,
                };
                let req = match msg {
                    Some(Ok(r)) => r,
                    _ => break,
                };
                match req.request_union {
                    Some(PbWatchRequestUnion::CreateRequest(c)) => {
                        let id = if c.watch_id > 0 {
                            c.watch_id
                        } else {
                            while watchers.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        };
                        let refused = if watchers.contains_key(&id) {
                            Some("etcdserver: duplicate watch id".to_string())
                        } else {
                            // etcd refuses every unreadable watch with this one reason,
                            // its Go status error's text.
                            kv.require_read(&c.key, &c.range_end).err().map(|_| {
                                format!(
                                    "rpc error: code = PermissionDenied desc = {}",
                                    orbit_kv::AuthError::PermissionDenied
                                )
                            })
                        };
                        if let Some(reason) = refused {
                            let _ = tx
                                .send(Ok(PbWatchResponse {
                                    header: api.header(api.revision()),
                                    watch_id: id,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: reason,
                                    ..Default::default()
                                }))
                                .await;
                            continue;
                        }
                        let filters = Filters {
                            no_put: c.filters.contains(&0),
                            no_delete: c.filters.contains(&1),
                        };
                        let opts = WatchOptions {
                            range_end: c.range_end,
                            start_revision: c.start_revision,
                            prev_kv: c.prev_kv,
                            progress_notify: c.progress_notify,
                        };
                        let (mut events, current) =
                            EmbeddedKv::start_watch(&api.node, c.key, opts, filters);
                        let created = PbWatchResponse {
                            header: api.header(current),
                            watch_id: id,
                            created: true,
                            ..Default::default()
                        };
                        if tx.send(Ok(created)).await.is_err() {
                            break;
                        }
                        let out = tx.clone();
                        let a = api.clone();
                        let handle = tokio::spawn(async move {
                            while let Some(batch) = events.recv().await {
                                let compacted = batch.compact_revision > 0;
                                let resp = PbWatchResponse {
                                    header: a.header(batch.revision),
                                    watch_id: id,
                                    canceled: compacted,
                                    compact_revision: batch.compact_revision,
                                    cancel_reason: if compacted {
                                        KvError::Compacted {
                                            compact_revision: batch.compact_revision,
                                        }
                                        .to_string()
                                    } else {
                                        String::new()
                                    },
                                    events: batch.events.into_iter().map(event_to_pb).collect(),
                                    ..Default::default()
                                };
                                if out.send(Ok(resp)).await.is_err() || compacted {
                                    return;
                                }
                            }
                        });
                        watchers.insert(id, handle);
                        next_id = next_id.max(id + 1);
                    }
                    Some(PbWatchRequestUnion::CancelRequest(c)) => {
                        if let Some(h) = watchers.remove(&c.watch_id) {
                            h.abort();
                            let _ = tx
                                .send(Ok(PbWatchResponse {
                                    header: api.header(api.revision()),
                                    watch_id: c.watch_id,
                                    canceled: true,
                                    ..Default::default()
                                }))
                                .await;
                        }
                    }
                    Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                        let _ = tx
                            .send(Ok(PbWatchResponse {
                                header: api.header(api.revision()),
                                watch_id: -1,
                                ..Default::default()
                            }))
                            .await;
                    }
                    None => {}
                }
            }
            for (_, h) in watchers {
                h.abort();
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl PbLeaseService for Api {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> GrpcResult<PbLeaseGrantResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let resp = kv.lease_grant(r.ttl, r.id).await.map_err(st)?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: self.header(resp.revision),
            id: resp.id,
            ttl: resp.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> GrpcResult<PbLeaseRevokeResponse> {
        let kv = self.kv_of(&request)?;
        let id = request.into_inner().id;
        kv.lease_revoke(id).await.map_err(st)?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: self.header(self.revision()),
        }))
    }

    type LeaseKeepAliveStream = BoxStream<PbLeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> GrpcResult<Self::LeaseKeepAliveStream> {
        let kv = self.kv_of(&request)?;
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = input.message().await {
                let resp = match api.keep_alive_once(&kv, req.id).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> GrpcResult<PbLeaseTimeToLiveResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let resp = kv.lease_time_to_live(r.id, r.keys).await.map_err(st)?;
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: self.header(resp.revision),
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys,
        }))
    }

    async fn lease_leases(
        &self,
        request: Request<PbLeaseLeasesRequest>,
    ) -> GrpcResult<PbLeaseLeasesResponse> {
        let ids = self.kv_of(&request)?.leases().await.map_err(st)?;
        Ok(Response::new(PbLeaseLeasesResponse {
            header: self.header(self.revision()),
            leases: ids.into_iter().map(|id| PbLeaseStatus { id }).collect(),
        }))
    }
}

#[tonic::async_trait]
impl PbClusterService for Api {
    async fn member_add(
        &self,
        request: Request<PbMemberAddRequest>,
    ) -> GrpcResult<PbMemberAddResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        let r = request.into_inner();
        let m = self
            .node
            .member_add(r.peer_ur_ls, r.is_learner)
            .await
            .map_err(st)?;
        // Wait for the new member to show in this member's list before answering.
        let _ = self.node.read_barrier().await;
        Ok(Response::new(PbMemberAddResponse {
            header: self.header(self.revision()),
            member: Some(member_to_pb(m)),
            members: self.members_pb(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> GrpcResult<PbMemberRemoveResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        self.node
            .member_remove(request.into_inner().id)
            .await
            .map_err(st)?;
        let _ = self.node.read_barrier().await;
        Ok(Response::new(PbMemberRemoveResponse {
            header: self.header(self.revision()),
            members: self.members_pb(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> GrpcResult<PbMemberUpdateResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        let r = request.into_inner();
        self.node
            .member_update(r.id, r.peer_ur_ls)
            .await
            .map_err(st)?;
        let _ = self.node.read_barrier().await;
        Ok(Response::new(PbMemberUpdateResponse {
            header: self.header(self.revision()),
            members: self.members_pb(),
        }))
    }

    async fn member_list(
        &self,
        request: Request<PbMemberListRequest>,
    ) -> GrpcResult<PbMemberListResponse> {
        self.kv_of(&request)?;
        if request.into_inner().linearizable {
            self.node.read_barrier().await.map_err(st)?;
        }
        Ok(Response::new(PbMemberListResponse {
            header: self.header(self.revision()),
            members: self.members_pb(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> GrpcResult<PbMemberPromoteResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        self.node
            .member_promote(request.into_inner().id)
            .await
            .map_err(st)?;
        let _ = self.node.read_barrier().await;
        Ok(Response::new(PbMemberPromoteResponse {
            header: self.header(self.revision()),
            members: self.members_pb(),
        }))
    }
}

#[tonic::async_trait]
impl PbMaintenanceService for Api {
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> GrpcResult<PbAlarmResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let action = match r.action {
            0 => orbit_kv::AlarmAction::Get,
            1 => orbit_kv::AlarmAction::Activate,
            2 => orbit_kv::AlarmAction::Deactivate,
            n => {
                return Err(Status::invalid_argument(format!(
                    "unknown alarm action {n}"
                )))
            }
        };
        let alarm = orbit_kv::AlarmType::from_pb(r.alarm)
            .ok_or_else(|| Status::invalid_argument(format!("unknown alarm type {}", r.alarm)))?;
        let alarms = kv.alarm(action, r.member_id, alarm).await.map_err(st)?;
        Ok(Response::new(PbAlarmResponse {
            header: self.header(self.revision()),
            alarms: alarms
                .iter()
                .map(|a| PbAlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm.to_pb(),
                })
                .collect(),
        }))
    }

    async fn status(&self, request: Request<PbStatusRequest>) -> GrpcResult<PbStatusResponse> {
        self.kv_of(&request)?.require_user().map_err(st)?;
        let s = self.node.status();
        let mut errors = Vec::new();
        if s.leader == 0 {
            errors.push(KvError::NoLeader.to_string());
        }
        // Raised alarms, as etcd lists them (etcdctl endpoint status shows them).
        for a in self.node.alarms() {
            let kind = match a.alarm {
                orbit_kv::AlarmType::NoSpace => "NOSPACE",
                orbit_kv::AlarmType::Corrupt => "CORRUPT",
                orbit_kv::AlarmType::None => "NONE",
            };
            errors.push(format!("memberID:{} alarm:{kind} ", a.member_id));
        }
        Ok(Response::new(PbStatusResponse {
            header: self.header(s.revision),
            version: API_VERSION.to_string(),
            db_size: s.db_size,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.term,
            raft_applied_index: s.applied_index,
            errors,
            db_size_in_use: s.db_size,
            is_learner: s.is_learner,
            storage_version: String::new(),
            db_size_quota: self.node.config().quota_bytes as i64,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        request: Request<PbDefragmentRequest>,
    ) -> GrpcResult<PbDefragmentResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        // The state is in memory and the log is rewritten as it is purged: nothing to do.
        Ok(Response::new(PbDefragmentResponse {
            header: self.header(self.revision()),
        }))
    }

    async fn hash(&self, request: Request<PbHashRequest>) -> GrpcResult<PbHashResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        let (hash, rev) = self.kv_hash(0).map_err(st)?;
        Ok(Response::new(PbHashResponse {
            header: self.header(rev),
            hash,
        }))
    }

    async fn hash_kv(&self, request: Request<PbHashKvRequest>) -> GrpcResult<PbHashKvResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        let (hash, rev) = self.kv_hash(request.into_inner().revision).map_err(st)?;
        let compact = self.node.shared().read().kv.compact_revision();
        Ok(Response::new(PbHashKvResponse {
            header: self.header(self.revision()),
            hash,
            compact_revision: compact,
            hash_revision: rev,
        }))
    }

    type SnapshotStream = BoxStream<PbSnapshotResponse>;

    /// A backup (crate::backup's format, not a bbolt file) of the state as of now,
    /// after a read barrier, in 1 MiB chunks as etcd streams its own.
    async fn snapshot(
        &self,
        request: Request<PbSnapshotRequest>,
    ) -> GrpcResult<Self::SnapshotStream> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        self.node.read_barrier().await.map_err(st)?;
        let (bytes, rev) = {
            let state = self.node.shared().read();
            let now = crate::auth::unix_now();
            (
                crate::backup::encode(&state.kv, &state.auth, now),
                state.kv.revision(),
            )
        };
        let header = self.header(rev);
        let total = bytes.len();
        let chunks: Vec<Result<PbSnapshotResponse, Status>> = bytes
            .chunks(1 << 20)
            .scan(0usize, |sent, chunk| {
                *sent += chunk.len();
                Some(Ok(PbSnapshotResponse {
                    header,
                    remaining_bytes: (total - *sent) as u64,
                    blob: chunk.to_vec(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                }))
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> GrpcResult<PbMoveLeaderResponse> {
        self.kv_of(&request)?.require_admin().map_err(st)?;
        let target = request.into_inner().target_id;
        self.node.move_leader(target).await.map_err(st)?;
        Ok(Response::new(PbMoveLeaderResponse {
            header: self.header(self.revision()),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<PbDowngradeRequest>,
    ) -> GrpcResult<PbDowngradeResponse> {
        Err(Status::unimplemented("downgrade is not supported"))
    }
}

impl Api {
    /// A hash of every key at `rev` (0: now), to compare members.
    fn kv_hash(&self, rev: i64) -> Result<(u32, i64), KvError> {
        let state = self.node.shared().read();
        let resp = state.kv.range(&orbit_kv::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        })?;
        let mut h = crc32fast::Hasher::new();
        for kv in &resp.kvs {
            h.update(&kv.key);
            h.update(&kv.value);
            h.update(&kv.mod_revision.to_le_bytes());
        }
        Ok((
            h.finalize(),
            if rev > 0 { rev } else { state.kv.revision() },
        ))
    }
}

/// etcd's Lock, Election and Auth services (generated from proto/lock.proto,
/// proto/election.proto and proto/auth.proto, with etcd-client's header and key-value
/// types).
pub mod recipes_pb {
    #![allow(missing_docs, clippy::all)]
    /// `etcdserverpb`: the Auth service and its messages.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// `authpb`: permissions and user options.
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// `v3lockpb`.
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
    /// `v3electionpb`.
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}

use crate::recipes;
use recipes_pb::etcdserverpb as au;
use recipes_pb::v3electionpb as el;
use recipes_pb::v3lockpb as lk;

impl Api {
    /// One keep-alive of lease `id` (gRPC's stream and the gateway answer each alike).
    pub(crate) async fn keep_alive_once(
        &self,
        kv: &EmbeddedKv,
        id: i64,
    ) -> Result<PbLeaseKeepAliveResponse, Status> {
        let ttl = match kv.lease_keep_alive(id).await {
            Ok(ttl) => ttl,
            // etcd answers an unknown lease with TTL 0.
            Err(KvError::LeaseNotFound) => 0,
            Err(e) => return Err(st(e)),
        };
        Ok(PbLeaseKeepAliveResponse {
            header: self.header(self.revision()),
            id,
            ttl,
        })
    }
}

#[tonic::async_trait]
impl lk::lock_server::Lock for Api {
    async fn lock(&self, request: Request<lk::LockRequest>) -> GrpcResult<lk::LockResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let held = recipes::lock(Arc::new(kv), &r.name, r.lease)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(lk::LockResponse {
            header: self.header(held.revision),
            key: held.key,
        }))
    }

    async fn unlock(&self, request: Request<lk::UnlockRequest>) -> GrpcResult<lk::UnlockResponse> {
        let kv = self.kv_of(&request)?;
        let rev = recipes::unlock(&kv, &request.into_inner().key)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(lk::UnlockResponse {
            header: self.header(rev),
        }))
    }
}

/// The leader key of a request, or the error etcd gives without one.
fn leader_of(k: Option<el::LeaderKey>) -> Result<el::LeaderKey, Status> {
    k.ok_or_else(|| Status::invalid_argument("etcdserver: leader key is not provided"))
}

#[tonic::async_trait]
impl el::election_server::Election for Api {
    async fn campaign(
        &self,
        request: Request<el::CampaignRequest>,
    ) -> GrpcResult<el::CampaignResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let held = recipes::campaign(Arc::new(kv), &r.name, r.lease, &r.value)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(el::CampaignResponse {
            header: self.header(held.revision),
            leader: Some(el::LeaderKey {
                name: r.name,
                key: held.key,
                rev: held.create_revision,
                lease: r.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<el::ProclaimRequest>,
    ) -> GrpcResult<el::ProclaimResponse> {
        let kv = self.kv_of(&request)?;
        let r = request.into_inner();
        let l = leader_of(r.leader)?;
        let rev = recipes::proclaim(&kv, &l.key, l.rev, &r.value)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(el::ProclaimResponse {
            header: self.header(rev),
        }))
    }

    async fn leader(&self, request: Request<el::LeaderRequest>) -> GrpcResult<el::LeaderResponse> {
        let kv = self.kv_of(&request)?;
        let (kv, rev) = recipes::leader(&kv, &request.into_inner().name)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(el::LeaderResponse {
            header: self.header(rev),
            kv: Some(orbit_kv::pb::kv_to_pb(kv)),
        }))
    }

    type ObserveStream = BoxStream<el::LeaderResponse>;

    async fn observe(
        &self,
        request: Request<el::LeaderRequest>,
    ) -> GrpcResult<Self::ObserveStream> {
        let kv = self.kv_of(&request)?;
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "etcdserver: election name is not provided",
            ));
        }
        let (tx, rx) = mpsc::channel(16);
        let kv: Arc<dyn Kv> = Arc::new(kv);
        // Until the client goes (the receiver drops) or the store fails.
        tokio::spawn(async move {
            let closed = tx.clone();
            tokio::select! {
                _ = recipes::observe(kv, name, tx) => {}
                _ = closed.closed() => {}
            }
        });
        let api = self.clone();
        let stream =
            tokio_stream::StreamExt::map(ReceiverStream::new(rx), move |item| match item {
                Ok((kv, rev)) => Ok(el::LeaderResponse {
                    header: api.header(rev),
                    kv: Some(orbit_kv::pb::kv_to_pb(kv)),
                }),
                Err(e) => Err(e.status()),
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(&self, request: Request<el::ResignRequest>) -> GrpcResult<el::ResignResponse> {
        let kv = self.kv_of(&request)?;
        let l = leader_of(request.into_inner().leader)?;
        let rev = recipes::resign(&kv, &l.key, l.rev)
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(el::ResignResponse {
            header: self.header(rev),
        }))
    }
}
