//! The store's tax tables.

use serde::Deserialize;

use crate::de;

/// One row of the store's tax tables (`GET /taxes`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TaxRate {
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// ISO country code; `""` = every country.
    #[serde(default, deserialize_with = "de::string")]
    pub country: String,
    /// `""` = every state.
    #[serde(default, deserialize_with = "de::string")]
    pub state: String,
    /// Percent, e.g. `"25.0000"`.
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub rate: Option<rust_decimal::Decimal>,
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub priority: u64,
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub compound: bool,
    /// The tax class slug; the standard class is `"standard"`.
    #[serde(default, deserialize_with = "de::string")]
    pub class: String,
}
