//! Store settings the price conversion needs, and the WooCommerce version.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Idempotency, WooClient, WooRequest};
use crate::de;
use crate::error::{Error, Result};

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

impl WooClient {
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
    match s.value.as_str() {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        _ => Err(Error::InvalidRequest(format!(
            "unexpected woocommerce_prices_include_tax value {}",
            s.value
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
