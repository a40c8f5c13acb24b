//! The simulated DUELL API under `/v1/`: counting, rate limiting and faults around one
//! synchronous dispatcher. Handlers never panic on input: every parse failure becomes a DUELL
//! error envelope or a validation message.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::{Rng as _, SeedableRng as _};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::config::{DuplicateReferencePolicy, NumberMatch, ValidationShape};
use crate::faults::{Fault, RateInfo};
use crate::model::*;
use crate::params::{decimal, digits, json_truthy, keyed_items, text, truthy, u64_of, Params};
use crate::store::Db;
use crate::Shared;

/// Largest request body the simulator reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long a hanging fault keeps the request open (clients time out long before).
const HANG: Duration = Duration::from_secs(600);

const WAF_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Human Verification</title><script src=\"https://example.token.awswaf.com/challenge.js\"></script>\
</head><body><div id=\"captcha-container\"></div><noscript>JavaScript is disabled. In order to \
continue, we need to verify that you're not a robot.</noscript></body></html>";

/// The endpoint key of a `/v1/` path (ids stripped), used by counters and fault targeting.
pub(crate) fn endpoint_key(path: &str) -> &'static str {
    let p = path.trim_matches('/');
    match p {
        "getaccesstokens" => "getaccesstokens",
        "department/list" => "department/list",
        "product/list" => "product/list",
        "product/save" => "product/save",
        "product/category/list/product" => "product/category/list/product",
        "product/category/save" => "product/category/save",
        "all/product/stock" => "all/product/stock",
        "product/adjust-stock" => "product/adjust-stock",
        "customer/list" => "customer/list",
        "customer" => "customer",
        "logistics/orders/save" => "logistics/orders/save",
        "sale/orders/save" => "sale/orders/save",
        "logistics/orders/list" => "logistics/orders/list",
        "sale/orders/list" => "sale/orders/list",
        _ if p.starts_with("logistics/orders/view") => "logistics/orders/view",
        _ => "unknown",
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn fail(status: u16, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        s,
        &json!({"status": false, "code": status, "message": message}),
    )
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn set_rate_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    for (name, value) in [
        ("x-duell-ratelimit-limit", limit.to_string()),
        ("x-duell-ratelimit-remaining", remaining.to_string()),
        ("x-duell-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut r = fail(429, "Too many requests");
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn fault_response(sim: &Shared, fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { status } => fail(*status, "Internal server error"),
        Fault::RateLimited { retry_after_secs } => {
            let mut r = too_many(*retry_after_secs);
            let limit = sim.config.rate_limit.map(|r| r.limit).unwrap_or(0);
            set_rate_headers(r.headers_mut(), limit, 0, epoch_now() + retry_after_secs);
            r
        }
        Fault::ExpiredToken => fail(401, "Token expired"),
        Fault::Firewall => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
            WAF_PAGE,
        )
            .into_response(),
        Fault::EmptyBody { status } => Response::builder()
            .status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
            .body(Body::empty())
            .unwrap_or_default(),
        Fault::MalformedJson => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            "{\"status\":true,\"products\":[{\"product_id\":1,",
        )
            .into_response(),
        Fault::Hang | Fault::HangAfterProcessing => {
            tokio::time::sleep(HANG).await;
            fail(504, "Gateway timeout")
        }
        Fault::ServerErrorAfterProcessing { status } => fail(*status, "Bad gateway"),
        Fault::EmptyBodyAfterProcessing => Response::builder()
            .status(StatusCode::OK)
            .body(Body::empty())
            .unwrap_or_default(),
        Fault::Latency { .. } => fail(500, "latency is not a response"),
    }
}

/// Entry point of every `/v1/...` request.
pub(crate) async fn v1(State(sim): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path()
        .strip_prefix("/v1")
        .unwrap_or("")
        .to_string();
    let endpoint = endpoint_key(&path);
    sim.stats
        .with(|s| *s.requests.entry(endpoint.to_string()).or_default() += 1);
    let rate: Option<RateInfo> = sim.faults.rate_check();
    let mut resp = if let Some(r) = rate.filter(|r| r.exceeded) {
        sim.stats.with(|s| s.rate_limited += 1);
        too_many(r.reset.saturating_sub(epoch_now()))
    } else {
        let latency = sim.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match axum::body::to_bytes(body, MAX_BODY).await {
            Err(_) => fail(413, "Request body too large"),
            Ok(bytes) => {
                let fault = sim.faults.take(endpoint);
                match fault {
                    Some(f) if !f.after_processing() => fault_response(&sim, &f).await,
                    fault => {
                        if let Some(Fault::Latency { ms }) = fault {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let resp = handle(
                            &sim,
                            &parts.method,
                            endpoint,
                            &path,
                            parts.uri.query(),
                            &parts.headers,
                            &bytes,
                        );
                        match fault {
                            Some(f) if !matches!(f, Fault::Latency { .. }) => {
                                fault_response(&sim, &f).await
                            }
                            _ => resp,
                        }
                    }
                }
            }
        }
    };
    if let Some(r) = rate {
        if !resp.headers().contains_key("x-duell-ratelimit-remaining") {
            set_rate_headers(resp.headers_mut(), r.limit, r.remaining, r.reset);
        }
    }
    let status = resp.status().as_u16();
    sim.stats
        .with(|s| *s.responses.entry(status).or_default() += 1);
    resp
}

fn handle(
    sim: &Shared,
    method: &Method,
    endpoint: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut params = Params::parse(query);
    if endpoint == "getaccesstokens" {
        return if method == Method::POST {
            login(sim, params, body)
        } else {
            fail(405, "Method not allowed")
        };
    }
    if endpoint == "unknown"
        || (!sim.config.order_lookup
            && matches!(endpoint, "logistics/orders/list" | "sale/orders/list"))
    {
        return fail(404, "Unknown endpoint");
    }
    let mut db = sim.db.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(message) = authorize(&db, headers) {
        sim.stats.with(|s| s.unauthorized += 1);
        return fail(401, message);
    }
    let json_body = || serde_json::from_slice::<Value>(body).ok();
    match (endpoint, method.as_str()) {
        ("department/list", "GET") => departments(&db),
        ("product/list", "GET") => product_list(sim, &db, &params),
        ("product/save", "POST") => match json_body() {
            Some(b) => product_save(sim, &mut db, &b),
            None => fail(400, "Invalid JSON body"),
        },
        ("product/category/list/product", "GET") => category_list(sim, &db, &params),
        ("product/category/save", "POST") => match json_body() {
            Some(b) => category_save(sim, &mut db, &b),
            None => fail(400, "Invalid JSON body"),
        },
        ("all/product/stock", "GET") => stock_list(sim, &db, &params),
        ("product/adjust-stock", "POST") => match json_body() {
            Some(b) => adjust_stock(sim, &mut db, &b),
            None => fail(400, "Invalid JSON body"),
        },
        ("customer/list", "GET") => customer_list(sim, &db, &params),
        ("customer", "PUT") => {
            if let Some(b) = json_body() {
                params.merge_json(&b);
            } else if !body.is_empty() {
                let form = Params::parse(std::str::from_utf8(body).ok());
                for (k, v) in form.top {
                    params.top.entry(k).or_insert(v);
                }
            }
            customer_put(&mut db, &params)
        }
        ("logistics/orders/save", "POST") => match json_body() {
            Some(b) => orders_save(sim, &mut db, &b, true),
            None => fail(400, "Invalid JSON body"),
        },
        ("sale/orders/save", "POST") => match json_body() {
            Some(b) => orders_save(sim, &mut db, &b, false),
            None => fail(400, "Invalid JSON body"),
        },
        ("logistics/orders/view", "GET") => order_view(&db, path),
        ("logistics/orders/list", "GET") => order_lookup(sim, &db, &params, true),
        ("sale/orders/list", "GET") => order_lookup(sim, &db, &params, false),
        _ => fail(405, "Method not allowed"),
    }
}

fn authorize(db: &Db, headers: &HeaderMap) -> Result<(), &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("Authorization token missing")?;
    let token = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .and_then(|_| value.get(7..))
        .ok_or("Invalid authorization header")?
        .trim();
    let info = db.tokens.get(token).ok_or("Invalid token")?;
    if info.revoked || info.exp <= epoch_now() {
        return Err("Token expired");
    }
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn login(sim: &Shared, mut params: Params, body: &[u8]) -> Response {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => params.merge_json(&v),
        Err(_) => {
            for (k, v) in Params::parse(std::str::from_utf8(body).ok()).top {
                params.top.insert(k, v);
            }
        }
    }
    let number = params.get("client_number").unwrap_or("").trim();
    let token = params.get("client_token").unwrap_or("").trim();
    if number.is_empty() || token.is_empty() {
        return fail(400, "client_number and client_token are required");
    }
    if number != sim.config.client_number || token != sim.config.client_token {
        return fail(401, "Invalid client number or client token");
    }
    let mut db = sim.db.lock().unwrap_or_else(|e| e.into_inner());
    db.token_serial += 1;
    let serial = db.token_serial;
    let iat = epoch_now();
    let exp = iat + sim.config.token_ttl.as_secs().max(1);
    let payload = json!({
        "exp": exp,
        "iat": iat.to_string(),
        "username": sim.config.client_number,
        "ip": "127.0.0.1",
        "clientRoles": ["ROLE_LOGISTICS", "ROLE_ORDER_MODULE", "ROLE_PRODUCT_VARIANTS",
                        "ROLE_STOCK_LOCATION", "ROLE_API_SETTINGS", "ROLE_INVOICE"],
        "clientName": "Simulert Butikk AS",
        "clientLanguage": "no",
        "jti": serial,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(sim.config.seed ^ serial.rotate_left(17));
    let signature: Vec<u8> = (0..64).map(|_| rng.random::<u8>()).collect();
    let jwt = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWS"}"#),
        b64(payload.to_string().as_bytes()),
        b64(&signature)
    );
    db.remember_token(jwt.clone(), exp);
    drop(db);
    sim.stats.with(|s| s.logins += 1);
    ok(json!({"status": true, "token": jwt}))
}

fn departments(db: &Db) -> Response {
    ok(json!({"status": true, "departments": db.departments}))
}

fn render_validation(shape: ValidationShape, errors: &[(String, String)]) -> Value {
    match shape {
        ValidationShape::KeyedObject => {
            if errors.is_empty() {
                return json!([]);
            }
            let mut map: Map<String, Value> = Map::new();
            for (k, m) in errors {
                match map.entry(k.clone()).or_insert_with(|| json!([])) {
                    Value::Array(a) => a.push(json!(m)),
                    other => *other = json!([m]),
                }
            }
            Value::Object(map)
        }
        ValidationShape::List => Value::Array(
            errors
                .iter()
                .map(|(k, m)| json!(format!("{k}: {m}")))
                .collect(),
        ),
        ValidationShape::Text => json!(errors
            .iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Pages `items` (already filtered and ordered).
fn page<T>(sim: &Shared, params: &Params, items: impl Iterator<Item = T>) -> (usize, Vec<T>) {
    let (start, len) = params.paging(
        sim.config.page_cap,
        sim.config.default_page_length,
        sim.config.accept_limit_alias,
    );
    let mut total = 0;
    let mut out = Vec::with_capacity(len);
    for (i, item) in items.enumerate() {
        total += 1;
        if i >= start && out.len() < len {
            out.push(item);
        }
    }
    (total, out)
}

fn product_list(sim: &Shared, db: &Db, params: &Params) -> Response {
    let view = params.filter("view_on_webshop").and_then(truthy);
    let number = params.filter("product_number");
    let since = match params.filter("last_update_date") {
        Some(s) => match parse_ts(s) {
            Some(t) => Some(t),
            None => {
                return fail(
                    400,
                    "Invalid last_update_date, expected YYYY-MM-DD HH:MM:SS",
                )
            }
        },
        None => None,
    };
    let deleted = params
        .filter("is_deleted")
        .and_then(truthy)
        .unwrap_or(false);
    let category = params
        .filter("category_id")
        .map(|c| c.trim().parse::<u64>().ok());
    let ids: Vec<u64> = params
        .filter_list("product_id")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let inclusive = sim.config.last_update_filter == crate::config::LastUpdateFilter::Inclusive;
    let partial = sim.config.product_number_match == NumberMatch::Partial;
    let matches = |p: &&SimProduct| -> bool {
        p.is_deleted == deleted
            && view.is_none_or(|v| p.view_on_webshop == v)
            && number.is_none_or(|n| {
                if partial {
                    p.product_number.contains(n)
                } else {
                    p.product_number == n
                }
            })
            && since.is_none_or(|t| {
                if inclusive {
                    p.last_update_date >= t
                } else {
                    p.last_update_date > t
                }
            })
            && category.is_none_or(|c| c == Some(p.category_id))
            && (ids.is_empty() || ids.contains(&p.product_id))
    };
    let desc = params
        .get("sort_order")
        .is_some_and(|o| o.trim().eq_ignore_ascii_case("desc"));
    let sort_by = params.get("sort_by").map(str::trim).unwrap_or("product_id");
    let (total, rows) = match sort_by {
        "product_name" | "product_number" | "last_update_date" => {
            let mut all: Vec<&SimProduct> = db.products.values().filter(matches).collect();
            match sort_by {
                "product_name" => all.sort_by(|a, b| a.product_name.cmp(&b.product_name)),
                "product_number" => all.sort_by(|a, b| a.product_number.cmp(&b.product_number)),
                _ => all.sort_by_key(|p| p.last_update_date),
            }
            if desc {
                all.reverse();
            }
            page(sim, params, all.into_iter())
        }
        _ if desc => page(sim, params, db.products.values().rev().filter(matches)),
        _ => page(sim, params, db.products.values().filter(matches)),
    };
    let products: Vec<Value> = rows.iter().map(|p| p.to_json(&sim.origin)).collect();
    ok(json!({"status": true, "total_count": total, "products": products}))
}

fn product_save(sim: &Shared, db: &mut Db, body: &Value) -> Response {
    let rows = keyed_items(body.get("product_data").unwrap_or(&Value::Null));
    if rows.is_empty() {
        return fail(400, "product_data is required");
    }
    let mut errors = Vec::new();
    let mut data = Vec::new();
    let now = db.now();
    for (key, row) in rows {
        let name = row.get("product_name").and_then(text).unwrap_or_default();
        let number = row.get("product_number").and_then(text).unwrap_or_default();
        let row_key = if number.is_empty() {
            key.clone()
        } else {
            number.clone()
        };
        if name.trim().is_empty() {
            errors.push((row_key, "product_name is required".into()));
            continue;
        }
        let Some(price) = row.get("price_inc_vat").and_then(decimal) else {
            errors.push((row_key, "price_inc_vat must be a number".into()));
            continue;
        };
        let vat = match row.get("vatrate_percent") {
            None | Some(Value::Null) => Some(25),
            Some(v) => u64_of(v).and_then(|v| u32::try_from(v).ok()),
        };
        let Some(vat) = vat.filter(|v| [0, 12, 15, 25].contains(v)) else {
            errors.push((row_key, "vatrate_percent must be 0, 12, 15 or 25".into()));
            continue;
        };
        let category = match row.get("category_id") {
            None | Some(Value::Null) => None,
            Some(v) => match u64_of(v).filter(|c| db.categories.contains_key(c)) {
                Some(c) => Some(c),
                None => {
                    errors.push((row_key, "category_id not found".into()));
                    continue;
                }
            },
        };
        let (category_id, category_name) = match category {
            Some(c) => (
                c,
                db.categories
                    .get(&c)
                    .map(|c| c.category_name.clone())
                    .unwrap_or_default(),
            ),
            None => (0, String::new()),
        };
        let id = db.next_product_id;
        db.next_product_id += 1;
        let p = SimProduct {
            product_id: id,
            product_number: number.clone(),
            product_name: name.clone(),
            description: row
                .get("description")
                .and_then(text)
                .filter(|d| !d.is_empty()),
            barcode: row.get("barcode").and_then(text).unwrap_or_default(),
            category_id,
            category_name,
            vatrate_percent: vat,
            price_inc_vat: price,
            special_price: None,
            special_price_start_date: None,
            special_price_end_date: None,
            cost_price: Decimal::ZERO,
            stock_price: Decimal::ZERO,
            supplier_name: String::new(),
            is_deleted: false,
            is_parent: false,
            parent_variant: 0,
            // Products created through the API are not shown in the web shop until someone
            // ticks "Vis i nettbutikk".
            view_on_webshop: row
                .get("view_on_webshop")
                .and_then(json_truthy)
                .unwrap_or(false),
            image: SimImage::None,
            last_update_date: now,
            custom_fields: Vec::new(),
        };
        db.products.insert(id, p);
        let deps: Vec<u64> = db.departments.iter().map(|d| d.department_id).collect();
        for d in deps {
            db.stock.insert((d, id), Decimal::ZERO);
        }
        data.push(json!({"product_id": id, "product_number": number, "product_name": name}));
    }
    ok(json!({
        "status": true,
        "total_affected": data.len(),
        "data": data,
        "validation_message": render_validation(sim.config.validation_shape, &errors),
    }))
}

fn category_list(sim: &Shared, db: &Db, params: &Params) -> Response {
    let name = params.filter("category_name").map(str::trim);
    let (total, rows) = page(
        sim,
        params,
        db.categories
            .values()
            .filter(|c| name.is_none_or(|n| c.category_name.eq_ignore_ascii_case(n))),
    );
    ok(json!({"status": true, "total_count": total, "categories": rows}))
}

fn category_save(sim: &Shared, db: &mut Db, body: &Value) -> Response {
    let rows = keyed_items(body.get("category_data").unwrap_or(&Value::Null));
    if rows.is_empty() {
        return fail(400, "category_data is required");
    }
    let mut errors = Vec::new();
    let mut data = Vec::new();
    for (key, row) in rows {
        let name = row.get("category_name").and_then(text).unwrap_or_default();
        if name.trim().is_empty() {
            errors.push((key, "category_name is required".into()));
            continue;
        }
        let id = db.create_category(name.trim());
        if let Some(t) = row.get("category_type").and_then(text) {
            if let Some(c) = db.categories.get_mut(&id) {
                c.category_type = t;
            }
        }
        data.push(json!(db.categories.get(&id)));
    }
    ok(json!({
        "status": true,
        "total_affected": data.len(),
        "data": data,
        "validation_message": render_validation(sim.config.validation_shape, &errors),
    }))
}

fn stock_entry(sim: &Shared, db: &Db, dep: &SimDepartment, product_id: u64) -> Value {
    let level = db.level(dep.department_id, product_id);
    let (stock, actual) = match sim.config.reservation_field {
        crate::config::ReservationField::ActualStock => (level.physical, level.available()),
        crate::config::ReservationField::Stock => (level.available(), level.physical),
        crate::config::ReservationField::Neither => (level.physical, level.physical),
    };
    json!({
        "department_id": dep.department_id,
        "department_name": dep.department_name,
        "stock": num(stock),
        "actual_stock": num(actual),
        "location": [],
    })
}

fn stock_list(sim: &Shared, db: &Db, params: &Params) -> Response {
    let deps: Vec<&SimDepartment> = match params.get("department").map(str::trim) {
        Some(t) if !t.is_empty() => match db.department_by_token(t) {
            Some(d) => vec![d],
            None => return fail(400, "Invalid department token"),
        },
        _ => db.departments.iter().collect(),
    };
    let view = params.filter("view_on_webshop").and_then(truthy);
    let ids: Vec<u64> = params
        .filter_list("product_id")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let (total, rows) = page(
        sim,
        params,
        db.products.values().filter(|p| {
            !p.is_deleted
                && view.is_none_or(|v| p.view_on_webshop == v)
                && (ids.is_empty() || ids.contains(&p.product_id))
        }),
    );
    let data: Vec<Value> = rows
        .iter()
        .map(|p| {
            json!({
                // A string here, unlike product/list (as seen on real DUELL).
                "product_id": p.product_id.to_string(),
                "product_number": p.product_number,
                "department": deps.iter().map(|d| stock_entry(sim, db, d, p.product_id)).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({"status": true, "total_count": total, "data": data}))
}

fn adjust_stock(sim: &Shared, db: &mut Db, body: &Value) -> Response {
    let token = body
        .get("department_token")
        .or_else(|| body.get("department"))
        .and_then(text)
        .unwrap_or_default();
    let Some(dep) = db.department_by_token(&token).map(|d| d.department_id) else {
        return fail(400, "Invalid department token");
    };
    let rows = keyed_items(body.get("product_data").unwrap_or(&Value::Null));
    if rows.is_empty() {
        return fail(400, "product_data is required");
    }
    let mut errors = Vec::new();
    let now = db.now();
    for (key, row) in rows {
        let number = row.get("product_number").and_then(text).unwrap_or_default();
        let row_key = if number.is_empty() {
            key
        } else {
            number.clone()
        };
        let Some(qty) = row.get("quantity").and_then(decimal) else {
            errors.push((row_key, "quantity must be a number".into()));
            continue;
        };
        // Duplicated item numbers: the lowest product id wins.
        let Some(product_id) = db
            .products
            .values()
            .find(|p| !p.is_deleted && !number.is_empty() && p.product_number == number)
            .map(|p| p.product_id)
        else {
            errors.push((
                row_key,
                format!("Product with product_number {number} not found"),
            ));
            continue;
        };
        db.add_stock(dep, product_id, -qty);
        db.adjustments.push(SimStockAdjustment {
            department_id: dep,
            product_number: number,
            product_id,
            quantity: qty,
            at: now,
        });
    }
    ok(json!({
        "status": true,
        "validation_message": render_validation(sim.config.validation_shape, &errors),
    }))
}

fn customer_list(sim: &Shared, db: &Db, params: &Params) -> Response {
    let phone = params.filter("customer_phone").map(digits);
    let email = params
        .filter("customer_email")
        .map(|e| e.trim().to_lowercase());
    let (total, rows) = page(
        sim,
        params,
        db.customers.values().filter(|c| {
            phone
                .as_ref()
                .is_none_or(|p| !p.is_empty() && digits(&c.phone) == *p)
                && email
                    .as_ref()
                    .is_none_or(|e| !e.is_empty() && c.email.trim().to_lowercase() == *e)
        }),
    );
    ok(json!({"status": true, "total_count": total, "customers": rows}))
}

fn customer_put(db: &mut Db, params: &Params) -> Response {
    let field = |k: &str| params.get(k).map(|s| s.trim().to_string());
    if let Some(id) = params.get("customer_id").filter(|s| !s.trim().is_empty()) {
        let Some(id) = id.trim().parse::<u64>().ok() else {
            return fail(400, "Invalid customer_id");
        };
        let Some(c) = db.customers.get_mut(&id) else {
            return fail(404, "Customer not found");
        };
        if let Some(v) = field("customer_name").filter(|v| !v.is_empty()) {
            c.customer_name = v;
        }
        for (k, slot) in [
            ("phone", &mut c.phone),
            ("email", &mut c.email),
            ("primary_address", &mut c.primary_address),
            ("primary_zip", &mut c.primary_zip),
            ("city", &mut c.city),
        ] {
            if let Some(v) = field(k) {
                *slot = v;
            }
        }
        return ok(json!({"status": true, "customers": id}));
    }
    let Some(name) = field("customer_name").filter(|n| !n.is_empty()) else {
        return fail(400, "customer_name is required");
    };
    let id = db.next_customer_id;
    db.next_customer_id += 1;
    db.customers.insert(
        id,
        SimCustomer {
            customer_id: id,
            customer_name: name,
            phone: field("phone").unwrap_or_default(),
            email: field("email").unwrap_or_default(),
            primary_address: field("primary_address").unwrap_or_default(),
            primary_zip: field("primary_zip").unwrap_or_default(),
            city: field("city").unwrap_or_default(),
        },
    );
    // The create answer carries the new id as a scalar, not a list.
    ok(json!({"status": true, "customers": id}))
}

fn parse_line(db: &Db, key: &str, line: &Value) -> Result<SimOrderLine, String> {
    let product_id = line
        .get("product_id")
        .and_then(u64_of)
        .ok_or_else(|| format!("line {key}: product_id is required"))?;
    match db.products.get(&product_id) {
        Some(p) if !p.is_deleted => {}
        _ => return Err(format!("line {key}: product {product_id} not found")),
    }
    let quantity = line
        .get("quantity")
        .and_then(decimal)
        .filter(|q| *q > Decimal::ZERO)
        .ok_or_else(|| format!("line {key}: quantity must be a positive number"))?;
    let price_inc_vat = line
        .get("price_inc_vat")
        .and_then(decimal)
        .ok_or_else(|| format!("line {key}: price_inc_vat must be a number"))?;
    let vat = line
        .get("vatrate_percent")
        .and_then(decimal)
        .unwrap_or(Decimal::from(25));
    let price_ex_vat = line
        .get("price_ex_vat")
        .and_then(decimal)
        .unwrap_or_else(|| (price_inc_vat / (Decimal::ONE + vat / Decimal::from(100))).round_dp(2));
    Ok(SimOrderLine {
        line_key: key.to_string(),
        entity_type: line
            .get("entity_type")
            .and_then(text)
            .unwrap_or_else(|| "product".into()),
        product_id,
        price_ex_vat,
        price_inc_vat,
        quantity,
        vatrate_percent: vat,
        discount_amount: line.get("discount_amount").and_then(decimal),
        comments: line.get("comments").and_then(text).unwrap_or_default(),
    })
}

fn orders_save(sim: &Shared, db: &mut Db, body: &Value, customer_order: bool) -> Response {
    let rows = keyed_items(body.get("orders").unwrap_or(&Value::Null));
    if rows.is_empty() {
        return fail(400, "orders is required");
    }
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut data = Vec::new();
    let now = db.now();
    'rows: for (key, row) in rows {
        let Some(od) = row.get("order_data").filter(|v| v.is_object()) else {
            errors.push((key, "order_data is required".into()));
            continue;
        };
        // `department_id` carries the department token (as the plugin sends it); a numeric
        // department id is accepted too.
        let dep_value = od.get("department_id").and_then(text).unwrap_or_default();
        let dep = db
            .department_by_token(&dep_value)
            .map(|d| d.department_id)
            .or_else(|| {
                let n = dep_value.trim().parse::<u64>().ok()?;
                db.departments
                    .iter()
                    .find(|d| d.department_id == n)
                    .map(|d| d.department_id)
            });
        let Some(department_id) = dep else {
            errors.push((key, "Invalid department".into()));
            continue;
        };
        let customer_id = od.get("customer_id").and_then(u64_of).unwrap_or(0);
        if !db.customers.contains_key(&customer_id) {
            errors.push((key, format!("customer {customer_id} not found")));
            continue;
        }
        let reference = od
            .get("reference_order_number")
            .cloned()
            .unwrap_or(Value::Null);
        let reference_text = text(&reference).unwrap_or_default();
        if reference_text.trim().is_empty() {
            errors.push((key, "reference_order_number is required".into()));
            continue;
        }
        if sim.config.duplicate_reference == DuplicateReferencePolicy::Reject {
            let existing = if customer_order {
                &db.customer_orders
            } else {
                &db.sales_orders
            };
            if existing.values().any(|o| o.reference() == reference_text) {
                errors.push((
                    key,
                    format!("Order with reference {reference_text} already exists"),
                ));
                continue;
            }
        }
        let line_items = keyed_items(row.get("product_data").unwrap_or(&Value::Null));
        if line_items.is_empty() {
            errors.push((key, "product_data is required".into()));
            continue;
        }
        let mut lines = Vec::with_capacity(line_items.len());
        for (lk, l) in line_items {
            match parse_line(db, &lk, l) {
                Ok(line) => lines.push(line),
                Err(e) => {
                    errors.push((key, e));
                    continue 'rows;
                }
            }
        }
        let status = if customer_order {
            od.get("purchase_order_status_id")
                .and_then(u64_of)
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| (1..=11).contains(s))
                .unwrap_or(1)
        } else {
            0
        };
        let ref_order_id = (!customer_order
            && od.get("ref_order_type").and_then(text).as_deref() == Some("customer_order"))
        .then(|| od.get("ref_order_id").and_then(u64_of))
        .flatten();
        let mut stored_data = od.clone();
        if let Some(m) = stored_data.as_object_mut() {
            // The token is a secret: keep the resolved id instead.
            m.insert("department_id".into(), json!(department_id));
        }
        let (order_id, order_number) = db.next_order();
        let order = SimOrder {
            order_id,
            order_number: order_number.clone(),
            request_key: key.clone(),
            reference_order_number: reference.clone(),
            department_id,
            customer_id,
            purchase_order_status_id: status,
            stock_drawn: false,
            order_data: stored_data,
            lines,
            ref_order_id,
            created_at: now,
        };
        if customer_order {
            db.insert_customer_order(order);
        } else {
            db.insert_sales_order(order);
        }
        data.push(json!({
            "reference_order_number": reference,
            "order_id": order_id,
            "order_number": order_number,
        }));
    }
    ok(json!({
        "status": true,
        "total_affected": data.len(),
        "data": data,
        "validation_message": render_validation(sim.config.validation_shape, &errors),
    }))
}

fn order_json(db: &Db, o: &SimOrder) -> Value {
    let field = |k: &str| o.order_data.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "order_id": o.order_id,
        "order_number": o.order_number,
        "reference_order_number": o.reference_order_number,
        "purchase_order_status_id": o.purchase_order_status_id,
        "customer_id": o.customer_id,
        "department_id": o.department_id,
        "order_date": field("order_date"),
        "reference_comment": field("reference_comment"),
        "comments": field("comments"),
        "is_locked": field("is_locked"),
        "created_at": ts(o.created_at),
        "lines_count": o.lines.len(),
        "total_inc_vat": num(o.lines.iter().map(|l| {
            (l.price_inc_vat - l.discount_amount.unwrap_or_default()) * l.quantity
        }).sum::<Decimal>()),
        "product_count": o.lines.iter().filter(|l| db.products.contains_key(&l.product_id)).count(),
    })
}

fn order_view(db: &Db, path: &str) -> Response {
    let id = path
        .trim_matches('/')
        .rsplit('/')
        .next()
        .and_then(|s| s.parse::<u64>().ok());
    let Some(order) = id.and_then(|id| db.customer_orders.get(&id)) else {
        return fail(404, "Order not found");
    };
    let lines: Vec<Value> = order
        .lines
        .iter()
        .map(|l| {
            let p = db.products.get(&l.product_id);
            json!({
                "product_id": l.product_id,
                "product_number": p.map(|p| p.product_number.clone()),
                "product_name": p.map(|p| p.product_name.clone()),
                "entity_type": l.entity_type,
                "quantity": num(l.quantity),
                "price_inc_vat": num(l.price_inc_vat),
                "price_ex_vat": num(l.price_ex_vat),
                "vatrate_percent": num(l.vatrate_percent),
                "discount_amount": l.discount_amount.map(num).unwrap_or(json!("")),
                "comments": l.comments,
            })
        })
        .collect();
    ok(json!({
        "status": true,
        "data": {"order_data": order_json(db, order), "product_data": lines},
    }))
}

fn order_lookup(sim: &Shared, db: &Db, params: &Params, customer_orders: bool) -> Response {
    let reference = params.filter("reference_order_number").map(str::trim);
    let orders = if customer_orders {
        &db.customer_orders
    } else {
        &db.sales_orders
    };
    let (total, rows) = page(
        sim,
        params,
        orders
            .values()
            .filter(|o| reference.is_none_or(|r| o.reference() == r)),
    );
    let rows: Vec<Value> = rows.iter().map(|o| order_json(db, o)).collect();
    ok(json!({"status": true, "total_count": total, "orders": rows}))
}
