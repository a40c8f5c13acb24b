//! DUELL catalogue and stock: incremental polls, stock scans, full scans, change notices.

use std::collections::HashSet;
use std::time::Duration;

use duellsync_bus::HandleError;
use duellsync_duell::{Product, ProductQuery, StockQuery};
use duellsync_events::{caused_meta, meta, product_correlation, sha256_hex, v1, EventId, Meta};
use duellsync_store::{Commit, Table};
use prost::Message;
use serde::{Deserialize, Serialize};
use time::PrimitiveDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{StoreCtx, SERVICE};

pub(crate) enum Command {
    FullScan {
        run_id: String,
        dry_run: bool,
        cause: Meta,
        done: oneshot::Sender<Result<(), HandleError>>,
        /// The command message's consume span: the scan continues its trace.
        span: tracing::Span,
    },
    Refresh {
        notice: v1::ChangeNoticed,
        done: oneshot::Sender<Result<(), HandleError>>,
        /// The notice's consume span: the refresh continues its trace.
        span: tracing::Span,
    },
}

/// What the poller last published for a product.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SeenProduct {
    hash: String,
    /// Bumped on every published change, so a value that comes back (10 → 12 → 10) gets a new
    /// event id instead of being dropped as a duplicate of the first.
    version: u64,
    number: String,
    visible: bool,
}

/// What the poller last published for a product's stock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SeenStock {
    stock: String,
    actual: String,
    version: u64,
}

type Key = (String, i64);

pub(crate) struct CatalogWorker {
    ctx: StoreCtx,
    products: Table<Key, SeenProduct>,
    stock: Table<Key, SeenStock>,
    marks: Table<(String, String), String>,
}

const WATERMARK: &str = "product_watermark";
const LAST_FULL_SCAN: &str = "last_full_scan";

fn datetime_text(dt: PrimitiveDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    dt.format(&fmt).unwrap_or_default()
}

fn parse_datetime_text(s: &str) -> Option<PrimitiveDateTime> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(s, &fmt).ok()
}

/// The event form of a DUELL product.
pub(crate) fn to_event_product(p: &Product) -> v1::DuellProduct {
    let opt_dec = |d: Option<rust_decimal::Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    v1::DuellProduct {
        product_id: p.product_id.0 as i64,
        product_number: p.product_number.clone(),
        name: p.product_name.clone(),
        description: p.description.clone().unwrap_or_default(),
        price_inc_vat: p.price_inc_vat.to_string(),
        vat_rate_percent: p.vatrate_percent.to_string(),
        special_price: opt_dec(p.special_price),
        special_from: p
            .special_price_start_date
            .map(datetime_text)
            .unwrap_or_default(),
        special_to: p
            .special_price_end_date
            .map(datetime_text)
            .unwrap_or_default(),
        category_path: p.category_name.clone().unwrap_or_default(),
        category_id: p.category_id.unwrap_or(0) as i64,
        image_url: p.product_image.clone().unwrap_or_default(),
        custom_fields: p
            .custom_fields
            .iter()
            .map(|f| v1::CustomField {
                name: f.description.clone(),
                value: f.value.clone(),
            })
            .collect(),
        is_parent: p.is_parent,
        parent_product_id: p.parent().map(|id| id.0 as i64).unwrap_or(0),
        barcode: p.barcode.clone().unwrap_or_default(),
        last_update: p.last_update_date.map(datetime_text).unwrap_or_default(),
    }
}

/// Hash of everything the sync uses; DUELL's `last_update_date` alone moving is no change.
fn content_hash(p: &v1::DuellProduct) -> String {
    let mut p = p.clone();
    p.last_update.clear();
    sha256_hex(&p.encode_to_vec())
}

impl CatalogWorker {
    pub(crate) fn new(ctx: StoreCtx) -> Self {
        CatalogWorker {
            products: ctx.state.table("poller_products"),
            stock: ctx.state.table("poller_stock"),
            marks: ctx.state.table("poller_marks"),
            ctx,
        }
    }

    fn key(&self, id: i64) -> Key {
        (self.ctx.id().to_owned(), id)
    }

    fn mark(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .marks
            .get(&(self.ctx.id().to_owned(), name.to_owned()))?)
    }

    fn set_mark(&self, commit: &mut Commit, name: &str, value: &str) {
        self.marks.put(
            commit,
            &(self.ctx.id().to_owned(), name.to_owned()),
            &value.to_owned(),
        );
    }

    pub(crate) async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let s = self.ctx.store.clone();
        let automatic = s.automatic;
        let mut products = tokio::time::interval(s.poll_interval);
        let mut stock = tokio::time::interval(s.stock_poll_interval);
        let mut reconcile = tokio::time::interval(s.reconcile_interval);
        for t in [&mut products, &mut stock, &mut reconcile] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The first reconcile tick fires at once; a first full scan only when there is no
        // state yet (a new store) — afterwards incremental polls are enough until the timer.
        reconcile.tick().await;
        if automatic && self.mark(WATERMARK)?.is_none() {
            let run_id = format!("initial-{}", duellsync_events::now_ms());
            self.logged("initial full scan", self.full_scan(&run_id, false, None))
                .await;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = products.tick(), if automatic => {
                    self.logged("product poll", self.poll_products()).await;
                }
                _ = stock.tick(), if automatic => {
                    self.logged("stock scan", self.scan_stock()).await;
                }
                _ = reconcile.tick(), if automatic => {
                    let run_id = format!("reconcile-{}", duellsync_events::now_ms());
                    self.logged("reconciliation scan", self.full_scan(&run_id, false, None)).await;
                }
                cmd = commands.recv() => match cmd {
                    None => return Ok(()),
                    Some(Command::FullScan { run_id, dry_run, cause, done, span }) => {
                        let r = self.full_scan(&run_id, dry_run, Some(&cause)).instrument(span).await;
                        let _ = done.send(r.map_err(|e| HandleError::retry(format!("{e:#}"))));
                    }
                    Some(Command::Refresh { notice, done, span }) => {
                        let r = self.refresh(&notice).instrument(span).await;
                        let _ = done.send(r.map_err(|e| HandleError::retry(format!("{e:#}"))));
                    }
                }
            }
        }
    }

    async fn logged(
        &self,
        what: &str,
        work: impl std::future::Future<Output = anyhow::Result<()>>,
    ) {
        // One trace per cycle: the facts it publishes carry it to the sinks' writes.
        let span = tracing::info_span!("poll", otel.name = what, store = %self.ctx.id());
        let started = std::time::Instant::now();
        match work.instrument(span).await {
            Ok(()) => {
                metrics::histogram!("duellsync_poller_cycle_duration_seconds", "store" => self.ctx.id().to_owned(), "cycle" => what.to_owned())
                    .record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                metrics::counter!("duellsync_poller_cycle_failures_total", "store" => self.ctx.id().to_owned(), "cycle" => what.to_owned())
                    .increment(1);
                tracing::warn!(store = %self.ctx.id(), cycle = what, error = %format!("{e:#}"), "poll failed; next cycle retries");
            }
        }
    }

    fn new_meta(&self, id: String, product_id: i64, cause: Option<&Meta>) -> Meta {
        match cause {
            Some(c) => {
                let mut m = caused_meta(c, id, SERVICE);
                m.correlation_id = product_correlation(self.ctx.id(), product_id);
                m
            }
            None => meta(
                self.ctx.id(),
                id,
                SERVICE,
                product_correlation(self.ctx.id(), product_id),
            ),
        }
    }

    /// Compares a visible product with what was last published; returns the event to publish
    /// and the new "seen" row, or `None` when nothing the sync uses changed.
    fn observe_product(
        &self,
        p: &Product,
        cause: Option<&Meta>,
    ) -> anyhow::Result<Option<(v1::ProductObserved, SeenProduct)>> {
        let product = to_event_product(p);
        let hash = content_hash(&product);
        let seen = self.products.get(&self.key(product.product_id))?;
        if let Some(seen) = &seen {
            if seen.visible && seen.hash == hash {
                return Ok(None);
            }
        }
        let version = seen.map(|s| s.version + 1).unwrap_or(1);
        let id = EventId::new("product-observed", self.ctx.id())
            .int(product.product_id)
            .int(version as i64)
            .str(&hash)
            .finish();
        let next = SeenProduct {
            hash: hash.clone(),
            version,
            number: product.product_number.clone(),
            visible: true,
        };
        let ev = v1::ProductObserved {
            meta: Some(self.new_meta(id, product.product_id, cause)),
            product: Some(product),
            content_hash: hash,
        };
        Ok(Some((ev, next)))
    }

    fn withdraw(
        &self,
        product_id: i64,
        reason: v1::product_withdrawn::Reason,
        cause: Option<&Meta>,
    ) -> anyhow::Result<Option<(v1::ProductWithdrawn, SeenProduct)>> {
        let Some(seen) = self.products.get(&self.key(product_id))? else {
            return Ok(None);
        };
        if !seen.visible {
            return Ok(None);
        }
        let version = seen.version + 1;
        let id = EventId::new("product-withdrawn", self.ctx.id())
            .int(product_id)
            .int(version as i64)
            .finish();
        let ev = v1::ProductWithdrawn {
            meta: Some(self.new_meta(id, product_id, cause)),
            product_id,
            product_number: seen.number.clone(),
            reason: reason as i32,
        };
        let next = SeenProduct {
            visible: false,
            version,
            ..seen
        };
        Ok(Some((ev, next)))
    }

    /// Publishes `events` (confirmed), then commits the matching "seen" rows.
    async fn publish_products(
        &self,
        observed: Vec<(v1::ProductObserved, SeenProduct)>,
        withdrawn: Vec<(v1::ProductWithdrawn, SeenProduct)>,
    ) -> anyhow::Result<usize> {
        let n = observed.len() + withdrawn.len();
        if n == 0 {
            return Ok(0);
        }
        let in_flight = self.ctx.config.publish_in_flight;
        let (obs, obs_seen): (Vec<_>, Vec<_>) = observed.into_iter().unzip();
        let (wd, wd_seen): (Vec<_>, Vec<_>) = withdrawn.into_iter().unzip();
        self.ctx.bus.publish_all(&obs, in_flight).await?;
        self.ctx.bus.publish_all(&wd, in_flight).await?;
        let mut c = Commit::new();
        for (ev, seen) in obs.iter().zip(obs_seen) {
            let id = ev.product.as_ref().map(|p| p.product_id).unwrap_or(0);
            self.products.put(&mut c, &self.key(id), &seen);
        }
        for (ev, seen) in wd.iter().zip(wd_seen) {
            self.products.put(&mut c, &self.key(ev.product_id), &seen);
        }
        self.ctx.state.commit(c).await?;
        metrics::counter!("duellsync_poller_events_total", "store" => self.ctx.id().to_owned(), "kind" => "product")
            .increment(n as u64);
        Ok(n)
    }

    /// Incremental poll: products changed since the watermark (minus an overlap).
    async fn poll_products(&self) -> anyhow::Result<()> {
        let Some(wm) = self
            .mark(WATERMARK)?
            .as_deref()
            .and_then(parse_datetime_text)
        else {
            // No watermark: nothing has been scanned yet; the initial full scan sets one.
            let run_id = format!("initial-{}", duellsync_events::now_ms());
            return self.full_scan(&run_id, false, None).await;
        };
        let since = wm - self.ctx.config.product_overlap;
        let mut newest = wm;
        let mut visible_now = HashSet::new();
        let mut pages = self.ctx.duell.products(ProductQuery {
            last_update_date: Some(since),
            ..ProductQuery::webshop()
        });
        while let Some(page) = pages.next_page().await? {
            let mut observed = Vec::new();
            for p in &page {
                visible_now.insert(p.product_id.0 as i64);
                newest = newest.max(p.last_update_date.unwrap_or(newest));
                if let Some(o) = self.observe_product(p, None)? {
                    observed.push(o);
                }
            }
            self.publish_products(observed, Vec::new()).await?;
        }
        // Changed but no longer visible: hidden in the web shop.
        let mut pages = self.ctx.duell.products(ProductQuery {
            last_update_date: Some(since),
            ..ProductQuery::default()
        });
        while let Some(page) = pages.next_page().await? {
            let mut withdrawn = Vec::new();
            for p in &page {
                newest = newest.max(p.last_update_date.unwrap_or(newest));
                let id = p.product_id.0 as i64;
                if visible_now.contains(&id) || p.view_on_webshop == Some(true) {
                    continue;
                }
                if let Some(w) = self.withdraw(id, v1::product_withdrawn::Reason::Hidden, None)? {
                    withdrawn.push(w);
                }
            }
            self.publish_products(Vec::new(), withdrawn).await?;
        }
        let mut pages = self.ctx.duell.products(ProductQuery {
            last_update_date: Some(since),
            ..ProductQuery::deleted()
        });
        while let Some(page) = pages.next_page().await? {
            let mut withdrawn = Vec::new();
            for p in &page {
                newest = newest.max(p.last_update_date.unwrap_or(newest));
                if let Some(w) = self.withdraw(
                    p.product_id.0 as i64,
                    v1::product_withdrawn::Reason::Deleted,
                    None,
                )? {
                    withdrawn.push(w);
                }
            }
            self.publish_products(Vec::new(), withdrawn).await?;
        }
        if newest > wm {
            let mut c = Commit::new();
            self.set_mark(&mut c, WATERMARK, &datetime_text(newest));
            self.ctx.state.commit(c).await?;
        }
        Ok(())
    }

    /// The event for a stock row, or `None` when it did not change — unless `force`: a
    /// refresh asked for a fresh observation (the publisher needs stock read after an order was
    /// drawn, even if the number is the same).
    fn stock_event(
        &self,
        row: &duellsync_duell::StockRow,
        cause: Option<&Meta>,
        force: bool,
    ) -> anyhow::Result<Option<(v1::StockObserved, SeenStock)>> {
        let id = row.product_id.0 as i64;
        let (stock, actual) = match row.department_stock(None) {
            Some(d) => (
                d.stock.normalize().to_string(),
                d.actual_stock
                    .map(|a| a.normalize().to_string())
                    .unwrap_or_default(),
            ),
            None => ("0".to_owned(), String::new()),
        };
        let seen = self.stock.get(&self.key(id))?;
        if let Some(s) = &seen {
            if s.stock == stock && s.actual == actual && !force {
                return Ok(None);
            }
        }
        let version = seen.map(|s| s.version + 1).unwrap_or(1);
        let event_id = EventId::new("stock-observed", self.ctx.id())
            .int(id)
            .int(version as i64)
            .str(&stock)
            .str(&actual)
            .finish();
        let ev = v1::StockObserved {
            meta: Some(self.new_meta(event_id, id, cause)),
            product_id: id,
            product_number: row.product_number.clone(),
            stock: stock.clone(),
            actual_stock: actual.clone(),
        };
        Ok(Some((
            ev,
            SeenStock {
                stock,
                actual,
                version,
            },
        )))
    }

    async fn publish_stock(
        &self,
        events: Vec<(v1::StockObserved, SeenStock)>,
    ) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (evs, seen): (Vec<_>, Vec<_>) = events.into_iter().unzip();
        self.ctx
            .bus
            .publish_all(&evs, self.ctx.config.publish_in_flight)
            .await?;
        let mut c = Commit::new();
        for (ev, s) in evs.iter().zip(seen) {
            self.stock.put(&mut c, &self.key(ev.product_id), &s);
        }
        self.ctx.state.commit(c).await?;
        metrics::counter!("duellsync_poller_events_total", "store" => self.ctx.id().to_owned(), "kind" => "stock")
            .increment(evs.len() as u64);
        Ok(())
    }

    /// Scans the stock department; only changed rows become events. Returns the rows seen.
    async fn scan_stock_caused(&self, cause: Option<&Meta>) -> anyhow::Result<i64> {
        let dept = duellsync_clients::stock_department(&self.ctx.store);
        let mut q = StockQuery::department(dept);
        q.view_on_webshop = Some(true);
        let mut pages = self.ctx.duell.stock(q);
        let mut rows = 0;
        while let Some(page) = pages.next_page().await? {
            rows += page.len() as i64;
            let mut events = Vec::new();
            for row in &page {
                if let Some(e) = self.stock_event(row, cause, false)? {
                    events.push(e);
                }
            }
            self.publish_stock(events).await?;
        }
        Ok(rows)
    }

    async fn scan_stock(&self) -> anyhow::Result<()> {
        self.scan_stock_caused(None).await.map(|_| ())
    }

    /// Reads DUELL's whole web-shop catalogue and stock, publishes what changed and what
    /// disappeared, then the `catalog.scanned` marker.
    async fn full_scan(
        &self,
        run_id: &str,
        dry_run: bool,
        cause: Option<&Meta>,
    ) -> anyhow::Result<()> {
        tracing::info!(store = %self.ctx.id(), run_id, "full DUELL scan");
        let id = EventId::new("catalog-scan-started", self.ctx.id())
            .str(run_id)
            .finish();
        let m = match cause {
            Some(c) => caused_meta(c, id, SERVICE),
            None => meta(self.ctx.id(), id, SERVICE, format!("fullsync:{run_id}")),
        };
        self.ctx
            .bus
            .publish(&v1::CatalogScanStarted {
                meta: Some(m),
                run_id: run_id.to_owned(),
                dry_run,
            })
            .await?;
        let mut present = HashSet::new();
        let mut newest: Option<PrimitiveDateTime> = None;
        let mut pages = self.ctx.duell.products(ProductQuery::webshop());
        let total = pages.total_count();
        let mut done = 0i64;
        while let Some(page) = pages.next_page().await? {
            let mut observed = Vec::new();
            for p in &page {
                present.insert(p.product_id.0 as i64);
                if let Some(t) = p.last_update_date {
                    newest = Some(newest.map(|n| n.max(t)).unwrap_or(t));
                }
                if let Some(o) = self.observe_product(p, cause)? {
                    observed.push(o);
                }
            }
            done += page.len() as i64;
            self.publish_products(observed, Vec::new()).await?;
            self.progress(
                run_id,
                "scan-duell",
                done,
                pages.total_count().or(total).unwrap_or(0) as i64,
                cause,
            )
            .await;
        }
        let mut withdrawn = Vec::new();
        let known: Vec<i64> = self
            .products
            .iter_group(self.ctx.id())
            .filter_map(|r| r.ok())
            .filter(|(_, s)| s.visible)
            .map(|((_, id), _)| id)
            .collect();
        for id in known {
            if !present.contains(&id) {
                if let Some(w) = self.withdraw(id, v1::product_withdrawn::Reason::Hidden, cause)? {
                    withdrawn.push(w);
                }
            }
        }
        self.publish_products(Vec::new(), withdrawn).await?;
        let stock_rows = self.scan_stock_caused(cause).await?;

        let id = EventId::new("catalog-scanned", self.ctx.id())
            .str(run_id)
            .finish();
        let mut m = match cause {
            Some(c) => caused_meta(c, id, SERVICE),
            None => meta(self.ctx.id(), id, SERVICE, format!("fullsync:{run_id}")),
        };
        if m.correlation_id.is_empty() {
            m.correlation_id = format!("fullsync:{run_id}");
        }
        self.ctx
            .bus
            .publish(&v1::CatalogScanned {
                meta: Some(m),
                run_id: run_id.to_owned(),
                products: present.len() as i64,
                stock_rows,
                dry_run,
            })
            .await?;
        let mut c = Commit::new();
        let wm_now = self
            .mark(WATERMARK)?
            .as_deref()
            .and_then(parse_datetime_text);
        let wm = match (wm_now, newest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let wm = wm.unwrap_or_else(|| {
            // An empty catalogue: start incremental polls from now (UTC; DUELL's zone is
            // unknown, the overlap absorbs small offsets).
            let now = time::OffsetDateTime::now_utc();
            PrimitiveDateTime::new(now.date(), now.time()) - Duration::from_secs(3600)
        });
        self.set_mark(&mut c, WATERMARK, &datetime_text(wm));
        self.set_mark(
            &mut c,
            LAST_FULL_SCAN,
            &duellsync_events::now_ms().to_string(),
        );
        self.ctx.state.commit(c).await?;
        Ok(())
    }

    async fn progress(
        &self,
        run_id: &str,
        phase: &str,
        done: i64,
        total: i64,
        cause: Option<&Meta>,
    ) {
        let id = EventId::new("fullsync-progress", self.ctx.id())
            .str(run_id)
            .str(phase)
            .int(done)
            .finish();
        let m = match cause {
            Some(c) => caused_meta(c, id, SERVICE),
            None => meta(self.ctx.id(), id, SERVICE, format!("fullsync:{run_id}")),
        };
        let ev = v1::FullSyncProgress {
            meta: Some(m),
            run_id: run_id.to_owned(),
            phase: phase.to_owned(),
            done,
            total,
        };
        // Progress is informational: a lost one only makes a progress bar jump.
        if let Err(e) = self.ctx.bus.publish(&ev).await {
            tracing::debug!(error = %e, "progress not published");
        }
    }

    /// A change notice: fetch the product or its stock from DUELL and publish what changed.
    async fn refresh(&self, notice: &v1::ChangeNoticed) -> anyhow::Result<()> {
        let cause = notice.meta.as_ref();
        let kind = v1::change_noticed::Kind::try_from(notice.kind).unwrap_or_default();
        let mut number = notice.product_number.trim().to_owned();
        if number.is_empty() {
            if let Some(seen) = self.products.get(&self.key(notice.product_id))? {
                number = seen.number;
            }
        }
        if kind == v1::change_noticed::Kind::Stock {
            // Checked before the notice reached the worker (`forward_command`): a stock notice
            // names a product id, and costs one stock request, never a scan.
            let dept = duellsync_clients::stock_department(&self.ctx.store);
            let mut q = StockQuery::department(dept);
            q.product_ids = vec![duellsync_duell::ProductId(notice.product_id.max(1) as u64)];
            let mut pages = self.ctx.duell.stock(q);
            let page = pages.next_page().await?.unwrap_or_default();
            let rows: Vec<_> = page
                .iter()
                .filter(|r| r.product_id.0 as i64 == notice.product_id)
                .collect();
            if rows.is_empty() {
                // No stock row for it (or DUELL ignored the id filter, which is unverified):
                // the periodic stock scan sees any change. A notice never starts a scan of its
                // own, so notices cannot multiply DUELL's load.
                tracing::info!(
                    store = %self.ctx.id(),
                    product_id = notice.product_id,
                    rows = page.len(),
                    "stock notice: DUELL returned no stock row for the product; left to the next stock scan"
                );
                return Ok(());
            }
            let mut events = Vec::new();
            for row in rows {
                if let Some(e) = self.stock_event(row, cause, true)? {
                    events.push(e);
                }
            }
            return self.publish_stock(events).await;
        }
        if number.is_empty() {
            anyhow::bail!(
                "notice for product {} names no product number and the product is unknown",
                notice.product_id
            );
        }
        let found = self.ctx.duell.find_products_by_number(&number).await?;
        let mut observed = Vec::new();
        let mut withdrawn = Vec::new();
        for p in found
            .iter()
            .filter(|p| notice.product_id == 0 || p.product_id.0 as i64 == notice.product_id)
        {
            let visible = match p.view_on_webshop {
                Some(v) => v,
                None => {
                    // The row does not say; ask with the web-shop filter.
                    let q = ProductQuery {
                        product_number: Some(number.clone()),
                        ..ProductQuery::webshop()
                    };
                    self.ctx
                        .duell
                        .products(q)
                        .collect_all()
                        .await?
                        .iter()
                        .any(|v| v.product_id == p.product_id)
                }
            };
            if visible && !p.is_deleted {
                if let Some(o) = self.observe_product(p, cause)? {
                    observed.push(o);
                }
            } else if let Some(w) = self.withdraw(
                p.product_id.0 as i64,
                if p.is_deleted {
                    v1::product_withdrawn::Reason::Deleted
                } else {
                    v1::product_withdrawn::Reason::Hidden
                },
                cause,
            )? {
                withdrawn.push(w);
            }
        }
        if notice.product_id != 0
            && !found
                .iter()
                .any(|p| p.product_id.0 as i64 == notice.product_id)
        {
            // Product lookups leave deleted products out.
            if let Some(w) = self.withdraw(
                notice.product_id,
                v1::product_withdrawn::Reason::Deleted,
                cause,
            )? {
                withdrawn.push(w);
            }
        }
        self.publish_products(observed, withdrawn).await?;
        Ok(())
    }
}
