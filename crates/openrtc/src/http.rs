//! The HTTP health endpoints (`.http_addr`): `GET /health` (the [`crate::health`] verdict as
//! JSON; 503 when critical), `GET /ready` (503 while starting, draining or full) and
//! `GET /metrics` (Prometheus text). Served by axum on a thread of its own with a
//! current-thread Tokio runtime, never on a worker thread: every answer is built from a
//! snapshot, which needs no worker thread, so the endpoints answer while every worker thread
//! is blocked. A `/health` verdict answers for [`HEALTH_REUSE`]: a burst of probes (a fleet's
//! load balancers asking at once) costs one snapshot, not one each.

mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::error::RunError;
use crate::pool::PoolShared;

/// How long one `/health` verdict is served again before a new one is taken: far under any
/// probe's interval, and each answer says when its snapshot was taken (`taken_at_unix_ms`).
const HEALTH_REUSE: Duration = Duration::from_millis(100);

/// What the handlers share: the pool, and the latest `/health` answer.
struct Endpoints {
    shared: Arc<PoolShared>,
    /// The latest verdict: when it was made, its status code and JSON body. Only the HTTP
    /// thread touches it, one handler at a time (a current-thread runtime), so the lock is
    /// never contended.
    health: Mutex<Option<(Instant, StatusCode, axum::body::Bytes)>>,
}

/// The running HTTP server: its thread, and the means to stop it.
pub(crate) struct HttpServer {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free one), records and logs the bound address, and starts
    /// serving on a thread of its own.
    pub(crate) fn start(shared: Arc<PoolShared>, addr: SocketAddr) -> Result<Self, RunError> {
        let http_error = |source| RunError::Http { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(http_error)?;
        listener.set_nonblocking(true).map_err(http_error)?;
        let bound = listener.local_addr().map_err(http_error)?;
        shared.set_http_addr(bound);
        let (stop, stopped) = oneshot::channel();
        let worker = shared.config.worker_name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{worker}-http"))
            .spawn(move || serve(shared, listener, stopped))
            .map_err(|source| RunError::Thread {
                name: "http",
                source,
            })?;
        tracing::info!(
            event = "http_ready",
            worker = worker.as_str(),
            addr = %bound,
            "[http] health endpoints at http://{bound}/health, /ready and /metrics"
        );
        Ok(Self { stop, thread })
    }

    /// Stops serving (connections in progress are let finish) and joins the thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the http thread panicked");
        }
    }
}

/// The HTTP thread: a current-thread runtime running axum until told to stop.
fn serve(shared: Arc<PoolShared>, listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the http runtime: no health endpoints served");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot serve the health endpoints");
                return;
            }
        };
        let router = axum::Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(Arc::new(Endpoints {
                shared,
                health: Mutex::new(None),
            }));
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "the health endpoints stopped");
        }
    });
}

/// `GET /health`: the verdict on a snapshot taken now (or within [`HEALTH_REUSE`]); 200 for
/// ok and degraded, 503 for critical.
async fn health(State(endpoints): State<Arc<Endpoints>>) -> Response {
    let mut latest = endpoints
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fresh = latest
        .as_ref()
        .filter(|(at, ..)| at.elapsed() < HEALTH_REUSE);
    let (status, body) = match fresh {
        Some((_, status, body)) => (*status, body.clone()),
        None => {
            let (status, body) = verdict(&endpoints.shared);
            *latest = Some((Instant::now(), status, body.clone()));
            (status, body)
        }
    };
    drop(latest);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The verdict on a snapshot taken now: its status code and JSON body.
fn verdict(shared: &PoolShared) -> (StatusCode, axum::body::Bytes) {
    let snapshot = crate::introspect::snapshot(shared);
    let report = crate::health::evaluate(
        &snapshot,
        &crate::health::HealthThresholds::for_snapshot(&snapshot),
    );
    let status = match report.status {
        openrtc_proto::HealthStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    match serde_json::to_vec(&report) {
        Ok(body) => (status, body.into()),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the health report: {error}\n").into(),
        ),
    }
}

/// `GET /ready`: 200 while the worker accepts sessions, else 503 saying why.
async fn ready(State(endpoints): State<Arc<Endpoints>>) -> Response {
    let shared = &endpoints.shared;
    let verdict = readiness(
        shared.runtime_started_ns() != 0,
        shared.is_draining(),
        shared.active_sessions(),
        shared.config.max_concurrent_sessions,
    );
    match verdict {
        Ok(()) => (StatusCode::OK, "ready: accepting sessions\n".to_owned()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Whether a worker accepts sessions, and if not, why (pure).
fn readiness(running: bool, draining: bool, active: u32, max: u32) -> Result<(), String> {
    if draining {
        Err("draining: the worker accepts no new session".to_owned())
    } else if !running {
        Err("starting: the runtime is not running yet".to_owned())
    } else if active >= max {
        Err(format!("full: {active} of {max} sessions"))
    } else {
        Ok(())
    }
}

/// `GET /metrics`: Prometheus text exposition of a snapshot taken now.
async fn metrics(State(endpoints): State<Arc<Endpoints>>) -> Response {
    let snapshot = crate::introspect::snapshot(&endpoints.shared);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&snapshot),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::readiness;

    #[test]
    fn readiness_says_why_not() {
        assert_eq!(readiness(true, false, 3, 4), Ok(()));
        assert!(readiness(true, true, 0, 4).is_err_and(|why| why.starts_with("draining")));
        assert!(readiness(false, false, 0, 4).is_err_and(|why| why.starts_with("starting")));
        assert_eq!(
            readiness(true, false, 4, 4),
            Err("full: 4 of 4 sessions".to_owned())
        );
    }
}
