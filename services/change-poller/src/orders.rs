//! Gap-fill behind WooCommerce webhooks (SPEC §3.2): WooCommerce never retries a failed
//! delivery and disables webhooks after 7 failures, so orders are also found by listing them —
//! new ones by creation date, status changes by `modified_after` — always ordered by id (other
//! orderings skip and repeat rows on real stores).

use duellsync_events::{meta, order_correlation, sha256_hex, v1, EventId};
use duellsync_store::{Commit, Table};
use duellsync_woo::{format_gmt_cursor, Idempotency, Method, WooRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{StoreCtx, SERVICE};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SeenOrder {
    status: String,
    modified: String,
}

const CREATED_CURSOR: &str = "orders_created_cursor";
const MODIFIED_CURSOR: &str = "orders_modified_cursor";

pub(crate) async fn run(ctx: StoreCtx, stop: CancellationToken) -> anyhow::Result<()> {
    if !ctx.store.sync_orders {
        stop.cancelled().await;
        return Ok(());
    }
    let mut tick = tokio::time::interval(ctx.store.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poller = OrderPoller::new(ctx);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                // One trace per cycle, continued by the importer for the orders it publishes.
                let span = tracing::info_span!("poll", otel.name = "order gap-fill", store = %poller.ctx.id());
                if let Err(e) = poller.poll().instrument(span).await {
                    metrics::counter!("duellsync_poller_cycle_failures_total", "store" => poller.ctx.id().to_owned(), "cycle" => "orders").increment(1);
                    tracing::warn!(store = %poller.ctx.id(), error = %format!("{e:#}"), "order gap-fill failed; next cycle retries");
                }
            }
        }
    }
}

struct OrderPoller {
    ctx: StoreCtx,
    seen: Table<(String, i64), SeenOrder>,
    marks: Table<(String, String), i64>,
    /// Whether the store understands `modified_after` (WooCommerce 5.8+).
    modified_after_supported: bool,
}

fn unix_of(v: &Value, field: &str) -> Option<i64> {
    let s = v.get(field)?.as_str()?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s.get(..19)?, &fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}

impl OrderPoller {
    fn new(ctx: StoreCtx) -> Self {
        OrderPoller {
            seen: ctx.state.table("poller_orders"),
            marks: ctx.state.table("poller_order_marks"),
            modified_after_supported: true,
            ctx,
        }
    }

    fn mark(&self, name: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .marks
            .get(&(self.ctx.id().to_owned(), name.to_owned()))?)
    }

    fn first_cursor(&self) -> i64 {
        if let Some(from) = self.ctx.store.orders_from_unix() {
            return from;
        }
        OffsetDateTime::now_utc().unix_timestamp()
            - self.ctx.config.first_run_lookback.as_secs() as i64
    }

    async fn poll(&mut self) -> anyhow::Result<()> {
        let overlap = self.ctx.config.order_overlap.as_secs() as i64;
        let created = match self.mark(CREATED_CURSOR)? {
            Some(c) => c,
            None => self.first_cursor(),
        };
        let newest_created = self.scan("after", created - overlap, created).await?;
        let modified = match self.mark(MODIFIED_CURSOR)? {
            Some(m) => m,
            None => self.first_cursor(),
        };
        let mut newest_modified = modified;
        if self.modified_after_supported {
            match self
                .scan("modified_after", modified - overlap, modified)
                .await
            {
                Ok(n) => newest_modified = n,
                Err(e) if is_unknown_param(&e) => {
                    tracing::warn!(store = %self.ctx.id(), "store has no modified_after (WooCommerce < 5.8); status changes come from webhooks and the open-order scan only");
                    self.modified_after_supported = false;
                }
                Err(e) => return Err(e),
            }
        }
        if !self.modified_after_supported {
            self.scan_open_orders().await?;
        }
        let mut c = Commit::new();
        self.marks.put(
            &mut c,
            &(self.ctx.id().to_owned(), CREATED_CURSOR.to_owned()),
            &newest_created.max(created),
        );
        self.marks.put(
            &mut c,
            &(self.ctx.id().to_owned(), MODIFIED_CURSOR.to_owned()),
            &newest_modified.max(modified),
        );
        self.ctx.state.commit(c).await?;
        Ok(())
    }

    /// Lists orders with `filter > since` page by page (ordered by id), publishes the changed
    /// ones and returns the newest date seen for that filter.
    async fn scan(&self, filter: &str, since: i64, start: i64) -> anyhow::Result<i64> {
        let since_t = OffsetDateTime::from_unix_timestamp(since)?;
        let date_field = if filter == "after" {
            "date_created_gmt"
        } else {
            "date_modified_gmt"
        };
        let mut newest = start;
        let mut page = 1u32;
        loop {
            let req = WooRequest::new(Method::GET, "orders", Idempotency::Idempotent)
                .query(filter, format_gmt_cursor(since_t))
                .query("dates_are_gmt", "true")
                .query("orderby", "id")
                .query("order", "asc")
                .query("per_page", "100")
                .query("page", page.to_string());
            let resp = self.ctx.woo.send(req).await?;
            let total_pages = resp.total_pages.unwrap_or(1);
            let Value::Array(orders) = resp.body else {
                anyhow::bail!("GET orders did not return a list");
            };
            if orders.is_empty() {
                break;
            }
            for o in &orders {
                if let Some(t) = unix_of(o, date_field) {
                    newest = newest.max(t);
                }
            }
            self.observe(orders).await?;
            if u64::from(page) >= total_pages {
                break;
            }
            page += 1;
        }
        Ok(newest)
    }

    /// Without `modified_after`, re-read orders in the statuses the importer cares about.
    async fn scan_open_orders(&self) -> anyhow::Result<()> {
        let mut page = 1u32;
        loop {
            let req = WooRequest::new(Method::GET, "orders", Idempotency::Idempotent)
                .query("status", self.ctx.store.fetch_statuses.join(","))
                .query("orderby", "id")
                .query("order", "asc")
                .query("per_page", "100")
                .query("page", page.to_string());
            let resp = self.ctx.woo.send(req).await?;
            let total_pages = resp.total_pages.unwrap_or(1);
            let Value::Array(orders) = resp.body else {
                anyhow::bail!("GET orders did not return a list");
            };
            if orders.is_empty() {
                return Ok(());
            }
            self.observe(orders).await?;
            if u64::from(page) >= total_pages {
                return Ok(());
            }
            page += 1;
        }
    }

    async fn observe(&self, orders: Vec<Value>) -> anyhow::Result<()> {
        let mut events = Vec::new();
        let mut seen_rows = Vec::new();
        for o in orders {
            let Some(id) = o.get("id").and_then(Value::as_i64) else {
                continue;
            };
            let status = o
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let modified = o
                .get("date_modified_gmt")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let row = SeenOrder {
                status: status.clone(),
                modified: modified.clone(),
            };
            let key = (self.ctx.id().to_owned(), id);
            if self.seen.get(&key)?.as_ref() == Some(&row) {
                continue;
            }
            let payload = serde_json::to_vec(&o)?;
            let event_id = EventId::new("order-polled", self.ctx.id())
                .int(id)
                .str(&status)
                .str(&modified)
                .finish();
            let text = |f: &str| o.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            events.push(v1::OrderObserved {
                meta: Some(meta(
                    self.ctx.id(),
                    event_id,
                    SERVICE,
                    order_correlation(self.ctx.id(), id),
                )),
                order_id: id,
                status,
                number: text("number"),
                date_created_gmt: text("date_created_gmt"),
                date_modified_gmt: modified,
                total: text("total"),
                source: v1::order_observed::Source::Poll as i32,
                topic: String::new(),
                body_sha256: sha256_hex(&payload),
                payload_json: payload,
            });
            seen_rows.push((key, row));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.ctx
            .bus
            .publish_all(&events, self.ctx.config.publish_in_flight)
            .await?;
        let mut c = Commit::new();
        for (k, r) in seen_rows {
            self.seen.put(&mut c, &k, &r);
        }
        self.ctx.state.commit(c).await?;
        metrics::counter!("duellsync_poller_events_total", "store" => self.ctx.id().to_owned(), "kind" => "order")
            .increment(events.len() as u64);
        Ok(())
    }
}

fn is_unknown_param(e: &anyhow::Error) -> bool {
    e.downcast_ref::<duellsync_woo::Error>()
        .and_then(|e| e.code())
        .map(|c| c == "rest_invalid_param")
        .unwrap_or(false)
}
