//! `POST /notices/duell/{store}`: signed (notice id, timestamp, body), replay-proof, rate-limited
//! per store, and never a notice that only a full scan could answer.

use base64::Engine as _;
use duellsync_events::v1;
use hmac::{Hmac, Mac};

use crate::helpers::{now_s, spawn_app, spawn_app_with, S1_NOTICE_SECRET};

const PRODUCT: &str = r#"{"kind":"product","product_id":42,"product_number":"1001"}"#;
const STOCK: &str = r#"{"kind":"stock","product_id":7}"#;

/// The scheme before notices were timestamped: base64 HMAC-SHA256 of the body alone.
fn body_only_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_signed_notice_becomes_a_change_noticed_event() {
    let app = spawn_app().await;
    let resp = app.notice("s1", "n-1", S1_NOTICE_SECRET, PRODUCT).await;
    assert_eq!(resp.status().as_u16(), 200);
    let stored = app.bus.read("DUELL", "duell.>", 1, 100).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject, "duell.s1.change.noticed");
    let ev = &app.notices_stored().await[0];
    assert_eq!(ev.kind, v1::change_noticed::Kind::Product as i32);
    assert_eq!(ev.product_id, 42);
    assert_eq!(ev.product_number, "1001");
    assert_eq!(ev.meta.as_ref().unwrap().producer, "webhook-ingest");

    let resp = app.notice("s1", "n-2", S1_NOTICE_SECRET, STOCK).await;
    assert_eq!(resp.status().as_u16(), 200);
    let evs = app.notices_stored().await;
    assert_eq!(evs[1].kind, v1::change_noticed::Kind::Stock as i32);
}

#[tokio::test]
async fn two_notices_with_the_same_body_both_go_through() {
    let app = spawn_app().await;
    for id in ["a-1", "a-2"] {
        let resp = app.notice("s1", id, S1_NOTICE_SECRET, PRODUCT).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let evs = app.notices_stored().await;
    assert_eq!(
        evs.len(),
        2,
        "a notice is a trigger: a new one about the same product is not a duplicate"
    );
}

#[tokio::test]
async fn a_replayed_notice_is_stored_once() {
    let app = spawn_app().await;
    let ts = now_s();
    let sig =
        duellsync_webhook_ingest::sign_change_notice(S1_NOTICE_SECRET, "n-7", ts, STOCK.as_bytes());
    let ts = ts.to_string();
    for _ in 0..3 {
        let resp = app
            .notice_with(
                "s1",
                &[
                    ("Notice-Id", "n-7"),
                    ("Timestamp", &ts),
                    ("Signature", &sig),
                ],
                STOCK,
            )
            .await;
        assert_eq!(
            resp.status().as_u16(),
            200,
            "a replay is answered like the original"
        );
    }
    assert_eq!(app.notices_stored().await.len(), 1);
}

#[tokio::test]
async fn a_notice_signed_outside_the_tolerance_is_refused() {
    let app = spawn_app().await;
    for (id, ts) in [("old", now_s() - 6 * 60), ("future", now_s() + 6 * 60)] {
        let resp = app.notice_at("s1", id, ts, S1_NOTICE_SECRET, STOCK).await;
        assert_eq!(resp.status().as_u16(), 401, "{id}");
    }
    let resp = app
        .notice_at("s1", "recent", now_s() - 4 * 60, S1_NOTICE_SECRET, STOCK)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.notices_stored().await.len(), 1);
    app.wait_metric(
        "duellsync_ingest_requests_total{store=\"s1\",endpoint=\"duell_notice\",outcome=\"expired\",status=\"401\"}",
        2.0,
    )
    .await;
}

#[tokio::test]
async fn rejects_forged_stale_scheme_or_missing_notice_signatures() {
    let app = spawn_app().await;
    let resp = app.notice("s1", "n-1", "guess", PRODUCT).await;
    assert_eq!(resp.status().as_u16(), 401);
    // The old scheme (body only, no timestamp): replayable, so no longer accepted.
    let old = body_only_signature(S1_NOTICE_SECRET, PRODUCT);
    let resp = app
        .notice_with("s1", &[("Signature", old.as_str())], PRODUCT)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    let ts = now_s().to_string();
    let resp = app
        .notice_with(
            "s1",
            &[
                ("Notice-Id", "n-1"),
                ("Timestamp", &ts),
                ("Signature", &old),
            ],
            PRODUCT,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    // Id and timestamp without a signature, a bad id, a bad timestamp.
    let sig = duellsync_webhook_ingest::sign_change_notice(
        S1_NOTICE_SECRET,
        "a b",
        now_s(),
        PRODUCT.as_bytes(),
    );
    for headers in [
        vec![("Notice-Id", "n-1"), ("Timestamp", ts.as_str())],
        vec![
            ("Notice-Id", "a b"),
            ("Timestamp", &ts),
            ("Signature", &sig),
        ],
        vec![
            ("Notice-Id", "n-1"),
            ("Timestamp", "yesterday"),
            ("Signature", &sig),
        ],
    ] {
        let resp = app.notice_with("s1", &headers, PRODUCT).await;
        assert_eq!(resp.status().as_u16(), 401, "{headers:?}");
    }
    // A WooCommerce signature header is not a notice signature.
    let resp = app
        .http
        .post(format!("{}/notices/duell/s1", app.url))
        .header("X-WC-Webhook-Signature", old)
        .body(PRODUCT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(app.notices_stored().await.is_empty());
}

#[tokio::test]
async fn notices_for_unknown_stores_or_stores_without_a_notice_secret_are_404() {
    let app = spawn_app().await;
    assert_eq!(
        app.notice("nope", "n", S1_NOTICE_SECRET, PRODUCT)
            .await
            .status()
            .as_u16(),
        404
    );
    // s2 takes webhooks but has no notice secret.
    assert_eq!(
        app.notice("s2", "n", S1_NOTICE_SECRET, PRODUCT)
            .await
            .status()
            .as_u16(),
        404
    );
    assert!(app.notices_stored().await.is_empty());
}

#[tokio::test]
async fn rejects_malformed_or_oversize_notices_and_stock_notices_without_a_product_id() {
    let app = spawn_app().await;
    for (i, body) in [
        r#"{"kind":"price","product_id":1}"#,
        r#"{"kind":"stock"}"#,
        // Only a scan of the whole stock could answer these: refused.
        r#"{"kind":"stock","product_number":"1001"}"#,
        r#"{"kind":"stock","product_id":0,"product_number":"1001"}"#,
        r#"{"kind":"stock","product_id":1"#,
        "kind=stock&product_id=1",
    ]
    .into_iter()
    .enumerate()
    {
        let resp = app
            .notice("s1", &format!("m-{i}"), S1_NOTICE_SECRET, body)
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{body}");
    }
    let big = format!(
        r#"{{"kind":"stock","product_id":1,"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let resp = app.notice("s1", "big", S1_NOTICE_SECRET, &big).await;
    assert_eq!(resp.status().as_u16(), 413);
    assert!(app.notices_stored().await.is_empty());
}

#[tokio::test]
async fn notices_beyond_the_store_rate_are_refused_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.ingest.notice_rate = 0.1;
        c.ingest.notice_burst = 2;
    })
    .await;
    for id in ["r-1", "r-2"] {
        let resp = app.notice("s1", id, S1_NOTICE_SECRET, STOCK).await;
        assert_eq!(resp.status().as_u16(), 200, "{id}");
    }
    let resp = app.notice("s1", "r-3", S1_NOTICE_SECRET, STOCK).await;
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=11).contains(&retry), "{retry}");
    // Forged notices do not use up the store's rate: they are refused before it.
    let forged = app.notice("s1", "f-1", "guess", STOCK).await;
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(app.notices_stored().await.len(), 2);
}
