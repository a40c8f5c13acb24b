//! WooCommerce REST API client (wc/v3 and wc/v2) for the sync engine.
//!
//! * [`WooClient`] talks to one store: authentication chosen from the URL scheme (HTTP Basic
//!   over https, OAuth 1.0a one-legged over http, exactly as WooCommerce verifies it), a
//!   timeout on every attempt, retries with backoff and jitter for transient failures, no
//!   redirects, and WooCommerce's `{code, message, data}` errors parsed into [`Error`].
//! * Writes state their retry safety ([`Idempotency`]): a create is never re-sent blindly
//!   after a timeout; the caller gets [`Error::OutcomeUnknown`] and reconciles by SKU.
//! * Models ([`Product`], [`Order`], [`Webhook`]) tolerate WooCommerce's type oddities and
//!   keep money in [`rust_decimal::Decimal`], sent as strings.
//! * [`webhook_signature`] signs and verifies `X-WC-Webhook-Signature`; [`oauth`] is the
//!   signing core, shared with the simulator.
//! * [`WooClient::ensure_order_webhooks`] keeps the order webhooks present and active (the
//!   change-poller's reconciliation and `syncctl webhooks ensure`).
//!
//! Every request runs in a `woo.request` tracing span with `endpoint`, `status`, `attempts`
//! and `duration_ms` fields, the hook for metrics.
#![forbid(unsafe_code)]

mod client;
pub use duellsync_woo_model::de;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod oauth;
mod order_webhooks;
mod orders;
mod products;
mod settings;
pub mod webhook_signature;
mod webhooks;

pub use client::{
    ApiVersion, AuthMode, ClientConfig, Idempotency, OAuthPlacement, ResponseLimits, RetryPolicy,
    WooClient, WooRequest, WooResponse,
};
pub use duellsync_woo_model::{
    Address, ApiError, Attribute, AttributeWrite, Batch, BatchItem, BatchResult, Category,
    CategoryCreated, Clearable, CouponLine, FeeLine, IdRef, Image, ImageWrite, LineItem,
    ManageStock, MetaData, MetaWrite, NewFeeLine, NewLineItem, NewOrder, NewShippingLine, Order,
    OrderNote, Page, Product, ProductWrite, Refund, ShippingLine, StockStatus, TaxRate, TermRef,
    BATCH_LIMIT, MAX_PER_PAGE,
};
pub use error::{Error, ErrorKind, Result};
pub use oauth::SignatureMethod;
pub use order_webhooks::{
    secret_fingerprint, EnsureReport, TopicWebhooks, WebhookHealth, ORDER_WEBHOOK_TOPICS,
};
pub use orders::{NewOrderScan, OrderQuery, NEW_ORDER_SCAN_OVERLAP};
pub use products::{
    format_gmt_cursor, CategoryQuery, OrderBy, ProductQuery, ProductScan, SortOrder,
};
pub use reqwest::Method;
pub use settings::Setting;
pub use webhooks::{NewWebhook, Webhook, WebhookUpdate};
