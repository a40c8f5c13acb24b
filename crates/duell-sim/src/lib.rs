//! A DUELL API simulator for tests and the demo.
//!
//! [`DuellSim::start`] binds (127.0.0.1:0 by default), generates a seeded Norwegian catalogue and
//! serves:
//! - `/v1/...`: the DUELL endpoints of the reference (same paths, envelopes, quirks, page cap,
//!   token expiry), plus the UNVERIFIED order lookups `logistics/orders/list` and
//!   `sale/orders/list` (`filter[reference_order_number]`). [`DuellSim::base_url`] is
//!   `http://127.0.0.1:<port>/v1/`.
//! - `/images/<name>.png`: small generated PNGs that product image URLs point to.
//! - `/__sim/...`: a control API for tests and the demo (see `control.rs` and
//!   docs/duell-sim.md), mirrored by in-process methods on [`DuellSim`].
//!
//! Everything lives in memory behind mutexes; handlers never panic on bad input.
#![forbid(unsafe_code)]

mod api;
mod config;
mod control;
mod faults;
mod generate;
mod model;
mod params;
mod png;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{
    DuplicateReferencePolicy, LastUpdateFilter, NumberMatch, RateLimit, ReservationField,
    SimConfig, ValidationShape,
};
pub use faults::{Fault, RandomFaults, ScheduledFault, SimStats};
pub use model::{
    SimCategory, SimCustomField, SimCustomer, SimDepartment, SimImage, SimOrder, SimOrderLine,
    SimProduct, SimStockAdjustment, StockLevel,
};
pub use store::{NewSimProduct, ProductPatch};

/// Errors of the simulator's control operations.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The address could not be bound; pick another port.
    #[error("cannot bind the simulator: {0}")]
    Bind(#[from] std::io::Error),
    /// The named record does not exist; fix the test.
    #[error("{0} not found")]
    NotFound(String),
    /// The request makes no sense (e.g. an unknown status); fix the test.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) db: Mutex<store::Db>,
    pub(crate) faults: faults::Faults,
    pub(crate) stats: faults::Stats,
    /// `http://host:port`, prefix of generated image URLs.
    pub(crate) origin: String,
}

impl Shared {
    pub(crate) fn db(&self) -> MutexGuard<'_, store::Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Aborts the server when the last handle goes away.
struct ServerTask(Mutex<Option<JoinHandle<()>>>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        if let Some(h) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }
}

/// A running simulator. Cheap to clone; the server stops when the last clone is dropped or on
/// [`DuellSim::shutdown`].
#[derive(Clone)]
pub struct DuellSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Arc<ServerTask>,
}

impl std::fmt::Debug for DuellSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuellSim")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn image(Path(name): Path<String>) -> Response {
    let Some(stem) = name.strip_suffix(".png") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        png::image(stem),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"status": false, "code": 404, "message": "Not found"})),
    )
        .into_response()
}

impl DuellSim {
    /// Binds `config.bind`, generates the catalogue and starts serving.
    pub async fn start(config: SimConfig) -> Result<DuellSim, SimError> {
        let listener = TcpListener::bind(config.bind).await?;
        Self::serve(listener, config)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: TcpListener, config: SimConfig) -> Result<DuellSim, SimError> {
        let addr = listener.local_addr()?;
        let origin = config
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{addr}"));
        let mut db = store::Db::new(&config);
        generate::populate(&mut db, &config);
        let shared = Arc::new(Shared {
            faults: faults::Faults::new(config.rate_limit, config.latency),
            stats: faults::Stats::default(),
            db: Mutex::new(db),
            config,
            origin,
        });
        let router = Router::new()
            .route("/v1/{*rest}", any(api::v1))
            .route("/images/{name}", get(image))
            .nest("/__sim", control::router())
            .fallback(not_found)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "duell-sim server stopped");
            }
        });
        Ok(DuellSim {
            shared,
            addr,
            task: Arc::new(ServerTask(Mutex::new(Some(task)))),
        })
    }

    /// Stops serving (in-flight requests are dropped).
    pub fn shutdown(&self) {
        if let Some(h) = self.task.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }

    /// Waits until the server stops (for the binary).
    pub async fn wait(&self) {
        let h = self.task.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            let _ = h.await;
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base a DUELL client is configured with: `http://127.0.0.1:<port>/v1/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    /// `http://host:port`, the prefix of generated image URLs.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The accepted client number.
    pub fn client_number(&self) -> &str {
        &self.shared.config.client_number
    }

    /// The accepted client token.
    pub fn client_token(&self) -> &str {
        &self.shared.config.client_token
    }

    /// The departments (id 1 "Nettlager" is the natural stock department, id 2 the shop).
    pub fn departments(&self) -> Vec<SimDepartment> {
        self.shared.db().departments.clone()
    }

    /// Token of department `department_id`.
    pub fn department_token(&self, department_id: u64) -> Option<String> {
        self.shared
            .db()
            .departments
            .iter()
            .find(|d| d.department_id == department_id)
            .map(|d| d.api_token.clone())
    }

    // ---- counters ----

    /// All counters.
    pub fn stats(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    /// Requests received for an endpoint key such as `product/list`, `logistics/orders/view` or
    /// `customer` (faulted and rate-limited requests included).
    pub fn request_count(&self, endpoint: &str) -> u64 {
        self.shared.stats.with(|s| s.requests_to(endpoint))
    }

    /// Successful logins (tokens issued).
    pub fn login_count(&self) -> u64 {
        self.shared.stats.with(|s| s.logins)
    }

    /// Responses sent with an HTTP status.
    pub fn response_count(&self, status: u16) -> u64 {
        self.shared.stats.with(|s| s.responses_with(status))
    }

    /// Zeroes every counter.
    pub fn reset_stats(&self) {
        self.shared.stats.with(|s| *s = SimStats::default());
    }

    // ---- faults ----

    /// Fails the next `count` requests to `endpoint` (`None` = any) with `fault`.
    pub fn fail_next(&self, endpoint: Option<&str>, count: u32, fault: Fault) {
        self.shared.faults.schedule(ScheduledFault {
            endpoint: endpoint.map(str::to_string),
            count,
            fault,
        });
    }

    /// Schedules a fault.
    pub fn schedule_fault(&self, fault: ScheduledFault) {
        self.shared.faults.schedule(fault);
    }

    /// Sets (or with `None` removes) random faults.
    pub fn set_random_faults(&self, faults: Option<RandomFaults>) {
        self.shared.faults.set_random(faults);
    }

    /// Removes scheduled and random faults and the added latency.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Latency added to every `/v1` request.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency);
    }

    /// Turns the fixed-window rate limiter on (with `Some`) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.shared.faults.set_rate_limit(limit);
    }

    /// Makes every token issued so far expired (the next call with one gets HTTP 401).
    pub fn expire_all_tokens(&self) {
        for t in self.shared.db().tokens.values_mut() {
            t.revoked = true;
        }
    }

    // ---- catalogue ----

    /// A product by id (deleted ones included).
    pub fn product(&self, id: u64) -> Option<SimProduct> {
        self.shared.db().products.get(&id).cloned()
    }

    /// Every product, ordered by id (deleted ones included).
    pub fn products(&self) -> Vec<SimProduct> {
        self.shared.db().products.values().cloned().collect()
    }

    /// Number of products (deleted ones included).
    pub fn product_count(&self) -> usize {
        self.shared.db().products.len()
    }

    /// Product ids matching a predicate.
    pub fn product_ids_where(&self, f: impl Fn(&SimProduct) -> bool) -> Vec<u64> {
        self.shared
            .db()
            .products
            .values()
            .filter(|p| f(p))
            .map(|p| p.product_id)
            .collect()
    }

    /// The product as `product/list` renders it.
    pub fn product_json(&self, id: u64) -> Option<serde_json::Value> {
        self.product(id).map(|p| p.to_json(&self.shared.origin))
    }

    /// Creates a product (stock `spec.stock` in every department); bumps `last_update_date`.
    pub fn create_product(&self, spec: NewSimProduct) -> SimProduct {
        self.shared.db().create_product(spec)
    }

    /// Changes a product; any change bumps its `last_update_date` to now.
    pub fn update_product(&self, id: u64, patch: ProductPatch) -> Result<SimProduct, SimError> {
        self.shared
            .db()
            .patch_product(id, patch)
            .ok_or_else(|| SimError::NotFound(format!("product {id}")))
    }

    /// Shows or hides a product in the web shop (`view_on_webshop`).
    pub fn set_visible(&self, id: u64, visible: bool) -> Result<SimProduct, SimError> {
        self.update_product(
            id,
            ProductPatch {
                view_on_webshop: Some(visible),
                ..ProductPatch::default()
            },
        )
    }

    /// Marks a product deleted (it is then listed only with `filter[is_deleted]=1`).
    pub fn delete_product(&self, id: u64) -> Result<SimProduct, SimError> {
        self.update_product(
            id,
            ProductPatch {
                is_deleted: Some(true),
                ..ProductPatch::default()
            },
        )
    }

    /// Sets the physical stock of a product in a department (does not bump `last_update_date`
    /// unless `stock_bumps_last_update`).
    pub fn set_stock(&self, department_id: u64, product_id: u64, stock: Decimal) {
        self.shared.db().set_stock(department_id, product_id, stock);
    }

    /// Physical stock and open reservations of a product in a department.
    pub fn stock(&self, department_id: u64, product_id: u64) -> StockLevel {
        self.shared.db().level(department_id, product_id)
    }

    /// Categories.
    pub fn categories(&self) -> Vec<SimCategory> {
        self.shared.db().categories.values().cloned().collect()
    }

    // ---- what clients created ----

    /// Customer orders, by order id.
    pub fn customer_orders(&self) -> Vec<SimOrder> {
        self.shared.db().customer_orders.values().cloned().collect()
    }

    /// Number of customer orders (cheap: nothing is cloned).
    pub fn customer_order_count(&self) -> usize {
        self.shared.db().customer_orders.len()
    }

    /// Sales orders, by order id.
    pub fn sales_orders(&self) -> Vec<SimOrder> {
        self.shared.db().sales_orders.values().cloned().collect()
    }

    /// Customers, by id.
    pub fn customers(&self) -> Vec<SimCustomer> {
        self.shared.db().customers.values().cloned().collect()
    }

    /// Stock adjustments applied, in order.
    pub fn stock_adjustments(&self) -> Vec<SimStockAdjustment> {
        self.shared.db().adjustments.clone()
    }

    /// Sets a customer order's status (1–11). Reaching a draw status (see
    /// [`SimConfig::draw_statuses`]) draws its stock; 8 (cancelled) before that releases it.
    pub fn set_order_status(&self, order_id: u64, status: u32) -> Result<SimOrder, SimError> {
        if !(1..=11).contains(&status) {
            return Err(SimError::Invalid(format!("status {status} is not 1–11")));
        }
        self.shared
            .db()
            .set_order_status(order_id, status)
            .ok_or_else(|| SimError::NotFound(format!("customer order {order_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_customer_orders_without_copying_them() {
        let sim = DuellSim::start(SimConfig {
            products: 0,
            customers: 0,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        assert_eq!(sim.customer_order_count(), 0);
        for n in 0..2u64 {
            let mut db = sim.shared.db();
            let (order_id, order_number) = db.next_order();
            let created_at = db.now();
            db.insert_customer_order(SimOrder {
                order_id,
                order_number,
                request_key: n.to_string(),
                reference_order_number: serde_json::json!(n),
                department_id: 2,
                customer_id: 1,
                purchase_order_status_id: 1,
                stock_drawn: false,
                order_data: serde_json::json!({}),
                lines: Vec::new(),
                ref_order_id: None,
                created_at,
            });
        }
        assert_eq!(sim.customer_order_count(), 2);
        assert_eq!(sim.customer_orders().len(), 2);
    }
}
