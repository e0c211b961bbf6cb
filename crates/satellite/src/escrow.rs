//! `satellite escrow …`: the operator's side of the payments ledger, working on the
//! store directly (the operator has the store's client URLs, users do not).

use clap::{Args, Subcommand};
use orbit_kv::RemoteKv;
use orbit_payments::{Address, Escrow};
use std::sync::Arc;

/// Operator commands on the escrow ledger.
#[derive(Subcommand)]
pub enum EscrowCommand {
    /// Credit an account with money received off the ledger.
    Deposit {
        #[command(flatten)]
        at: LedgerArgs,
        /// The account credited.
        #[arg(long)]
        account: Address,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Run every claim to its end: finish claims a previous run left, then claim what
    /// every channel has authorized. Safe to repeat; never credits twice.
    Claims {
        #[command(flatten)]
        at: LedgerArgs,
    },
    /// Show an account, or every channel.
    Show {
        #[command(flatten)]
        at: LedgerArgs,
        /// The account to show; without it, every channel.
        #[arg(long)]
        account: Option<Address>,
    },
}

/// Which ledger.
#[derive(Args)]
pub struct LedgerArgs {
    /// Client URLs of the store (comma-separated).
    #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The escrow address (the satellite's `[payments] escrow`).
    #[arg(long)]
    escrow: Address,
}

async fn ledger(at: &LedgerArgs) -> anyhow::Result<Escrow> {
    let kv = RemoteKv::connect(&at.endpoints).await?;
    Ok(Escrow::new(Arc::new(kv), at.escrow))
}

/// Runs an escrow command.
pub async fn run(c: EscrowCommand) -> anyhow::Result<()> {
    match c {
        EscrowCommand::Deposit {
            at,
            account,
            amount,
        } => {
            let a = ledger(&at).await?.deposit(&account, amount).await?;
            println!("{account}: balance {}", a.balance);
        }
        EscrowCommand::Claims { at } => {
            let e = ledger(&at).await?;
            let credited = e.claim_all().await?;
            println!("credited {credited}");
        }
        EscrowCommand::Show { at, account } => {
            let e = ledger(&at).await?;
            match account {
                Some(a) => {
                    let acct = e.account(&a).await?;
                    println!("{a}: balance {} op nonce {}", acct.balance, acct.op_nonce);
                }
                None => {
                    println!("CHANNEL SENDER                                     VALUE      NONCE AUTHORIZED EXPIRES");
                    for c in e.channels().await? {
                        println!(
                            "{:<7} {} {:<10} {:<5} {:<10} {}",
                            c.id, c.sender, c.value, c.nonce, c.authorized, c.expiration
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
