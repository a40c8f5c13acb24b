//! The client's response decoding without HTTP, for the fuzz targets (`fuzz/`) and the no-panic
//! property tests. Not an API: these thin wrappers call exactly what the client calls after a
//! response arrived, and may change with it.

use std::time::Duration;

use serde_json::Value;

use crate::client::{error_from_body, parse_json_body};
use crate::error::{ApiError, Error};
use crate::products::{parse_batch, product_from_value};
use crate::settings::{price_num_decimals_of, prices_include_tax_of, version_of, Setting};
use crate::webhooks::Webhook;
use crate::WooResponse;
use duellsync_woo_model::{Category, Order, OrderNote, Product};

/// Reads `body` as the answer to a request, with the given HTTP status: the JSON the client
/// would hand to a decoder, or the error it would return (the `{code, message, data}` envelope
/// of an error status, a non-JSON body).
pub fn read_response(status: u16, body: &[u8]) -> Result<Value, Error> {
    let endpoint = "FUZZ endpoint";
    let Some(json) = parse_json_body(body) else {
        return Err(Error::NotJson {
            endpoint: endpoint.into(),
            status,
            content_type: String::new(),
            snippet: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        });
    };
    if (200..300).contains(&status) {
        Ok(json)
    } else {
        Err(error_from_body(
            endpoint,
            status,
            Some(Duration::from_secs(1)),
            json,
        ))
    }
}

/// Decodes a 2xx body as every response type the client reads, the way each endpoint method
/// does, and looks at every accessor of the results. Returns how many decodes succeeded.
pub fn decode_all(json: &Value) -> usize {
    let endpoint = "FUZZ endpoint";
    let response = || WooResponse {
        status: 200,
        total: None,
        total_pages: None,
        body: json.clone(),
    };
    let mut ok = 0;
    // Single product / variation, and a product list (list_products).
    if let Ok(p) = product_from_value(json.clone(), endpoint) {
        let _ = p.meta("_duell_product_id");
        ok += 1;
    }
    if let Ok(items) = response().decode::<Vec<Value>>(endpoint) {
        ok += items
            .into_iter()
            .filter(|v| product_from_value(v.clone(), endpoint).is_ok())
            .count();
    }
    // Orders.
    if let Ok(o) = response().decode::<Order>(endpoint) {
        let _ = o.meta("_duellsync");
        ok += 1;
    }
    if let Ok(list) = response().decode::<Vec<Order>>(endpoint) {
        ok += list.len();
    }
    if let Ok(notes) = response().decode::<Vec<OrderNote>>(endpoint) {
        ok += notes.len();
    }
    ok += usize::from(response().decode::<OrderNote>(endpoint).is_ok());
    // Webhooks.
    ok += usize::from(response().decode::<Webhook>(endpoint).is_ok());
    if let Ok(hooks) = response().decode::<Vec<Webhook>>(endpoint) {
        for topic in crate::ORDER_WEBHOOK_TOPICS {
            let _ = crate::order_webhooks::classify(topic, &hooks, "https://ingest.test/s1");
        }
        ok += hooks.len();
    }
    // Batch results (products/batch, variations/batch).
    if let Ok(batch) = parse_batch(json, endpoint, Product::normalise) {
        for item in batch
            .create
            .iter()
            .chain(&batch.update)
            .chain(&batch.delete)
        {
            if let Some(e) = item.err() {
                let _ = (e.status(), e.resource_id(), e.unique_sku());
            }
            let _ = item.ok();
        }
        ok += 1;
    }
    // Categories.
    if let Ok(list) = response().decode::<Vec<Category>>(endpoint) {
        ok += list.len();
    }
    // The error envelope, as a body and as a batch item's `error`.
    if let Ok(e) = serde_json::from_value::<ApiError>(json.clone()) {
        let _ = (e.status(), e.resource_id(), e.unique_sku());
        ok += 1;
    }
    // Settings and system status.
    if let Ok(s) = response().decode::<Setting>(endpoint) {
        let _ = prices_include_tax_of(&s);
        let _ = price_num_decimals_of(&s);
        ok += 1;
    }
    ok += usize::from(version_of(json).is_ok());
    ok
}

/// Looks at an error the way callers do (kind, code, status, retry-after, message).
pub fn inspect_error(e: &Error) {
    let _ = (
        e.kind(),
        e.is_transient(),
        e.code(),
        e.status(),
        e.retry_after(),
    );
    if let Some(api) = e.api_error() {
        let _ = (api.status(), api.resource_id(), api.unique_sku());
    }
    let _ = e.to_string();
}

#[cfg(test)]
mod properties {
    //! The stable-toolchain counterpart of the `woo_responses` fuzz target: whatever a store
    //! (or a proxy in front of it) answers, decoding gives a value or an error, never a panic.

    use super::*;
    use proptest::prelude::*;

    /// Keys the models read, so generated objects hit real fields.
    #[rustfmt::skip]
    const KEYS: &[&str] = &[
        "id", "name", "sku", "type", "status", "price", "regular_price", "sale_price",
        "date_on_sale_from_gmt", "date_on_sale_to_gmt", "date_created_gmt", "date_modified_gmt",
        "manage_stock", "stock_quantity", "stock_status", "in_stock", "images", "image",
        "attributes", "options", "option", "variations", "meta_data", "key", "value",
        "categories", "parent_id", "line_items", "shipping_lines", "fee_lines", "quantity",
        "total", "total_tax", "subtotal", "billing", "phone", "email", "create", "update",
        "delete", "error", "code", "message", "data", "resource_id", "unique_sku",
        "environment", "version", "topic", "delivery_url", "hooks", "count", "parent",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "-?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][+-]?[0-9]{1,5})?".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}.{0,3}".prop_map(Value::String),
            prop::sample::select(vec!["yes", "no", "parent", "instock", "1", "", "&amp;"])
                .prop_map(Value::from),
            ".{0,16}".prop_map(Value::String),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_bytes_read_as_a_value_or_an_error(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..256)) {
            match read_response(status, &body) {
                Ok(json) => { decode_all(&json); }
                Err(e) => inspect_error(&e),
            }
        }

        #[test]
        fn any_json_decodes_or_errors_as_every_response_type(status in prop::sample::select(vec![200u16, 201, 400, 404, 500]), v in json()) {
            let text = serde_json::to_vec(&v).unwrap();
            match read_response(status, &text) {
                Ok(json) => { decode_all(&json); }
                Err(e) => inspect_error(&e),
            }
        }
    }
}
