//! JSON log lines that carry the OpenTelemetry trace id, so a log line leads to its trace.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub(crate) struct JsonWithTrace {
    service: String,
}

impl JsonWithTrace {
    pub(crate) fn new(service: &str) -> Self {
        JsonWithTrace {
            service: service.to_owned(),
        }
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole cause chain, so an opaque 5xx can be diagnosed from the log.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.0.insert(field.name().to_owned(), Value::String(text));
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut map = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        map.insert("timestamp".into(), Value::String(now));
        map.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        map.insert("service".into(), Value::String(self.service.clone()));
        map.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        if let Some(msg) = fields.remove("message") {
            map.insert("message".into(), msg);
        }
        if !fields.is_empty() {
            map.insert("fields".into(), Value::Object(fields));
        }
        if let Some(span) = ctx.lookup_current() {
            map.insert("span".into(), Value::String(span.name().to_owned()));
            let ext = span.extensions();
            if let Some(f) = ext.get::<FormattedFields<N>>() {
                if !f.is_empty() {
                    map.insert("span_fields".into(), Value::String(f.to_string()));
                }
            }
        }
        let cx = tracing::Span::current().context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            map.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
            map.insert("span_id".into(), Value::String(sc.span_id().to_string()));
        }
        writeln!(writer, "{}", Value::Object(map))
    }
}
