//! Tracing, OTLP export, Prometheus metrics and the health/readiness server
#![forbid(unsafe_code)]
