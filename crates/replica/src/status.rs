//! The replica's status and health endpoint (HTTP).
//!
//! `GET /health`: 200 when the replica can do a linearizable read of the store within
//! two seconds, 503 otherwise — the check a load balancer wants.
//! `GET /status`: JSON with the replica's id, mode, whether it runs a store member,
//! and the store's members as this replica sees them.

use crate::Replica;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
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
        .with_state(replica);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "status endpoint failed");
        }
    })
}

async fn health(State(r): State<Arc<Replica>>) -> (StatusCode, String) {
    let read = r.kv.range(RangeRequest::key("health"));
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
    Json(serde_json::json!({
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
    }))
}
