//! `satellite trash restore`: the operator brings back what garbage collection moved
//! to a node's trash (after a mistaken deletion, say), with an order the satellite
//! signs.

use anyhow::Context;
use clap::Subcommand;
use orbit_identity::{Identity, NodeId};
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};
use orbit_satellite_model::unix_now;
use std::path::PathBuf;
use std::sync::Arc;

/// Trash commands.
#[derive(Subcommand)]
pub enum TrashCommand {
    /// Restores the satellite's pieces from the trash of one node (or every node).
    Restore {
        /// The node (its id); every node in the table when absent.
        #[arg(long)]
        node: Option<NodeId>,
        /// The store, for the nodes' addresses.
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The satellite's identity file (what `[storage] identity` names).
        #[arg(long)]
        identity: PathBuf,
    },
}

/// Runs a trash command.
pub async fn run(c: TrashCommand) -> anyhow::Result<()> {
    let TrashCommand::Restore {
        node,
        store,
        identity,
    } = c;
    let sat = Identity::load(&identity)
        .with_context(|| format!("satellite identity {}", identity.display()))?;
    let kv: Arc<dyn orbit_kv::Kv> = Arc::new(store.connect().await?);
    let table = Nodes::new(kv, SelectionConfig::default()).all().await?;
    let targets: Vec<_> = table
        .into_iter()
        .filter(|n| node.is_none_or(|id| id == n.id))
        .collect();
    anyhow::ensure!(!targets.is_empty(), "no such node in the node table");
    let mut failed = 0;
    for n in targets {
        let order = orbit_protocol::RestoreTrash::sign(&sat, n.id, unix_now());
        match orbit_protocol::client::restore_trash(&n.address, &n.id, &order).await {
            Ok(k) => println!("{} ({}): {k} pieces restored", n.id, n.address),
            Err(e) => {
                failed += 1;
                eprintln!("{} ({}): {e}", n.id, n.address);
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} node(s) did not restore");
    Ok(())
}
