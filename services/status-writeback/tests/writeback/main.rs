//! status-writeback in-process against a private NATS and the WooCommerce simulator.

mod helpers;
mod rules;
