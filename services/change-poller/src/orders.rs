//! Gap-fill behind WooCommerce webhooks (SPEC §3.2): WooCommerce never retries a failed
//! delivery and disables webhooks after 7 failures, so orders are also found by listing them:
//!
//! - new orders by an **id cursor**: `orderby=id&order=desc` down to the highest id seen before
//!   (`WooClient::scan_new_orders`). A creation-date cursor would never see an order an import
//!   plugin or an admin created with a past date; its id is new all the same.
//! - status changes by `modified_after` (strict, GMT, ordered by id), from a cursor that is
//!   **capped at now**: one order with a `date_modified_gmt` in the future (clock skew, an import
//!   plugin) would otherwise move the cursor past every change to come. An order dated in the
//!   future is listed again each cycle until then; the "seen" table drops the repeats.
//! - stores without `modified_after` (WooCommerce < 5.8): the orders in `fetch_statuses` are
//!   re-read each cycle.

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

/// Highest WooCommerce order id seen by the new-order scan.
const ID_CURSOR: &str = "orders_id_cursor";
/// Newest `date_modified_gmt` seen (Unix s), never beyond now.
const MODIFIED_CURSOR: &str = "orders_modified_cursor";
/// The creation-date cursor of earlier versions: where the first id scan after an upgrade
/// stops looking back.
const CREATED_CURSOR: &str = "orders_created_cursor";

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
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let id_cursor = self.mark(ID_CURSOR)?;
        // Without an id cursor yet (first run, or the first run after an upgrade) the scan
        // looks back as far as the creation-date cursor did, or the first-run lookback.
        let floor = match id_cursor {
            Some(_) => None,
            None => {
                let from = match self.mark(CREATED_CURSOR)? {
                    Some(c) => c.min(now) - overlap,
                    None => self.first_cursor(),
                };
                Some(OffsetDateTime::from_unix_timestamp(from)?)
            }
        };
        let after_id = u64::try_from(id_cursor.unwrap_or(0)).unwrap_or(0);
        let mut scan = self.ctx.woo.scan_new_orders(after_id, floor);
        while let Some(page) = scan.next_page().await? {
            self.observe(page).await?;
        }
        let newest_id = i64::try_from(scan.newest_id()).unwrap_or(i64::MAX);

        // A cursor an earlier version moved into the future is brought back too.
        let modified = match self.mark(MODIFIED_CURSOR)? {
            Some(m) => m.min(now),
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
            &(self.ctx.id().to_owned(), ID_CURSOR.to_owned()),
            &newest_id.max(id_cursor.unwrap_or(0)),
        );
        self.marks.put(
            &mut c,
            &(self.ctx.id().to_owned(), MODIFIED_CURSOR.to_owned()),
            &capped(newest_modified.max(modified), now),
        );
        self.ctx.state.commit(c).await?;
        Ok(())
    }

    /// Lists orders modified after `since` page by page (ordered by id), publishes the changed
    /// ones and returns the newest `date_modified_gmt` seen (at least `start`).
    async fn scan(&self, filter: &str, since: i64, start: i64) -> anyhow::Result<i64> {
        let since_t = OffsetDateTime::from_unix_timestamp(since)?;
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
                if let Some(t) = unix_of(o, "date_modified_gmt") {
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

/// A time cursor never moves beyond now: a date from the future would hide every change until
/// then.
fn capped(cursor: i64, now: i64) -> i64 {
    cursor.min(now)
}

fn is_unknown_param(e: &anyhow::Error) -> bool {
    e.downcast_ref::<duellsync_woo::Error>()
        .and_then(|e| e.code())
        .map(|c| c == "rest_invalid_param")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use duellsync_bus::BusOptions;
    use duellsync_events::Event;
    use duellsync_test_support::sandbox::StoreFile;
    use duellsync_test_support::NatsServer;
    use duellsync_woo_sim::{PlaceLine, PlaceOrder, WooSim};
    use prost::Message as _;
    use std::sync::Arc;

    const STORE: &str = "s1";

    struct World {
        _nats: NatsServer,
        _dir: tempfile::TempDir,
        woo: WooSim,
        _duell: duellsync_duell_sim::DuellSim,
        poller: OrderPoller,
        product: u64,
    }

    async fn world() -> World {
        duellsync_test_support::init_tracing();
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let woo = WooSim::start(duellsync_woo_sim::SimConfig {
            https: false,
            ..Default::default()
        })
        .await
        .expect("woo-sim");
        let duell = duellsync_duell_sim::DuellSim::start(duellsync_duell_sim::SimConfig {
            products: 0,
            customers: 0,
            ..Default::default()
        })
        .await
        .expect("duell-sim");
        let (ck, cs) = woo.credentials();
        let file = StoreFile {
            id: STORE.into(),
            woo_url: woo.base_url(),
            consumer_key: ck,
            consumer_secret: cs,
            webhook_secret: "hooksecret1".into(),
            webhook_delivery_url: String::new(),
            duell_url: duell.base_url(),
            client_number: duell.client_number().into(),
            client_token: duell.client_token().into(),
            stock_department: duell.department_token(1).expect("department"),
            order_department: duell.department_token(1).expect("department"),
            notice_secret: String::new(),
            settings: Vec::new(),
            sections: String::new(),
        };
        let stores_dir = dir.path().join("stores");
        std::fs::create_dir_all(&stores_dir).expect("dir");
        std::fs::write(stores_dir.join("s1.toml"), file.to_toml()).expect("store file");
        let stores = duellsync_settings::load_stores(&stores_dir, &[]).expect("settings");
        let store = stores.get(STORE).expect("store").clone();
        let bus = duellsync_bus::Bus::connect(BusOptions::new(nats.url(), "test"))
            .await
            .expect("bus");
        bus.ensure_streams().await.expect("streams");
        let ctx = StoreCtx {
            woo: duellsync_clients::woo_client(&store).expect("woo client"),
            duell: duellsync_clients::duell_client(&store).expect("duell client"),
            store: Arc::new(store),
            bus,
            state: duellsync_store::Store::temporary().expect("state"),
            config: Arc::new(crate::config::PollerSection::default()),
        };
        let product = woo
            .admin_write_product(
                None,
                serde_json::json!({"name": "Vare", "sku": "A-1", "regular_price": "10.00"}),
            )
            .expect("product");
        World {
            _nats: nats,
            _dir: dir,
            woo,
            _duell: duell,
            poller: OrderPoller::new(ctx),
            product,
        }
    }

    impl World {
        fn place(&self) -> u64 {
            self.woo
                .place_order(&PlaceOrder {
                    lines: vec![PlaceLine {
                        product_id: Some(self.product),
                        sku: None,
                        quantity: 1,
                    }],
                    ..Default::default()
                })
                .expect("order placed")
        }

        /// Orders observed so far, `(id, status)` in publish order.
        async fn observed(&self) -> Vec<(i64, String)> {
            self.poller
                .ctx
                .bus
                .read("WOO", &v1::OrderObserved::subject(STORE), 1, 10_000)
                .await
                .expect("stream readable")
                .iter()
                .map(|m| {
                    let e = v1::OrderObserved::decode(m.payload.as_ref()).expect("decodes");
                    (e.order_id, e.status)
                })
                .collect()
        }

        fn cursor(&self, name: &str) -> Option<i64> {
            self.poller.mark(name).expect("marks readable")
        }
    }

    #[tokio::test]
    async fn a_backdated_order_is_found_by_the_id_cursor() {
        let mut w = world().await;
        let first = w.place();
        w.poller.poll().await.expect("poll");
        assert_eq!(
            w.observed().await,
            vec![(first as i64, "processing".into())]
        );

        // An import plugin or an admin creates an order dated two days back.
        w.woo.set_clock_offset(-2 * 86_400);
        let old = w.place();
        w.woo.set_clock_offset(0);
        w.poller.poll().await.expect("poll");
        assert!(
            w.observed()
                .await
                .contains(&(old as i64, "processing".into())),
            "the backdated order was found: {:?}",
            w.observed().await
        );
        assert_eq!(w.cursor(ID_CURSOR), Some(old as i64));
    }

    #[tokio::test]
    async fn an_order_dated_in_the_future_does_not_blind_the_gap_fill() {
        let mut w = world().await;
        let early = w.place();
        w.poller.poll().await.expect("poll");
        // Clock skew or an import plugin: an order modified a year from now.
        w.woo.set_clock_offset(365 * 86_400);
        let future = w.place();
        w.woo.set_clock_offset(0);
        w.poller.poll().await.expect("poll");

        // Changes made after it are still seen: a status change of an older order and a new
        // order.
        w.woo
            .set_order_status(early, "completed")
            .expect("status set");
        let late = w.place();
        w.poller.poll().await.expect("poll");
        let seen = w.observed().await;
        assert!(seen.contains(&(future as i64, "processing".into())));
        assert!(
            seen.contains(&(early as i64, "completed".into())),
            "the status change after the future-dated order was seen: {seen:?}"
        );
        assert!(
            seen.contains(&(late as i64, "processing".into())),
            "{seen:?}"
        );
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            w.cursor(MODIFIED_CURSOR).expect("cursor") <= now,
            "the time cursor is capped at now"
        );
        // The future order is listed again each cycle but published once per change.
        w.poller.poll().await.expect("poll");
        assert_eq!(
            w.observed()
                .await
                .iter()
                .filter(|(id, _)| *id == future as i64)
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn the_first_run_looks_back_as_far_as_the_creation_date_cursor_did() {
        let mut w = world().await;
        // Older than the first-run lookback (24 h): not a gap to fill.
        w.woo.set_clock_offset(-3 * 86_400);
        let ancient = w.place();
        w.woo.set_clock_offset(0);
        let recent = w.place();
        w.poller.poll().await.expect("poll");
        let seen: Vec<i64> = w.observed().await.iter().map(|(id, _)| *id).collect();
        assert_eq!(seen, vec![recent as i64]);
        assert!(!seen.contains(&(ancient as i64)));
        assert_eq!(w.cursor(ID_CURSOR), Some(recent as i64));
        // A store whose orders are all older than the lookback still gets a cursor, so the
        // next cycle does not walk its whole history.
        let mut w = world().await;
        w.woo.set_clock_offset(-3 * 86_400);
        let only = w.place();
        w.woo.set_clock_offset(0);
        w.poller.poll().await.expect("poll");
        assert!(w.observed().await.is_empty());
        assert_eq!(w.cursor(ID_CURSOR), Some(only as i64));
    }
}
