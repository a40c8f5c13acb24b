//! Taxed orders: a Norwegian shop (prices with VAT — 25 % standard, 15 % food, 12 % reduced — and
//! VAT added to shipping and taxable fees) and stores with other tax settings. Whatever
//! WooCommerce charged, the DUELL order books it to the øre, each line at its own VAT rate.

mod common;

use common::*;
use duellsync_duell_sim::{NewSimProduct, SimOrder, SimOrderLine};
use duellsync_events::v1;
use duellsync_woo::{Address, NewLineItem, NewOrder, NewShippingLine};
use duellsync_woo_sim::{PlaceCoupon, PlaceFee, PlaceShipping, Settings};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

async fn one_customer_order(app: &TestApp, id: i64) -> SimOrder {
    eventually("one customer order", WAIT, || {
        let o = app.customer_orders_for(id);
        (o.len() == 1).then(|| o[0].clone())
    })
    .await
}

/// A product in both systems, in a WooCommerce tax class with the matching DUELL VAT rate.
fn product_in(app: &TestApp, sku: &str, price: &str, class: &str, vat: u32) -> u64 {
    let id = app
        .duell
        .create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            price_inc_vat: Some(price.parse().expect("price")),
            vatrate_percent: Some(vat),
            stock: Some(Decimal::from(10)),
            ..Default::default()
        })
        .product_id;
    app.woo_product_in(sku, price, class);
    id
}

fn woo_total(json: &Value) -> Decimal {
    json["total"]
        .as_str()
        .expect("total")
        .parse()
        .expect("decimal")
}

/// The DUELL lines of one DUELL product (one WooCommerce line may become two).
fn lines_of(o: &SimOrder, product_id: u64) -> Vec<&SimOrderLine> {
    o.lines
        .iter()
        .filter(|l| l.product_id == product_id)
        .collect()
}

#[tokio::test]
async fn a_checkout_with_reduced_rates_shipping_a_fee_and_a_coupon_books_the_woo_total() {
    let app = spawn_app().await;
    let food = product_in(&app, "MAT-1", "49.90", "food", 15);
    let book = product_in(&app, "BOK-1", "199.00", "reduced-rate", 12);
    let cap = product_in(&app, "KAP-1", "99.00", "", 25);
    let id = app.place(&[("MAT-1", 3), ("BOK-1", 1), ("KAP-1", 2)], |o| {
        o.shipping_line = Some(PlaceShipping {
            method_id: "flat_rate".into(),
            method_title: "Posten".into(),
            total: "79.20".into(),
        });
        o.fee = Some(PlaceFee {
            name: "Ekspressgebyr".into(),
            total: "20.00".into(),
            taxable: true,
            ..Default::default()
        });
        o.coupon = Some(PlaceCoupon {
            code: "RABATT50".into(),
            amount: "50.00".into(),
        });
    });
    let json = app.order_json(id);
    assert_eq!(
        json["tax_lines"].as_array().map(Vec::len),
        Some(3),
        "{json}"
    );
    app.observe(id).await;

    let o = one_customer_order(&app, id).await;
    assert_eq!(TestApp::booked(&o), woo_total(&json), "{json}");
    // The coupon: 8.33 off each unit, the two øre left one a unit on the dearest lines.
    let rates = |lines: Vec<&SimOrderLine>| {
        lines
            .iter()
            .map(|l| {
                (
                    l.quantity,
                    l.price_inc_vat,
                    l.discount_amount,
                    l.vatrate_percent,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rates(lines_of(&o, food)),
        vec![(dec!(3), dec!(49.90), Some(dec!(8.33)), dec!(15))]
    );
    assert_eq!(
        rates(lines_of(&o, book)),
        vec![(dec!(1), dec!(199.00), Some(dec!(8.34)), dec!(12))]
    );
    // 2 × 99.00 − 16.67 does not divide by 2: one unit each at 90.66 and 90.67.
    assert_eq!(
        rates(lines_of(&o, cap)),
        vec![
            (dec!(1), dec!(99.00), Some(dec!(8.34)), dec!(25)),
            (dec!(1), dec!(99.00), Some(dec!(8.33)), dec!(25))
        ]
    );
    let ship = o
        .lines
        .iter()
        .find(|l| l.line_key == "-9999999")
        .expect("shipping");
    assert_eq!(
        (ship.price_inc_vat, ship.vatrate_percent),
        (dec!(99.00), dec!(25)),
        "79.20 + 25 % VAT"
    );
    let fee = o
        .lines
        .iter()
        .find(|l| l.comments == "Ekspressgebyr")
        .expect("fee");
    assert_eq!(
        (fee.price_inc_vat, fee.vatrate_percent),
        (dec!(25.00), dec!(25))
    );

    let ev = eventually_async("OrderImported", WAIT, || async {
        app.order_event::<v1::OrderImported>(id).await
    })
    .await;
    assert_eq!(ev.total, json["total"].as_str().unwrap());
    let units: Decimal = ev
        .lines
        .iter()
        .filter(|l| l.duell_product_id == cap as i64)
        .map(|l| l.quantity.parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(units, dec!(2), "the split line still holds two units");
}

#[tokio::test]
async fn shipping_tax_rounded_up_at_checkout_is_booked_on_the_shipping_line() {
    // The cart rounds 4.90 × 25 % = 1.225 up to 1.23 in the total; the shipping line itself
    // shows 1.22 (half down, as a store with prices with tax rounds tax).
    let app = spawn_app().await;
    product_in(&app, "O-1", "11.00", "", 25);
    let id = app.place(&[("O-1", 2)], |o| {
        o.shipping_line = Some(PlaceShipping {
            method_id: "flat_rate".into(),
            method_title: "Flat rate".into(),
            total: "4.90".into(),
        });
    });
    let json = app.order_json(id);
    assert_eq!(json["total"], "28.13");
    assert_eq!(json["shipping_lines"][0]["total_tax"], "1.22");
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(TestApp::booked(&o), dec!(28.13));
    let ship = o.lines.iter().find(|l| l.line_key == "-9999999").unwrap();
    assert_eq!(ship.price_inc_vat, dec!(6.13));
}

#[tokio::test]
async fn an_order_made_over_rest_books_the_28_12_the_reference_store_charged() {
    let app = spawn_app().await;
    product_in(&app, "O-1", "11.00", "", 25);
    let client = app.woo_client();
    let created = client
        .create_order(&NewOrder {
            status: Some("processing".into()),
            billing: Some(Address {
                first_name: "Ada".into(),
                email: Some("ada@example.no".into()),
                phone: Some("+47 99 88 77 66".into()),
                ..Default::default()
            }),
            line_items: vec![NewLineItem {
                sku: Some("O-1".into()),
                quantity: 2,
                ..Default::default()
            }],
            shipping_lines: vec![NewShippingLine {
                method_id: "flat_rate".into(),
                method_title: "Flat rate".into(),
                total: dec!(4.90),
            }],
            ..Default::default()
        })
        .await
        .expect("order created");
    assert_eq!(created.total, dec!(28.12));
    let id = created.id as i64;
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(TestApp::booked(&o), dec!(28.12));
    let mut prices: Vec<(Decimal, Decimal, Decimal)> = o
        .lines
        .iter()
        .map(|l| (l.quantity, l.price_inc_vat, l.price_ex_vat))
        .collect();
    prices.sort();
    assert_eq!(
        prices,
        vec![
            (dec!(1), dec!(6.12), dec!(4.90)),
            (dec!(2), dec!(11.00), dec!(8.80))
        ]
    );
}

#[tokio::test]
async fn a_store_with_prices_without_tax_rounding_at_subtotal_books_its_total() {
    let app = spawn_app_with(|s| {
        s.woo.prices_include_tax = false;
        s.woo.tax_round_at_subtotal = true;
    })
    .await;
    for sku in ["A-1", "B-1", "C-1"] {
        product_in(&app, sku, "10.02", "", 25);
    }
    product_in(&app, "D-1", "10.00", "", 25);
    // Each line's tax is 2.505, shown as 2.51; the store rounds only the sum (7.515 + 7.50).
    let id = app.place(&[("A-1", 1), ("B-1", 1), ("C-1", 1), ("D-1", 3)], |_| {});
    let json = app.order_json(id);
    assert_eq!(json["total"], "75.08", "{json}");
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(TestApp::booked(&o), dec!(75.08));
    assert!(o.lines.iter().all(|l| l.vatrate_percent == dec!(25)));
}

#[tokio::test]
async fn a_store_without_taxes_books_its_amounts_as_prices_with_25_percent_vat() {
    let app = spawn_app_with(|s| s.woo = Settings::default()).await;
    product_in(&app, "A-1", "100.00", "", 25);
    let id = app.place(&[("A-1", 3)], |o| {
        o.shipping_line = Some(PlaceShipping {
            method_id: "flat_rate".into(),
            method_title: "Posten".into(),
            total: "49.00".into(),
        });
        o.coupon = Some(PlaceCoupon {
            code: "TI".into(),
            amount: "10.00".into(),
        });
    });
    let json = app.order_json(id);
    assert_eq!(json["total_tax"], "0.00");
    assert_eq!(json["tax_lines"], serde_json::json!([]));
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(TestApp::booked(&o), woo_total(&json));
    assert_eq!(woo_total(&json), dec!(339.00));
    assert!(o.lines.iter().all(|l| l.vatrate_percent == dec!(25)));
    let ship = o.lines.iter().find(|l| l.line_key == "-9999999").unwrap();
    assert_eq!(
        (ship.price_inc_vat, ship.price_ex_vat),
        (dec!(49), dec!(39.20))
    );
}
