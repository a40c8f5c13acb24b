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
fn is_ping(body: &[u8]) -> bool {
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
        store = %store,
        topic = tracing::field::Empty,
        order_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    handle(&ingest, &store, req).instrument(span).await
}

async fn handle(ingest: &Ingest, store: &str, req: Request) -> Response {
    let Some(entry) = ingest.stores.get(store) else {
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
    if signature.is_none() && topic.is_none() && is_ping(&body) {
        tracing::info!("webhook creation ping answered");
        return finish(metrics, Outcome::Ping);
    }
    let verified = signature.is_some_and(|s| signer.verify(&body, s.as_bytes()));
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
    tracing::Span::current().record("topic", topic);
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
    let head = if looks_like_object(&body) {
        serde_json::from_slice::<OrderHead<'_>>(&body)
    } else {
        Err(serde::de::Error::custom("not a JSON object"))
    };
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "delivery is not an order JSON object");
            return finish(metrics, Outcome::Malformed);
        }
    };
    let Some(order_id) = head.id.0 else {
        if head.code.is_some() {
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
        tracing::warn!("order delivery without a valid id");
        return finish(metrics, Outcome::Malformed);
    };
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
        status: head.status.into_string(),
        number: head.number.into_string(),
        date_created_gmt: head.date_created_gmt.into_string(),
        date_modified_gmt: head.date_modified_gmt.into_string(),
        total: head.total.into_string(),
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
        assert!(is_ping(b"webhook_id=1"));
        assert!(is_ping(b"webhook_id=123\n"));
        assert!(!is_ping(b"webhook_id="));
        assert!(!is_ping(b"webhook_id=1&x=2"));
        assert!(!is_ping(b"{\"id\":1}"));
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
