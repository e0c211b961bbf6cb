//! The private API through real processes: `api` (with the store member) and
//! `private-api` beside three `storagenode` processes. Every inspector and admin
//! action answers JSON against the running network; without the token, or with a
//! wrong one, every route is 401 and nothing changes.

mod common;

use common::nodes::{wait_nodes, StorageNodes};
use common::replicas::send_tls;
use orbit_identity::PublicKey;
use orbit_satellite_model::nodes::{Nodes, SelectionConfig};

const TOKEN: &str = "s3cret-private-api-token";

/// The private API: its port and the satellite key it serves TLS with.
struct Private {
    port: u16,
    key: PublicKey,
}

async fn call(api: &Private, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (code, text) = send_tls(api.port, &api.key, method, path, TOKEN, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{code} {path}: {text:?}"));
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspectors_and_admin_actions_work_and_need_the_token() {
    let port = orbit_testkit::free_port();
    let sat = common::network::start(
        &format!(
            "[private_api]\naddr = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [loop]\ninterval_s = 3600\nleader_ttl_s = 2\n[gc]\ninterval_s = 3600\nleader_ttl_s = 2\n"
        ),
        &["private-api", "loop", "gc"],
    )
    .await;
    let mut sn = StorageNodes::new();
    for _ in 0..3 {
        sn.start(&sat.url, &sat.key);
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    let options = common::small_options(1, 2, 3);
    let (access, p) = sat.project("ops", options).await;
    p.create_bucket("bkt").await.unwrap();
    let data = orbit_testkit::random_bytes(100 << 10, 1);
    p.upload("bkt", "x", &data[..], &|_| {}).await.unwrap();
    let node = sn.ids[0].to_string();
    let api = Private {
        port,
        key: sat.identity.public(),
    };

    // Without the token, or with another: 401 everywhere, and nothing changes.
    let routes = [
        ("GET", "/v1/nodes".to_string(), ""),
        ("GET", "/v1/repair/queue".into(), ""),
        ("GET", "/v1/projects/ops".into(), ""),
        ("PUT", "/v1/projects/ops/limits".into(), "{\"storage\": 1}"),
        ("POST", "/v1/apikeys/revoke".into(), "{\"key\": \"x\"}"),
        (
            "POST",
            format!("/v1/nodes/{node}/disqualify"),
            "{\"reason\": \"x\"}",
        ),
        ("POST", format!("/v1/nodes/{node}/reinstate"), ""),
        ("POST", format!("/v1/nodes/{node}/restore-trash"), ""),
        ("POST", "/v1/loop/run".into(), ""),
        ("POST", "/v1/gc/run".into(), ""),
    ];
    for (method, path, body) in &routes {
        for token in ["", "wrong", "s3cret-private-api-toke"] {
            let (code, text) = send_tls(port, &api.key, method, path, token, body).await;
            assert_eq!(code, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("Bearer"), "{text}");
        }
    }
    let table = Nodes::new(sat.kv.clone(), SelectionConfig::default());
    assert!(!table.get(&sn.ids[0]).await.unwrap().unwrap().disqualified);

    // Inspectors.
    let (code, nodes) = call(&api, "GET", "/v1/nodes", "").await;
    assert_eq!(code, 200);
    assert_eq!(nodes.as_array().unwrap().len(), 3, "{nodes}");
    assert!(nodes
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["online"] == true));
    let enc = uplink::crypt::encrypt_path(&access.root, "bkt", "x");
    let path = format!("/v1/objects/ops/bkt?key={}", urlencode(&enc));
    let (code, health) = call(&api, "GET", &path, "").await;
    assert_eq!(code, 200, "{health}");
    let segs = health["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2, "{health}");
    assert!(
        segs.iter().all(|s| s["healthy"] == 3 && s["lost"] == false),
        "{health}"
    );
    let (code, missing) = call(&api, "GET", "/v1/objects/ops/bkt?key=nope", "").await;
    assert_eq!(code, 404, "{missing}");
    let (code, _) = call(&api, "GET", "/v1/objects/ops/bkt", "").await;
    assert_eq!(code, 400);
    let (code, q) = call(&api, "GET", "/v1/repair/queue?limit=5", "").await;
    assert_eq!((code, q["total"].as_u64()), (200, Some(0)), "{q}");

    // Limits, then usage as the API counts it.
    let (code, set) = call(
        &api,
        "PUT",
        "/v1/projects/ops/limits",
        "{\"storage\": 1000, \"egress\": null, \"segments\": null}",
    )
    .await;
    assert_eq!(code, 200, "{set}");
    let (_, proj) = call(&api, "GET", "/v1/projects/ops", "").await;
    assert_eq!(proj["limits"]["storage"], 1000, "{proj}");
    assert!(
        proj["stored_bytes"].as_u64().unwrap() >= 100 << 10,
        "{proj}"
    );
    let e = p
        .upload("bkt", "y", &b"more"[..], &|_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("storage limit"), "{e}");
    let (code, bad) = call(
        &api,
        "PUT",
        "/v1/projects/ops/limits",
        "{\"storage\": \"lots\"}",
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("storage"), "{bad}");
    let (code, _) = call(&api, "GET", "/v1/no-such-thing", "").await;
    assert_eq!(code, 404);
    call(&api, "PUT", "/v1/projects/ops/limits", "{}").await;
    p.upload("bkt", "y", &b"more"[..], &|_| {}).await.unwrap();

    // Disqualify a node: the table says so, with the operator's reason; reinstate it.
    let (code, dq) = call(
        &api,
        "POST",
        &format!("/v1/nodes/{node}/disqualify"),
        "{\"reason\": \"lost its disk\"}",
    )
    .await;
    assert_eq!(code, 200, "{dq}");
    let rec = table.get(&sn.ids[0]).await.unwrap().unwrap();
    assert!(rec.disqualified);
    assert_eq!(
        rec.reputation.disqualified_reason,
        "operator: lost its disk"
    );
    let (code, _) = call(
        &api,
        "POST",
        &format!("/v1/nodes/{node}/disqualify"),
        "{\"reason\": \" \"}",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(&api, "POST", "/v1/nodes/nonsense/reinstate", "").await;
    assert_eq!(code, 400);
    let (code, re) = call(&api, "POST", &format!("/v1/nodes/{node}/reinstate"), "").await;
    assert_eq!(
        (code, &re["disqualified"]),
        (200, &serde_json::json!(false)),
        "{re}"
    );
    assert!(!table.get(&sn.ids[0]).await.unwrap().unwrap().disqualified);

    // Restore a node's trash (empty: nothing was collected).
    let (code, r) = call(&api, "POST", &format!("/v1/nodes/{node}/restore-trash"), "").await;
    assert_eq!((code, r["restored"].as_u64()), (200, Some(0)), "{r}");

    // A loop pass and a gc round on request: the leaders run them within seconds.
    let loop_status = |s: serde_json::Value| s["loop"]["last_pass"].clone();
    assert!(loop_status(common::replicas::status(sat.r.status[2]).await).is_null());
    let (code, _) = call(&api, "POST", "/v1/loop/run", "").await;
    assert_eq!(code, 202);
    let (code, _) = call(&api, "POST", "/v1/gc/run", "").await;
    assert_eq!(code, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pass = loop_status(common::replicas::status(sat.r.status[2]).await);
        let gc = common::replicas::status(sat.r.status[3]).await["gc"]["last_round"].clone();
        if pass["complete"] == true && !gc.is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run on request: {pass} {gc}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Revoke the project's key: its next request is refused.
    let (code, r) = call(
        &api,
        "POST",
        "/v1/apikeys/revoke",
        &serde_json::json!({ "key": access.api_key }).to_string(),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let e = p.list("bkt", "").await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    let (code, _) = call(&api, "POST", "/v1/apikeys/revoke", "{\"key\": \"garbage\"}").await;
    assert_eq!(code, 400);
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
