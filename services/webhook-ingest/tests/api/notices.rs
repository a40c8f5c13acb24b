//! `POST /notices/duell/{store}`.

use base64::Engine as _;
use duellsync_events::v1;
use hmac::{Hmac, Mac};

use crate::helpers::{spawn_app, S1_NOTICE_SECRET};

/// `X-Duellsync-Signature`: base64 HMAC-SHA256 of the raw body with the notice secret.
fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

const PRODUCT: &str = r#"{"kind":"product","product_id":42,"product_number":"1001"}"#;

#[tokio::test]
async fn a_signed_notice_becomes_a_change_noticed_event() {
    let app = spawn_app().await;
    let resp = app
        .notice("s1", Some(&sign(S1_NOTICE_SECRET, PRODUCT)), PRODUCT)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let stored = app.bus.read("DUELL", "duell.>", 1, 100).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject, "duell.s1.change.noticed");
    let ev = &app.notices_stored().await[0];
    assert_eq!(ev.kind, v1::change_noticed::Kind::Product as i32);
    assert_eq!(ev.product_id, 42);
    assert_eq!(ev.product_number, "1001");
    assert_eq!(ev.meta.as_ref().unwrap().producer, "webhook-ingest");

    let stock = r#"{"kind":"stock","product_id":7}"#;
    let resp = app
        .notice("s1", Some(&sign(S1_NOTICE_SECRET, stock)), stock)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let evs = app.notices_stored().await;
    assert_eq!(evs[1].kind, v1::change_noticed::Kind::Stock as i32);
}

#[tokio::test]
async fn identical_notices_both_go_through() {
    let app = spawn_app().await;
    let sig = sign(S1_NOTICE_SECRET, PRODUCT);
    for _ in 0..2 {
        assert_eq!(
            app.notice("s1", Some(&sig), PRODUCT)
                .await
                .status()
                .as_u16(),
            200
        );
    }
    let evs = app.notices_stored().await;
    assert_eq!(
        evs.len(),
        2,
        "a notice is a trigger: repeats are not duplicates"
    );
    assert_ne!(
        evs[0].meta.as_ref().unwrap().event_id,
        evs[1].meta.as_ref().unwrap().event_id
    );
}

#[tokio::test]
async fn rejects_forged_or_missing_notice_signatures() {
    let app = spawn_app().await;
    let resp = app
        .notice("s1", Some(&sign("guess", PRODUCT)), PRODUCT)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(app.notice("s1", None, PRODUCT).await.status().as_u16(), 401);
    // A WooCommerce signature header is not a notice signature.
    let resp = app
        .http
        .post(format!("{}/notices/duell/s1", app.url))
        .header("X-WC-Webhook-Signature", sign(S1_NOTICE_SECRET, PRODUCT))
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
    let sig = sign(S1_NOTICE_SECRET, PRODUCT);
    assert_eq!(
        app.notice("nope", Some(&sig), PRODUCT)
            .await
            .status()
            .as_u16(),
        404
    );
    // s2 takes webhooks but has no notice secret.
    assert_eq!(
        app.notice("s2", Some(&sig), PRODUCT)
            .await
            .status()
            .as_u16(),
        404
    );
    assert!(app.notices_stored().await.is_empty());
}

#[tokio::test]
async fn rejects_malformed_or_oversize_notices() {
    let app = spawn_app().await;
    for body in [
        r#"{"kind":"price","product_id":1}"#,
        r#"{"kind":"stock"}"#,
        r#"{"kind":"stock","product_id":1"#,
        "kind=stock&product_id=1",
    ] {
        let resp = app
            .notice("s1", Some(&sign(S1_NOTICE_SECRET, body)), body)
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{body}");
    }
    let big = format!(
        r#"{{"kind":"stock","product_id":1,"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let resp = app
        .notice("s1", Some(&sign(S1_NOTICE_SECRET, &big)), &big)
        .await;
    assert_eq!(resp.status().as_u16(), 413);
    assert!(app.notices_stored().await.is_empty());
}
