//! Events the benchmark appends itself, shaped as the engine's sources append them.

use duellsync_events::{meta, order_correlation, sha256_hex, v1, EventId};

use crate::world::STORE;

/// An `OrderObserved` exactly as webhook-ingest stores an `order.created` delivery.
pub fn order_observed(body: &[u8]) -> v1::OrderObserved {
    let head: serde_json::Value = serde_json::from_slice(body).expect("an order body is JSON");
    let text = |k: &str| head[k].as_str().unwrap_or_default().to_owned();
    let order_id = head["id"].as_i64().expect("an order has an id");
    let topic = "order.created";
    let body_sha256 = sha256_hex(body);
    let event_id = EventId::new("order-webhook", STORE)
        .str(topic)
        .int(order_id)
        .str(&body_sha256)
        .finish();
    v1::OrderObserved {
        meta: Some(meta(
            STORE,
            event_id,
            "webhook-ingest",
            order_correlation(STORE, order_id),
        )),
        order_id,
        status: text("status"),
        number: text("number"),
        date_created_gmt: text("date_created_gmt"),
        date_modified_gmt: text("date_modified_gmt"),
        total: text("total"),
        source: v1::order_observed::Source::Webhook as i32,
        topic: topic.to_owned(),
        body_sha256,
        payload_json: body.to_vec(),
    }
}

/// A minimal `OrderObserved` with a unique id `n` carrying `payload` (baseline messages and the
/// bare server: no parsing, no hashing).
pub fn raw_order(n: u64, producer: &str, payload: Vec<u8>) -> v1::OrderObserved {
    let id = EventId::new(producer, STORE).int(n as i64).finish();
    v1::OrderObserved {
        meta: Some(meta(STORE, id, producer, String::new())),
        order_id: n as i64,
        payload_json: payload,
        ..Default::default()
    }
}

/// A `StockObserved` as the change-poller publishes it (`version` makes every value a new fact).
pub fn stock_observed(product_id: i64, sku: &str, value: i64, version: u64) -> v1::StockObserved {
    let stock = value.to_string();
    let id = EventId::new("stock-observed", STORE)
        .int(product_id)
        .int(version as i64)
        .str(&stock)
        .str(&stock)
        .finish();
    v1::StockObserved {
        meta: Some(meta(
            STORE,
            id,
            "change-poller",
            duellsync_events::product_correlation(STORE, product_id),
        )),
        product_id,
        product_number: sku.to_owned(),
        stock: stock.clone(),
        actual_stock: stock,
    }
}

/// `syncctl sync` as an event; returns its run id.
pub fn full_sync_requested() -> (String, v1::FullSyncRequested) {
    let run_id = format!("bench-{}", duellsync_events::now_ms());
    let id = EventId::new("fullsync-requested", STORE)
        .str(&run_id)
        .finish();
    let ev = v1::FullSyncRequested {
        meta: Some(meta(STORE, id, "bench", format!("fullsync:{run_id}"))),
        run_id: run_id.clone(),
        dry_run: false,
        trigger: v1::full_sync_requested::Trigger::Manual as i32,
    };
    (run_id, ev)
}

/// The end marker of a full DUELL scan, as the change-poller publishes it: the catalogue
/// publisher reconciles WooCommerce when it sees it. Returns its run id.
pub fn catalog_scanned(products: i64) -> (String, v1::CatalogScanned) {
    let run_id = format!("bench-reconcile-{}", duellsync_events::now_ms());
    let id = EventId::new("catalog-scanned", STORE).str(&run_id).finish();
    let ev = v1::CatalogScanned {
        meta: Some(meta(
            STORE,
            id,
            "change-poller",
            format!("fullsync:{run_id}"),
        )),
        run_id: run_id.clone(),
        products,
        stock_rows: products,
        dry_run: false,
    };
    (run_id, ev)
}

/// A 3,000-byte payload: the captured order delivery, padded.
pub fn payload_3kb(template: &str) -> Vec<u8> {
    let mut b = template.as_bytes().to_vec();
    b.truncate(3000);
    b.resize(3000, b' ');
    b
}
