//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/kv/range` and the
//! rest, for curl and HTTP clients, beside gRPC on the same port.
//!
//! A request's JSON is read by the descriptor of etcd's request message
//! (proto/gateway.proto, via `prost-reflect`), with proto3's JSON mapping: bytes are
//! base64, 64-bit integers may be strings or numbers, and field names are etcd's own
//! or their camelCase forms. It is then encoded to the wire and decoded as
//! etcd-client's message, and the same method gRPC calls answers it. The answer goes
//! back the same way, with etcd's field names and 64-bit integers as strings, as
//! etcd's gateway writes them. Streams (`/v3/watch`, `/v3/lease/keepalive`,
//! `/v3/election/observe`) answer one `{"result": …}` line per message. Errors are
//! `{"error", "code", "message"}` with grpc-gateway's HTTP status for the gRPC code.

use crate::server::recipes_pb::{etcdserverpb as au, v3electionpb as el, v3lockpb as lk};
use crate::server::Api;
use au::auth_server::Auth;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use el::election_server::Election;
use etcd_client::proto::*;
use futures::{Stream, StreamExt};
use lk::lock_server::Lock;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::sync::LazyLock;
use tonic::{Request, Status};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/gateway.bin"))[..])
        .expect("the gateway's descriptors decode")
});

fn descriptor(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in proto/gateway.proto"))
}

/// `body` (JSON; empty for an empty message) as the etcd message `name`, typed `T`.
fn from_json<T: prost::Message + Default>(name: &str, body: &[u8]) -> Result<T, Status> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let msg = DynamicMessage::deserialize(descriptor(name), &mut de)
        .and_then(|m| de.end().map(|_| m))
        .map_err(|e| Status::invalid_argument(format!("malformed JSON for {name}: {e}")))?;
    T::decode(prost::Message::encode_to_vec(&msg).as_slice())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// `msg` (the etcd message `name`) as etcd's gateway writes it.
fn to_json<T: prost::Message>(name: &str, msg: &T) -> serde_json::Value {
    let d = DynamicMessage::decode(descriptor(name), msg.encode_to_vec().as_slice())
        .expect("a message decodes by its own descriptor");
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true);
    d.serialize_with_options(serde_json::value::Serializer, &opts)
        .expect("a message serializes")
}

/// The HTTP status grpc-gateway gives a gRPC code.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::Cancelled => StatusCode::REQUEST_TIMEOUT,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_body(s: &Status) -> serde_json::Value {
    serde_json::json!({ "error": s.message(), "code": s.code() as i32, "message": s.message() })
}

fn failure(s: Status) -> Response {
    (
        http_status(s.code()),
        [(header::CONTENT_TYPE, "application/json")],
        error_body(&s).to_string(),
    )
        .into_response()
}

fn json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// One `{"result": …}` (or `{"error": …}`) line per message of `s`.
fn lines<T: prost::Message + 'static>(
    name: &'static str,
    s: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let body = s.map(move |m| {
        let v = match m {
            Ok(m) => serde_json::json!({ "result": to_json(name, &m) }),
            Err(e) => serde_json::json!({ "error": error_body(&e) }),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n")))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `q` as a gRPC request with the HTTP request's credentials: etcd's gateway passes
/// the `Authorization` header (a token from `/v3/auth/authenticate`) on as metadata.
fn request<T>(headers: &HeaderMap, q: T) -> Request<T> {
    let mut req = Request::new(q);
    for name in ["authorization", "token"] {
        if let Some(v) = headers
            .get(name)
            .and_then(|v| v.to_str().ok()?.parse().ok())
        {
            req.metadata_mut().insert(name, v);
        }
    }
    req
}

/// A unary method: JSON in, the method, JSON out.
macro_rules! unary {
    ($req:literal, $resp:literal, $call:path) => {
        post(
            |State(api): State<Api>, headers: HeaderMap, body: Bytes| async move {
                let q = match from_json($req, &body) {
                    Ok(q) => q,
                    Err(e) => return failure(e),
                };
                match $call(&api, request(&headers, q)).await {
                    Ok(a) => json(to_json($resp, &a.into_inner())),
                    Err(e) => failure(e),
                }
            },
        )
    };
}

/// The gateway's routes over one member's API.
pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .route(
            "/v3/kv/range",
            unary!(
                "etcdserverpb.RangeRequest",
                "etcdserverpb.RangeResponse",
                PbKvService::range
            ),
        )
        .route(
            "/v3/kv/put",
            unary!(
                "etcdserverpb.PutRequest",
                "etcdserverpb.PutResponse",
                PbKvService::put
            ),
        )
        .route(
            "/v3/kv/deleterange",
            unary!(
                "etcdserverpb.DeleteRangeRequest",
                "etcdserverpb.DeleteRangeResponse",
                PbKvService::delete_range
            ),
        )
        .route(
            "/v3/kv/txn",
            unary!(
                "etcdserverpb.TxnRequest",
                "etcdserverpb.TxnResponse",
                PbKvService::txn
            ),
        )
        .route(
            "/v3/kv/compaction",
            unary!(
                "etcdserverpb.CompactionRequest",
                "etcdserverpb.CompactionResponse",
                PbKvService::compact
            ),
        )
        .route(
            "/v3/lease/grant",
            unary!(
                "etcdserverpb.LeaseGrantRequest",
                "etcdserverpb.LeaseGrantResponse",
                PbLeaseService::lease_grant
            ),
        )
        .route(
            "/v3/lease/revoke",
            unary!(
                "etcdserverpb.LeaseRevokeRequest",
                "etcdserverpb.LeaseRevokeResponse",
                PbLeaseService::lease_revoke
            ),
        )
        .route(
            "/v3/kv/lease/revoke",
            unary!(
                "etcdserverpb.LeaseRevokeRequest",
                "etcdserverpb.LeaseRevokeResponse",
                PbLeaseService::lease_revoke
            ),
        )
        .route(
            "/v3/lease/timetolive",
            unary!(
                "etcdserverpb.LeaseTimeToLiveRequest",
                "etcdserverpb.LeaseTimeToLiveResponse",
                PbLeaseService::lease_time_to_live
            ),
        )
        .route(
            "/v3/kv/lease/timetolive",
            unary!(
                "etcdserverpb.LeaseTimeToLiveRequest",
                "etcdserverpb.LeaseTimeToLiveResponse",
                PbLeaseService::lease_time_to_live
            ),
        )
        .route(
            "/v3/lease/leases",
            unary!(
                "etcdserverpb.LeaseLeasesRequest",
                "etcdserverpb.LeaseLeasesResponse",
                PbLeaseService::lease_leases
            ),
        )
        .route(
            "/v3/kv/lease/leases",
            unary!(
                "etcdserverpb.LeaseLeasesRequest",
                "etcdserverpb.LeaseLeasesResponse",
                PbLeaseService::lease_leases
            ),
        )
        .route(
            "/v3/cluster/member/list",
            unary!(
                "etcdserverpb.MemberListRequest",
                "etcdserverpb.MemberListResponse",
                PbClusterService::member_list
            ),
        )
        .route(
            "/v3/maintenance/status",
            unary!(
                "etcdserverpb.StatusRequest",
                "etcdserverpb.StatusResponse",
                PbMaintenanceService::status
            ),
        )
        .route(
            "/v3/lock/lock",
            unary!("v3lockpb.LockRequest", "v3lockpb.LockResponse", Lock::lock),
        )
        .route(
            "/v3/lock/unlock",
            unary!(
                "v3lockpb.UnlockRequest",
                "v3lockpb.UnlockResponse",
                Lock::unlock
            ),
        )
        .route(
            "/v3/election/campaign",
            unary!(
                "v3electionpb.CampaignRequest",
                "v3electionpb.CampaignResponse",
                Election::campaign
            ),
        )
        .route(
            "/v3/election/proclaim",
            unary!(
                "v3electionpb.ProclaimRequest",
                "v3electionpb.ProclaimResponse",
                Election::proclaim
            ),
        )
        .route(
            "/v3/election/leader",
            unary!(
                "v3electionpb.LeaderRequest",
                "v3electionpb.LeaderResponse",
                Election::leader
            ),
        )
        .route(
            "/v3/election/resign",
            unary!(
                "v3electionpb.ResignRequest",
                "v3electionpb.ResignResponse",
                Election::resign
            ),
        )
        .route(
            "/v3/auth/authenticate",
            unary!(
                "etcdserverpb.AuthenticateRequest",
                "etcdserverpb.AuthenticateResponse",
                Auth::authenticate
            ),
        )
        .route(
            "/v3/auth/enable",
            unary!(
                "etcdserverpb.AuthEnableRequest",
                "etcdserverpb.AuthEnableResponse",
                Auth::auth_enable
            ),
        )
        .route(
            "/v3/auth/disable",
            unary!(
                "etcdserverpb.AuthDisableRequest",
                "etcdserverpb.AuthDisableResponse",
                Auth::auth_disable
            ),
        )
        .route(
            "/v3/auth/status",
            unary!(
                "etcdserverpb.AuthStatusRequest",
                "etcdserverpb.AuthStatusResponse",
                Auth::auth_status
            ),
        )
        .route(
            "/v3/auth/user/add",
            unary!(
                "etcdserverpb.AuthUserAddRequest",
                "etcdserverpb.AuthUserAddResponse",
                Auth::user_add
            ),
        )
        .route(
            "/v3/auth/user/get",
            unary!(
                "etcdserverpb.AuthUserGetRequest",
                "etcdserverpb.AuthUserGetResponse",
                Auth::user_get
            ),
        )
        .route(
            "/v3/auth/user/list",
            unary!(
                "etcdserverpb.AuthUserListRequest",
                "etcdserverpb.AuthUserListResponse",
                Auth::user_list
            ),
        )
        .route(
            "/v3/auth/user/delete",
            unary!(
                "etcdserverpb.AuthUserDeleteRequest",
                "etcdserverpb.AuthUserDeleteResponse",
                Auth::user_delete
            ),
        )
        .route(
            "/v3/auth/user/changepw",
            unary!(
                "etcdserverpb.AuthUserChangePasswordRequest",
                "etcdserverpb.AuthUserChangePasswordResponse",
                Auth::user_change_password
            ),
        )
        .route(
            "/v3/auth/user/grant",
            unary!(
                "etcdserverpb.AuthUserGrantRoleRequest",
                "etcdserverpb.AuthUserGrantRoleResponse",
                Auth::user_grant_role
            ),
        )
        .route(
            "/v3/auth/user/revoke",
            unary!(
                "etcdserverpb.AuthUserRevokeRoleRequest",
                "etcdserverpb.AuthUserRevokeRoleResponse",
                Auth::user_revoke_role
            ),
        )
        .route(
            "/v3/auth/role/add",
            unary!(
                "etcdserverpb.AuthRoleAddRequest",
                "etcdserverpb.AuthRoleAddResponse",
                Auth::role_add
            ),
        )
        .route(
            "/v3/auth/role/get",
            unary!(
                "etcdserverpb.AuthRoleGetRequest",
                "etcdserverpb.AuthRoleGetResponse",
                Auth::role_get
            ),
        )
        .route(
            "/v3/auth/role/list",
            unary!(
                "etcdserverpb.AuthRoleListRequest",
                "etcdserverpb.AuthRoleListResponse",
                Auth::role_list
            ),
        )
        .route(
            "/v3/auth/role/delete",
            unary!(
                "etcdserverpb.AuthRoleDeleteRequest",
                "etcdserverpb.AuthRoleDeleteResponse",
                Auth::role_delete
            ),
        )
        .route(
            "/v3/auth/role/grant",
            unary!(
                "etcdserverpb.AuthRoleGrantPermissionRequest",
                "etcdserverpb.AuthRoleGrantPermissionResponse",
                Auth::role_grant_permission
            ),
        )
        .route(
            "/v3/auth/role/revoke",
            unary!(
                "etcdserverpb.AuthRoleRevokePermissionRequest",
                "etcdserverpb.AuthRoleRevokePermissionResponse",
                Auth::role_revoke_permission
            ),
        )
        .route("/v3/election/observe", post(observe))
        .route("/v3/watch", post(watch))
        .route("/v3/lease/keepalive", post(keep_alive))
        .fallback(|| async { failure(Status::unimplemented("no such gateway route")) })
        .with_state(api)
}

/// A stream's one request: the body, and no more (the stream lasts until the client
/// goes).
fn one<T: Send + 'static>(q: T) -> impl Stream<Item = Result<T, Status>> + Send + Unpin {
    futures::stream::once(futures::future::ready(Ok(q))).chain(futures::stream::pending())
}

async fn watch(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let kv = match api.kv_of(&request(&headers, ())) {
        Ok(kv) => kv,
        Err(e) => return failure(e),
    };
    match from_json::<PbWatchRequest>("etcdserverpb.WatchRequest", &body) {
        Ok(q) => lines("etcdserverpb.WatchResponse", api.watch_stream(kv, one(q))),
        Err(e) => failure(e),
    }
}

async fn observe(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let q = match from_json::<el::LeaderRequest>("v3electionpb.LeaderRequest", &body) {
        Ok(q) => q,
        Err(e) => return failure(e),
    };
    match Election::observe(&api, request(&headers, q)).await {
        Ok(s) => lines("v3electionpb.LeaderResponse", s.into_inner()),
        Err(e) => failure(e),
    }
}

/// One keep-alive: etcd's gateway streams one answer per request line; here the body
/// is one request, so one answer.
async fn keep_alive(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let q = match from_json::<PbLeaseKeepAliveRequest>("etcdserverpb.LeaseKeepAliveRequest", &body)
    {
        Ok(q) => q,
        Err(e) => return failure(e),
    };
    let kv = match api.kv_of(&request(&headers, ())) {
        Ok(kv) => kv,
        Err(e) => return failure(e),
    };
    let resp = match api.keep_alive_once(&kv, q.id).await {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    lines(
        "etcdserverpb.LeaseKeepAliveResponse",
        futures::stream::once(futures::future::ready(Ok(resp))),
    )
}

/// The gateway as a service of the client port's gRPC server: tonic routes every
/// `/v3/…` path to a service named `v3`.
#[derive(Clone)]
pub(crate) struct Gateway(pub(crate) Router);

impl tonic::server::NamedService for Gateway {
    const NAME: &'static str = "v3";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Gateway {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let mut router = self.0.clone();
        Box::pin(async move {
            let r = tower_service::Service::call(&mut router, req).await?;
            Ok(r.map(tonic::body::Body::new))
        })
    }
}
