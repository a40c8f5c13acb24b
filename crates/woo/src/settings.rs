//! Store settings the price conversion needs (prices with or without tax, decimals, the tax
//! tables that say which tax class carries which rate), and the WooCommerce version.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Idempotency, WooClient, WooRequest};
use crate::de;
use crate::error::{Error, Result};
use duellsync_woo_model::TaxRate;

/// One setting.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Setting {
    /// Setting id.
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    /// Group.
    #[serde(default, deserialize_with = "de::string")]
    pub group_id: String,
    /// Declared type (`number` settings still come back as strings).
    #[serde(default, rename = "type", deserialize_with = "de::string")]
    pub kind: String,
    /// The value as sent.
    #[serde(default)]
    pub value: Value,
}

/// The rows of one page of tax rates; WooCommerce's maximum page size.
const TAX_PAGE: u32 = 100;
/// More rows than any shop's tax tables hold: a store answering more pages is answering
/// nonsense, and reading stops.
const TAX_PAGES_MAX: u32 = 50;

impl WooClient {
    /// Whether the store calculates taxes (`/settings/general/woocommerce_calc_taxes`).
    pub async fn calc_taxes(&self) -> Result<bool> {
        let s = self
            .get_setting("general", "woocommerce_calc_taxes")
            .await?;
        yes_no(&s)
    }

    /// The store's base country (`/settings/general/woocommerce_default_country`, `NO` or
    /// `US:CA`): the country part.
    pub async fn base_country(&self) -> Result<String> {
        let s = self
            .get_setting("general", "woocommerce_default_country")
            .await?;
        Ok(s.value
            .as_str()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase())
    }

    /// Every row of the store's tax tables (`GET /taxes`, all pages).
    pub async fn tax_rates(&self) -> Result<Vec<TaxRate>> {
        let mut out = Vec::new();
        for page in 1..=TAX_PAGES_MAX {
            let rows: Vec<TaxRate> = self
                .call(
                    WooRequest::new(Method::GET, "taxes", Idempotency::Idempotent)
                        .query("per_page", TAX_PAGE.to_string())
                        .query("page", page.to_string()),
                )
                .await?;
            let last = rows.len() < TAX_PAGE as usize;
            out.extend(rows);
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /settings/{group}/{id}`.
    pub async fn get_setting(&self, group: &str, id: &str) -> Result<Setting> {
        self.call(WooRequest::new(
            Method::GET,
            format!("settings/{group}/{id}"),
            Idempotency::Idempotent,
        ))
        .await
    }

    /// "Prices entered with tax" (`/settings/tax/woocommerce_prices_include_tax`, `yes`/`no`).
    pub async fn prices_include_tax(&self) -> Result<bool> {
        let s = self
            .get_setting("tax", "woocommerce_prices_include_tax")
            .await?;
        prices_include_tax_of(&s)
    }

    /// Number of price decimals (`/settings/general/woocommerce_price_num_decimals`; the value
    /// is a string although the type says number).
    pub async fn price_num_decimals(&self) -> Result<u32> {
        let s = self
            .get_setting("general", "woocommerce_price_num_decimals")
            .await?;
        price_num_decimals_of(&s)
    }

    /// The WooCommerce version (`system_status` → `environment.version`, e.g. `"7.9.0"`).
    pub async fn woocommerce_version(&self) -> Result<String> {
        let v: Value = self
            .call(
                WooRequest::new(Method::GET, "system_status", Idempotency::Idempotent)
                    .query("_fields", "environment.version"),
            )
            .await?;
        version_of(&v)
    }
}

pub(crate) fn prices_include_tax_of(s: &Setting) -> Result<bool> {
    yes_no(s)
}

fn yes_no(s: &Setting) -> Result<bool> {
    match s.value.as_str() {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        _ => Err(Error::InvalidRequest(format!(
            "unexpected {} value {}",
            s.id, s.value
        ))),
    }
}

pub(crate) fn price_num_decimals_of(s: &Setting) -> Result<u32> {
    let parsed = match &s.value {
        Value::String(v) => v.trim().parse::<u32>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    parsed.ok_or_else(|| {
        Error::InvalidRequest(format!(
            "unexpected woocommerce_price_num_decimals value {}",
            s.value
        ))
    })
}

pub(crate) fn version_of(system_status: &Value) -> Result<String> {
    system_status
        .pointer("/environment/version")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidRequest("system_status has no environment.version".into()))
}
