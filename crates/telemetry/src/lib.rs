//! Metrics and request tracing for every orbit process.
//!
//! One Prometheus registry per OS process (a `satellite run all` is one process with
//! many services; a test that runs many nodes in one process sees their sum), served as
//! OpenMetrics text on `/metrics`. Each crate registers its own series once, through
//! [`register`], as a lazily built static. [`RpcLayer`] goes on every gRPC server: it
//! counts and times every call by service, method and status code, and runs the call in
//! a span carrying the caller's request id (`x-request-id`, or a new one), which orbit's
//! clients pass on with [`tag`] — so one upload's id shows in the uplink's, the
//! satellite's and every node's logs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::future::Future;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

pub use prometheus_client;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The header that carries a request id between processes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

type Hook = Box<dyn Fn() + Send + Sync>;

static REGISTRY: LazyLock<Mutex<Registry>> =
    LazyLock::new(|| Mutex::new(Registry::with_prefix("orbit")));
static HOOKS: LazyLock<Mutex<Vec<Hook>>> = LazyLock::new(|| Mutex::new(Vec::new()));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers `metric` as `orbit_<name>` and returns it. Call it once per series, from a
/// lazily built static: registering a name twice shows it twice.
pub fn register<M: Metric + Clone>(name: &str, help: &str, metric: M) -> M {
    lock(&REGISTRY).register(name, help, metric.clone());
    metric
}

/// Runs `hook` before every scrape: for gauges read from state rather than kept.
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    lock(&HOOKS).push(Box::new(hook));
}

/// Every registered series as OpenMetrics text.
pub fn encode() -> String {
    for hook in lock(&HOOKS).iter() {
        hook();
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &lock(&REGISTRY));
    out
}

/// Latency buckets in seconds: 0.5 ms to about 16 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Buckets for long work in seconds (a loop pass, a repair): 10 ms to about 3 hours.
pub fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 21))
}

pub use prometheus_client::metrics::histogram::Histogram as Hist;

/// A family of latency histograms.
pub type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty family of latency histograms.
pub fn latencies<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug>(
) -> Latencies<L> {
    Family::new_with_constructor(latency_histogram)
}

/// A label set: `[("worker", name)]`.
pub type Labels<const N: usize> = [(&'static str, String); N];

/// A family of counters.
pub type Counters<L> = Family<L, Counter>;

/// A family of gauges.
pub type Gauges<L> = Family<L, Gauge>;

/// The `/metrics` route, to merge into a process's HTTP server.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], encode()) }),
    )
}

/// Serves `/metrics` alone on `listener` until `stop` resolves: the debug address of a
/// process without another HTTP server.
pub fn serve(
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let app: axum::Router = routes();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    })
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the work this task is doing, if it has one.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// A new random request id.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Runs `fut` as one traced piece of work: under the current request id if there is
/// one, else a new one, in a span named `what`. Everything it sends with [`tag`]
/// carries the id.
pub async fn traced<F: Future>(what: &str, fut: F) -> F::Output {
    let id = request_id().unwrap_or_else(new_request_id);
    let span = tracing::info_span!("work", %what, request_id = %id);
    REQUEST_ID.scope(id, fut.instrument(span)).await
}

/// Runs `fut` under the request id `id` (at most 64 visible ASCII characters, or a
/// new one): for a program that has its own id for the work it asks of orbit.
pub async fn with_request_id<F: Future>(id: &str, fut: F) -> F::Output {
    let id = valid_id(id).unwrap_or_else(new_request_id);
    REQUEST_ID.scope(id, fut).await
}

/// `id` if it can go in a header and a log line unchanged.
fn valid_id(id: &str) -> Option<String> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| id.to_string())
}

/// Puts the current request id on an outgoing gRPC request.
pub fn tag<T>(request: &mut tonic::Request<T>) {
    if let Some(id) = request_id() {
        if let Ok(v) = id.parse() {
            request.metadata_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
}

/// The type of [`propagate`], for clients' types.
pub type Propagate = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// A client interceptor that puts the current request id on every call:
/// `FooClient::with_interceptor(channel, orbit_telemetry::propagate as Propagate)`.
pub fn propagate(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    tag(&mut request);
    Ok(request)
}

/// A gRPC request carrying the current request id.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    tag(&mut r);
    r
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

struct RpcMetrics {
    requests: Counters<RpcLabels>,
    seconds: Latencies<MethodLabels>,
}

static RPC: LazyLock<RpcMetrics> = LazyLock::new(|| {
    RpcMetrics {
    requests: register(
        "rpc_requests",
        "gRPC calls served, by service, method and status code",
        Family::default(),
    ),
    seconds: register(
        "rpc_request_duration_seconds",
        "Time from a gRPC call's arrival to its response headers (a streamed answer's first message), by service and method",
        latencies(),
    ),
}
});

/// Counts and times every call of a gRPC server and traces it under its request id.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcLayer;

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc { inner }
    }
}

/// The service [`RpcLayer`] wraps around a server.
#[derive(Clone, Debug)]
pub struct Rpc<S> {
    inner: S,
}

/// A boxed response future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The status code of a response: `grpc-status` when it is in the headers (an error
/// answered at once), else OK for HTTP 200.
fn code_of<B>(r: &http::Response<B>) -> String {
    match r.headers().get("grpc-status") {
        Some(v) => format!("{:?}", tonic::Code::from_bytes(v.as_bytes())),
        None if r.status() == http::StatusCode::OK => "Ok".into(),
        None => format!("http_{}", r.status().as_u16()),
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Rpc<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut parts = req.uri().path().trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or("").to_string();
        let method = parts.next().unwrap_or("").to_string();
        // A caller's id that could forge log lines is replaced, not trusted.
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(valid_id)
            .unwrap_or_else(new_request_id);
        let span = tracing::debug_span!("rpc", %service, %method, request_id = %id);
        // The clone is ready only after its own poll_ready; call the one that was.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let fut = REQUEST_ID.scope(id, inner.call(req).instrument(span.clone()));
        Box::pin(async move {
            let started = Instant::now();
            let result = fut.await;
            let code = match &result {
                Ok(r) => code_of(r),
                Err(_) => "transport".into(),
            };
            span.in_scope(|| {
                tracing::debug!(%code, ms = started.elapsed().as_millis() as u64, "rpc answered")
            });
            let m = &*RPC;
            m.seconds
                .get_or_create(&MethodLabels {
                    service: service.clone(),
                    method: method.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
            m.requests
                .get_or_create(&RpcLabels {
                    service,
                    method,
                    code,
                })
                .inc();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_series_show_in_the_text() {
        let c: Counter = register(
            "telemetry_test_events",
            "events of a test",
            Counter::default(),
        );
        c.inc_by(3);
        let text = encode();
        assert!(
            text.contains("# TYPE orbit_telemetry_test_events counter"),
            "{text}"
        );
        assert!(
            text.contains("orbit_telemetry_test_events_total 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn traced_work_tags_requests_with_one_id() {
        assert_eq!(request_id(), None);
        let (a, b) = traced("test", async {
            let a = request("x");
            let b = traced("inner", async { request_id() }).await;
            (a, b)
        })
        .await;
        let sent = a
            .metadata()
            .get(REQUEST_ID_HEADER)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(sent.len(), 16);
        assert_eq!(b.as_deref(), Some(sent), "nested work keeps the id");
        assert!(request("y").metadata().get(REQUEST_ID_HEADER).is_none());
        let given = with_request_id("mine-42", async { request_id() }).await;
        assert_eq!(given.as_deref(), Some("mine-42"));
        let forged = with_request_id("a\nb", async { request_id() })
            .await
            .unwrap();
        assert_eq!(
            forged.len(),
            16,
            "an id that could forge a log line is replaced"
        );
    }

    #[tokio::test]
    async fn the_layer_counts_calls_by_code_and_passes_the_id_on() {
        use tower_service::Service;
        let inner = tower_service_fn(|req: http::Request<()>| async move {
            let id = request_id().unwrap_or_default();
            let mut r = http::Response::new(id);
            if req.uri().path().ends_with("Missing") {
                r.headers_mut().insert("grpc-status", "5".parse().unwrap());
            }
            Ok::<_, std::convert::Infallible>(r)
        });
        let mut svc = tower_layer::Layer::layer(&RpcLayer, inner);
        let req = http::Request::builder()
            .uri("/test.Svc/Get")
            .header(REQUEST_ID_HEADER, "abc")
            .body(())
            .unwrap();
        assert_eq!(svc.call(req).await.unwrap().into_body(), "abc");
        let req = http::Request::builder()
            .uri("/test.Svc/Missing")
            .body(())
            .unwrap();
        let fresh = svc.call(req).await.unwrap().into_body();
        assert_eq!(fresh.len(), 16, "a call without an id gets one");
        let text = encode();
        assert!(
            text.contains(
                r#"orbit_rpc_requests_total{service="test.Svc",method="Get",code="Ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"orbit_rpc_requests_total{service="test.Svc",method="Missing",code="NotFound"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"orbit_rpc_request_duration_seconds_count{service="test.Svc",method="Get"} 1"#
        ));
    }

    /// A cloneable service from an async function (tower's `service_fn` without tower).
    fn tower_service_fn<F, Fut, R>(f: F) -> FnService<F>
    where
        F: FnMut(http::Request<()>) -> Fut + Clone,
        Fut: Future<Output = Result<R, std::convert::Infallible>>,
    {
        FnService(f)
    }

    #[derive(Clone)]
    struct FnService<F>(F);

    impl<F, Fut, R> tower_service::Service<http::Request<()>> for FnService<F>
    where
        F: FnMut(http::Request<()>) -> Fut + Clone,
        Fut: Future<Output = Result<R, std::convert::Infallible>>,
    {
        type Response = R;
        type Error = std::convert::Infallible;
        type Future = Fut;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<()>) -> Fut {
            (self.0)(req)
        }
    }
}
