//! `satellite apikey …`: the operator creates and revokes API keys (on the store).

use clap::Subcommand;
use orbit_satellite_model::apikeys::{ApiKey, ApiKeys};
use std::sync::Arc;

/// API key commands.
#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for a project; prints it.
    Create {
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The project it belongs to.
        #[arg(long)]
        project: String,
    },
    /// Revoke a key, and every key restricted from it, on every replica.
    Revoke {
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The key.
        #[arg(long)]
        key: String,
    },
}

/// Runs an API key command.
pub async fn run(c: ApiKeyCommand) -> anyhow::Result<()> {
    match c {
        ApiKeyCommand::Create { store, project } => {
            let keys = ApiKeys::new(Arc::new(store.connect().await?));
            println!("{}", keys.create(&project).await?.serialize());
        }
        ApiKeyCommand::Revoke { store, key } => {
            let keys = ApiKeys::new(Arc::new(store.connect().await?));
            keys.revoke(&ApiKey::parse(&key)?, orbit_satellite_model::unix_now())
                .await?;
            println!("revoked");
        }
    }
    Ok(())
}
