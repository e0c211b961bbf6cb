//! `satellite escrow …`: the operator's side of the payments ledger, working on the
//! store directly (the operator has the store's client URLs, users do not).

use clap::{Args, Subcommand};
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
    /// Claims: the recipient collects what channels have authorized.
    Claim {
        #[command(subcommand)]
        command: ClaimCommand,
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

/// Claim steps; each is one transaction, so a crash between them leaves a state the
/// next run completes, never one counted twice.
#[derive(Subcommand)]
pub enum ClaimCommand {
    /// Start a claim: the channel's authorized amount becomes a pending claim and its
    /// nonce advances.
    Start {
        #[command(flatten)]
        at: LedgerArgs,
        /// Channel id.
        #[arg(long)]
        channel: u64,
    },
    /// List pending claims.
    List {
        #[command(flatten)]
        at: LedgerArgs,
    },
    /// Finish a claim: the recipient is credited and the claim removed.
    Finish {
        #[command(flatten)]
        at: LedgerArgs,
        /// Channel id.
        #[arg(long)]
        channel: u64,
        /// The claimed nonce.
        #[arg(long)]
        nonce: u64,
    },
    /// Finish every pending claim, then claim every channel's authorized amount.
    All {
        #[command(flatten)]
        at: LedgerArgs,
    },
}

/// Which ledger.
#[derive(Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    store: crate::store_client::StoreClient,
    /// The escrow address (the satellite's `[payments] escrow`).
    #[arg(long)]
    escrow: Address,
}

async fn ledger(at: &LedgerArgs) -> anyhow::Result<Escrow> {
    let kv = at.store.connect().await?;
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
        EscrowCommand::Claim { command } => {
            match command {
                ClaimCommand::Start { at, channel } => {
                    match ledger(&at).await?.start_claim(channel).await? {
                        Some(c) => println!(
                            "claim started: channel {} nonce {} amount {}",
                            c.channel_id, c.nonce, c.amount
                        ),
                        None => println!("nothing authorized on channel {channel}"),
                    }
                }
                ClaimCommand::List { at } => {
                    println!("CHANNEL NONCE AMOUNT     RECIPIENT");
                    for c in ledger(&at).await?.pending_claims().await? {
                        println!(
                            "{:<7} {:<5} {:<10} {}",
                            c.channel_id, c.nonce, c.amount, c.recipient
                        );
                    }
                }
                ClaimCommand::Finish { at, channel, nonce } => {
                    if ledger(&at).await?.finish_claim(channel, nonce).await? {
                        println!("claim finished: channel {channel} nonce {nonce}");
                    } else {
                        println!("no pending claim for channel {channel} nonce {nonce} (already finished?)");
                    }
                }
                ClaimCommand::All { at } => {
                    let credited = ledger(&at).await?.claim_all().await?;
                    println!("credited {credited}");
                }
            }
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
