//! The settings of one store (tenant): SPEC §4, plus the few choices SPEC leaves to us.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::layered::{env_overlay, one_line};
use crate::refusal::{Code, Refusal};
use crate::{ConfigError, NoKeys, Problem, Secret, Unseal};

/// Every secret of a store, by key. A key among [`RECEIVER_SECRETS`] is what a receiver
/// (webhook-ingest) verifies signatures with; the others are API credentials.
pub const SECRET_KEYS: [&str; 8] = [
    "woo.consumer_key",
    "woo.consumer_secret",
    "woo.webhook_secret",
    "woo.previous_webhook_secret",
    "duell.client_token",
    "duell.stock_department",
    "duell.order_department",
    "duell.notice_secret",
];

/// Secrets that sign or verify deliveries: webhook-ingest needs only these, every service that
/// receives or sets up webhooks and notices reads them.
pub const RECEIVER_SECRETS: [&str; 3] = [
    "woo.webhook_secret",
    "woo.previous_webhook_secret",
    "duell.notice_secret",
];

/// WooCommerce REST API version.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V2,
    #[default]
    V3,
}

/// How to authenticate to WooCommerce. `auto` = Basic over https, OAuth 1.0a over http, which is
/// what WooCommerce itself accepts.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WooAuth {
    #[default]
    Auto,
    Basic,
    Oauth1,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WooSettings {
    /// Shop address exactly as WordPress's `home` option has it (OAuth signs against it).
    pub url: String,
    #[serde(default)]
    pub api_version: ApiVersion,
    #[serde(default)]
    pub auth: WooAuth,
    #[serde(default)]
    pub consumer_key: Secret,
    #[serde(default)]
    pub consumer_secret: Secret,
    /// Secret of the webhooks we create; WooCommerce signs deliveries with it.
    #[serde(default)]
    pub webhook_secret: Secret,
    /// While the webhook secret is being rotated: the old one, still accepted by webhook-ingest
    /// until WooCommerce signs with the new one (the poller updates the webhooks' secret).
    #[serde(default)]
    pub previous_webhook_secret: Secret,
    /// Public URL of webhook-ingest for this store; WooCommerce delivers there. Empty = we do
    /// not manage webhooks (polling only).
    #[serde(default)]
    pub webhook_delivery_url: String,
    /// PEM file of a CA to trust (self-signed https stores).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Accept an `http://` shop address. Off by default: over plain http the REST keys and the
    /// webhook secret that `webhooks ensure` sends travel in clear. Only for a lab shop.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Concurrent requests to this store; shops run few PHP workers shared with shoppers.
    #[serde(default = "default_woo_concurrency")]
    pub max_concurrency: usize,
    /// How long one request may take before the client gives up (a batch create of 100
    /// products takes ~20 s on a real store). The catalogue publisher settles a write whose
    /// answer was lost only after this and its own `settle_after` have passed.
    #[serde(default = "default_woo_timeout", with = "crate::duration")]
    pub request_timeout: std::time::Duration,
}

fn default_woo_concurrency() -> usize {
    4
}

fn default_woo_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DuellSettings {
    #[serde(default = "default_duell_url")]
    pub url: String,
    /// Six digits, may start with 0: written as a string.
    #[serde(default)]
    pub client_number: String,
    #[serde(default)]
    pub client_token: Secret,
    /// Department token whose stock is published to WooCommerce.
    #[serde(default)]
    pub stock_department: Secret,
    /// Department token web orders are created in. DUELL draws a customer order's units from
    /// the department it is saved in, so this is the stock department unless set (a different
    /// department makes sold units come back to the web shop when DUELL draws the order; see
    /// docs/order-importer.md, "Departments").
    #[serde(default)]
    pub order_department: Secret,
    /// Use the order lookup by reference that the DUELL simulator offers but DUELL's reference
    /// does not document, to settle an import whose outcome is unknown after a crash. Off by
    /// default: without it such an import is flagged in doubt for an operator.
    #[serde(default)]
    pub order_lookup: bool,
    /// Secret that signs change notices pushed to webhook-ingest (`X-Duellsync-Signature`,
    /// base64 HMAC-SHA256 of the body). Unset = the notice endpoint refuses this store.
    #[serde(default)]
    pub notice_secret: Secret,
}

fn default_duell_url() -> String {
    "https://api.kasseservice.no/v1/".to_owned()
}

/// What happens in WooCommerce to a product DUELL no longer shows in the web shop.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HiddenAction {
    #[default]
    Draft,
    Private,
    Trash,
}

impl HiddenAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HiddenAction::Draft => "draft",
            HiddenAction::Private => "private",
            HiddenAction::Trash => "trash",
        }
    }
}

/// Status of products the engine creates in WooCommerce.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NewProductStatus {
    #[default]
    Publish,
    Draft,
    Pending,
    Private,
}

impl NewProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NewProductStatus::Publish => "publish",
            NewProductStatus::Draft => "draft",
            NewProductStatus::Pending => "pending",
            NewProductStatus::Private => "private",
        }
    }
}

/// Which DUELL stock field is published (reference open question 7: which one nets
/// reservations is unknown).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StockSource {
    #[default]
    Stock,
    ActualStock,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StockSettings {
    pub source: StockSource,
    /// Subtract imported customer orders whose stock DUELL has not drawn yet. Turn off only when
    /// `source` is a field that already nets reservations.
    pub subtract_undrawn_customer_orders: bool,
    /// DUELL customer-order statuses at which DUELL has drawn the stock (packing slip made):
    /// 3 Sendt, 4 Mottatt, 5 Fullført, 6 Fakturert, 7 Betalt, 11 Ferdig plukket.
    pub drawn_statuses: Vec<i32>,
    /// Status that cancels a customer order (its hold is released): 8 Kansellert.
    pub cancelled_statuses: Vec<i32>,
}

impl Default for StockSettings {
    fn default() -> Self {
        StockSettings {
            source: StockSource::Stock,
            subtract_undrawn_customer_orders: true,
            drawn_statuses: vec![3, 4, 5, 6, 7, 11],
            cancelled_statuses: vec![8],
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// DUELL status a new customer order gets (1 Behandles).
    pub initial_status: i32,
    /// Phone of the shared customer used when an order has neither phone nor e-mail.
    pub placeholder_phone: String,
    pub shipping_product_number: String,
    pub fee_product_number: String,
    /// DUELL category for products created from unknown order lines.
    pub missing_product_category: String,
    /// Largest difference between the sum of mapped lines and the Woo total we accept as
    /// rounding.
    pub total_tolerance: String,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            initial_status: 1,
            placeholder_phone: "99999999".to_owned(),
            shipping_product_number: "SHIPPING".to_owned(),
            fee_product_number: "FEE".to_owned(),
            missing_product_category: "DIVERSE".to_owned(),
            total_tolerance: "0.05".to_owned(),
        }
    }
}

/// One store's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Store id: lowercase letters, digits, `-`, `_` (used in subjects and names).
    #[serde(default)]
    pub id: String,
    /// The shard whose services serve this store (`DUELLSYNC_SHARD` of their pods); empty =
    /// the instances that serve every store. Moving a store is changing this key.
    #[serde(default)]
    pub shard: String,
    pub woo: WooSettings,
    pub duell: DuellSettings,

    #[serde(default = "yes")]
    pub automatic: bool,
    #[serde(default = "yes")]
    pub create_products: bool,
    #[serde(default = "yes")]
    pub update_products: bool,
    #[serde(default = "yes")]
    pub sync_prices: bool,
    #[serde(default = "yes")]
    pub sync_stock: bool,
    #[serde(default = "yes")]
    pub sync_images: bool,
    #[serde(default = "yes")]
    pub sync_new_categories: bool,
    #[serde(default = "yes")]
    pub sync_attributes: bool,
    #[serde(default)]
    pub new_product_status: NewProductStatus,
    #[serde(default)]
    pub hidden_product_action: HiddenAction,

    #[serde(default = "yes")]
    pub sync_orders: bool,
    #[serde(default = "yes")]
    pub create_customer_order: bool,
    #[serde(default)]
    pub deduct_stock: bool,
    #[serde(default)]
    pub create_missing_products: bool,
    /// Orders created before this UTC date/time are never imported ("2026-01-31" or RFC 3339).
    #[serde(default)]
    pub orders_from_date: Option<String>,
    #[serde(default)]
    pub orders_from_number: Option<i64>,
    #[serde(default = "default_fetch_statuses")]
    pub fetch_statuses: Vec<String>,
    #[serde(default)]
    pub status_after_import: Option<String>,
    /// DUELL customer-order status id → WooCommerce status.
    #[serde(default = "default_status_map")]
    pub status_map: BTreeMap<String, String>,
    /// VAT rate in percent (`"15"`, `"12.5"`) → the slug of the WooCommerce tax class that
    /// carries it (`""` = the standard class). Each product gets the class of its DUELL VAT rate
    /// when it is created and when the rate changes. Left empty (the default), the classes are
    /// read from the shop's tax tables: the class whose rate in the shop's base country equals
    /// the product's VAT, the standard class first. Set a rate here when two classes carry it
    /// or the tables cannot say.
    #[serde(default)]
    pub tax_classes: BTreeMap<String, String>,

    #[serde(default = "default_reconcile", with = "crate::duration")]
    pub reconcile_interval: Duration,
    #[serde(default = "default_poll", with = "crate::duration")]
    pub poll_interval: Duration,
    /// How often the stock of the stock department is scanned for changes.
    #[serde(default = "default_stock_poll", with = "crate::duration")]
    pub stock_poll_interval: Duration,

    /// The time zone DUELL's local date-times are in (campaign start and end), as an IANA name
    /// (`Europe/Oslo`, `Europe/Stockholm`, `UTC`). DUELL sends them without an offset; they are
    /// converted with the zone's daylight-saving rules.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,

    #[serde(default)]
    pub stock: StockSettings,
    #[serde(default)]
    pub orders: OrderSettings,
}

impl StoreSettings {
    /// The store's time zone ([`StoreSettings::time_zone`]); UTC if the name is unknown (which
    /// validation refuses, so only unvalidated settings get there).
    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

fn yes() -> bool {
    true
}
fn default_fetch_statuses() -> Vec<String> {
    vec!["processing".to_owned()]
}
/// Whether `k` is a percent (digits, at most 4 decimals): `Some(in 0..=100)`, `None` if it is
/// not a number.
fn vat_percent(k: &str) -> Option<bool> {
    let k = k.trim();
    let (int, frac) = k.split_once('.').unwrap_or((k, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if int.is_empty()
        || int.len() > 3
        || !digits(int)
        || frac.len() > 4
        || !digits(frac)
        || k.ends_with('.')
    {
        return None;
    }
    let whole: u32 = int.parse().ok()?;
    Some(whole < 100 || (whole == 100 && frac.chars().all(|c| c == '0')))
}

fn default_status_map() -> BTreeMap<String, String> {
    BTreeMap::from([("5".to_owned(), "completed".to_owned())])
}
fn default_reconcile() -> Duration {
    Duration::from_secs(40 * 60)
}
fn default_poll() -> Duration {
    Duration::from_secs(30)
}
fn default_time_zone() -> String {
    "Europe/Oslo".to_owned()
}
fn default_stock_poll() -> Duration {
    Duration::from_secs(30)
}

/// Order statuses WooCommerce core knows; plugins may add more (17-character slugs).
pub const WOO_CORE_STATUSES: [&str; 7] = [
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
];

fn valid_status_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 17
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl StoreSettings {
    /// The status map as numbers → status, after validation.
    pub fn status_map(&self) -> BTreeMap<i32, String> {
        self.status_map
            .iter()
            .filter_map(|(k, v)| k.trim().parse::<i32>().ok().map(|k| (k, v.clone())))
            .collect()
    }

    /// `orders_from_date` as Unix seconds (UTC), after validation.
    pub fn orders_from_unix(&self) -> Option<i64> {
        self.orders_from_date
            .as_deref()
            .and_then(|s| parse_from_date(s).ok())
    }

    /// Reads secrets from the environment and files, then checks every rule. Returns all
    /// problems at once, each naming the key, the value and the fix.
    pub fn resolve_and_validate(
        &mut self,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Problem> {
        self.resolve_and_validate_for(origin, env, Needs::ALL)
    }

    /// Like [`StoreSettings::resolve_and_validate`], resolving only the secrets a service uses
    /// (webhook-ingest needs no API credentials, so its pods need not hold them).
    pub fn resolve_and_validate_for(
        &mut self,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
        needs: Needs,
    ) -> Vec<Problem> {
        self.resolve_and_validate_with(origin, env, &NoKeys, needs)
    }

    /// Like [`StoreSettings::resolve_and_validate_for`], opening sealed secrets with `unseal`.
    pub fn resolve_and_validate_with(
        &mut self,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
        unseal: &dyn Unseal,
        needs: Needs,
    ) -> Vec<Problem> {
        self.refusals(env, unseal, needs)
            .iter()
            .map(|r| r.problem(origin))
            .collect()
    }

    /// Reads the secrets a service with `needs` uses and checks every rule: the one place the
    /// rules live. Each refusal is machine-readable (code, key, value, limits) so that a page can
    /// word it in its reader's language; its `message` is the English text for logs and files.
    pub fn refusals(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        unseal: &dyn Unseal,
        needs: Needs,
    ) -> Vec<Refusal> {
        let mut out = Vec::new();
        let store_id = self.id.clone();
        let aad = |key: &str| format!("{store_id}/{key}");
        let mut p = |r: Refusal| out.push(r);

        if !duellsync_events::is_valid_store_id(&self.id) {
            p(Refusal::new(
                Code::StoreId,
                "id",
                &self.id,
                format!(
                    "`{}` is not a valid store id; use 1-32 lowercase letters, digits, '-' or '_'",
                    self.id
                ),
            ));
        }

        if self.woo.request_timeout < Duration::from_secs(1)
            || self.woo.request_timeout > Duration::from_secs(600)
        {
            let v = crate::duration::format(self.woo.request_timeout);
            p(Refusal::new(
                Code::OutOfRange,
                "woo.request_timeout",
                &v,
                format!("`{v}` is out of range; use 1s to 10min, e.g. \"30s\""),
            )
            .limits(Some("1s"), Some("10m")));
        }
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            let v: String = self.time_zone.chars().take(64).collect();
            p(Refusal::new(
                Code::TimeZone,
                "time_zone",
                &v,
                format!(
                    "`{v}` is not an IANA time zone name; write the zone DUELL's dates are in, e.g. \"Europe/Oslo\""
                ),
            ));
        }

        match url::Url::parse(&self.woo.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                if self.woo.auth == WooAuth::Basic && u.scheme() == "http" {
                    p(Refusal::new(
                        Code::BasicOverHttp,
                        "woo.auth",
                        "basic",
                        "`basic` over plain http is ignored by WooCommerce (it answers 401); use `auto` or `oauth1`".into(),
                    ));
                }
                if u.scheme() == "http" && !self.woo.allow_insecure_http {
                    p(Refusal::new(
                        Code::PlainHttp,
                        "woo.url",
                        &self.woo.url,
                        format!(
                            "`{}` is plain http: the REST keys and the webhook secret would travel in clear; use the shop's https address, or set woo.allow_insecure_http = true for a lab shop",
                            self.woo.url
                        ),
                    ));
                }
            }
            _ => p(Refusal::new(
                Code::NotAUrl,
                "woo.url",
                &self.woo.url,
                format!(
                    "`{}` is not an http(s) URL; write the shop address, e.g. \"https://shop.example.com\"",
                    self.woo.url
                ),
            )),
        }
        // Left out, the order department is the stock department (filled in below).
        let order_department_given = !matches!(
            self.duell.order_department.source(),
            crate::SecretSource::Missing
        );
        for (key, secret, needed) in [
            ("woo.consumer_key", &mut self.woo.consumer_key, needs.api),
            (
                "woo.consumer_secret",
                &mut self.woo.consumer_secret,
                needs.api,
            ),
            (
                "duell.client_token",
                &mut self.duell.client_token,
                needs.api,
            ),
            (
                "duell.stock_department",
                &mut self.duell.stock_department,
                needs.api,
            ),
            (
                "duell.order_department",
                &mut self.duell.order_department,
                needs.api && order_department_given,
            ),
        ] {
            if !needed {
                continue;
            }
            if let Err(e) = secret.resolve_with(env, unseal, &aad(key), needs.references) {
                p(Refusal::secret(key, e));
            }
        }
        if !order_department_given {
            // Orders go to the department whose stock the web shop sells.
            self.duell.order_department = self.duell.stock_department.clone();
        }
        if self.sync_orders || !self.woo.webhook_delivery_url.is_empty() {
            match self.woo.webhook_secret.resolve_with(
                env,
                unseal,
                &aad("woo.webhook_secret"),
                needs.references,
            ) {
                Err(e) if !self.woo.webhook_delivery_url.is_empty() => {
                    p(Refusal::secret("woo.webhook_secret", e))
                }
                _ => {}
            }
        }
        // Optional receiver secrets: resolved (and so required) only when the record names them.
        for (key, secret) in [
            ("duell.notice_secret", &mut self.duell.notice_secret),
            (
                "woo.previous_webhook_secret",
                &mut self.woo.previous_webhook_secret,
            ),
        ] {
            if !matches!(secret.source(), crate::SecretSource::Missing) {
                if let Err(e) = secret.resolve_with(env, unseal, &aad(key), needs.references) {
                    p(Refusal::secret(key, e));
                }
            }
        }
        if !self.shard.is_empty() && !duellsync_events::is_valid_store_id(&self.shard) {
            p(Refusal::new(
                Code::Shard,
                "shard",
                &self.shard,
                format!(
                    "`{}` is not a shard name; use 1-32 lowercase letters, digits, '-' or '_', or leave it out",
                    self.shard
                ),
            ));
        }
        if self.woo.webhook_secret.is_set()
            && !self
                .woo
                .webhook_secret
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            // The value is a secret: never in a refusal.
            p(Refusal::new(Code::SecretCharacters, "woo.webhook_secret", "", "use only letters, digits, '-' and '_': WooCommerce HTML-decodes the secret before signing, so '&' and friends break signatures".into()));
        }
        if !self.woo.webhook_delivery_url.is_empty()
            && url::Url::parse(&self.woo.webhook_delivery_url).is_err()
        {
            p(Refusal::new(
                Code::NotAUrl,
                "woo.webhook_delivery_url",
                &self.woo.webhook_delivery_url,
                format!(
                    "`{}` is not a URL; write the public address of webhook-ingest for this store",
                    self.woo.webhook_delivery_url
                ),
            ));
        }
        if self.woo.max_concurrency == 0 || self.woo.max_concurrency > 32 {
            p(Refusal::new(
                Code::OutOfRange,
                "woo.max_concurrency",
                &self.woo.max_concurrency.to_string(),
                format!("{} is out of range; use 1 to 32", self.woo.max_concurrency),
            )
            .limits(Some("1"), Some("32")));
        }

        if self.duell.client_number.len() != 6
            || !self.duell.client_number.bytes().all(|b| b.is_ascii_digit())
        {
            p(Refusal::new(
                Code::ClientNumber,
                "duell.client_number",
                &self.duell.client_number,
                format!(
                    "`{}` is not the 6-digit DUELL client number; copy it from DUELL (API-oppsett) and quote it so a leading 0 is kept",
                    self.duell.client_number
                ),
            ));
        }
        for (key, secret) in [
            ("duell.client_token", &self.duell.client_token),
            ("duell.stock_department", &self.duell.stock_department),
            ("duell.order_department", &self.duell.order_department),
        ] {
            if secret.is_set() && secret.expose().len() <= 30 {
                p(Refusal::new(Code::TokenTooShort, key, "", "is too short for a DUELL token (they are longer than 30 characters); copy the whole token".into()).limits(Some("31"), None));
            }
        }
        if url::Url::parse(&self.duell.url).is_err() {
            p(Refusal::new(
                Code::NotAUrl,
                "duell.url",
                &self.duell.url,
                format!(
                    "`{}` is not a URL; the default is https://api.kasseservice.no/v1/",
                    self.duell.url
                ),
            ));
        }

        if self.deduct_stock && self.create_customer_order {
            p(Refusal::new(Code::DeductStockWithCustomerOrder, "deduct_stock", "true", "`true` together with create_customer_order = true would take the stock twice (the customer order reserves it); set create_customer_order = false to deduct stock, or deduct_stock = false".into()));
        }
        if let Some(d) = &self.orders_from_date {
            if let Err(e) = parse_from_date(d) {
                p(Refusal::new(Code::NotADate, "orders_from_date", d, e));
            }
        }
        if let Some(n) = self.orders_from_number {
            if n < 0 {
                p(Refusal::new(
                    Code::OutOfRange,
                    "orders_from_number",
                    &n.to_string(),
                    format!("{n} is negative; use a WooCommerce order number"),
                )
                .limits(Some("0"), None));
            }
        }
        if self.fetch_statuses.is_empty() {
            p(Refusal::new(
                Code::Empty,
                "fetch_statuses",
                "",
                "is empty, so no order would ever be imported; the default is [\"processing\"]"
                    .into(),
            ));
        }
        for s in &self.fetch_statuses {
            if !valid_status_slug(s) {
                p(Refusal::new(Code::NotAWooStatus, "fetch_statuses", s, format!("`{s}` is not a WooCommerce order status; use e.g. \"processing\" or \"on-hold\"")));
            }
        }
        if let Some(s) = &self.status_after_import {
            if !valid_status_slug(s) {
                p(Refusal::new(Code::NotAWooStatus, "status_after_import", s, format!("`{s}` is not a WooCommerce order status; use e.g. \"on-hold\", or leave it out")));
            }
        }
        for (k, v) in &self.status_map {
            match k.trim().parse::<i32>() {
                Ok(n) if (1..=11).contains(&n) => {}
                _ => p(Refusal::new(
                    Code::NotADuellStatus,
                    "status_map",
                    k,
                    format!("key `{k}` is not a DUELL customer-order status; use 1 to 11 (5 = Fullført)"),
                )
                .limits(Some("1"), Some("11"))),
            }
            if !valid_status_slug(v) {
                p(Refusal::new(
                    Code::NotAWooStatus,
                    "status_map",
                    v,
                    format!(
                        "`{v}` (for {k}) is not a WooCommerce order status; use e.g. \"completed\""
                    ),
                ));
            }
        }
        for (k, v) in &self.tax_classes {
            match vat_percent(k) {
                Some(true) => {}
                Some(false) => p(Refusal::new(
                    Code::OutOfRange,
                    "tax_classes",
                    k,
                    format!("key `{k}` is not a VAT rate; use a percent from 0 to 100, e.g. \"15\""),
                )
                .limits(Some("0"), Some("100"))),
                None => p(Refusal::new(
                    Code::NotADecimal,
                    "tax_classes",
                    k,
                    format!("key `{k}` is not a VAT rate; write the percent as a number, e.g. \"15\" or \"12.5\""),
                )),
            }
            if !v
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                p(Refusal::new(
                    Code::Format,
                    "tax_classes",
                    v,
                    format!("`{v}` (for {k} %) is not a tax class slug; use the slug WooCommerce shows, e.g. \"reduced-rate\", or \"\" for the standard class"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in self
            .status_map
            .keys()
            .filter_map(|k| k.trim().parse::<i32>().ok())
        {
            if !seen.insert(n) {
                p(Refusal::new(
                    Code::Duplicate,
                    "status_map",
                    &n.to_string(),
                    format!("DUELL status {n} is mapped twice; keep one entry for it"),
                ));
            }
        }
        if self.reconcile_interval < Duration::from_secs(60) {
            let v = crate::duration::format(self.reconcile_interval);
            p(Refusal::new(
                Code::OutOfRange,
                "reconcile_interval",
                &v,
                format!("{v} is too short; use at least \"1m\" (the default is \"40m\")"),
            )
            .limits(Some("1m"), None));
        }
        for (key, d) in [
            ("poll_interval", self.poll_interval),
            ("stock_poll_interval", self.stock_poll_interval),
        ] {
            // Sub-second polls are for tests and stores without change notices; DUELL's
            // rate-limit headers still pace the client.
            if d < Duration::from_millis(100) {
                let v = crate::duration::format(d);
                p(Refusal::new(
                    Code::OutOfRange,
                    key,
                    &v,
                    format!("{v} is too short; use at least \"100ms\" (the default is \"30s\")"),
                )
                .limits(Some("100ms"), None));
            }
        }
        for (key, statuses) in [
            ("stock.drawn_statuses", &self.stock.drawn_statuses[..]),
            (
                "stock.cancelled_statuses",
                &self.stock.cancelled_statuses[..],
            ),
            (
                "orders.initial_status",
                std::slice::from_ref(&self.orders.initial_status),
            ),
        ] {
            for s in statuses {
                if !(1..=11).contains(s) {
                    p(Refusal::new(
                        Code::NotADuellStatus,
                        key,
                        &s.to_string(),
                        format!("{s} is not a DUELL customer-order status; use 1 to 11"),
                    )
                    .limits(Some("1"), Some("11")));
                }
            }
        }
        if !is_plain_decimal(&self.orders.total_tolerance) {
            p(Refusal::new(
                Code::NotADecimal,
                "orders.total_tolerance",
                &self.orders.total_tolerance,
                format!(
                    "`{}` is not a number; use e.g. \"0.05\"",
                    self.orders.total_tolerance
                ),
            ));
        }
        out
    }

    /// Literal secrets in the file (allowed for demos; production keeps them in Secrets).
    pub fn literal_secrets(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (key, s) in [
            ("woo.consumer_key", &self.woo.consumer_key),
            ("woo.consumer_secret", &self.woo.consumer_secret),
            ("woo.webhook_secret", &self.woo.webhook_secret),
            (
                "woo.previous_webhook_secret",
                &self.woo.previous_webhook_secret,
            ),
            ("duell.client_token", &self.duell.client_token),
            ("duell.stock_department", &self.duell.stock_department),
            ("duell.order_department", &self.duell.order_department),
            ("duell.notice_secret", &self.duell.notice_secret),
        ] {
            if s.is_literal() {
                out.push(key);
            }
        }
        out
    }

    /// Every secret value, for tests that check logs never contain them.
    pub fn secret_values(&self) -> Vec<String> {
        [
            &self.woo.consumer_key,
            &self.woo.consumer_secret,
            &self.woo.webhook_secret,
            &self.woo.previous_webhook_secret,
            &self.duell.client_token,
            &self.duell.stock_department,
            &self.duell.order_department,
            &self.duell.notice_secret,
        ]
        .iter()
        .filter(|s| s.is_set())
        .map(|s| s.expose().to_owned())
        .collect()
    }
}

fn is_plain_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("0");
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn parse_from_date(s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, &fmt) {
        Ok(d) => Ok(d.midnight().assume_utc().unix_timestamp()),
        Err(_) => Err(format!(
            "`{s}` is not a date; write \"2026-01-31\" or \"2026-01-31T08:00:00Z\" (UTC)"
        )),
    }
}

/// Which secrets a service resolves (and so requires) from the store files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// WooCommerce and DUELL API credentials and department tokens.
    pub api: bool,
    /// Read `{ env }` and `{ file }` secrets; false = only check that they name a source (the
    /// registry validating a record it stores for other processes).
    pub references: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        api: true,
        references: true,
    };
    /// The webhook and change-notice secrets only (webhook-ingest).
    pub const RECEIVER: Needs = Needs {
        api: false,
        references: true,
    };
    /// Every secret checked, references not read (validation at save time).
    pub const RECORD: Needs = Needs {
        api: true,
        references: false,
    };

    /// The store settings keys of the secrets a service with these needs reads. The deployment
    /// gives a workload exactly these keys of a store's Secret (`scripts/validate-deploy`
    /// checks it against this list).
    pub fn secret_keys(self) -> Vec<&'static str> {
        let mut keys = RECEIVER_SECRETS.to_vec();
        if self.api {
            keys.extend(API_SECRETS);
        }
        keys
    }
}

/// Credentials of the WooCommerce and DUELL APIs: only the services that call them read them.
pub const API_SECRETS: [&str; 5] = [
    "woo.consumer_key",
    "woo.consumer_secret",
    "duell.client_token",
    "duell.stock_department",
    "duell.order_department",
];

/// All stores of a deployment, by id.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    pub stores: BTreeMap<String, StoreSettings>,
    /// Non-fatal remarks (literal secrets in files).
    pub warnings: Vec<String>,
}

impl Stores {
    pub fn get(&self, id: &str) -> Option<&StoreSettings> {
        self.stores.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(|s| s.as_str())
    }

    /// Keeps only `ids` (a shard); unknown ids are an error.
    pub fn select(mut self, ids: &[String]) -> Result<Stores, ConfigError> {
        if ids.is_empty() {
            return Ok(self);
        }
        let unknown: Vec<&String> = ids
            .iter()
            .filter(|i| !self.stores.contains_key(*i))
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::one(
                "stores",
                format!(
                    "this shard lists {unknown:?}, which no store file defines; known stores: {:?}",
                    self.stores.keys().collect::<Vec<_>>()
                ),
            ));
        }
        self.stores.retain(|k, _| ids.contains(k));
        Ok(self)
    }
}

/// Loads stores from `path`: a directory of `<id>.toml` files, a single-store file (its id is
/// the file name unless it sets `id`), or a file with `[stores.<id>]` tables. `env` supplies
/// `DUELLSYNC_STORES__<ID>__…` overrides and the variables secrets refer to.
pub fn load_stores(path: &Path, env: &[(String, String)]) -> Result<Stores, ConfigError> {
    load_stores_for(path, env, Needs::ALL)
}

/// Like [`load_stores`], resolving only the secrets `needs` names.
pub fn load_stores_for(
    path: &Path,
    env: &[(String, String)],
    needs: Needs,
) -> Result<Stores, ConfigError> {
    let mut raw = RawStores::new();
    let read = |p: &Path| -> Result<toml::Table, ConfigError> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| ConfigError::one(p.display().to_string(), format!("cannot read: {e}")))?;
        text.parse::<toml::Table>()
            .map_err(|e| ConfigError::one(p.display().to_string(), one_line(&e.to_string())))
    };
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().map(|e| e == "toml").unwrap_or(false))
            .collect();
        entries.sort();
        for p in entries {
            let table = read(&p)?;
            let id = table
                .get("id")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| stem(&p));
            raw.insert(id, (p.display().to_string(), table));
        }
    } else {
        let table = read(path)?;
        raw = file_stores(&path.display().to_string(), &stem(path), table)?;
    }
    finish_stores(&path.display().to_string(), raw, env, needs)
}

/// Parses and validates the stores of one store file's text, as [`load_stores_for`] does for a
/// file: a single store (named `default_id` unless it sets `id`) or `[stores.<id>]` tables,
/// then `DUELLSYNC_STORES__…` overrides from `env`, then every rule. Reads nothing but the
/// secret files the text names.
pub fn parse_stores(
    origin: &str,
    default_id: &str,
    text: &str,
    env: &[(String, String)],
    needs: Needs,
) -> Result<Stores, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::one(origin, one_line(&e.to_string())))?;
    let raw = file_stores(origin, default_id, table)?;
    finish_stores(origin, raw, env, needs)
}

/// Like [`parse_stores`], opening sealed secrets with `unseal`: how a store registry record is
/// read (by the services) and validated (at save time, with [`Needs::RECORD`]).
pub fn parse_stores_with(
    origin: &str,
    default_id: &str,
    text: &str,
    env: &[(String, String)],
    needs: Needs,
    unseal: &dyn Unseal,
) -> Result<Stores, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::one(origin, one_line(&e.to_string())))?;
    let raw = file_stores(origin, default_id, table)?;
    finish_stores_with(origin, raw, env, needs, unseal)
}

type RawStores = BTreeMap<String, (String, toml::Table)>;

/// The stores of one file's table, by id, each with where it came from.
fn file_stores(
    origin: &str,
    default_id: &str,
    mut table: toml::Table,
) -> Result<RawStores, ConfigError> {
    let mut raw = RawStores::new();
    if let Some(stores) = table.remove("stores") {
        let toml::Value::Table(stores) = stores else {
            return Err(ConfigError::one(
                origin,
                "`stores` must be a table of [stores.<id>] sections",
            ));
        };
        if !table.is_empty() {
            return Err(ConfigError::one(
                origin,
                format!(
                    "unexpected top-level keys {:?} next to [stores.*]; move them into a store",
                    table.keys().collect::<Vec<_>>()
                ),
            ));
        }
        for (id, v) in stores {
            let toml::Value::Table(t) = v else {
                return Err(ConfigError::one(
                    format!("{origin}: stores.{id}"),
                    "must be a table",
                ));
            };
            raw.insert(id.clone(), (format!("{origin}: stores.{id}"), t));
        }
    } else {
        let id = table
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| default_id.to_owned());
        raw.insert(id, (origin.to_owned(), table));
    }
    Ok(raw)
}

/// Applies the environment overrides to the raw stores, then types and validates each.
fn finish_stores(
    origin: &str,
    raw: RawStores,
    env: &[(String, String)],
    needs: Needs,
) -> Result<Stores, ConfigError> {
    finish_stores_with(origin, raw, env, needs, &NoKeys)
}

fn finish_stores_with(
    origin: &str,
    mut raw: RawStores,
    env: &[(String, String)],
    needs: Needs,
    unseal: &dyn Unseal,
) -> Result<Stores, ConfigError> {
    // Environment overrides, keyed by store id.
    let mut overlay_root = toml::Table::new();
    env_overlay(&mut overlay_root, "DUELLSYNC_STORES__", env);
    for (id, over) in overlay_root {
        if let (Some((_, table)), toml::Value::Table(over)) = (raw.get_mut(&id), over) {
            merge(table, over);
        }
    }

    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut out = Stores::default();
    let mut problems = Vec::new();
    if raw.is_empty() {
        problems.push(Problem {
            key: origin.to_owned(),
            message: "defines no store; add a file per store or [stores.<id>] sections".into(),
        });
    }
    for (id, (origin, table)) in raw {
        let mut store: StoreSettings = match toml::Value::Table(table).try_into() {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem {
                    key: origin,
                    message: one_line(&e.to_string()),
                });
                continue;
            }
        };
        if store.id.is_empty() {
            store.id = id.clone();
        } else if store.id != id {
            problems.push(Problem {
                key: format!("{origin}: id"),
                message: format!(
                    "`{}` differs from the store's name `{id}`; make them equal",
                    store.id
                ),
            });
        }
        problems.extend(store.resolve_and_validate_with(&origin, &lookup, unseal, needs));
        for key in store.literal_secrets() {
            out.warnings.push(format!(
                "{origin}: {key} is written in the file; keep secrets in {{ env = \"…\" }} or {{ file = \"…\" }}"
            ));
        }
        out.stores.insert(id, store);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError { problems })
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn minimal(id: &str) -> String {
        format!(
            r#"
id = "{id}"
[woo]
url = "https://shop.test"
consumer_key = {{ env = "CK" }}
consumer_secret = {{ env = "CS" }}
webhook_secret = {{ env = "WS" }}
[duell]
client_number = "012345"
client_token = {{ env = "DT" }}
stock_department = {{ env = "SD" }}
order_department = {{ env = "OD" }}
"#
        )
    }

    fn env() -> Vec<(String, String)> {
        [
            ("CK", "ck_1"),
            ("CS", "cs_1"),
            ("WS", "hooksecret1"),
            ("DT", TOKEN),
            ("SD", TOKEN),
            ("OD", TOKEN),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_left_out_order_department_is_the_stock_department() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace("order_department = { env = \"OD\" }\n", "");
        assert!(!text.contains("order_department"));
        let p = write(dir.path(), "s1.toml", &text);
        let mut env = env();
        env.retain(|(k, _)| k != "OD" && k != "SD");
        env.push(("SD".into(), format!("{TOKEN}-stock")));
        let stores = load_stores(&p, &env).unwrap();
        let d = &stores.get("s1").unwrap().duell;
        assert_eq!(d.order_department.expose(), format!("{TOKEN}-stock"));
        // Set, it is its own.
        let p = write(dir.path(), "s1.toml", &minimal("s1"));
        env.push(("OD".into(), format!("{TOKEN}-order")));
        let stores = load_stores(&p, &env).unwrap();
        let d = &stores.get("s1").unwrap().duell;
        assert_eq!(d.order_department.expose(), format!("{TOKEN}-order"));
        assert_eq!(d.stock_department.expose(), format!("{TOKEN}-stock"));
    }

    #[test]
    fn defaults_follow_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s1.toml", &minimal("s1"));
        let stores = load_stores(&p, &env()).unwrap();
        let s = stores.get("s1").unwrap();
        assert!(s.automatic && s.create_products && s.update_products && s.sync_prices);
        assert!(s.sync_stock && s.sync_images && s.sync_new_categories && s.sync_attributes);
        assert_eq!(s.new_product_status, NewProductStatus::Publish);
        assert_eq!(s.hidden_product_action, HiddenAction::Draft);
        assert!(s.sync_orders && s.create_customer_order);
        assert!(!s.deduct_stock && !s.create_missing_products);
        assert_eq!(s.fetch_statuses, vec!["processing"]);
        assert_eq!(
            s.status_map(),
            BTreeMap::from([(5, "completed".to_owned())])
        );
        assert_eq!(s.reconcile_interval, Duration::from_secs(2400));
        assert_eq!(s.poll_interval, Duration::from_secs(30));
        assert_eq!(s.woo.api_version, ApiVersion::V3);
        assert_eq!(s.woo.consumer_secret.expose(), "cs_1");
        assert_eq!(s.duell.client_number, "012345");
        assert_eq!(s.time_zone, "Europe/Oslo");
        assert_eq!(s.woo.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_time_zone_must_be_an_iana_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace("[woo]", "time_zone = \"Europe/Stockholm\"\n[woo]");
        let p = write(dir.path(), "s1.toml", &text);
        let stores = load_stores(&p, &env()).unwrap();
        assert_eq!(
            stores.get("s1").unwrap().tz().iana_name(),
            Some("Europe/Stockholm")
        );
        let text = minimal("s1").replace("[woo]", "time_zone = \"CET+1\"\n[woo]");
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err().to_string();
        assert!(err.contains("time_zone"), "{err}");
        assert!(err.contains("Europe/Oslo"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s1.toml", &minimal("s1"));
        let stores = load_stores(&p, &env()).unwrap();
        let dbg = format!("{:?}", stores.get("s1").unwrap());
        assert!(!dbg.contains("cs_1") && !dbg.contains(TOKEN), "{dbg}");
        let lit = Secret::literal("hunter2");
        assert!(!format!("{lit:?}").contains("hunter2"));
    }

    #[test]
    fn deduct_stock_with_customer_orders_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace("[woo]", "deduct_stock = true\n[woo]");
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err().to_string();
        assert!(err.contains("deduct_stock"), "{err}");
        assert!(err.contains("create_customer_order = false"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace("[woo]", "sync_pricez = true\n[woo]");
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err().to_string();
        assert!(err.contains("sync_pricez"), "{err}");

        let text = minimal("s1").replace("[woo]", "hidden_product_action = \"delete\"\n[woo]");
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err().to_string();
        assert!(err.contains("delete") && err.contains("trash"), "{err}");
    }

    #[test]
    fn a_plain_http_shop_is_refused_unless_the_store_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let http = minimal("s1").replace("https://shop.test", "http://shop.test");
        let p = write(dir.path(), "s1.toml", &http);
        let err = load_stores(&p, &env()).unwrap_err();
        let problem = err
            .problems
            .iter()
            .find(|p| p.key.ends_with("woo.url"))
            .unwrap_or_else(|| panic!("no woo.url problem in {err}"));
        assert!(
            problem.message.contains("woo.allow_insecure_http = true"),
            "{problem}"
        );
        let lab = http.replace("[woo]", "[woo]\nallow_insecure_http = true");
        let p = write(dir.path(), "s1.toml", &lab);
        let stores = load_stores(&p, &env()).unwrap();
        assert!(stores.get("s1").unwrap().woo.allow_insecure_http);
    }

    #[test]
    fn tax_classes_map_vat_rates_to_class_slugs() {
        let dir = tempfile::tempdir().unwrap();
        let good = minimal("s1").replacen(
            "[woo]",
            "tax_classes = { \"15\" = \"food\", \"12.5\" = \"reduced-rate\", \"25\" = \"\" }\n[woo]",
            1,
        );
        let p = write(dir.path(), "s1.toml", &good);
        let stores = load_stores(&p, &env()).unwrap();
        assert_eq!(
            stores
                .get("s1")
                .unwrap()
                .tax_classes
                .get("15")
                .map(String::as_str),
            Some("food")
        );
        for (bad, key) in [
            ("\"fifteen\" = \"food\"", "fifteen"),
            ("\"101\" = \"food\"", "101"),
            ("\"15\" = \"Food Class\"", "Food Class"),
        ] {
            let text =
                minimal("s1").replacen("[woo]", &format!("tax_classes = {{ {bad} }}\n[woo]"), 1);
            let p = write(dir.path(), "s1.toml", &text);
            let err = load_stores(&p, &env()).unwrap_err().to_string();
            assert!(
                err.contains("tax_classes") && err.contains(key),
                "{bad}: {err}"
            );
        }
        assert_eq!(vat_percent("100.00"), Some(true));
        assert_eq!(vat_percent("100.5"), Some(false));
        assert_eq!(vat_percent("0"), Some(true));
        assert_eq!(vat_percent("15."), None);
        assert_eq!(vat_percent("-1"), None);
    }

    #[test]
    fn the_previous_webhook_secret_is_read_from_where_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace(
            "[woo]",
            "[woo]\nprevious_webhook_secret = { env = \"OLD\" }",
        );
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err().to_string();
        assert!(
            err.contains("woo.previous_webhook_secret") && err.contains("OLD"),
            "{err}"
        );
        let mut with_old = env();
        with_old.push(("OLD".into(), "oldsecret1".into()));
        let stores = load_stores_for(&p, &with_old, Needs::RECEIVER).unwrap();
        assert_eq!(
            stores
                .get("s1")
                .unwrap()
                .woo
                .previous_webhook_secret
                .expose(),
            "oldsecret1"
        );
    }

    #[test]
    fn a_receiver_reads_only_the_signing_secrets() {
        assert_eq!(
            Needs::RECEIVER.secret_keys(),
            RECEIVER_SECRETS.to_vec(),
            "webhook-ingest must hold no API credential"
        );
        let all = Needs::ALL.secret_keys();
        for k in API_SECRETS.iter().chain(RECEIVER_SECRETS.iter()) {
            assert!(all.contains(k), "{k}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1")
            .replace("012345", "12345")
            .replace("https://shop.test", "shop.test")
            .replace(
                "[woo]",
                "reconcile_interval = \"5s\"\nstatus_map = { 12 = \"completed\" }\n[woo]",
            );
        let p = write(dir.path(), "s1.toml", &text);
        let err = load_stores(&p, &env()).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "client_number",
            "woo.url",
            "reconcile_interval",
            "status_map",
        ] {
            assert!(
                keys.iter().any(|x| x.ends_with(k)),
                "{k} missing in {keys:?}"
            );
        }
    }

    #[test]
    fn a_missing_secret_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s1.toml", &minimal("s1"));
        let mut e = env();
        e.retain(|(k, _)| k != "CS");
        let err = load_stores(&p, &e).unwrap_err().to_string();
        assert!(
            err.contains("woo.consumer_secret") && err.contains("CS"),
            "{err}"
        );
    }

    #[test]
    fn a_receiver_needs_only_the_webhook_and_notice_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s1.toml", &minimal("s1"));
        let only_hooks: Vec<(String, String)> =
            env().into_iter().filter(|(k, _)| k == "WS").collect();
        assert!(load_stores(&p, &only_hooks).is_err());
        let stores = load_stores_for(&p, &only_hooks, Needs::RECEIVER).unwrap();
        assert_eq!(
            stores.get("s1").unwrap().woo.webhook_secret.expose(),
            "hooksecret1"
        );
        assert!(!stores.get("s1").unwrap().woo.consumer_secret.is_set());
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(dir.path(), "cs", "from-file\n");
        let text = minimal("s1").replace(
            "consumer_secret = { env = \"CS\" }",
            &format!("consumer_secret = {{ file = \"{}\" }}", secret.display()),
        );
        let p = write(dir.path(), "s1.toml", &text);
        let stores = load_stores(&p, &env()).unwrap();
        assert_eq!(
            stores.get("s1").unwrap().woo.consumer_secret.expose(),
            "from-file"
        );
    }

    #[test]
    fn a_directory_holds_one_store_per_file_and_env_overrides_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", &minimal("a"));
        write(
            dir.path(),
            "b.toml",
            &minimal("b").replace("id = \"b\"\n", ""),
        );
        let mut e = env();
        e.push(("DUELLSYNC_STORES__B__SYNC_PRICES".into(), "false".into()));
        e.push(("DUELLSYNC_STORES__B__WOO__API_VERSION".into(), "v2".into()));
        let stores = load_stores(dir.path(), &e).unwrap();
        assert_eq!(stores.ids().collect::<Vec<_>>(), vec!["a", "b"]);
        let b = stores.get("b").unwrap();
        assert!(!b.sync_prices);
        assert_eq!(b.woo.api_version, ApiVersion::V2);
        assert!(stores.get("a").unwrap().sync_prices);
        assert!(stores.clone().select(&["c".into()]).is_err());
        assert_eq!(stores.select(&["b".into()]).unwrap().stores.len(), 1);
    }

    #[test]
    fn one_file_can_hold_many_stores() {
        let dir = tempfile::tempdir().unwrap();
        let a = minimal("a")
            .replace("id = \"a\"\n", "")
            .replace("[woo]", "[stores.a.woo]")
            .replace("[duell]", "[stores.a.duell]");
        let b = minimal("b")
            .replace("id = \"b\"\n", "")
            .replace("[woo]", "[stores.b.woo]")
            .replace("[duell]", "[stores.b.duell]");
        let p = write(dir.path(), "all.toml", &format!("{a}\n{b}"));
        let stores = load_stores(&p, &env()).unwrap();
        assert_eq!(stores.stores.len(), 2);
    }

    #[test]
    fn literal_secrets_are_accepted_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace("{ env = \"CS\" }", "\"cs_literal\"");
        let p = write(dir.path(), "s1.toml", &text);
        let stores = load_stores(&p, &env()).unwrap();
        assert_eq!(
            stores.get("s1").unwrap().woo.consumer_secret.expose(),
            "cs_literal"
        );
        assert!(stores.warnings[0].contains("woo.consumer_secret"));
        assert!(!stores.warnings[0].contains("cs_literal"));
    }

    #[test]
    fn the_previous_webhook_secret_is_read_from_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let text = minimal("s1").replace(
            "webhook_secret = { env = \"WS\" }",
            "webhook_secret = { env = \"WS\" }\nprevious_webhook_secret = { env = \"PWS\" }",
        );
        let p = write(dir.path(), "s1.toml", &text);
        let mut e = env();
        e.push(("PWS".into(), "oldhooksecret".into()));
        let stores = load_stores_for(&p, &e, Needs::RECEIVER).unwrap();
        let s = stores.get("s1").unwrap();
        assert_eq!(s.woo.previous_webhook_secret.expose(), "oldhooksecret");
        e.retain(|(k, _)| k != "PWS");
        let err = load_stores(&p, &e).unwrap_err().to_string();
        assert!(
            err.contains("woo.previous_webhook_secret") && err.contains("PWS"),
            "{err}"
        );
    }

    /// Reverses the text and checks the binding, standing in for the registry's cipher.
    struct Mirror;
    impl Unseal for Mirror {
        fn unseal(&self, sealed: &str, aad: &str) -> Result<String, String> {
            let (bound, text) = sealed.split_once('|').ok_or("not sealed here")?;
            if bound != aad {
                return Err(format!("sealed for {bound}, not {aad}"));
            }
            Ok(text.chars().rev().collect())
        }
    }

    #[test]
    fn sealed_secrets_are_opened_for_their_store_and_key_only() {
        let text = minimal("s1").replace(
            "consumer_secret = { env = \"CS\" }",
            "consumer_secret = { sealed = \"s1/woo.consumer_secret|terces\" }",
        );
        let stores = parse_stores_with("s1", "s1", &text, &env(), Needs::ALL, &Mirror).unwrap();
        let s = stores.get("s1").unwrap();
        assert_eq!(s.woo.consumer_secret.expose(), "secret");
        assert!(s.woo.consumer_secret.is_sealed());
        assert!(!format!("{s:?}").contains("secret\""));
        // Moved to another key (or store), the sealed value does not open.
        let moved = text.replace(
            "consumer_secret = { sealed",
            "consumer_key = { sealed = \"s1/woo.consumer_secret|x\" }\nconsumer_secretx = { sealed",
        );
        assert!(parse_stores_with("s1", "s1", &moved, &env(), Needs::ALL, &Mirror).is_err());
        let err = parse_stores("s1", "s1", &text, &env(), Needs::ALL)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("woo.consumer_secret") && err.contains("sealing key"),
            "{err}"
        );
    }

    #[test]
    fn a_record_is_validated_without_reading_its_references() {
        // The saving process lacks the services' environment: references are only checked
        // to be there, every other rule applies.
        let stores = parse_stores_with("s1", "s1", &minimal("s1"), &[], Needs::RECORD, &NoKeys);
        assert!(stores.is_ok(), "{stores:?}");
        let missing = minimal("s1").replace("consumer_secret = { env = \"CS\" }\n", "");
        let err = parse_stores_with("s1", "s1", &missing, &[], Needs::RECORD, &NoKeys)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("woo.consumer_secret") && err.contains("missing"),
            "{err}"
        );
        let bad_shard = minimal("s1").replace("[woo]", "shard = \"Shard A\"\n[woo]");
        let err = parse_stores_with("s1", "s1", &bad_shard, &[], Needs::RECORD, &NoKeys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard") && err.contains("Shard A"), "{err}");
    }

    #[test]
    fn orders_from_date_accepts_dates_and_times() {
        assert_eq!(parse_from_date("1970-01-02").unwrap(), 86400);
        assert_eq!(parse_from_date("1970-01-01T00:01:00Z").unwrap(), 60);
        assert!(parse_from_date("01.02.2026").is_err());
    }
}

#[cfg(test)]
mod properties {
    //! The stable-toolchain counterpart of the `config` fuzz target: any store file text and
    //! any environment give stores or problems, never a panic.

    use super::*;
    use proptest::prelude::*;

    /// TOML-ish lines: real sections and keys with values of every TOML type, plus noise.
    fn line() -> impl Strategy<Value = String> {
        let section = prop::sample::select(vec![
            "[woo]",
            "[duell]",
            "[stock]",
            "[orders]",
            "[stores.s1]",
            "[stores.s1.woo]",
            "[stores.s2.duell]",
            "[status_map]",
            "[[stores]]",
            "[woo.consumer_key]",
        ])
        .prop_map(str::to_owned);
        let key = prop::sample::select(vec![
            "id",
            "url",
            "consumer_key",
            "consumer_secret",
            "webhook_secret",
            "webhook_delivery_url",
            "client_number",
            "client_token",
            "stock_department",
            "order_department",
            "notice_secret",
            "env",
            "max_concurrency",
            "api_version",
            "auth",
            "automatic",
            "deduct_stock",
            "create_customer_order",
            "orders_from_date",
            "orders_from_number",
            "fetch_statuses",
            "status_after_import",
            "status_map",
            "reconcile_interval",
            "poll_interval",
            "stock_poll_interval",
            "source",
            "drawn_statuses",
            "initial_status",
            "total_tolerance",
            "5",
            "\"12\"",
            "stores",
        ]);
        let value = prop_oneof![
            "-?[0-9]{1,25}",
            "\"[0-9]{1,12}(ms|s|m|h|d|x)?\"",
            "\"(https?://)?[a-z.]{0,12}\"",
            "\"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)?\"",
            Just("true".to_owned()),
            Just("{ env = \"T\" }".to_owned()),
            Just("{ env = \"MISSING\" }".to_owned()),
            Just("[\"processing\", \"on-hold\", \"\"]".to_owned()),
            Just("[1, 5, 99, -1]".to_owned()),
            Just("{ 5 = \"completed\", x = \"Bad Slug\" }".to_owned()),
            "\"\\PC{0,12}\"",
            "[ -~]{0,12}",
        ];
        prop_oneof![
            section,
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            "\\PC{0,20}",
        ]
    }

    const VALID: &str = r#"woo.url = "https://shop.test"
woo.consumer_key = { env = "T" }
woo.consumer_secret = { env = "T" }
duell.client_number = "012345"
duell.client_token = { env = "T" }
duell.stock_department = { env = "T" }
duell.order_department = { env = "T" }
"#;

    fn env_pair() -> impl Strategy<Value = (String, String)> {
        (
            prop_oneof![
                "DUELLSYNC_STORES__(S1|S2|X)(__[A-Za-z_]{0,12}){0,3}",
                Just("T".to_owned()),
                "[A-Z_]{0,12}",
            ],
            prop_oneof![
                Just("0123456789abcdef0123456789abcdef".to_owned()),
                "[ -~]{0,16}",
                Just("{ env = \"T\" }".to_owned()),
                Just("[1, 2]".to_owned()),
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_store_text_and_environment_give_stores_or_problems(
            lines in prop::collection::vec(line(), 0..24),
            mut env in prop::collection::vec(env_pair(), 0..6),
            receiver in any::<bool>(),
            valid_start in any::<bool>(),
        ) {
            // Half the cases start from a valid store, so the rules run on near-valid files.
            let start = if valid_start { VALID } else { "" };
            let text = format!("{start}{}", lines.join("\n"));
            env.insert(0, ("T".into(), "0123456789abcdef0123456789abcdef".into()));
            let needs = if receiver { Needs::RECEIVER } else { Needs::ALL };
            match parse_stores("s1.toml", "s1", &text, &env, needs) {
                Ok(stores) => {
                    prop_assert!(!stores.stores.is_empty());
                    for s in stores.stores.values() {
                        let _ = (s.status_map(), s.orders_from_unix(), s.literal_secrets());
                    }
                }
                Err(e) => {
                    prop_assert!(!e.problems.is_empty());
                    let _ = e.to_string();
                }
            }
        }

        #[test]
        fn any_text_is_a_store_file_or_a_problem(text in "\\PC{0,200}") {
            let _ = parse_stores("s1.toml", "s1", &text, &[], Needs::ALL);
        }
    }
}
