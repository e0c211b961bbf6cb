//! Watchers: history from a start revision, then live changes, in revision order with
//! none missed or repeated.
//!
//! A watcher subscribes to applied changes while holding the state's read lock, so it
//! knows exactly the revision its subscription starts after; history up to that point
//! comes from the state. A watcher that falls behind the live feed re-reads the history
//! it missed the same way. Each member serves watches from its own applied state, which
//! every member reaches in the same order, so a client that reconnects elsewhere and
//! resumes from its last revision + 1 sees the same sequence.

use crate::state_machine::Shared;
use orbit_kv::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Filters a watcher applies (etcd's NOPUT / NODELETE).
#[derive(Clone, Copy, Debug, Default)]
pub struct Filters {
    /// Drop put events.
    pub no_put: bool,
    /// Drop delete events.
    pub no_delete: bool,
}

fn keep(ev: &Event, key: &[u8], range_end: &[u8], filters: Filters) -> bool {
    let in_range = if range_end.is_empty() {
        ev.kv.key == key
    } else if range_end == [0] {
        ev.kv.key.as_slice() >= key
    } else {
        ev.kv.key.as_slice() >= key && ev.kv.key.as_slice() < range_end
    };
    in_range
        && match ev.kind {
            EventKind::Put => !filters.no_put,
            EventKind::Delete => !filters.no_delete,
        }
}

fn shape(mut events: Vec<Event>, prev_kv: bool) -> Vec<Event> {
    if !prev_kv {
        for e in &mut events {
            e.prev_kv = None;
        }
    }
    events
}

/// Subscribes at the current revision and reads the history from `from` up to it.
/// Returns the subscription, the history and the revision it reaches.
fn catch_up(
    shared: &Shared,
    key: &[u8],
    opts: &WatchOptions,
    from: i64,
) -> KvResult<(
    broadcast::Receiver<Arc<crate::state_machine::ChangeBatch>>,
    Vec<Event>,
    i64,
)> {
    let state = shared.read();
    let rx = shared.subscribe();
    let current = state.kv.revision();
    let history = if from <= current {
        state.kv.history(key, &opts.range_end, from)?
    } else {
        Vec::new()
    };
    Ok((rx, history, current))
}

/// Filters `events` for one watcher and sends what is left as one batch at
/// `revision`. Returns whether anything was sent, or `Err` once the receiver is gone.
async fn deliver(
    out: &mpsc::Sender<WatchResponse>,
    events: impl IntoIterator<Item = Event>,
    revision: i64,
    key: &[u8],
    opts: &WatchOptions,
    filters: Filters,
) -> Result<bool, ()> {
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| keep(e, key, &opts.range_end, filters))
        .collect();
    if events.is_empty() {
        return Ok(false);
    }
    let batch = WatchResponse {
        revision,
        events: shape(events, opts.prev_kv),
        compact_revision: 0,
    };
    out.send(batch).await.map(|_| true).map_err(|_| ())
}

/// Runs one watcher, sending its batches into `out` until `out` closes or the watch is
/// compacted away. With `opts.progress_notify`, an idle watcher sends an empty batch
/// every `progress` telling the revision it has seen everything up to.
pub async fn run(
    shared: Arc<Shared>,
    key: Vec<u8>,
    opts: WatchOptions,
    filters: Filters,
    progress: Duration,
    out: mpsc::Sender<WatchResponse>,
) {
    let start = opts.start_revision;
    // `last`: the revision the watcher has reported everything up to.
    let mut last = 0;
    let mut rx = None;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + progress, progress);
    let mut idle = true;
    loop {
        let Some(feed) = rx.as_mut() else {
            // (Re)subscribe and read the history up to the subscription point: at the
            // start, and after falling behind the live feed.
            let from = if start > 0 {
                (last + 1).max(start)
            } else {
                i64::MAX
            };
            match catch_up(&shared, &key, &opts, from) {
                Ok((new_rx, history, current)) => {
                    rx = Some(new_rx);
                    last = current;
                    match deliver(&out, history, current, &key, &opts, filters).await {
                        Ok(sent) => idle &= !sent,
                        Err(()) => return,
                    }
                }
                Err(KvError::Compacted { compact_revision }) => {
                    let revision = shared.read().kv.revision();
                    let _ = out
                        .send(WatchResponse {
                            revision,
                            events: Vec::new(),
                            compact_revision,
                        })
                        .await;
                    return;
                }
                Err(_) => return,
            }
            continue;
        };
        let batch = tokio::select! {
            _ = out.closed() => return,
            b = feed.recv() => b,
            _ = ticker.tick(), if opts.progress_notify => {
                if idle {
                    let note = WatchResponse { revision: last, events: Vec::new(), compact_revision: 0 };
                    if out.send(note).await.is_err() {
                        return;
                    }
                }
                idle = true;
                continue;
            }
        };
        match batch {
            Ok(batch) => {
                if batch.revision <= last || batch.revision < start {
                    continue;
                }
                last = batch.revision;
                // Filter before cloning: most batches concern other watchers' keys.
                let events = batch
                    .events
                    .iter()
                    .filter(|e| keep(e, &key, &opts.range_end, filters))
                    .cloned();
                match deliver(&out, events, batch.revision, &key, &opts, filters).await {
                    Ok(sent) => idle &= !sent,
                    Err(()) => return,
                }
            }
            // Fell behind the live feed: read what was missed from history.
            Err(broadcast::error::RecvError::Lagged(_)) => rx = None,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
