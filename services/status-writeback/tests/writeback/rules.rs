//! The write-back rules of SPEC §3.3, as behaviours.

use duellsync_events::{headers, v1};
use duellsync_woo_sim::{FaultKind, FaultRule};

use crate::helpers::{eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn duell_status_5_completes_the_woo_order_exactly_once() {
    let mut app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.settle().await;
    app.sim.reset_request_counts();

    let ev = app.status_event(id, 1, 5);
    app.bus.publish(&ev).await.unwrap();
    app.settle().await;
    assert_eq!(app.order_status(id), "completed");
    assert_eq!(app.sim.captured_orders(), vec![id], "payment captured once");
    assert_eq!(app.status_writes(), 1);
    assert!(app
        .notes(id)
        .await
        .iter()
        .any(|n| n == "Status from DUELL: Fullført"));
    let written = app.sync_events::<v1::OrderStatusWritten>().await;
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].woo_order_id, id as i64);
    assert_eq!(
        (
            written[0].from_status.as_str(),
            written[0].to_status.as_str()
        ),
        ("processing", "completed")
    );
    assert_eq!(written[0].duell_status_id, 5);
    let meta = written[0].meta.as_ref().unwrap();
    assert_eq!(meta.causation_id, ev.meta.as_ref().unwrap().event_id);
    assert_eq!(meta.correlation_id, format!("order:s1:{id}"));

    // The same event again (a redelivery) and a new event for the same status (DUELL went
    // 5 → 3 → 5): no second write, no second note.
    app.redeliver(&ev).await;
    app.status(id, 5, 3).await;
    app.status(id, 3, 5).await;
    app.settle().await;
    assert_eq!(app.status_writes(), 1);
    assert_eq!(app.notes_added(), 1);
    assert_eq!(app.sync_events::<v1::OrderStatusWritten>().await.len(), 1);
    assert!(app
        .sync_events::<v1::OrderStatusConflict>()
        .await
        .is_empty());

    // And after a restart of the service (the state is in sled).
    app.restart().await;
    app.redeliver(&ev).await;
    app.status(id, 5, 5).await;
    app.settle().await;
    assert_eq!(app.status_writes(), 1);
    assert_eq!(app.sim.captured_orders(), vec![id]);
    app.stop().await;
}

#[tokio::test]
async fn an_order_cancelled_by_hand_in_woo_is_not_completed() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.sim.set_order_status(id, "cancelled").unwrap();
    app.sim.reset_request_counts();

    app.status(id, 1, 5).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "cancelled");
    assert_eq!(app.status_writes(), 0);
    assert!(app.sim.captured_orders().is_empty());
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "final_status_set_by_person");
    assert_eq!(conflicts[0].woo_status, "cancelled");
    assert_eq!(conflicts[0].wanted_status, "completed");
    assert!(
        conflicts[0].reason.contains("final"),
        "{}",
        conflicts[0].reason
    );
}

#[tokio::test]
async fn an_order_completed_by_hand_in_woo_is_not_overwritten() {
    let app = spawn_app_with(&[r#"status_map = { "5" = "completed", "8" = "cancelled" }"#]).await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.sim.set_order_status(id, "completed").unwrap();
    app.sim.reset_request_counts();

    // DUELL cancels what the shop already completed: refused, recorded.
    app.status(id, 1, 8).await;
    // DUELL completes too: WooCommerce already has it, nothing to write, no conflict.
    app.status(id, 8, 5).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "completed");
    assert_eq!(app.status_writes(), 0);
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "final_status_set_by_person");
    assert_eq!(conflicts[0].wanted_status, "cancelled");
    assert!(app.sync_events::<v1::OrderStatusWritten>().await.is_empty());
}

#[tokio::test]
async fn a_backwards_move_is_refused() {
    let app = spawn_app_with(&[r#"status_map = { "2" = "on-hold", "5" = "completed" }"#]).await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.sim.reset_request_counts();

    app.status(id, 1, 2).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "processing");
    assert_eq!(app.status_writes(), 0);
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "backwards");
    assert_eq!(
        (
            conflicts[0].woo_status.as_str(),
            conflicts[0].wanted_status.as_str()
        ),
        ("processing", "on-hold")
    );
}

#[tokio::test]
async fn a_total_changed_in_woo_parks_the_order_with_the_reason() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    // A shop manager adds a line after the import: WooCommerce's total moves.
    app.woo
        .update_order(
            id,
            &serde_json::json!({ "line_items": [{ "product_id": app.sim.seed_products(1, "EXTRA-", "10.00", 5)[0], "quantity": 1 }] }),
        )
        .await
        .unwrap();
    assert_ne!(app.order_total(id), total);
    app.sim.reset_request_counts();

    app.status(id, 1, 5).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "processing");
    assert_eq!(app.status_writes(), 0);
    assert!(app.sim.captured_orders().is_empty());
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "total_mismatch");
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subject, "dlq.s1.status-writeback");
    let reason = dead[0].header(headers::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("total"), "{reason}");
    assert!(reason.contains(&total), "{reason}");
}

#[tokio::test]
async fn an_unmapped_status_writes_nothing() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.sim.reset_request_counts();

    for (prev, status) in [(1, 3), (3, 11), (11, 6)] {
        app.status(id, prev, status).await;
    }
    app.settle().await;
    assert!(
        app.sim.request_counts().is_empty(),
        "{:?}",
        app.sim.request_counts()
    );
    assert_eq!(app.order_status(id), "processing");
    assert!(app.sync_events::<v1::OrderStatusWritten>().await.is_empty());
    assert!(app
        .sync_events::<v1::OrderStatusConflict>()
        .await
        .is_empty());
}

#[tokio::test]
async fn a_custom_status_map_cancels_with_duell_status_8() {
    let app = spawn_app_with(&[r#"status_map = { "5" = "completed", "8" = "cancelled" }"#]).await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.sim.reset_request_counts();

    app.status(id, 1, 8).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "cancelled");
    assert_eq!(app.status_writes(), 1);
    assert!(app
        .notes(id)
        .await
        .iter()
        .any(|n| n == "Status from DUELL: Kansellert"));
    let written = app.sync_events::<v1::OrderStatusWritten>().await;
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].to_status, "cancelled");
    assert_eq!(written[0].duell_status_id, 8);

    // DUELL then says completed: the engine's own cancellation is final too.
    app.status(id, 8, 5).await;
    app.settle().await;
    assert_eq!(app.status_writes(), 1);
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "final_status_written_by_engine");
}

#[tokio::test]
async fn a_failed_note_is_settled_without_a_second_status_write() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported(id, &total).await;
    app.settle().await;
    app.sim.reset_request_counts();
    app.sim.add_fault(FaultRule::next(
        "POST",
        "orders/{id}/notes",
        1,
        FaultKind::ServerError {
            status: 500,
            html: false,
        },
    ));

    app.status(id, 1, 5).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "completed");
    assert_eq!(app.status_writes(), 1, "the status is not written twice");
    assert_eq!(app.notes_added(), 2, "the failed note and the one after it");
    assert_eq!(
        app.sim.request_count("GET orders/{id}/notes"),
        1,
        "notes are checked before adding one after an unknown outcome"
    );
    let notes = app.notes(id).await;
    assert_eq!(
        notes
            .iter()
            .filter(|n| *n == "Status from DUELL: Fullført")
            .count(),
        1,
        "{notes:?}"
    );
    assert_eq!(app.sync_events::<v1::OrderStatusWritten>().await.len(), 1);
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_status_arriving_before_its_import_is_written_once_the_import_arrives() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.status(id, 1, 5).await;
    // The status event is retried until the import fact is there.
    eventually(10, "the status event to be pending", || async {
        app.bus
            .consumer_lag("DUELL", "status-writeback-s1-status")
            .await
            .ok()
            .filter(|lag| *lag > 0)
    })
    .await;
    assert_eq!(app.status_writes(), 0);
    assert_eq!(
        app.sim.request_count("GET orders/{id}"),
        0,
        "nothing read before the import"
    );
    app.imported(id, &total).await;
    app.settle().await;
    assert_eq!(app.order_status(id), "completed");
    assert_eq!(app.status_writes(), 1);
}

#[tokio::test]
async fn an_order_gone_from_woo_is_a_conflict() {
    let app = spawn_app().await;
    app.imported(987_654, "10.00").await;
    app.status(987_654, 1, 5).await;
    app.settle().await;
    let conflicts = app.sync_events::<v1::OrderStatusConflict>().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].code, "order_missing");
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn sales_orders_are_not_written_back() {
    let app = spawn_app().await;
    let (id, total) = app.place_order();
    app.imported_as(id, &total, v1::order_imported::Kind::SalesOrder)
        .await;
    app.settle().await;
    app.sim.reset_request_counts();
    app.status(id, 1, 5).await;
    app.settle().await;
    assert!(app.sim.request_counts().is_empty());
    assert_eq!(app.order_status(id), "processing");
}
