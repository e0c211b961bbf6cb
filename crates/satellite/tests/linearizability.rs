//! Linearizability of get, put and compare-and-swap while members are SIGKILLed and
//! restarted, checked with the Wing–Gong–Lowe checker of `todc-utils` against its
//! etcd register model (the model of Jepsen's etcd test).

mod common;

use orbit_kv::*;
use rand::Rng;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use todc_utils::specifications::etcd::{EtcdOperation, EtcdSpecification, EtcdStatus};
use todc_utils::{Action, History, WGLChecker};

type Op = EtcdOperation;

/// One operation with the logical times it was invoked and answered at.
struct Record {
    process: usize,
    called: u64,
    /// `None`: the outcome is unknown (timeout, crash): it may take effect any time later.
    answered: Option<u64>,
    call: Op,
    response: Op,
}

#[derive(Default)]
struct Recorder {
    clock: AtomicU64,
    records: Mutex<Vec<Record>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn history(&self) -> History<Op> {
        let records = self.records.lock().unwrap();
        let end = u64::MAX / 2;
        let mut events: Vec<(u64, usize, Action<Op>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            events.push((r.called, r.process, Action::Call(r.call)));
            // Unknown outcomes answer after everything else, in call order.
            let at = r.answered.unwrap_or(end + i as u64);
            events.push((at, r.process, Action::Response(r.response)));
        }
        events.sort_by_key(|e| e.0);
        History::from_actions(events.into_iter().map(|(_, p, a)| (p, a)).collect())
    }
}

fn value_of(kv: Option<KeyValue>) -> Option<u32> {
    kv.map(|k| {
        String::from_utf8_lossy(&k.value)
            .parse()
            .expect("numeric values")
    })
}

/// A request refused before it reached any member (its member is down) did nothing;
/// leaving it out keeps the checker's search small. Anything else is in doubt.
fn never_sent(e: &KvError) -> bool {
    let m = e.to_string();
    m.contains("tcp connect error") || m.contains("Connection refused")
}

async fn client(
    kv: RemoteKv,
    key: String,
    id: u32,
    rec: Arc<Recorder>,
    processes: Arc<AtomicUsize>,
    until: Instant,
) {
    let mut process = processes.fetch_add(1, Ordering::SeqCst);
    let mut seq = 0u32;
    let mut last_seen: Option<u32> = None;
    while Instant::now() < until {
        seq += 1;
        let fresh = id * 1_000_000 + seq;
        let choice = rand::thread_rng().gen_range(0..3);
        let called = rec.now();
        let timeout = Duration::from_secs(2);
        let (call, outcome): (Op, Option<Op>) = match choice {
            0 => {
                let r =
                    tokio::time::timeout(timeout, kv.range(RangeRequest::key(key.clone()))).await;
                match r {
                    Ok(Ok(r)) => {
                        let v = value_of(r.kvs.into_iter().next());
                        last_seen = v;
                        (
                            Op::Read(EtcdStatus::Invoke, None),
                            Some(Op::Read(EtcdStatus::Okay, v)),
                        )
                    }
                    // A failed read changes nothing: leave it out of the history.
                    _ => continue,
                }
            }
            1 => {
                let r = tokio::time::timeout(
                    timeout,
                    kv.put(PutRequest::new(key.clone(), fresh.to_string())),
                )
                .await;
                let call = Op::Write(EtcdStatus::Invoke, fresh);
                match r {
                    Ok(Ok(_)) => (call, Some(Op::Write(EtcdStatus::Okay, fresh))),
                    Ok(Err(e)) if never_sent(&e) => continue,
                    _ => (call, None),
                }
            }
            _ => {
                let expect = last_seen.unwrap_or(0);
                let txn = TxnRequest {
                    compare: vec![Compare::new(
                        key.clone(),
                        CompareOp::Equal,
                        CompareTarget::Value(expect.to_string().into_bytes()),
                    )],
                    success: vec![TxnOp::Put(PutRequest::new(key.clone(), fresh.to_string()))],
                    failure: vec![],
                };
                let r = tokio::time::timeout(timeout, kv.txn(txn)).await;
                let call = Op::CompareAndSwap(EtcdStatus::Invoke, (expect, fresh));
                match r {
                    Ok(Ok(t)) if t.succeeded => (
                        call,
                        Some(Op::CompareAndSwap(EtcdStatus::Okay, (expect, fresh))),
                    ),
                    Ok(Ok(_)) => (
                        call,
                        Some(Op::CompareAndSwap(EtcdStatus::Fail, (expect, fresh))),
                    ),
                    Ok(Err(e)) if never_sent(&e) => continue,
                    _ => (call, None),
                }
            }
        };
        let answered = outcome.is_some().then(|| rec.now());
        let response = outcome.unwrap_or(match call {
            Op::Write(_, v) => Op::Write(EtcdStatus::Unknown, v),
            Op::CompareAndSwap(_, cs) => Op::CompareAndSwap(EtcdStatus::Unknown, cs),
            read => read,
        });
        rec.records.lock().unwrap().push(Record {
            process,
            called,
            answered,
            call,
            response,
        });
        if answered.is_none() {
            // A process with an operation in doubt never invokes another.
            process = processes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_put_cas_stay_linearizable_while_members_are_killed() {
    let mut c = common::start(3).await;
    let keys = ["lin/a", "lin/b"];
    let recorders: Vec<Arc<Recorder>> = keys.iter().map(|_| Arc::default()).collect();
    let processes = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        for i in 0..3u32 {
            // Each client talks to one member: followers forward and read through the leader.
            let kv = c.client_of(i as usize).await;
            tasks.push(tokio::spawn(client(
                kv,
                key.to_string(),
                k as u32 * 10 + i + 1,
                recorders[k].clone(),
                processes.clone(),
                until,
            )));
        }
    }
    // Nemesis: kill a random member, restart it a moment later.
    while Instant::now() + Duration::from_millis(2500) < until {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let victim = rand::thread_rng().gen_range(0..3);
        c.kill(victim);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c.spawn(victim);
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (k, rec) in recorders.iter().enumerate() {
        let n = rec.records.lock().unwrap().len();
        let unknown = rec
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered.is_none())
            .count();
        let ok = rec
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered.is_some() && !matches!(r.call, Op::Read(..)))
            .count();
        eprintln!(
            "{}: {n} operations ({ok} completed writes/CAS, {unknown} in doubt)",
            keys[k]
        );
        assert!(ok > 10, "too few completed writes to say anything");
        // The search is exponential in the operations in doubt; bound it so a bad
        // run fails instead of hanging CI.
        let history = rec.history();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(WGLChecker::<EtcdSpecification>::is_linearizable(history));
        });
        let verdict = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("the linearizability check did not finish in 180 s");
        assert!(verdict, "history of {} is not linearizable", keys[k]);
    }
}

#[test]
fn the_checker_rejects_a_stale_read() {
    // Control: a read that misses a completed write must be caught.
    let rec = Recorder::default();
    let push = |p, call, response| {
        let called = rec.now();
        let answered = Some(rec.now());
        rec.records.lock().unwrap().push(Record {
            process: p,
            called,
            answered,
            call,
            response,
        });
    };
    push(
        0,
        Op::Write(EtcdStatus::Invoke, 1),
        Op::Write(EtcdStatus::Okay, 1),
    );
    push(
        1,
        Op::Read(EtcdStatus::Invoke, None),
        Op::Read(EtcdStatus::Okay, None),
    );
    assert!(!WGLChecker::<EtcdSpecification>::is_linearizable(
        rec.history()
    ));
}
