//! WooCommerce webhook deliveries → `woo.<store>.order.observed`.
//!
//! Order of checks (cheapest refusal first, nothing about a store revealed to an unsigned
//! caller beyond whether it exists): unknown store 404 → body limit 413 → unsigned creation
//! ping 200 → signature 401 → topic (not of interest: 200, dropped) → JSON 400 → publish
//! (200 only after the JetStream ack, else 503).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use duellsync_events::{meta, order_correlation, sha256_hex, v1, EventId};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tracing::Instrument;

use crate::json::{looks_like_object, Id, Text};
use crate::outcome::Outcome;
use crate::{finish, Ingest, SERVICE};

pub(crate) const SIGNATURE: &str = "x-wc-webhook-signature";
pub(crate) const TOPIC: &str = "x-wc-webhook-topic";
const DELIVERY_ID: &str = "x-wc-webhook-delivery-id";
const WEBHOOK_ID: &str = "x-wc-webhook-id";

/// Topics that carry an order the importer wants. Everything else (products, deletions,
/// coupons, actions) is acknowledged and dropped: the engine does not act on it.
fn is_order_topic(topic: &str) -> bool {
    matches!(topic, "order.created" | "order.updated")
}

/// WooCommerce's creation ping: form body `webhook_id=<n>`, no X-WC-* headers, no signature.
pub fn is_creation_ping(body: &[u8]) -> bool {
    match body.trim_ascii().strip_prefix(b"webhook_id=") {
        Some(id) => !id.is_empty() && id.len() <= 20 && id.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

/// The fields of an order the event summarises. Everything else is skipped (but still
/// checked for JSON syntax by the parser).
#[derive(Deserialize)]
struct OrderHead<'a> {
    #[serde(default)]
    id: Id,
    #[serde(borrow, default)]
    status: Text<'a>,
    #[serde(borrow, default)]
    number: Text<'a>,
    #[serde(borrow, default)]
    date_created_gmt: Text<'a>,
    #[serde(borrow, default)]
    date_modified_gmt: Text<'a>,
    #[serde(borrow, default)]
    total: Text<'a>,
    /// Present when WooCommerce sent its REST error object instead of the order (the order
    /// was deleted or became unreadable before the delivery was built).
    #[serde(default)]
    code: Option<IgnoredAny>,
}

/// What the ingest reads from a signed `order.created` / `order.updated` delivery body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderDelivery {
    /// An order with a usable id: the summary the event carries next to the raw body.
    Order(OrderSummary),
    /// WooCommerce's REST error object instead of the order (the order vanished before the
    /// delivery was built): answered 200 and dropped.
    ErrorObject,
    /// Not a JSON object, or an order without a valid id: answered 400. The text says why.
    Malformed(String),
}

/// The fields of an order delivery the `OrderObserved` event summarises (JSON scalars as
/// text, `null` as empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: i64,
    pub status: String,
    pub number: String,
    pub date_created_gmt: String,
    pub date_modified_gmt: String,
    pub total: String,
}

/// Reads a delivery body the way the ingest does after the signature verified. Pure; the body
/// itself is forwarded byte for byte, this only decides the answer and the summary.
pub fn read_order_delivery(body: &[u8]) -> OrderDelivery {
    let head = if looks_like_object(body) {
        serde_json::from_slice::<OrderHead<'_>>(body)
    } else {
        Err(serde::de::Error::custom("not a JSON object"))
    };
    let head = match head {
        Ok(h) => h,
        Err(e) => return OrderDelivery::Malformed(e.to_string()),
    };
    match head.id.0 {
        Some(id) => OrderDelivery::Order(OrderSummary {
            id,
            status: head.status.into_string(),
            number: head.number.into_string(),
            date_created_gmt: head.date_created_gmt.into_string(),
            date_modified_gmt: head.date_modified_gmt.into_string(),
            total: head.total.into_string(),
        }),
        None if head.code.is_some() => OrderDelivery::ErrorObject,
        None => OrderDelivery::Malformed("order delivery without a valid id".into()),
    }
}

/// Label for the dropped-topic metric. Topics are only read after the signature verified, but
/// an odd value still must not create arbitrary series.
fn topic_label(topic: &str) -> String {
    if topic.len() <= 64
        && topic
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        topic.to_owned()
    } else {
        "other".to_owned()
    }
}

pub(crate) async fn receive(
    State(ingest): State<Arc<Ingest>>,
    Path(store): Path<String>,
    req: Request,
) -> Response {
    let span = tracing::info_span!(
        "webhook",
        otel.name = "POST /webhooks/woocommerce/{store}",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.route = crate::WOOCOMMERCE_ROUTE,
        http.response.status_code = tracing::field::Empty,
        store = %crate::log_safe(&store),
        topic = tracing::field::Empty,
        order_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    handle(&ingest, &store, req).instrument(span).await
}

async fn handle(ingest: &Ingest, store: &str, req: Request) -> Response {
    let Some(entry) = ingest.store(store) else {
        tracing::debug!("delivery for an unknown store");
        return finish(&ingest.unknown_woo, Outcome::UnknownStore);
    };
    let metrics = &entry.woo_metrics;
    let _in_flight = metrics.in_flight();
    let Some(signer) = entry.woo.as_ref() else {
        tracing::debug!("delivery for a store without a webhook secret");
        return finish(metrics, Outcome::UnknownStore);
    };
    let (parts, body) = req.into_parts();
    let body = match ingest.read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(outcome) => {
            tracing::info!(outcome = outcome.as_str(), "delivery body refused");
            return finish(metrics, outcome);
        }
    };
    let signature = parts.headers.get(SIGNATURE);
    let topic = parts.headers.get(TOPIC);
    if signature.is_none() && topic.is_none() && is_creation_ping(&body) {
        tracing::info!("webhook creation ping answered");
        return finish(metrics, Outcome::Ping);
    }
    let verified = signature.is_some_and(|s| {
        signer.verify(&body, s.as_bytes())
            || entry
                .woo_previous
                .as_ref()
                .is_some_and(|old| old.verify(&body, s.as_bytes()))
    });
    if !verified {
        tracing::warn!(
            signed = signature.is_some(),
            "delivery refused: signature missing or wrong"
        );
        return finish(metrics, Outcome::Unauthorized);
    }
    let Some(topic) = topic.and_then(|t| t.to_str().ok()).map(str::trim) else {
        tracing::warn!("signed delivery without a topic header");
        return finish(metrics, Outcome::Malformed);
    };
    tracing::Span::current().record("topic", crate::log_safe(topic).as_ref());
    if !is_order_topic(topic) {
        metrics::counter!(
            "duellsync_ingest_dropped_total",
            "store" => entry.id.clone(),
            "reason" => "topic",
            "topic" => topic_label(topic)
        )
        .increment(1);
        tracing::debug!("topic not of interest; dropped");
        return finish(metrics, Outcome::Dropped);
    }
    let head = match read_order_delivery(&body) {
        OrderDelivery::Order(head) => head,
        OrderDelivery::ErrorObject => {
            // The order vanished before WooCommerce built the delivery; the poller and the
            // importer see the order's real state anyway. Answer 200 so the webhook is not
            // pushed towards auto-disable.
            metrics::counter!(
                "duellsync_ingest_dropped_total",
                "store" => entry.id.clone(),
                "reason" => "error_payload",
                "topic" => topic_label(topic)
            )
            .increment(1);
            tracing::info!(
                "delivery carries a WooCommerce error object instead of an order; dropped"
            );
            return finish(metrics, Outcome::Dropped);
        }
        OrderDelivery::Malformed(error) => {
            tracing::warn!(%error, "delivery is not an order JSON object with a valid id");
            return finish(metrics, Outcome::Malformed);
        }
    };
    let order_id = head.id;
    tracing::Span::current().record("order_id", order_id);

    let body_sha256 = sha256_hex(&body);
    // Topic + resource id + body hash (SPEC §5): the Delivery-ID repeats within a second and
    // date_modified stays put for most order edits, so neither can identify a delivery.
    let event_id = EventId::new("order-webhook", store)
        .str(topic)
        .int(order_id)
        .str(&body_sha256)
        .finish();
    tracing::Span::current().record("event_id", event_id.as_str());
    let event = v1::OrderObserved {
        meta: Some(meta(
            store,
            event_id,
            SERVICE,
            order_correlation(store, order_id),
        )),
        order_id,
        status: head.status,
        number: head.number,
        date_created_gmt: head.date_created_gmt,
        date_modified_gmt: head.date_modified_gmt,
        total: head.total,
        source: v1::order_observed::Source::Webhook as i32,
        topic: topic.to_owned(),
        body_sha256,
        payload_json: body.to_vec(),
    };
    match ingest.publish(&event, metrics).await {
        Ok(published) => {
            let outcome = if published.duplicate {
                Outcome::Duplicate
            } else {
                Outcome::Accepted
            };
            tracing::debug!(
                outcome = outcome.as_str(),
                sequence = published.sequence,
                webhook_id = parts
                    .headers
                    .get(WEBHOOK_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                delivery_id = parts
                    .headers
                    .get(DELIVERY_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                "order delivery stored"
            );
            finish(metrics, outcome)
        }
        Err(outcome) => finish(metrics, outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_creation_ping() {
        assert!(is_creation_ping(b"webhook_id=1"));
        assert!(is_creation_ping(b"webhook_id=123\n"));
        assert!(!is_creation_ping(b"webhook_id="));
        assert!(!is_creation_ping(b"webhook_id=1&x=2"));
        assert!(!is_creation_ping(b"{\"id\":1}"));
    }

    #[test]
    fn only_order_created_and_updated_are_of_interest() {
        assert!(is_order_topic("order.created"));
        assert!(is_order_topic("order.updated"));
        for t in [
            "order.deleted",
            "order.restored",
            "product.updated",
            "action.wc_x",
            "",
        ] {
            assert!(!is_order_topic(t), "{t}");
        }
    }

    #[test]
    fn odd_topics_share_one_metric_label() {
        assert_eq!(topic_label("product.updated"), "product.updated");
        assert_eq!(topic_label("Product Updated!"), "other");
        assert_eq!(topic_label(&"a".repeat(65)), "other");
    }

    #[test]
    fn reads_the_summary_of_a_captured_delivery() {
        let sample = include_str!(
            "../../../tests/fixtures/woocommerce-samples/25-webhook-order-created-delivery.json"
        );
        let v: serde_json::Value = serde_json::from_str(sample).unwrap();
        let body = v["body_text"].as_str().unwrap();
        let head: OrderHead<'_> = serde_json::from_str(body).unwrap();
        assert_eq!(head.id.0, Some(15));
        assert_eq!(head.status.0, "processing");
        assert_eq!(head.number.0, "15");
        assert_eq!(head.total.0, "48.90");
        assert!(head.code.is_none());
    }
}

#[cfg(test)]
mod properties {
    //! The stable-toolchain counterpart of the `webhook` fuzz target.

    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "-?[0-9]{0,25}(\\.[0-9]{0,5})?([eE][0-9]{1,3})?".prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "id",
                            "status",
                            "number",
                            "total",
                            "code",
                            "date_created_gmt",
                            "date_modified_gmt",
                            "line_items",
                            "kind",
                            "product_id",
                            "product_number",
                        ]),
                        inner,
                    ),
                    0..6,
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_body_is_read_or_refused_without_panicking(body in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_order_delivery(&body);
            let _ = is_creation_ping(&body);
            let _ = crate::read_change_notice(&body);
        }

        #[test]
        fn any_json_body_is_read_or_refused(v in json(), spaces in "[ \t\r\n]{0,3}") {
            let body = format!("{spaces}{v}");
            let read = read_order_delivery(body.as_bytes());
            let _ = crate::read_change_notice(body.as_bytes());
            if !v.is_object() {
                prop_assert!(matches!(read, OrderDelivery::Malformed(_)), "{read:?}");
            }
            if let OrderDelivery::Order(o) = &read {
                prop_assert!(o.id > 0);
            }
        }

        #[test]
        fn an_order_with_a_positive_id_is_summarised(id in 1i64..=i64::MAX, as_text in any::<bool>(), status in "\\PC{0,12}", total in "[0-9]{1,6}\\.[0-9]{2}", extra in json()) {
            let id_json = if as_text { json!(id.to_string()) } else { json!(id) };
            let body = json!({"id": id_json, "status": status, "total": total, "line_items": extra}).to_string();
            match read_order_delivery(body.as_bytes()) {
                OrderDelivery::Order(o) => {
                    prop_assert_eq!(o.id, id);
                    prop_assert_eq!(o.status, status);
                    prop_assert_eq!(o.total, total);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn error_objects_and_orders_without_ids_are_told_apart() {
        let gone = br#"{"code":"woocommerce_rest_shop_order_invalid_id","message":"Invalid ID.","data":{"status":404}}"#;
        assert_eq!(read_order_delivery(gone), OrderDelivery::ErrorObject);
        assert!(matches!(
            read_order_delivery(br#"{"id":0,"status":"processing"}"#),
            OrderDelivery::Malformed(_)
        ));
        assert!(matches!(
            read_order_delivery(br#"[{"id":1}]"#),
            OrderDelivery::Malformed(_)
        ));
    }
}
