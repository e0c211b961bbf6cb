//! Background work for every orbit process: one toolkit instead of bare spawned loops.
//!
//! A [`Group`] owns a process's workers and one cancellation signal. Each worker runs
//! a job on an interval (with jitter, so replicas do not run in lockstep), can be
//! triggered at once and waited for (what tests do instead of sleeping), paused and
//! resumed, and reports a [`Status`]. [`Group::shutdown`] stops the workers one by
//! one in the reverse order they were started (a worker started after another may
//! depend on it), all within a deadline. A run in progress is dropped at its next
//! await when its worker stops: jobs keep the store consistent at every await (a
//! transaction either committed or did not), as every orbit job does.

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

struct Metrics {
    runs: orbit_telemetry::Counters<orbit_telemetry::Labels<2>>,
    seconds: orbit_telemetry::Latencies<orbit_telemetry::Labels<1>>,
}

static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
    runs: orbit_telemetry::register(
        "worker_runs",
        "Runs of a background worker, by worker and result (ok, error)",
        Default::default(),
    ),
    seconds: orbit_telemetry::register(
        "worker_run_duration_seconds",
        "How long a background worker's runs take",
        orbit_telemetry::latencies(),
    ),
});

/// What a job returns: an error is recorded in the status, and the worker goes on.
pub type JobResult = Result<(), String>;

/// A job's future.
pub type JobFuture = Pin<Box<dyn Future<Output = JobResult> + Send>>;

/// How often a worker runs its job.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    /// Time between the end of one run and the start of the next.
    pub period: Duration,
    /// Up to this much is added at random to each wait.
    pub jitter: Duration,
    /// Run once at start, before the first wait.
    pub run_at_start: bool,
}

impl Interval {
    /// Every `period`, with up to a tenth of it as jitter, first run after one period.
    pub fn every(period: Duration) -> Interval {
        Interval {
            period,
            jitter: period / 10,
            run_at_start: false,
        }
    }

    /// The same, first run at once.
    pub fn starting_now(self) -> Interval {
        Interval {
            run_at_start: true,
            ..self
        }
    }

    fn next_wait(&self) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::random::<u64>() % (jitter_ms + 1)
        };
        self.period + Duration::from_millis(extra)
    }
}

/// What a worker has done.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Its name.
    pub name: String,
    /// Runs finished.
    pub runs: u64,
    /// Runs that ended in an error.
    pub failures: u64,
    /// Unix time (ms) the last run started.
    pub last_start_ms: Option<u64>,
    /// How long the last run took, ms.
    pub last_duration_ms: Option<u64>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// Paused: its interval runs are skipped (triggers still run).
    pub paused: bool,
    /// Running a job now.
    pub running: bool,
}

struct Shared {
    status: Mutex<Status>,
    paused: watch::Sender<bool>,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Controls one worker: trigger, pause, status.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    triggers: mpsc::Sender<Option<oneshot::Sender<JobResult>>>,
}

impl Handle {
    /// Asks for a run now (coalesced with one already asked for).
    pub fn trigger(&self) {
        let _ = self.triggers.try_send(None);
    }

    /// Runs the job now (after a run in progress) and returns its result; an error
    /// if the worker has stopped.
    pub async fn trigger_wait(&self) -> JobResult {
        let (tx, rx) = oneshot::channel();
        self.triggers
            .send(Some(tx))
            .await
            .map_err(|_| "the worker has stopped".to_string())?;
        rx.await
            .map_err(|_| "the worker stopped before running".to_string())?
    }

    /// Skips interval runs until [`Handle::resume`].
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
        self.shared.status().paused = true;
    }

    /// Resumes interval runs.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
        self.shared.status().paused = false;
    }

    /// What it has done.
    pub fn status(&self) -> Status {
        self.shared.status().clone()
    }
}

struct Entry {
    name: String,
    task: JoinHandle<()>,
    handle: Handle,
    cancel: watch::Sender<bool>,
}

/// A process's workers.
#[derive(Default)]
pub struct Group {
    workers: Mutex<Vec<Entry>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group::default()
    }

    /// Starts a worker running `job` on `interval`.
    pub fn spawn<F>(&self, name: &str, interval: Interval, mut job: F) -> Handle
    where
        F: FnMut() -> JobFuture + Send + 'static,
    {
        let (paused, paused_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                name: name.to_string(),
                ..Status::default()
            }),
            paused,
        });
        let (triggers, mut trigger_rx) = mpsc::channel::<Option<oneshot::Sender<JobResult>>>(16);
        let handle = Handle {
            shared: shared.clone(),
            triggers,
        };
        let (cancel_tx, mut cancel) = watch::channel(false);
        let worker_name = name.to_string();
        let task = tokio::spawn(async move {
            let mut first = interval.run_at_start;
            loop {
                let waiter = if first {
                    first = false;
                    None
                } else {
                    tokio::select! {
                        _ = cancel.changed() => return,
                        t = trigger_rx.recv() => match t {
                            Some(w) => w,
                            None => return,
                        },
                        _ = tokio::time::sleep(interval.next_wait()) => {
                            if *paused_rx.borrow() {
                                continue;
                            }
                            None
                        }
                    }
                };
                if *cancel.borrow() {
                    return;
                }
                {
                    let mut s = shared.status();
                    s.running = true;
                    s.last_start_ms = Some(now_ms());
                }
                let started = std::time::Instant::now();
                // Each run is one traced piece of work: what it asks of other
                // processes carries its request id.
                let result = tokio::select! {
                    r = orbit_telemetry::traced(&worker_name, job()) => r,
                    _ = cancel.changed() => return,
                };
                let m = &*METRICS;
                m.seconds
                    .get_or_create(&[("worker", worker_name.clone())])
                    .observe(started.elapsed().as_secs_f64());
                m.runs
                    .get_or_create(&[
                        ("worker", worker_name.clone()),
                        ("result", if result.is_ok() { "ok" } else { "error" }.into()),
                    ])
                    .inc();
                {
                    let mut s = shared.status();
                    s.running = false;
                    s.runs += 1;
                    s.last_duration_ms = Some(started.elapsed().as_millis() as u64);
                    match &result {
                        Ok(()) => s.last_error = None,
                        Err(e) => {
                            s.failures += 1;
                            // The first failure after a success (or a new error) is a
                            // warning; the same error again is not news.
                            if s.last_error.as_ref() == Some(e) {
                                tracing::debug!(worker = %worker_name, error = %e, "worker run failed again");
                            } else {
                                tracing::warn!(worker = %worker_name, error = %e, "worker run failed");
                            }
                            s.last_error = Some(e.clone());
                        }
                    }
                }
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
            }
        });
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Entry {
                name: name.to_string(),
                task,
                handle: handle.clone(),
                cancel: cancel_tx,
            });
        handle
    }

    /// The handle of the worker called `name`.
    pub fn handle(&self, name: &str) -> Option<Handle> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.handle.clone())
    }

    /// The status of every worker, in start order.
    pub fn statuses(&self) -> Vec<Status> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| e.handle.status())
            .collect()
    }

    /// Stops every worker, the last started first; one still running after
    /// `deadline` is aborted. Returns the names of those that were aborted.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        let workers: Vec<Entry> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let end = tokio::time::Instant::now() + deadline;
        let mut aborted = Vec::new();
        for mut e in workers.into_iter().rev() {
            let _ = e.cancel.send(true);
            if tokio::time::timeout_at(end, &mut e.task).await.is_err() {
                e.task.abort();
                tracing::warn!(worker = %e.name, "worker aborted: it did not stop in time");
                aborted.push(e.name);
            } else {
                tracing::debug!(worker = %e.name, "worker stopped");
            }
        }
        aborted
    }
}

impl Drop for Group {
    /// A group dropped without [`Group::shutdown`] aborts its workers: none outlives
    /// its owner.
    fn drop(&mut self) {
        for e in self
            .workers
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            e.task.abort();
        }
    }
}

/// Boxes a job's future: `group.spawn("x", iv, move || job(async move { … }))`.
pub fn job<F>(f: F) -> JobFuture
where
    F: Future<Output = JobResult> + Send + 'static,
{
    Box::pin(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn trigger_wait_runs_once_and_reports() {
        let g = Group::new();
        let n = Arc::new(AtomicU64::new(0));
        let c = n.clone();
        let h = g.spawn(
            "count",
            Interval::every(Duration::from_secs(3600)),
            move || {
                let c = c.clone();
                job(async move {
                    let v = c.fetch_add(1, Ordering::SeqCst) + 1;
                    if v == 2 {
                        Err("second run fails".into())
                    } else {
                        Ok(())
                    }
                })
            },
        );
        assert_eq!(h.trigger_wait().await, Ok(()));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(h.trigger_wait().await, Err("second run fails".into()));
        let s = h.status();
        assert_eq!((s.runs, s.failures), (2, 1));
        assert_eq!(s.last_error.as_deref(), Some("second run fails"));
        h.trigger_wait().await.unwrap();
        assert_eq!(h.status().last_error, None);
        assert_eq!(g.statuses().len(), 1);
        assert!(g.shutdown(Duration::from_secs(1)).await.is_empty());
        assert!(
            h.trigger_wait().await.is_err(),
            "a stopped worker runs nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interval_runs_and_pause_skips_them_but_not_triggers() {
        let g = Group::new();
        let n = Arc::new(AtomicU64::new(0));
        let c = n.clone();
        let h = g.spawn(
            "tick",
            Interval {
                period: Duration::from_millis(100),
                jitter: Duration::ZERO,
                run_at_start: true,
            },
            move || {
                let c = c.clone();
                job(async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            },
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        let ran = n.load(Ordering::SeqCst);
        assert_eq!(ran, 4, "at start and at 100, 200, 300 ms");
        h.pause();
        assert!(h.status().paused);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(n.load(Ordering::SeqCst), ran, "paused: no interval runs");
        h.trigger_wait().await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), ran + 1);
        h.resume();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(n.load(Ordering::SeqCst) >= ran + 3);
        g.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn shutdown_goes_in_reverse_order_and_drops_runs_in_progress() {
        struct Ends(&'static str, Arc<Mutex<Vec<&'static str>>>);
        impl Drop for Ends {
            fn drop(&mut self) {
                self.1.lock().unwrap().push(self.0);
            }
        }
        let g = Group::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for name in ["first", "second", "third"] {
            let order = order.clone();
            let h = g.spawn(
                name,
                Interval::every(Duration::from_secs(3600)),
                move || {
                    let ends = Ends(name, order.clone());
                    job(async move {
                        let _ends = ends;
                        std::future::pending::<()>().await;
                        Ok(())
                    })
                },
            );
            h.trigger();
            handles.push(h);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(handles.iter().all(|h| h.status().running));
        let aborted = g.shutdown(Duration::from_secs(1)).await;
        assert!(aborted.is_empty(), "{aborted:?}");
        assert_eq!(*order.lock().unwrap(), vec!["third", "second", "first"]);
        assert!(g.statuses().is_empty());
    }
}
