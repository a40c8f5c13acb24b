//! The WooCommerce and DUELL clients of a store, built from its settings.
//!
//! Kept out of `duellsync-settings` so that the settings (and the pure rules that read them)
//! do not pull in the HTTP client crates.
#![forbid(unsafe_code)]

use duellsync_duell::{ClientConfig as DuellConfig, DepartmentToken, DuellClient};
use duellsync_woo::{AuthMode, ClientConfig as WooConfig, SignatureMethod, WooClient};

use duellsync_settings::{ApiVersion, StoreSettings, WooAuth};

/// The WooCommerce client configuration of a store.
pub fn woo_config(s: &StoreSettings) -> Result<WooConfig, String> {
    let mut c = WooConfig::new(
        s.woo.url.clone(),
        s.woo.consumer_key.expose().to_owned(),
        s.woo.consumer_secret.to_secret_string(),
    );
    c.api_version = match s.woo.api_version {
        ApiVersion::V2 => duellsync_woo::ApiVersion::V2,
        ApiVersion::V3 => duellsync_woo::ApiVersion::V3,
    };
    c.auth = match s.woo.auth {
        WooAuth::Auto => AuthMode::Auto,
        WooAuth::Basic => AuthMode::Basic,
        WooAuth::Oauth1 => AuthMode::OAuth1 {
            method: SignatureMethod::HmacSha256,
            placement: duellsync_woo::OAuthPlacement::Header,
        },
    };
    if !s.woo.request_timeout.is_zero() {
        c.timeout = s.woo.request_timeout;
    }
    if let Some(path) = &s.woo.ca_cert {
        c.ca_cert_pem = Some(
            std::fs::read(path)
                .map_err(|e| format!("woo.ca_cert {}: cannot read: {e}", path.display()))?,
        );
    }
    Ok(c)
}

pub fn woo_client(s: &StoreSettings) -> Result<WooClient, String> {
    WooClient::new(woo_config(s)?).map_err(|e| format!("store {}: woo client: {e}", s.id))
}

/// The DUELL client configuration of a store.
pub fn duell_config(s: &StoreSettings) -> Result<DuellConfig, String> {
    DuellConfig::new(
        &s.duell.url,
        s.duell.client_number.clone(),
        s.duell.client_token.to_secret_string(),
    )
    .map_err(|e| format!("store {}: duell client: {e}", s.id))
}

pub fn duell_client(s: &StoreSettings) -> Result<DuellClient, String> {
    DuellClient::new(duell_config(s)?).map_err(|e| format!("store {}: duell client: {e}", s.id))
}

pub fn stock_department(s: &StoreSettings) -> DepartmentToken {
    DepartmentToken::new(s.duell.stock_department.expose())
}

pub fn order_department(s: &StoreSettings) -> DepartmentToken {
    DepartmentToken::new(s.duell.order_department.expose())
}
