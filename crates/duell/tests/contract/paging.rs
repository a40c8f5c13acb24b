//! Paging over DUELL's 100-row cap.

use std::collections::HashSet;

use duellsync_duell::{ProductQuery, SortOrder, StockQuery};
use duellsync_duell_sim::{NewSimProduct, SimConfig};
use futures::TryStreamExt as _;

use crate::harness::{sim_only, target};

#[tokio::test]
async fn pages_a_10000_product_catalogue_over_the_cap_returning_every_product_once() {
    let config = SimConfig {
        products: 10_000,
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("pages_a_10000_product_catalogue", config, |_| {}).await else {
        return;
    };
    // Ask for 500 per page: the server sends 100, and `start` must move by 100.
    let query = ProductQuery {
        page_size: 500,
        ..ProductQuery::default()
    };
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut stream = std::pin::pin!(t.client.products(query).into_stream());
    while let Some(page) = stream.try_next().await.expect("page") {
        assert!(page.len() <= 100);
        pages += 1;
        for p in page {
            assert!(
                seen.insert(p.product_id.0),
                "product {} returned twice",
                p.product_id
            );
        }
    }
    let want: HashSet<u64> = sim
        .product_ids_where(|p| !p.is_deleted)
        .into_iter()
        .collect();
    assert_eq!(seen, want);
    let expected_pages = want.len().div_ceil(100) as u64;
    assert_eq!(pages, expected_pages);
    // Paging stops at total_count: no extra request for an empty page.
    assert_eq!(sim.request_count("product/list"), expected_pages);
}

#[tokio::test]
async fn pages_stock_over_the_cap_without_repeats() {
    let config = SimConfig {
        products: 1_234,
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("pages_stock_over_the_cap", config, |_| {}).await else {
        return;
    };
    let mut query = StockQuery::department(t.stock_department.clone());
    query.page_size = 1000;
    let rows = t.client.stock(query).collect_all().await.expect("stock");
    let ids: HashSet<u64> = rows.iter().map(|r| r.product_id.0).collect();
    assert_eq!(ids.len(), rows.len());
    assert_eq!(ids.len(), sim.product_ids_where(|p| !p.is_deleted).len());
}

#[tokio::test]
async fn drops_rows_repeated_when_new_products_shift_the_offsets() {
    let config = SimConfig {
        products: 300,
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("drops_rows_repeated_when_offsets_shift", config, |_| {}).await
    else {
        return;
    };
    // Newest first: products created while paging push earlier rows onto later pages.
    let query = ProductQuery {
        sort_order: SortOrder::Desc,
        ..ProductQuery::default()
    };
    let mut pages = t.client.products(query);
    let mut seen = Vec::new();
    let first = pages.next_page().await.unwrap().unwrap();
    seen.extend(first.iter().map(|p| p.product_id.0));
    for i in 0..7 {
        sim.create_product(NewSimProduct {
            product_name: format!("Ny vare {i}"),
            ..Default::default()
        });
    }
    while let Some(page) = pages.next_page().await.unwrap() {
        seen.extend(page.iter().map(|p| p.product_id.0));
    }
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no product twice");
    let original: HashSet<u64> = sim
        .product_ids_where(|p| !p.is_deleted && p.product_id <= 300)
        .into_iter()
        .collect();
    assert!(
        original.is_subset(&unique),
        "every product that existed before is seen"
    );
}

#[tokio::test]
async fn first_page_never_exceeds_100_rows_whatever_length_asks() {
    let t = target().await;
    let page = t
        .client
        .products(ProductQuery {
            page_size: 1000,
            ..ProductQuery::default()
        })
        .next_page()
        .await
        .expect("page")
        .expect("rows");
    assert!(page.len() <= 100);
}
