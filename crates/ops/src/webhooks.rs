//! `syncctl webhooks ensure --store S`: the change-poller's webhook upkeep, on demand (after a
//! secret rotation, or when `syncctl test` shows a missing or disabled webhook). Creates
//! missing order webhooks, re-creates disabled ones (delete + create: re-activating would keep
//! WooCommerce's failure counter), reports paused ones. The result is recorded like the
//! poller's (`sync.<s>.webhooks.ensured`) so that `syncctl status` shows it.

use std::time::Duration;

use duellsync_clients as clients;
use duellsync_events::{meta, v1, EventId};
use duellsync_woo::{RetryPolicy, WooClient};
use serde_json::json;

use crate::ui::Tone;
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Create missing and re-create disabled order webhooks of a store.
    Ensure {
        /// The store.
        #[arg(long)]
        store: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: WebhooksCommand) -> anyhow::Result<Outcome> {
    let WebhooksCommand::Ensure { store } = cmd;
    check_store_id(&store)?;
    let settings = ctx.store(&store)?;
    let url = settings.woo.webhook_delivery_url.clone();
    if url.is_empty() {
        return Err(usage(format!(
            "store {store} has no woo.webhook_delivery_url: the engine manages no webhooks for it (orders arrive by polling); set it to webhook-ingest's public URL for this store first"
        )));
    }
    if !settings.sync_orders {
        return Err(usage(format!(
            "store {store} has sync_orders = false: it takes no order webhooks"
        )));
    }
    let mut config = clients::woo_config(&settings).map_err(usage)?;
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(5),
    };
    let woo = WooClient::new(config).map_err(|e| usage(e.to_string()))?;
    let report = woo
        .ensure_order_webhooks(
            &url,
            &settings.woo.webhook_secret.to_secret_string(),
            &format!("duellsync {store}"),
        )
        .await
        .map_err(|e| anyhow::anyhow!("WooCommerce: {e}; run `syncctl test --store {store}`"))?;

    // Recorded like the poller's check; a broker that is not there only costs the record.
    let now = duellsync_events::now_ms();
    let event = v1::WebhooksEnsured {
        meta: Some(meta(
            &store,
            EventId::new("webhooks-ensured", &store).int(now).finish(),
            "syncctl",
            format!("webhooks:{store}"),
        )),
        created: report.created.clone(),
        recreated: report.recreated.clone(),
        healthy: report.healthy.clone(),
        rotated: report.rotated.clone(),
    };
    let recorded = match ctx.bus().await {
        Ok(bus) => bus
            .publish(&event)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let ui = &ctx.ui;
    if ui.json {
        ui.json_out(&json!({
            "store": store,
            "delivery_url": url,
            "created": report.created,
            "recreated": report.recreated,
            "healthy": report.healthy,
            "rotated": report.rotated,
            "paused": report.paused,
            "recorded": recorded.is_ok(),
        }));
    } else {
        ui.line(format!("Order webhooks of store {store} → {url}"));
        for t in &report.created {
            ui.check(true, t, "created (was missing)", None);
        }
        for t in &report.recreated {
            ui.check(
                true,
                t,
                "re-created (was disabled; the new one starts with no failures)",
                None,
            );
        }
        for t in &report.rotated {
            ui.check(
                true,
                t,
                "active; given the current secret (it signed with another)",
                None,
            );
        }
        for t in &report.healthy {
            ui.check(true, t, "active, left as it is", None);
        }
        for t in &report.paused {
            ui.line(format!(
                "{} {t:<26} paused by a person, left alone: orders arrive by polling only; set it Active in WooCommerce → Settings → Advanced → Webhooks",
                ui.paint(Tone::Warn, "⚠")
            ));
        }
        if let Err(e) = &recorded {
            ui.note(format!(
                "warning: the result was not recorded in the sync log: {e}"
            ));
        }
    }
    Ok(Outcome::Ok)
}
