//! `satellite accounting report`: the operator's payouts and invoices for a month.

use clap::{Subcommand, ValueEnum};
use orbit_accounting::{AccountingSection, AccountingService};
use std::path::PathBuf;
use std::sync::Arc;

/// Accounting commands.
#[derive(Subcommand)]
pub enum AccountingCommand {
    /// Storage-node payouts and project invoices (with what each project paid
    /// through its payment channels) for a month, exact whatever has been rolled up.
    Report {
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The month, `YYYY-MM` (UTC).
        #[arg(long)]
        period: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// The satellite's configuration, for its `[accounting]` rates and prices
        /// (defaults without it).
        #[arg(long, env = "ORBIT_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Report formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One row per payout and invoice.
    Csv,
    /// The whole report as one JSON document.
    Json,
}

/// Runs an accounting command.
pub async fn run(c: AccountingCommand) -> anyhow::Result<()> {
    let AccountingCommand::Report {
        store,
        period,
        format,
        config,
    } = c;
    let section: AccountingSection = match config {
        Some(path) => crate::run::load(&path)?
            .services
            .accounting
            .unwrap_or_default(),
        None => AccountingSection::default(),
    };
    let kv = Arc::new(store.connect().await?);
    let report = AccountingService::new(kv, section).report(&period).await?;
    match format {
        Format::Csv => print!("{}", report.csv()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
