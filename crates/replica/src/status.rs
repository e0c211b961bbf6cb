//! The replica's status and health endpoint (HTTP).
//!
//! `GET /health`: 200 when the replica can do a linearizable read of the store within
//! two seconds, 503 otherwise — the check a load balancer wants.
//! `GET /status`: JSON with the replica's id, mode, whether it runs a store member,
//! the store's members as this replica sees them, and the status of every worker of
//! the process (`workers`) and of its store member (`store_workers`), and a section per
//! service that adds one (`loop`: the segment loop's election and last pass).
//! `GET /metrics`: the process's Prometheus series (OpenMetrics text).
//! `POST /workers/<name>/trigger` runs a worker now and answers with its result;
//! `…/pause` and `…/resume` stop and restart its interval runs. They take the
//! cluster token as `Authorization: Bearer <token>` (what operators and tests use
//! instead of waiting for an interval).

use crate::Replica;
use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use orbit_kv::RangeRequest;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn serve(
    replica: Arc<Replica>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/workers/{name}/{action}", post(control))
        .merge(orbit_telemetry::routes())
        .with_state(replica);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "status endpoint failed");
        }
    })
}

async fn health(State(r): State<Arc<Replica>>) -> (StatusCode, String) {
    let read = r.kv.range(RangeRequest::key(crate::table::HEALTH_KEY));
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store: no answer within 2 s\n".into(),
        ),
    }
}

async fn status(State(r): State<Arc<Replica>>) -> Json<serde_json::Value> {
    let members = match tokio::time::timeout(Duration::from_secs(2), r.kv.members()).await {
        Ok(Ok(m)) => serde_json::json!(m
            .iter()
            .map(|m| serde_json::json!({
                "id": format!("{:x}", m.id),
                "name": m.name,
                "client_urls": m.client_urls,
                "learner": m.is_learner,
            }))
            .collect::<Vec<_>>()),
        Ok(Err(e)) => serde_json::json!({ "error": e.to_string() }),
        Err(_) => serde_json::json!({ "error": "no answer within 2 s" }),
    };
    let table = match crate::table::read_table(&*r.kv, &r.config.token).await {
        Ok(rows) => serde_json::json!(rows
            .iter()
            .map(|t| serde_json::json!({
                "id": t.last.id,
                "live": t.live,
                "store_node": t.last.store_node,
                "last_heartbeat_ms": t.last.at_ms,
            }))
            .collect::<Vec<_>>()),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    let mut body = serde_json::json!({
        "replica_id": r.config.replica_id,
        "replicas": table,
        "mode": format!("{:?}", r.config.mode).to_lowercase(),
        "runs_store_member": r.node.get().is_some(),
        "store_member": r.node.get().map(|n| {
            let s = n.status();
            serde_json::json!({
                "id": format!("{:x}", s.id),
                "leader": format!("{:x}", s.leader),
                "term": s.term,
                "learner": s.is_learner,
            })
        }),
        "members": members,
        "workers": r.workers.statuses(),
        "store_workers": r.node.get().map(|n| n.worker_statuses()).unwrap_or_default(),
    });
    for (name, section) in r.status_sections() {
        body[name] = section();
    }
    Json(body)
}

/// Triggers, pauses or resumes a worker of the process or of its store member.
async fn control(
    State(r): State<Arc<Replica>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let want = format!("Bearer {}", r.config.token);
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Constant time: the token is the cluster's shared secret.
    if blake3::hash(given.as_bytes()) != blake3::hash(want.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            "give the cluster token as Authorization: Bearer <token>\n".into(),
        );
    }
    let handle = r
        .workers
        .handle(&name)
        .or_else(|| r.node.get().and_then(|n| n.worker(&name)));
    let Some(h) = handle else {
        return (StatusCode::NOT_FOUND, format!("no worker {name:?}\n"));
    };
    match action.as_str() {
        "trigger" => match h.trigger_wait().await {
            Ok(()) => (StatusCode::OK, "ok\n".into()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "pause" => {
            h.pause();
            (StatusCode::OK, "paused\n".into())
        }
        "resume" => {
            h.resume();
            (StatusCode::OK, "resumed\n".into())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "the actions are trigger, pause and resume\n".into(),
        ),
    }
}
