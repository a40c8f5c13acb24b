//! Simulator settings. Every choice made for one of the reference's open questions that was
//! cheap to make configurable is a field here (see docs/duell-sim.md).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How `filter[last_update_date]` compares (reference open question 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LastUpdateFilter {
    /// `last_update_date >= filter` (default: a client passing its last seen time misses
    /// nothing, at the cost of seeing same-second changes twice).
    #[default]
    Inclusive,
    /// `last_update_date > filter`.
    Exclusive,
}

/// Which stock field of `all/product/stock` nets out open customer-order reservations
/// (reference open question 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReservationField {
    /// `stock` = physical stock, `actual_stock` = physical − reserved (default).
    #[default]
    ActualStock,
    /// `stock` = physical − reserved, `actual_stock` = physical.
    Stock,
    /// Both fields show physical stock; reservations are visible nowhere.
    Neither,
}

/// What order saves do with a `reference_order_number` that already exists (open question 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateReferencePolicy {
    /// Create another order (default: the worst case for exactly-once, nothing documents a
    /// rejection).
    #[default]
    Accept,
    /// Refuse the row with a validation message.
    Reject,
}

/// Shape of `validation_message` on bulk saves (open question 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValidationShape {
    /// `{"<row key>": ["message", …]}`, `[]` when nothing failed (default; PHP encodes an empty
    /// array as `[]` and an associative one as an object).
    #[default]
    KeyedObject,
    /// `["<row key>: message", …]`.
    List,
    /// `"<row key>: message; …"`, `""` when nothing failed.
    Text,
}

/// How `filter[product_number]` matches (open question 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NumberMatch {
    /// Exact, case-sensitive (default).
    #[default]
    Exact,
    /// Substring.
    Partial,
}

/// A fixed-window rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window (all `/v1` requests count, login included).
    pub limit: u32,
    /// Window length in milliseconds; windows are aligned to the epoch.
    pub window_ms: u64,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind (127.0.0.1:0 picks a free port).
    pub bind: SocketAddr,
    /// Origin used in generated image URLs (`http://host:port`); default: the bound address.
    pub public_url: Option<String>,
    /// Seed of the catalogue generator and of random faults.
    pub seed: u64,
    /// Number of products to generate (variants included).
    pub products: usize,
    /// Accepted client number (a string: it may start with 0).
    pub client_number: String,
    /// Accepted client token.
    pub client_token: String,
    /// Lifetime of issued tokens (DUELL: 72 h).
    pub token_ttl: Duration,
    /// Rows per page at most, whatever `length` asks (DUELL: 100).
    pub page_cap: usize,
    /// Page size when `length` is missing (unknown on DUELL; open question 5).
    pub default_page_length: usize,
    /// Accept `limit` as an alias of `length` (unknown on DUELL; default off).
    pub accept_limit_alias: bool,
    /// `filter[last_update_date]` comparison.
    pub last_update_filter: LastUpdateFilter,
    /// DUELL local time as an offset from UTC, in seconds. Timestamps (`last_update_date`,
    /// order dates) are written and compared in it. Default 0 (UTC).
    pub utc_offset_secs: i32,
    /// Whether stock changes bump `last_update_date` (default false).
    pub stock_bumps_last_update: bool,
    /// Which stock field nets out reservations.
    pub reservation_field: ReservationField,
    /// Customer-order statuses at which the order's stock is drawn (its packing slip is made).
    /// Default: 3 Sendt, 4 Mottatt, 5 Fullført, 6 Fakturert, 7 Betalt, 11 Ferdig plukket.
    pub draw_statuses: Vec<u32>,
    /// Repeated `reference_order_number` on order saves.
    pub duplicate_reference: DuplicateReferencePolicy,
    /// Shape of `validation_message`.
    pub validation_shape: ValidationShape,
    /// `filter[product_number]` matching.
    pub product_number_match: NumberMatch,
    /// Serve the UNVERIFIED order lookups `logistics/orders/list` and `sale/orders/list`.
    pub order_lookup: bool,
    /// Rate limit from the start (None = off).
    pub rate_limit: Option<RateLimit>,
    /// Latency added to every `/v1` request.
    pub latency: Duration,
    /// Number of generated customers.
    pub customers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            seed: 42,
            products: 200,
            client_number: "012345".into(),
            client_token: "0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e0f".into(),
            token_ttl: Duration::from_secs(72 * 3600),
            page_cap: 100,
            default_page_length: 20,
            accept_limit_alias: false,
            last_update_filter: LastUpdateFilter::Inclusive,
            utc_offset_secs: 0,
            stock_bumps_last_update: false,
            reservation_field: ReservationField::ActualStock,
            draw_statuses: vec![3, 4, 5, 6, 7, 11],
            duplicate_reference: DuplicateReferencePolicy::Accept,
            validation_shape: ValidationShape::KeyedObject,
            product_number_match: NumberMatch::Exact,
            order_lookup: true,
            rate_limit: None,
            latency: Duration::ZERO,
            customers: 25,
        }
    }
}
