//! One WooCommerce order → at most one DUELL order and one stock deduction, whatever duplicates,
//! redeliveries and unknown outcomes happen (DUELL processed the write but the answer was lost).

mod common;

use common::*;
use duellsync_duell_sim::Fault;
use duellsync_events::headers;
use duellsync_events::v1;
use serde_json::{json, Value};

#[tokio::test]
async fn the_same_order_observed_many_times_with_different_bodies_creates_one_duell_order() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 2)], |_| {});
    let body = app.order_json(id);
    let mut bodies = vec![body.clone()];
    for n in 0..4 {
        let mut b = body.clone();
        // Webhook and poller bodies differ in fields nobody imports.
        b["customer_note"] = format!("variant {n}").into();
        bodies.push(b);
    }
    // All at once, and each twice: the importer's per-order ledger, not the event ids, decides.
    let publishes = bodies
        .iter()
        .chain(bodies.iter())
        .map(|b| app.observe_json(b));
    futures::future::join_all(publishes).await;
    app.customer_order_made(id).await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert_eq!(app.order_events::<v1::OrderImported>(id).await.len(), 1);
    assert!(app.dead_letters().await.is_empty());

    // A restart keeps the ledger: a later observation imports nothing more.
    let mut app = app;
    app.restart().await;
    app.observe(id).await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

#[tokio::test]
async fn without_the_lookup_a_lost_answer_leaves_one_order_and_an_in_doubt_flag() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    // DUELL saves the order, then the answer never comes: the client times out.
    app.duell
        .fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    app.observe(id).await;

    let doubt = eventually_async("OrderInDoubt", WAIT, || async {
        app.order_event::<v1::OrderInDoubt>(id).await
    })
    .await;
    assert_eq!(doubt.operation, "customer_order");
    assert_eq!(doubt.attempt_id, format!("{id}-1"));
    let dead = eventually_async("the in-doubt dead letter", WAIT, || async {
        app.dead_letters().await.into_iter().next()
    })
    .await;
    let reason = dead
        .header(headers::DLQ_REASON)
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("in doubt") && reason.contains(&format!("reference {id}")),
        "{reason}"
    );
    assert_eq!(
        app.customer_orders_for(id).len(),
        1,
        "DUELL did save it once"
    );

    // Later observations, redeliveries and a restart never send it again.
    let mut body = app.order_json(id);
    body["customer_note"] = "webhook again".into();
    app.observe_json(&body).await;
    app.drained().await;
    let mut app = app;
    app.restart().await;
    app.observe(id).await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert!(app.order_events::<v1::OrderImported>(id).await.is_empty());
    assert_eq!(app.dead_letters().await.len(), 1, "dead-lettered once");
    assert_eq!(app.order_events::<v1::OrderInDoubt>(id).await.len(), 1);
}

#[tokio::test]
async fn without_the_lookup_a_server_error_after_the_save_is_in_doubt_too() {
    let app = spawn_app_with(|s| s.settings.push("create_customer_order = false".into())).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.duell.fail_next(
        Some("sale/orders/save"),
        1,
        Fault::ServerErrorAfterProcessing { status: 502 },
    );
    app.observe(id).await;
    let doubt = eventually_async("OrderInDoubt", WAIT, || async {
        app.order_event::<v1::OrderInDoubt>(id).await
    })
    .await;
    assert_eq!(doubt.operation, "sales_order");
    app.drained().await;
    assert_eq!(app.sales_orders_for(id).len(), 1);
}

#[tokio::test]
async fn with_the_lookup_a_lost_answer_is_recovered_as_the_one_order() {
    let app = spawn_app_with(|s| s.lookup_on()).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.duell
        .fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    app.observe(id).await;
    let ev = eventually_async("OrderImported", WAIT, || async {
        app.order_event::<v1::OrderImported>(id).await
    })
    .await;
    assert!(ev.recovered_by_lookup);
    let orders = app.customer_orders_for(id);
    assert_eq!(orders.len(), 1);
    assert_eq!(ev.duell_order_id as u64, orders[0].order_id);
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert!(app.dead_letters().await.is_empty());
    assert!(app.order_events::<v1::OrderInDoubt>(id).await.is_empty());
    assert!(app.notes(id).await.iter().any(|n| n.contains("lookup")));
}

#[tokio::test]
async fn with_the_lookup_a_server_error_after_the_save_is_recovered_for_sales_orders() {
    let app = spawn_app_with(|s| {
        s.lookup_on();
        s.settings.push("create_customer_order = false".into());
    })
    .await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.duell.fail_next(
        Some("sale/orders/save"),
        1,
        Fault::ServerErrorAfterProcessing { status: 500 },
    );
    app.observe(id).await;
    let ev = eventually_async("OrderImported", WAIT, || async {
        app.order_event::<v1::OrderImported>(id).await
    })
    .await;
    assert!(ev.recovered_by_lookup);
    app.drained().await;
    assert_eq!(app.sales_orders_for(id).len(), 1);
}

#[tokio::test]
async fn with_the_lookup_an_order_duell_provably_lacks_is_sent_again_after_the_settle_time() {
    let app = spawn_app_with(|s| s.lookup_on()).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    // A 5xx before processing: the client cannot know, DUELL has nothing.
    app.duell.fail_next(
        Some("logistics/orders/save"),
        1,
        Fault::ServerError { status: 503 },
    );
    app.observe(id).await;
    let ev = eventually_async("OrderImported", WAIT, || async {
        app.order_event::<v1::OrderImported>(id).await
    })
    .await;
    assert!(!ev.recovered_by_lookup, "created by the second attempt");
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert_eq!(app.duell.request_count("logistics/orders/save"), 2);
}

#[tokio::test]
async fn an_operator_replay_of_the_in_doubt_dead_letter_imports_the_order() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    // Nothing reached DUELL, but the importer cannot know that without a lookup.
    app.duell.fail_next(
        Some("logistics/orders/save"),
        1,
        Fault::ServerError { status: 503 },
    );
    app.observe(id).await;
    let dead = eventually_async("the in-doubt dead letter", WAIT, || async {
        app.dead_letters().await.into_iter().next()
    })
    .await;
    app.drained().await;
    assert!(app.customer_orders_for(id).is_empty());
    // The operator checked DUELL: no order. Replaying is their decision.
    app.replay(&dead).await;
    eventually("the customer order", WAIT, || {
        (app.customer_orders_for(id).len() == 1).then_some(())
    })
    .await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

#[tokio::test]
async fn a_stock_deduction_with_a_lost_answer_is_in_doubt_even_with_the_lookup_on() {
    let app = spawn_app_with(|s| {
        s.lookup_on();
        s.settings.push("create_customer_order = false".into());
        s.settings.push("deduct_stock = true".into());
    })
    .await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 3)], |_| {});
    app.duell.fail_next(
        Some("product/adjust-stock"),
        1,
        Fault::ServerErrorAfterProcessing { status: 502 },
    );
    app.observe(id).await;
    let doubt = eventually_async("OrderInDoubt", WAIT, || async {
        app.order_event::<v1::OrderInDoubt>(id).await
    })
    .await;
    assert_eq!(doubt.operation, "adjust_stock");
    app.observe(id).await;
    let mut body = app.order_json(id);
    body["customer_note"] = "again".into();
    app.observe_json(&body).await;
    app.drained().await;
    assert_eq!(
        app.duell.stock_adjustments().len(),
        1,
        "deducted once, never again"
    );
}

#[tokio::test]
async fn duell_down_for_a_while_is_retried_without_doubling() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    // Connection-level refusals (429) are provably not applied: plain retries.
    app.duell.fail_next(
        Some("logistics/orders/save"),
        6,
        Fault::RateLimited {
            retry_after_secs: 0,
        },
    );
    app.observe(id).await;
    eventually("the customer order", WAIT, || {
        (app.customer_orders_for(id).len() == 1).then_some(())
    })
    .await;
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert!(app.order_events::<v1::OrderInDoubt>(id).await.is_empty());
}

#[tokio::test]
async fn a_lost_ledger_is_restored_from_the_sync_log_so_a_replay_imports_nothing_twice() {
    let mut app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    app.customer_order_made(id).await;

    // The volume is gone (or the store moved to another shard): no ledger, and the consumers
    // start over from the beginning of the streams.
    app.stop().await;
    std::fs::remove_dir_all(app.state_dir()).expect("state removed");
    for name in app.bus.consumer_names("WOO").await.unwrap() {
        if name.starts_with("order-importer-") {
            app.bus.delete_consumer("WOO", &name).await.unwrap();
        }
    }
    app.restart().await;
    app.observe(id).await;
    app.drained().await;
    assert_eq!(
        app.customer_orders_for(id).len(),
        1,
        "the replay imported nothing again"
    );
}

#[tokio::test]
async fn an_import_leaves_its_marker_on_the_woo_order_with_the_status_in_one_write() {
    let app = spawn_app_with(|s| {
        s.settings
            .push(r#"status_after_import = "completed""#.into())
    })
    .await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.woo.reset_request_counts();
    app.observe(id).await;
    let duell = eventually("the customer order", WAIT, || {
        app.customer_orders_for(id).into_iter().next()
    })
    .await;
    app.drained().await;
    let meta = app.woo_meta(id);
    assert_eq!(
        meta.get("_duell_order_id"),
        Some(&serde_json::json!(duell.order_id.to_string())),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("_duell_order_number"),
        Some(&serde_json::json!(duell.order_number))
    );
    assert_eq!(
        meta.get("_duell_import"),
        Some(&serde_json::json!("customer_order"))
    );
    assert_eq!(app.order_json(id)["status"], "completed");
    // The marker and the status went out in one write; the note was added once without a
    // look first (the outcome was recorded in that very round, so no note could exist).
    assert_eq!(app.woo.request_count("PUT orders/{id}"), 1);
    assert_eq!(app.woo.request_count("POST orders/{id}/notes"), 1);
    assert_eq!(app.woo.request_count("GET orders/{id}/notes"), 0);
    assert_eq!(
        app.woo.request_count("GET orders/{id}"),
        1,
        "read fresh once"
    );
}

#[tokio::test]
async fn a_lost_volume_and_sync_log_do_not_import_an_old_order_a_second_time() {
    let mut app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    app.customer_order_made(id).await;

    // The volume is gone and the sync log no longer holds the import (older than its 30 days,
    // or the stream was lost): only the marker in WooCommerce remembers.
    app.purge("SYNC", &format!("sync.{STORE}.>")).await;
    app.lose_the_volume().await;
    app.observe(id).await;
    app.drained().await;
    assert_eq!(
        app.customer_orders_for(id).len(),
        1,
        "the replay and the new observation imported nothing again"
    );
    let rec = app.ledger(id).expect("the ledger knows the order again");
    let imp = rec.stage.imported().expect("as imported");
    assert_eq!(imp.origin, duellsync_orders::Origin::Marker);
    assert_eq!(
        imp.duell_order_id as u64,
        app.customer_orders_for(id)[0].order_id
    );
    assert!(
        app.order_events::<v1::OrderImported>(id).await.is_empty(),
        "nothing is announced again"
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn an_order_duells_own_plugin_imported_is_not_imported_again() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    // DUELL's retired plugin marked the orders it sent with `_duell_order_id`.
    let stores = duellsync_settings::load_stores(
        &app.state_dir().parent().expect("dir").join("stores"),
        &[],
    )
    .expect("store settings");
    let woo = duellsync_clients::woo_client(stores.get(STORE).expect("store")).expect("client");
    woo.update_order(
        id as u64,
        &serde_json::json!({"meta_data": [
            {"key": "_duell_order_id", "value": "4711"},
            {"key": "_duell_order_number", "value": "10042"}
        ]}),
    )
    .await
    .expect("meta written");
    app.observe(id).await;
    app.drained().await;
    assert!(app.customer_orders_for(id).is_empty());
    assert_eq!(app.duell.request_count("logistics/orders/save"), 0);
    let rec = app.ledger(id).expect("recorded");
    let imp = rec.stage.imported().expect("as imported");
    assert_eq!(
        (imp.duell_order_id, imp.duell_order_number.as_str()),
        (4711, "10042")
    );
}

#[tokio::test]
async fn a_new_ledger_learns_marked_orders_older_than_the_sync_log() {
    let mut app = spawn_app().await;
    app.product("A-1", "100.00");
    let old = app.place(&[("A-1", 1)], |_| {});
    let plain = app.place(&[("A-1", 1)], |_| {});
    app.observe(old).await;
    app.customer_order_made(old).await;
    app.purge("SYNC", &format!("sync.{STORE}.>")).await;
    app.lose_the_volume().await;
    app.markers_restored().await;
    let rec = app.ledger(old).expect("learned from its marker");
    assert_eq!(
        rec.stage.imported().map(|i| i.origin),
        Some(duellsync_orders::Origin::Marker)
    );
    assert!(app.ledger(plain).is_none(), "an unmarked order is not");
}

#[tokio::test]
async fn an_order_deleted_before_its_import_is_skipped_and_its_hold_released() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    let body = app.order_json(id);
    let stores = duellsync_settings::load_stores(
        &app.state_dir().parent().expect("dir").join("stores"),
        &[],
    )
    .expect("store settings");
    let woo = duellsync_clients::woo_client(stores.get(STORE).expect("store")).expect("client");
    woo.delete_order(id as u64, true).await.expect("deleted");
    app.observe_json(&body).await;
    let skipped = eventually_async("OrderSkipped", WAIT, || async {
        app.order_event::<v1::OrderSkipped>(id).await
    })
    .await;
    assert!(
        skipped.reason.contains("no longer exists"),
        "{}",
        skipped.reason
    );
    app.drained().await;
    assert!(app.customer_orders_for(id).is_empty());
    assert!(
        app.events::<v1::StockHoldChanged>()
            .await
            .iter()
            .any(|h| h.woo_order_id == id
                && h.phase == v1::stock_hold_changed::Phase::Released as i32)
    );
}

#[tokio::test]
async fn an_order_costs_two_flushes_and_concurrent_orders_share_them() {
    let app = spawn_app().await;
    app.product("A-1", "100.00");
    app.markers_restored().await;
    // The first order meets a new customer (remembered with a flush of its own).
    let warm = app.place(&[("A-1", 1)], |_| {});
    app.observe(warm).await;
    app.customer_order_made(warm).await;

    let id = app.place(&[("A-1", 1)], |_| {});
    let before = app.flushes();
    let batches = app.batches();
    app.observe(id).await;
    app.customer_order_made(id).await;
    assert_eq!(
        app.flushes() - before,
        2,
        "intent and outcome; the rest rides along"
    );
    // sled writes two log buffers of its own for every batch: the happy path needs none.
    assert_eq!(app.batches() - batches, 0, "in-order commits only");

    let ids: Vec<i64> = (0..12).map(|_| app.place(&[("A-1", 1)], |_| {})).collect();
    let before = app.flushes();
    futures::future::join_all(ids.iter().map(|id| app.observe(*id))).await;
    eventually("all orders", WAIT, || {
        ids.iter()
            .all(|id| !app.customer_orders_for(*id).is_empty())
            .then_some(())
    })
    .await;
    app.drained().await;
    let made = app.flushes() - before;
    assert!(
        made <= 2 * ids.len() as u64,
        "{made} flushes for {} orders",
        ids.len()
    );
}

#[tokio::test]
async fn a_state_rebuild_learns_the_marked_orders_again() {
    let mut app = spawn_app().await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.observe(id).await;
    app.customer_order_made(id).await;
    app.markers_restored().await;
    app.purge("SYNC", &format!("sync.{STORE}.>")).await;
    // What `syncctl state rebuild --service order-importer` does to the stopped service.
    app.stop().await;
    {
        let state = duellsync_store::Store::open(app.state_dir().join("sled")).expect("state");
        let removed = state.remove_group(STORE).expect("rows removed");
        assert!(removed.contains_key("importer_marks"), "{removed:?}");
        assert!(removed.contains_key("importer_orders"), "{removed:?}");
    }
    for name in app.bus.consumer_names("WOO").await.expect("consumers") {
        if name.starts_with("order-importer-") {
            app.bus
                .delete_consumer("WOO", &name)
                .await
                .expect("deleted");
        }
    }
    app.start_again().await;
    app.markers_restored().await;
    assert_eq!(
        app.ledger(id)
            .and_then(|r| r.stage.imported().map(|i| i.origin)),
        Some(duellsync_orders::Origin::Marker)
    );
    app.drained().await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
}

/// `Work::persist` writes an order's side entries before its record and removes them after it,
/// without a batch: a crash between those writes leaves an `open` entry (and a body) the record
/// does not need. The next start clears them and sends nothing.
#[tokio::test]
async fn the_leftovers_of_a_crash_between_in_order_writes_are_cleared_at_start() {
    let mut app = spawn_app().await;
    app.product("A-1", "100.00");
    let imported = app.place(&[("A-1", 1)], |_| {});
    app.observe(imported).await;
    app.customer_order_made(imported).await;
    let unseen = app.place(&[("A-1", 1)], |_| {});
    app.stop().await;

    type Key = (String, i64);
    {
        let state = duellsync_store::Store::open(app.state_dir().join("sled")).expect("state");
        let open: duellsync_store::Table<Key, String> = state.table("importer_open");
        let bodies: duellsync_store::Table<Key, Value> = state.table("importer_bodies");
        // The outcome was saved, the removals after it were lost.
        let mut c = duellsync_store::Commit::new();
        open.put(&mut c, &(STORE.into(), imported), &format!("{imported}-1"));
        bodies.put(
            &mut c,
            &(STORE.into(), imported),
            &json!({"observed_b64": ""}),
        );
        // An intent's entry was put, the record after it was lost.
        open.put(&mut c, &(STORE.into(), unseen), &format!("{unseen}-1"));
        state.commit(c).await.expect("written");
    }

    app.start_again().await;
    app.drained().await;
    {
        // Read through a second handle only after the importer stopped.
        app.stop().await;
        let state = duellsync_store::Store::open(app.state_dir().join("sled")).expect("state");
        let open: duellsync_store::Table<Key, String> = state.table("importer_open");
        let bodies: duellsync_store::Table<Key, Value> = state.table("importer_bodies");
        assert_eq!(open.get(&(STORE.into(), imported)).expect("read"), None);
        assert_eq!(open.get(&(STORE.into(), unseen)).expect("read"), None);
        assert_eq!(bodies.get(&(STORE.into(), imported)).expect("read"), None);
    }
    app.start_again().await;
    assert_eq!(app.customer_orders_for(imported).len(), 1);
    assert!(app.customer_orders_for(unseen).is_empty(), "nothing sent");
    // The order whose intent was lost is imported once when it is seen.
    app.observe(unseen).await;
    app.customer_order_made(unseen).await;
    assert_eq!(app.customer_orders_for(unseen).len(), 1);
    assert_eq!(app.customer_orders_for(imported).len(), 1);
}

/// The intent of a round that works on its own message's body keeps no copy of the body: the
/// message is not acked before the round ends, so a crash brings it back. This is the crash:
/// the intent and its `open` entry on disk, no body, DUELL never got the write, and the
/// message comes again.
#[tokio::test]
async fn an_intent_keeps_no_copy_of_its_message_body_and_a_crash_there_imports_once() {
    let mut app = spawn_app_with(|s| s.lookup_on()).await;
    app.product("A-1", "100.00");
    let id = app.place(&[("A-1", 1)], |_| {});
    app.duell
        .fail_next(Some("logistics/orders/save"), 1, Fault::Hang);
    let body = app.order_json(id);
    app.observe_json(&body).await;
    let intent = eventually("the intent", WAIT, || {
        app.ledger(id)
            .filter(|r| matches!(r.stage, duellsync_orders::Stage::Intent { .. }))
    })
    .await;
    assert!(!app.body_stored(id), "the intent wrote the body");
    app.stop().await;

    type Key = (String, i64);
    {
        let state = duellsync_store::Store::open(app.state_dir().join("sled")).expect("state");
        let orders: duellsync_store::Table<Key, duellsync_orders::OrderRecord> =
            state.table("importer_orders");
        let open: duellsync_store::Table<Key, String> = state.table("importer_open");
        let bodies: duellsync_store::Table<Key, Value> = state.table("importer_bodies");
        let parked: duellsync_store::Table<Key, Value> = state.table("importer_parked");
        let attempt = intent.stage.open_attempt().expect("an attempt").id.clone();
        let mut c = duellsync_store::Commit::new();
        orders.put(&mut c, &(STORE.into(), id), &intent);
        open.put(&mut c, &(STORE.into(), id), &attempt);
        bodies.remove(&mut c, &(STORE.into(), id));
        parked.remove(&mut c, &(STORE.into(), id));
        state.commit(c).await.expect("written");
    }
    assert!(app.customer_orders_for(id).is_empty());

    app.start_again().await;
    // The message again (a field the importer does not read tells it apart from the first
    // publish, which JetStream would drop as a duplicate).
    let mut again = body.clone();
    again["redelivered"] = json!(true);
    app.observe_json(&again).await;
    app.customer_order_made(id).await;
    assert_eq!(app.customer_orders_for(id).len(), 1);
    assert_eq!(app.order_events::<v1::OrderImported>(id).await.len(), 1);
    assert!(!app.body_stored(id));
}
