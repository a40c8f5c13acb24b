//! The read-mostly handles one store's tasks share.

use std::sync::{Arc, Mutex};

use duellsync_bus::Bus;
use duellsync_catalog::{Hold, PriceRules};
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
    /// Woken after a commit that staged outbox entries.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// The zone DUELL's local date-times are in (`time_zone`).
    pub tz: jiff::tz::TimeZone,
    prices: Arc<Mutex<PriceRules>>,
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
            settings,
            bus,
            woo,
            t,
            cfg,
            prices: Arc::new(Mutex::new(PriceRules::default())),
        }
    }

    pub fn prices(&self) -> PriceRules {
        *self.prices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the store's tax and decimal settings from WooCommerce.
    pub async fn load_prices(&self) -> anyhow::Result<PriceRules> {
        let rules = PriceRules {
            prices_include_tax: self.woo.prices_include_tax().await?,
            decimals: self.woo.price_num_decimals().await?,
        };
        *self.prices.lock().unwrap_or_else(|e| e.into_inner()) = rules;
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
