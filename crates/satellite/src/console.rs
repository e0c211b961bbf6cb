//! The console beside the API: composed here for `satellite run api` and `run all`
//! when the configuration has a `[console]` section (crate `orbit-console`).

use crate::api::Serving;
use orbit_console::{ConsoleSection, SatelliteInfo};
use orbit_kv::Kv;
use orbit_satellite_model::accounting::Prices;
use std::path::Path;
use std::sync::Arc;

/// Serves the console from `section` over `kv`, pricing usage with `prices` and
/// showing wallets on `escrow` (when payments are on), making grants for `satellite`
/// (`section.satellite_url` overrides its URL); mail goes to `section.mail_dir`
/// (relative to `data_dir`) unless SMTP is configured.
pub async fn serve(
    section: &ConsoleSection,
    kv: Arc<dyn Kv>,
    data_dir: &Path,
    prices: Prices,
    escrow: Option<orbit_payments::Address>,
    satellite: Option<SatelliteInfo>,
) -> anyhow::Result<Serving> {
    let satellite = satellite.map(|s| SatelliteInfo {
        url: match section.satellite_url.as_str() {
            "" => s.url,
            u => u.to_string(),
        },
        key: s.key,
    });
    let mailer = section.mailer(data_dir)?;
    let listener = tokio::net::TcpListener::bind(&section.addr)
        .await
        .map_err(|e| anyhow::anyhow!("console address {}: {e}", section.addr))?;
    let url = format!("http://{}", listener.local_addr()?);
    let public = match section.public_url.as_str() {
        "" => url.clone(),
        p => p.to_string(),
    };
    let app = orbit_console::router(
        kv,
        orbit_console::Setup {
            rules: section.rules(),
            mailer,
            public_url: public,
            prices,
            escrow,
            satellite,
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "console failed");
        }
    });
    Ok(Serving::new(url, stop, task))
}
