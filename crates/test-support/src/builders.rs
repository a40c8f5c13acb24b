//! Builders for events, so tests say what matters and default the rest.

use duellsync_events::{meta, v1, EventId};

pub fn stock_observed(store: &str, product_id: i64, stock: &str) -> v1::StockObserved {
    let id = EventId::new("stock", store)
        .int(product_id)
        .str(stock)
        .finish();
    v1::StockObserved {
        meta: Some(meta(
            store,
            id,
            "test",
            duellsync_events::product_correlation(store, product_id),
        )),
        product_id,
        product_number: format!("SKU-{product_id}"),
        stock: stock.to_owned(),
        actual_stock: stock.to_owned(),
    }
}
