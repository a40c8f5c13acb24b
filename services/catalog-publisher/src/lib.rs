//! The catalog-publisher service
#![forbid(unsafe_code)]
