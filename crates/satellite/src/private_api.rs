//! The `private-api` process: the operators' HTTP API, JSON in and out, every request
//! behind `Authorization: Bearer <[private_api] token>`.
//!
//! Inspectors:
//! - `GET /v1/nodes`: every node with its reputation and state;
//! - `GET /v1/objects/{project}/{bucket}?key=<encrypted key>`: the health of an
//!   object's segments (the key as the uplink encrypted it, as the store holds it);
//! - `GET /v1/repair/queue?limit=N`: the repair queue, its counts by health, and the
//!   lost segments.
//!
//! Admin:
//! - `GET /v1/projects/{project}`, `PUT /v1/projects/{project}/limits`
//!   (`{"storage": …, "egress": …, "segments": …}`, `null` for none);
//! - `POST /v1/apikeys/revoke` (`{"key": …}`);
//! - `POST /v1/nodes/{id}/disqualify` (`{"reason": …}`), `…/reinstate`,
//!   `…/restore-trash`;
//! - `POST /v1/loop/run`, `POST /v1/gc/run`: a loop pass or a gc round now, by
//!   whichever process leads (202: asked; the process's status shows the run).

use crate::api::Serving;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use orbit_identity::{Identity, NodeId};
use orbit_kv::Kv;
use orbit_satellite_api::StorageSection;
use orbit_satellite_model::accounting::{Limits, Usage};
use orbit_satellite_model::apikeys::{ApiKey, ApiKeys};
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::repair::HealthRules;
use orbit_satellite_model::{unix_now, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The `[private_api]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateApiSection {
    /// Listen address.
    pub addr: String,
    /// The bearer token every request must carry (required; keep it secret: it
    /// disqualifies nodes and revokes keys).
    pub token: String,
}

impl Default for PrivateApiSection {
    fn default() -> Self {
        PrivateApiSection {
            addr: "127.0.0.1:7779".into(),
            token: String::new(),
        }
    }
}

/// What the handlers share.
struct PrivateApi {
    kv: Arc<dyn Kv>,
    identity: Identity,
    storage: StorageSection,
    token: String,
}

/// A model error as an HTTP answer: the status its kind calls for, and the message.
struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure(code, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<Json<Value>, Failure>;

/// A JSON request body whose rejection is a JSON answer too.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(bad(e.body_text())),
        }
    }
}

fn bad(why: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, why.into())
}

fn node_id(s: &str) -> Result<NodeId, Failure> {
    NodeId::parse(s).map_err(|e| bad(format!("node id {s:?}: {e}")))
}

/// Refuses, before any handler runs, a request without the token.
async fn authorized(State(api): State<Arc<PrivateApi>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared through hashes: in constant time whatever the lengths.
    if blake3::hash(given.as_bytes()) != blake3::hash(api.token.as_bytes()) {
        return Failure(
            StatusCode::UNAUTHORIZED,
            "give the private API token as Authorization: Bearer <token>".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn nodes(State(api): State<Arc<PrivateApi>>) -> Answer {
    let rows = crate::inspectors::nodes(api.kv.clone(), api.storage.online_window_s).await?;
    Ok(Json(json!(rows)))
}

async fn object(
    State(api): State<Arc<PrivateApi>>,
    Path((project, bucket)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let key = q
        .get("key")
        .ok_or_else(|| bad("give the object's encrypted key as ?key="))?;
    let rules = HealthRules {
        online_window_s: api.storage.online_window_s,
        distinct_networks: api.storage.distinct_networks,
    };
    let (stream, segments) =
        crate::inspectors::object_health(api.kv.clone(), &project, &bucket, key, &rules).await?;
    Ok(Json(json!({ "stream": stream, "segments": segments })))
}

async fn repair_queue(
    State(api): State<Arc<PrivateApi>>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let limit = match q.get("limit") {
        Some(l) => l.parse().map_err(|_| bad(format!("limit {l:?}")))?,
        None => 100,
    };
    Ok(Json(
        crate::inspectors::repair_queue(api.kv.clone(), limit).await?,
    ))
}

async fn project(State(api): State<Arc<PrivateApi>>, Path(project): Path<String>) -> Answer {
    Ok(Json(
        crate::inspectors::project(api.kv.clone(), &project).await?,
    ))
}

async fn set_limits(
    State(api): State<Arc<PrivateApi>>,
    Path(project): Path<String>,
    Body(limits): Body<Limits>,
) -> Answer {
    Usage::new(api.kv.clone())
        .set_limits(&project, limits, unix_now())
        .await?;
    Ok(Json(json!({ "project": project, "limits": limits })))
}

#[derive(Deserialize)]
struct RevokeBody {
    key: String,
}

async fn revoke(State(api): State<Arc<PrivateApi>>, Body(b): Body<RevokeBody>) -> Answer {
    let key = ApiKey::parse(&b.key).map_err(|e| bad(e.to_string()))?;
    ApiKeys::new(api.kv.clone())
        .revoke(&key, unix_now())
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "revoked": true })))
}

#[derive(Deserialize)]
struct DisqualifyBody {
    reason: String,
}

async fn disqualify(
    State(api): State<Arc<PrivateApi>>,
    Path(id): Path<String>,
    Body(b): Body<DisqualifyBody>,
) -> Answer {
    let id = node_id(&id)?;
    if b.reason.trim().is_empty() {
        return Err(bad("say why: {\"reason\": \"...\"}"));
    }
    let reason = format!("operator: {}", b.reason.trim());
    let n = nodes_of(&api).disqualify(&id, &reason, unix_now()).await?;
    Ok(Json(json!({
        "node": id.to_string(),
        "disqualified": n.disqualified,
        "reason": n.reputation.disqualified_reason,
    })))
}

async fn reinstate(State(api): State<Arc<PrivateApi>>, Path(id): Path<String>) -> Answer {
    let id = node_id(&id)?;
    let n = nodes_of(&api).reinstate(&id).await?;
    Ok(Json(
        json!({ "node": id.to_string(), "disqualified": n.disqualified }),
    ))
}

async fn restore_trash(State(api): State<Arc<PrivateApi>>, Path(id): Path<String>) -> Answer {
    let id = node_id(&id)?;
    let n = nodes_of(&api)
        .get(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no node {id}")))?;
    let order = orbit_protocol::RestoreTrash::sign(&api.identity, n.id, unix_now());
    let restored = orbit_protocol::client::restore_trash(&n.address, &n.id, &order)
        .await
        .map_err(|e| Failure(StatusCode::BAD_GATEWAY, format!("node {id}: {e}")))?;
    Ok(Json(
        json!({ "node": id.to_string(), "restored": restored }),
    ))
}

async fn run_loop(
    State(api): State<Arc<PrivateApi>>,
) -> Result<(StatusCode, Json<Value>), Failure> {
    run_now(&api, "loop").await
}

async fn run_gc(State(api): State<Arc<PrivateApi>>) -> Result<(StatusCode, Json<Value>), Failure> {
    run_now(&api, "gc").await
}

async fn run_now(api: &PrivateApi, process: &str) -> Result<(StatusCode, Json<Value>), Failure> {
    orbit_satellite_model::requests::ask(&*api.kv, process, "private-api", unix_now()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "requested": process }))))
}

fn nodes_of(api: &PrivateApi) -> Nodes {
    Nodes::new(api.kv.clone(), SelectionConfig::default())
}

/// Serves the private API from `section` over `kv`, signing node orders (trash
/// restores) as `identity`.
pub async fn serve(
    section: &PrivateApiSection,
    kv: Arc<dyn Kv>,
    identity: Identity,
    storage: StorageSection,
) -> anyhow::Result<Serving> {
    anyhow::ensure!(
        !section.token.is_empty(),
        "[private_api] token is empty: the private API needs a bearer token (a long random one)"
    );
    let tls_identity = identity.clone();
    let api = Arc::new(PrivateApi {
        kv,
        identity,
        storage,
        token: section.token.clone(),
    });
    let app = Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{id}/disqualify", post(disqualify))
        .route("/v1/nodes/{id}/reinstate", post(reinstate))
        .route("/v1/nodes/{id}/restore-trash", post(restore_trash))
        .route("/v1/objects/{project}/{bucket}", get(object))
        .route("/v1/repair/queue", get(repair_queue))
        .route("/v1/projects/{project}", get(project))
        .route("/v1/projects/{project}/limits", put(set_limits))
        .route("/v1/apikeys/revoke", post(revoke))
        .route("/v1/loop/run", post(run_loop))
        .route("/v1/gc/run", post(run_gc))
        .fallback(|| async { Failure(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authorized,
        ))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind(&section.addr)
        .await
        .map_err(|e| anyhow::anyhow!("private API address {}: {e}", section.addr))?;
    let url = format!("https://{}", listener.local_addr()?);
    tracing::info!(
        %url,
        pin = %orbit_tls::curl_pin(&tls_identity.public()),
        "private API over TLS with the satellite's identity key (curl: -k --pinnedpubkey PIN)"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = orbit_tls::serve_axum(listener, &tls_identity, app, async {
        let _ = stopped.await;
    })?;
    let task = tokio::spawn(served);
    Ok(Serving::new(url, stop, task))
}
