//! The webhook-ingest service
#![forbid(unsafe_code)]
