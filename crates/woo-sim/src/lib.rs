//! A WooCommerce 7.9 simulator for tests and the demo
#![forbid(unsafe_code)]
