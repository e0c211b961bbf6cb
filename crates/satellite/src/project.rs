//! `satellite project …`: the operator sets and reads a project's limits and
//! current usage.

use clap::Subcommand;
use orbit_satellite_model::accounting::{Limits, Usage};
use orbit_satellite_model::unix_now;
use std::sync::Arc;

/// Project commands.
#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Sets a project's limits; a limit not given is kept, `none` removes it.
    Limits {
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The project.
        #[arg(long)]
        project: String,
        /// Bytes stored (`10GB`, `1TiB`, `5000000`, `none`).
        #[arg(long, value_parser = limit)]
        storage: Option<Cap>,
        /// Bytes downloaded per month (same forms).
        #[arg(long, value_parser = limit)]
        egress: Option<Cap>,
        /// Segments stored (a count, or `none`).
        #[arg(long, value_parser = count)]
        segments: Option<Cap>,
    },
    /// Prints a project's limits and usage as JSON.
    Show {
        #[command(flatten)]
        store: crate::store_client::StoreClient,
        /// The project.
        #[arg(long)]
        project: String,
    },
}

/// A limit given on the command line: a number, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(Option<u64>);

/// A byte size: a number with an optional SI or binary unit, or `none`.
fn limit(s: &str) -> Result<Cap, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Cap(None));
    }
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a size"))?;
    let m: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    n.checked_mul(m)
        .map(|v| Cap(Some(v)))
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn count(s: &str) -> Result<Cap, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Cap(None));
    }
    s.parse()
        .map(|v| Cap(Some(v)))
        .map_err(|_| format!("{s:?}: not a count"))
}

/// Runs a project command.
pub async fn run(c: ProjectCommand) -> anyhow::Result<()> {
    match c {
        ProjectCommand::Limits {
            store,
            project,
            storage,
            egress,
            segments,
        } => {
            let usage = Usage::new(Arc::new(store.connect().await?));
            let mut l: Limits = usage.project(&project).await?.limits;
            if let Some(Cap(v)) = storage {
                l.storage = v;
            }
            if let Some(Cap(v)) = egress {
                l.egress = v;
            }
            if let Some(Cap(v)) = segments {
                l.segments = v;
            }
            usage.set_limits(&project, l, unix_now()).await?;
            println!("{}", serde_json::to_string(&l)?);
        }
        ProjectCommand::Show { store, project } => {
            let kv = Arc::new(store.connect().await?);
            let out = satellite::inspectors::project(kv, &project).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_none() {
        assert_eq!(limit("10GB"), Ok(Cap(Some(10_000_000_000))));
        assert_eq!(limit("1TiB"), Ok(Cap(Some(1 << 40))));
        assert_eq!(limit("5000"), Ok(Cap(Some(5000))));
        assert_eq!(limit("none"), Ok(Cap(None)));
        assert!(limit("5 parsecs").is_err());
        assert!(limit("99999999999TB").is_err());
        assert_eq!(count("7"), Ok(Cap(Some(7))));
        assert!(count("7k").is_err());
    }
}
