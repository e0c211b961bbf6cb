//! Orders a node has served and not yet settled with their satellite: an append-only
//! file of (order limit, order) pairs, one per finished transfer.
//!
//! The file starts with [`MAGIC`]; each record is a 4-byte big-endian length and one
//! transfer in the protocol's versioned settlement encoding. A file from before the
//! header (bare format-1 records) is converted when opened; a torn last record (a
//! crash mid-append) is cut off when opened, so the next append cannot be swallowed
//! by it; any other record that does not decode is an error, never skipped — it is
//! money the node is owed.

pub use orbit_protocol::Served;
use orbit_protocol::{decode_served, encode_served};
use std::io::{Error, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's first bytes (format 2).
pub const MAGIC: &[u8] = b"orbit-orders v2\n";

/// The unsettled orders of one node.
pub struct Orders {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Orders {
    /// Opens (creating, converting an older file, cutting a torn tail) the file at
    /// `path`.
    pub fn open(path: &Path) -> std::io::Result<Orders> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        if bytes.is_empty() {
            rewrite(path, &[])?;
        } else if !bytes.starts_with(MAGIC) {
            let (old, _) = parse(path, &bytes, 0, Served::decode_unversioned_v1)?;
            rewrite(path, &old)?;
        } else {
            let (_, valid) = parse(path, &bytes, MAGIC.len(), decode_one)?;
            if valid < bytes.len() {
                let f = std::fs::OpenOptions::new().write(true).open(path)?;
                f.set_len(valid as u64)?;
                f.sync_all()?;
            }
        }
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Orders {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Records a served transfer.
    pub fn record(&self, s: &Served) -> std::io::Result<()> {
        let rec = record(s);
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
        rewrite(&self.path, &keep)?;
        *f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }

    /// Every recorded transfer not yet settled.
    pub fn unsettled(&self) -> std::io::Result<Vec<Served>> {
        let _g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        read_all(&self.path)
    }
}

fn record(s: &Served) -> Vec<u8> {
    let body = encode_served(std::slice::from_ref(s));
    let mut rec = (body.len() as u32).to_be_bytes().to_vec();
    rec.extend(body);
    rec
}

fn decode_one(b: &[u8]) -> Result<Served, orbit_protocol::ProtocolError> {
    let mut v = decode_served(b)?;
    match (v.pop(), v.is_empty()) {
        (Some(s), true) => Ok(s),
        _ => Err(orbit_protocol::ProtocolError::Malformed {
            what: "served order record",
            why: "not exactly one transfer".into(),
        }),
    }
}

/// Writes `records` as a new file in place of `path`, atomically.
fn rewrite(path: &Path, records: &[Served]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(MAGIC)?;
    for s in records {
        out.write_all(&record(s))?;
    }
    out.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The records from `at` on, and where the last complete one ends.
fn parse<E: std::fmt::Display>(
    path: &Path,
    bytes: &[u8],
    mut at: usize,
    decode: impl Fn(&[u8]) -> Result<Served, E>,
) -> std::io::Result<(Vec<Served>, usize)> {
    let mut out = Vec::new();
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        let s = decode(body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{} at byte {at}: {e}", path.display()),
            )
        })?;
        out.push(s);
        at += 4 + len;
    }
    Ok((out, at))
}

fn read_all(path: &Path) -> std::io::Result<Vec<Served>> {
    let bytes = std::fs::read(path)?;
    if !bytes.starts_with(MAGIC) {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{}: not an orders file of format 2", path.display()),
        ));
    }
    Ok(parse(path, &bytes, MAGIC.len(), decode_one)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_identity::{Identity, NodeId};
    use orbit_protocol::{Action, Order, OrderLimit, PieceId};

    fn served(sat: &Identity, up: &Identity, metadata: Vec<u8>) -> Served {
        let limit = OrderLimit {
            serial: rand::random(),
            satellite: NodeId::default(),
            uplink: up.public(),
            node: NodeId::default(),
            piece: PieceId::random(),
            action: Action::Get,
            limit: 100,
            piece_expiration: 0,
            order_expiration: 5,
            metadata,
            signature: Vec::new(),
        }
        .sign(sat);
        Served {
            order: Order::sign(&limit, 50, up),
            limit,
        }
    }

    #[test]
    fn orders_survive_reopen_torn_tails_and_the_old_format_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders");
        let (sat, up) = (Identity::generate(), Identity::generate());
        let (a, b) = (
            served(&sat, &up, b"m".to_vec()),
            served(&sat, &up, Vec::new()),
        );

        // A file of bare format-1 records (as nodes wrote before) is converted.
        // Format 1's layout is format 2's without metadata.
        let v1 = bincode::serialize(&(
            &b.limit.serial,
            &b.limit.satellite,
            &b.limit.uplink,
            &b.limit.node,
            &b.limit.piece,
            b.limit.action,
            b.limit.limit,
            b.limit.piece_expiration,
            b.limit.order_expiration,
            &b.limit.signature,
            &b.order,
        ))
        .unwrap();
        let mut old = (v1.len() as u32).to_be_bytes().to_vec();
        old.extend(v1);
        std::fs::write(&path, &old).unwrap();
        let o = Orders::open(&path).unwrap();
        assert_eq!(o.unsettled().unwrap(), vec![b.clone()]);
        o.record(&a).unwrap();
        drop(o);

        // A torn append is cut off on open; the next record lands whole.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0, 0, 1, 0, 2, 2]).unwrap();
        drop(f);
        let o = Orders::open(&path).unwrap();
        o.record(&b).unwrap();
        assert_eq!(
            o.unsettled().unwrap(),
            vec![b.clone(), a.clone(), b.clone()]
        );
        o.forget(|s| s.limit.metadata.is_empty()).unwrap();
        assert_eq!(o.unsettled().unwrap(), vec![a.clone()]);
        drop(o);

        // A damaged record is an error, not a silent loss.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC.len() + 4] = 9;
        std::fs::write(&path, &bytes).unwrap();
        let e = Orders::open(&path)
            .err()
            .expect("a damaged file is refused");
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    }
}
