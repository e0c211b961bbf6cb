//! The `uplink` command line, callable in-process (tests) as well as from `main`.

use crate::keyfile;
use anyhow::Context;
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
    /// Access grants: satellite, API key and encryption key in one string.
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Make a bucket: `uplink mb orbit://bucket`.
    Mb {
        /// The bucket.
        bucket: String,
        #[command(flatten)]
        access: AccessArg,
    },
    /// Remove an empty bucket: `uplink rb orbit://bucket`.
    Rb {
        /// The bucket.
        bucket: String,
        #[command(flatten)]
        access: AccessArg,
    },
    /// List buckets, or objects: `uplink ls [orbit://bucket[/prefix]]`.
    Ls {
        /// What to list.
        path: Option<String>,
        #[command(flatten)]
        access: AccessArg,
    },
    /// Copy a file to an object or an object to a file.
    Cp {
        /// Source: a local path or orbit://bucket/key.
        src: String,
        /// Destination: orbit://bucket/key or a local path.
        dst: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// When an upload expires: a duration from now (`90s`, `30m`, `12h`, `7d`) or
        /// a unix time. Expired objects are gone at once; nodes delete their pieces.
        #[arg(long, value_parser = parse_expires)]
        expires: Option<u64>,
        #[command(flatten)]
        access: AccessArg,
    },
    /// Remove an object: `uplink rm orbit://bucket/key`.
    Rm {
        /// The object.
        path: String,
        #[command(flatten)]
        access: AccessArg,
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

#[derive(Subcommand)]
enum AccessCommand {
    /// Make a grant from an API key and a passphrase; prints it.
    Create {
        /// The satellite's API URL.
        #[arg(long, env = "ORBIT_SATELLITE")]
        satellite: String,
        /// The satellite's public key (hex).
        #[arg(long)]
        satellite_key: String,
        /// The API key.
        #[arg(long, env = "ORBIT_API_KEY")]
        api_key: String,
        /// The encryption passphrase (read from ORBIT_PASSPHRASE if not given).
        #[arg(long, env = "ORBIT_PASSPHRASE")]
        passphrase: String,
    },
    /// Narrow a grant (no satellite needed): prints a grant whose API key carries the
    /// extra caveats, in this order: read-only, bucket and prefix, expiry.
    Restrict {
        /// The grant to narrow.
        #[arg(long, env = "ORBIT_ACCESS")]
        access: String,
        /// No uploads or deletes.
        #[arg(long)]
        read_only: bool,
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Only object keys starting with this (plain; it is encrypted here).
        #[arg(long, requires = "bucket")]
        prefix: Option<String>,
        /// Void after this Unix time (s).
        #[arg(long)]
        not_after: Option<u64>,
    },
}

#[derive(Args)]
struct AccessArg {
    /// The access grant (see `uplink access create`).
    #[arg(long, env = "ORBIT_ACCESS")]
    access: String,
    /// Pay for paid requests on this payment channel (see `uplink channel open`).
    #[arg(long, env = "ORBIT_PAY_CHANNEL")]
    pay_channel: Option<u64>,
    /// The key that signs payments.
    #[arg(long, env = "ORBIT_KEY", default_value = "uplink.key")]
    key: PathBuf,
}

impl AccessArg {
    async fn project(&self) -> anyhow::Result<crate::project::Project> {
        let access = crate::project::Access::parse(&self.access)?;
        let (url, satellite_key) = (access.satellite.clone(), access.satellite_key);
        let p = crate::project::Project::open(access, crate::project::Options::default()).await?;
        Ok(match self.pay_channel {
            Some(ch) => {
                let payer = Payer::connect(&url, &satellite_key, keyfile::load(&self.key)?).await?;
                p.with_payments(std::sync::Arc::new(payer), ch)
            }
            None => p,
        })
    }
}

/// Splits `orbit://bucket/key` into bucket and key (key may be empty).
fn object_path(p: &str) -> Option<(String, String)> {
    let rest = p.strip_prefix("orbit://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

fn bar(len: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("a valid template"),
    );
    b
}

async fn objects(c: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let need = |p: &str| {
        object_path(p).ok_or_else(|| anyhow::anyhow!("{p:?} is not orbit://bucket[/key]"))
    };
    match c {
        Command::Access {
            command:
                AccessCommand::Create {
                    satellite,
                    satellite_key,
                    api_key,
                    passphrase,
                },
        } => {
            let key = orbit_identity::PublicKey::parse(&satellite_key)?;
            let a = crate::project::Access::new(&satellite, key, &api_key, &passphrase)?;
            writeln!(out, "{}", a.serialize())?;
        }
        Command::Access {
            command:
                AccessCommand::Restrict {
                    access,
                    read_only,
                    bucket,
                    prefix,
                    not_after,
                },
        } => {
            let caveats =
                orbit_protocol::apikey::Caveat::restrictions(read_only, bucket, prefix, not_after)
                    .map_err(anyhow::Error::msg)?;
            let a = crate::project::Access::parse(&access)?.restrict(caveats)?;
            writeln!(out, "{}", a.serialize())?;
        }
        Command::Mb { bucket, access } => {
            let (b, _) = need(&bucket)?;
            access.project().await?.create_bucket(&b).await?;
            writeln!(out, "bucket {b} created")?;
        }
        Command::Rb { bucket, access } => {
            let (b, _) = need(&bucket)?;
            access.project().await?.delete_bucket(&b).await?;
            writeln!(out, "bucket {b} removed")?;
        }
        Command::Ls { path, access } => {
            let p = access.project().await?;
            match path {
                None => {
                    for b in p.list_buckets().await? {
                        writeln!(out, "BKT orbit://{b}")?;
                    }
                }
                Some(path) => {
                    let (b, prefix) = need(&path)?;
                    for o in p.list(&b, &prefix).await? {
                        writeln!(out, "OBJ {:>12} {}", o.size, o.key)?;
                    }
                }
            }
        }
        Command::Cp {
            src,
            dst,
            quiet,
            expires,
            access,
        } => {
            let p = access.project().await?;
            match (object_path(&src), object_path(&dst)) {
                (None, Some((b, k))) => {
                    let k = if k.is_empty() || k.ends_with('/') {
                        let name = std::path::Path::new(&src)
                            .file_name()
                            .ok_or_else(|| anyhow::anyhow!("{src} has no file name"))?;
                        format!("{k}{}", name.to_string_lossy())
                    } else {
                        k
                    };
                    let file = tokio::fs::File::open(&src)
                        .await
                        .with_context(|| format!("reading {src}"))?;
                    let len = file
                        .metadata()
                        .await
                        .with_context(|| format!("reading {src}"))?
                        .len();
                    let pb = bar(len, quiet);
                    let n = p
                        .upload_expiring(
                            &b,
                            &k,
                            tokio::io::BufReader::new(file),
                            &|d| pb.set_position(d),
                            expires.unwrap_or(0),
                        )
                        .await?;
                    pb.finish_and_clear();
                    writeln!(out, "uploaded {n} bytes to orbit://{b}/{k}")?;
                }
                (Some((b, k)), None) => {
                    let listed = p.list(&b, &k).await?;
                    let len = listed.iter().find(|o| o.key == k).map_or(0, |o| o.size);
                    let tmp = format!("{dst}.part");
                    let file = tokio::fs::File::create(&tmp)
                        .await
                        .with_context(|| format!("writing {tmp}"))?;
                    let pb = bar(len, quiet);
                    let n = p
                        .download(&b, &k, tokio::io::BufWriter::new(file), &|d| {
                            pb.set_position(d)
                        })
                        .await;
                    pb.finish_and_clear();
                    match n {
                        Ok(n) => {
                            // Only a complete, verified download takes the name.
                            tokio::fs::rename(&tmp, &dst).await?;
                            writeln!(out, "downloaded {n} bytes to {dst}")?;
                        }
                        Err(e) => {
                            let _ = tokio::fs::remove_file(&tmp).await;
                            return Err(e.into());
                        }
                    }
                }
                _ => anyhow::bail!("copy a local file to orbit://bucket/key, or the other way"),
            }
        }
        Command::Rm { path, access } => {
            let (b, k) = need(&path)?;
            access.project().await?.delete(&b, &k).await?;
            writeln!(out, "removed orbit://{b}/{k}")?;
        }
        _ => unreachable!("only object commands come here"),
    }
    Ok(())
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
    #[arg(
        long,
        env = "ORBIT_SATELLITE",
        default_value = "https://127.0.0.1:7778"
    )]
    satellite: String,
    /// The satellite's public key (hex): the API must prove it holds it.
    #[arg(long, env = "ORBIT_SATELLITE_KEY")]
    satellite_key: String,
    #[command(flatten)]
    key: KeyArg,
}

impl Satellite {
    async fn payer(&self) -> anyhow::Result<Payer> {
        let wallet = keyfile::load(&self.key.key)?;
        let key = orbit_identity::PublicKey::parse(&self.satellite_key)?;
        Ok(Payer::connect(&self.satellite, &key, wallet).await?)
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
        other => objects(other, out).await?,
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

/// `--expires`: a duration from now (`90s`, `30m`, `12h`, `7d`) or a unix time.
fn parse_expires(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: a duration (90s, 30m, 12h, 7d) or a unix time"))?;
    let scale = match unit {
        "" => return Ok(n),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: units are s, m, h and d")),
    };
    Ok(now() + n * scale)
}

#[cfg(test)]
mod expires_tests {
    use super::*;

    #[test]
    fn expiries_read_as_durations_or_unix_times() {
        let t = now();
        assert!((t + 90..=t + 91).contains(&parse_expires("90s").unwrap()));
        assert!((t + 7 * 86_400..=t + 7 * 86_400 + 1).contains(&parse_expires("7d").unwrap()));
        assert_eq!(parse_expires("1900000000").unwrap(), 1_900_000_000);
        assert!(parse_expires("soon").is_err());
        assert!(parse_expires("5y").is_err());
    }
}
