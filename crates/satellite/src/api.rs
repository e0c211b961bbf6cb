//! The `api` process: the storage network API (metainfo, nodes, orders), the payments
//! API, and their background work — composed here and only here, for
//! `satellite run api` and testplanet alike.

use crate::config::Services;
use anyhow::Context;
use orbit_identity::Identity;
use orbit_kv::Kv;
use orbit_payments::{Escrow, PaymentsService};
use orbit_satellite_api::service::{Charges, SatelliteApi};
use orbit_satellite_model::unix_now;
use orbit_worker::{Group, Interval};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The `[api]` section: where the public gRPC API listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub addr: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            addr: "127.0.0.1:7778".into(),
        }
    }
}

/// Largest gRPC message of the metainfo service (a segment's limits and receipts).
const MAX_MESSAGE: usize = 16 << 20;

/// A built `api` process, ready to serve.
pub struct ApiProcess {
    /// The storage API, when `[storage]` is configured.
    pub storage: Option<SatelliteApi>,
    payments: Option<orbit_payments::api::pb::payments_server::PaymentsServer<PaymentsService>>,
    section: ApiSection,
    /// The satellite's identity: its key is the API's TLS certificate key.
    identity: Identity,
}

/// The API serving; stop it with [`Serving::stop`].
pub struct Serving {
    /// Where it listens.
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// A server listening at `url` that stops when `stop` fires.
    pub(crate) fn new(
        url: String,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Serving {
        Serving { url, stop, task }
    }

    /// Stops taking requests and waits (up to `deadline`) for those in flight.
    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl ApiProcess {
    /// Builds the process from the service sections over the store `kv`, as the
    /// satellite `identity`; its background workers join `workers`. Records written
    /// by older satellites are migrated first.
    pub async fn build(
        services: &Services,
        kv: Arc<dyn Kv>,
        identity: Identity,
        workers: &Group,
    ) -> anyhow::Result<ApiProcess> {
        let payments = services.payments.clone();
        let storage = match &services.storage {
            Some(section) => {
                let m = orbit_satellite_model::schema::migrate(&*kv)
                    .await
                    .context("migrating the satellite's records")?;
                if m.rewritten > 0 {
                    tracing::info!(
                        records = m.rewritten,
                        from = m.from,
                        to = orbit_satellite_model::schema::SCHEMA,
                        "migrated the satellite's records"
                    );
                }
                let mut api = SatelliteApi::new(kv.clone(), identity.clone(), section);
                // Paid storage requests are validated on the same ledger as the
                // payments API.
                api.charges = payments.as_ref().map(|p| Charges {
                    escrow: Escrow::new(kv.clone(), p.escrow),
                    prices: p.prices.clone(),
                    expiry_threshold_s: p.expiry_threshold_s,
                });
                spawn_storage_workers(&api, section, workers);
                Some(api)
            }
            None => None,
        };
        let payments = payments.map(|p| {
            let escrow = Escrow::new(kv.clone(), p.escrow);
            PaymentsService::new(escrow, p).server()
        });
        Ok(ApiProcess {
            storage,
            payments,
            section: services.api.clone(),
            identity,
        })
    }

    /// Whether there is anything to serve.
    pub fn serves(&self) -> bool {
        self.storage.is_some() || self.payments.is_some()
    }

    /// Binds the configured address and serves.
    pub async fn serve(&self) -> anyhow::Result<Serving> {
        let listener = tokio::net::TcpListener::bind(&self.section.addr)
            .await
            .with_context(|| format!("API address {}", self.section.addr))?;
        let url = format!("https://{}", listener.local_addr()?);
        // Uplinks and nodes pin the satellite key (the access grant's, the node's
        // trusted-satellite entry): only the holder of the identity can answer.
        let builder = tonic::transport::Server::builder()
            .tls_config(orbit_tls::identity_server(&self.identity)?)
            .context("API TLS")?;
        let storage = self.storage.as_ref().map(|s| {
            (
                s.metainfo_server()
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
                s.nodes_server(),
            )
        });
        let (meta, nodes) = storage.unzip();
        let payments = self.payments.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = builder
                .layer(orbit_telemetry::RpcLayer)
                .add_optional_service(payments)
                .add_optional_service(meta)
                .add_optional_service(nodes)
                .serve_with_incoming_shutdown(orbit_store::no_delay(listener), async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "API server failed");
            }
        });
        Ok(Serving { url, stop, task })
    }
}

/// The storage API's background work. Each is an idempotent store operation by
/// compare, so every replica may run it.
fn spawn_storage_workers(
    api: &SatelliteApi,
    section: &orbit_satellite_api::StorageSection,
    workers: &Group,
) {
    let nodes = api.nodes.clone();
    let refresh = Interval::every(Duration::from_secs(section.selection_refresh_s.max(1)));
    workers.spawn("node-selection-cache", refresh.starting_now(), move || {
        let nodes = nodes.clone();
        orbit_worker::job(async move {
            nodes.refresh().await.map_err(|e| e.to_string())?;
            Ok(())
        })
    });
    let every = Interval::every(Duration::from_secs(section.sweep_interval_s.max(1)));
    let orders = api.orders.clone();
    workers.spawn("expired-serials", every, move || {
        let orders = orders.clone();
        orbit_worker::job(async move {
            let n = orders
                .remove_expired(unix_now())
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(removed = n, "expired serials swept");
            Ok(())
        })
    });
    let meta = api.meta.clone();
    let max_age = section.abandoned_upload_s;
    workers.spawn("abandoned-uploads", every, move || {
        let meta = meta.clone();
        orbit_worker::job(async move {
            let n = meta
                .remove_abandoned(unix_now(), max_age)
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(removed = n, "abandoned uploads swept");
            Ok(())
        })
    });
    let meta = api.meta.clone();
    workers.spawn("expired-objects", every, move || {
        let meta = meta.clone();
        orbit_worker::job(async move {
            let n = meta
                .remove_expired(unix_now())
                .await
                .map_err(|e| e.to_string())?;
            if n > 0 {
                tracing::info!(removed = n, "expired objects swept");
            }
            Ok(())
        })
    });
}
