//! Orders a node has served and not yet settled with their satellite: an append-only
//! file of (order limit, order) pairs, one per finished transfer.

pub use orbit_protocol::Served;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The unsettled orders of one node.
pub struct Orders {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Orders {
    /// Opens (creating) the file at `path`.
    pub fn open(path: &Path) -> std::io::Result<Orders> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Orders {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Records a served transfer.
    pub fn record(&self, s: &Served) -> std::io::Result<()> {
        let body = bincode::serialize(s).expect("orders serialize");
        let mut rec = (body.len() as u32).to_be_bytes().to_vec();
        rec.extend(body);
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&rec)?;
        f.sync_data()
    }

    /// Drops the transfers `done` picks (settled, or refused for good), rewriting
    /// the file atomically.
    pub fn forget(&self, done: impl Fn(&Served) -> bool) -> std::io::Result<()> {
        // Under the lock throughout: a transfer recorded meanwhile is not lost.
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let keep: Vec<Served> = read_all(&self.path)?
            .into_iter()
            .filter(|s| !done(s))
            .collect();
        let tmp = self.path.with_extension("tmp");
        let mut out = std::fs::File::create(&tmp)?;
        for s in &keep {
            let body = bincode::serialize(s).expect("orders serialize");
            out.write_all(&(body.len() as u32).to_be_bytes())?;
            out.write_all(&body)?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }

    /// Every recorded transfer not yet settled (a torn last record is skipped).
    pub fn unsettled(&self) -> std::io::Result<Vec<Served>> {
        let _g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        read_all(&self.path)
    }
}

fn read_all(path: &Path) -> std::io::Result<Vec<Served>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        if let Ok(s) = bincode::deserialize(body) {
            out.push(s);
        }
        at += 4 + len;
    }
    Ok(out)
}
