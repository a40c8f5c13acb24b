//! The order-importer service
#![forbid(unsafe_code)]
