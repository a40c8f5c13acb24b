//! Telemetry every service shares: JSON logs carrying trace ids, OpenTelemetry traces exported
//! over OTLP/HTTP (Jaeger's OTLP endpoint), W3C trace-context propagation, Prometheus metrics,
//! the `/healthz` `/readyz` `/metrics` admin server, and the shutdown signal.
#![forbid(unsafe_code)]

mod admin;
mod logs;

use std::time::Duration;

pub use admin::{admin_router, serve_admin, Readiness, ReadinessCheck};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How a service reports.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    pub service_name: String,
    /// `RUST_LOG`-style filter.
    pub log_filter: String,
    /// JSON lines (production) or human-readable text (local runs).
    pub json_logs: bool,
    /// OTLP/HTTP base URL, e.g. `http://jaeger-collector:4318`; `None` disables export (trace
    /// ids are still generated, logged and propagated).
    pub otlp_endpoint: Option<String>,
}

impl TelemetryOptions {
    pub fn new(service_name: impl Into<String>) -> Self {
        TelemetryOptions {
            service_name: service_name.into(),
            log_filter: "info".into(),
            json_logs: true,
            otlp_endpoint: None,
        }
    }

    /// A service's options from the `[telemetry]` section of its configuration (an empty
    /// endpoint exports nothing).
    pub fn from_section(
        service_name: impl Into<String>,
        section: &duellsync_settings::service::TelemetrySection,
    ) -> Self {
        use duellsync_settings::service::LogFormat;
        TelemetryOptions {
            service_name: service_name.into(),
            log_filter: section.log_filter.clone(),
            json_logs: section.log_format == LogFormat::Json,
            otlp_endpoint: Some(section.otlp_endpoint.trim().to_owned()).filter(|e| !e.is_empty()),
        }
    }
}

/// Keeps the exporters alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TelemetryGuard")
    }
}

impl TelemetryGuard {
    /// Flushes spans now (graceful shutdown), bounded in time.
    pub fn flush(&self) {
        let provider = self.provider.clone();
        let done = std::thread::spawn(move || {
            let _ = provider.force_flush();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush();
        let _ = self.provider.shutdown();
    }
}

/// Installs the TLS crypto provider the HTTP clients use (reqwest is built without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sets up logging, tracing and the metrics recorder for the process. Call once, early in main.
pub fn init(options: &TelemetryOptions) -> anyhow::Result<TelemetryGuard> {
    install_crypto_provider();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(options.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = options.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_timeout(Duration::from_secs(5))
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(options.service_name.clone());

    let filter = EnvFilter::try_new(&options.log_filter)
        .map_err(|e| anyhow::anyhow!("log filter `{}`: {e}", options.log_filter))?;
    let fmt_layer = if options.json_logs {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(logs::JsonWithTrace::new(&options.service_name))
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // The engine reads a span's trace context from the span itself (events'
                // headers, HTTP headers, log lines), never from OpenTelemetry's "current"
                // context, so attaching it on every poll of an instrumented future, timing each
                // poll and naming the thread on every span is work no one reads (a few per cent
                // of the importer's CPU in a profile).
                .with_context_activation(false)
                .with_tracked_inactivity(false)
                .with_threads(false),
        )
        .try_init()
        .map_err(|e| anyhow::anyhow!("tracing already initialised: {e}"))?;
    admin::install_metrics_recorder();
    Ok(TelemetryGuard { provider })
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed when this is called
/// (not when the future is first polled), so call it first thing in `main`: a signal that
/// arrives while the service is still starting is then not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut int) = (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
    );
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => tracing::info!("SIGTERM received; shutting down"),
                _ = int => tracing::info!("SIGINT received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("interrupt received; shutting down");
        }
    }
}

/// The current trace id as hex, or empty (for tests and log lines).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duellsync_settings::service::{LogFormat, TelemetrySection};

    #[test]
    fn options_follow_the_telemetry_section() {
        let default = TelemetryOptions::from_section("svc", &TelemetrySection::default());
        assert_eq!(default.service_name, "svc");
        assert_eq!(default.log_filter, "info");
        assert!(default.json_logs);
        assert_eq!(default.otlp_endpoint, None);

        let section = TelemetrySection {
            log_filter: "warn,duellsync=debug".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: " http://jaeger:4318 ".into(),
        };
        let o = TelemetryOptions::from_section("svc", &section);
        assert_eq!(o.log_filter, "warn,duellsync=debug");
        assert!(!o.json_logs);
        assert_eq!(o.otlp_endpoint.as_deref(), Some("http://jaeger:4318"));

        let blank = TelemetrySection {
            otlp_endpoint: "   ".into(),
            ..TelemetrySection::default()
        };
        assert_eq!(
            TelemetryOptions::from_section("svc", &blank).otlp_endpoint,
            None,
            "a blank endpoint exports nothing"
        );
    }
}
