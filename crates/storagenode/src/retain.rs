//! Garbage-collection filters a node received, kept on disk until applied.
//!
//! One file per satellite, `retain/<satellite id>.filter`: the length of the signed
//! header, the header, then the filter's bytes. It is written to a temporary file,
//! fsynced and renamed into place before the node acknowledges the filter, so a
//! filter acknowledged is never lost; only a newer filter (a later creation time, or
//! the same from a later pass) replaces a stored one. `retain/<satellite id>.applied`
//! names the last filter applied: a node restarted in mid-retain applies the filter
//! again from the start (trashing is idempotent).

use crate::pieces::{PieceError, PieceStore};
use orbit_identity::NodeId;
use orbit_protocol::bloom::Filter;
use orbit_protocol::RetainHeader;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What applying one filter did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The satellite.
    pub satellite: String,
    /// The filter's creation time.
    pub created: u64,
    /// Pieces of that satellite looked at.
    pub checked: u64,
    /// Pieces moved to the trash.
    pub trashed: u64,
}

/// The stored filters.
pub struct RetainStore {
    dir: PathBuf,
    /// One writer at a time (two satellites' filters may arrive at once).
    write: Mutex<()>,
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> PieceError {
    PieceError::Corrupt {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

impl RetainStore {
    /// The store in `dir` (created).
    pub fn open(dir: &Path) -> Result<RetainStore, PieceError> {
        std::fs::create_dir_all(dir)?;
        Ok(RetainStore {
            dir: dir.to_path_buf(),
            write: Mutex::new(()),
        })
    }

    fn filter_path(&self, sat: &NodeId) -> PathBuf {
        self.dir.join(format!("{sat}.filter"))
    }

    fn applied_path(&self, sat: &NodeId) -> PathBuf {
        self.dir.join(format!("{sat}.applied"))
    }

    /// Writes `bytes` to `path` durably: a temporary file, fsynced, renamed.
    fn write_durably(&self, path: &Path, bytes: &[u8]) -> Result<(), PieceError> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// The stored filter of a satellite.
    pub fn load(&self, sat: &NodeId) -> Result<Option<(RetainHeader, Filter)>, PieceError> {
        let path = self.filter_path(sat);
        let b = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let n = b
            .get(..4)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt(&path, "short"))?;
        let header = b
            .get(4..4 + n)
            .ok_or_else(|| corrupt(&path, "short header"))
            .and_then(|h| RetainHeader::decode(h).map_err(|e| corrupt(&path, e)))?;
        let filter = Filter::decode(&b[4 + n..]).map_err(|e| corrupt(&path, e))?;
        Ok(Some((header, filter)))
    }

    /// Stores a verified filter unless one as new is stored; returns whether it was.
    pub fn store(&self, header: &RetainHeader, filter: &[u8]) -> Result<bool, PieceError> {
        let _one = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, _)) = self.load(&header.satellite)? {
            if (old.created, old.pass) >= (header.created, header.pass) {
                return Ok(false);
            }
        }
        let h = header.encode();
        let mut b = Vec::with_capacity(4 + h.len() + filter.len());
        b.extend_from_slice(&(h.len() as u32).to_be_bytes());
        b.extend_from_slice(&h);
        b.extend_from_slice(filter);
        self.write_durably(&self.filter_path(&header.satellite), &b)?;
        Ok(true)
    }

    /// The (creation time, pass) of the last filter of `sat` applied.
    fn applied(&self, sat: &NodeId) -> (u64, i64) {
        std::fs::read_to_string(self.applied_path(sat))
            .ok()
            .and_then(|t| {
                let (c, p) = t.trim().split_once(' ')?;
                Some((c.parse().ok()?, p.parse().ok()?))
            })
            .unwrap_or((0, 0))
    }

    /// Applies every stored filter not applied yet: pieces of its satellite stored
    /// before its creation time less `skew_s` and absent from it go to the trash.
    pub fn apply(
        &self,
        pieces: &PieceStore,
        skew_s: u64,
        now: u64,
    ) -> Result<Vec<Applied>, PieceError> {
        let mut out = Vec::new();
        let mut sats = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            if let Some(sat) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".filter"))
                .and_then(|h| h.parse::<NodeId>().ok())
            {
                sats.push(sat);
            }
        }
        // Every header is read once, and only when some filter is due: the worker
        // runs every few minutes and a node may hold millions of pieces.
        let mut stored = None;
        for sat in sats {
            let Some((header, filter)) = self.load(&sat)? else {
                continue;
            };
            if self.applied(&sat) >= (header.created, header.pass) {
                continue;
            }
            if stored.is_none() {
                stored = Some(pieces.pieces()?);
            }
            let stored = stored.as_ref().expect("read above");
            let before = header.created.saturating_sub(skew_s);
            let mut done = Applied {
                satellite: sat.to_string(),
                created: header.created,
                ..Applied::default()
            };
            for (id, h) in stored {
                let h = match h {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(piece = %id.hex(), error = %e, "retain: skipping a piece whose header does not read");
                        continue;
                    }
                };
                if h.limit.satellite != sat {
                    continue;
                }
                done.checked += 1;
                if h.stored_at < before && !filter.contains(id) && pieces.trash(id, now)? {
                    done.trashed += 1;
                }
            }
            let done_as = format!("{} {}", header.created, header.pass);
            self.write_durably(&self.applied_path(&sat), done_as.as_bytes())?;
            tracing::info!(satellite = %sat, checked = done.checked, trashed = done.trashed, "retain applied");
            out.push(done);
        }
        Ok(out)
    }
}
