//! Failure handling: firewall, empty bodies, 5xx, timeouts, partial failures.

use std::time::Duration;

use duellsync_duell::{
    Action, CustomerId, CustomerInput, Error, ProductId, ProductQuery, StockAdjustment,
};
use duellsync_duell_sim::{DuellSim, Fault, SimConfig, ValidationShape};
use rust_decimal::Decimal;

use crate::harness::sim_only;
use crate::order;

fn ids(sim: &DuellSim) -> (CustomerId, ProductId) {
    (
        CustomerId(sim.customers()[0].customer_id),
        ProductId(sim.product_ids_where(|p| !p.is_deleted && !p.is_parent)[0]),
    )
}

#[tokio::test]
async fn reports_the_waf_captcha_page_as_a_firewall_error_that_says_what_to_do() {
    let Some((t, sim)) =
        sim_only("reports_the_waf_captcha_page", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    sim.fail_next(None, 1, Fault::Firewall);
    let err = t.client.departments().await.expect_err("blocked");
    assert!(
        matches!(
            err,
            Error::Firewall {
                http_status: 405,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.action(), Action::FixConfiguration);
    assert!(err.to_string().contains("whitelist"));
    assert_eq!(sim.request_count("getaccesstokens"), 1, "not retried");
}

#[tokio::test]
async fn retries_an_empty_body_on_a_read() {
    let Some((t, sim)) = sim_only("retries_an_empty_body", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    sim.fail_next(Some("department/list"), 1, Fault::EmptyBody { status: 200 });
    t.client
        .departments()
        .await
        .expect("second attempt succeeds");
    assert_eq!(sim.request_count("department/list"), 2);
}

#[tokio::test]
async fn reports_persistent_empty_bodies_as_an_empty_body_error() {
    let Some((t, sim)) = sim_only(
        "reports_persistent_empty_bodies",
        SimConfig::default(),
        |c| c.max_attempts = 3,
    )
    .await
    else {
        return;
    };
    sim.fail_next(
        Some("department/list"),
        10,
        Fault::EmptyBody { status: 200 },
    );
    let err = t.client.departments().await.expect_err("empty");
    assert!(matches!(err, Error::EmptyBody { .. }), "{err:?}");
    assert_eq!(err.action(), Action::RetryLater);
    assert_eq!(sim.request_count("department/list"), 3);
}

#[tokio::test]
async fn retries_5xx_on_reads_with_backoff() {
    let Some((t, sim)) = sim_only("retries_5xx_on_reads", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    sim.fail_next(Some("product/list"), 2, Fault::ServerError { status: 503 });
    let page = t
        .client
        .products(ProductQuery::default())
        .next_page()
        .await
        .expect("third attempt");
    assert!(page.is_some());
    assert_eq!(sim.request_count("product/list"), 3);
}

#[tokio::test]
async fn gives_up_on_persistent_5xx_as_unavailable() {
    let Some((t, sim)) = sim_only("gives_up_on_persistent_5xx", SimConfig::default(), |c| {
        c.max_attempts = 4
    })
    .await
    else {
        return;
    };
    sim.fail_next(
        Some("department/list"),
        10,
        Fault::ServerError { status: 500 },
    );
    let err = t.client.departments().await.expect_err("down");
    match &err {
        Error::Unavailable {
            attempts,
            http_status,
            ..
        } => {
            assert_eq!(*attempts, 4);
            assert_eq!(*http_status, Some(500));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.request_count("department/list"), 4);
}

#[tokio::test]
async fn retries_a_read_that_timed_out() {
    let Some((t, sim)) = sim_only("retries_a_read_that_timed_out", SimConfig::default(), |c| {
        c.request_timeout = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    sim.fail_next(Some("department/list"), 1, Fault::Hang);
    t.client.departments().await.expect("second attempt");
    assert_eq!(sim.request_count("department/list"), 2);
}

#[tokio::test]
async fn never_sends_a_customer_order_again_after_a_timeout() {
    let Some((t, sim)) = sim_only(
        "never_sends_an_order_again_after_a_timeout",
        SimConfig::default(),
        |c| {
            c.request_timeout = Duration::from_millis(400);
        },
    )
    .await
    else {
        return;
    };
    let (customer, product) = ids(&sim);
    sim.fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    let err = t
        .client
        .save_customer_orders(&t.order_department, &[order("7001", customer, product, 1)])
        .await
        .expect_err("no answer");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(err.action(), Action::ResolveInDoubt);
    assert_eq!(sim.request_count("logistics/orders/save"), 1, "not re-sent");
    assert_eq!(
        sim.customer_orders().len(),
        1,
        "the order was in fact created"
    );
    // The UNVERIFIED lookup resolves the doubt on the simulator.
    let found = t
        .client
        .find_customer_orders_by_reference("7001")
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].order_id.0, sim.customer_orders()[0].order_id);
}

#[tokio::test]
async fn never_sends_a_sales_order_again_after_a_5xx() {
    let Some((t, sim)) = sim_only(
        "never_sends_a_sales_order_again_after_a_5xx",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let (customer, product) = ids(&sim);
    sim.fail_next(
        Some("sale/orders/save"),
        1,
        Fault::ServerErrorAfterProcessing { status: 502 },
    );
    let err = t
        .client
        .save_sales_orders(&t.order_department, &[order("7002", customer, product, 1)])
        .await
        .expect_err("5xx");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(sim.request_count("sale/orders/save"), 1);
    let found = t
        .client
        .find_sales_orders_by_reference("7002")
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn never_sends_a_write_again_after_a_5xx_that_proves_nothing() {
    let Some((t, sim)) = sim_only(
        "never_sends_a_write_again_after_a_5xx",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let (customer, product) = ids(&sim);
    // Our choice: a 5xx on a non-idempotent write is "outcome unknown", even when (as here)
    // the server did nothing; the importer resolves it.
    sim.fail_next(
        Some("logistics/orders/save"),
        1,
        Fault::ServerError { status: 503 },
    );
    let err = t
        .client
        .save_customer_orders(&t.order_department, &[order("7003", customer, product, 1)])
        .await
        .expect_err("5xx");
    assert!(err.is_outcome_unknown());
    assert_eq!(sim.request_count("logistics/orders/save"), 1);
    assert!(t
        .client
        .find_customer_orders_by_reference("7003")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn never_sends_stock_adjustments_or_customer_creation_again_after_a_timeout() {
    let Some((t, sim)) = sim_only(
        "never_resends_adjustments_or_customer_creation",
        SimConfig::default(),
        |c| {
            c.request_timeout = Duration::from_millis(400);
        },
    )
    .await
    else {
        return;
    };
    let number = sim.product(ids(&sim).1 .0).unwrap().product_number;
    sim.fail_next(Some("product/adjust-stock"), 1, Fault::HangAfterProcessing);
    let err = t
        .client
        .adjust_stock(
            &t.stock_department,
            &[StockAdjustment {
                product_number: number,
                quantity: Decimal::ONE,
            }],
        )
        .await
        .expect_err("timeout");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(sim.request_count("product/adjust-stock"), 1);
    assert_eq!(sim.stock_adjustments().len(), 1);

    sim.fail_next(Some("customer"), 1, Fault::Hang);
    let err = t
        .client
        .upsert_customer(&CustomerInput {
            customer_name: "Ny Kunde".into(),
            ..Default::default()
        })
        .await
        .expect_err("timeout");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(sim.request_count("customer"), 1);
}

#[tokio::test]
async fn sends_a_customer_update_again_after_a_timeout_because_it_is_idempotent() {
    let Some((t, sim)) = sim_only("sends_a_customer_update_again", SimConfig::default(), |c| {
        c.request_timeout = Duration::from_millis(400);
    })
    .await
    else {
        return;
    };
    let id = CustomerId(sim.customers()[0].customer_id);
    sim.fail_next(Some("customer"), 1, Fault::Hang);
    let got = t
        .client
        .upsert_customer(&CustomerInput {
            customer_id: Some(id),
            customer_name: "Oppdatert Navn".into(),
            ..Default::default()
        })
        .await
        .expect("second attempt");
    assert_eq!(got, id);
    assert_eq!(sim.request_count("customer"), 2);
}

#[tokio::test]
async fn treats_total_affected_zero_as_a_rejection_with_the_reason() {
    let Some((t, sim)) = sim_only(
        "treats_total_affected_zero_as_a_rejection",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let (customer, _) = ids(&sim);
    let err = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[order("8001", customer, ProductId(999_999_999), 1)],
        )
        .await
        .expect_err("nothing saved");
    match &err {
        Error::Rejected {
            validation: Some(v),
            ..
        } => {
            assert!(v.for_row("8001")[0].contains("not found"), "{v}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.action(), Action::Reject);
    assert!(err.to_string().contains("8001"));
}

#[tokio::test]
async fn reports_a_partial_failure_per_row_and_keeps_the_saved_rows() {
    let Some((t, sim)) = sim_only(
        "reports_a_partial_failure_per_row",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let (customer, product) = ids(&sim);
    let outcome = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[
                order("9001", customer, product, 1),
                order("9002", customer, ProductId(999_999_999), 1),
            ],
        )
        .await
        .expect("status true");
    assert!(!outcome.is_complete());
    assert_eq!(outcome.total_affected, Some(1));
    assert!(outcome.order_for("9001").is_some());
    assert!(outcome.order_for("9002").is_none());
    let v = outcome.validation.expect("validation");
    assert!(v.for_row("9001").is_empty());
    assert_eq!(v.for_row("9002").len(), 1);
}

#[tokio::test]
async fn surfaces_validation_messages_sent_as_a_list_or_as_text() {
    for shape in [ValidationShape::List, ValidationShape::Text] {
        let config = SimConfig {
            validation_shape: shape,
            ..SimConfig::default()
        };
        let Some((t, sim)) = sim_only("surfaces_validation_messages", config, |_| {}).await else {
            return;
        };
        let (customer, product) = ids(&sim);
        let outcome = t
            .client
            .save_customer_orders(
                &t.order_department,
                &[
                    order("9101", customer, product, 1),
                    order("9102", customer, ProductId(999_999_999), 1),
                ],
            )
            .await
            .expect("status true");
        let v = outcome.validation.expect("validation");
        let entries = v.entries();
        assert_eq!(entries.len(), 1, "{shape:?}: {v}");
        assert!(entries[0].message.contains("9102"), "{shape:?}: {v}");
    }
}

#[tokio::test]
async fn reports_a_garbled_json_body_on_a_read_as_an_invalid_response() {
    let Some((t, sim)) =
        sim_only("reports_a_garbled_json_body", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    sim.fail_next(Some("product/list"), 1, Fault::MalformedJson);
    let err = t
        .client
        .products(ProductQuery::default())
        .next_page()
        .await
        .expect_err("garbled");
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(err.action(), Action::Investigate);
}

#[tokio::test]
async fn random_faults_with_retries_still_deliver_every_product() {
    let config = SimConfig {
        products: 1_000,
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("random_faults_with_retries", config, |c| {
        c.max_attempts = 10
    })
    .await
    else {
        return;
    };
    sim.set_random_faults(Some(duellsync_duell_sim::RandomFaults {
        rate: 0.3,
        seed: 7,
        faults: vec![
            Fault::ServerError { status: 502 },
            Fault::EmptyBody { status: 200 },
        ],
        endpoint: Some("product/list".into()),
    }));
    let rows = t
        .client
        .products(ProductQuery::default())
        .collect_all()
        .await
        .expect("all pages");
    assert_eq!(rows.len(), sim.product_ids_where(|p| !p.is_deleted).len());
    assert!(
        sim.request_count("product/list") > 10,
        "some requests were retried"
    );
}

#[tokio::test]
async fn an_answer_over_the_limit_is_refused_unread_with_a_clear_error() {
    let Some((t, _sim)) = sim_only(
        "an_answer_over_the_limit",
        SimConfig {
            products: 200,
            ..SimConfig::default()
        },
        |c| c.response_limits.page = 8 * 1024,
    )
    .await
    else {
        return;
    };
    // A page of 100 products is far over 8 KiB.
    let err = t
        .client
        .products(ProductQuery::webshop())
        .collect_all()
        .await
        .expect_err("too large");
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 8192, .. }),
        "{err:?}"
    );
    assert_eq!(err.action(), Action::Investigate);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("response_limits"), "{err}");
    // One object (the department list is small) is read under its own limit.
    t.client
        .departments()
        .await
        .expect("within the object limit");
}

#[tokio::test]
async fn the_default_limits_take_the_largest_legitimate_page() {
    let Some((t, _sim)) = sim_only(
        "the_default_limits_take_the_largest_legitimate_page",
        SimConfig {
            products: 300,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let all = t
        .client
        .products(ProductQuery::webshop())
        .collect_all()
        .await
        .expect("every page fits the default page limit");
    assert!(!all.is_empty());
}
