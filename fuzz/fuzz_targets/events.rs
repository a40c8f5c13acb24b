//! Decoding arbitrary bytes as each protobuf event the services consume, and what the sinks
//! then do with the decoded facts: the order importer's parsing of `payload_json` (a WooCommerce
//! order) with eligibility, line mapping and the totals check; the catalogue publisher's product
//! and stock rules.
//!
//! Input: the whole input is decoded as every event type, and is also taken as `payload_json`.
#![no_main]

use std::sync::OnceLock;

use duellsync_catalog::{
    desired, publishable_stock, update_write, PriceRules, ProductData, WooState,
};
use duellsync_events::v1;
use duellsync_orders::{
    check_total, eligibility, map_lines, normalize_phone, parse_tolerance, plan_status_move,
    taxes_computed_in, valid_email, MapOptions,
};
use duellsync_settings::StoreSettings;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rust_decimal::Decimal;

fn settings() -> &'static StoreSettings {
    static S: OnceLock<StoreSettings> = OnceLock::new();
    S.get_or_init(|| {
        toml::from_str(
            r#"
id = "s1"
orders_from_date = "2020-01-01"
orders_from_number = 10
fetch_statuses = ["processing", "on-hold"]
[woo]
url = "http://shop.test"
[duell]
client_number = "012345"
"#,
        )
        .expect("a valid store")
    })
}

/// The importer's reading of an observed order body.
fn import(payload: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    if !raw.is_object() {
        return;
    }
    let Ok(order) = serde_json::from_value::<duellsync_woo::Order>(raw.clone()) else {
        return;
    };
    let _ = eligibility(&order, settings());
    let _ = plan_status_move(&order.status, "completed");
    let _ = (
        normalize_phone(order.billing.phone.as_deref().unwrap_or("")),
        valid_email(order.billing.email.as_deref().unwrap_or("")),
    );
    let _ = duellsync_orders::customer::customer_draft(&order, "99999999");
    for dp in [2, 0, 8] {
        let opts = MapOptions {
            unit_decimals: dp,
            taxes_computed: taxes_computed_in(&raw),
            ..MapOptions::default()
        };
        if let Ok(lines) = map_lines(&order, &opts) {
            for l in &lines {
                assert!(l.vat_rate >= Decimal::ZERO && l.vat_rate <= Decimal::ONE_HUNDRED);
                let _ = (l.total_inc_vat(), l.source.woo_product_key());
            }
            let _ = check_total(&lines, order.total, parse_tolerance("0.05"));
        }
    }
}

fn catalogue(product: &v1::DuellProduct, stock: Option<Decimal>) {
    let data = ProductData::from_event(product, &settings().tz());
    for prices in [
        PriceRules::default(),
        PriceRules {
            prices_include_tax: false,
            decimals: 2,
        },
    ] {
        let d = desired(
            &data,
            stock,
            Decimal::ONE,
            settings(),
            prices,
            Some(&data.name),
            1_800_000_000,
        );
        let _ = update_write(&d, &WooState::default(), 1_800_000_000);
    }
}

fuzz_target!(|data: &[u8]| {
    import(data);
    if let Ok(e) = v1::OrderObserved::decode(data) {
        import(&e.payload_json);
    }
    if let Ok(e) = v1::ProductObserved::decode(data) {
        if let Some(p) = &e.product {
            catalogue(p, None);
        }
    }
    if let Ok(p) = v1::DuellProduct::decode(data) {
        catalogue(&p, Some(Decimal::ONE));
    }
    if let Ok(e) = v1::StockObserved::decode(data) {
        for text in [&e.stock, &e.actual_stock] {
            if let Ok(stock) = text.trim().parse::<Decimal>() {
                let _ = publishable_stock(stock, Decimal::new(3, 0));
                catalogue(
                    &v1::DuellProduct {
                        product_id: e.product_id,
                        price_inc_vat: "10".into(),
                        ..Default::default()
                    },
                    Some(stock),
                );
            }
        }
    }
    // Every other event only has to decode or be refused.
    let _ = v1::ProductWithdrawn::decode(data);
    let _ = v1::CatalogScanStarted::decode(data);
    let _ = v1::CatalogScanned::decode(data);
    let _ = v1::FullSyncRequested::decode(data);
    let _ = v1::SyncPlan::decode(data);
    let _ = v1::FullSyncProgress::decode(data);
    let _ = v1::FullSyncCompleted::decode(data);
    let _ = v1::ProductApplied::decode(data);
    let _ = v1::ProductFailed::decode(data);
    let _ = v1::ChangeNoticed::decode(data);
    let _ = v1::StockHoldChanged::decode(data);
    let _ = v1::OrderImported::decode(data);
    let _ = v1::OrderParked::decode(data);
    let _ = v1::OrderInDoubt::decode(data);
    let _ = v1::OrderSkipped::decode(data);
    let _ = v1::OrderStatusObserved::decode(data);
    let _ = v1::OrderStatusWritten::decode(data);
    let _ = v1::OrderStatusConflict::decode(data);
    let _ = v1::WebhooksEnsured::decode(data);
    let _ = v1::OrderRetryRequested::decode(data);
    let _ = v1::Meta::decode(data);
});
