//! The piece store: one file per piece under `pieces/<2 hex>/<piece id>.piece`.
//!
//! A piece file is a fixed 1024-byte header region — magic `ORBP`, format version,
//! header length, then the header (the order limit it was uploaded under, the uplink's
//! signed piece hash, when it was stored) — followed by the piece's bytes and, from
//! format 2 on, the piece's outboard (the BLAKE3 tree hashes that prove slices of it,
//! [`orbit_protocol::slices`]). A piece is written to `tmp/`, its outboard and header
//! filled in once the upload is complete, fsynced, and renamed into place, so a crash
//! never leaves a partial piece under a piece's name. Format-1 files (no outboard) are
//! still read; a slice of one computes its tree from the whole piece.
//!
//! Garbage collection moves pieces to `trash/<unix day>/<piece id>.piece` rather than
//! deleting them: the trash is emptied after a configured number of days, a
//! satellite's order brings its pieces back, and a download of a trashed piece
//! revives it. Trashed bytes still count as used.

use orbit_protocol::slices::{self, ReadAt, SliceError};
use orbit_protocol::{OrderLimit, PieceHash, PieceId};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes reserved at the start of a piece file for its header.
pub const HEADER_BYTES: u64 = 1024;
const MAGIC: &[u8; 4] = b"ORBP";
const FORMAT: u16 = 2;

/// Why the piece store failed.
#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    /// No such piece.
    #[error("piece {0} not found")]
    NotFound(String),
    /// Not enough free space.
    #[error("not enough space: {need} bytes asked, {free} free")]
    Full {
        /// Asked.
        need: u64,
        /// Free.
        free: u64,
    },
    /// A piece file is damaged.
    #[error("piece file {path} is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A range outside the piece was asked for.
    #[error("{0}")]
    Range(String),
    /// The disk failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl PieceError {
    fn slice(path: &Path, e: SliceError) -> PieceError {
        match e {
            SliceError::Range { .. } => PieceError::Range(e.to_string()),
            // The node's own bytes disagree with its tree: they rotted.
            _ => PieceError::Corrupt {
                path: path.display().to_string(),
                why: e.to_string(),
            },
        }
    }
}

/// A piece's data as positioned reads of its file.
struct Data<'a> {
    file: &'a std::fs::File,
    size: u64,
}

impl ReadAt for Data<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.size.saturating_sub(pos) as usize).min(buf.len());
        ReadAt::read_at(self.file, HEADER_BYTES + pos, &mut buf[..n])
    }
}

/// Outboard bytes of a piece of `size` bytes (none for one group or less).
fn outboard_len(size: u64) -> u64 {
    size.div_ceil(slices::GROUP).saturating_sub(1) * 64
}

/// What a piece file says about its piece.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceHeader {
    /// The limit it was uploaded under.
    pub limit: OrderLimit,
    /// The uplink's signed hash of it.
    pub hash: PieceHash,
    /// Unix time (s) it was stored.
    pub stored_at: u64,
}

/// The piece store of one node.
pub struct PieceStore {
    dir: PathBuf,
    capacity: u64,
    used: AtomicU64,
    /// Space promised to uploads in progress.
    reserved: AtomicU64,
    /// Of `used`, bytes in the trash.
    trashed: AtomicU64,
}

/// Bytes of the files in the day directories under `dir`.
fn sizes(dir: &Path) -> Result<u64, PieceError> {
    let mut n = 0;
    for sub in std::fs::read_dir(dir)? {
        for f in std::fs::read_dir(sub?.path())? {
            n += f?.metadata()?.len();
        }
    }
    Ok(n)
}

/// A stored piece and its header (or why the header does not read).
pub type StoredPiece = (PieceId, Result<PieceHeader, PieceError>);

/// Today, as trash directories count days.
fn day(now: u64) -> u64 {
    now / 86_400
}

impl PieceStore {
    /// Opens (creating) the store in `dir`, allowing `capacity` bytes of pieces.
    pub fn open(dir: &Path, capacity: u64) -> Result<PieceStore, PieceError> {
        std::fs::create_dir_all(dir.join("pieces"))?;
        let tmp = dir.join("tmp");
        // Uploads a crash interrupted: never committed, never acknowledged.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(dir.join("trash"))?;
        let trashed = sizes(&dir.join("trash"))?;
        let used = sizes(&dir.join("pieces"))? + trashed;
        Ok(PieceStore {
            dir: dir.to_path_buf(),
            capacity,
            used: AtomicU64::new(used),
            reserved: AtomicU64::new(0),
            trashed: AtomicU64::new(trashed),
        })
    }

    /// Bytes in the trash.
    pub fn trashed(&self) -> u64 {
        self.trashed.load(Ordering::Relaxed)
    }

    /// Every stored piece (not the trash) with its header; a piece whose header does
    /// not read is passed as an error, named.
    pub fn pieces(&self) -> Result<Vec<StoredPiece>, PieceError> {
        let mut out = Vec::new();
        for sub in std::fs::read_dir(self.dir.join("pieces"))? {
            for f in std::fs::read_dir(sub?.path())? {
                let path = f?.path();
                let Some(id) = piece_of(&path) else { continue };
                let header = std::fs::File::open(&path)
                    .map_err(PieceError::from)
                    .and_then(|mut f| read_header(&mut f, &path).map(|(h, _)| h));
                out.push((id, header));
            }
        }
        Ok(out)
    }

    /// Deletes every stored piece whose order limit let it expire before `now` (the
    /// node does not wait for garbage collection); returns how many went.
    pub fn delete_expired(&self, now: u64) -> Result<u64, PieceError> {
        let mut gone = 0;
        for (id, header) in self.pieces()? {
            let Ok(h) = header else { continue };
            let e = h.limit.piece_expiration;
            if e != 0 && e <= now {
                match self.delete(&id) {
                    Ok(()) => gone += 1,
                    Err(PieceError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(gone)
    }

    /// Moves a piece to today's trash (garbage collection). False if it is not stored.
    pub fn trash(&self, id: &PieceId, now: u64) -> Result<bool, PieceError> {
        let from = self.path(id);
        let dir = self.dir.join("trash").join(day(now).to_string());
        std::fs::create_dir_all(&dir)?;
        let len = match std::fs::metadata(&from) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        std::fs::rename(&from, dir.join(format!("{}.piece", id.hex())))?;
        self.trashed.fetch_add(len, Ordering::Relaxed);
        Ok(true)
    }

    /// Where a trashed piece is, if it is.
    fn in_trash(&self, id: &PieceId) -> Option<PathBuf> {
        let name = format!("{}.piece", id.hex());
        std::fs::read_dir(self.dir.join("trash"))
            .ok()?
            .flatten()
            .map(|d| d.path().join(&name))
            .find(|p| p.exists())
    }

    /// Moves a trashed piece back. False if it is not in the trash.
    pub fn revive(&self, id: &PieceId) -> Result<bool, PieceError> {
        let Some(from) = self.in_trash(id) else {
            return Ok(false);
        };
        let len = std::fs::metadata(&from)?.len();
        let to = self.path(id);
        std::fs::create_dir_all(to.parent().expect("piece paths have a parent"))?;
        std::fs::rename(&from, &to)?;
        self.trashed.fetch_sub(len, Ordering::Relaxed);
        tracing::info!(piece = %id.hex(), "revived a piece from the trash");
        Ok(true)
    }

    /// Moves every trashed piece of `satellite` back; returns how many.
    pub fn restore_trash(&self, satellite: &orbit_identity::NodeId) -> Result<u64, PieceError> {
        let mut restored = 0;
        for d in std::fs::read_dir(self.dir.join("trash"))? {
            for f in std::fs::read_dir(d?.path())? {
                let path = f?.path();
                let Some(id) = piece_of(&path) else { continue };
                let mut file = std::fs::File::open(&path)?;
                let ours = read_header(&mut file, &path)
                    .is_ok_and(|(h, _)| h.limit.satellite == *satellite);
                if ours && self.revive(&id)? {
                    restored += 1;
                }
            }
        }
        Ok(restored)
    }

    /// Deletes trash days older than `days` days before `now`; returns the pieces
    /// deleted.
    pub fn empty_trash(&self, days: u64, now: u64) -> Result<u64, PieceError> {
        let mut gone = 0;
        for d in std::fs::read_dir(self.dir.join("trash"))? {
            let d = d?.path();
            let old = d
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n + days < day(now));
            if !old {
                continue;
            }
            for f in std::fs::read_dir(&d)? {
                let f = f?;
                let len = f.metadata()?.len();
                std::fs::remove_file(f.path())?;
                self.trashed.fetch_sub(len, Ordering::Relaxed);
                self.used.fetch_sub(len, Ordering::Relaxed);
                gone += 1;
            }
            std::fs::remove_dir(&d)?;
        }
        Ok(gone)
    }

    /// Opens a piece file, reviving the piece from the trash when it is there.
    fn open_piece(&self, id: &PieceId) -> Result<(std::fs::File, PathBuf), PieceError> {
        let path = self.path(id);
        match std::fs::File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.revive(id)? {
                    return Ok((std::fs::File::open(&path)?, path));
                }
                Err(PieceError::NotFound(id.hex()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes stored (headers included).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes free for new pieces.
    pub fn free(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used() + self.reserved.load(Ordering::Relaxed))
    }

    fn path(&self, id: &PieceId) -> PathBuf {
        let hex = id.hex();
        self.dir
            .join("pieces")
            .join(&hex[..2])
            .join(format!("{hex}.piece"))
    }

    /// Starts writing a piece of at most `limit` bytes, reserving the space.
    pub fn writer(&self, id: PieceId, limit: u64) -> Result<PieceWriter<'_>, PieceError> {
        let need = limit + HEADER_BYTES + outboard_len(limit);
        // Reserve first, then check, so two uploads cannot both take the last space.
        let before = self.reserved.fetch_add(need, Ordering::Relaxed);
        let free = self.capacity.saturating_sub(self.used() + before);
        if need > free {
            self.reserved.fetch_sub(need, Ordering::Relaxed);
            return Err(PieceError::Full { need, free });
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}-{:016x}", id.hex(), rand::random::<u64>()));
        // Read back at commit to build the piece's tree.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.seek(SeekFrom::Start(HEADER_BYTES))?;
        Ok(PieceWriter {
            store: self,
            id,
            tmp,
            file: Some(file),
            hasher: blake3::Hasher::new(),
            size: 0,
            reserved: need,
        })
    }

    /// The header of a stored piece.
    pub fn header(&self, id: &PieceId) -> Result<PieceHeader, PieceError> {
        let (mut f, path) = self.open_piece(id)?;
        read_header(&mut f, &path).map(|(h, _)| h)
    }

    /// The proof of `[offset, offset + len)` of a piece (see [`slices::encode`]), with
    /// its header. A piece whose bytes no longer match its tree is `Corrupt`.
    pub fn slice(
        &self,
        id: &PieceId,
        offset: u64,
        len: u64,
    ) -> Result<(PieceHeader, Vec<u8>), PieceError> {
        let (mut f, path) = self.open_piece(id)?;
        let (header, format) = read_header(&mut f, &path)?;
        let size = header.hash.size;
        let outboard = if format >= 2 {
            let want = outboard_len(size);
            if f.metadata()?.len() != HEADER_BYTES + size + want {
                return Err(PieceError::Corrupt {
                    path: path.display().to_string(),
                    why: format!(
                        "{} bytes, a piece of {size} with its tree is {}",
                        f.metadata()?.len(),
                        HEADER_BYTES + size + want
                    ),
                });
            }
            let mut ob = vec![0u8; want as usize];
            ReadAt::read_exact_at(&f, HEADER_BYTES + size, &mut ob)?;
            ob
        } else {
            f.seek(SeekFrom::Start(HEADER_BYTES))?;
            let data = std::io::BufReader::new(&f).take(size);
            slices::outboard(data, size)
                .map_err(|e| PieceError::slice(&path, e))?
                .1
        };
        let data = Data { file: &f, size };
        let proof = slices::encode(data, size, header.hash.hash, outboard, offset, len)
            .map_err(|e| PieceError::slice(&path, e))?;
        Ok((header, proof))
    }

    /// Reads `size` bytes at `offset` of a piece's data.
    pub fn read(
        &self,
        id: &PieceId,
        offset: u64,
        size: u64,
    ) -> Result<(PieceHeader, PieceReader), PieceError> {
        let (mut f, path) = self.open_piece(id)?;
        let (header, _) = read_header(&mut f, &path)?;
        if offset
            .checked_add(size)
            .is_none_or(|end| end > header.hash.size)
        {
            return Err(PieceError::Range(format!(
                "range {offset}+{size} is beyond the piece's {} bytes",
                header.hash.size
            )));
        }
        f.seek(SeekFrom::Start(HEADER_BYTES + offset))?;
        Ok((
            header,
            PieceReader {
                file: f,
                left: size,
            },
        ))
    }

    /// Deletes a piece (garbage collection, expiry).
    pub fn delete(&self, id: &PieceId) -> Result<(), PieceError> {
        let path = self.path(id);
        let len = std::fs::metadata(&path)
            .map_err(|_| PieceError::NotFound(id.hex()))?
            .len();
        std::fs::remove_file(&path)?;
        self.used.fetch_sub(len, Ordering::Relaxed);
        Ok(())
    }
}

/// The piece a piece file's name says it holds.
fn piece_of(path: &Path) -> Option<PieceId> {
    let hex = path.file_name()?.to_str()?.strip_suffix(".piece")?;
    let b = orbit_identity::hex_decode(hex).ok()?;
    Some(PieceId(b.try_into().ok()?))
}

/// A piece file's header and format version.
fn read_header(f: &mut std::fs::File, path: &Path) -> Result<(PieceHeader, u16), PieceError> {
    let corrupt = |why: String| PieceError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    let mut region = vec![0u8; HEADER_BYTES as usize];
    f.read_exact(&mut region)
        .map_err(|e| corrupt(format!("short header: {e}")))?;
    if &region[..4] != MAGIC {
        return Err(corrupt("no ORBP magic".into()));
    }
    let version = u16::from_be_bytes([region[4], region[5]]);
    if !(1..=FORMAT).contains(&version) {
        return Err(corrupt(format!(
            "format version {version}, this build reads {FORMAT}"
        )));
    }
    let len = u32::from_be_bytes([region[6], region[7], region[8], region[9]]) as usize;
    if len > region.len() - 10 {
        return Err(corrupt(format!("header length {len} too large")));
    }
    let header = bincode::deserialize(&region[10..10 + len]).map_err(|e| corrupt(e.to_string()))?;
    Ok((header, version))
}

/// A piece being written.
pub struct PieceWriter<'a> {
    store: &'a PieceStore,
    id: PieceId,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: blake3::Hasher,
    size: u64,
    reserved: u64,
}

impl PieceWriter<'_> {
    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), PieceError> {
        self.file
            .as_mut()
            .expect("writer not committed")
            .write_all(data)?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Bytes written.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// BLAKE3 of the bytes written.
    pub fn hash(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }

    /// Writes the header, makes the piece durable and puts it in place.
    pub fn commit(mut self, header: &PieceHeader) -> Result<(), PieceError> {
        let body = bincode::serialize(header).expect("headers serialize");
        if body.len() > HEADER_BYTES as usize - 10 {
            return Err(PieceError::Corrupt {
                path: self.tmp.display().to_string(),
                why: format!("header of {} bytes does not fit", body.len()),
            });
        }
        let mut region = Vec::with_capacity(HEADER_BYTES as usize);
        region.extend_from_slice(MAGIC);
        region.extend_from_slice(&FORMAT.to_be_bytes());
        region.extend_from_slice(&(body.len() as u32).to_be_bytes());
        region.extend_from_slice(&body);
        region.resize(HEADER_BYTES as usize, 0);
        let mut file = self.file.take().expect("writer not committed");
        // The tree that proves slices, from the bytes as written (in the page cache).
        file.seek(SeekFrom::Start(HEADER_BYTES))?;
        let (root, outboard) =
            slices::outboard(std::io::BufReader::new(&file).take(self.size), self.size)
                .map_err(|e| PieceError::slice(&self.tmp, e))?;
        if root != self.hash() {
            return Err(PieceError::Corrupt {
                path: self.tmp.display().to_string(),
                why: "the bytes on disk differ from those received".into(),
            });
        }
        file.seek(SeekFrom::Start(HEADER_BYTES + self.size))?;
        file.write_all(&outboard)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&region)?;
        file.sync_all()?;
        let dest = self.store.path(&self.id);
        let dir = dest.parent().expect("piece paths have a parent");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(&self.tmp, &dest)?;
        std::fs::File::open(dir)?.sync_all()?;
        self.store.used.fetch_add(
            HEADER_BYTES + self.size + outboard.len() as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl Drop for PieceWriter<'_> {
    fn drop(&mut self) {
        self.store
            .reserved
            .fetch_sub(self.reserved, Ordering::Relaxed);
        if self.file.is_some() {
            // Abandoned: the upload failed or was cancelled.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a range of a piece.
pub struct PieceReader {
    file: std::fs::File,
    left: u64,
}

impl PieceReader {
    /// The next chunk of at most `max` bytes; empty at the end.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<u8>, PieceError> {
        let n = (self.left as usize).min(max);
        let mut buf = vec![0u8; n];
        self.file.read_exact(&mut buf)?;
        self.left -= n as u64;
        Ok(buf)
    }
}
