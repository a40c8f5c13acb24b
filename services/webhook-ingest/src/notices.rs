//! DUELL change notices → `duell.<store>.change.noticed`.
//!
//! A notice is a thin, signed trigger (`{"kind":"product"|"stock","product_id":N,
//! "product_number":"…"}`): the poller fetches the product from DUELL itself and never trusts
//! pushed content, so a notice only says "look again". It carries three headers:
//!
//! - `X-Duellsync-Notice-Id`: the sender's unique id of this notice (1-64 of `A-Z a-z 0-9 . _ : -`);
//! - `X-Duellsync-Timestamp`: when it was signed, Unix seconds;
//! - `X-Duellsync-Signature`: base64 HMAC-SHA256 with the store's `duell.notice_secret` over
//!   `<notice id>.<timestamp>.<raw body>` ([`sign_change_notice`]).
//!
//! A notice whose timestamp is more than `ingest.notice_tolerance` (5 minutes) from now is
//! refused; within that window the notice id is the event id, so JetStream's 10-minute duplicate
//! window stores a replayed notice once, across every replica. Authentic notices are limited
//! per store (`ingest.notice_rate`), and a notice the poller could only act on with a full scan
//! (a stock notice without a product id) is refused: a notice never costs more than the one
//! product it names.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use base64::Engine as _;
use duellsync_events::{meta, now_ms, product_correlation, v1, EventId};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tracing::Instrument;

use crate::json::{looks_like_object, Id, Text};
use crate::outcome::Outcome;
use crate::{finish, Ingest, SERVICE};

pub(crate) const SIGNATURE: &str = "x-duellsync-signature";
pub(crate) const TIMESTAMP: &str = "x-duellsync-timestamp";
pub(crate) const NOTICE_ID: &str = "x-duellsync-notice-id";

/// The `X-Duellsync-Signature` of a notice: base64 HMAC-SHA256 with the store's notice secret
/// over `<notice id>.<timestamp>.<raw body>` — what a DUELL-side sender computes.
pub fn sign_change_notice(secret: &str, notice_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(&signed_content(notice_id, timestamp, body));
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn signed_content(notice_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{notice_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

fn valid_notice_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

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
/// a usable notice (answered 400). A product notice names a positive id or a number; a stock
/// notice a positive id (DUELL's stock is asked per product id; without one only a scan of the
/// whole stock could answer, which a notice must never cost). Pure.
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
    match kind {
        v1::change_noticed::Kind::Stock if product_id <= 0 => return None,
        // The poller can act on an id or a number, not on neither.
        _ if product_id == 0 && number.is_empty() => return None,
        _ => {}
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
        store = %crate::log_safe(&store),
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
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let notice_id = header(NOTICE_ID)
        .map(str::trim)
        .filter(|id| valid_notice_id(id));
    let timestamp = header(TIMESTAMP).and_then(|t| t.trim().parse::<i64>().ok());
    let (Some(notice_id), Some(timestamp), Some(signature)) =
        (notice_id, timestamp, parts.headers.get(SIGNATURE))
    else {
        tracing::warn!("change notice refused: notice id, timestamp or signature missing");
        return finish(metrics, Outcome::Unauthorized);
    };
    if !signer.verify(
        &signed_content(notice_id, timestamp, &body),
        signature.as_bytes(),
    ) {
        tracing::warn!("change notice refused: signature wrong");
        return finish(metrics, Outcome::Unauthorized);
    }
    let received_ms = now_ms();
    let age_s = (received_ms / 1000).saturating_sub(timestamp);
    if age_s.unsigned_abs() > ingest.notice_tolerance.as_secs() {
        tracing::warn!(
            notice_id,
            age_s,
            "change notice refused: signed too long ago or for too far ahead (a replay, or a sender's clock)"
        );
        return finish(metrics, Outcome::Expired);
    }
    if let Err(wait) = entry.notice_rate.take() {
        tracing::warn!(notice_id, "change notice refused: too many for this store");
        return crate::finish_retry_after(
            metrics,
            Outcome::RateLimited,
            wait.as_secs().saturating_add(1),
        );
    }
    let Some((kind, product_id, product_number)) = read_change_notice(&body) else {
        tracing::warn!(
            notice_id,
            "change notice is not {{kind, product_id, product_number}} (a stock notice needs product_id)"
        );
        return finish(metrics, Outcome::Malformed);
    };
    tracing::Span::current().record("product_id", product_id);
    // The sender's own id names the notice: a replay within the tolerance is the same event,
    // which JetStream's duplicate window stores once, whichever replica takes it.
    let event_id = EventId::new("change-noticed", store)
        .str(notice_id)
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
        Ok(published) if published.duplicate => {
            tracing::info!(notice_id, "change notice seen before; not stored again");
            finish(metrics, Outcome::Duplicate)
        }
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
            read_change_notice(br#"{"kind":"stock","product_id":9,"product_number":"A"}"#),
            Some((v1::change_noticed::Kind::Stock, 9, "A".into()))
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
            // Only a scan of the whole stock could answer these.
            br#"{"kind":"stock","product_number":"1001"}"#,
            br#"{"kind":"stock","product_id":0,"product_number":"1001"}"#,
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

#[cfg(test)]
mod signing {
    use super::*;

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let sig = sign_change_notice("k", "n-1", 1_700_000_000, b"{}");
        let signer = crate::signature::Signer::new(b"k");
        assert!(signer.verify(&signed_content("n-1", 1_700_000_000, b"{}"), sig.as_bytes()));
        for (id, ts, body) in [
            ("n-2", 1_700_000_000, &b"{}"[..]),
            ("n-1", 1_700_000_001, b"{}"),
            ("n-1", 1_700_000_000, b"{ }"),
        ] {
            assert!(!signer.verify(&signed_content(id, ts, body), sig.as_bytes()));
        }
        // The body alone (the old scheme) does not verify.
        assert!(!signer.verify(b"{}", sig.as_bytes()));
    }

    #[test]
    fn notice_ids_are_short_plain_tokens() {
        for ok in ["a", "notice-42", "2026-01-31T08:00:00Z.7", &"x".repeat(64)] {
            assert!(valid_notice_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "æ", &"x".repeat(65)] {
            assert!(!valid_notice_id(bad), "{bad}");
        }
    }
}
