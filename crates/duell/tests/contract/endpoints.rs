//! Read endpoints, against the simulator or a real account.

use duellsync_duell::{ProductQuery, StockQuery};

use crate::harness::target;

#[tokio::test]
async fn logs_in_and_lists_departments_with_their_tokens() {
    let t = target().await;
    t.client.login().await.expect("login");
    let departments = t.client.departments().await.expect("departments");
    assert!(!departments.is_empty());
    assert!(departments.iter().all(|d| d.api_token.is_some()));
    if let Some(sim) = &t.sim {
        assert_eq!(sim.login_count(), 1);
        assert_eq!(sim.request_count("department/list"), 1);
    }
}

#[tokio::test]
async fn lists_products_with_total_count_and_typed_fields() {
    let t = target().await;
    let mut pages = t.client.products(ProductQuery::default());
    let page = pages
        .next_page()
        .await
        .expect("page")
        .expect("a non-empty catalogue");
    assert!(!page.is_empty() && page.len() <= 100);
    assert!(pages.total_count().expect("total_count") >= page.len() as u64);
    assert!(page.iter().all(|p| !p.is_deleted));
    if let Some(sim) = &t.sim {
        let p = &page[0];
        let s = sim.product(p.product_id.0).expect("known product");
        assert_eq!(p.product_name, s.product_name);
        assert_eq!(p.price_inc_vat, s.price_inc_vat);
        assert_eq!(p.special_price, s.special_price);
        assert_eq!(
            p.vatrate_percent,
            rust_decimal::Decimal::from(s.vatrate_percent)
        );
        assert_eq!(p.last_update_date, Some(s.last_update_date));
        assert_eq!(p.custom_fields.len(), s.custom_fields.len());
    }
}

#[tokio::test]
async fn lists_only_webshop_products_with_the_view_on_webshop_filter() {
    let t = target().await;
    let rows = t
        .client
        .products(ProductQuery::webshop())
        .collect_all()
        .await
        .expect("list");
    assert!(rows.iter().all(|p| p.view_on_webshop != Some(false)));
    if let Some(sim) = &t.sim {
        let want = sim.product_ids_where(|p| p.view_on_webshop && !p.is_deleted);
        let mut got: Vec<u64> = rows.iter().map(|p| p.product_id.0).collect();
        got.sort_unstable();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn finds_products_by_exact_product_number() {
    let t = target().await;
    let first = t
        .client
        .products(ProductQuery::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let wanted = &first[0];
    let found = t
        .client
        .find_products_by_number(&wanted.product_number)
        .await
        .expect("lookup");
    assert!(found.iter().any(|p| p.product_id == wanted.product_id));
    assert!(found
        .iter()
        .all(|p| p.product_number == wanted.product_number));
    let none = t
        .client
        .find_products_by_number("no-such-sku-contract-test")
        .await
        .expect("lookup");
    assert!(none.is_empty());
}

#[tokio::test]
async fn lists_deleted_products_only_with_the_is_deleted_filter() {
    let t = target().await;
    let deleted = t
        .client
        .products(ProductQuery::deleted())
        .collect_all()
        .await
        .expect("deleted");
    assert!(deleted.iter().all(|p| p.is_deleted));
    if let Some(sim) = &t.sim {
        assert_eq!(deleted.len(), sim.product_ids_where(|p| p.is_deleted).len());
        assert!(
            !deleted.is_empty(),
            "the generated catalogue has deleted products"
        );
    }
}

#[tokio::test]
async fn filters_products_by_category_id() {
    let t = target().await;
    let first = t
        .client
        .products(ProductQuery::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let Some(category) = first.iter().find_map(|p| p.category_id) else {
        println!("no product with a category; nothing to check");
        return;
    };
    let rows = t
        .client
        .products(ProductQuery {
            category_id: Some(category),
            ..ProductQuery::default()
        })
        .collect_all()
        .await
        .expect("list");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|p| p.category_id == Some(category)));
}

#[tokio::test]
async fn lists_products_changed_since_a_last_update_date() {
    let t = target().await;
    let far_future = time::macros::datetime!(2099-01-01 00:00:00);
    let rows = t
        .client
        .products(ProductQuery {
            last_update_date: Some(far_future),
            ..ProductQuery::default()
        })
        .collect_all()
        .await
        .expect("list");
    if let Some(sim) = &t.sim {
        assert!(rows.is_empty());
        let newest = sim
            .products()
            .iter()
            .map(|p| p.last_update_date)
            .max()
            .unwrap();
        let changed = sim
            .update_product(
                3,
                duellsync_duell_sim::ProductPatch {
                    product_name: Some("Endret navn".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(changed.last_update_date > newest);
        let since = t
            .client
            .products(ProductQuery {
                last_update_date: Some(changed.last_update_date),
                ..ProductQuery::default()
            })
            .collect_all()
            .await
            .expect("list");
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].product_name, "Endret navn");
    }
}

#[tokio::test]
async fn lists_categories_and_finds_one_by_name() {
    let t = target().await;
    let all = t
        .client
        .categories(None)
        .collect_all()
        .await
        .expect("categories");
    assert!(!all.is_empty());
    let name = all[0].category_name.clone();
    let found = t.client.find_category_by_name(&name).await.expect("lookup");
    assert_eq!(found.map(|c| c.category_id), Some(all[0].category_id));
}

#[tokio::test]
async fn lists_stock_of_the_stock_department() {
    let t = target().await;
    let mut query = StockQuery::department(t.stock_department.clone());
    query.view_on_webshop = Some(true);
    let mut pages = t.client.stock(query);
    let page = pages.next_page().await.expect("stock").expect("rows");
    assert!(page.iter().all(|r| r.department.len() == 1));
    if let Some(sim) = &t.sim {
        let row = &page[0];
        let level = sim.stock(1, row.product_id.0);
        let dep = row.department_stock(Some(1)).expect("department 1");
        assert_eq!(dep.stock, level.physical);
        assert_eq!(dep.actual_stock, Some(level.available()));
        assert_eq!(
            pages.total_count(),
            Some(
                sim.product_ids_where(|p| p.view_on_webshop && !p.is_deleted)
                    .len() as u64
            )
        );
    }
}

#[tokio::test]
async fn lists_stock_of_every_department_without_a_department_token() {
    let t = target().await;
    let query = StockQuery {
        department: None,
        ..StockQuery::department(t.stock_department.clone())
    };
    let page = t
        .client
        .stock(query)
        .next_page()
        .await
        .expect("stock")
        .expect("rows");
    let departments = t.client.departments().await.expect("departments");
    assert!(page.iter().all(|r| r.department.len() == departments.len()));
}

#[tokio::test]
async fn finds_customers_by_phone_and_by_email() {
    let t = target().await;
    let none = t
        .client
        .find_customers_by_phone("00000001")
        .await
        .expect("lookup");
    assert!(none.is_empty());
    if let Some(sim) = &t.sim {
        let c = sim.customers()[0].clone();
        let by_phone = t
            .client
            .find_customers_by_phone(&c.phone)
            .await
            .expect("phone");
        assert_eq!(by_phone[0].customer_id.0, c.customer_id);
        let by_email = t
            .client
            .find_customers_by_email(&c.email.to_uppercase())
            .await
            .expect("email");
        assert_eq!(by_email[0].customer_id.0, c.customer_id);
    }
}
