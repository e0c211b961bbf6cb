//! The `uplink` command line, callable in-process (tests) as well as from `main`.

use crate::keyfile;
use clap::{Args, Parser, Subcommand};
use orbit_payments::{Address, Payer};
use std::io::Write;
use std::path::PathBuf;

/// orbit uplink.
#[derive(Parser)]
#[command(name = "uplink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Your secret key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Your account on a satellite's escrow: balance and op nonce.
    Account {
        #[command(flatten)]
        at: Satellite,
    },
    /// Take funds out of your balance (paid out by the satellite's operator).
    Withdraw {
        #[command(flatten)]
        at: Satellite,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Payment channels to a satellite.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a new key (never overwrites one).
    New {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Print the key's address.
    Show {
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(Args)]
struct KeyArg {
    /// The secret key file (hex, mode 0600).
    #[arg(long, env = "ORBIT_KEY", default_value = "uplink.key")]
    key: PathBuf,
}

#[derive(Args)]
struct Satellite {
    /// The satellite's API URL.
    #[arg(long, env = "ORBIT_SATELLITE", default_value = "http://127.0.0.1:7778")]
    satellite: String,
    #[command(flatten)]
    key: KeyArg,
}

impl Satellite {
    async fn payer(&self) -> anyhow::Result<Payer> {
        let wallet = keyfile::load(&self.key.key)?;
        Ok(Payer::connect(&self.satellite, wallet).await?)
    }
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Open a channel from your balance to the satellite.
    Open {
        #[command(flatten)]
        at: Satellite,
        /// Funds to lock in it.
        #[arg(long)]
        value: u64,
        /// Seconds until it expires.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        expires_in: u64,
        /// Who signs payments (default: your key).
        #[arg(long)]
        signer: Option<Address>,
    },
    /// Add funds to a channel.
    Fund {
        #[command(flatten)]
        at: Satellite,
        /// Channel id.
        #[arg(long)]
        channel: u64,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Move a channel's expiration later.
    Extend {
        #[command(flatten)]
        at: Satellite,
        /// Channel id.
        #[arg(long)]
        channel: u64,
        /// Seconds from now until it expires.
        #[arg(long)]
        expires_in: u64,
    },
    /// A channel's state.
    Status {
        #[command(flatten)]
        at: Satellite,
        /// Channel id.
        #[arg(long)]
        channel: u64,
    },
    /// After expiration: take back what the channel holds beyond what you authorized.
    Reclaim {
        #[command(flatten)]
        at: Satellite,
        /// Channel id.
        #[arg(long)]
        channel: u64,
    },
    /// Pay for requests of one kind.
    Pay {
        #[command(flatten)]
        at: Satellite,
        /// Channel id.
        #[arg(long)]
        channel: u64,
        /// Request kind (see the satellite's prices).
        #[arg(long)]
        kind: String,
        /// How many requests.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

fn now() -> u64 {
    orbit_payments::api::unix_now()
}

/// Runs the command line `args` (the program name first), writing to `out`.
pub async fn run<I, T>(args: I, out: &mut dyn Write) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args)?.command {
        Command::Key { command } => match command {
            KeyCommand::New { key } => {
                let w = keyfile::create(&key.key)?;
                writeln!(out, "{} (key in {})", w.address(), key.key.display())?;
            }
            KeyCommand::Show { key } => writeln!(out, "{}", keyfile::load(&key.key)?.address())?,
        },
        Command::Account { at } => {
            let p = at.payer().await?;
            let a = p.account(&p.address()).await?;
            show_account(out, &p, &a)?;
        }
        Command::Withdraw { at, amount } => {
            let p = at.payer().await?;
            let (a, _) = p.apply(orbit_payments::Op::Withdraw { amount }).await?;
            show_account(out, &p, &a)?;
        }
        Command::Channel { command } => channel(command, out).await?,
    }
    Ok(())
}

fn show_account(
    out: &mut dyn Write,
    p: &Payer,
    a: &orbit_payments::Account,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: balance {} op nonce {}",
        p.address(),
        a.balance,
        a.op_nonce
    )
}

async fn channel(c: ChannelCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let show = |out: &mut dyn Write, c: &orbit_payments::Channel| {
        writeln!(
            out,
            "channel {}: value {} nonce {} authorized {} expires {} (in {} s)",
            c.id,
            c.value,
            c.nonce,
            c.authorized,
            c.expiration,
            c.expiration.saturating_sub(now())
        )
    };
    match c {
        ChannelCommand::Open {
            at,
            value,
            expires_in,
            signer,
        } => show(
            out,
            &at.payer()
                .await?
                .open(value, now() + expires_in, signer)
                .await?,
        )?,
        ChannelCommand::Fund {
            at,
            channel,
            amount,
        } => show(out, &at.payer().await?.add_funds(channel, amount).await?)?,
        ChannelCommand::Extend {
            at,
            channel,
            expires_in,
        } => show(
            out,
            &at.payer()
                .await?
                .extend(channel, now() + expires_in)
                .await?,
        )?,
        ChannelCommand::Status { at, channel } => {
            let s = at.payer().await?.channel_state(channel).await?;
            show(out, &s.channel)?;
            if let Some((amount, _)) = s.old_nonce {
                writeln!(
                    out,
                    "  claim of nonce {} in progress: {amount}",
                    s.channel.nonce - 1
                )?;
            }
        }
        ChannelCommand::Reclaim { at, channel } => {
            let p = at.payer().await?;
            let (a, ch) = p
                .apply(orbit_payments::Op::ClaimTimeout {
                    channel_id: channel,
                })
                .await?;
            if let Some(ch) = ch {
                show(out, &ch)?;
            }
            writeln!(out, "balance {}", a.balance)?;
        }
        ChannelCommand::Pay {
            at,
            channel,
            kind,
            count,
        } => {
            let p = at.payer().await?;
            let mut last = None;
            for _ in 0..count {
                last = Some(p.pay(channel, &kind).await?);
            }
            if let Some(c) = last {
                show(out, &c)?;
            }
        }
    }
    Ok(())
}
