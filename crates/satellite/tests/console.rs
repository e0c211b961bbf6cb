//! The console's HTTP API through three real `satellite run api` replicas (one store
//! of three members): an account signed up on one is confirmed on another and its
//! session works on every one, also after the replica that made it is SIGKILLed; the
//! cookie is HttpOnly, Secure and SameSite=Strict; state changes need the CSRF token;
//! another account's project is not found; a console-made API key works against the
//! satellite API with its caveat, and not once revoked.

mod common;

use common::replicas::{http, row, satellite, wait_health, Answer, Replicas};
use orbit_identity::Identity;
use orbit_testkit::free_port;
use std::time::Duration;
use uplink::project::{Access, Options, Project};

const PASSWORD: &str = "correct horse battery";

/// The console ports, one per replica.
struct Consoles {
    r: Replicas,
    ports: Vec<u16>,
}

impl Consoles {
    async fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        auth: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        http(self.ports[i], method, path, auth, body).await
    }

    /// The newest mail replica `i` wrote.
    fn last_mail(&self, i: usize) -> String {
        let dir = self.r.data_dir(i).join("console-mail");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let last = files.last().expect("a mail");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(last).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a mail with a secret link is private");
        std::fs::read_to_string(last).unwrap()
    }
}

fn token_in(mail: &str) -> String {
    mail.split("token=")
        .nth(1)
        .expect("a link with a token")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

async fn start() -> Consoles {
    let n = 3;
    let table: String = (1..=n)
        .map(|id| row(id, free_port(), free_port(), true))
        .collect();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut r = Replicas::with(
        satellite(),
        &format!("[storage]\ndistinct_networks = false\nidentity = \"../satellite.key\"\n[console]\n{table}"),
        "fixed",
        n,
        "",
    );
    for (i, port) in ports.iter().enumerate() {
        // Each replica its own console address: one configuration file each.
        let text = std::fs::read_to_string(r.config()).unwrap().replace(
            "[console]\n",
            &format!("[console]\naddr = \"127.0.0.1:{port}\"\n"),
        );
        r.set_config(i, &text);
        r.spawn(i);
    }
    for i in 0..n {
        wait_health(r.status[i], 200, Duration::from_secs(30)).await;
    }
    // The status endpoint comes up before the servers: wait for each console too.
    for port in &ports {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "console :{port} never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Consoles { r, ports }
}

fn with_session<'a>(cookie: &'a str, csrf: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("Cookie", cookie), ("X-CSRF-Token", csrf)]
}

/// The pages every replica serves from its binary: the page for any path without an
/// extension (it routes itself), its files with their types, 404 for the rest.
async fn serves_the_front_end(c: &Consoles) {
    for path in ["/", "/login", "/confirm?token=ab", "/projects/p00/keys"] {
        let page = c.call(1, "GET", path, &[], "").await;
        assert_eq!(page.code, 200, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(page.body.contains("<div id=\"root\">"), "{}", page.body);
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert!(page
            .header("content-security-policy")
            .is_some_and(|v| v.contains("default-src 'self'")));
    }
    let page = c.call(0, "GET", "/", &[], "").await.body;
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page loads a script");
    assert!(script.starts_with("/assets/"), "{script}");
    let js = c.call(2, "GET", script, &[], "").await;
    assert_eq!(js.code, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js
        .header("cache-control")
        .is_some_and(|v| v.contains("immutable")));
    assert!(
        js.body.len() > 10_000,
        "the console's script is {} bytes",
        js.body.len()
    );
    for (method, path) in [
        ("GET", "/assets/missing.js"),
        ("GET", "/favicon.ico"),
        ("GET", "/api/v1/nothing"),
        ("POST", "/"),
        ("GET", "/assets/../Cargo.toml"),
    ] {
        let r = c.call(0, method, path, &[], "").await;
        assert_eq!(r.code, 404, "{method} {path}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{method} {path}");
    }
    // What grants made in the page point at: this satellite's API and key.
    let info = c.call(2, "GET", "/api/v1/satellite", &[], "").await.json();
    assert_eq!(info["url"], c.r.api_url(2), "{info}");
    let identity = Identity::load(&c.r.dir.path().join("satellite.key")).unwrap();
    assert_eq!(
        info["key"].as_str().unwrap(),
        orbit_identity::hex_encode(&identity.public().0)
    );
    assert_eq!(info["max_projects"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_sessions_projects_and_keys_across_replicas() {
    let mut c = start().await;
    serves_the_front_end(&c).await;
    let creds = format!("{{\"email\": \"ada@example.org\", \"password\": \"{PASSWORD}\"}}");
    let up = c.call(0, "POST", "/api/v1/signup", &[], &creds).await;
    assert_eq!(up.code, 201, "{}", up.body);
    assert_eq!(up.header("x-content-type-options"), Some("nosniff"));
    assert!(up
        .header("content-security-policy")
        .is_some_and(|v| v.contains("default-src 'self'")));
    // A form post (not JSON) is refused: cross-site forms cannot send JSON.
    let form = http(
        c.ports[0],
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "email=a",
    )
    .await;
    assert_eq!(form.code, 415, "{}", form.body);
    // Not before the email is confirmed; again: taken.
    let early = c.call(1, "POST", "/api/v1/login", &[], &creds).await;
    assert_eq!(early.code, 403, "{}", early.body);
    assert_eq!(
        c.call(2, "POST", "/api/v1/signup", &[], &creds).await.code,
        409
    );
    // The link from replica 1's mail confirms on replica 2.
    let mail = c.last_mail(0);
    assert!(mail.starts_with("To: ada@example.org\n"), "{mail}");
    let token = token_in(&mail);
    let ok = c
        .call(
            1,
            "POST",
            "/api/v1/confirm",
            &[],
            &format!("{{\"token\": \"{token}\"}}"),
        )
        .await;
    assert_eq!(ok.code, 200, "{}", ok.body);

    let wrong = c
        .call(
            0,
            "POST",
            "/api/v1/login",
            &[],
            "{\"email\": \"ada@example.org\", \"password\": \"not the password\"}",
        )
        .await;
    assert_eq!(
        (wrong.code, wrong.json()["error"].as_str().unwrap()),
        (401, "wrong email or password")
    );
    let login = c.call(0, "POST", "/api/v1/login", &[], &creds).await;
    assert_eq!(login.code, 200, "{}", login.body);
    let set = login
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = login.json()["csrf"].as_str().unwrap().to_string();
    // The session works on every replica.
    for i in 0..3 {
        let me = c
            .call(i, "GET", "/api/v1/me", &[("Cookie", &cookie)], "")
            .await;
        assert_eq!(
            (me.code, me.json()["email"].as_str().unwrap()),
            (200, "ada@example.org")
        );
    }

    // A state change without the CSRF token, or with another, changes nothing.
    for bad in [
        vec![("Cookie", cookie.as_str())],
        with_session(&cookie, "0123"),
    ] {
        let r = c
            .call(1, "POST", "/api/v1/projects", &bad, "{\"name\": \"x\"}")
            .await;
        assert_eq!(r.code, 403, "{}", r.body);
    }
    let list = c
        .call(1, "GET", "/api/v1/projects", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(list.json()["projects"], serde_json::json!([]));
    let xss = "<img src=x onerror=alert(1)>";
    let made = c
        .call(
            1,
            "POST",
            "/api/v1/projects",
            &with_session(&cookie, &csrf),
            &serde_json::json!({ "name": xss }).to_string(),
        )
        .await;
    assert_eq!(made.code, 201, "{}", made.body);
    assert!(made
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let project = made.json()["id"].as_str().unwrap().to_string();
    assert_eq!(made.json()["name"], xss);

    // Another account sees none of it.
    let eve = "{\"email\": \"eve@example.org\", \"password\": \"eve's long password\"}";
    assert_eq!(
        c.call(2, "POST", "/api/v1/signup", &[], eve).await.code,
        201
    );
    let t = token_in(&c.last_mail(2));
    c.call(
        2,
        "POST",
        "/api/v1/confirm",
        &[],
        &format!("{{\"token\": \"{t}\"}}"),
    )
    .await;
    let eve_login = c.call(2, "POST", "/api/v1/login", &[], eve).await;
    let eve_cookie = eve_login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let eve_csrf = eve_login.json()["csrf"].as_str().unwrap().to_string();
    let path = format!("/api/v1/projects/{project}");
    for (method, p, body) in [
        ("GET", path.clone(), ""),
        ("PATCH", path.clone(), "{\"name\": \"mine\"}"),
        ("DELETE", path.clone(), ""),
        ("POST", format!("{path}/keys"), "{\"name\": \"k\"}"),
    ] {
        let r = c
            .call(2, method, &p, &with_session(&eve_cookie, &eve_csrf), body)
            .await;
        assert_eq!(r.code, 404, "{method} {p}: {}", r.body);
    }
    let theirs = c
        .call(
            2,
            "GET",
            &format!("{path}/usage"),
            &[("Cookie", &eve_cookie)],
            "",
        )
        .await;
    assert_eq!(theirs.code, 404, "{}", theirs.body);
    // The project's usage: nothing stored yet, a zero invoice, its (absent) limits.
    let usage = c
        .call(
            0,
            "GET",
            &format!("{path}/usage?month=2026-03"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(usage.code, 200, "{}", usage.body);
    let u = usage.json();
    assert_eq!(
        (u["month"].as_str(), u["days"].as_array().map(Vec::len)),
        (Some("2026-03"), Some(0))
    );
    assert_eq!(
        (
            u["stored"]["bytes"].as_u64(),
            u["invoice"]["total"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert!(u["limits"]["storage"].is_null());
    let bad = c
        .call(
            0,
            "GET",
            &format!("{path}/usage?month=March"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(bad.code, 400, "{}", bad.body);
    // Ada's session's CSRF token is no use with Eve's cookie.
    let mixed = c
        .call(
            2,
            "PATCH",
            &path,
            &with_session(&eve_cookie, &csrf),
            "{\"name\": \"x\"}",
        )
        .await;
    assert_eq!(mixed.code, 403);

    // A read-only key, through the satellite's own API: lists, may not create.
    let key = c
        .call(
            0,
            "POST",
            &format!("{path}/keys"),
            &with_session(&cookie, &csrf),
            "{\"name\": \"reader\", \"read_only\": true}",
        )
        .await;
    assert_eq!(key.code, 201, "{}", key.body);
    let (head, api_key) = (
        key.json()["head"].as_str().unwrap().to_string(),
        key.json()["key"].as_str().unwrap().to_string(),
    );
    let listed = c
        .call(
            1,
            "GET",
            &format!("{path}/keys"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
    assert!(
        !listed.body.contains(&api_key),
        "the listing shows the secret key"
    );
    assert_eq!(
        listed.json()["keys"][0]["caveats"],
        serde_json::json!(["ReadOnly"])
    );
    let identity = Identity::load(&c.r.dir.path().join("satellite.key")).unwrap();
    let access = Access::new(&c.r.api_url(1), identity.public(), &api_key, "pass").unwrap();
    let p = Project::open(access.clone(), Options::default())
        .await
        .unwrap();
    assert!(p.list_buckets().await.unwrap().is_empty());
    let e = p.create_bucket("nope").await.unwrap_err().to_string();
    assert!(e.contains("read-only"), "{e}");
    let revoked = c
        .call(
            2,
            "DELETE",
            &format!("{path}/keys/{head}"),
            &with_session(&cookie, &csrf),
            "",
        )
        .await;
    assert_eq!(revoked.code, 200, "{}", revoked.body);
    let p = Project::open(access, Options::default()).await.unwrap();
    let e = p.list_buckets().await.unwrap_err().to_string();
    assert!(e.contains("revoked"), "{e}");

    // Without [payments] the billing page says so; a wallet address is checked.
    let billing = c
        .call(1, "GET", "/api/v1/billing", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(billing.json()["payments"], false);
    let bad = c
        .call(
            1,
            "PUT",
            "/api/v1/account/wallet",
            &with_session(&cookie, &csrf),
            "{\"address\": \"0x12\"}",
        )
        .await;
    assert_eq!(bad.code, 400, "{}", bad.body);

    // The replica that made the session is SIGKILLed; the session lives on.
    c.r.kill(0);
    let me = c
        .call(1, "GET", "/api/v1/me", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(me.code, 200, "{}", me.body);
    // Logging out on one replica ends it on all.
    let out = c
        .call(
            1,
            "POST",
            "/api/v1/logout",
            &with_session(&cookie, &csrf),
            "",
        )
        .await;
    assert_eq!(out.code, 204, "{}", out.body);
    assert!(out
        .header("set-cookie")
        .is_some_and(|v| v.contains("Max-Age=0")));
    assert_eq!(
        c.call(2, "GET", "/api/v1/me", &[("Cookie", &cookie)], "")
            .await
            .code,
        401
    );
    assert_eq!(c.call(2, "GET", "/api/v1/me", &[], "").await.code, 401);
}
