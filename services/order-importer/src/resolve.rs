//! Finding (or creating) what a DUELL order refers to: the customer, the products of the lines,
//! the dedicated shipping and fee products and the category new products go into.
//!
//! None of these is the exactly-once object, but creating them is not idempotent either: every
//! creation looks up first, and ids the importer created are remembered (`Tables::known`), so a
//! retry after an unknown outcome finds what the first try made instead of making it twice.

use std::time::{Duration, Instant};

use duellsync_duell::{
    Action, CategoryId, CustomerId, CustomerInput, NewCategory, NewProduct, Product,
};
use duellsync_orders::customer::{customer_draft, placeholder_draft, PLACEHOLDER_CUSTOMER_NAME};
use duellsync_orders::{CustomerDraft, CustomerIdentity, LineSource, MappedLine};
use duellsync_store::Commit;
use rust_decimal::Decimal;

use crate::StoreCtx;

/// Why the import of an order stops here.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Try the whole order again later (nothing half-done is left that a retry would repeat).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A person has to act (or the cause has to go away): park the order.
    Park {
        code: &'static str,
        reason: String,
        missing_skus: Vec<String>,
        missing_woo_ids: Vec<i64>,
    },
}

impl Stop {
    pub fn retry(reason: impl Into<String>) -> Stop {
        Stop::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    pub fn park(code: &'static str, reason: impl Into<String>) -> Stop {
        Stop::Park {
            code,
            reason: reason.into(),
            missing_skus: Vec::new(),
            missing_woo_ids: Vec::new(),
        }
    }
}

impl From<duellsync_store::Error> for Stop {
    fn from(e: duellsync_store::Error) -> Self {
        tracing::error!(error = %e, "state store failed");
        Stop::retry(format!("state store: {e}"))
    }
}

/// What to do about a failed DUELL read, or a failed creation of a customer, product or
/// category (the lookup-before-create makes their retries safe).
pub(crate) fn duell_stop(what: &str, e: &duellsync_duell::Error, park_code: &'static str) -> Stop {
    let reason = format!("{what}: {e}");
    match e.action() {
        Action::RetryLater => Stop::Retry {
            after: e.retry_after(),
            reason,
        },
        // Settings or egress: retried (bounded by max deliveries), the reason says what to fix.
        Action::FixConfiguration => Stop::retry(reason),
        // An unknown outcome of a creation: the retry looks up before creating again.
        Action::ResolveInDoubt | Action::Investigate => Stop::retry(reason),
        Action::Reject => Stop::park(park_code, reason),
    }
}

/// Times a DUELL call for `duellsync_importer_duell_call_duration_seconds`.
pub(crate) async fn timed<T>(
    store: &str,
    endpoint: &'static str,
    call: impl std::future::Future<Output = duellsync_duell::Result<T>>,
) -> duellsync_duell::Result<T> {
    let start = Instant::now();
    let r = call.await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(e) => match e.action() {
            Action::RetryLater => "retry_later",
            Action::Reject => "rejected",
            Action::FixConfiguration => "configuration",
            Action::ResolveInDoubt => "outcome_unknown",
            Action::Investigate => "invalid_response",
        },
    };
    metrics::histogram!(
        "duellsync_importer_duell_call_duration_seconds",
        "store" => store.to_owned(),
        "endpoint" => endpoint,
        "outcome" => outcome
    )
    .record(start.elapsed().as_secs_f64());
    r
}

fn id_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl StoreCtx {
    /// Serialises find-or-create of one thing (a `known` key) across concurrent imports.
    async fn creating(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.creation_locks.lock(h.finish() as i64).await
    }

    fn known_key(&self, k: String) -> (String, String) {
        (self.id().to_owned(), k)
    }

    pub(crate) fn known(&self, k: &str) -> Result<Option<i64>, Stop> {
        Ok(self.t.known.get(&self.known_key(k.to_owned()))?)
    }

    async fn remember(&self, keys: &[String], id: i64) -> Result<(), Stop> {
        let mut c = Commit::new();
        for k in keys {
            self.t.known.put(&mut c, &self.known_key(k.clone()), &id);
        }
        self.state.commit(c).await?;
        Ok(())
    }

    /// The DUELL customer of an order: by normalised phone, then e-mail; the placeholder
    /// customer when the order has neither; created when missing.
    pub(crate) async fn customer_for(&self, order: &duellsync_woo::Order) -> Result<i64, Stop> {
        let ident = CustomerIdentity::of(&order.billing);
        let placeholder = self.settings.orders.placeholder_phone.clone();
        if ident.is_anonymous() {
            let key = format!("customer:placeholder:{placeholder}");
            let _creating = self.creating(&key).await;
            if let Some(id) = self.known(&key)? {
                return Ok(id);
            }
            let found = timed(
                self.id(),
                "customer/list",
                self.duell.find_customers_by_phone(&placeholder),
            )
            .await
            .map_err(|e| duell_stop("looking up the placeholder customer", &e, "customer"))?;
            // Customers without a usable phone carry the placeholder phone too (as DUELL's
            // plugin made them): only the one with the placeholder name is the shared customer.
            let shared = found
                .iter()
                .filter(|c| {
                    c.customer_name
                        .as_deref()
                        .is_some_and(|n| n.trim() == PLACEHOLDER_CUSTOMER_NAME)
                })
                .map(|c| c.customer_id.0)
                .min();
            let id = match shared {
                Some(id) => id_i64(id),
                None => {
                    self.create_customer(&placeholder_draft(&placeholder))
                        .await?
                }
            };
            self.remember(&[key], id).await?;
            return Ok(id);
        }
        let phone_key = ident.phone.as_ref().map(|p| format!("customer:phone:{p}"));
        let email_key = ident
            .email
            .as_ref()
            .map(|e| format!("customer:email:{}", e.to_lowercase()));
        // Identified by phone first, so the phone (else the e-mail) is the creation key.
        let _creating = match phone_key.as_ref().or(email_key.as_ref()) {
            Some(k) => Some(self.creating(k).await),
            None => None,
        };
        for key in phone_key.iter().chain(email_key.iter()) {
            if let Some(id) = self.known(key)? {
                return Ok(id);
            }
        }
        // Reused for the same phone *and* e-mail only: a buyer found by e-mail may be found by
        // phone when DUELL gets a customer with that phone, which the phone look-up must see.
        let reuse_key = format!(
            "{}|{}",
            phone_key.as_deref().unwrap_or_default(),
            email_key.as_deref().unwrap_or_default()
        );
        if let Some(id) = self.lookups.customer(&reuse_key) {
            metrics::counter!("duellsync_importer_lookups_reused_total", "store" => self.id().to_owned(), "kind" => "customer").increment(1);
            return Ok(id);
        }
        let since = self.lookups.generation();
        if let Some(phone) = &ident.phone {
            let found = timed(
                self.id(),
                "customer/list",
                self.duell.find_customers_by_phone(phone),
            )
            .await
            .map_err(|e| duell_stop("looking up the customer by phone", &e, "customer"))?;
            if let Some(id) = found.iter().map(|c| c.customer_id.0).min() {
                let id = id_i64(id);
                self.lookups.found_customer(&reuse_key, id, since);
                return Ok(id);
            }
        }
        if let Some(email) = &ident.email {
            let found = timed(
                self.id(),
                "customer/list",
                self.duell.find_customers_by_email(email),
            )
            .await
            .map_err(|e| duell_stop("looking up the customer by e-mail", &e, "customer"))?;
            if let Some(id) = found.iter().map(|c| c.customer_id.0).min() {
                let id = id_i64(id);
                self.lookups.found_customer(&reuse_key, id, since);
                return Ok(id);
            }
        }
        let id = self
            .create_customer(&customer_draft(order, &placeholder))
            .await?;
        let keys: Vec<String> = phone_key.into_iter().chain(email_key).collect();
        self.remember(&keys, id).await?;
        Ok(id)
    }

    async fn create_customer(&self, d: &CustomerDraft) -> Result<i64, Stop> {
        let input = CustomerInput {
            customer_id: None,
            customer_name: d.name.clone(),
            phone: d.phone.clone(),
            email: d.email.clone(),
            primary_address: d.address.clone(),
            primary_zip: d.zip.clone(),
            city: d.city.clone(),
        };
        let CustomerId(id) = timed(self.id(), "customer", self.duell.upsert_customer(&input))
            .await
            .map_err(|e| duell_stop("creating the DUELL customer", &e, "customer"))?;
        tracing::info!(store = %self.id(), customer_id = id, "created DUELL customer");
        Ok(id_i64(id))
    }

    /// The DUELL category new products go into (`orders.missing_product_category`).
    async fn category(&self) -> Result<CategoryId, Stop> {
        let name = self.settings.orders.missing_product_category.clone();
        let key = format!("category:{name}");
        let _creating = self.creating(&key).await;
        if let Some(id) = self.known(&key)? {
            return Ok(CategoryId(id.max(0) as u64));
        }
        let found = timed(
            self.id(),
            "product/category/list/product",
            self.duell.find_category_by_name(&name),
        )
        .await
        .map_err(|e| duell_stop("looking up the product category", &e, "validation"))?;
        let id = match found {
            Some(c) => c.category_id,
            None => {
                let saved = timed(
                    self.id(),
                    "product/category/save",
                    self.duell.save_categories(&[NewCategory {
                        category_name: name.clone(),
                        category_type: "product".into(),
                    }]),
                )
                .await
                .map_err(|e| duell_stop("creating the product category", &e, "validation"))?;
                let Some(row) = saved.data.first() else {
                    return Err(Stop::park(
                        "validation",
                        format!("DUELL created no category {name}"),
                    ));
                };
                tracing::info!(store = %self.id(), category = %name, category_id = row.category_id.0, "created DUELL category");
                row.category_id
            }
        };
        self.remember(&[key], id_i64(id.0)).await?;
        Ok(id)
    }

    /// Products with `number` (deleted ones excluded), lowest id first.
    async fn products_by_number(&self, number: &str) -> Result<Vec<Product>, Stop> {
        let mut found = timed(
            self.id(),
            "product/list",
            self.duell.find_products_by_number(number),
        )
        .await
        .map_err(|e| {
            duell_stop(
                &format!("looking up product number {number}"),
                &e,
                "validation",
            )
        })?;
        found.sort_by_key(|p| p.product_id.0);
        Ok(found)
    }

    async fn create_product(
        &self,
        number: &str,
        name: &str,
        price_inc_vat: Decimal,
        vat: Decimal,
    ) -> Result<i64, Stop> {
        let category = self.category().await?;
        let product = NewProduct {
            product_name: if name.trim().is_empty() {
                number.to_owned()
            } else {
                name.trim().to_owned()
            },
            product_number: number.to_owned(),
            price_inc_vat,
            vatrate_percent: norwegian_vat(vat),
            category_id: Some(category),
            description: None,
        };
        let saved = timed(
            self.id(),
            "product/save",
            self.duell.save_products(&[product]),
        )
        .await
        .map_err(|e| duell_stop(&format!("creating product {number}"), &e, "validation"))?;
        let Some(row) = saved.data.first() else {
            return Err(Stop::park(
                "validation",
                format!("DUELL created no product for number {number}"),
            ));
        };
        let id = id_i64(row.product_id.0);
        tracing::info!(store = %self.id(), product_number = %number, product_id = id, "created DUELL product");
        metrics::counter!("duellsync_importer_products_created_total", "store" => self.id().to_owned())
            .increment(1);
        Ok(id)
    }

    /// The dedicated product for shipping or fee lines: found or created once, then remembered.
    pub(crate) async fn special_product(&self, number: &str, name: &str) -> Result<i64, Stop> {
        let key = format!("special:{number}");
        let _creating = self.creating(&key).await;
        if let Some(id) = self.known(&key)? {
            return Ok(id);
        }
        let found = self.products_by_number(number).await?;
        let id = match found.first() {
            Some(p) => id_i64(p.product_id.0),
            None => {
                self.create_product(number, name, Decimal::ZERO, Decimal::from(25))
                    .await?
            }
        };
        self.remember(&[key], id).await?;
        Ok(id)
    }
}

/// A product line resolved to DUELL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub duell_product_id: i64,
    pub product_number: String,
    /// Set when several DUELL products share the SKU (the lowest id was used).
    pub remark: Option<String>,
}

impl StoreCtx {
    /// A product line's DUELL product: by the link the catalogue publisher made, else by SKU.
    /// `Ok(None)`: unknown to DUELL.
    pub(crate) async fn resolve_product(
        &self,
        line: &MappedLine,
    ) -> Result<Option<Resolved>, Stop> {
        if let Some(woo_id) = line.source.woo_product_key() {
            let key = (self.id().to_owned(), id_i64(woo_id));
            if let Some(link) = self.t.links.get(&key)? {
                return Ok(Some(Resolved {
                    duell_product_id: link.duell_product_id,
                    product_number: link.product_number,
                    remark: None,
                }));
            }
        }
        let Some(sku) = line_sku(line) else {
            return Ok(None);
        };
        if let Some(id) = self.known(&format!("product:{sku}"))? {
            return Ok(Some(Resolved {
                duell_product_id: id,
                product_number: sku,
                remark: None,
            }));
        }
        if let Some(r) = self.lookups.product(&sku) {
            metrics::counter!("duellsync_importer_lookups_reused_total", "store" => self.id().to_owned(), "kind" => "product").increment(1);
            return Ok(Some(r));
        }
        let since = self.lookups.generation();
        let found = self.products_by_number(&sku).await?;
        let Some(first) = found.first() else {
            return Ok(None);
        };
        let remark = (found.len() > 1).then(|| {
            let ids: Vec<String> = found.iter().map(|p| p.product_id.0.to_string()).collect();
            tracing::warn!(store = %self.id(), sku = %sku, ids = %ids.join(","), "several DUELL products share the SKU; using the lowest id");
            metrics::counter!("duellsync_importer_ambiguous_skus_total", "store" => self.id().to_owned())
                .increment(1);
            format!(
                "SKU {sku} matches DUELL products {}; used {}",
                ids.join(", "),
                first.product_id.0
            )
        });
        let resolved = Resolved {
            duell_product_id: id_i64(first.product_id.0),
            product_number: first.product_number.clone(),
            remark,
        };
        self.lookups.found_product(&sku, &resolved, since);
        Ok(Some(resolved))
    }

    /// Creates the DUELL product of an unknown line (`create_missing_products`), in the
    /// `orders.missing_product_category` category. Call it only right after
    /// [`StoreCtx::resolve_product`] found nothing: that lookup by number is what finds a product
    /// an earlier try created without learning its id.
    pub(crate) async fn create_missing(&self, line: &MappedLine) -> Result<Resolved, Stop> {
        let Some(sku) = line_sku(line) else {
            return Err(Stop::park(
                "unknown_product",
                format!(
                    "line {} ({}) has no SKU, so no DUELL product can be made for it",
                    line.key, line.name
                ),
            ));
        };
        let key = format!("product:{sku}");
        let _creating = self.creating(&key).await;
        // Another order may have created it while this one waited.
        if let Some(id) = self.known(&key)? {
            return Ok(Resolved {
                duell_product_id: id,
                product_number: sku,
                remark: None,
            });
        }
        let id = self
            .create_product(&sku, &line.name, line.price_inc_vat, line.vat_rate)
            .await?;
        self.remember(&[key], id).await?;
        Ok(Resolved {
            duell_product_id: id,
            product_number: sku,
            remark: None,
        })
    }
}

pub(crate) fn line_sku(line: &MappedLine) -> Option<String> {
    match &line.source {
        LineSource::Product { sku, .. } => sku
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// The Norwegian VAT rate nearest to `vat` (DUELL knows 25, 15, 12 and 0): a rate computed from
/// rounded WooCommerce taxes can be a point off.
fn norwegian_vat(vat: Decimal) -> Decimal {
    [25, 15, 12, 0]
        .into_iter()
        .map(Decimal::from)
        .min_by_key(|r| (*r - vat).abs())
        .unwrap_or(Decimal::from(25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_products_get_the_nearest_norwegian_vat_rate() {
        assert_eq!(norwegian_vat(Decimal::from(24)), Decimal::from(25));
        assert_eq!(norwegian_vat(Decimal::from(14)), Decimal::from(15));
        assert_eq!(norwegian_vat(Decimal::from(11)), Decimal::from(12));
        assert_eq!(norwegian_vat(Decimal::from(1)), Decimal::from(0));
    }
}
