//! The control API under `/__sim/` (a prefix DUELL's paths cannot clash with), for tests in
//! other processes and for the demo. Each route mirrors an in-process method of
//! [`crate::DuellSim`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use crate::config::RateLimit;
use crate::faults::{RandomFaults, ScheduledFault, SimStats};
use crate::store::{NewSimProduct, ProductPatch};
use crate::Shared;

type S = State<Arc<Shared>>;

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{what} not found")})),
    )
        .into_response()
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route("/credentials", get(credentials))
        .route("/departments", get(departments))
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).patch(patch_product).delete(delete_product),
        )
        .route(
            "/stock/{department_id}/{product_id}",
            get(get_stock).put(put_stock),
        )
        .route("/categories", get(categories))
        .route("/customer-orders", get(customer_orders))
        .route("/customer-orders/{id}", get(customer_order))
        .route("/customer-orders/{id}/status", put(set_status))
        .route("/sales-orders", get(sales_orders))
        .route("/customers", get(customers))
        .route("/stock-adjustments", get(adjustments))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/faults/random", put(random_faults).delete(clear_random))
        .route("/latency", put(set_latency))
        .route("/rate-limit", put(set_rate_limit).delete(clear_rate_limit))
        .route("/tokens/expire", post(expire_tokens))
}

async fn stats(State(sim): S) -> Json<SimStats> {
    Json(sim.stats.snapshot())
}

async fn reset_stats(State(sim): S) -> StatusCode {
    sim.stats.with(|s| *s = SimStats::default());
    StatusCode::NO_CONTENT
}

async fn credentials(State(sim): S) -> Json<serde_json::Value> {
    let db = sim.db();
    Json(json!({
        "base_url": format!("{}/v1/", sim.origin),
        "client_number": sim.config.client_number,
        "client_token": sim.config.client_token,
        "departments": db.departments,
    }))
}

async fn departments(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().departments))
}

#[derive(Deserialize)]
struct Window {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

async fn list_products(State(sim): S, Query(w): Query<Window>) -> Json<serde_json::Value> {
    let db = sim.db();
    let rows: Vec<_> = db.products.values().skip(w.offset).take(w.limit).collect();
    Json(json!({"total": db.products.len(), "products": rows}))
}

async fn create_product(State(sim): S, Json(spec): Json<NewSimProduct>) -> Response {
    if spec.product_name.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "product_name is required"})),
        )
            .into_response();
    }
    let p = sim.db().create_product(spec);
    (StatusCode::CREATED, Json(json!(p))).into_response()
}

async fn get_product(State(sim): S, Path(id): Path<u64>) -> Response {
    match sim.db().products.get(&id) {
        Some(p) => Json(json!({"product": p, "rendered": p.to_json(&sim.origin)})).into_response(),
        None => not_found(format!("product {id}")),
    }
}

async fn patch_product(
    State(sim): S,
    Path(id): Path<u64>,
    Json(patch): Json<ProductPatch>,
) -> Response {
    match sim.db().patch_product(id, patch) {
        Some(p) => Json(json!(p)).into_response(),
        None => not_found(format!("product {id}")),
    }
}

async fn delete_product(State(sim): S, Path(id): Path<u64>) -> Response {
    let patch = ProductPatch {
        is_deleted: Some(true),
        ..ProductPatch::default()
    };
    match sim.db().patch_product(id, patch) {
        Some(p) => Json(json!(p)).into_response(),
        None => not_found(format!("product {id}")),
    }
}

#[derive(Deserialize)]
struct StockBody {
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    stock: Decimal,
}

async fn put_stock(
    State(sim): S,
    Path((department_id, product_id)): Path<(u64, u64)>,
    Json(body): Json<StockBody>,
) -> Response {
    let mut db = sim.db();
    if !db.products.contains_key(&product_id) {
        return not_found(format!("product {product_id}"));
    }
    if !db
        .departments
        .iter()
        .any(|d| d.department_id == department_id)
    {
        return not_found(format!("department {department_id}"));
    }
    db.set_stock(department_id, product_id, body.stock);
    Json(json!(db.level(department_id, product_id))).into_response()
}

async fn get_stock(State(sim): S, Path((department_id, product_id)): Path<(u64, u64)>) -> Response {
    let db = sim.db();
    let level = db.level(department_id, product_id);
    Json(json!({
        "physical": level.physical.to_string(),
        "reserved": level.reserved.to_string(),
        "available": level.available().to_string(),
    }))
    .into_response()
}

async fn categories(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().categories.values().collect::<Vec<_>>()))
}

async fn customer_orders(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().customer_orders.values().collect::<Vec<_>>()))
}

async fn customer_order(State(sim): S, Path(id): Path<u64>) -> Response {
    match sim.db().customer_orders.get(&id) {
        Some(o) => Json(json!(o)).into_response(),
        None => not_found(format!("customer order {id}")),
    }
}

#[derive(Deserialize)]
struct StatusBody {
    status: u32,
}

async fn set_status(State(sim): S, Path(id): Path<u64>, Json(body): Json<StatusBody>) -> Response {
    if !(1..=11).contains(&body.status) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "status must be 1–11"})),
        )
            .into_response();
    }
    match sim.db().set_order_status(id, body.status) {
        Some(o) => Json(json!(o)).into_response(),
        None => not_found(format!("customer order {id}")),
    }
}

async fn sales_orders(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().sales_orders.values().collect::<Vec<_>>()))
}

async fn customers(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().customers.values().collect::<Vec<_>>()))
}

async fn adjustments(State(sim): S) -> Json<serde_json::Value> {
    Json(json!(sim.db().adjustments))
}

async fn add_fault(State(sim): S, Json(f): Json<ScheduledFault>) -> StatusCode {
    sim.faults.schedule(f);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): S) -> StatusCode {
    sim.faults.clear();
    StatusCode::NO_CONTENT
}

async fn random_faults(State(sim): S, Json(r): Json<RandomFaults>) -> StatusCode {
    sim.faults.set_random(Some(r));
    StatusCode::NO_CONTENT
}

async fn clear_random(State(sim): S) -> StatusCode {
    sim.faults.set_random(None);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn set_latency(State(sim): S, Json(b): Json<LatencyBody>) -> StatusCode {
    sim.faults.set_latency(Duration::from_millis(b.ms));
    StatusCode::NO_CONTENT
}

async fn set_rate_limit(State(sim): S, Json(r): Json<RateLimit>) -> StatusCode {
    sim.faults.set_rate_limit(Some(r));
    StatusCode::NO_CONTENT
}

async fn clear_rate_limit(State(sim): S) -> StatusCode {
    sim.faults.set_rate_limit(None);
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(sim): S) -> StatusCode {
    for t in sim.db().tokens.values_mut() {
        t.revoked = true;
    }
    StatusCode::NO_CONTENT
}
