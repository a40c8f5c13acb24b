//! Keeps the store's order webhooks present and active (SPEC §3.4). WooCommerce disables a
//! webhook after 7 failed deliveries and re-activating keeps the failure count, so a disabled
//! webhook is deleted and created anew.

use duellsync_events::{meta, v1, EventId};
use duellsync_woo::{NewWebhook, Webhook};
use tokio_util::sync::CancellationToken;

use crate::{StoreCtx, SERVICE};

pub(crate) const TOPICS: [&str; 2] = ["order.created", "order.updated"];

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
                if let Err(e) = ensure(&ctx).await {
                    tracing::warn!(store = %ctx.id(), error = %e, "webhook check failed; next reconciliation retries");
                }
            }
        }
    }
}

/// What `ensure` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EnsureReport {
    pub created: Vec<String>,
    pub recreated: Vec<String>,
    pub healthy: Vec<String>,
    pub paused: Vec<String>,
}

pub(crate) async fn ensure(ctx: &StoreCtx) -> anyhow::Result<EnsureReport> {
    let url = ctx.store.woo.webhook_delivery_url.clone();
    let hooks: Vec<Webhook> = ctx.woo.list_webhooks(None).await?;
    let mut report = EnsureReport::default();
    for topic in TOPICS {
        let ours: Vec<&Webhook> = hooks
            .iter()
            .filter(|h| h.topic == topic && h.delivery_url == url)
            .collect();
        if ours.iter().any(|h| h.status == "active") {
            report.healthy.push(topic.to_owned());
            continue;
        }
        if ours.iter().any(|h| h.status == "paused") {
            // Paused by a person: their decision. Reported, not overridden.
            report.paused.push(topic.to_owned());
            continue;
        }
        for h in ours.iter().filter(|h| h.status == "disabled") {
            ctx.woo.delete_webhook(h.id).await?;
        }
        let hook = NewWebhook {
            name: format!("duellsync {} {topic}", ctx.id()),
            topic: topic.to_owned(),
            delivery_url: url.clone(),
            secret: ctx.store.woo.webhook_secret.to_secret_string(),
        };
        ctx.woo.create_webhook(&hook).await?;
        if ours.is_empty() {
            report.created.push(topic.to_owned());
        } else {
            report.recreated.push(topic.to_owned());
        }
    }
    if !report.created.is_empty() || !report.recreated.is_empty() {
        tracing::info!(store = %ctx.id(), created = ?report.created, recreated = ?report.recreated, "webhooks ensured");
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
    };
    ctx.bus.publish(&ev).await?;
    Ok(report)
}
