//! Authentication and roles: the same steps, through etcd-client, against a 3-member
//! orbit cluster and a real 3-member etcd (Debian's 3.4) must give equal transcripts:
//! enabling auth, users, roles, permissions on keys and ranges (reads, writes,
//! transactions, deletes, leases, watches), what a user may see of users and roles,
//! admin-only requests, token expiry, tokens voided by a password change, errors for
//! every misuse, and auth disable.

use etcd_client::{
    Client, ConnectOptions, DeleteOptions, Error, GetOptions, Permission, PutOptions,
    RoleRevokePermissionOptions, Txn, TxnOp, WatchOptions,
};
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use std::time::Duration;

/// Tokens last this long on both sides, so the expiry step is short.
const TOKEN_TTL_S: u64 = 3;

/// An error as a user sees it: the gRPC code and etcd's message.
fn err_text(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// The transcript; each line is also printed as it comes (a hang shows where).
struct Transcript(Vec<String>);

impl Transcript {
    fn push<T>(&mut self, step: &str, r: Result<T, Error>, ok: impl FnOnce(T) -> String) {
        let line = match r {
            Ok(v) => format!("{step}: ok {}", ok(v)),
            Err(e) => format!("{step}: {}", err_text(&e)),
        };
        eprintln!("{line}");
        self.0.push(line);
    }

    /// A step whose answer carries nothing worth comparing.
    fn done<T>(&mut self, step: &str, r: Result<T, Error>) {
        self.push(step, r, |_| String::new())
    }

    /// A step where etcd 3.5 (whose API orbit speaks) refuses what Debian's 3.4 still
    /// allows: recorded apart, and not compared.
    fn newer<T>(&mut self, step: &str, r: Result<T, Error>) {
        self.done(&format!("{NEWER}{step}"), r)
    }
}

/// Marks the steps [`Transcript::newer`] records.
const NEWER: &str = "(3.5) ";

async fn connect(
    endpoints: &[String],
    user: Option<(&str, &str)>,
    refresh: bool,
) -> Result<Client, Error> {
    let mut o = ConnectOptions::new().with_auto_token_refresh(refresh);
    if let Some((u, p)) = user {
        o = o.with_user(u, p);
    }
    Client::connect(endpoints, Some(o)).await
}

/// The first answer of a new watch: created, and refused with its reason or not.
async fn watch_answer(c: &mut Client, key: &str, prefix: bool) -> Result<String, Error> {
    let opts = prefix.then(|| WatchOptions::new().with_prefix());
    let mut s = c.watch(key, opts).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .map_err(|_| Error::WatchError("no answer".into()))??
        .ok_or_else(|| Error::WatchError("stream ended".into()))?;
    Ok(format!(
        "created {} canceled {} {:?}",
        first.created(),
        first.canceled(),
        first.cancel_reason()
    ))
}

fn value(r: etcd_client::GetResponse) -> String {
    r.kvs()
        .iter()
        .map(|kv| format!("{}={}", kv.key_str().unwrap(), kv.value_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",")
}

async fn suite(ep: Vec<String>) -> Vec<String> {
    let mut t = Transcript(Vec::new());
    let mut open = connect(&ep, None, false).await.unwrap();

    // Enabling needs root with the root role.
    t.done("enable without root", open.auth_enable().await);
    t.done("add root", open.user_add("root", "rootpw", None).await);
    t.done("enable without the root role", open.auth_enable().await);
    t.done(
        "grant root root",
        open.user_grant_role("root", "root").await,
    );
    t.done("put before enable", open.put("before", "1", None).await);
    t.done("enable", open.auth_enable().await);

    // Without a user nothing is served; a wrong password is refused.
    t.push("get without a user", open.get("before", None).await, value);
    t.done("put without a user", open.put("x", "1", None).await);
    t.done(
        "add user without a user",
        open.user_add("eve", "pw", None).await,
    );
    let wrong = connect(&ep, Some(("root", "nope")), false).await;
    t.done("root with a wrong password", wrong.map(|_| ()));
    let unknown = connect(&ep, Some(("nobody", "pw")), false).await;
    t.done("an unknown user", unknown.map(|_| ()));

    // Root lays out a role and its users.
    let mut root = connect(&ep, Some(("root", "rootpw")), true).await.unwrap();
    t.push("root reads", root.get("before", None).await, value);
    t.done("add role app", root.role_add("app").await);
    t.done("add role app again", root.role_add("app").await);
    t.done("add role with no name", root.role_add("").await);
    let rw = Permission::read_write("app/").with_prefix();
    t.done(
        "grant app rw app/",
        root.role_grant_permission("app", rw).await,
    );
    let shared = Permission::read("shared");
    t.done(
        "grant app read shared",
        root.role_grant_permission("app", shared).await,
    );
    let bad = Permission::read("b").with_range_end("a");
    // On a role of its own: etcd 3.4 keeps the range, which would show below.
    t.done("add role spare", root.role_add("spare").await);
    t.newer(
        "grant a backwards range",
        root.role_grant_permission("spare", bad).await,
    );
    t.done("delete role spare", root.role_delete("spare").await);
    let to_none = Permission::read("k");
    t.done(
        "grant to no role",
        root.role_grant_permission("none", to_none).await,
    );
    t.done("add alice", root.user_add("alice", "alicepw", None).await);
    t.done("add alice again", root.user_add("alice", "x", None).await);
    t.done("add bob", root.user_add("bob", "bobpw", None).await);
    t.done(
        "grant alice app",
        root.user_grant_role("alice", "app").await,
    );
    t.done(
        "grant alice no role",
        root.user_grant_role("alice", "none").await,
    );
    t.done(
        "grant nobody app",
        root.user_grant_role("nobody", "app").await,
    );
    t.done(
        "revoke bob's missing role",
        root.user_revoke_role("bob", "app").await,
    );
    t.done(
        "revoke root's root role",
        root.user_revoke_role("root", "root").await,
    );
    t.done("delete root", root.user_delete("root").await);
    t.done("delete a missing user", root.user_delete("nobody").await);
    t.done("put other", root.put("other", "secret", None).await);
    t.done("put shared", root.put("shared", "s", None).await);
    t.push("list users", root.user_list().await, |r| {
        r.users().join(",")
    });
    t.push("list roles", root.role_list().await, |r| {
        r.roles().join(",")
    });
    t.push("get role app", root.role_get("app").await, |r| {
        r.permissions()
            .iter()
            .map(|p| {
                format!(
                    "{}:{:?}..{:?}",
                    p.get_type(),
                    p.key_str().unwrap(),
                    p.range_end_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    });

    // Alice: her prefix, the shared key to read, nothing else.
    let mut alice = connect(&ep, Some(("alice", "alicepw")), true)
        .await
        .unwrap();
    t.done("alice puts app/x", alice.put("app/x", "1", None).await);
    t.push("alice gets app/x", alice.get("app/x", None).await, value);
    let prefix = Some(GetOptions::new().with_prefix());
    t.push(
        "alice lists app/",
        alice.get("app/", prefix.clone()).await,
        value,
    );
    t.push(
        "alice lists everything",
        alice.get("", Some(GetOptions::new().with_all_keys())).await,
        value,
    );
    t.push("alice reads shared", alice.get("shared", None).await, value);
    t.done(
        "alice writes shared",
        alice.put("shared", "mine", None).await,
    );
    t.push("alice reads other", alice.get("other", None).await, value);
    t.done("alice writes other", alice.put("other", "mine", None).await);
    t.push(
        "alice reads app/ to other",
        alice
            .get("app/", Some(GetOptions::new().with_range("other")))
            .await,
        value,
    );
    let prev = Some(PutOptions::new().with_prev_key());
    t.done(
        "alice puts shared with prev_kv",
        alice.put("shared", "v", prev).await,
    );
    let ok_txn = Txn::new().and_then([TxnOp::put("app/t", "1", None)]);
    t.push("alice txn in app/", alice.txn(ok_txn).await, |r| {
        r.succeeded().to_string()
    });
    let branch = Txn::new()
        .and_then([TxnOp::put("app/t", "2", None)])
        .or_else([TxnOp::put("other", "x", None)]);
    t.done(
        "alice txn whose other branch writes other",
        alice.txn(branch).await,
    );
    let cmp = Txn::new().when([etcd_client::Compare::value(
        "other",
        etcd_client::CompareOp::Equal,
        "secret",
    )]);
    t.done("alice txn comparing other", alice.txn(cmp).await);
    let del = Some(DeleteOptions::new().with_prev_key());
    t.push(
        "alice deletes app/x with prev_kv",
        alice.delete("app/x", del).await,
        |r| r.deleted().to_string(),
    );
    t.done(
        "alice deletes app/ to other",
        alice
            .delete("app/", Some(DeleteOptions::new().with_range("other")))
            .await,
    );
    t.push(
        "alice watches app/",
        watch_answer(&mut alice, "app/", true).await,
        |s| s,
    );
    t.push(
        "alice watches other",
        watch_answer(&mut alice, "other", false).await,
        |s| s,
    );

    // Leases: hers to use and revoke; one holding root's key she may not revoke.
    let mine = alice.lease_grant(60, None).await.unwrap().id();
    let on_mine = Some(PutOptions::new().with_lease(mine));
    t.done(
        "alice puts on her lease",
        alice.put("app/l", "1", on_mine).await,
    );
    t.push(
        "alice's lease's keys",
        alice
            .lease_time_to_live(
                mine,
                Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
            )
            .await,
        |r| {
            r.keys()
                .iter()
                .map(|k| String::from_utf8_lossy(k).to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    t.done("alice revokes her lease", alice.lease_revoke(mine).await);
    t.push(
        "her lease's key is gone",
        alice.get("app/l", None).await,
        value,
    );
    let roots = root.lease_grant(60, None).await.unwrap().id();
    let on_roots = Some(PutOptions::new().with_lease(roots));
    t.done(
        "root puts other on a lease",
        root.put("other", "leased", on_roots).await,
    );
    t.done(
        "alice revokes root's lease",
        alice.lease_revoke(roots).await,
    );
    let attach = Some(PutOptions::new().with_lease(roots));
    t.done(
        "alice puts on root's lease",
        alice.put("app/y", "1", attach).await,
    );
    t.newer(
        "alice reads root's lease",
        alice.lease_time_to_live(roots, None).await,
    );

    // What a user may see of users and roles, and admin-only requests.
    t.push("alice gets herself", alice.user_get("alice").await, |r| {
        r.roles().join(",")
    });
    t.done("alice gets bob", alice.user_get("bob").await);
    t.done("alice lists users", alice.user_list().await);
    t.push("alice gets her role", alice.role_get("app").await, |r| {
        r.permissions().len().to_string()
    });
    t.done("alice gets role root", alice.role_get("root").await);
    t.done("alice adds a user", alice.user_add("eve", "pw", None).await);
    t.newer("alice compacts", alice.compact(1, None).await);
    t.done("alice disables auth", alice.auth_disable().await);
    t.done("alice asks status", alice.status().await);

    // A token dies when it is not used for its TTL (etcd's simple tokens) or at its
    // expiry (orbit's): either way, one left idle past it is refused.
    let mut idle = connect(&ep, Some(("bob", "bobpw")), false).await.unwrap();
    t.push("bob reads before", idle.get("app/t", None).await, value);
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL_S + 3)).await;
    t.done("bob's idle token", idle.get("app/t", None).await);

    // A password change voids the user's tokens; only the new password works.
    let mut held = connect(&ep, Some(("alice", "alicepw")), false)
        .await
        .unwrap();
    t.push("alice's token before", held.get("app/t", None).await, value);
    t.done(
        "change alice's password",
        root.user_change_password("alice", "newpw").await,
    );
    t.done("alice's token after", held.get("app/t", None).await);
    let old = connect(&ep, Some(("alice", "alicepw")), false).await;
    t.done("alice with the old password", old.map(|_| ()));
    let mut renewed = connect(&ep, Some(("alice", "newpw")), false).await.unwrap();
    t.push(
        "alice with the new password",
        renewed.get("app/t", None).await,
        value,
    );

    // Taking permissions away.
    let opts = Some(RoleRevokePermissionOptions::new().with_prefix());
    t.done(
        "revoke app/ from app",
        root.role_revoke_permission("app", "app/", opts.clone())
            .await,
    );
    t.done(
        "revoke it again",
        root.role_revoke_permission("app", "app/", opts).await,
    );
    t.done(
        "alice writes app/ after",
        renewed.put("app/z", "1", None).await,
    );
    t.push(
        "alice reads shared after",
        renewed.get("shared", None).await,
        value,
    );
    t.done(
        "revoke app from alice",
        root.user_revoke_role("alice", "app").await,
    );
    t.done(
        "alice reads shared without the role",
        renewed.get("shared", None).await,
    );
    t.done("delete role app", root.role_delete("app").await);
    t.done("delete role app again", root.role_delete("app").await);
    t.done("delete alice", root.user_delete("alice").await);
    t.done(
        "alice's token after her deletion",
        renewed.get("shared", None).await,
    );

    // Disabling: everyone is served again.
    t.done("root disables auth", root.auth_disable().await);
    t.push(
        "get without a user after",
        open.get("other", None).await,
        value,
    );
    t.done("delete root after disable", open.user_delete("root").await);
    t.push("users left", open.user_list().await, |r| {
        r.users().join(",")
    });
    t.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_behaves_as_etcds() {
    let orbit =
        OrbitCluster::start_configured(3, Timings::FAST, |c| c.auth_token_ttl_s = TOKEN_TTL_S)
            .await;
    let ours = suite(orbit.endpoints()).await;
    let ttl = format!("--auth-token-ttl={TOKEN_TTL_S}");
    let etcd = EtcdCluster::start_with(3, &[&ttl]).await;
    let theirs = suite(etcd.endpoints()).await;
    let compared = |t: &[String]| -> Vec<String> {
        t.iter()
            .filter(|l| !l.starts_with(NEWER))
            .cloned()
            .collect()
    };
    let (ours_compared, theirs) = (compared(&ours), compared(&theirs));
    let diff: Vec<String> = ours_compared
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("orbit: {a}\netcd:  {b}"))
        .collect();
    assert!(
        diff.is_empty(),
        "orbit differs from etcd:\n{}",
        diff.join("\n")
    );
    assert_eq!(ours_compared.len(), theirs.len());
    // The steps that must be refused are, on both.
    for (step, want) in [
        ("get without a user", "user name is empty"),
        ("alice writes other", "permission denied"),
        ("alice watches other", "canceled true"),
        ("bob's idle token", "invalid auth token"),
        ("alice's token after:", "invalid auth token"),
        ("alice with the old password", "authentication failed"),
        // What etcd 3.5 refuses and 3.4 did not, orbit refuses.
        ("(3.5) grant a backwards range", "invalid auth management"),
        ("(3.5) alice reads root's lease", "permission denied"),
        ("(3.5) alice compacts", "permission denied"),
    ] {
        let line = ours.iter().find(|l| l.starts_with(step)).unwrap();
        assert!(line.contains(want), "{line}");
    }
}
