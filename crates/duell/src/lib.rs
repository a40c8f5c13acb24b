//! DUELL (Kasseservice) REST API client.
//!
//! [`DuellClient`] speaks every endpoint DUELL's own WooCommerce plugin and third-party clients
//! are known to use (see `/work/shared/reference/duell-api.md`, §6), plus an UNVERIFIED order
//! lookup by reference that only duell-sim is known to offer. It takes care of what DUELL's
//! API makes hard:
//!
//! - **Login**: one shared bearer token, renewed before its JWT `exp` (default margin 1 h,
//!   capped at half the token's lifetime) and once after a 401/403; concurrent callers share one
//!   login. Credentials and tokens never appear in logs, `Debug` output or errors.
//! - **Envelopes**: success is keyed on `status`; `validation_message` on a successful bulk save
//!   is a per-row partial failure ([`SaveOutcome::validation`]); `total_affected: 0` is an error.
//! - **Paging** ([`Pages`]): `start` moves by the rows received (pages are capped at 100), rows
//!   are de-duplicated by `product_id`, pages are streamed.
//! - **Rate limits**: `x-duell-ratelimit-remaining`/`-reset` are honoured before DUELL has to say
//!   429; `Retry-After` (seconds or HTTP date) after a 429.
//! - **Failures**: typed [`Error`]s whose [`Error::action`] tells the caller what to do. Reads are
//!   retried with backoff and jitter on 5xx, timeouts and empty bodies. Non-idempotent writes
//!   (orders, sales orders, stock adjustments, customer creation, product and category saves) are
//!   re-sent only when DUELL provably did nothing (connect failure, 429, refused token); after a
//!   timeout, a dropped connection, a 5xx or an unreadable answer they fail with
//!   [`Error::OutcomeUnknown`] and are never retried blindly.
//!
//! Every attempt runs in a `duell_call` tracing span with `endpoint`, `method`, `attempt`,
//! `status` and `duration_ms`.
#![forbid(unsafe_code)]

mod auth;
mod client;
mod de;
mod endpoints;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod model;
mod pacing;
mod paging;
mod query;

pub use client::{ClientConfig, ClientStats, DuellClient, ResponseLimits, DEFAULT_BASE_URL};
pub use error::{Action, Error, Result};
pub use model::*;
pub use pacing::PacingConfig;
pub use paging::Pages;
pub use query::{ProductQuery, SortOrder, StockQuery};
