//! Serials of the order limits a node has accepted, kept until the limits expire, so
//! that no limit is used twice — not even across a restart.
//!
//! An append-only file of 24-byte records (serial, expiration as big-endian Unix
//! seconds), each fsynced before the limit is acted on; rewritten without expired
//! records at start.

use orbit_protocol::Serial;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The used serials of one node.
pub struct UsedSerials {
    path: PathBuf,
    inner: Mutex<(std::fs::File, HashMap<Serial, u64>)>,
}

impl UsedSerials {
    /// Opens the record at `path`, forgetting serials expired before `now`.
    pub fn open(path: &Path, now: u64) -> std::io::Result<UsedSerials> {
        let mut live = HashMap::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            // A torn last record (crash mid-append) is shorter than 24 bytes: ignored,
            // and its limit was never acted on.
            for rec in bytes.chunks_exact(24) {
                let serial: Serial = rec[..16].try_into().expect("16 bytes");
                let exp = u64::from_be_bytes(rec[16..].try_into().expect("8 bytes"));
                if exp >= now {
                    live.insert(serial, exp);
                }
            }
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for (s, e) in &live {
            f.write_all(s)?;
            f.write_all(&e.to_be_bytes())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let f = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(UsedSerials {
            path: path.to_path_buf(),
            inner: Mutex::new((f, live)),
        })
    }

    /// Records `serial` as used until `expiration`; false if it was used already.
    pub fn use_once(&self, serial: Serial, expiration: u64) -> std::io::Result<bool> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.1.contains_key(&serial) {
            return Ok(false);
        }
        let mut rec = [0u8; 24];
        rec[..16].copy_from_slice(&serial);
        rec[16..].copy_from_slice(&expiration.to_be_bytes());
        g.0.write_all(&rec)?;
        g.0.sync_data()?;
        g.1.insert(serial, expiration);
        Ok(true)
    }

    /// Where the record lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_is_used_once_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serials");
        let s = UsedSerials::open(&path, 100).unwrap();
        assert!(s.use_once([1; 16], 200).unwrap());
        assert!(!s.use_once([1; 16], 200).unwrap());
        assert!(s.use_once([2; 16], 150).unwrap());
        drop(s);
        // A torn record at the end is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[9; 10]).unwrap();
        let s = UsedSerials::open(&path, 160).unwrap();
        assert!(
            !s.use_once([1; 16], 200).unwrap(),
            "remembered after restart"
        );
        assert!(
            s.use_once([2; 16], 300).unwrap(),
            "expired ones are forgotten"
        );
    }
}
