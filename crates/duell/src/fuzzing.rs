//! The client's reading of DUELL's answers without HTTP, for the fuzz targets (`fuzz/`) and the
//! no-panic property tests. Not an API: these thin wrappers call exactly what the client calls
//! once an answer arrived, and may change with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::{claims, Token};
use crate::client::{classify, token_of, Attempt, Kind};
use crate::endpoints::{bulk, customer_id_of, departments_of, order_view_of};
use crate::error::{Error, Result};
use crate::model::{
    Category, Customer, OrderSummary, Product, SavedCategory, SavedOrder, SavedProduct, StockRow,
};
use crate::pacing::{Pacer, PacingConfig, RateHeaders};
use crate::paging::{Absorbed, Cursor};

/// How the client takes an answer with this status, rate-limit headers and body: the success
/// envelope, or the error the call would end with when no retry or re-login changes it.
/// `write`: the answer to a non-idempotent write (an unreadable success is then "outcome
/// unknown"). Rate-limit headers are given as `(name, value)` pairs.
pub fn read_answer(
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    write: bool,
) -> Result<Value> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let rate = RateHeaders::parse(&map, now);
    // The pacer learns from every answer's headers; it must take any of them.
    let pacer = Pacer::new(PacingConfig::default());
    pacer.observe(&rate);
    let _ = pacer.check(tokio::time::Instant::now(), now);
    let _ = rate.wait_after_429(now, Duration::from_secs(10));
    let kind = if write { Kind::Write } else { Kind::Read };
    let endpoint = "fuzz";
    match classify(endpoint, kind, status, &rate, body, Duration::from_secs(10)) {
        Attempt::Done(v) => Ok(v),
        Attempt::Relogin => Err(Error::Auth {
            endpoint: endpoint.into(),
            message: "token refused".into(),
        }),
        Attempt::RateLimited(wait) => Err(Error::RateLimited {
            endpoint: endpoint.into(),
            retry_after: Some(wait),
        }),
        Attempt::Transient {
            http_status,
            reason,
            ..
        } => Err(Error::Unavailable {
            endpoint: endpoint.into(),
            http_status,
            attempts: 1,
            reason,
        }),
        Attempt::Fatal(e) => Err(e),
    }
}

/// Reads a success envelope as every answer the client decodes: each list endpoint's page
/// (through the paging cursor), each bulk save, the order view, departments, the customer id
/// of a customer save, and the login answer with its JWT. Returns how many decodes succeeded.
pub fn decode_all(envelope: &Value) -> usize {
    let mut ok = 0;
    ok += page::<Product>("product/list", "products", envelope, |p| {
        Some(p.product_id.0)
    });
    ok += page::<StockRow>("all/product/stock", "data", envelope, |r| {
        for dept in [None, Some(1)] {
            let _ = r.department_stock(dept);
        }
        Some(r.product_id.0)
    });
    ok += page::<Customer>("customer/list", "customers", envelope, |c| {
        Some(c.customer_id.0)
    });
    ok += page::<Category>(
        "product/category/list/product",
        "categories",
        envelope,
        |c| Some(c.category_id.0),
    );
    ok += page::<OrderSummary>("logistics/orders/list", "orders", envelope, |o| {
        Some(o.order_id.0)
    });
    if let Ok(saved) = bulk::<SavedOrder>("logistics/orders/save", envelope.clone()) {
        let _ = (saved.is_complete(), saved.order_for("1001"));
        ok += 1;
    }
    for e in [
        bulk::<SavedProduct>("product/save", envelope.clone()).err(),
        bulk::<SavedCategory>("product/category/save", envelope.clone()).err(),
        bulk::<Value>("product/adjust-stock", envelope.clone()).err(),
    ] {
        match e {
            None => ok += 1,
            Some(e) => inspect_error(&e),
        }
    }
    if let Ok(view) = order_view_of(envelope) {
        let _ = view.status().map(|s| (s.id(), s.label()));
        ok += 1;
    }
    ok += departments_of(envelope).map_or(0, |d| d.len());
    ok += usize::from(customer_id_of(envelope, None).is_ok());
    if let Ok(jwt) = token_of(envelope) {
        let _ = token(jwt);
        ok += 1;
    }
    ok
}

/// When the client would renew a token it got at `1_800_000_000` (Unix seconds): its JWT
/// `exp`, less the renewal margin, or the assumed lifetime.
pub fn token(jwt: &str) -> SystemTime {
    let _ = claims(jwt);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let t = Token::new(
        jwt.to_owned(),
        1,
        now,
        Duration::from_secs(3600),
        Duration::from_secs(12 * 3600),
    );
    let _ = (t.needs_renewal(now), format!("{t:?}"));
    t.renew_at
}

/// Looks at an error the way callers do.
pub fn inspect_error(e: &Error) {
    let _ = (e.action(), e.to_string());
    if let Error::Rejected {
        validation: Some(v),
        ..
    } = e
    {
        let _ = (v.is_empty(), v.entries(), v.for_row("1001"), v.to_string());
    }
}

/// One page of a list endpoint, read by a fresh paging cursor; 1 when it gave rows.
fn page<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    payload_key: &'static str,
    envelope: &Value,
    key: fn(&T) -> Option<u64>,
) -> usize {
    let mut cursor = Cursor::new(endpoint, payload_key, key);
    let _ = cursor.next_start();
    match cursor.absorb(envelope) {
        Ok(Absorbed::Page(rows)) => {
            for row in &rows {
                let _ = key(row);
            }
            // The same page again holds nothing new.
            let again = cursor.absorb(envelope);
            debug_assert!(!matches!(again, Ok(Absorbed::Page(_))));
            1
        }
        Ok(_) => 0,
        Err(e) => {
            inspect_error(&e);
            0
        }
    }
}

#[cfg(test)]
mod properties {
    //! The stable-toolchain counterpart of the `duell_responses` fuzz target: whatever DUELL
    //! (or its firewall) answers, the client gets a value or an error, never a panic.

    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    /// Keys the envelopes and models read, so generated objects hit real fields.
    #[rustfmt::skip]
    const KEYS: &[&str] = &[
        "status", "code", "message", "validation_message", "total_count", "total_affected",
        "data", "products", "customers", "categories", "orders", "departments", "token",
        "product_id", "product_number", "product_name", "price_inc_vat", "special_price",
        "vatrate_percent", "is_parent", "parent_variant", "custom_fields", "description",
        "value", "last_update_date", "department", "department_id", "stock", "actual_stock",
        "location", "customer_id", "category_id", "order_id", "reference_order_number",
        "order_data", "product_data", "purchase_order_status_id", "quantity", "row", "key",
        "api_token", "exp", "iat",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "-?[0-9]{0,30}([.,][0-9]{0,30})?([eE][+-]?[0-9]{1,5})?".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?.{0,3}"
                .prop_map(Value::String),
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

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?[0-9]{1,40}([.,][0-9]{0,10})?([eE][+-]?[0-9]{1,4})?",
            "[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
            "[ -~]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_bytes_are_an_envelope_or_an_error(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..256), write in any::<bool>()) {
            match read_answer(status, &[], &body, write) {
                Ok(v) => { decode_all(&v); }
                Err(e) => inspect_error(&e),
            }
        }

        #[test]
        fn any_json_answer_decodes_or_errors(status in prop::sample::select(vec![200u16, 201, 400, 401, 403, 404, 422, 429, 500]), v in json(), write in any::<bool>()) {
            let body = serde_json::to_vec(&v).unwrap();
            match read_answer(status, &[], &body, write) {
                Ok(v) => { decode_all(&v); }
                Err(e) => inspect_error(&e),
            }
        }

        #[test]
        fn any_rate_limit_headers_are_taken(status in prop::sample::select(vec![200u16, 429]), remaining in header_value(), reset in header_value(), retry in header_value()) {
            let headers: [(&str, &[u8]); 3] = [
                ("x-duell-ratelimit-remaining", remaining.as_bytes()),
                ("x-duell-ratelimit-reset", reset.as_bytes()),
                ("retry-after", retry.as_bytes()),
            ];
            let _ = read_answer(status, &headers, br#"{"status":true}"#, false);
        }

        #[test]
        fn any_login_token_gets_a_renewal_time(exp in scalar(), iat in scalar(), payload in json(), raw in ".{0,64}") {
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let claims = serde_json::json!({ "exp": exp, "iat": iat });
            for p in [claims, payload] {
                let jwt = format!("h.{}.s", e.encode(serde_json::to_vec(&p).unwrap()));
                let _ = token(&jwt);
                let _ = decode_all(&serde_json::json!({ "status": true, "token": jwt }));
            }
            let _ = token(&raw);
        }
    }
}
