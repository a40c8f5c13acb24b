//! The importer's modes and settings against the simulators: customer orders, sales orders,
//! stock deductions; eligibility settings; customers; products (links, SKUs, creation,
//! parking and the automatic retry); shipping and fees; totals; stock holds.

mod common;

use common::*;
use duellsync_duell_sim::SimOrder;
use duellsync_events::v1::{self, order_imported::Kind, stock_hold_changed::Phase};
use duellsync_events::{headers, meta, EventId};
use duellsync_woo_sim::{PlaceFee, PlaceShipping};
use rust_decimal_macros::dec;

async fn one_customer_order(app: &TestApp, id: i64) -> SimOrder {
    eventually("one customer order", WAIT, || {
        let o = app.customer_orders_for(id);
        (o.len() == 1).then(|| o[0].clone())
    })
    .await
}

/// DUELL shows product `id` under `number` (as the change-poller reports it).
fn product_observed(id: u64, number: &str, hash: &str) -> v1::ProductObserved {
    v1::ProductObserved {
        meta: Some(meta(
            STORE,
            EventId::new("p", STORE).int(id as i64).finish(),
            "test",
            "c".into(),
        )),
        product: Some(v1::DuellProduct {
            product_id: id as i64,
            product_number: number.into(),
            name: format!("Vare {number}"),
            ..Default::default()
        }),
        content_hash: hash.into(),
    }
}

async fn imported(app: &TestApp, id: i64) -> v1::OrderImported {
    eventually_async("OrderImported", WAIT, || async {
        app.order_event::<v1::OrderImported>(id).await
    })
    .await
}

#[tokio::test]
async fn imports_a_processing_order_as_one_locked_customer_order() {
    let app = spawn_app().await;
    let (duell_id, woo_id) = app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 2)], |_| {});
    app.observe(id).await;

    let o = one_customer_order(&app, id).await;
    assert_eq!(o.purchase_order_status_id, 1, "orders.initial_status");
    assert_eq!(o.order_data["is_locked"], true);
    assert_eq!(o.department_id, 2, "order department");
    assert_eq!(o.lines.len(), 1);
    let l = &o.lines[0];
    assert_eq!(l.product_id, duell_id);
    assert_eq!(l.quantity, dec!(2));
    assert_eq!(
        (l.price_inc_vat, l.price_ex_vat, l.vatrate_percent),
        (dec!(100), dec!(80), dec!(25))
    );
    assert_eq!(l.discount_amount, None);
    let customers = app.duell.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].phone, "91234567", "normalised phone");
    assert_eq!(o.customer_id, customers[0].customer_id);
    assert!(app.sales_orders_for(id).is_empty());

    let ev = imported(&app, id).await;
    assert_eq!(ev.kind, Kind::CustomerOrder as i32);
    assert_eq!(ev.duell_order_id as u64, o.order_id);
    assert_eq!(ev.duell_order_number, o.order_number);
    assert_eq!(ev.total, "200.00");
    assert!(!ev.recovered_by_lookup);
    assert_eq!(ev.lines.len(), 1);
    assert_eq!(
        (
            ev.lines[0].duell_product_id as u64,
            ev.lines[0].woo_product_id as u64
        ),
        (duell_id, woo_id)
    );
    assert_eq!(ev.lines[0].quantity, "2");

    let h = eventually_async("an IMPORTED_UNDRAWN hold", WAIT, || async {
        let h = app.order_events::<v1::StockHoldChanged>(id).await;
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].phase, Phase::ImportedUndrawn as i32);
    assert!(h[0].effective_at_ms > 0);
    assert_eq!(h[0].lines[0].sku, "A-1");

    let note = format!("Imported into DUELL as customer order {}", o.order_number);
    eventually_async("the order note", WAIT, || async {
        app.notes(id).await.contains(&note).then_some(())
    })
    .await;
    app.drained().await;
    assert_eq!(
        app.notes(id).await.iter().filter(|n| **n == note).count(),
        1
    );
    assert_eq!(
        app.woo.order_json(id as u64).unwrap()["status"],
        "processing",
        "no status_after_import"
    );
}

#[tokio::test]
async fn books_a_sales_order_when_customer_orders_are_off_and_releases_the_hold() {
    let app = spawn_app_with(|s| s.settings.push("create_customer_order = false".into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let o = eventually("one sales order", WAIT, || {
        let o = app.sales_orders_for(id);
        (o.len() == 1).then(|| o[0].clone())
    })
    .await;
    assert!(o.stock_drawn, "a sales order draws stock at once");
    let ev = imported(&app, id).await;
    assert_eq!(ev.kind, Kind::SalesOrder as i32);
    let h = eventually_async("a released hold", WAIT, || async {
        let h = app.order_events::<v1::StockHoldChanged>(id).await;
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(h[0].phase, Phase::Released as i32);
    assert!(app.customer_orders_for(id).is_empty());
}

#[tokio::test]
async fn stock_only_mode_deducts_each_line_once_from_the_stock_department() {
    let app = spawn_app_with(|s| {
        s.settings.push("create_customer_order = false".into());
        s.settings.push("deduct_stock = true".into());
    })
    .await;
    let (a, _) = app.product("A-1", "100.00");
    let (b, _) = app.product("B-2", "20.00");
    let id = app.place(&[("A-1", 2), ("B-2", 3)], |o| {
        o.shipping_line = Some(PlaceShipping {
            method_id: "flat_rate".into(),
            method_title: "Posten".into(),
            total: "49.00".into(),
        })
    });
    app.observe(id).await;
    let ev = imported(&app, id).await;
    assert_eq!(ev.kind, Kind::StockOnly as i32);
    assert_eq!(ev.duell_order_id, 0);
    app.drained().await;
    let adj = app.duell.stock_adjustments();
    assert_eq!(
        adj.len(),
        2,
        "one row per product line, none for shipping: {adj:?}"
    );
    assert!(adj.iter().all(|r| r.department_id == 1), "stock department");
    assert!(adj
        .iter()
        .any(|r| r.product_id == a && r.quantity == dec!(2)));
    assert!(adj
        .iter()
        .any(|r| r.product_id == b && r.quantity == dec!(3)));
    assert!(app.duell.customer_orders().is_empty() && app.duell.sales_orders().is_empty());
    assert!(
        app.duell.customers().is_empty(),
        "a stock deduction needs no customer"
    );
    let h = app.order_events::<v1::StockHoldChanged>(id).await;
    assert_eq!(h[0].phase, Phase::Released as i32);
    assert!(app
        .notes(id)
        .await
        .iter()
        .any(|n| n.starts_with("Stock deducted in DUELL")));
}

#[tokio::test]
async fn sync_orders_off_skips_every_order() {
    let app = spawn_app_with(|s| s.settings.push("sync_orders = false".into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let s = eventually_async("OrderSkipped", WAIT, || async {
        let s = app.order_events::<v1::OrderSkipped>(id).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert!(s[0].reason.contains("sync_orders"), "{}", s[0].reason);
    app.drained().await;
    assert!(app.duell.customer_orders().is_empty());
}

#[tokio::test]
async fn orders_outside_fetch_statuses_are_skipped_once_per_status() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |o| o.status = Some("on-hold".into()));
    let mut body = app.order_json(id);
    app.observe_json(&body).await;
    body["customer_note"] = "second delivery, other body".into();
    app.observe_json(&body).await;
    app.drained().await;
    let s = app.order_events::<v1::OrderSkipped>(id).await;
    assert_eq!(s.len(), 1, "one OrderSkipped per (order, status)");
    assert_eq!(s[0].status, "on-hold");
    assert!(s[0].reason.contains("fetch_statuses"));
    assert!(app.duell.customer_orders().is_empty());

    // Paid later: now it is eligible.
    app.woo.set_order_status(id as u64, "processing").unwrap();
    app.observe(id).await;
    one_customer_order(&app, id).await;
}

#[tokio::test]
async fn fetch_statuses_can_take_on_hold_orders() {
    let app = spawn_app_with(|s| {
        s.settings
            .push(r#"fetch_statuses = ["processing", "on-hold"]"#.into())
    })
    .await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |o| o.status = Some("on-hold".into()));
    app.observe(id).await;
    one_customer_order(&app, id).await;
}

#[tokio::test]
async fn orders_before_orders_from_date_or_below_orders_from_number_are_skipped() {
    let app =
        spawn_app_with(|s| s.settings.push(r#"orders_from_date = "2999-01-01""#.into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let s = eventually_async("OrderSkipped", WAIT, || async {
        let s = app.order_events::<v1::OrderSkipped>(id).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert!(s[0].reason.contains("orders_from_date"), "{}", s[0].reason);

    let app = spawn_app_with(|s| s.settings.push("orders_from_number = 1000000".into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let s = eventually_async("OrderSkipped", WAIT, || async {
        let s = app.order_events::<v1::OrderSkipped>(id).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert!(
        s[0].reason.contains("orders_from_number"),
        "{}",
        s[0].reason
    );
    app.drained().await;
    assert!(app.duell.customer_orders().is_empty());
}

#[tokio::test]
async fn a_returning_buyer_is_found_and_an_anonymous_order_goes_to_the_placeholder_customer() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let first = app.place(&[("A-1", 1)], |_| {});
    app.observe(first).await;
    one_customer_order(&app, first).await;
    // Same phone, written differently.
    let second = app.place(&[("A-1", 1)], |o| {
        o.billing
            .insert("phone".into(), Some("0047 91234567".into()));
        o.billing
            .insert("email".into(), Some("other@example.no".into()));
    });
    app.observe(second).await;
    let o2 = one_customer_order(&app, second).await;
    assert_eq!(app.duell.customers().len(), 1);
    assert_eq!(o2.customer_id, app.duell.customers()[0].customer_id);

    let anon = |o: &mut duellsync_woo_sim::PlaceOrder| {
        o.billing.insert("phone".into(), Some("12".into()));
        o.billing.insert("email".into(), None);
    };
    let a1 = app.place(&[("A-1", 1)], anon);
    let a2 = app.place(&[("A-1", 1)], anon);
    app.observe(a1).await;
    app.observe(a2).await;
    let o3 = one_customer_order(&app, a1).await;
    let o4 = one_customer_order(&app, a2).await;
    assert_eq!(o3.customer_id, o4.customer_id);
    let placeholder: Vec<_> = app
        .duell
        .customers()
        .into_iter()
        .filter(|c| c.customer_id == o3.customer_id)
        .collect();
    assert_eq!(placeholder[0].phone, "99999999");
    assert_eq!(app.duell.customers().len(), 2);
}

#[tokio::test]
async fn shipping_and_fee_lines_become_lines_of_dedicated_products() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let place = |app: &TestApp| {
        app.place(&[("A-1", 1)], |o| {
            o.shipping_line = Some(PlaceShipping {
                method_id: "flat_rate".into(),
                method_title: "Posten".into(),
                total: "49.00".into(),
            });
            o.fee = Some(PlaceFee {
                name: "Gebyr".into(),
                total: "10.00".into(),
                ..Default::default()
            });
        })
    };
    let id = place(&app);
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(o.lines.len(), 3);
    let shipping_id = app
        .duell
        .product_ids_where(|p| p.product_number == "SHIPPING");
    let fee_id = app.duell.product_ids_where(|p| p.product_number == "FEE");
    assert_eq!((shipping_id.len(), fee_id.len()), (1, 1));
    let ship = o
        .lines
        .iter()
        .find(|l| l.line_key == "-9999999")
        .expect("shipping line");
    // Shipping is entered without VAT; the Norwegian shop adds 25 %. The fee is not taxable.
    assert_eq!(
        (
            ship.product_id,
            ship.price_inc_vat,
            ship.vatrate_percent,
            ship.quantity
        ),
        (shipping_id[0], dec!(61.25), dec!(25), dec!(1))
    );
    let fee = o
        .lines
        .iter()
        .find(|l| l.product_id == fee_id[0])
        .expect("fee line");
    assert_eq!(
        (fee.price_inc_vat, fee.vatrate_percent),
        (dec!(10), dec!(0))
    );
    assert_eq!(
        TestApp::booked(&o).to_string(),
        app.order_json(id)["total"].as_str().unwrap()
    );
    assert_eq!(
        app.duell
            .categories()
            .iter()
            .filter(|c| c.category_name == "DIVERSE")
            .count(),
        1
    );

    let id2 = place(&app);
    app.observe(id2).await;
    one_customer_order(&app, id2).await;
    assert_eq!(
        app.duell
            .product_ids_where(|p| p.product_number == "SHIPPING")
            .len(),
        1,
        "created once"
    );
}

#[tokio::test]
async fn a_link_from_the_catalogue_publisher_resolves_a_line() {
    let app = spawn_app().await;
    let duell_id = app.duell_product("D-1", "30.00");
    // In WooCommerce the product carries another SKU: only the link can resolve it.
    let woo_id = app.woo_product("WOO-ONLY", "30.00");
    let id = EventId::new("applied", STORE).int(woo_id as i64).finish();
    app.publish(&v1::ProductApplied {
        meta: Some(meta(STORE, id, "test", "c".into())),
        product_id: duell_id as i64,
        sku: "D-1".into(),
        woo_id: woo_id as i64,
        action: v1::product_applied::Action::Linked as i32,
        fields: vec![],
        caused_by: vec![],
    })
    .await;
    app.drained().await;
    let order = app.place(&[("WOO-ONLY", 1)], |_| {});
    app.observe(order).await;
    let o = one_customer_order(&app, order).await;
    assert_eq!(o.lines[0].product_id, duell_id);
}

#[tokio::test]
async fn an_unknown_product_parks_the_order_until_the_product_appears() {
    let app = spawn_app().await;
    app.woo_product("B-1", "40.00");
    let id = app.place(&[("B-1", 1)], |_| {});
    app.observe(id).await;

    let parked = eventually_async("OrderParked", WAIT, || async {
        app.order_event::<v1::OrderParked>(id).await
    })
    .await;
    assert_eq!(parked.code, "unknown_product");
    assert_eq!(parked.missing_skus, vec!["B-1".to_owned()]);
    let dead = eventually_async("a dead letter", WAIT, || async {
        let d = app.dead_letters().await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    let reason = dead[0].header(headers::DLQ_REASON).unwrap_or_default();
    assert!(
        reason.contains("B-1") && reason.contains("create_missing_products"),
        "{reason}"
    );
    // Another observation of the still-parked order is not dead-lettered again.
    let mut body = app.order_json(id);
    body["customer_note"] = "again".into();
    app.observe_json(&body).await;
    app.drained().await;
    assert_eq!(app.dead_letters().await.len(), 1);
    assert!(app.duell.customer_orders().is_empty());

    // The product appears in DUELL (the change-poller reports it).
    let pid = app.duell_product("B-1", "40.00");
    app.publish(&product_observed(pid, "B-1", "h")).await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(o.lines[0].product_id, pid);
    assert_eq!(app.events::<v1::OrderRetryRequested>().await.len(), 1);
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

#[tokio::test]
async fn replaying_a_parked_dead_letter_imports_the_order_once_the_product_exists() {
    let app = spawn_app().await;
    app.woo_product("B-1", "40.00");
    let id = app.place(&[("B-1", 1)], |_| {});
    app.observe(id).await;
    let dead = eventually_async("a dead letter", WAIT, || async {
        app.dead_letters().await.into_iter().next()
    })
    .await;
    // Created by hand, without any event the importer would see.
    app.duell_product("B-1", "40.00");
    app.replay(&dead).await;
    one_customer_order(&app, id).await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

#[tokio::test]
async fn create_missing_products_creates_unknown_products_in_diverse() {
    let app = spawn_app_with(|s| s.settings.push("create_missing_products = true".into())).await;
    app.woo_product("C-1", "75.00");
    let id = app.place(&[("C-1", 2)], |_| {});
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    let created = app.duell.product_ids_where(|p| p.product_number == "C-1");
    assert_eq!(created.len(), 1);
    assert_eq!(o.lines[0].product_id, created[0]);
    let p = app.duell.product(created[0]).unwrap();
    assert_eq!(p.category_name, "DIVERSE");
    assert_eq!(p.price_inc_vat, dec!(75));
}

#[tokio::test]
async fn a_total_that_does_not_add_up_parks_the_order() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    let mut body = app.order_json(id);
    body["total"] = "60.00".into(); // e.g. a gift card plugin took 40 off without a line
    app.observe_json(&body).await;
    let parked = eventually_async("OrderParked", WAIT, || async {
        app.order_event::<v1::OrderParked>(id).await
    })
    .await;
    assert_eq!(parked.code, "total_mismatch");
    assert!(parked.reason.contains("60"), "{}", parked.reason);
    app.drained().await;
    assert!(app.duell.customer_orders().is_empty());
}

#[tokio::test]
async fn status_after_import_moves_the_woo_order_and_the_note_names_the_duell_order() {
    let app =
        spawn_app_with(|s| s.settings.push(r#"status_after_import = "on-hold""#.into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    eventually("status_after_import", WAIT, || {
        (app.woo.order_json(id as u64).unwrap()["status"] == "on-hold").then_some(())
    })
    .await;
    // The note is written after the status: wait for it rather than read once.
    eventually_async("the note naming the DUELL order", WAIT, || async {
        let notes = app.notes(id).await;
        notes
            .iter()
            .any(|n| n.contains(&o.order_number))
            .then_some(())
    })
    .await;
    // The status change comes back as an observation: nothing more happens.
    app.observe(id).await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

#[tokio::test]
async fn an_order_cancelled_before_import_releases_its_hold_and_a_late_older_body_is_ignored() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    let processing = app.order_json(id);
    app.woo.set_order_status(id as u64, "cancelled").unwrap();
    app.observe(id).await;
    let h = eventually_async("a released hold", WAIT, || async {
        let h = app.order_events::<v1::StockHoldChanged>(id).await;
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(h[0].phase, Phase::Released as i32);
    assert_eq!(h[0].lines[0].sku, "A-1");
    // The processing body arrives late (a slow webhook): it is older, so nothing is imported.
    app.observe_json(&processing).await;
    app.drained().await;
    assert!(app.duell.customer_orders().is_empty());
}

#[tokio::test]
async fn a_customer_order_releases_its_hold_when_duell_draws_its_stock() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    let o = one_customer_order(&app, id).await;
    imported(&app, id).await;
    let status = |n: i32| v1::OrderStatusObserved {
        meta: Some(meta(
            STORE,
            EventId::new("st", STORE).int(id).int(n as i64).finish(),
            "test",
            "c".into(),
        )),
        woo_order_id: id,
        duell_order_id: o.order_id as i64,
        status_id: n,
        previous_status_id: 1,
    };
    app.publish(&status(2)).await; // Venter: not drawn
    app.drained().await;
    assert_eq!(app.order_events::<v1::StockHoldChanged>(id).await.len(), 1);
    app.publish(&status(3)).await; // Sendt: drawn
    let h = eventually_async("a released hold", WAIT, || async {
        let h = app.order_events::<v1::StockHoldChanged>(id).await;
        (h.len() == 2).then_some(h)
    })
    .await;
    assert_eq!(h[1].phase, Phase::Released as i32);
    app.publish(&status(5)).await;
    app.drained().await;
    assert_eq!(
        app.order_events::<v1::StockHoldChanged>(id).await.len(),
        2,
        "released once"
    );
}

#[tokio::test]
async fn a_malformed_observation_is_dead_lettered_with_the_reason() {
    let app = spawn_app().await;
    let mut ev = observation(&serde_json::json!({"id": 77}));
    ev.payload_json = b"{not json".to_vec();
    app.publish(&ev).await;
    let dead = eventually_async("a dead letter", WAIT, || async {
        app.dead_letters().await.into_iter().next()
    })
    .await;
    assert!(dead
        .header(headers::DLQ_REASON)
        .unwrap_or_default()
        .contains("not JSON"));
}

#[tokio::test]
async fn a_line_without_sku_is_parked_until_the_catalogue_publisher_links_its_product() {
    let app = spawn_app_with(|s| s.settings.push("create_missing_products = true".into())).await;
    let woo_id = app
        .woo
        .admin_write_product(
            None,
            serde_json::json!({"name": "Uten SKU", "regular_price": "15.00"}),
        )
        .unwrap();
    let id = app.place(&[], |o| {
        o.lines = vec![duellsync_woo_sim::PlaceLine {
            product_id: Some(woo_id),
            sku: None,
            quantity: 1,
        }]
    });
    app.observe(id).await;
    let parked = eventually_async("OrderParked", WAIT, || async {
        app.order_event::<v1::OrderParked>(id).await
    })
    .await;
    assert_eq!(parked.code, "unknown_product");
    assert!(
        parked.reason.contains(&woo_id.to_string()),
        "{}",
        parked.reason
    );
    assert!(
        app.duell
            .product_ids_where(|p| p.product_name == "Uten SKU")
            .is_empty(),
        "nothing to create without a SKU"
    );

    let duell_id = app.duell_product("U-1", "15.00");
    app.publish(&v1::ProductApplied {
        meta: Some(meta(
            STORE,
            EventId::new("applied", STORE).int(woo_id as i64).finish(),
            "test",
            "c".into(),
        )),
        product_id: duell_id as i64,
        sku: "U-1".into(),
        woo_id: woo_id as i64,
        action: v1::product_applied::Action::Linked as i32,
        fields: vec![],
        caused_by: vec![],
    })
    .await;
    let o = one_customer_order(&app, id).await;
    assert_eq!(o.lines[0].product_id, duell_id);
}

#[tokio::test]
async fn orders_imported_at_once_share_one_new_customer_and_one_shipping_product() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let ids: Vec<i64> = (0..6)
        .map(|_| {
            app.place(&[("A-1", 1)], |o| {
                o.shipping_line = Some(PlaceShipping {
                    method_id: "flat_rate".into(),
                    method_title: "Posten".into(),
                    total: "49.00".into(),
                })
            })
        })
        .collect();
    let bodies: Vec<_> = ids.iter().map(|id| app.order_json(*id)).collect();
    futures::future::join_all(bodies.iter().map(|b| app.observe_json(b))).await;
    for id in &ids {
        one_customer_order(&app, *id).await;
    }
    assert_eq!(app.duell.customers().len(), 1);
    assert_eq!(
        app.duell
            .product_ids_where(|p| p.product_number == "SHIPPING")
            .len(),
        1
    );
    assert_eq!(
        app.duell
            .categories()
            .iter()
            .filter(|c| c.category_name == "DIVERSE")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_found_product_and_buyer_are_reused_until_duell_changes_the_product() {
    let mut app = spawn_app().await;
    let (old, _) = app.product("A-1", "100.00");
    let first = app.place(&[("A-1", 1)], |_| {});
    app.observe(first).await;
    one_customer_order(&app, first).await;
    let lookups = app.duell.request_count("product/list");
    assert!(lookups >= 1, "the first order looked the SKU up");
    let second = app.place(&[("A-1", 2)], |_| {});
    app.observe(second).await;
    assert_eq!(
        one_customer_order(&app, second).await.lines[0].product_id,
        old
    );
    assert_eq!(
        app.duell.request_count("product/list"),
        lookups,
        "the second order reused what the first found"
    );

    // In DUELL the SKU moves to a new product: the old one is renumbered, which the
    // change-poller reports under its new number.
    app.duell
        .update_product(
            old,
            duellsync_duell_sim::ProductPatch {
                product_number: Some("A-1-OLD".into()),
                ..Default::default()
            },
        )
        .expect("renumbered");
    let new = app.duell_product("A-1", "100.00");
    app.publish(&product_observed(old, "A-1-OLD", "h2")).await;
    app.drained().await;
    let third = app.place(&[("A-1", 1)], |_| {});
    app.observe(third).await;
    assert_eq!(
        one_customer_order(&app, third).await.lines[0].product_id,
        new
    );

    // A returning buyer the importer did not create: looked up by phone once, then reused.
    app.lose_the_volume().await;
    let customers = app.duell.request_count("customer/list");
    let fourth = app.place(&[("A-1", 1)], |_| {});
    app.observe(fourth).await;
    let o4 = one_customer_order(&app, fourth).await;
    let fifth = app.place(&[("A-1", 1)], |_| {});
    app.observe(fifth).await;
    let o5 = one_customer_order(&app, fifth).await;
    assert_eq!(o4.customer_id, o5.customer_id);
    assert_eq!(app.duell.customers().len(), 1);
    assert_eq!(app.duell.request_count("customer/list"), customers + 1);
}

#[tokio::test]
async fn a_refused_order_forgets_what_lookups_found_so_its_replay_resolves_afresh() {
    let app = spawn_app().await;
    let (old, _) = app.product("A-1", "100.00");
    let first = app.place(&[("A-1", 1)], |_| {});
    app.observe(first).await;
    one_customer_order(&app, first).await;
    // Replaced in DUELL before the change-poller reports it: the importer still has the old
    // product for A-1, and DUELL refuses an order line with a deleted product.
    app.duell.delete_product(old).expect("deleted");
    let new = app.duell_product("A-1", "100.00");
    let second = app.place(&[("A-1", 1)], |_| {});
    app.observe(second).await;
    let dead = eventually_async("a dead letter", WAIT, || async {
        app.dead_letters().await.into_iter().next()
    })
    .await;
    assert!(app.customer_orders_for(second).is_empty());
    app.replay(&dead).await;
    let o = one_customer_order(&app, second).await;
    assert_eq!(o.lines[0].product_id, new);
}
