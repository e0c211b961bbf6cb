//! The durable Raft log: one append-only file of framed records, fsynced in groups.
//!
//! Every record is `[len u32][crc32 u32][bincode payload]`. Appends are written at once
//! and handed to a flusher thread that fsyncs and then reports them persisted; while one
//! fsync runs the next appends queue up, so one fsync covers many writes (group commit)
//! and no write is acknowledged before it is on disk. A torn record at the tail (a crash
//! mid-write) is cut off at open. When purges leave most of the file dead, the live part
//! is rewritten to a new file that atomically replaces the old one.

use crate::raft_types::*;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// Version of the log file format, written as the first record.
const FORMAT_VERSION: u32 = 1;
/// Most bytes of entries replication reads for one AppendEntries message.
pub(crate) const MAX_APPEND_BYTES: u64 = 1 << 20;
/// Dead bytes tolerated before the file is rewritten.
const REWRITE_SLACK: u64 = 16 << 20;

/// A log file record. The order of the variants is part of the format (see
/// [`frame_entry`]).
#[derive(Serialize, Deserialize)]
enum Record {
    Format(u32),
    Entry(Entry),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to this id are gone.
    Purge(LogId),
}

struct Inner {
    path: PathBuf,
    file: Arc<File>,
    /// Entries with the size of their record.
    entries: BTreeMap<u64, (Entry, u64)>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    file_bytes: u64,
    live_bytes: u64,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

fn frame(rec: &Record, out: &mut Vec<u8>) -> u64 {
    frame_with(out, |buf| bincode::serialize_into(buf, rec))
}

/// Frames an entry without cloning it into a [`Record`]: bincode writes an enum as its
/// variant index (u32) and then the content, so this is byte for byte
/// `frame(&Record::Entry(entry.clone()))`.
fn frame_entry(entry: &Entry, out: &mut Vec<u8>) -> u64 {
    const ENTRY_VARIANT: u32 = 1;
    frame_with(out, |buf| {
        buf.extend_from_slice(&ENTRY_VARIANT.to_le_bytes());
        bincode::serialize_into(buf, entry)
    })
}

fn frame_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> bincode::Result<()>) -> u64 {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    write(out).expect("log records always serialize");
    let payload_len = out.len() - start - 8;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    (out.len() - start) as u64
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Inner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        (&*self.file).write_all(buf)?;
        self.file_bytes += buf.len() as u64;
        Ok(())
    }

    fn write_synced(&mut self, rec: &Record) -> std::io::Result<()> {
        let mut buf = Vec::new();
        frame(rec, &mut buf);
        self.write(&buf)?;
        self.file.sync_data()
    }

    /// Writes the live state to a new file and swaps it in.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut buf = Vec::new();
        frame(&Record::Format(FORMAT_VERSION), &mut buf);
        if let Some(v) = &self.vote {
            frame(&Record::Vote(*v), &mut buf);
        }
        frame(&Record::Committed(self.committed), &mut buf);
        if let Some(p) = &self.last_purged {
            frame(&Record::Purge(*p), &mut buf);
        }
        for (entry, _) in self.entries.values() {
            frame_entry(entry, &mut buf);
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = Arc::new(OpenOptions::new().append(true).open(&self.path)?);
        self.file_bytes = buf.len() as u64;
        Ok(())
    }
}

type FlushJob = (Arc<File>, LogFlushed<TypeConfig>);

/// The Raft log storage of one member.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    flusher: mpsc::Sender<FlushJob>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying what a previous run left.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let mut inner = Inner {
            path: path.clone(),
            file: Arc::new(
                OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&path)?,
            ),
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            last_purged: None,
            file_bytes: 0,
            live_bytes: 0,
        };
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
            let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(rec) = bincode::deserialize::<Record>(payload) else {
                break;
            };
            let size = (len + 8) as u64;
            match rec {
                Record::Format(v) if v != FORMAT_VERSION => {
                    return Err(std::io::Error::other(format!(
                        "{}: log format {v} is not supported (this build reads {FORMAT_VERSION})",
                        path.display()
                    )))
                }
                Record::Format(_) => {}
                Record::Entry(e) => {
                    inner.live_bytes += size;
                    inner.entries.insert(e.log_id.index, (e, size));
                }
                Record::Vote(v) => inner.vote = Some(v),
                Record::Committed(c) => inner.committed = c,
                Record::Truncate(from) => {
                    for (_, (_, s)) in inner.entries.split_off(&from) {
                        inner.live_bytes -= s;
                    }
                }
                Record::Purge(upto) => {
                    let keep = inner.entries.split_off(&(upto.index + 1));
                    for (_, (_, s)) in std::mem::replace(&mut inner.entries, keep) {
                        inner.live_bytes -= s;
                    }
                    inner.last_purged = Some(upto);
                }
            }
            pos += len + 8;
        }
        if pos < data.len() {
            tracing::warn!(
                path = %path.display(),
                cut = data.len() - pos,
                "cutting a torn record off the end of the raft log"
            );
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
        inner.file_bytes = pos as u64;
        if pos == 0 {
            let mut buf = Vec::new();
            frame(&Record::Format(FORMAT_VERSION), &mut buf);
            inner.write(&buf)?;
            inner.file.sync_all()?;
            sync_dir(dir)?;
        }

        let (tx, rx) = mpsc::channel::<FlushJob>();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(rx))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            flusher: tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry and fsyncs it, outside of Raft (offline recovery only).
    pub fn append_synced(&mut self, entry: Entry) -> std::io::Result<()> {
        let mut g = self.lock();
        let mut buf = Vec::new();
        let size = frame_entry(&entry, &mut buf);
        g.write(&buf)?;
        g.file.sync_data()?;
        g.live_bytes += size;
        g.entries.insert(entry.log_id.index, (entry, size));
        Ok(())
    }

    /// Whether this log has ever held Raft state (a vote or an entry).
    pub fn is_used(&self) -> bool {
        let g = self.lock();
        g.vote.is_some() || !g.entries.is_empty() || g.last_purged.is_some()
    }
}

fn flush_loop(rx: mpsc::Receiver<FlushJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        // Syncing each distinct file once covers every job written to it before now.
        let mut result: Result<(), std::io::Error> = Ok(());
        let mut synced: Vec<*const File> = Vec::new();
        for (file, _) in &jobs {
            let ptr = Arc::as_ptr(file);
            if !synced.contains(&ptr) {
                synced.push(ptr);
                if let Err(e) = file.sync_data() {
                    result = Err(e);
                }
            }
        }
        for (_, cb) in jobs {
            cb.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        Ok(g.entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }

    /// What replication sends next: at most [`MAX_APPEND_BYTES`] of records (at least
    /// one entry), so a follower far behind is not sent — nor this member made to
    /// copy — up to `max_payload_entries` whole write batches at once.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        let mut used = 0u64;
        let mut out = Vec::new();
        for (e, size) in g.entries.range(start..end).map(|(_, v)| v) {
            used += size;
            if !out.is_empty() && used > MAX_APPEND_BYTES {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.write_synced(&Record::Vote(*vote))
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut buf = Vec::new();
        frame(&Record::Committed(committed), &mut buf);
        g.write(&buf)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        g.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let file = {
            let mut g = self.lock();
            let mut buf = Vec::new();
            let mut added = Vec::new();
            for e in entries {
                let size = frame_entry(&e, &mut buf);
                added.push((e, size));
            }
            g.write(&buf)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            for (e, size) in added {
                g.live_bytes += size;
                g.entries.insert(e.log_id.index, (e, size));
            }
            g.file.clone()
        };
        self.flusher
            .send((file, callback))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut buf = Vec::new();
        frame(&Record::Truncate(log_id.index), &mut buf);
        g.write(&buf)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        for (_, (_, s)) in g.entries.split_off(&log_id.index) {
            g.live_bytes -= s;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut buf = Vec::new();
        frame(&Record::Purge(log_id), &mut buf);
        g.write(&buf)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let keep = g.entries.split_off(&(log_id.index + 1));
        for (_, (_, s)) in std::mem::replace(&mut g.entries, keep) {
            g.live_bytes -= s;
        }
        g.last_purged = Some(log_id);
        if g.file_bytes > g.live_bytes * 2 + REWRITE_SLACK {
            g.rewrite()
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 7), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    #[test]
    fn entry_frames_match_record_frames() {
        let e = entry(3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        frame_entry(&e, &mut a);
        frame(&Record::Entry(e), &mut b);
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn replication_reads_are_bounded_by_size_but_carry_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        let big = |index: u64| Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 7), index),
            payload: openraft::EntryPayload::Normal(crate::raft_types::Request::Write(
                crate::mvcc::WriteCommand::Put(orbit_kv::PutRequest::new("k", vec![0; 300 << 10])),
            )),
        };
        for i in 1..=10 {
            log.append_synced(big(i)).unwrap();
        }
        let sent = log.limited_get_log_entries(1, 11).await.unwrap();
        assert_eq!(sent.len(), 3, "3 x 300 KiB fit in 1 MiB, 4 do not");
        assert_eq!(sent[0].log_id.index, 1);
        let small = log.limited_get_log_entries(4, 5).await.unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(log.try_get_log_entries(1..11).await.unwrap().len(), 10);
    }

    #[test]
    fn byte_fields_keep_the_format_of_a_plain_sequence() {
        // Keys and values serialize as bytes (fast), which bincode writes exactly as it
        // wrote them as a sequence of u8 before: logs and snapshots stay readable.
        #[derive(Serialize)]
        struct Plain {
            key: Vec<u8>,
            value: Vec<u8>,
            lease: i64,
            prev_kv: bool,
            ignore_value: bool,
            ignore_lease: bool,
        }
        let put = orbit_kv::PutRequest::new("key", vec![1, 2, 3, 250]);
        let plain = Plain {
            key: put.key.clone(),
            value: put.value.clone(),
            lease: put.lease,
            prev_kv: put.prev_kv,
            ignore_value: put.ignore_value,
            ignore_lease: put.ignore_lease,
        };
        assert_eq!(
            bincode::serialize(&put).unwrap(),
            bincode::serialize(&plain).unwrap()
        );
    }

    #[tokio::test]
    async fn reopen_keeps_vote_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            assert!(!log.is_used());
            log.save_vote(&Vote::new(3, 9)).await.unwrap();
        }
        // A record cut off mid-write, as a crash leaves it.
        let mut torn = Vec::new();
        frame_entry(&entry(1), &mut torn);
        torn.truncate(torn.len() - 3);
        let path = dir.path().join("raft.log");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();

        let mut log = LogStore::open(dir.path()).unwrap();
        assert!(log.is_used());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 9)));
        assert_eq!(log.get_log_state().await.unwrap().last_log_id, None);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len,
            "torn record cut off"
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        frame(&Record::Format(FORMAT_VERSION + 1), &mut buf);
        std::fs::write(dir.path().join("raft.log"), buf).unwrap();
        let e = LogStore::open(dir.path()).err().expect("refused");
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
