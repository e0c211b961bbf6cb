//! `satellite`: the orbit satellite's command line. Thin: parsing and composition.

mod apikey;
mod escrow;
mod inspect;
mod project;
mod report;
mod run;
mod sim;
mod storage;
mod store_client;
mod trash;

use clap::{Parser, Subcommand};

/// mimalloc: the store's state lives in memory, and mimalloc hands pages freed by a
/// compaction back to the system where glibc's allocator keeps them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// orbit satellite.
#[derive(Parser)]
#[command(name = "satellite", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The satellite's consistent store: run a member, inspect a cluster.
    Storage {
        #[command(subcommand)]
        command: storage::StorageCommand,
    },
    /// API keys of the storage API (operator).
    Apikey {
        #[command(subcommand)]
        command: apikey::ApiKeyCommand,
    },
    /// The payments escrow ledger: deposits, claims, inspection (operator).
    Escrow {
        #[command(subcommand)]
        command: escrow::EscrowCommand,
    },
    /// Look at what the satellite knows: an object's segments and their health.
    Inspect {
        #[command(subcommand)]
        command: inspect::InspectCommand,
    },
    /// Payouts and invoices (operator).
    Accounting {
        #[command(subcommand)]
        command: report::AccountingCommand,
    },
    /// Projects' limits and usage (operator).
    Project {
        #[command(subcommand)]
        command: project::ProjectCommand,
    },
    /// Garbage collection's trash on the nodes (operator).
    Trash {
        #[command(subcommand)]
        command: trash::TrashCommand,
    },
    /// Run one of the satellite's processes.
    Run {
        #[command(subcommand)]
        process: run::Process,
    },
    /// A whole network on this machine, each part its own process (development).
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
    /// The configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration: every default filled in, the token redacted.
    Show {
        /// The configuration file.
        #[arg(long, env = "ORBIT_CONFIG")]
        config: std::path::PathBuf,
    },
}

/// Waits for Ctrl-C or SIGTERM: how a foreground process is asked to stop.
pub(crate) async fn until_stopped() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORBIT_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Storage { command } => storage::run(command).await,
        Command::Apikey { command } => apikey::run(command).await,
        Command::Escrow { command } => escrow::run(command).await,
        Command::Inspect { command } => inspect::run(command).await,
        Command::Trash { command } => trash::run(command).await,
        Command::Accounting { command } => report::run(command).await,
        Command::Project { command } => project::run(command).await,
        Command::Run { process } => run::run(process).await,
        Command::Sim { command } => sim::run(command).await,
        Command::Config {
            command: ConfigCommand::Show { config },
        } => {
            print!("{}", run::load(&config)?.show()?);
            Ok(())
        }
    }
}
