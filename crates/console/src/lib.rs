//! The console's HTTP API (JSON under `/api/v1`), served by every `satellite run api`
//! replica on `[console] addr`. All state is in the store (`orbit_satellite_model::
//! console`), so any replica answers any request and a session survives the replica
//! that made it. Handlers only translate requests; the model decides.
//!
//! Sessions are the `orbit_session` cookie (HttpOnly, Secure, SameSite=Strict). Every
//! state-changing request of a session must also carry its CSRF token in
//! `X-CSRF-Token`; every request with a body must be `application/json`, which a
//! cross-site form cannot send.
//!
//! | request | what |
//! |---|---|
//! | `POST /api/v1/signup` `{email, password}` | an account; mails the confirmation link |
//! | `POST /api/v1/confirm` `{token}` | confirms the email |
//! | `POST /api/v1/login` `{email, password}` | a session: the cookie, and `{email, csrf}` |
//! | `POST /api/v1/logout` | ends it |
//! | `GET /api/v1/me` | `{email, csrf}` of the session |
//! | `POST /api/v1/password` `{current, new}` | a new password; every other session ends |
//! | `POST /api/v1/reset/request` `{email}` | mails a reset link, if the account exists (202 either way) |
//! | `POST /api/v1/reset` `{token, password}` | sets the password |
//! | `GET`/`POST /api/v1/projects` `{name}` | the account's projects; a new one |
//! | `GET`/`PATCH`/`DELETE /api/v1/projects/{id}` `{name}` | one; rename; delete (only when empty) |
//! | `GET`/`POST /api/v1/projects/{id}/keys` `{name, read_only, bucket, prefix, not_after}` | its API keys; a new one (shown once) |
//! | `DELETE /api/v1/projects/{id}/keys/{head}` | revokes a key and its restrictions |
//! | `PUT /api/v1/account/wallet` `{address}` | links the payments wallet whose balance and channels to show (`null` unlinks) |
//! | `GET /api/v1/billing` | that wallet's balance and channels (`{"payments": false}` without `[payments]`) |
//! | `GET /api/v1/projects/{id}/usage?month=YYYY-MM` | limits, current storage, each day (bytes, segments, objects, egress; today's so far, named by `partial`), the month's invoice and payments |
//! | `GET /api/v1/projects/{id}/buckets?cursor=` | a page of its bucket names |
//! | `GET /api/v1/projects/{id}/buckets/{bucket}/objects?cursor=` | a page of its objects: encrypted keys and sealed metadata (hex), which the page decrypts with a grant it holds |
//! | `GET /api/v1/satellite` | the satellite's API URL and key (what a grant holds), and how many projects an account may have |
//!
//! Every other `GET` is the front end (web/console, built into this crate by
//! `build.rs`): its files, and its page for any path without an extension.

pub mod mail;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mail::{Mail, Mailer};
use orbit_protocol::apikey::Caveat;
use orbit_satellite_model::accounting::{Accounting, Invoice, Prices, Usage};
use orbit_satellite_model::console::{Account, Console, NewSession, Rules, Session};
use orbit_satellite_model::metainfo::Metainfo;
use orbit_satellite_model::Error;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "orbit_session";
/// The header a session's state-changing requests carry their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The `[console]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Listen address.
    pub addr: String,
    /// Where users reach it, for the links in mail (default: `http://` + `addr`).
    pub public_url: String,
    /// The satellite API URL the grants made in the console point at (default: the
    /// API this replica serves).
    pub satellite_url: String,
    /// How long a session lasts, seconds.
    pub session_ttl_s: i64,
    /// How long a confirmation or reset link works, seconds.
    pub token_ttl_s: i64,
    /// Failed logins allowed per email within `login_window_s`.
    pub login_failures: u32,
    /// The window failed logins are counted in, seconds.
    pub login_window_s: i64,
    /// Projects one account may have.
    pub max_projects: usize,
    /// Where mail is written, one file per message (relative: to the data dir), when
    /// no SMTP server is configured.
    pub mail_dir: PathBuf,
    /// The SMTP server mail goes through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<mail::SmtpSection>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        let r = Rules::default();
        ConsoleSection {
            addr: "127.0.0.1:7781".into(),
            public_url: String::new(),
            satellite_url: String::new(),
            session_ttl_s: r.session_ttl_s,
            token_ttl_s: r.token_ttl_s,
            login_failures: r.login_failures,
            login_window_s: r.login_window_s,
            max_projects: r.max_projects,
            mail_dir: "console-mail".into(),
            smtp: None,
        }
    }
}

impl ConsoleSection {
    /// The mail sender this section configures: its SMTP server (password from
    /// `ORBIT_SMTP_PASSWORD`), else files in `mail_dir` under `data_dir`.
    pub fn mailer(&self, data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn Mailer>> {
        Ok(match &self.smtp {
            Some(s) => Arc::new(mail::SmtpMailer::new(
                s,
                std::env::var("ORBIT_SMTP_PASSWORD").ok(),
            )?),
            None => Arc::new(mail::DirMailer::new(data_dir.join(&self.mail_dir))?),
        })
    }

    /// The model's rules from this section.
    pub fn rules(&self) -> Rules {
        Rules {
            session_ttl_s: self.session_ttl_s,
            token_ttl_s: self.token_ttl_s,
            login_failures: self.login_failures,
            login_window_s: self.login_window_s,
            max_projects: self.max_projects,
        }
    }
}

struct AppState {
    console: Console,
    metainfo: Metainfo,
    satellite: Option<SatelliteInfo>,
    mailer: Arc<dyn Mailer>,
    public_url: String,
    accounting: Accounting,
    usage: Usage,
    prices: Prices,
    escrow: Option<orbit_payments::Escrow>,
}

type St = State<Arc<AppState>>;

impl AppState {
    /// Sends `mail`; a sender that fails makes the request 503, saying why.
    async fn mail(&self, mail: Mail) -> Result<(), Failure> {
        self.mailer.send(mail).await.map_err(|e| {
            Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("sending mail: {e}"),
            )
        })
    }
}

/// An error as the console answers it: a status and `{"error": …}`.
struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::warn!(error = %e, "console request failed");
        }
        Failure(code, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<Response, Failure>;

fn now() -> u64 {
    orbit_satellite_model::unix_now()
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn set_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("cookie values are hex and a dot")
}

/// The session of a request; with `csrf`, also its CSRF header, compared in
/// constant time.
async fn authed(
    st: &AppState,
    headers: &HeaderMap,
    csrf: bool,
) -> Result<(Session, Account), Failure> {
    let c =
        cookie(headers).ok_or_else(|| Failure(StatusCode::UNAUTHORIZED, "not logged in".into()))?;
    let (session, account) = st.console.session(&c, now()).await?;
    if csrf {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if blake3::hash(sent.as_bytes()) != blake3::hash(session.csrf.as_bytes()) {
            return Err(Failure(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (X-CSRF-Token)".into(),
            ));
        }
    }
    Ok((session, account))
}

fn logged_in(s: &NewSession, email: &str, ttl: i64) -> Response {
    let mut r =
        Json(json!({ "email": email, "csrf": s.csrf, "expires": s.expires })).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&s.cookie, ttl));
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

async fn sign_up(State(st): St, Json(c): Json<Credentials>) -> Answer {
    let (account, token) = st.console.sign_up(&c.email, &c.password, now()).await?;
    let link = format!("{}/confirm?token={token}", st.public_url);
    st.mail(Mail {
        to: account.email.clone(),
        subject: "Confirm your orbit account".into(),
        body: format!("Open this link to confirm your email address:\n\n{link}\n"),
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "email": account.email, "confirmation": "sent" })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

async fn confirm(State(st): St, Json(b): Json<TokenBody>) -> Answer {
    let a = st.console.confirm(&b.token, now()).await?;
    Ok(Json(json!({ "email": a.email, "confirmed": true })).into_response())
}

async fn log_in(State(st): St, Json(c): Json<Credentials>) -> Answer {
    let s = st.console.log_in(&c.email, &c.password, now()).await?;
    Ok(logged_in(
        &s,
        c.email.trim(),
        st.console.rules().session_ttl_s,
    ))
}

async fn log_out(State(st): St, headers: HeaderMap) -> Answer {
    authed(&st, &headers, true).await?;
    if let Some(c) = cookie(&headers) {
        st.console.log_out(&c).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0));
    Ok(r)
}

async fn me(State(st): St, headers: HeaderMap) -> Answer {
    let (s, a) = authed(&st, &headers, false).await?;
    Ok(Json(json!({ "email": a.email, "csrf": s.csrf, "expires": s.expires })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

async fn change_password(
    State(st): St,
    headers: HeaderMap,
    Json(b): Json<PasswordChange>,
) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    let s = st
        .console
        .change_password(&a.id, &b.current, &b.new, now())
        .await?;
    Ok(logged_in(&s, &a.email, st.console.rules().session_ttl_s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

async fn request_reset(State(st): St, Json(b): Json<EmailBody>) -> Answer {
    if let Some((a, token)) = st.console.request_reset(&b.email, now()).await? {
        let link = format!("{}/reset?token={token}", st.public_url);
        st.mail(Mail {
            to: a.email,
            subject: "Reset your orbit password".into(),
            body: format!(
                "Open this link to set a new password:\n\n{link}\n\nIf you did not ask for it, ignore this message.\n"
            ),
        })
        .await?;
    }
    // The same answer whether or not the account exists.
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "reset": "sent if the account exists" })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    token: String,
    password: String,
}

async fn reset(State(st): St, Json(b): Json<ResetBody>) -> Answer {
    st.console
        .reset_password(&b.token, &b.password, now())
        .await?;
    Ok(Json(json!({ "reset": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

async fn projects(State(st): St, headers: HeaderMap) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    Ok(Json(json!({ "projects": st.console.projects(&a.id).await? })).into_response())
}

async fn create_project(State(st): St, headers: HeaderMap, Json(b): Json<NameBody>) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    let p = st.console.create_project(&a.id, &b.name, now()).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

async fn project(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    let (p, _) = st.console.project(&a.id, &id).await?;
    Ok(Json(p).into_response())
}

async fn rename_project(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<NameBody>,
) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    Ok(Json(st.console.rename_project(&a.id, &id, &b.name).await?).into_response())
}

async fn delete_project(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    st.console.delete_project(&a.id, &id, now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn keys(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    Ok(Json(json!({ "keys": st.console.api_keys(&a.id, &id).await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    read_only: bool,
    /// Only this bucket…
    #[serde(default)]
    bucket: Option<String>,
    /// …and keys starting with this (as the uplink encodes keys).
    #[serde(default)]
    prefix: Option<String>,
    /// Void after this Unix time (s).
    #[serde(default)]
    not_after: Option<u64>,
}

async fn create_key(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<NewKey>,
) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    let caveats = Caveat::restrictions(b.read_only, b.bucket, b.prefix, b.not_after)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    let (entry, key) = st
        .console
        .create_key(&a.id, &id, &b.name, caveats, now())
        .await?;
    let mut v = serde_json::to_value(entry)
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["key"] = Value::String(key);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn revoke_key(
    State(st): St,
    headers: HeaderMap,
    Path((id, head)): Path<(String, String)>,
) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    Ok(Json(st.console.revoke_key(&a.id, &id, &head, now()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletBody {
    address: Option<String>,
}

async fn set_wallet(State(st): St, headers: HeaderMap, Json(b): Json<WalletBody>) -> Answer {
    let (_, a) = authed(&st, &headers, true).await?;
    let a = st.console.set_wallet(&a.id, b.address.as_deref()).await?;
    Ok(Json(json!({ "wallet": a.wallet })).into_response())
}

async fn billing(State(st): St, headers: HeaderMap) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    let Some(escrow) = &st.escrow else {
        return Ok(Json(json!({ "payments": false })).into_response());
    };
    Ok(match st.console.billing(&a, escrow).await? {
        None => Json(json!({ "payments": true, "wallet": null })).into_response(),
        Some(b) => {
            let mut v = serde_json::to_value(b)
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            v["payments"] = Value::Bool(true);
            Json(v).into_response()
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonthQuery {
    /// `YYYY-MM`; this month when absent.
    month: Option<String>,
}

async fn usage(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<MonthQuery>,
) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    let (p, _) = st.console.project(&a.id, &id).await?;
    let month = q
        .month
        .unwrap_or_else(|| orbit_satellite_model::accounting::month_of(now()));
    let period = st.accounting.project_period(&p.id, &month, now()).await?;
    let record = st.usage.project(&p.id).await?;
    let stored = st.usage.stored(&p.id).await?;
    let invoice = Invoice::new(&p.id, &period.totals, &period.settled, &st.prices);
    let days: Vec<Value> = period
        .days
        .iter()
        .map(|(day, d)| {
            json!({
                "day": day, "bytes": d.bytes, "segments": d.segments, "objects": d.objects,
                "byte_hours": d.byte_hours, "egress": d.bandwidth.get,
            })
        })
        .collect();
    Ok(Json(json!({
        "project": p.id,
        "month": month,
        "limits": record.limits,
        "stored": { "bytes": stored.bytes, "segments": stored.segments },
        "days": days,
        "partial": period.partial,
        "invoice": invoice,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorQuery {
    /// Start after this (a bucket name or an encrypted key); empty: from the start.
    #[serde(default)]
    cursor: String,
}

async fn buckets(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<CursorQuery>,
) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    let (p, _) = st.console.project(&a.id, &id).await?;
    let page = st.metainfo.list_buckets(&p.id, &q.cursor, 0).await?;
    Ok(Json(json!({ "buckets": page.items, "more": page.more })).into_response())
}

async fn objects(
    State(st): St,
    headers: HeaderMap,
    Path((id, bucket)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<CursorQuery>,
) -> Answer {
    let (_, a) = authed(&st, &headers, false).await?;
    let (p, _) = st.console.project(&a.id, &id).await?;
    let page = st
        .metainfo
        .list_objects(&p.id, &bucket, "", &q.cursor, 0)
        .await?;
    let objects: Vec<Value> = page
        .items
        .iter()
        .map(|(key, o)| {
            json!({
                "key": key,
                "metadata": orbit_identity::hex_encode(&o.metadata),
                "created": o.created,
            })
        })
        .collect();
    Ok(Json(json!({ "objects": objects, "more": page.more })).into_response())
}

async fn satellite_info(State(st): St) -> Answer {
    let max_projects = st.console.rules().max_projects;
    Ok(match &st.satellite {
        Some(s) => Json(json!({ "url": s.url, "key": s.key, "max_projects": max_projects })),
        None => {
            return Err(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "this console does not know the satellite's API address".into(),
            ))
        }
    }
    .into_response())
}

/// The front end's files, built by `build.rs`: `(path, contents)`.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A file of the front end; its page for paths without an extension (the page routes
/// them itself); 404 JSON under `/api/` or for a missing file.
async fn front_end(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let is_page = !path.rsplit('/').next().unwrap_or("").contains('.');
    if path.starts_with("/api/")
        || !(method == axum::http::Method::GET || method == axum::http::Method::HEAD)
    {
        return Failure(StatusCode::NOT_FOUND, "no such route".into()).into_response();
    }
    let want = if is_page { "/index.html" } else { path };
    let Some((name, body)) = ASSETS.iter().find(|(p, _)| *p == want) else {
        return Failure(StatusCode::NOT_FOUND, "no such file".into()).into_response();
    };
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(name)),
        )],
        *body,
    )
        .into_response();
    // Built file names carry a hash of their contents: they never change.
    if name.starts_with("/assets/") {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    r
}

/// Headers every answer carries: no framing, no sniffing, no referrer, and only this
/// origin's scripts and styles.
async fn hardened(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// What the console serves from, besides the store.
pub struct Setup {
    /// The model's rules.
    pub rules: Rules,
    /// Sends its mail.
    pub mailer: Arc<dyn Mailer>,
    /// Where links in mail point.
    pub public_url: String,
    /// How usage is priced.
    pub prices: Prices,
    /// The escrow wallets' balances and channels are on, when payments are on.
    pub escrow: Option<orbit_payments::Address>,
    /// The satellite API grants point at, when this console knows it.
    pub satellite: Option<SatelliteInfo>,
}

/// What an access grant needs of the satellite.
#[derive(Clone, Debug)]
pub struct SatelliteInfo {
    /// Its API URL, as uplinks reach it.
    pub url: String,
    /// Its public key, hex.
    pub key: String,
}

/// The console's routes over `kv`.
pub fn router(kv: Arc<dyn orbit_kv::Kv>, setup: Setup) -> Router {
    let Setup {
        rules,
        mailer,
        public_url,
        prices,
        escrow,
        satellite,
    } = setup;
    let state = Arc::new(AppState {
        console: Console::new(kv.clone(), rules),
        metainfo: Metainfo::new(kv.clone()),
        satellite,
        mailer,
        public_url: public_url.trim_end_matches('/').to_string(),
        accounting: Accounting::new(kv.clone()),
        usage: Usage::new(kv.clone()),
        prices,
        escrow: escrow.map(|a| orbit_payments::Escrow::new(kv, a)),
    });
    Router::new()
        .route("/api/v1/signup", post(sign_up))
        .route("/api/v1/confirm", post(confirm))
        .route("/api/v1/login", post(log_in))
        .route("/api/v1/logout", post(log_out))
        .route("/api/v1/me", get(me))
        .route("/api/v1/password", post(change_password))
        .route("/api/v1/reset/request", post(request_reset))
        .route("/api/v1/reset", post(reset))
        .route("/api/v1/projects", get(projects).post(create_project))
        .route(
            "/api/v1/projects/{id}",
            get(project).patch(rename_project).delete(delete_project),
        )
        .route("/api/v1/projects/{id}/keys", get(keys).post(create_key))
        .route("/api/v1/projects/{id}/keys/{head}", delete(revoke_key))
        .route("/api/v1/projects/{id}/usage", get(usage))
        .route("/api/v1/account/wallet", axum::routing::put(set_wallet))
        .route("/api/v1/billing", get(billing))
        .route("/api/v1/projects/{id}/buckets", get(buckets))
        .route(
            "/api/v1/projects/{id}/buckets/{bucket}/objects",
            get(objects),
        )
        .route("/api/v1/satellite", get(satellite_info))
        .fallback(front_end)
        .layer(axum::middleware::from_fn(hardened))
        // Bodies are small JSON; anything larger is refused before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .with_state(state)
}
