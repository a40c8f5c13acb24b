//! The admin HTTP server: `/healthz` (alive), `/readyz` (ready for traffic), `/metrics`.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

pub(crate) fn install_metrics_recorder() {
    PROMETHEUS.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    });
}

/// One readiness condition: a name and a check.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The service's readiness: every check must pass, and the service is not shutting down.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<std::sync::Mutex<Vec<Arc<dyn ReadinessCheck>>>>,
    draining: CancellationToken,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness")
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, check: Arc<dyn ReadinessCheck>) {
        self.checks
            .lock()
            .expect("readiness list is never poisoned")
            .push(check);
    }

    /// Marks the service as draining: `/readyz` answers 503 from now on.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    pub async fn evaluate(&self) -> (bool, Vec<(String, Result<(), String>)>) {
        let checks: Vec<_> = self
            .checks
            .lock()
            .expect("readiness list is never poisoned")
            .clone();
        let mut ok = !self.draining.is_cancelled();
        let mut out = Vec::new();
        if self.draining.is_cancelled() {
            out.push(("shutdown".to_owned(), Err("draining".to_owned())));
        }
        for c in checks {
            let r = c.check().await;
            ok &= r.is_ok();
            out.push((c.name().to_owned(), r));
        }
        (ok, out)
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (ok, checks) = readiness.evaluate().await;
    let body: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => serde_json::Value::String("ok".into()),
                Err(e) => serde_json::Value::String(e),
            };
            (name, v)
        })
        .collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::Value::Object(body)))
}

async fn metrics_text() -> impl IntoResponse {
    match PROMETHEUS.get() {
        Some(h) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            String::new(),
        ),
    }
}

/// The admin routes, to serve on their own listener or merge into a service's router.
pub fn admin_router(readiness: Readiness) -> Router {
    install_metrics_recorder();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(readiness)
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flag(bool);
    impl ReadinessCheck for Flag {
        fn name(&self) -> &str {
            "flag"
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            let ok = self.0;
            Box::pin(async move {
                if ok {
                    Ok(())
                } else {
                    Err("down".into())
                }
            })
        }
    }

    #[tokio::test]
    async fn readyz_reflects_checks_and_draining() {
        crate::install_crypto_provider();
        let readiness = Readiness::new();
        readiness.add(Arc::new(Flag(true)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_admin(listener, readiness.clone(), stop.clone()));
        let client = reqwest::Client::new();
        let url = format!("http://{addr}");
        assert_eq!(
            client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        metrics::counter!("duellsync_test_things_total").increment(3);
        let m = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("duellsync_test_things_total 3"), "{m}");
        readiness.add(Arc::new(Flag(false)));
        assert_eq!(
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            503
        );
        readiness.drain();
        let body = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("draining"));
        stop.cancel();
    }
}
