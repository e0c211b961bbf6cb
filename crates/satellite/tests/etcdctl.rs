//! Debian's etcdctl (3.4) against a 3-member orbit cluster of real processes: the
//! commands behave as they do against etcd.

mod common;

use common::*;
use orbit_kv::Kv;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs etcdctl against `endpoints`; returns stdout, panicking with stderr on failure.
fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    etcdctl_input(endpoints, args, None)
}

fn etcdctl_input(endpoints: &str, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed (scripts/setup.sh installs Debian's etcd-client)");
    if let Some(i) = input {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Some commands (endpoint health) report on stderr.
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

/// Endpoints as etcdctl takes them. `host:port` without the scheme: etcdctl 3.4 sends
/// the whole URL as the HTTP/2 authority for some commands, which the h2 server refuses.
fn hostports(c: &ProcCluster) -> String {
    c.members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_kv_txn_lease_watch_and_cluster_commands() {
    let c = common::start(3).await;
    let all = hostports(&c);
    let ep = all.clone();
    let one = format!("127.0.0.1:{}", c.members[1].client);
    tokio::task::spawn_blocking(move || {
        // put / get / prefix / limit / revision / del
        assert_eq!(etcdctl(&ep, &["put", "fruit/apple", "red"]).trim(), "OK");
        assert_eq!(etcdctl(&one, &["put", "fruit/banana", "yellow"]).trim(), "OK");
        etcdctl(&ep, &["put", "fruit/cherry", "dark"]);
        assert_eq!(etcdctl(&one, &["get", "fruit/apple"]), "fruit/apple\nred\n");
        assert_eq!(
            etcdctl(&ep, &["get", "fruit/", "--prefix", "--keys-only"]),
            "fruit/apple\n\nfruit/banana\n\nfruit/cherry\n\n"
        );
        assert_eq!(
            etcdctl(&ep, &["get", "fruit/", "--prefix", "--limit=1"]),
            "fruit/apple\nred\n"
        );
        let json = etcdctl(&ep, &["get", "fruit/apple", "-w", "json"]);
        let rev: i64 = json
            .split("\"mod_revision\":")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .expect("mod_revision in json");
        etcdctl(&ep, &["put", "fruit/apple", "green"]);
        assert_eq!(
            etcdctl(&ep, &["get", "fruit/apple", &format!("--rev={rev}")]),
            "fruit/apple\nred\n"
        );
        assert_eq!(etcdctl(&one, &["del", "fruit/cherry"]).trim(), "1");
        assert_eq!(etcdctl(&ep, &["get", "fruit/cherry"]), "");

        // txn: compare, success and failure branches.
        let out = etcdctl_input(
            &ep,
            &["txn"],
            Some("value(\"fruit/apple\") = \"green\"\n\nput fruit/verdict ripe\n\nput fruit/verdict raw\n\n"),
        );
        assert!(out.starts_with("SUCCESS"), "{out}");
        assert_eq!(etcdctl(&ep, &["get", "fruit/verdict", "--print-value-only"]).trim(), "ripe");
        let out = etcdctl_input(
            &ep,
            &["txn"],
            Some("value(\"fruit/apple\") = \"red\"\n\nput fruit/verdict ripe\n\nput fruit/verdict raw\n\n"),
        );
        assert!(out.starts_with("FAILURE"), "{out}");
        assert_eq!(etcdctl(&ep, &["get", "fruit/verdict", "--print-value-only"]).trim(), "raw");

        // leases: grant, attach, keep-alive once, time to live, expiry.
        let out = etcdctl(&ep, &["lease", "grant", "3"]);
        let id = out.split_whitespace().nth(1).expect("lease id").to_string();
        assert!(out.contains("granted with TTL(3s)"), "{out}");
        etcdctl(&ep, &["put", "ephemeral", "x", &format!("--lease={id}")]);
        let out = etcdctl(&one, &["lease", "keep-alive", "--once", &id]);
        assert!(out.contains("keepalived with TTL(3)"), "{out}");
        let out = etcdctl(&ep, &["lease", "timetolive", &id, "--keys"]);
        assert!(out.contains("attached keys([ephemeral])"), "{out}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !etcdctl(&ep, &["get", "ephemeral"]).is_empty() {
            assert!(Instant::now() < deadline, "lease never expired");
            std::thread::sleep(Duration::from_millis(300));
        }
        let out = etcdctl(&ep, &["lease", "timetolive", &id]);
        assert!(out.contains("already expired"), "{out}");

        // member list, endpoint status and health.
        let out = etcdctl(&ep, &["member", "list"]);
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.lines().all(|l| l.contains("started")), "{out}");
        for name in ["m0", "m1", "m2"] {
            assert!(out.contains(name), "{out}");
        }
        let out = etcdctl(&ep, &["endpoint", "status"]);
        assert_eq!(out.lines().count(), 3, "{out}");
        assert_eq!(out.matches(", true, false,").count(), 1, "exactly one leader: {out}");
        let out = etcdctl(&ep, &["endpoint", "health"]);
        assert_eq!(out.matches("is healthy").count(), 3, "{out}");
    })
    .await
    .unwrap();

    // watch: a prefix from a past revision, then live events.
    let ep = all.clone();
    let watcher = std::thread::spawn(move || {
        let out = Command::new("timeout")
            .args(["8", "etcdctl"])
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(["watch", "fruit/apple", "--rev=1"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ep = all.clone();
    tokio::task::spawn_blocking(move || etcdctl(&ep, &["put", "fruit/apple", "gone"]))
        .await
        .unwrap();
    let out = watcher.join().unwrap();
    assert_eq!(
        out, "PUT\nfruit/apple\nred\nPUT\nfruit/apple\ngreen\nPUT\nfruit/apple\ngone\n",
        "watch saw history then the live put"
    );

    // alarms: one raised through the API, listed and disarmed by etcdctl.
    let kv = c.client().await;
    let member = kv.members().await.unwrap()[0].id;
    kv.alarm(
        orbit_kv::AlarmAction::Activate,
        member,
        orbit_kv::AlarmType::NoSpace,
    )
    .await
    .unwrap();
    let ep = all.clone();
    tokio::task::spawn_blocking(move || {
        let out = etcdctl(&ep, &["alarm", "list"]);
        assert!(
            out.contains(&format!("memberID:{member}")) && out.contains("alarm:NOSPACE"),
            "{out}"
        );
        let out = etcdctl(&ep, &["endpoint", "status"]);
        assert!(out.contains("alarm:NOSPACE"), "{out}");
        etcdctl(&ep, &["alarm", "disarm"]);
        assert_eq!(etcdctl(&ep, &["alarm", "list"]), "");
        assert_eq!(etcdctl(&ep, &["put", "after/alarm", "x"]).trim(), "OK");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_member_add_promote_and_remove() {
    let mut c = common::start(3).await;
    let ep = hostports(&c);
    // A fourth member, as etcd's runtime reconfiguration does it: add, then start it
    // with --initial-cluster-state existing.
    let client = orbit_testkit::free_port();
    let peer = orbit_testkit::free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let e = ep.clone();
    let p = peer_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        etcdctl(&e, &["member", "add", "m3", &format!("--peer-urls={p}")])
    })
    .await
    .unwrap();
    assert!(out.contains("Member") && out.contains("added"), "{out}");
    let initial = format!(
        "{},m3={peer_url}",
        c.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut args = c.members[0].args.clone();
    let set = |args: &mut Vec<String>, flag: &str, v: String| {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = v;
    };
    set(&mut args, "--name", "m3".into());
    set(
        &mut args,
        "--client-url",
        format!("http://127.0.0.1:{client}"),
    );
    set(&mut args, "--peer-url", peer_url.clone());
    set(&mut args, "--initial-cluster", initial);
    set(
        &mut args,
        "--data-dir",
        c.dir.path().join("m3").display().to_string(),
    );
    args.push("--initial-cluster-state".into());
    args.push("existing".into());
    c.members.push(Member {
        name: "m3".into(),
        client,
        peer,
        args,
    });
    c.procs.push(None);
    c.spawn(3);

    // It starts, catches up, and becomes a voter; every member lists it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = ep.clone();
        let out = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
            .await
            .unwrap();
        if out.lines().count() == 4
            && out.contains(", started, m3,")
            && out.contains(", false\n")
            && !out.contains("true")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m3 never became a started voter: {out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let new_ep = format!("127.0.0.1:{client}");
    let out = tokio::task::spawn_blocking(move || {
        etcdctl(&new_ep, &["put", "via-new", "member"]);
        etcdctl(&new_ep, &["get", "via-new", "--print-value-only"])
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "member");

    // Remove it again; its id is gone from the list.
    let e = ep.clone();
    let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
        .await
        .unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(", m3,"))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    let e = ep.clone();
    let out = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "remove", &id]))
        .await
        .unwrap();
    assert!(out.contains("removed"), "{out}");
    c.kill(3);
    let e = ep.clone();
    let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
        .await
        .unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");
    c.wait_writable(Duration::from_secs(10)).await;

    // The removed member comes back on its old data dir: the others refuse it, and the
    // cluster keeps taking writes undisturbed.
    c.spawn(3);
    let kv = orbit_kv::RemoteKv::connect(&c.endpoints()[..3])
        .await
        .unwrap();
    for i in 0..20 {
        kv.put(orbit_kv::PutRequest::new(format!("after-removal/{i}"), "v"))
            .await
            .expect("writes keep working while a removed member runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = ep.clone();
    let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
        .await
        .unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");
}

/// A long-running etcdctl (elect, lock) whose output lines arrive on a channel.
struct Contender {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Contender {
    fn spawn(endpoints: &str, args: &[&str]) -> Contender {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl is installed");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Contender { child, lines }
    }

    /// The first line it prints within `wait`, if any.
    fn first_line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Asks it to stop as a user's Ctrl-C does: it resigns or unlocks on the way out.
    fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two contenders for one election, and for one lock: the first wins at once, the
/// second only after the first lets go (the recipes read with Range's revision
/// filters and wait with watches).
fn two_contenders(endpoints: &str, first: &[&str], second: &[&str]) -> (String, String) {
    let a = Contender::spawn(endpoints, first);
    let won = a
        .first_line(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("etcdctl {first:?} never reported itself the winner"));
    let b = Contender::spawn(endpoints, second);
    assert_eq!(
        b.first_line(Duration::from_secs(2)),
        None,
        "etcdctl {second:?} won while the first still held it"
    );
    a.interrupt();
    let next = b
        .first_line(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("etcdctl {second:?} did not win after the first let go"));
    (won, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_elect_and_lock_with_two_contenders() {
    let c = common::start(3).await;
    let ep = hostports(&c);
    tokio::task::spawn_blocking(move || {
        let (a, b) = two_contenders(
            &ep,
            &["elect", "leader-demo", "first"],
            &["elect", "leader-demo", "second"],
        );
        assert!(a.starts_with("leader-demo/"), "{a}");
        assert!(b.starts_with("leader-demo/") && a != b, "{a} then {b}");
        let (a, b) = two_contenders(&ep, &["lock", "lock-demo"], &["lock", "lock-demo"]);
        assert!(a.starts_with("lock-demo/"), "{a}");
        assert!(b.starts_with("lock-demo/") && a != b, "{a} then {b}");
    })
    .await
    .unwrap();

    // The server's Lock service and etcdctl's client-side lock contend for one lock:
    // etcdctl waits while the Lock RPC's holder holds it, and wins once it unlocks.
    let mut client = etcd_client::Client::connect(c.endpoints(), None)
        .await
        .unwrap();
    let lease = client.lease_grant(60, None).await.unwrap().id();
    let held = client
        .lock(
            "mixed",
            Some(etcd_client::LockOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    let ep = hostports(&c);
    let waiting = tokio::task::spawn_blocking(move || {
        let b = Contender::spawn(&ep, &["lock", "mixed"]);
        assert_eq!(
            b.first_line(Duration::from_secs(2)),
            None,
            "etcdctl took a lock the Lock service had granted"
        );
        b
    })
    .await
    .unwrap();
    client.unlock(held.key()).await.unwrap();
    let won = tokio::task::spawn_blocking(move || waiting.first_line(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(
        won.as_deref().is_some_and(|l| l.starts_with("mixed/")),
        "etcdctl never got the lock after the Lock service's holder unlocked: {won:?}"
    );
}

/// `etcdctl args` that must fail; what it printed.
fn etcdctl_refused(endpoints: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "etcdctl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_member_update_moves_a_member_to_a_new_peer_url() {
    let mut c = common::start(3).await;
    let ep = hostports(&c);
    let e = ep.clone();
    let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
        .await
        .unwrap();
    let id_of = |list: &str, name: &str| {
        list.lines()
            .find(|l| l.contains(&format!(", {name},")))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_string()
    };
    let id = id_of(&list, "m2");
    let other_peer = format!("http://127.0.0.1:{}", c.members[0].peer);
    let moved = orbit_testkit::free_port();
    let moved_url = format!("http://127.0.0.1:{moved}");

    // Refused: an unknown member, and a URL another member has.
    let (e, i, o) = (ep.clone(), id.clone(), other_peer.clone());
    let (unknown, taken) = tokio::task::spawn_blocking(move || {
        (
            etcdctl_refused(
                &e,
                &[
                    "member",
                    "update",
                    "1234abcd",
                    "--peer-urls=http://127.0.0.1:1",
                ],
            ),
            etcdctl_refused(&e, &["member", "update", &i, &format!("--peer-urls={o}")]),
        )
    })
    .await
    .unwrap();
    assert!(unknown.contains("member not found"), "{unknown}");
    assert!(taken.contains("Peer URLs already exists"), "{taken}");

    // m2 moves: the membership says so, then m2 restarts on the new URL.
    let (e, i, u) = (ep.clone(), id.clone(), moved_url.clone());
    let out = tokio::task::spawn_blocking(move || {
        etcdctl(&e, &["member", "update", &i, &format!("--peer-urls={u}")])
    })
    .await
    .unwrap();
    assert!(out.contains("updated"), "{out}");
    c.kill(2);
    let kv = c.client_of(0).await;
    for i in 0..50 {
        kv.put(orbit_kv::PutRequest::new(format!("while-moving/{i}"), "v"))
            .await
            .unwrap();
    }
    // Its flags say the new URL too (an existing data dir ignores the rest of
    // --initial-cluster, as etcd's).
    let old_url = format!("http://127.0.0.1:{}", c.members[2].peer);
    let args = &mut c.members[2].args;
    let at = args.iter().position(|a| a == "--peer-url").unwrap();
    args[at + 1] = moved_url.clone();
    let at = args.iter().position(|a| a == "--initial-cluster").unwrap();
    args[at + 1] = args[at + 1].replace(&old_url, &moved_url);
    c.members[2].peer = moved;
    c.spawn(2);

    // It catches up on its new URL: a linearizable read through it sees every write,
    // and every member lists the new URL.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = match c
            .client_of(2)
            .await
            .range(orbit_kv::RangeRequest::prefix("while-moving/"))
            .await
        {
            Ok(r) => r.kvs.len(),
            Err(_) => 0,
        };
        if seen == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the moved member never caught up ({seen} of 50)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3 {
        let e = format!("127.0.0.1:{}", c.members[i].client);
        let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
            .await
            .unwrap();
        assert!(
            list.contains(&format!(", m2, {moved_url},")),
            "member {i}: {list}"
        );
        assert_eq!(id_of(&list, "m2"), id, "the member keeps its id");
    }
    c.client_of(2)
        .await
        .put(orbit_kv::PutRequest::new("after-move", "v"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_move_leader_hands_the_lead_over_while_writes_go_on() {
    let c = common::start(3).await;
    let ep = hostports(&c);
    let leader = c.leader().await.expect("a leader");
    let target = (leader + 1) % 3;
    let e = ep.clone();
    let list = tokio::task::spawn_blocking(move || etcdctl(&e, &["member", "list"]))
        .await
        .unwrap();
    let id_of = |name: &str| {
        list.lines()
            .find(|l| l.contains(&format!(", {name},")))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_string()
    };
    let target_id = id_of(&c.members[target].name);

    // Not a member: etcd's error, and the leader stays.
    let e = ep.clone();
    let bad =
        tokio::task::spawn_blocking(move || etcdctl_refused(&e, &["move-leader", "1234abcd"]))
            .await
            .unwrap();
    assert!(bad.contains("bad leader transferee"), "{bad}");
    assert_eq!(c.leader().await, Some(leader));

    // Writes go on through the transfer: each waits while the leader keeps quiet,
    // then goes to the new one; none fails.
    let kv = orbit_kv::RemoteKv::connect(&c.endpoints()).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (kv, stop) = (kv.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                kv.put(orbit_kv::PutRequest::new(format!("moving/{n:05}"), "v"))
                    .await
                    .expect("a write during the transfer");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (e, t) = (ep.clone(), target_id.clone());
    let out = tokio::task::spawn_blocking(move || etcdctl(&e, &["move-leader", &t]))
        .await
        .unwrap();
    assert!(
        out.contains("Leadership transferred") && out.contains(&target_id),
        "{out}"
    );
    assert_eq!(c.leader().await, Some(target), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    let got = kv
        .range(orbit_kv::RangeRequest::prefix("moving/"))
        .await
        .unwrap();
    assert_eq!(got.kvs.len(), written, "every acknowledged write is there");
    // Moving it to the leader itself changes nothing.
    let (e, t) = (ep.clone(), target_id.clone());
    tokio::task::spawn_blocking(move || etcdctl(&e, &["move-leader", &t]))
        .await
        .unwrap();
    assert_eq!(c.leader().await, Some(target));
}
