//! A taxed web order end to end, on a Norwegian shop (prices with VAT: 25 % standard, 15 % food,
//! 12 % reduced; VAT added to shipping and to a taxable fee): WooCommerce's signed webhook →
//! webhook-ingest → order-importer → DUELL. The DUELL customer order books exactly what the buyer
//! paid, each line at its own VAT rate.

use std::time::Duration;

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::{NewSimProduct, SimOrder};
use duellsync_e2e::{eventually, World, ORDER_DEPARTMENT};
use duellsync_events::{v1, Event};
use duellsync_test_support::free_port;
use duellsync_woo_sim::{PlaceCoupon, PlaceFee, PlaceLine, PlaceOrder, PlaceShipping, Settings};
use prost::Message as _;
use rust_decimal::Decimal;

const STORE: &str = "s1";
const WAIT: Duration = Duration::from_secs(60);
const INGEST: &str = "webhook-ingest";
const POLLER: &str = "change-poller";
const IMPORTER: &str = "order-importer";

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn booked(o: &SimOrder) -> Decimal {
    o.lines
        .iter()
        .map(|l| (l.price_inc_vat - l.discount_amount.unwrap_or_default()) * l.quantity)
        .sum()
}

fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taxed_web_order_reaches_duell_with_the_woo_total_to_the_ore() {
    let ingest_port = free_port();
    // The gap-fill stays out of the way: the order must come by webhook.
    let mut world = World::empty_shop(Settings::norway(), &[r#"poll_interval = "1h""#]).await;
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/{STORE}");
    world.sandbox.write_store(STORE, &world.store.to_toml());
    for (sku, price, class, vat) in [
        ("MAT-1", "49.90", "food", 15u32),
        ("BOK-1", "199.00", "reduced-rate", 12),
        ("KAP-1", "99.00", "", 25),
    ] {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            price_inc_vat: Some(dec(price)),
            vatrate_percent: Some(vat),
            stock: Some(100.into()),
            ..NewSimProduct::default()
        });
        world
            .woo
            .admin_write_product(
                None,
                serde_json::json!({"name": format!("Vare {sku}"), "sku": sku, "regular_price": price,
                    "tax_class": class, "manage_stock": true, "stock_quantity": 100}),
            )
            .expect("woo product");
    }
    let listen = format!("127.0.0.1:{ingest_port}");
    block(|| {
        world
            .sandbox
            .start(INGEST, &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())]);
        world.sandbox.start(POLLER, &[]);
        world.sandbox.start(IMPORTER, &[]);
        for s in [INGEST, POLLER, IMPORTER] {
            world.sandbox.wait_ready(s, WAIT);
        }
    });
    eventually("the order webhooks to be created", WAIT, || async {
        let hooks = world.client.list_webhooks(None).await.unwrap_or_default();
        (hooks
            .iter()
            .filter(|h| h.topic.starts_with("order.") && h.status == "active")
            .count()
            == 2)
            .then_some(())
    })
    .await;

    let line = |sku: &str, quantity: i64| PlaceLine {
        sku: Some(sku.into()),
        quantity,
        ..PlaceLine::default()
    };
    let id = world
        .woo
        .place_order(&PlaceOrder {
            lines: vec![line("MAT-1", 3), line("BOK-1", 1), line("KAP-1", 2)],
            billing: [
                ("first_name", "Kari"),
                ("last_name", "Nordmann"),
                ("address_1", "Storgata 1"),
                ("city", "Oslo"),
                ("postcode", "0155"),
                ("country", "NO"),
                ("email", "kari@example.no"),
                ("phone", "+47 912 34 567"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
            shipping_line: Some(PlaceShipping {
                method_id: "flat_rate".into(),
                method_title: "Posten".into(),
                total: "79.20".into(),
            }),
            fee: Some(PlaceFee {
                name: "Ekspressgebyr".into(),
                total: "20.00".into(),
                taxable: true,
                ..PlaceFee::default()
            }),
            coupon: Some(PlaceCoupon {
                code: "RABATT50".into(),
                amount: "50.00".into(),
            }),
            ..PlaceOrder::default()
        })
        .expect("woo-sim takes the order");
    let woo = world.woo.order_json(id).expect("the order");
    let woo_total = dec(woo["total"].as_str().expect("total"));
    assert!(
        dec(woo["total_tax"].as_str().expect("total_tax")) > Decimal::ZERO,
        "the shop computed VAT: {woo}"
    );

    let order = eventually("the DUELL customer order", WAIT, || async {
        world
            .duell
            .customer_orders()
            .into_iter()
            .find(|o| o.reference() == id.to_string())
    })
    .await;
    assert_eq!(booked(&order), woo_total, "DUELL books what the buyer paid");
    assert_eq!(order.department_id, ORDER_DEPARTMENT);
    let mut rates: Vec<Decimal> = order.lines.iter().map(|l| l.vatrate_percent).collect();
    rates.sort();
    rates.dedup();
    assert_eq!(rates, vec![dec("12"), dec("15"), dec("25")]);
    let shipping = order
        .lines
        .iter()
        .find(|l| l.line_key == "-9999999")
        .expect("the shipping line");
    assert_eq!(
        shipping.price_inc_vat,
        dec("99.00"),
        "79.20 + 25 % VAT on shipping"
    );

    // It came by webhook, and the importer recorded WooCommerce's own total.
    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "e2e-test"))
        .await
        .expect("bus connects");
    let read = |subject: String| {
        let bus = bus.clone();
        async move {
            let stream = duellsync_events::stream_for_subject(&subject)
                .expect("a stream")
                .name;
            bus.read(stream, &subject, 1, 1000)
                .await
                .unwrap_or_default()
        }
    };
    let observed: Vec<v1::OrderObserved> = read(v1::OrderObserved::subject(STORE))
        .await
        .iter()
        .filter_map(|m| v1::OrderObserved::decode(m.payload.as_ref()).ok())
        .filter(|e| e.order_id == id as i64)
        .collect();
    assert!(
        observed
            .iter()
            .any(|e| e.source == v1::order_observed::Source::Webhook as i32),
        "{observed:?}"
    );
    let imported = eventually("OrderImported", WAIT, || async {
        read(v1::OrderImported::subject(STORE))
            .await
            .iter()
            .filter_map(|m| v1::OrderImported::decode(m.payload.as_ref()).ok())
            .find(|e| e.woo_order_id == id as i64)
    })
    .await;
    assert_eq!(dec(&imported.total), woo_total);
}

/// A shop that enters prices without tax: each product must be in the tax class of its DUELL
/// VAT rate, or WooCommerce adds the standard 25 % to a 15 % product's net price and the buyer
/// pays more than DUELL's price. The classes come from the shop's own tax tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_written_in_the_tax_class_of_their_vat_rate() {
    let mut world = World::empty_shop(
        Settings {
            prices_include_tax: false,
            ..Settings::norway()
        },
        &[r#"poll_interval = "500ms""#],
    )
    .await;
    let wanted = [
        ("MAT-2", "49.90", 15u32, "food"),
        ("BOK-2", "199.00", 12, "reduced-rate"),
        ("KAP-2", "99.00", 25, ""),
    ];
    for (sku, price, vat, _) in wanted {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            price_inc_vat: Some(dec(price)),
            vatrate_percent: Some(vat),
            stock: Some(100.into()),
            ..NewSimProduct::default()
        });
    }
    block(|| world.start(&[POLLER, "catalog-publisher"]));
    for (sku, _, _, class) in wanted {
        let p = eventually("the product in WooCommerce", WAIT, || async {
            world.woo_products().await.get(sku).cloned()
        })
        .await;
        let json = world.woo.product_json(p.id).expect("the product");
        assert_eq!(json["tax_class"], class, "{sku}: {json}");
    }
    // What the buyer pays is DUELL's price, to the øre.
    let id = world
        .woo
        .place_order(&PlaceOrder {
            lines: wanted
                .iter()
                .map(|(sku, ..)| PlaceLine {
                    sku: Some((*sku).into()),
                    quantity: 1,
                    ..PlaceLine::default()
                })
                .collect(),
            billing: [("country", "NO"), ("email", "kari@example.no")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
                .collect(),
            ..PlaceOrder::default()
        })
        .expect("woo-sim takes the order");
    let woo = world.woo.order_json(id).expect("the order");
    assert_eq!(
        dec(woo["total"].as_str().expect("total")),
        dec("347.90"),
        "49.90 + 199.00 + 99.00: {woo}"
    );
}
