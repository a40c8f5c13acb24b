//! The read-mostly handles one store's tasks share.

use std::sync::{Arc, Mutex};

use duellsync_bus::Bus;
use duellsync_catalog::{Hold, PriceRules, TaxClasses};
use duellsync_settings::StoreSettings;
use duellsync_woo::WooClient;

use crate::config::PublisherSection;
use crate::state::Tables;

/// Shared, read-mostly handles of one store.
#[derive(Clone)]
pub(crate) struct StoreCtx {
    pub id: String,
    pub settings: Arc<StoreSettings>,
    pub bus: Bus,
    pub woo: WooClient,
    pub t: Tables,
    pub cfg: Arc<PublisherSection>,
    /// What the live writer and the reconciler share while both run.
    pub live: Arc<Live>,
    /// Woken after a commit that staged outbox entries.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// The zone DUELL's local date-times are in (`time_zone`).
    pub tz: jiff::tz::TimeZone,
    prices: Arc<Mutex<PriceRules>>,
    taxes: Arc<Mutex<Arc<TaxClasses>>>,
}

impl StoreCtx {
    pub fn new(
        settings: Arc<StoreSettings>,
        bus: Bus,
        woo: WooClient,
        t: Tables,
        cfg: Arc<PublisherSection>,
    ) -> Self {
        StoreCtx {
            id: settings.id.clone(),
            tz: settings.tz(),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            live: Arc::new(Live::default()),
            settings,
            bus,
            woo,
            t,
            cfg,
            prices: Arc::new(Mutex::new(PriceRules::default())),
            taxes: Arc::new(Mutex::new(Arc::new(TaxClasses::NONE))),
        }
    }

    /// How long after sending a write that is not idempotent its outcome is read, if the
    /// answer was lost: past the client's own timeout in any case.
    pub fn settle_after(&self) -> std::time::Duration {
        self.cfg
            .settle_after
            .max(self.settings.woo.request_timeout + std::time::Duration::from_secs(1))
    }

    pub fn prices(&self) -> PriceRules {
        *self.prices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shop's tax class per VAT rate, as last read.
    pub fn taxes(&self) -> Arc<TaxClasses> {
        self.taxes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the store's tax and decimal settings and its tax tables from WooCommerce.
    pub async fn load_prices(&self) -> anyhow::Result<PriceRules> {
        let calc = self.woo.calc_taxes().await?;
        let rules = PriceRules {
            // A shop that calculates no taxes charges the price as it is entered, whatever
            // "prices entered with tax" says (WooCommerce adds no tax then): DUELL's price
            // with VAT is the price to enter.
            prices_include_tax: !calc || self.woo.prices_include_tax().await?,
            decimals: self.woo.price_num_decimals().await?,
        };
        let taxes = if calc {
            TaxClasses::new(
                true,
                &self.woo.tax_rates().await?,
                &self.woo.base_country().await?,
                &self.settings.tax_classes,
            )
        } else {
            TaxClasses::NONE
        };
        *self.prices.lock().unwrap_or_else(|e| e.into_inner()) = rules;
        *self.taxes.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(taxes);
        Ok(rules)
    }

    pub fn holds(&self) -> anyhow::Result<Vec<Hold>> {
        Ok(self
            .t
            .holds
            .iter_group(&self.id)
            .map(|r| r.map(|(_, h)| h))
            .collect::<Result<_, _>>()?)
    }
}

/// State the live writer and the reconciler share (in memory; the sled state is the truth).
#[derive(Default)]
pub(crate) struct Live {
    /// Products in a request this process has in flight: their intents are not settled by
    /// reading while the request may still answer.
    in_flight: Mutex<std::collections::HashSet<i64>>,
    /// Image URLs a request in flight makes WooCommerce download.
    downloading: Mutex<std::collections::HashSet<String>>,
    /// When the writer last recorded a result per product (Unix ms), while a reconciliation
    /// runs: its reads of WooCommerce older than that must not overwrite the newer answer.
    written_at: Mutex<Option<std::collections::HashMap<i64, i64>>>,
    /// Products a running full sync asked to be written: with `automatic = false` these are
    /// the only ones written.
    forced: Mutex<std::collections::HashSet<i64>>,
    /// Batch requests the writer made (a full sync reports the ones made during it).
    pub batch_writes: std::sync::atomic::AtomicU64,
    /// Wakes the writer: a reconciliation or a settlement marked products dirty.
    pub wake: tokio::sync::Notify,
    /// Wakes the reconciler: a full-sync run was recorded.
    pub runs: tokio::sync::Notify,
}

impl Live {
    pub fn in_flight_ids(&self) -> std::collections::HashSet<i64> {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_in_flight(&self, id: i64) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub fn enter(&self, ids: &[i64], image_urls: &[String]) {
        let mut set = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        set.extend(ids.iter().copied());
        let mut urls = self.downloading.lock().unwrap_or_else(|e| e.into_inner());
        urls.extend(image_urls.iter().cloned());
    }

    pub fn leave(&self, ids: &[i64], image_urls: &[String]) {
        let mut set = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            set.remove(id);
        }
        let mut urls = self.downloading.lock().unwrap_or_else(|e| e.into_inner());
        for u in image_urls {
            urls.remove(u);
        }
    }

    pub fn downloading(&self) -> std::collections::HashSet<String> {
        self.downloading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn force(&self, ids: &[i64]) {
        let mut set = self.forced.lock().unwrap_or_else(|e| e.into_inner());
        set.clear();
        set.extend(ids.iter().copied());
    }

    pub fn is_forced(&self, id: i64) -> bool {
        self.forced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub fn any_forced(&self) -> bool {
        !self
            .forced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Starts (or stops) remembering when results were recorded.
    pub fn watch_writes(&self, on: bool) {
        *self.written_at.lock().unwrap_or_else(|e| e.into_inner()) =
            on.then(std::collections::HashMap::new);
    }

    pub fn wrote(&self, ids: &[i64], at_ms: i64) {
        if let Some(m) = self
            .written_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            for id in ids {
                m.insert(*id, at_ms);
            }
        }
    }

    /// Whether a result for `id` was recorded at or after `since_ms`.
    pub fn written_since(&self, id: i64, since_ms: i64) -> bool {
        self.written_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|m| m.get(&id))
            .is_some_and(|at| *at >= since_ms)
    }
}
