//! Answers are read under a size limit per kind of endpoint: a store (a plugin, a proxy) that
//! answers with more is refused with a clear error instead of being buffered whole.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use duellsync_woo::{
    ClientConfig, Error, ErrorKind, ProductQuery, ResponseLimits, RetryPolicy, WooClient,
};
use secrecy::SecretString;

const COLLECTION: usize = 64 * 1024;
const OBJECT: usize = 16 * 1024;

/// A JSON array of `n` bytes, sent in chunks without a Content-Length.
fn streamed_array(n: usize) -> Body {
    let item = format!("{{\"id\":1,\"name\":\"{}\"}},", "x".repeat(1000));
    let count = n / item.len() + 1;
    let chunks = (0..count).map(move |i| {
        let mut s = if i == 0 {
            "[".to_owned()
        } else {
            String::new()
        };
        s.push_str(&item);
        Ok::<_, std::io::Error>(s)
    });
    Body::from_stream(futures::stream::iter(
        chunks.chain(std::iter::once(Ok("{}]".to_owned()))),
    ))
}

fn object(n: usize) -> String {
    format!("{{\"id\":7,\"name\":\"{}\"}}", "y".repeat(n))
}

async fn store() -> (WooClient, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/wp-json/wc/v3/products",
            get(|| async { streamed_array(4 * COLLECTION) })
                .post(|| async { (axum::http::StatusCode::CREATED, object(2 * OBJECT)) }),
        )
        .route(
            "/wp-json/wc/v3/products/7",
            get(|| async { object(2 * OBJECT) }),
        )
        .route("/wp-json/wc/v3/products/8", get(|| async { object(100) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let mut cfg = ClientConfig::new(
        format!("http://{addr}"),
        "ck_test",
        SecretString::from("cs_test".to_string()),
    );
    cfg.response_limits = ResponseLimits {
        collection: COLLECTION,
        object: OBJECT,
    };
    cfg.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
    };
    (WooClient::new(cfg).unwrap(), server)
}

#[tokio::test]
async fn a_list_over_the_collection_limit_is_refused_with_a_clear_error() {
    let (client, _server) = store().await;
    let err = client
        .list_products(&ProductQuery::default())
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, Error::ResponseTooLarge { limit, status: 200, .. } if limit == COLLECTION),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert!(err.to_string().contains("response_limits"), "{err}");
}

#[tokio::test]
async fn an_object_over_the_object_limit_is_refused_and_a_small_one_read() {
    let (client, _server) = store().await;
    let err = client.get_product(7).await.expect_err("over the limit");
    assert!(
        matches!(err, Error::ResponseTooLarge { limit, .. } if limit == OBJECT),
        "{err:?}"
    );
    let p = client.get_product(8).await.expect("a small answer is read");
    assert_eq!(p.id, 7);
}

#[tokio::test]
async fn an_unread_answer_to_a_create_leaves_its_outcome_unknown() {
    let (client, _server) = store().await;
    let err = client
        .create_product(&Default::default())
        .await
        .expect_err("over the limit");
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err:?}");
}

#[test]
fn collections_and_batches_get_the_collection_limit() {
    use duellsync_woo::{Idempotency, WooRequest};
    use reqwest::Method;
    let l = ResponseLimits::default();
    let req = |m: Method, p: &str| WooRequest::new(m, p, Idempotency::Idempotent);
    assert_eq!(l.for_request(&req(Method::GET, "products")), l.collection);
    assert_eq!(
        l.for_request(&req(Method::POST, "products/batch")),
        l.collection
    );
    assert_eq!(
        l.for_request(&req(Method::POST, "products/7/variations/batch")),
        l.collection
    );
    assert_eq!(l.for_request(&req(Method::GET, "products/7")), l.object);
    assert_eq!(l.for_request(&req(Method::PUT, "orders/9")), l.object);
    assert_eq!(l.for_request(&req(Method::POST, "products")), l.object);
}
