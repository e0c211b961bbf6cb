//! etcd's JSON gateway through plain HTTP/1.1 with curl: the same requests against a
//! 3-member orbit cluster and a real 3-member etcd (Debian's) give the same answers
//! (member ids and terms aside, revisions relative to the start), and orbit's equal
//! what gRPC reads. The auth routes too: users, roles, enable, `/v3/auth/authenticate`
//! and its token in the `Authorization` header.

use orbit_kv::{Kv, RangeRequest};
use orbit_testkit::{EtcdCluster, OrbitCluster, Timings};
use serde_json::{json, Value};
use std::process::Command;

/// `curl -X POST URL/path -d body`, parsed (one JSON value per line for streams).
fn curl(url: &str, path: &str, body: &Value, max_s: Option<&str>) -> Vec<Value> {
    curl_with(url, path, body, max_s, None)
}

/// [`curl`] with etcd's `Authorization: TOKEN` header.
fn curl_with(
    url: &str,
    path: &str,
    body: &Value,
    max_s: Option<&str>,
    token: Option<&str>,
) -> Vec<Value> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--http1.1", "-X", "POST"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: {t}")]);
    }
    if let Some(s) = max_s {
        c.args(["-N", "--max-time", s]);
    }
    let out = c
        .arg(format!("{url}{path}"))
        .args(["-d", &body.to_string()])
        .output()
        .expect("curl");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}")))
        .collect()
}

/// `v` without what differs between clusters: member and cluster ids and terms, lease
/// ids; revisions made relative to `base`.
fn normal(v: &Value, base: i64) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    ![
                        "cluster_id",
                        "member_id",
                        "raft_term",
                        "ID",
                        "lease",
                        "token",
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| {
                    let v = if k.ends_with("revision") {
                        let r: i64 = v.as_str().map_or(0, |s| s.parse().unwrap());
                        json!(r - base)
                    } else {
                        normal(v, base)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| normal(x, base)).collect()),
        v => v.clone(),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn steps(url: &str) -> Vec<Value> {
    let start = &curl(url, "/v3/kv/range", &json!({ "key": b64("probe") }), None)[0];
    let base: i64 = start["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    let mut step = |path: &str, body: Value| {
        for v in curl(url, path, &body, None) {
            out.push(json!({ "step": path, "answer": normal(&v, base) }));
        }
    };
    step("/v3/kv/put", json!({ "key": b64("a"), "value": b64("1") }));
    step(
        "/v3/kv/put",
        json!({ "key": b64("b"), "value": b64("2"), "prev_kv": true }),
    );
    step(
        "/v3/kv/put",
        json!({ "key": b64("b"), "value": b64("3"), "prev_kv": true }),
    );
    step(
        "/v3/kv/range",
        json!({ "key": b64("a"), "range_end": b64("c") }),
    );
    step(
        "/v3/kv/range",
        json!({ "key": b64("a"), "range_end": b64("c"), "count_only": true }),
    );
    step(
        "/v3/kv/range",
        json!({ "key": b64("a"), "range_end": b64("c"), "limit": 1, "sort_order": "DESCEND" }),
    );
    step(
        "/v3/kv/txn",
        json!({
            "compare": [{ "key": b64("b"), "result": "EQUAL", "target": "VALUE", "value": b64("3") }],
            "success": [{ "request_put": { "key": b64("c"), "value": b64("4") } },
                        { "request_range": { "key": b64("a") } }],
            "failure": [{ "request_delete_range": { "key": b64("a") } }]
        }),
    );
    step(
        "/v3/kv/txn",
        json!({
            "compare": [{ "key": b64("b"), "result": "GREATER", "target": "MOD", "mod_revision": "1000000" }],
            "failure": [{ "request_delete_range": { "key": b64("a"), "prev_kv": true } }]
        }),
    );
    step(
        "/v3/kv/deleterange",
        json!({ "key": b64("b"), "range_end": b64("d") }),
    );
    step("/v3/lease/grant", json!({ "TTL": "60" }));
    step(
        "/v3/kv/put",
        json!({ "key": b64("x"), "value": b64("last") }),
    );
    step(
        "/v3/kv/range",
        json!({ "key": b64("a"), "range_end": b64("z") }),
    );
    // Malformed: an error, and the same code.
    let bad = curl(url, "/v3/kv/range", &json!({ "key": 5 }), None);
    out.push(json!({ "step": "malformed", "code": bad[0]["code"] }));
    // A watch from the start sees every change once, in order.
    let watched = curl(
        url,
        "/v3/watch",
        &json!({ "create_request": { "key": b64("a"), "range_end": b64("z"), "start_revision": (base + 1).to_string() } }),
        Some("2"),
    );
    for v in watched {
        out.push(json!({ "step": "watch", "answer": normal(&v, base) }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_json_gateway_answers_as_etcds() {
    let orbit = OrbitCluster::start(3, Timings::FAST).await;
    let ours = steps(&orbit.endpoints()[1]);
    // What gRPC reads equals the gateway's last range.
    let grpc = orbit
        .remote()
        .await
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let url = &orbit.endpoints()[0];
    let last = &curl(
        url,
        "/v3/kv/range",
        &json!({ "key": b64("a"), "range_end": b64("z") }),
        None,
    )[0];
    let keys: Vec<String> = last["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = grpc
        .kvs
        .iter()
        .map(|k| b64(std::str::from_utf8(&k.key).unwrap()))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(keys, want);
    assert_eq!(last["header"]["revision"], grpc.revision.to_string());

    let etcd = EtcdCluster::start(3).await;
    let theirs = steps(&etcd.endpoints()[1]);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "step {i} differs from etcd's");
    }
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    assert!(
        ours.iter().filter(|s| s["step"] == "watch").count() >= 2,
        "{ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|s| s["answer"]["kvs"].as_array().is_some_and(|k| k.len() == 2)),
        "{ours:#?}"
    );
    assert!(
        ours.iter().any(|s| s["answer"]["succeeded"] == true),
        "{ours:#?}"
    );
    let malformed = ours.iter().find(|s| s["step"] == "malformed").unwrap();
    assert_eq!(malformed["code"], 3, "{ours:#?}");
}

/// The auth steps through the gateway: management, enable, a token from
/// `/v3/auth/authenticate` in the `Authorization` header, what it allows and refuses.
fn auth_steps(url: &str, orbit: bool) -> Vec<Value> {
    let start = &curl(url, "/v3/kv/range", &json!({ "key": b64("probe") }), None)[0];
    let base: i64 = start["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    let mut step = |path: &str, body: Value, token: Option<&str>| -> Value {
        let v = curl_with(url, path, &body, Some("10"), token)
            .pop()
            .unwrap_or_else(|| panic!("{path}: no answer"));
        out.push(json!({ "step": path, "answer": normal(&v, base) }));
        v
    };
    step(
        "/v3/auth/user/add",
        json!({ "name": "root", "password": "rootpw" }),
        None,
    );
    step(
        "/v3/auth/user/grant",
        json!({ "user": "root", "role": "root" }),
        None,
    );
    step("/v3/auth/role/add", json!({ "name": "app" }), None);
    step(
        "/v3/auth/role/grant",
        json!({ "name": "app", "perm": { "permType": "READWRITE", "key": b64("app/"), "range_end": b64("app0") } }),
        None,
    );
    step(
        "/v3/auth/user/add",
        json!({ "name": "alice", "password": "alicepw" }),
        None,
    );
    step(
        "/v3/auth/user/grant",
        json!({ "user": "alice", "role": "app" }),
        None,
    );
    step("/v3/auth/enable", json!({}), None);
    step("/v3/kv/range", json!({ "key": b64("app/x") }), None);
    step(
        "/v3/auth/authenticate",
        json!({ "name": "alice", "password": "nope" }),
        None,
    );
    let alice = step(
        "/v3/auth/authenticate",
        json!({ "name": "alice", "password": "alicepw" }),
        None,
    );
    let alice = alice["token"].as_str().expect("a token").to_string();
    let a = Some(alice.as_str());
    step(
        "/v3/kv/put",
        json!({ "key": b64("app/x"), "value": b64("1") }),
        a,
    );
    step("/v3/kv/range", json!({ "key": b64("app/x") }), a);
    step(
        "/v3/kv/put",
        json!({ "key": b64("other"), "value": b64("1") }),
        a,
    );
    step("/v3/auth/role/get", json!({ "role": "app" }), a);
    step("/v3/auth/user/list", json!({}), a);
    if orbit {
        // Debian's etcd 3.4 gateway never answers a forged token: orbit's only.
        let forged = curl_with(url, "/v3/kv/range", &json!({}), Some("10"), Some("forged"));
        assert_eq!(forged[0]["code"], 16, "{forged:?}");
        assert_eq!(forged[0]["message"], "etcdserver: invalid auth token");
    }
    let root = step(
        "/v3/auth/authenticate",
        json!({ "name": "root", "password": "rootpw" }),
        None,
    );
    let root = root["token"].as_str().expect("a token").to_string();
    step("/v3/auth/user/list", json!({}), Some(&root));
    step("/v3/auth/disable", json!({}), Some(&root));
    step("/v3/kv/range", json!({ "key": b64("app/x") }), None);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_authenticates_as_etcds() {
    let orbit = OrbitCluster::start(3, Timings::FAST).await;
    let ours = auth_steps(&orbit.endpoints()[2], true);
    let etcd = EtcdCluster::start(3).await;
    let theirs = auth_steps(&etcd.endpoints()[2], false);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "step {i} differs from etcd's");
    }
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    let text = serde_json::to_string(&ours).unwrap();
    for want in [
        "permission denied",
        "user name is empty",
        "authentication failed",
    ] {
        assert!(text.contains(want), "{want}: {ours:#?}");
    }
}
