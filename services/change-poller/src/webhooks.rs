//! Keeps the store's order webhooks present and active (SPEC §3.4). WooCommerce disables a
//! webhook after 7 failed deliveries and re-activating keeps the failure count, so a disabled
//! webhook is deleted and created anew (`WooClient::ensure_order_webhooks`, shared with
//! `syncctl webhooks ensure`).

use duellsync_events::{meta, v1, EventId};
use duellsync_woo::EnsureReport;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{StoreCtx, SERVICE};

pub(crate) async fn run(ctx: StoreCtx, stop: CancellationToken) -> anyhow::Result<()> {
    if ctx.store.woo.webhook_delivery_url.is_empty() || !ctx.store.sync_orders {
        stop.cancelled().await;
        return Ok(());
    }
    let mut tick = tokio::time::interval(ctx.store.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let span = tracing::info_span!("poll", otel.name = "webhook check", store = %ctx.id());
                if let Err(e) = ensure(&ctx).instrument(span).await {
                    tracing::warn!(store = %ctx.id(), error = %e, "webhook check failed; next reconciliation retries");
                }
            }
        }
    }
}

pub(crate) async fn ensure(ctx: &StoreCtx) -> anyhow::Result<EnsureReport> {
    let report = ctx
        .woo
        .ensure_order_webhooks(
            &ctx.store.woo.webhook_delivery_url,
            &ctx.store.woo.webhook_secret.to_secret_string(),
            &format!("duellsync {}", ctx.id()),
        )
        .await?;
    if !report.created.is_empty() || !report.recreated.is_empty() || !report.rotated.is_empty() {
        tracing::info!(store = %ctx.id(), created = ?report.created, recreated = ?report.recreated, rotated = ?report.rotated, "webhooks ensured");
    }
    if !report.paused.is_empty() {
        tracing::warn!(store = %ctx.id(), paused = ?report.paused, "webhooks paused in WooCommerce; orders arrive by polling only");
    }
    let now = duellsync_events::now_ms();
    let id = EventId::new("webhooks-ensured", ctx.id()).int(now).finish();
    let ev = v1::WebhooksEnsured {
        meta: Some(meta(
            ctx.id(),
            id,
            SERVICE,
            format!("webhooks:{}", ctx.id()),
        )),
        created: report.created.clone(),
        recreated: report.recreated.clone(),
        healthy: report.healthy.clone(),
        rotated: report.rotated.clone(),
    };
    ctx.bus.publish(&ev).await?;
    Ok(report)
}
