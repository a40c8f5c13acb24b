//! Write endpoints: always against the simulator, against a real account only with
//! `DUELL_CONTRACT_WRITE=1` (they create a customer, a product, a category and orders there).

use duellsync_duell::{
    CustomerInput, Error, NewCategory, NewProduct, OrderStatus, ProductQuery, StockAdjustment,
};
use rust_decimal::Decimal;

use crate::harness::{may_write, target, Target};
use crate::order;

async fn some_product(t: &Target) -> duellsync_duell::Product {
    let page = t
        .client
        .products(ProductQuery::webshop())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    page.into_iter()
        .find(|p| !p.is_parent)
        .expect("a product without variants")
}

async fn test_customer(t: &Target) -> duellsync_duell::CustomerId {
    t.client
        .upsert_customer(&CustomerInput {
            customer_name: "Duellsync Kontrakttest".into(),
            phone: Some("99999991".into()),
            email: Some("contract-test@example.no".into()),
            city: Some("Oslo".into()),
            ..CustomerInput::default()
        })
        .await
        .expect("customer created")
}

#[tokio::test]
async fn creates_a_customer_with_put_and_updates_it_by_id() {
    let t = target().await;
    if !may_write(&t, "creates_a_customer_with_put_and_updates_it_by_id") {
        return;
    }
    let id = test_customer(&t).await;
    let updated = t
        .client
        .upsert_customer(&CustomerInput {
            customer_id: Some(id),
            customer_name: "Duellsync Kontrakttest Endret".into(),
            phone: Some("99999991".into()),
            ..CustomerInput::default()
        })
        .await
        .expect("updated");
    assert_eq!(updated, id);
    let found = t.client.find_customers_by_phone("99999991").await.unwrap();
    assert!(found.iter().any(|c| c.customer_id == id));
    if let Some(sim) = &t.sim {
        let c = sim
            .customers()
            .into_iter()
            .find(|c| c.customer_id == id.0)
            .unwrap();
        assert_eq!(c.customer_name, "Duellsync Kontrakttest Endret");
        assert_eq!(c.email, "contract-test@example.no");
    }
}

#[tokio::test]
async fn creates_a_category_and_a_product_in_it() {
    let t = target().await;
    if !may_write(&t, "creates_a_category_and_a_product_in_it") {
        return;
    }
    let category = match t.client.find_category_by_name("DIVERSE").await.unwrap() {
        Some(c) => c.category_id,
        None => {
            let saved = t
                .client
                .save_categories(&[NewCategory {
                    category_name: "DIVERSE".into(),
                    category_type: "product".into(),
                }])
                .await
                .expect("category");
            saved.data[0].category_id
        }
    };
    let saved = t
        .client
        .save_products(&[NewProduct {
            product_name: "SHIPPING".into(),
            product_number: "SHIPPING-CONTRACT-TEST".into(),
            price_inc_vat: Decimal::new(4900, 2),
            vatrate_percent: Decimal::from(25),
            category_id: Some(category),
            description: None,
        }])
        .await
        .expect("product");
    assert!(saved.is_complete());
    let id = saved.data[0].product_id;
    let found = t
        .client
        .find_products_by_number("SHIPPING-CONTRACT-TEST")
        .await
        .unwrap();
    assert!(found.iter().any(|p| p.product_id == id));
    if let Some(sim) = &t.sim {
        let c = t
            .client
            .save_categories(&[NewCategory {
                category_name: "Kontrakt > Test".into(),
                category_type: "product".into(),
            }])
            .await
            .unwrap();
        assert!(sim
            .categories()
            .iter()
            .any(|x| x.category_id == c.data[0].category_id.0));
        assert_eq!(
            sim.product(id.0).unwrap().price_inc_vat,
            Decimal::new(49, 0)
        );
    }
}

#[tokio::test]
async fn creates_a_customer_order_and_reads_its_status_back() {
    let t = target().await;
    if !may_write(&t, "creates_a_customer_order_and_reads_its_status_back") {
        return;
    }
    let customer = test_customer(&t).await;
    let product = some_product(&t).await;
    let reference = format!("ct-{}", std::process::id());
    let saved = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[order(&reference, customer, product.product_id, 1)],
        )
        .await
        .expect("order saved");
    assert!(saved.is_complete());
    assert_eq!(saved.total_affected, Some(1));
    let created = saved
        .order_for(&reference)
        .expect("order for the reference");
    let view = t
        .client
        .view_customer_order(created.order_id)
        .await
        .expect("view");
    assert_eq!(view.status(), Some(OrderStatus::Processing));
    if let Some(sim) = &t.sim {
        assert!(!view.product_data.is_empty());
        let o = &sim.customer_orders()[0];
        assert_eq!(o.reference(), reference);
        assert_eq!(o.lines[0].quantity, Decimal::ONE);
        assert_eq!(o.purchase_order_status_id, 1);
        sim.set_order_status(created.order_id.0, 5).unwrap();
        let view = t
            .client
            .view_customer_order(created.order_id)
            .await
            .expect("view");
        assert_eq!(view.status(), Some(OrderStatus::Completed));
    }
}

#[tokio::test]
async fn views_of_unknown_orders_are_rejected() {
    let t = target().await;
    let err = t
        .client
        .view_customer_order(duellsync_duell::OrderId(987_654_321))
        .await
        .expect_err("no such order");
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn creates_a_sales_order_linked_to_a_customer_order() {
    let t = target().await;
    if !may_write(&t, "creates_a_sales_order_linked_to_a_customer_order") {
        return;
    }
    let customer = test_customer(&t).await;
    let product = some_product(&t).await;
    let reference = format!("cs-{}", std::process::id());
    let co = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[order(&reference, customer, product.product_id, 1)],
        )
        .await
        .expect("customer order");
    let mut sale = order(&reference, customer, product.product_id, 1);
    sale.ref_customer_order_id = Some(co.data[0].order_id);
    let so = t
        .client
        .save_sales_orders(&t.order_department, &[sale])
        .await
        .expect("sales order");
    assert_eq!(so.data.len(), 1);
    if let Some(sim) = &t.sim {
        let s = &sim.sales_orders()[0];
        assert_eq!(s.ref_order_id, Some(co.data[0].order_id.0));
        assert!(
            sim.customer_orders()[0].stock_drawn,
            "the linked sale draws the customer order"
        );
    }
}

#[tokio::test]
async fn adjusts_stock_and_reports_unknown_product_numbers_per_row() {
    let t = target().await;
    if t.sim.is_none()
        && !may_write(
            &t,
            "adjusts_stock_and_reports_unknown_product_numbers_per_row",
        )
    {
        return;
    }
    // Against a real account only the unknown product number is sent: nothing changes there.
    let mut lines = vec![StockAdjustment {
        product_number: "NO-SUCH-SKU-CONTRACT-TEST".into(),
        quantity: Decimal::ONE,
    }];
    let sim_product = t.sim.as_ref().map(|sim| {
        let id = sim.product_ids_where(|p| !p.is_deleted && !p.is_parent)[0];
        sim.product(id).unwrap()
    });
    if let Some(p) = &sim_product {
        lines.insert(
            0,
            StockAdjustment {
                product_number: p.product_number.clone(),
                quantity: Decimal::from(2),
            },
        );
    }
    let before = sim_product
        .as_ref()
        .map(|p| t.sim.as_ref().unwrap().stock(1, p.product_id));
    let outcome = t
        .client
        .adjust_stock(&t.stock_department, &lines)
        .await
        .expect("adjust");
    assert!(
        !outcome.is_complete(),
        "the unknown product number is reported"
    );
    let v = outcome.validation.expect("validation_message");
    assert!(!v.entries().is_empty());
    if let (Some(sim), Some(p), Some(before)) = (&t.sim, &sim_product, before) {
        assert_eq!(v.for_row("NO-SUCH-SKU-CONTRACT-TEST").len(), 1);
        // Duplicate item numbers: the sim adjusts the lowest id, which is `p` or an earlier one.
        let adj = sim.stock_adjustments();
        assert_eq!(adj.len(), 1);
        assert_eq!(adj[0].quantity, Decimal::from(2));
        if adj[0].product_id == p.product_id {
            assert_eq!(
                sim.stock(1, p.product_id).physical,
                before.physical - Decimal::from(2)
            );
        }
    }
}
