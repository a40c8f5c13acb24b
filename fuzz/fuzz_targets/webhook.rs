//! The webhook-ingest request path: signature verification with any secret, body and header,
//! then the reading of a WooCommerce delivery body, the creation ping and a DUELL change
//! notice.
//!
//! Input: the whole input is read as a body; it is also split at its first two newlines into
//! `secret \n X-WC-Webhook-Signature \n body`.
#![no_main]

use duellsync_webhook_ingest::{
    is_creation_ping, read_change_notice, read_order_delivery, OrderDelivery,
};
use duellsync_woo::webhook_signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

fn read(body: &[u8]) {
    if let OrderDelivery::Order(o) = read_order_delivery(body) {
        assert!(o.id > 0, "an order without a positive id was accepted");
    }
    let _ = is_creation_ping(body);
    if let Some((_, product_id, number)) = read_change_notice(body) {
        assert!(product_id > 0 || !number.is_empty());
        assert!(number.len() <= 64);
    }
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    if verify(&secret, body, &header) {
        // Only the one canonical signature of these exact bytes verifies.
        assert_eq!(sign(&secret, body), header.trim());
        read(body);
    }
    // What is signed verifies.
    assert!(verify(&secret, body, &sign(&secret, body)));
});
