//! DUELL change notices → `duell.<store>.change.noticed`.
//!
//! A notice is a thin, signed trigger (`{"kind":"product"|"stock","product_id":N,
//! "product_number":"…"}`, `X-Duellsync-Signature` = base64 HMAC-SHA256 of the raw body with
//! the store's `duell.notice_secret`). The poller fetches the product from DUELL itself and
//! never trusts pushed content, so a notice only says "look again".

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use duellsync_events::{meta, now_ms, product_correlation, sha256_hex, v1, EventId};
use serde::Deserialize;
use tracing::Instrument;

use crate::json::{looks_like_object, Id, Text};
use crate::outcome::Outcome;
use crate::{finish, Ingest, SERVICE};

pub(crate) const SIGNATURE: &str = "x-duellsync-signature";

#[derive(Deserialize)]
struct Notice<'a> {
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(default)]
    product_id: Id,
    #[serde(borrow, default)]
    product_number: Text<'a>,
}

/// Reads a change notice body the way the ingest does after the signature verified: its kind,
/// product id (0 when it names only a number) and trimmed product number; `None` when it is not
/// a usable notice (answered 400). Pure.
pub fn read_change_notice(body: &[u8]) -> Option<(v1::change_noticed::Kind, i64, String)> {
    if !looks_like_object(body) {
        return None;
    }
    let n: Notice<'_> = serde_json::from_slice(body).ok()?;
    let kind = match n.kind.0.as_ref() {
        "product" => v1::change_noticed::Kind::Product,
        "stock" => v1::change_noticed::Kind::Stock,
        _ => return None,
    };
    let number = n.product_number.0.trim();
    if number.len() > 64 {
        return None;
    }
    let product_id = n.product_id.0.unwrap_or(0);
    // The poller can act on an id or a number, not on neither.
    if product_id == 0 && number.is_empty() {
        return None;
    }
    Some((kind, product_id, number.to_owned()))
}

pub(crate) async fn receive(
    State(ingest): State<Arc<Ingest>>,
    Path(store): Path<String>,
    req: Request,
) -> Response {
    let span = tracing::info_span!(
        "notice",
        otel.name = "POST /notices/duell/{store}",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.route = crate::NOTICE_ROUTE,
        http.response.status_code = tracing::field::Empty,
        store = %store,
        product_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    handle(&ingest, &store, req).instrument(span).await
}

async fn handle(ingest: &Ingest, store: &str, req: Request) -> Response {
    let Some(entry) = ingest.store(store) else {
        return finish(&ingest.unknown_notice, Outcome::UnknownStore);
    };
    let metrics = &entry.notice_metrics;
    let _in_flight = metrics.in_flight();
    let Some(signer) = entry.notice.as_ref() else {
        // No secret configured: the endpoint does not exist for this store.
        return finish(metrics, Outcome::UnknownStore);
    };
    let (parts, body) = req.into_parts();
    let body = match ingest.read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(outcome) => return finish(metrics, outcome),
    };
    let verified = parts
        .headers
        .get(SIGNATURE)
        .is_some_and(|s| signer.verify(&body, s.as_bytes()));
    if !verified {
        tracing::warn!("change notice refused: signature missing or wrong");
        return finish(metrics, Outcome::Unauthorized);
    }
    let Some((kind, product_id, product_number)) = read_change_notice(&body) else {
        tracing::warn!("change notice is not {{kind, product_id, product_number}}");
        return finish(metrics, Outcome::Malformed);
    };
    tracing::Span::current().record("product_id", product_id);
    // A notice is a trigger, not a fact about DUELL's data: two identical notices a minute
    // apart must both reach the poller (the product may have changed again in between). So
    // the id names this receipt (arrival time and a random nonce), not the body; it is still
    // fixed for the lifetime of the request, so the bus's own publish retries cannot store it
    // twice.
    let received_ms = now_ms();
    let event_id = EventId::new("change-noticed", store)
        .str(&sha256_hex(&body))
        .int(received_ms)
        .int(rand::random::<i64>())
        .finish();
    tracing::Span::current().record("event_id", event_id.as_str());
    let correlation = if product_id > 0 {
        product_correlation(store, product_id)
    } else {
        format!("product-number:{store}:{product_number}")
    };
    let mut m = meta(store, event_id, SERVICE, correlation);
    m.observed_at_ms = received_ms;
    let event = v1::ChangeNoticed {
        meta: Some(m),
        kind: kind as i32,
        product_id,
        product_number,
    };
    match ingest.publish(&event, metrics).await {
        Ok(_) => finish(metrics, Outcome::Accepted),
        Err(outcome) => finish(metrics, outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_product_and_stock_notices() {
        assert_eq!(
            read_change_notice(br#"{"kind":"product","product_id":7,"product_number":"1001"}"#),
            Some((v1::change_noticed::Kind::Product, 7, "1001".into()))
        );
        assert_eq!(
            read_change_notice(br#"{"kind":"stock","product_id":"8"}"#),
            Some((v1::change_noticed::Kind::Stock, 8, String::new()))
        );
        assert_eq!(
            read_change_notice(br#"{"kind":"product","product_number":" A-1 ","extra":true}"#),
            Some((v1::change_noticed::Kind::Product, 0, "A-1".into()))
        );
    }

    #[test]
    fn refuses_notices_that_name_nothing_or_are_not_notices() {
        for bad in [
            &br#"{"kind":"price","product_id":7}"#[..],
            br#"{"product_id":7}"#,
            br#"{"kind":"stock"}"#,
            br#"{"kind":"stock","product_id":-3}"#,
            br#"[{"kind":"stock","product_id":1}]"#,
            br#"{"kind":"stock","product_id":1"#,
            b"kind=stock",
        ] {
            assert_eq!(
                read_change_notice(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
