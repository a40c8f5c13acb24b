//! Rate limits: pacing on the headers, waiting out 429s. Counts are asserted, not timings.

use std::time::Duration;

use duellsync_duell::{Action, Error};
use duellsync_duell_sim::{Fault, RateLimit, SimConfig};

use crate::harness::sim_only;
use crate::order;

#[tokio::test]
async fn paces_itself_so_the_rate_limiter_never_answers_429() {
    let config = SimConfig {
        rate_limit: Some(RateLimit {
            limit: 4,
            window_ms: 1000,
        }),
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("paces_itself", config, |_| {}).await else {
        return;
    };
    for _ in 0..10 {
        t.client.departments().await.expect("call");
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0, "the client never hit the limiter");
    assert_eq!(sim.response_count(429), 0);
    assert_eq!(sim.request_count("department/list"), 10);
    assert!(
        t.client.stats().rate_limit_waits >= 1,
        "it had to wait for a reset"
    );
}

#[tokio::test]
async fn waits_out_a_429_with_retry_after_and_then_succeeds() {
    let Some((t, sim)) = sim_only("waits_out_a_429", SimConfig::default(), |_| {}).await else {
        return;
    };
    t.client.departments().await.expect("login and warm-up");
    sim.fail_next(
        Some("department/list"),
        1,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    t.client
        .departments()
        .await
        .expect("succeeds after waiting");
    assert_eq!(sim.request_count("department/list"), 3);
    assert_eq!(sim.response_count(429), 1);
}

#[tokio::test]
async fn returns_rate_limited_when_the_asked_wait_exceeds_the_allowed_wait() {
    let Some((t, sim)) = sim_only("returns_rate_limited", SimConfig::default(), |c| {
        c.pacing.max_wait = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    t.client.departments().await.expect("warm-up");
    sim.fail_next(
        Some("department/list"),
        1,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let err = t.client.departments().await.expect_err("too long to wait");
    match &err {
        Error::RateLimited { retry_after, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.action(), Action::RetryLater);
    assert_eq!(sim.request_count("department/list"), 2);
}

#[tokio::test]
async fn sends_a_write_again_after_a_429_because_nothing_was_done() {
    let Some((t, sim)) = sim_only(
        "sends_a_write_again_after_a_429",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let customer = duellsync_duell::CustomerId(sim.customers()[0].customer_id);
    let product = duellsync_duell::ProductId(sim.product_ids_where(|p| !p.is_deleted)[0]);
    sim.fail_next(
        Some("logistics/orders/save"),
        1,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    t.client
        .save_customer_orders(&t.order_department, &[order("5001", customer, product, 1)])
        .await
        .expect("saved after the 429");
    assert_eq!(sim.request_count("logistics/orders/save"), 2);
    assert_eq!(sim.customer_orders().len(), 1);
}
