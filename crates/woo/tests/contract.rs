//! Contract suite: runs against the in-process simulator, or unchanged against a real store
//! when `WOO_URL`, `WOO_CONSUMER_KEY`, `WOO_CONSUMER_SECRET` (and `WOO_CA_CERT`) are set.
//! Tests that need the simulator's control API print a note and skip on a real store.

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{Receiver, Target};
use duellsync_woo::*;
use duellsync_woo_sim::{FaultKind, FaultRule, PlaceLine, PlaceOrder, Settings, SimConfig};
use rust_decimal::Decimal;
use secrecy::SecretString;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn simple(t: &Target, sku: &str, price: &str, stock: Option<i64>) -> ProductWrite {
    ProductWrite {
        name: Some(format!("Contract {sku}")),
        sku: Some(t.sku(sku)),
        regular_price: Some(Clearable::Set(d(price))),
        manage_stock: Some(stock.is_some()),
        stock_quantity: stock,
        ..Default::default()
    }
}

async fn cleanup_products(c: &WooClient, ids: &[u64]) {
    for id in ids {
        let _ = c.delete_product(*id, true).await;
    }
}

#[tokio::test]
async fn creates_reads_updates_finds_and_deletes_a_product() {
    let t = Target::new().await;
    let c = t.client();
    let p = c
        .create_product(&simple(&t, "MUG", "12.90", Some(10)))
        .await
        .unwrap();
    assert_eq!(p.sku, t.sku("MUG"));
    assert_eq!(p.regular_price, Some(d("12.90")));
    assert_eq!(p.price, Some(d("12.90")));
    assert_eq!(p.manage_stock, ManageStock::Yes);
    assert_eq!(p.stock_quantity, Some(10));
    assert_eq!(p.stock_status, Some(StockStatus::Instock));

    let upd = ProductWrite {
        regular_price: Some(Clearable::Set(d("14.50"))),
        sale_price: Some(Clearable::Set(d("11.00"))),
        stock_quantity: Some(25),
        meta_data: Some(vec![MetaWrite {
            key: "duell_id".into(),
            value: Some("42".into()),
        }]),
        ..Default::default()
    };
    let p2 = c.update_product(p.id, &upd).await.unwrap();
    assert_eq!(p2.price, Some(d("11.00")));
    assert!(p2.on_sale);
    assert_eq!(p2.stock_quantity, Some(25));
    assert_eq!(p2.meta("duell_id"), Some(&serde_json::json!("42")));

    let found = c.find_by_sku(&t.sku("mug").to_lowercase()).await.unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p.id]);
    let got = c.get_product(p.id).await.unwrap();
    assert_eq!(got.sale_price, Some(d("11.00")));

    let cleared = c
        .update_product(
            p.id,
            &ProductWrite {
                sale_price: Some(Clearable::Clear),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.sale_price, None);
    assert_eq!(cleared.price, Some(d("14.50")));

    c.delete_product(p.id, true).await.unwrap();
    let err = c.get_product(p.id).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("woocommerce_rest_product_invalid_id"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn rejects_a_duplicate_sku_in_any_case_naming_the_owner() {
    let t = Target::new().await;
    let c = t.client();
    let a = c
        .create_product(&simple(&t, "Mix-AbC", "1.00", None))
        .await
        .unwrap();
    let mut dup = simple(&t, "x", "1.00", None);
    dup.sku = Some(t.sku("mix-abc"));
    let err = c.create_product(&dup).await.unwrap_err();
    assert_eq!(err.code(), Some("product_invalid_sku"));
    assert_eq!(err.status(), Some(400));
    let api = err.api_error().unwrap();
    assert_eq!(api.resource_id(), Some(a.id));
    assert_eq!(
        api.unique_sku(),
        Some(format!("{}-1", t.sku("mix-abc")).as_str())
    );

    let b = c
        .create_product(&simple(&t, "B", "1.00", None))
        .await
        .unwrap();
    let err = c
        .update_product(
            b.id,
            &ProductWrite {
                sku: Some(t.sku("Mix-AbC")),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("product_invalid_sku"));
    cleanup_products(&c, &[a.id, b.id]).await;
}

#[tokio::test]
async fn batch_returns_per_item_results_and_errors_in_request_order() {
    let t = Target::new().await;
    let c = t.client();
    let existing = c
        .create_product(&simple(&t, "B0", "5.00", Some(1)))
        .await
        .unwrap();
    let mut dup = simple(&t, "x", "1.00", None);
    dup.sku = Some(t.sku("B0"));
    let batch = Batch {
        create: vec![
            simple(&t, "B1", "1.00", Some(1)),
            dup,
            simple(&t, "B2", "2.00", None),
        ],
        update: vec![
            ProductWrite {
                id: Some(existing.id),
                stock_quantity: Some(7),
                ..Default::default()
            },
            ProductWrite {
                id: Some(999_999_001),
                stock_quantity: Some(1),
                ..Default::default()
            },
            ProductWrite {
                stock_quantity: Some(1),
                ..Default::default()
            },
        ],
        delete: vec![999_999_002],
    };
    let r = c.batch_products(&batch).await.unwrap();
    assert_eq!(r.create.len(), 3);
    assert_eq!(r.create[0].ok().unwrap().sku, t.sku("B1"));
    match &r.create[1] {
        BatchItem::Err { id, error } => {
            assert_eq!(*id, Some(0));
            assert_eq!(error.code, "product_invalid_sku");
            assert_eq!(error.resource_id(), Some(existing.id));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(r.create[2].ok().unwrap().sku, t.sku("B2"));
    assert_eq!(r.update[0].ok().unwrap().stock_quantity, Some(7));
    assert!(
        matches!(&r.update[1], BatchItem::Err { id: Some(999_999_001), error } if error.code == "woocommerce_rest_product_invalid_id")
    );
    assert!(matches!(&r.update[2], BatchItem::Err { id: None, .. }));
    assert!(matches!(&r.delete[0], BatchItem::Err { error, .. } if error.status() == Some(404)));
    let mut ids = vec![existing.id];
    ids.extend(r.create.iter().filter_map(|i| i.ok().map(|p| p.id)));
    cleanup_products(&c, &ids).await;
}

#[tokio::test]
async fn refuses_batches_over_100_items_before_sending() {
    let t = Target::new().await;
    let c = t.client();
    let batch = Batch {
        create: (0..101)
            .map(|i| simple(&t, &format!("O{i}"), "1", None))
            .collect(),
        ..Default::default()
    };
    let err = c.batch_products(&batch).await.unwrap_err();
    assert!(matches!(err, Error::BatchTooLarge(101)));
    if let Some(sim) = t.sim_only("no request reached the store") {
        assert_eq!(sim.request_count("POST products/batch"), 0);
    }
}

#[tokio::test]
async fn bad_credentials_are_a_configuration_error() {
    let t = Target::new().await;
    let mut cfg = t.config();
    cfg.consumer_secret = SecretString::from("cs_wrong".to_string());
    let c = WooClient::new(cfg).unwrap();
    let err = c.list_products(&ProductQuery::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("woocommerce_rest_authentication_error"));
    assert_eq!(err.kind(), ErrorKind::Configuration);
}

#[tokio::test]
async fn https_basic_query_and_oauth_variants_all_authenticate() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("https listener with its own CA") else {
        return;
    };
    let https = sim.https_base_url().unwrap();
    let mut cfg = t.config();
    cfg.url = https.clone();
    let basic = WooClient::new(cfg.clone()).unwrap();
    assert_eq!(basic.auth_mode(), AuthMode::Basic);
    basic.list_products(&ProductQuery::default()).await.unwrap();
    cfg.auth = AuthMode::QueryString;
    WooClient::new(cfg.clone())
        .unwrap()
        .list_products(&ProductQuery::default())
        .await
        .unwrap();
    // Without the CA the certificate is refused.
    let mut untrusted = cfg.clone();
    untrusted.ca_cert_pem = None;
    untrusted.retry.max_attempts = 1;
    let err = WooClient::new(untrusted)
        .unwrap()
        .list_products(&ProductQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    // OAuth variants over http.
    for (method, placement) in [
        (SignatureMethod::HmacSha1, OAuthPlacement::Query),
        (SignatureMethod::HmacSha256, OAuthPlacement::Query),
        (SignatureMethod::HmacSha1, OAuthPlacement::Header),
    ] {
        let mut cfg = t.config();
        cfg.auth = AuthMode::OAuth1 { method, placement };
        let q = ProductQuery {
            sku: Some("a b+c/é".into()),
            ..Default::default()
        };
        WooClient::new(cfg)
            .unwrap()
            .list_products(&q)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn stock_rules_drop_unmanaged_quantities_and_keep_negative_stock() {
    let t = Target::new().await;
    let c = t.client();
    let mut w = simple(&t, "S1", "1", None);
    w.manage_stock = Some(false);
    w.stock_quantity = Some(5);
    let unmanaged = c.create_product(&w).await.unwrap();
    assert_eq!(unmanaged.manage_stock, ManageStock::No);
    assert_eq!(unmanaged.stock_quantity, None);
    let neg = c
        .create_product(&simple(&t, "S2", "1", Some(-3)))
        .await
        .unwrap();
    assert_eq!(neg.stock_quantity, Some(-3));
    assert_eq!(neg.stock_status, Some(StockStatus::Outofstock));
    let back = c
        .update_product(
            neg.id,
            &ProductWrite {
                stock_quantity: Some(4),
                stock_status: Some(StockStatus::Outofstock),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        back.stock_status,
        Some(StockStatus::Instock),
        "derived from the quantity"
    );
    cleanup_products(&c, &[unmanaged.id, neg.id]).await;
}

#[tokio::test]
async fn a_sale_price_at_or_above_the_regular_price_is_discarded() {
    let t = Target::new().await;
    let c = t.client();
    let mut w = simple(&t, "SALE", "20", None);
    w.sale_price = Some(Clearable::Set(d("25")));
    let p = c.create_product(&w).await.unwrap();
    assert_eq!(p.sale_price, None);
    assert!(!p.on_sale);
    c.delete_product(p.id, true).await.unwrap();
}

#[tokio::test]
async fn pagination_headers_and_the_id_scan_return_every_product_exactly_once() {
    let t = Target::new().await;
    let c = t.client();
    let batch = Batch {
        create: (0..23)
            .map(|i| simple(&t, &format!("P{i:02}"), "1", Some(1)))
            .collect(),
        ..Default::default()
    };
    let created: Vec<u64> = c
        .batch_products(&batch)
        .await
        .unwrap()
        .create
        .iter()
        .filter_map(|i| i.ok().map(|p| p.id))
        .collect();
    assert_eq!(created.len(), 23);
    let page = c
        .list_products(&ProductQuery {
            include: created.clone(),
            per_page: Some(10),
            page: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, Some(23));
    assert_eq!(page.total_pages, Some(3));
    assert_eq!(page.items.len(), 10);
    let past = c
        .list_products(&ProductQuery {
            include: created.clone(),
            per_page: Some(10),
            page: Some(9),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, Some(23));
    let err = c
        .list_products(&ProductQuery {
            per_page: Some(101),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)));

    if t.is_sim() {
        let mut scan = c.scan_products(&["sku"], 7);
        let mut seen = Vec::new();
        while let Some(page) = scan.next_page().await.unwrap() {
            seen.extend(page.iter().map(|p| p.id));
            assert!(
                page.iter().all(|p| p.id != 0),
                "the client asks for id with _fields"
            );
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no product twice");
        assert!(
            created.iter().all(|id| seen.contains(id)),
            "no product missed"
        );
    }
    cleanup_products(&c, &created).await;
}

#[tokio::test]
async fn product_lists_ordered_by_date_repeat_and_skip_rows_that_share_a_timestamp() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("7.9 tie order needs many products created in one second") else {
        return;
    };
    sim.seed_products(60, &t.sku("T"), "1", 1);
    let c = t.client();
    let mut seen = Vec::new();
    for page in 1..=12 {
        let p = c
            .list_products(&ProductQuery {
                per_page: Some(5),
                page: Some(page),
                fields: vec!["id".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|p| p.id));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert!(
        unique.len() < 60,
        "a date-ordered scan must miss rows on 7.9 (got {} of 60)",
        unique.len()
    );
}

#[tokio::test]
async fn fields_trim_the_response_and_the_client_always_asks_for_id() {
    fields_trim(Target::new().await).await;
}

#[tokio::test]
async fn fields_trim_over_https_with_a_private_ca_as_woo_ca_cert_names_it() {
    // A store over https whose certificate a private CA signed: the suite's own raw requests
    // trust the CA from WOO_CA_CERT as the client does (they failed with UnknownIssuer).
    let sim = Target::https(SimConfig::default()).await;
    let Some(running) = sim.sim.as_ref() else {
        // Against a real store the target already comes from WOO_URL and WOO_CA_CERT.
        return fields_trim(sim).await;
    };
    let ca = std::env::temp_dir().join(format!("woo-ca-{}.pem", t_prefix(&sim)));
    std::fs::write(&ca, running.ca_pem().expect("the simulator's CA")).unwrap();
    let mut t = Target::real(
        sim.url.clone(),
        sim.key.clone(),
        sim.secret.clone(),
        Some(ca.display().to_string()),
    );
    assert!(t.url.starts_with("https://"), "{}", t.url);
    t.sim = sim.sim;
    fields_trim(t).await;
    let _ = std::fs::remove_file(&ca);
}

/// A name unique to this test run (the target's SKU prefix).
fn t_prefix(t: &Target) -> String {
    t.prefix.trim_end_matches('-').to_owned()
}

async fn fields_trim(t: Target) {
    let c = t.client();
    let p = c
        .create_product(&simple(&t, "F1", "3", Some(2)))
        .await
        .unwrap();
    let page = c
        .list_products(&ProductQuery {
            include: vec![p.id],
            fields: vec!["sku".into(), "stock_quantity".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items[0].id, p.id);
    assert_eq!(page.items[0].stock_quantity, Some(2));
    assert!(
        page.items[0].name.is_empty(),
        "fields not asked for are absent"
    );
    let raw = t
        .raw(
            "GET",
            &format!("/wp-json/wc/v3/products?include={}&_fields=sku", p.id),
            None,
        )
        .await;
    assert_eq!(
        raw.body,
        serde_json::json!([{ "sku": t.sku("F1") }]),
        "WooCommerce does not keep id implicitly"
    );
    c.delete_product(p.id, true).await.unwrap();
}

#[tokio::test]
async fn modified_after_is_strict_and_sent_as_utc_without_offset() {
    let t = Target::new().await;
    let c = t.client();
    let p = c
        .create_product(&simple(&t, "M1", "3", Some(2)))
        .await
        .unwrap();
    let modified = p.date_modified_gmt.unwrap().assume_utc();
    let at = c
        .list_products(&ProductQuery {
            include: vec![p.id],
            modified_after: Some(modified),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        at.items.is_empty(),
        "an object modified exactly at the cursor is excluded"
    );
    let before = c
        .list_products(&ProductQuery {
            include: vec![p.id],
            modified_after: Some(modified - Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.items.len(), 1);
    c.delete_product(p.id, true).await.unwrap();
}

#[tokio::test]
async fn variations_are_created_listed_updated_and_batched() {
    let t = Target::new().await;
    let c = t.client();
    let parent = c
        .create_product(&ProductWrite {
            name: Some("Contract tee".into()),
            kind: Some("variable".into()),
            sku: Some(t.sku("VP")),
            attributes: Some(vec![AttributeWrite {
                name: "Size".into(),
                options: Some(vec!["S".into(), "M".into()]),
                variation: Some(true),
                visible: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .await
        .unwrap();
    let v = c
        .create_variation(
            parent.id,
            &ProductWrite {
                sku: Some(t.sku("VP-S")),
                regular_price: Some(Clearable::Set(d("9.00"))),
                manage_stock: Some(true),
                stock_quantity: Some(4),
                attributes: Some(vec![AttributeWrite {
                    name: "Size".into(),
                    option: Some("S".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v.attributes[0].option.as_deref(), Some("S"));
    let found = c.find_by_sku(&t.sku("VP-S")).await.unwrap();
    assert_eq!(found[0].kind, "variation");
    assert_eq!(found[0].parent_id, parent.id);
    let upd = c
        .update_variation(
            parent.id,
            v.id,
            &ProductWrite {
                stock_quantity: Some(9),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.stock_quantity, Some(9));
    let b = c
        .batch_variations(
            parent.id,
            &Batch {
                create: vec![ProductWrite {
                    sku: Some(t.sku("VP-M")),
                    regular_price: Some(Clearable::Set(d("10"))),
                    ..Default::default()
                }],
                update: vec![ProductWrite {
                    id: Some(v.id),
                    regular_price: Some(Clearable::Set(d("8.50"))),
                    ..Default::default()
                }],
                delete: vec![],
            },
        )
        .await
        .unwrap();
    assert!(b.create[0].ok().is_some());
    assert_eq!(b.update[0].ok().unwrap().regular_price, Some(d("8.50")));
    let list = c
        .list_variations(
            parent.id,
            &ProductQuery {
                per_page: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    let err = c
        .update_product(
            v.id,
            &ProductWrite {
                stock_quantity: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("woocommerce_rest_invalid_product_id"));
    c.delete_product(parent.id, true).await.unwrap();
}

#[tokio::test]
async fn creating_an_existing_category_returns_its_id() {
    let t = Target::new().await;
    let c = t.client();
    let name = format!("{} Cat & Co", t.prefix);
    let first = c.create_category(&name, None).await.unwrap();
    assert!(matches!(first, CategoryCreated::Created(_)));
    let again = c.create_category(&name, None).await.unwrap();
    assert_eq!(again, CategoryCreated::Existing { id: first.id() });
    let listed = c
        .list_categories(&CategoryQuery {
            search: Some(t.prefix.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed
        .items
        .iter()
        .any(|c| c.id == first.id() && c.name.contains("&amp;")));
    c.delete_category(first.id()).await.unwrap();
}

#[tokio::test]
async fn reads_price_settings_and_the_woocommerce_version() {
    // (On the simulator, a shop with taxes: its tax tables are read too.)
    let t = Target::with_config(SimConfig {
        settings: Settings::norway(),
        ..SimConfig::default()
    })
    .await;
    let c = t.client();
    // The tax group may be missing in a store without taxes: asked only when taxes are on.
    if c.calc_taxes().await.unwrap() {
        let _ = c.prices_include_tax().await.unwrap();
        // Every row of the tax tables parses, and names a class the store has.
        let classes = t.raw("GET", "/wp-json/wc/v3/taxes/classes", None).await;
        assert_eq!(classes.status, 200, "{}", classes.text);
        let slugs: Vec<&str> = classes
            .body
            .as_array()
            .expect("a list of classes")
            .iter()
            .filter_map(|c| c.get("slug").and_then(serde_json::Value::as_str))
            .collect();
        for r in c.tax_rates().await.unwrap() {
            assert!(r.rate.is_some(), "{r:?}");
            assert!(slugs.contains(&r.class.as_str()), "{r:?} not in {slugs:?}");
        }
    }
    let country = c.base_country().await.unwrap();
    assert!(
        country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase()),
        "{country}"
    );
    let dp = c.price_num_decimals().await.unwrap();
    assert!(dp <= 8);
    let v = c.woocommerce_version().await.unwrap();
    assert!(v.split('.').count() >= 2, "{v}");
}

/// Creates an order over REST and follows it through its life. The amounts asserted are what
/// the store's tax settings imply (read from the store), so the test holds in a store without
/// taxes and in one that adds VAT to shipping alike; `sim_total` is what the simulator's
/// configuration must come to (a check that the expectation really depends on the settings).
async fn order_lifecycle(t: Target, sim_total: &str) {
    let c = t.client();
    let taxes = common::taxes::StoreTaxes::read(&t).await;
    let p = c
        .create_product(&simple(&t, "O1", "11.00", Some(24)))
        .await
        .unwrap();
    let order = c
        .create_order(&NewOrder {
            status: Some("processing".into()),
            billing: Some(Address {
                first_name: "Ada".into(),
                email: Some("ada@example.com".into()),
                phone: Some("+47 99 88 77 66".into()),
                ..Default::default()
            }),
            line_items: vec![NewLineItem {
                product_id: Some(p.id),
                quantity: 2,
                ..Default::default()
            }],
            shipping_lines: vec![NewShippingLine {
                method_id: "flat_rate".into(),
                method_title: "Flat rate".into(),
                total: d("4.90"),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let expected = taxes.rest_order(
        &[common::taxes::Line {
            price: d("11.00"),
            quantity: 2,
            class: String::new(),
        }],
        &[d("4.90")],
    );
    assert_eq!(order.status, "processing");
    assert_eq!(order.total, expected.total, "{taxes:?}");
    assert_eq!(order.total_tax, expected.total_tax);
    assert_eq!(order.shipping_tax, expected.shipping_tax);
    assert_eq!(order.cart_tax, expected.cart_tax);
    assert_eq!(order.shipping_total, d("4.90"));
    assert_eq!(order.prices_include_tax, taxes.prices_include_tax);
    if t.is_sim() {
        assert_eq!(order.total, d(sim_total));
    }
    assert_eq!(
        order.line_items[0].sku.as_deref(),
        Some(t.sku("O1").as_str())
    );
    assert_eq!(
        (order.line_items[0].total, order.line_items[0].total_tax),
        expected.lines[0]
    );
    assert!(order.date_paid_gmt.is_some());
    assert!(!order.number.is_empty());
    assert_eq!(
        c.get_product(p.id).await.unwrap().stock_quantity,
        Some(22),
        "stock reduced once on processing"
    );

    let listed = c
        .list_orders(&OrderQuery {
            status: vec!["processing".into(), "on-hold".into()],
            include: vec![order.id],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].total, expected.total);
    let done = c.update_order_status(order.id, "completed").await.unwrap();
    assert_eq!(done.status, "completed");
    assert!(done.date_completed_gmt.is_some());
    assert_eq!(
        done.total, expected.total,
        "a status change keeps the totals"
    );
    let again = c.update_order_status(order.id, "completed").await.unwrap();
    assert_eq!(
        again.date_completed_gmt, done.date_completed_gmt,
        "a second completed is a no-op"
    );
    let note = c
        .add_order_note(order.id, "DUELL order 1001", false)
        .await
        .unwrap();
    assert_eq!(note.author, "WooCommerce");
    let notes = c.list_order_notes(order.id).await.unwrap();
    assert!(notes.iter().any(|n| n.note == "DUELL order 1001"));
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.note.contains("to Completed"))
            .count(),
        1
    );
    let err = c.get_order(999_999_003).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let _ = c.delete_order(order.id, true).await;
    c.delete_product(p.id, true).await.unwrap();
}

#[tokio::test]
async fn an_order_is_created_listed_completed_and_annotated() {
    // The simulator's default store computes no taxes: 2 × 11.00 + 4.90.
    order_lifecycle(Target::new().await, "26.90").await;
}

#[tokio::test]
async fn an_order_in_a_norwegian_shop_carries_vat_on_its_lines_and_shipping() {
    // Prices with 25 % VAT, shipping entered without it: 22.00 + 4.90 + 1.225 (rounded half
    // down, as a store whose prices include tax rounds tax) = 28.12, as on the reference store.
    let t = Target::with_config(SimConfig {
        settings: Settings::norway(),
        ..SimConfig::default()
    })
    .await;
    order_lifecycle(t, "28.12").await;
}

#[tokio::test]
async fn an_order_in_a_shop_with_prices_without_tax_rounding_at_subtotal() {
    let mut settings = Settings::norway();
    settings.prices_include_tax = false;
    settings.tax_round_at_subtotal = true;
    let t = Target::with_config(SimConfig {
        settings,
        ..SimConfig::default()
    })
    .await;
    // 22.00 + 5.50 VAT + 4.90 + 1.225 VAT, rounded once: 33.625 → 33.63.
    order_lifecycle(t, "33.63").await;
}

#[tokio::test]
async fn a_customer_order_reduces_stock_once_and_cancelling_restores_it() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("placing an order as a customer") else {
        return;
    };
    let c = t.client();
    let p = c
        .create_product(&simple(&t, "C1", "10.00", Some(5)))
        .await
        .unwrap();
    let id = sim
        .place_order(&PlaceOrder {
            lines: vec![PlaceLine {
                sku: Some(t.sku("C1")),
                quantity: 2,
                product_id: None,
            }],
            billing: [
                ("email".to_string(), Some("kari@example.com".to_string())),
                ("phone".to_string(), Some("99887766".to_string())),
            ]
            .into_iter()
            .collect(),
            coupon: Some(duellsync_woo_sim::PlaceCoupon {
                code: "TEN".into(),
                amount: "2.00".into(),
            }),
            fee: Some(duellsync_woo_sim::PlaceFee {
                name: "Gift wrap".into(),
                total: "1.50".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
    let o = c.get_order(id).await.unwrap();
    assert_eq!(o.created_via, "checkout");
    assert_eq!(o.billing.phone.as_deref(), Some("99887766"));
    assert_eq!(o.discount_total, d("2.00"));
    assert_eq!(o.total, d("19.50"));
    assert_eq!(o.coupon_lines[0].code, "TEN");
    assert_eq!(o.fee_lines[0].total, d("1.50"));
    assert_eq!(c.get_product(p.id).await.unwrap().stock_quantity, Some(3));
    sim.set_order_status(id, "on-hold").unwrap();
    assert_eq!(
        c.get_product(p.id).await.unwrap().stock_quantity,
        Some(3),
        "reduced only once"
    );
    c.update_order_status(id, "cancelled").await.unwrap();
    assert_eq!(c.get_product(p.id).await.unwrap().stock_quantity, Some(5));
    sim.set_order_status(id, "completed").unwrap();
    assert_eq!(sim.captured_orders(), vec![id]);
}

#[tokio::test]
async fn webhooks_are_managed_pinged_and_deliveries_verify() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("deliveries to a local receiver") else {
        return;
    };
    let rx = Receiver::start().await;
    let c = t.client();
    let secret = "whsec-contract-&-co";
    let hook = c
        .create_webhook(&NewWebhook {
            name: "contract".into(),
            topic: "order.updated".into(),
            delivery_url: format!("{}/hook", rx.url),
            secret: SecretString::from(secret.to_string()),
        })
        .await
        .unwrap();
    assert_eq!(hook.status, "active");
    let ping = rx.wait_for(1).await;
    assert_eq!(ping[0].body, format!("webhook_id={}", hook.id).into_bytes());
    assert!(ping[0].headers.get("x-wc-webhook-signature").is_none());
    assert!(c
        .list_webhooks(None)
        .await
        .unwrap()
        .iter()
        .any(|w| w.id == hook.id));

    let p = c
        .create_product(&simple(&t, "W1", "5", Some(3)))
        .await
        .unwrap();
    let oid = sim
        .place_order(&PlaceOrder {
            lines: vec![PlaceLine {
                product_id: Some(p.id),
                sku: None,
                quantity: 1,
            }],
            ..Default::default()
        })
        .unwrap();
    sim.flush_deliveries().await;
    let got = rx.wait_for(2).await;
    let delivery = &got[1];
    let sig = delivery
        .headers
        .get("x-wc-webhook-signature")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(webhook_signature::verify(secret, &delivery.body, sig));
    assert!(!webhook_signature::verify("other", &delivery.body, sig));
    assert_eq!(
        delivery.headers.get("x-wc-webhook-topic").unwrap(),
        "order.updated"
    );
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["id"], serde_json::json!(oid));
    assert!(
        String::from_utf8_lossy(&delivery.body).contains("\\/"),
        "PHP escaping"
    );

    let paused = c
        .update_webhook(
            hook.id,
            &WebhookUpdate {
                status: Some("paused".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(paused.status, "paused");
    assert_eq!(c.get_webhook(hook.id).await.unwrap().status, "paused");
    c.delete_webhook(hook.id).await.unwrap();
    let err = c.get_webhook(hook.id).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("woocommerce_rest_shop_webhook_invalid_id"));
}

#[tokio::test]
async fn a_failing_receiver_disables_the_webhook_on_the_seventh_failure_and_reactivation_keeps_the_count(
) {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("failing deliveries") else {
        return;
    };
    let rx = Receiver::start().await;
    let c = t.client();
    let hook = c
        .create_webhook(&NewWebhook {
            name: "f".into(),
            topic: "product.updated".into(),
            delivery_url: format!("{}/fail", rx.url),
            secret: SecretString::from("s".to_string()),
        })
        .await
        .unwrap();
    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let p = c
        .create_product(&simple(&t, "F", "1", Some(1)))
        .await
        .unwrap();
    for i in 0..7 {
        c.update_product(
            p.id,
            &ProductWrite {
                stock_quantity: Some(i),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        sim.flush_deliveries().await;
    }
    assert_eq!(c.get_webhook(hook.id).await.unwrap().status, "disabled");
    let attempts = sim
        .deliveries()
        .iter()
        .filter(|d| d.webhook_id == hook.id)
        .count();
    assert_eq!(attempts, 7, "no retries");
    c.update_webhook(
        hook.id,
        &WebhookUpdate {
            status: Some("active".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sim.webhook_failure_count(hook.id), Some(6));
    c.update_product(
        p.id,
        &ProductWrite {
            stock_quantity: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sim.flush_deliveries().await;
    assert_eq!(c.get_webhook(hook.id).await.unwrap().status, "disabled");
}

#[tokio::test]
async fn delivery_knobs_duplicate_and_drop_deliveries() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("delivery knobs") else {
        return;
    };
    let rx = Receiver::start().await;
    let c = t.client();
    c.create_webhook(&NewWebhook {
        name: "d".into(),
        topic: "product.updated".into(),
        delivery_url: format!("{}/d", rx.url),
        secret: SecretString::from("s".to_string()),
    })
    .await
    .unwrap();
    let p = c
        .create_product(&simple(&t, "D", "1", Some(1)))
        .await
        .unwrap();
    sim.pause_deliveries();
    sim.set_delivery_knobs(duellsync_woo_sim::DeliveryKnobs {
        delay_ms: 0,
        duplicates: 2,
        drop_rate: 0.0,
    });
    c.update_product(
        p.id,
        &ProductWrite {
            stock_quantity: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.update_product(
        p.id,
        &ProductWrite {
            stock_quantity: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sim.pending_deliveries(), 1, "coalesced while pending");
    sim.flush_deliveries().await;
    assert_eq!(rx.received().len(), 1 + 3, "ping plus three copies");
    sim.set_delivery_knobs(duellsync_woo_sim::DeliveryKnobs {
        delay_ms: 0,
        duplicates: 0,
        drop_rate: 1.0,
    });
    c.update_product(
        p.id,
        &ProductWrite {
            stock_quantity: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sim.flush_deliveries().await;
    assert_eq!(rx.received().len(), 4, "dropped deliveries are never sent");
    assert!(sim.deliveries().last().unwrap().dropped);
}

#[tokio::test]
async fn retries_transient_failures_and_honours_retry_after() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("fault injection") else {
        return;
    };
    let c = t.client();
    sim.add_fault(FaultRule::next(
        "GET",
        "products",
        1,
        FaultKind::ServerError {
            status: 503,
            html: true,
        },
    ));
    sim.add_fault(FaultRule::next(
        "GET",
        "products",
        1,
        FaultKind::TooManyRequests {
            retry_after_secs: 0,
        },
    ));
    c.list_products(&ProductQuery::default()).await.unwrap();
    assert_eq!(sim.request_count("GET products"), 3);
    sim.add_fault(FaultRule::next(
        "GET",
        "products",
        5,
        FaultKind::ServerError {
            status: 500,
            html: false,
        },
    ));
    let err = c.list_products(&ProductQuery::default()).await.unwrap_err();
    assert_eq!(err.code(), Some("internal_server_error"));
    assert_eq!(err.kind(), ErrorKind::Transient);
}

#[tokio::test]
async fn never_resends_a_create_whose_outcome_is_unknown() {
    let t = Target::with_config(SimConfig {
        hang: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await;
    let Some(sim) = t.sim_only("a timeout after the write was applied") else {
        return;
    };
    let mut ccfg = t.config();
    ccfg.timeout = Duration::from_millis(400);
    let c = WooClient::new(ccfg).unwrap();
    sim.add_fault(FaultRule::next(
        "POST",
        "products/batch",
        1,
        FaultKind::HangAfterApply,
    ));
    let batch = Batch {
        create: vec![simple(&t, "U1", "1", None)],
        ..Default::default()
    };
    let err = c.batch_products(&batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(sim.request_count("POST products/batch"), 1, "not re-sent");
    assert_eq!(
        c.find_by_sku(&t.sku("U1")).await.unwrap().len(),
        1,
        "the write happened: reconcile by SKU"
    );
    // An update-only batch is idempotent and is retried.
    sim.add_fault(FaultRule::next(
        "POST",
        "products/batch",
        1,
        FaultKind::Hang,
    ));
    let id = c.find_by_sku(&t.sku("U1")).await.unwrap()[0].id;
    let upd = Batch {
        update: vec![ProductWrite {
            id: Some(id),
            name: Some("x".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    c.batch_products(&upd).await.unwrap();
    assert_eq!(sim.request_count("POST products/batch"), 3);
}

#[tokio::test]
async fn html_bodies_php_warnings_and_redirects_are_typed_errors() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("fault injection") else {
        return;
    };
    let c = t.client();
    sim.add_fault(FaultRule::next(
        "GET",
        "products/{id}",
        1,
        FaultKind::PhpWarning,
    ));
    let err = c.get_product(1).await.unwrap_err();
    assert!(matches!(err, Error::NotJson { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Configuration);
    sim.add_fault(FaultRule::next(
        "GET",
        "products/{id}",
        3,
        FaultKind::HtmlError { status: 403 },
    ));
    let err = c.get_product(1).await.unwrap_err();
    assert!(matches!(err, Error::NotJson { status: 403, .. }));
    sim.add_fault(FaultRule::next(
        "POST",
        "products",
        1,
        FaultKind::Redirect {
            status: 301,
            location: "https://shop.example/wp-json/wc/v3/products".into(),
        },
    ));
    let err = c
        .create_product(&simple(&t, "R", "1", None))
        .await
        .unwrap_err();
    match &err {
        Error::Redirect {
            status: 301,
            location: Some(l),
            ..
        } => assert!(l.starts_with("https://shop.example")),
        other => panic!("expected a redirect error, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Configuration);
    sim.add_fault(FaultRule::next("GET", "products", 1, FaultKind::StripAuth));
    let err = c.list_products(&ProductQuery::default()).await.unwrap_err();
    assert_eq!(err.code(), Some("woocommerce_rest_cannot_view"));
}

#[tokio::test]
async fn a_full_sync_of_250_new_products_costs_three_batch_writes() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("request accounting") else {
        return;
    };
    let c = t.client();
    sim.reset_request_counts();
    let all: Vec<ProductWrite> = (0..250)
        .map(|i| simple(&t, &format!("N{i}"), "2", Some(1)))
        .collect();
    for chunk in all.chunks(BATCH_LIMIT) {
        c.batch_products(&Batch {
            create: chunk.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(sim.request_count("POST products/batch"), 3);
    assert_eq!(sim.request_count("POST products"), 0);
}

#[tokio::test]
async fn the_sale_cron_starts_and_ends_sales() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("sale cron and clock") else {
        return;
    };
    let c = t.client();
    let now = time::OffsetDateTime::now_utc();
    let prim = |o: time::OffsetDateTime| {
        time::PrimitiveDateTime::new(o.date(), o.time().replace_nanosecond(0).unwrap())
    };
    let mut w = simple(&t, "CRON", "20", None);
    w.sale_price = Some(Clearable::Set(d("15")));
    w.date_on_sale_from_gmt = Some(Clearable::Set(prim(now + Duration::from_secs(3600))));
    w.date_on_sale_to_gmt = Some(Clearable::Set(prim(now + Duration::from_secs(7200))));
    let p = c.create_product(&w).await.unwrap();
    assert_eq!(p.price, Some(d("20")));
    assert!(!p.on_sale);
    sim.set_clock_offset(5400);
    sim.run_sale_cron();
    let started = c.get_product(p.id).await.unwrap();
    assert_eq!(started.price, Some(d("15")));
    assert_eq!(
        started.date_on_sale_from_gmt, None,
        "sale start clears the start date"
    );
    sim.set_clock_offset(10_000);
    sim.run_sale_cron();
    let ended = c.get_product(p.id).await.unwrap();
    assert_eq!(
        (ended.price, ended.sale_price, ended.date_on_sale_to_gmt),
        (Some(d("20")), None, None)
    );
}

#[tokio::test]
async fn image_sources_create_a_new_attachment_each_time_and_ids_reuse_them() {
    let t = Target::new().await;
    let Some(_sim) = t.sim_only("images from a loopback server") else {
        return;
    };
    let rx = Receiver::start().await;
    let c = t.client();
    let mut w = simple(&t, "IMG", "1", None);
    w.images = Some(vec![ImageWrite {
        src: Some(format!("{}/red.png", rx.url)),
        ..Default::default()
    }]);
    let p = c.create_product(&w).await.unwrap();
    let first = p.images[0].clone();
    assert!(first.src.contains("/wp-content/uploads/"));
    let again = c
        .update_product(
            p.id,
            &ProductWrite {
                images: Some(vec![ImageWrite {
                    src: Some(format!("{}/red.png", rx.url)),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(again.images[0].id, first.id);
    assert_eq!(again.images[0].name, "red-1.png");
    let reuse = c
        .update_product(
            p.id,
            &ProductWrite {
                images: Some(vec![ImageWrite {
                    id: Some(first.id),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(reuse.images[0].id, first.id);
    let err = c
        .update_product(
            p.id,
            &ProductWrite {
                name: Some("renamed".into()),
                images: Some(vec![ImageWrite {
                    src: Some("http://127.0.0.2:9/x.png".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("woocommerce_product_image_upload_error"));
    assert_ne!(
        c.get_product(p.id).await.unwrap().name,
        "renamed",
        "nothing of the failed write applied"
    );
}

#[tokio::test]
async fn v2_maps_in_stock_and_filters_one_order_status() {
    let t = Target::new().await;
    let mut cfg = t.config();
    cfg.api_version = ApiVersion::V2;
    let c = WooClient::new(cfg).unwrap();
    let mut w = simple(&t, "V2", "1", None);
    w.stock_status = Some(StockStatus::Outofstock);
    let p = c.create_product(&w).await.unwrap();
    assert_eq!(p.in_stock, Some(false));
    assert_eq!(p.stock_status, Some(StockStatus::Outofstock));
    let err = c
        .list_orders(&OrderQuery {
            status: vec!["processing".into(), "completed".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)));
    c.list_orders(&OrderQuery {
        status: vec!["processing".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    c.delete_product(p.id, true).await.unwrap();
}

#[tokio::test]
async fn secrets_never_appear_in_debug_output_or_errors() {
    let t = Target::new().await;
    let secret = "cs_super_secret_value_123";
    let mut cfg = t.config();
    cfg.consumer_secret = SecretString::from(secret.to_string());
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(secret), "{dbg}");
    cfg.auth = AuthMode::OAuth1 {
        method: SignatureMethod::HmacSha256,
        placement: OAuthPlacement::Query,
    };
    let c = WooClient::new(cfg.clone()).unwrap();
    assert!(!format!("{c:?}").contains(secret));
    let err = c.list_products(&ProductQuery::default()).await.unwrap_err();
    assert!(!format!("{err:?} {err}").contains(secret));
    if let Some(sim) = t.sim.as_ref() {
        let mut q = cfg.clone();
        q.url = sim.https_base_url().unwrap();
        q.auth = AuthMode::QueryString;
        q.retry.max_attempts = 1;
        sim.add_fault(FaultRule::next("GET", "products", 1, FaultKind::PhpWarning));
        let err = WooClient::new(q)
            .unwrap()
            .list_products(&ProductQuery::default())
            .await
            .unwrap_err();
        assert!(!format!("{err:?} {err}").contains(secret));
    }
    let hook = NewWebhook {
        name: "n".into(),
        topic: "order.created".into(),
        delivery_url: "http://x".into(),
        secret: SecretString::from("whsec_hidden".to_string()),
    };
    assert!(!format!("{hook:?}").contains("whsec_hidden"));
}

/// An order the engine may import: one line of a new product, `processing`.
async fn processing_order(t: &Target, c: &WooClient, sku: &str) -> (Order, u64) {
    let p = c
        .create_product(&simple(t, sku, "10.00", None))
        .await
        .unwrap();
    let order = c
        .create_order(&NewOrder {
            status: Some("processing".into()),
            billing: Some(Address {
                first_name: "Ada".into(),
                email: Some("ada@example.com".into()),
                ..Default::default()
            }),
            line_items: vec![NewLineItem {
                product_id: Some(p.id),
                quantity: 1,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    (order, p.id)
}

fn meta_value<'a>(o: &'a Order, key: &str) -> Option<&'a serde_json::Value> {
    o.meta_data.iter().find(|m| m.key == key).map(|m| &m.value)
}

#[tokio::test]
async fn order_meta_with_underscore_keys_round_trips_with_the_status_in_one_write() {
    let t = Target::new().await;
    let c = t.client();
    let (order, product) = processing_order(&t, &c, "M1").await;
    // The importer's marker: keys starting with `_` (hidden from the admin screen), written
    // together with status_after_import.
    let marker = vec![
        serde_json::json!({"key": "_duell_order_id", "value": "987"}),
        serde_json::json!({"key": "_duell_order_number", "value": "KO-987"}),
        serde_json::json!({"key": "_duell_import", "value": "customer_order"}),
    ];
    let written = c
        .update_order_meta(order.id, &marker, Some("completed"))
        .await
        .unwrap();
    assert_eq!(
        written.status, "completed",
        "the status is part of the write"
    );
    // The write asked for `_fields=id,status,meta_data`: WordPress trims a write's answer too.
    assert_eq!(written.id, order.id);
    assert_eq!(
        meta_value(&written, "_duell_order_id"),
        Some(&serde_json::json!("987"))
    );
    assert!(
        written.line_items.is_empty() && written.billing.email.is_none(),
        "fields not asked for are left out of the write's answer"
    );
    let read = c.get_order(order.id).await.unwrap();
    assert_eq!(read.status, "completed");
    assert_eq!(
        meta_value(&read, "_duell_order_id"),
        Some(&serde_json::json!("987")),
        "keys starting with _ are readable over REST: {:?}",
        read.meta_data
    );
    assert_eq!(
        meta_value(&read, "_duell_order_number"),
        Some(&serde_json::json!("KO-987"))
    );
    assert_eq!(
        meta_value(&read, "_duell_import"),
        Some(&serde_json::json!("customer_order"))
    );
    // The importer's fresh read before an import asks only for what it needs.
    let trimmed = c
        .get_order_fields(
            order.id,
            &["status", "number", "date_created_gmt", "meta_data"],
        )
        .await
        .unwrap();
    assert_eq!(trimmed.id, order.id, "id is always asked for");
    assert_eq!(trimmed.status, "completed");
    assert!(trimmed.date_created_gmt.is_some());
    assert_eq!(
        meta_value(&trimmed, "_duell_order_id"),
        Some(&serde_json::json!("987"))
    );
    assert!(
        trimmed.line_items.is_empty(),
        "fields not asked for are left out"
    );
    let id_of = |o: &Order| {
        o.meta_data
            .iter()
            .find(|m| m.key == "_duell_order_id")
            .map(|m| m.id)
    };
    let meta_id = id_of(&read).expect("meta id");
    // Upserted by key: a second write keeps the row (and its id), a number comes back as text,
    // null deletes, and keys not named are left alone.
    let again = c
        .update_order_meta(
            order.id,
            &[
                serde_json::json!({"key": "_duell_order_id", "value": 988}),
                serde_json::json!({"key": "_duell_import", "value": null}),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(id_of(&again), Some(meta_id));
    assert_eq!(
        meta_value(&again, "_duell_order_id"),
        Some(&serde_json::json!("988"))
    );
    assert_eq!(meta_value(&again, "_duell_import"), None);
    assert_eq!(
        meta_value(&again, "_duell_order_number"),
        Some(&serde_json::json!("KO-987"))
    );
    assert_eq!(
        again
            .meta_data
            .iter()
            .filter(|m| m.key == "_duell_order_id")
            .count(),
        1
    );
    let _ = c.delete_order(order.id, true).await;
    let _ = c.delete_product(product, true).await;
}

#[tokio::test]
async fn a_backdated_order_is_found_by_the_id_cursor_and_missed_by_a_creation_date_cursor() {
    let t = Target::new().await;
    let c = t.client();
    let (first, p1) = processing_order(&t, &c, "B1").await;
    let (second, p2) = processing_order(&t, &c, "B2").await;
    let created = |o: &Order| o.date_created_gmt.expect("date_created_gmt").assume_utc();
    // To a creation-date cursor that has passed an order's creation date (what an order created
    // with a past date by an import plugin or an admin looks like), the order does not exist.
    let by_date = c
        .list_orders(&OrderQuery {
            after: Some(created(&second) + time::Duration::hours(1)),
            include: vec![second.id],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_date.items.is_empty(), "a date cursor misses it");
    // The id cursor finds it: every order above the cursor, newest first, the cursor excluded.
    let mut scan = c.scan_new_orders(first.id, None);
    let mut found = Vec::new();
    while let Some(page) = scan.next_page().await.unwrap() {
        found.extend(page.iter().filter_map(|o| o["id"].as_u64()));
    }
    assert!(found.contains(&second.id), "{found:?}");
    assert!(!found.contains(&first.id), "the cursor itself is not new");
    assert!(
        found.windows(2).all(|w| w[0] > w[1]),
        "newest first: {found:?}"
    );
    assert_eq!(scan.newest_id(), *found.first().unwrap());

    let mut cleanup = vec![(first.id, p1), (second.id, p2)];
    // On the simulator the order can be truly backdated: created a day ago, after the others.
    if let Some(sim) = t.sim_only("creating an order with a past creation date") {
        sim.set_clock_offset(-86_400);
        let (old, p3) = processing_order(&t, &c, "B3").await;
        sim.set_clock_offset(0);
        cleanup.push((old.id, p3));
        assert!(created(&old) < created(&first));
        let by_date = c
            .list_orders(&OrderQuery {
                after: Some(created(&second) - time::Duration::minutes(5)),
                include: vec![old.id],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(by_date.items.is_empty());
        let mut scan = c.scan_new_orders(second.id, None);
        let mut found = Vec::new();
        while let Some(page) = scan.next_page().await.unwrap() {
            found.extend(page.iter().filter_map(|o| o["id"].as_u64()));
        }
        assert_eq!(found, vec![old.id]);
    }
    for (o, p) in cleanup {
        let _ = c.delete_order(o, true).await;
        let _ = c.delete_product(p, true).await;
    }
}

#[tokio::test]
async fn the_new_order_scan_skips_nothing_when_orders_are_trashed_while_it_pages() {
    let t = Target::new().await;
    let Some(sim) = t.sim_only("placing 230 orders") else {
        return;
    };
    let c = t.client();
    let p = c
        .create_product(&simple(&t, "T1", "5.00", None))
        .await
        .unwrap();
    let place = || {
        sim.place_order(&PlaceOrder {
            lines: vec![PlaceLine {
                product_id: Some(p.id),
                sku: None,
                quantity: 1,
            }],
            ..Default::default()
        })
        .unwrap()
    };
    let cursor = place();
    let ids: Vec<u64> = (0..230).map(|_| place()).collect();
    let mut scan = c.scan_new_orders(cursor, None);
    let mut found = Vec::new();
    let mut trashed = Vec::new();
    while let Some(page) = scan.next_page().await.unwrap() {
        found.extend(page.iter().filter_map(|o| o["id"].as_u64()));
        // Orders trashed between two pages shift the rows behind them forward.
        for id in ids.iter().rev().skip(found.len()).step_by(3).take(5) {
            c.delete_order(*id, false).await.unwrap();
            trashed.push(*id);
        }
    }
    let mut unique = found.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), found.len(), "no order twice");
    for id in &ids {
        assert!(
            found.contains(id) || trashed.contains(id),
            "order {id} was skipped"
        );
    }
    assert_eq!(scan.newest_id(), *ids.last().unwrap());
}
