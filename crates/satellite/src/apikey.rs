//! `satellite apikey …`: the operator creates and revokes API keys (on the store).

use clap::Subcommand;
use orbit_kv::RemoteKv;
use orbit_satellite_model::apikeys::{ApiKey, ApiKeys};
use std::sync::Arc;

/// API key commands.
#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for a project; prints it.
    Create {
        /// Client URLs of the store (comma-separated).
        #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// The project it belongs to.
        #[arg(long)]
        project: String,
    },
    /// Revoke a key, and every key restricted from it, on every replica.
    Revoke {
        /// Client URLs of the store (comma-separated).
        #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// The key.
        #[arg(long)]
        key: String,
    },
}

/// Runs an API key command.
pub async fn run(c: ApiKeyCommand) -> anyhow::Result<()> {
    match c {
        ApiKeyCommand::Create { endpoints, project } => {
            let keys = ApiKeys::new(Arc::new(RemoteKv::connect(&endpoints).await?));
            println!("{}", keys.create(&project).await?.serialize());
        }
        ApiKeyCommand::Revoke { endpoints, key } => {
            let keys = ApiKeys::new(Arc::new(RemoteKv::connect(&endpoints).await?));
            keys.revoke(&ApiKey::parse(&key)?, orbit_satellite_model::unix_now())
                .await?;
            println!("revoked");
        }
    }
    Ok(())
}
