//! W3C trace context in NATS headers, so one trace follows a change across processes.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Adds the current span's context to `headers`.
pub(crate) fn inject(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Inject(headers)));
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub(crate) fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
    if headers
        .get(duellsync_events::headers::TRACEPARENT)
        .is_none()
    {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
    let _ = span.set_parent(cx);
}

/// The trace a delivered message belongs to, kept to continue it later: work that coalesces
/// many messages into one outside write (the catalogue publisher's batches) makes the write a
/// child of one of them, so a change's trace reaches the write.
#[derive(Clone, Default)]
pub struct TraceParent(opentelemetry::Context);

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use opentelemetry::trace::TraceContextExt;
        let cx = self.0.span();
        let sc = cx.span_context();
        f.debug_struct("TraceParent")
            .field("trace_id", &sc.trace_id())
            .field("span_id", &sc.span_id())
            .finish()
    }
}

impl TraceParent {
    /// The context of `span` (e.g. a delivery's consume span).
    pub fn of(span: &tracing::Span) -> Self {
        TraceParent(span.context())
    }

    /// Makes `span` a child of this trace. Call before the span is first entered.
    pub fn adopt(&self, span: &tracing::Span) {
        let _ = span.set_parent(self.0.clone());
    }
}
