//! WooCommerce REST API client
#![forbid(unsafe_code)]
