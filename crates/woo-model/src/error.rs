//! WooCommerce's error envelope, as it appears in error answers and per batch item.

use serde::Deserialize;

/// A WooCommerce error envelope `{code, message, data: {status, ...}}`.
///
/// Branch on `code` and `status`, never on `message`: messages are translated into the
/// store's language.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ApiError {
    /// Machine-readable code, e.g. `product_invalid_sku`.
    pub code: String,
    /// Human-readable, translated text. For logs only.
    #[serde(default)]
    pub message: String,
    /// `data` as sent, including `status` and extras such as `resource_id`.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl ApiError {
    /// `data.status`, the HTTP status WooCommerce attached to the error.
    pub fn status(&self) -> Option<u16> {
        self.data
            .get("status")
            .and_then(|s| s.as_u64())
            .and_then(|s| u16::try_from(s).ok())
    }

    /// `data.resource_id`: the owner of a duplicate SKU (`product_invalid_sku`) or the
    /// existing term (`term_exists`).
    pub fn resource_id(&self) -> Option<u64> {
        self.data.get("resource_id").and_then(json_u64)
    }

    /// `data.unique_sku`: WooCommerce's suggestion for a free SKU.
    pub fn unique_sku(&self) -> Option<&str> {
        self.data.get("unique_sku").and_then(|v| v.as_str())
    }
}

pub fn json_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
