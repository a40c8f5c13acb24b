//! One store's publisher: applies DUELL facts and stock holds to its projection, and writes the
//! difference to WooCommerce.
//!
//! Order of things, so that a crash anywhere loses nothing and writes nothing twice:
//! 1. facts are applied to the projection and the touched products marked dirty, together with
//!    the processed-event ledger, in one sled commit; then the messages are acked;
//! 2. before a write goes out, an intent per product is committed;
//! 3. the write's result (WooCommerce's own answer) replaces the known WooCommerce state, clears
//!    the intent and the dirty mark in one commit;
//! 4. on start, intents left by a crash are settled by reading WooCommerce, never by writing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duellsync_bus::{Bus, Delivery, HandleError, TraceParent};
use duellsync_catalog::{PriceRules, ProductData, Source};
use duellsync_events::{v1, Event};
use duellsync_settings::{StockSource, StoreSettings};
use duellsync_woo::WooClient;
use rust_decimal::Decimal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::PublisherSection;
use crate::state::{Hold, Staged, Tables, IMPORTED_UNDRAWN, RECEIVED, RELEASED};

/// Shared, read-mostly handles of one store.
#[derive(Clone)]
pub(crate) struct StoreCtx {
    pub id: String,
    pub settings: Arc<StoreSettings>,
    pub bus: Bus,
    pub woo: WooClient,
    pub t: Tables,
    pub cfg: Arc<PublisherSection>,
    prices: Arc<Mutex<PriceRules>>,
}

impl StoreCtx {
    pub fn new(
        settings: Arc<StoreSettings>,
        bus: Bus,
        woo: WooClient,
        t: Tables,
        cfg: Arc<PublisherSection>,
    ) -> Self {
        StoreCtx {
            id: settings.id.clone(),
            settings,
            bus,
            woo,
            t,
            cfg,
            prices: Arc::new(Mutex::new(PriceRules::default())),
        }
    }

    pub fn prices(&self) -> PriceRules {
        *self.prices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the store's tax and decimal settings from WooCommerce.
    pub async fn load_prices(&self) -> anyhow::Result<PriceRules> {
        let rules = PriceRules {
            prices_include_tax: self.woo.prices_include_tax().await?,
            decimals: self.woo.price_num_decimals().await?,
        };
        *self.prices.lock().unwrap_or_else(|e| e.into_inner()) = rules;
        Ok(rules)
    }

    pub fn holds(&self) -> anyhow::Result<Vec<Hold>> {
        Ok(self
            .t
            .holds
            .iter_group(&self.id)
            .map(|r| r.map(|(_, h)| h))
            .collect::<Result<_, _>>()?)
    }
}

pub(crate) struct Worker {
    pub ctx: StoreCtx,
    /// When each product was last written (storms of one product are spaced out).
    pub last_write: HashMap<i64, Instant>,
    /// After a failed write: no new attempt before this.
    pub retry_at: Option<Instant>,
    pub failures_in_row: u32,
    /// A full DUELL scan is running (since when): new products wait for its full sync, which
    /// creates them in full batches.
    pub scanning: Option<Instant>,
    /// The trace of the newest message that made products dirty: the next write, which carries
    /// the newest state, continues it (one write coalesces many facts; see
    /// docs/architecture.md).
    trace: Option<TraceParent>,
}

/// Mark holding when the last full sync started (Unix ms).
const LAST_FULL_SYNC: &str = "last_full_sync_started_ms";

/// A scan whose end marker never came (the poller died) stops holding creates back after this.
const SCAN_HOLD: Duration = Duration::from_secs(600);

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Worker {
    pub fn new(ctx: StoreCtx) -> Self {
        Worker {
            ctx,
            last_write: HashMap::new(),
            retry_at: None,
            failures_in_row: 0,
            scanning: None,
            trace: None,
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Arc<Delivery>>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        // WooCommerce's price settings are needed before any price is written.
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.ctx.load_prices().await {
                Ok(r) => {
                    tracing::info!(store = %self.ctx.id, include_tax = r.prices_include_tax, decimals = r.decimals, "store price settings");
                    break;
                }
                Err(e) => {
                    tracing::warn!(store = %self.ctx.id, error = %e, "cannot read WooCommerce price settings; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        if let Err(e) = self.recover().await {
            tracing::warn!(store = %self.ctx.id, error = %format!("{e:#}"), "cannot settle earlier writes yet; will retry");
        }
        // Full batches go out as soon as they are full; a partial batch waits at most `linger`
        // for company, so a bulk change costs ⌈N/100⌉ requests and a lone change is still
        // written within milliseconds.
        let mut next_flush: Option<Instant> = Some(Instant::now());
        let mut partial_at: Option<Instant> = None;
        loop {
            let due = match (next_flush, partial_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep_until = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                first = rx.recv() => {
                    let Some(first) = first else { return Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < 500 {
                        match rx.try_recv() {
                            Ok(d) => batch.push(d),
                            Err(_) => break,
                        }
                    }
                    let (scans, started, dirtied_by) = self.apply(batch).await;
                    let dirtied = dirtied_by.is_some();
                    if dirtied_by.is_some() {
                        self.trace = dirtied_by;
                    }
                    if let Some(started) = started {
                        if !started.dry_run {
                            self.scanning = Some(Instant::now());
                        }
                    }
                    for scan in scans {
                        if !scan.dry_run {
                            self.scanning = None;
                        }
                        if self.stale_scan(&scan) {
                            continue;
                        }
                        self.flush(true).await;
                        if let Err(e) = crate::fullsync::run(&mut self, &scan).await {
                            tracing::error!(store = %self.ctx.id, run_id = %scan.run_id, error = %format!("{e:#}"), "full sync failed");
                            crate::fullsync::report_failure(&self.ctx, &scan, &format!("{e:#}")).await;
                        }
                    }
                    if dirtied {
                        partial_at.get_or_insert_with(|| Instant::now() + self.ctx.cfg.linger);
                        if let Some(n) = self.flush(false).await {
                            next_flush = Some(next_flush.map_or(n, |x| x.min(n)));
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)), if due.is_some() => {
                    partial_at = None;
                    next_flush = self.flush(true).await;
                }
            }
        }
    }

    /// Applies a batch of deliveries to the projection, commits, then acks them. Returns the
    /// full-sync markers among them, to run after the commit, and, when products became dirty,
    /// the trace of the last message that dirtied one.
    async fn apply(
        &mut self,
        batch: Vec<Arc<Delivery>>,
    ) -> (
        Vec<v1::CatalogScanned>,
        Option<v1::CatalogScanStarted>,
        Option<TraceParent>,
    ) {
        let ctx = self.ctx.clone();
        let ledger = ctx.t.store.ledger();
        let mut st = Staged::new(&ctx.t, &ctx.id);
        let mut done = Vec::new();
        let mut failed: Vec<(Arc<Delivery>, HandleError)> = Vec::new();
        let mut scans = Vec::new();
        let mut started = None;
        let mut dirtied_by = None;
        for d in batch {
            let id = d.event_id().to_owned();
            match ledger.seen(&id) {
                Ok(true) if !d.is_replay() => {
                    done.push(d);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    failed.push((d, HandleError::retry(e)));
                    continue;
                }
            }
            if d.is::<v1::CatalogScanStarted>() {
                match d.decode::<v1::CatalogScanStarted>() {
                    Ok(ev) => started = Some(ev),
                    Err(e) => {
                        failed.push((d, e));
                        continue;
                    }
                }
                if !id.is_empty() {
                    ledger.record(&mut st.commit, &id);
                }
                done.push(d);
                continue;
            }
            let dirty_before = st.dirty_marks();
            match apply_one(&ctx, &mut st, &d, &mut scans) {
                Ok(()) => {
                    if !id.is_empty() {
                        ledger.record(&mut st.commit, &id);
                    }
                    if st.dirty_marks() != dirty_before {
                        dirtied_by = Some(d.trace_parent());
                    }
                    done.push(d);
                }
                Err(e) => failed.push((d, e)),
            }
        }
        if !st.dirtied() {
            dirtied_by = None;
        }
        let refresh = std::mem::take(&mut st.refresh);
        if let Err(e) = st.commit().await {
            tracing::error!(store = %ctx.id, error = %format!("{e:#}"), "cannot commit; messages will be redelivered");
            for d in done {
                d.finish(Err(HandleError::retry("state commit failed")))
                    .await;
            }
            for (d, _) in failed {
                d.finish(Err(HandleError::retry("state commit failed")))
                    .await;
            }
            return (Vec::new(), None, None);
        }
        for (order, product) in refresh {
            request_stock_refresh(&ctx, order, product).await;
        }
        for d in done {
            d.ack().await;
        }
        for (d, e) in failed {
            d.finish(Err(e)).await;
        }
        (scans, started, dirtied_by)
    }

    /// A scan marker older than the last full sync this publisher ran is a replay (a rebuilt
    /// state reads the streams from the start): one full sync over today's WooCommerce covers
    /// it, running every old one again would read the whole store once per past reconciliation.
    fn stale_scan(&self, scan: &v1::CatalogScanned) -> bool {
        let key = (self.ctx.id.clone(), LAST_FULL_SYNC.to_owned());
        let observed = scan.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let last = self.ctx.t.marks.get(&key).ok().flatten().unwrap_or(0);
        if observed > 0 && observed < last {
            tracing::info!(store = %self.ctx.id, run_id = %scan.run_id, "skipping a full-sync marker older than the last full sync (a replay)");
            return true;
        }
        let now = duellsync_events::now_ms();
        if let Err(e) = self
            .ctx
            .t
            .marks
            .put_now_blocking(&self.ctx.t.store, &key, &now)
        {
            tracing::warn!(store = %self.ctx.id, error = %e, "cannot record the full sync's start");
        }
        false
    }

    /// Whether continuous flushes should leave creates to a running full scan's sync.
    pub fn creates_held(&mut self) -> bool {
        match self.scanning {
            Some(since) if since.elapsed() < SCAN_HOLD => true,
            Some(_) => {
                self.scanning = None;
                false
            }
            None => false,
        }
    }

    /// Writes what is dirty and ready (only full batches unless `partial`). Returns when the
    /// next flush is due, if any work remains.
    pub async fn flush(&mut self, partial: bool) -> Option<Instant> {
        if !self.ctx.settings.automatic {
            return None;
        }
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Some(at);
            }
        }
        let span = tracing::info_span!("write_products", store = %self.ctx.id, partial);
        if let Some(trace) = &self.trace {
            trace.adopt(&span);
        }
        match crate::write::flush_dirty(self, partial)
            .instrument(span)
            .await
        {
            Ok(next) => {
                self.failures_in_row = 0;
                self.retry_at = None;
                if partial && next.is_none() {
                    // Everything written (a flush of whole batches only may leave a partial
                    // one for later): later writes belong to later changes.
                    self.trace = None;
                }
                next
            }
            Err(e) => {
                self.failures_in_row += 1;
                let wait = self.ctx.cfg.retry_backoff * self.failures_in_row.min(10);
                tracing::warn!(store = %self.ctx.id, error = %format!("{e:#}"), retry_in = ?wait, "writing to WooCommerce failed; will retry");
                metrics::counter!("duellsync_publisher_write_failures_total", "store" => self.ctx.id.clone()).increment(1);
                let at = Instant::now() + wait;
                self.retry_at = Some(at);
                Some(at)
            }
        }
    }

    /// Settles writes a crash left without a recorded result, by reading WooCommerce.
    async fn recover(&mut self) -> anyhow::Result<()> {
        let pending: Vec<_> = self
            .ctx
            .t
            .pending
            .iter_group(&self.ctx.id)
            .collect::<Result<_, _>>()?;
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(store = %self.ctx.id, writes = pending.len(), "settling writes interrupted by a restart");
        let items: Vec<(i64, crate::state::Pending)> =
            pending.into_iter().map(|((_, id), p)| (id, p)).collect();
        crate::write::verify(&self.ctx, &items).await
    }
}

fn stock_value(settings: &StoreSettings, ev: &v1::StockObserved) -> Option<Decimal> {
    let text = match settings.stock.source {
        StockSource::Stock => &ev.stock,
        StockSource::ActualStock if !ev.actual_stock.is_empty() => &ev.actual_stock,
        StockSource::ActualStock => &ev.stock,
    };
    text.trim().parse().ok()
}

/// Applies one delivery to the staged projection.
fn apply_one(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    d: &Delivery,
    scans: &mut Vec<v1::CatalogScanned>,
) -> Result<(), HandleError> {
    let r = |e: anyhow::Error| HandleError::retry(format!("{e:#}"));
    if d.is::<v1::ProductObserved>() {
        let ev: v1::ProductObserved = d.decode()?;
        let observed = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let Some(p) = ev.product.as_ref() else {
            return Err(HandleError::permanent("ProductObserved without a product"));
        };
        let data = ProductData::from_event(p);
        let id = data.product_id;
        let mut src = st.source(id).map_err(r)?.unwrap_or_default();
        if observed < src.product_observed_ms && !d.is_replay() {
            return Ok(());
        }
        if let Some(old) = &src.product {
            if old.product_number != data.product_number {
                st.remove_sku(&old.product_number, id).map_err(r)?;
            }
        }
        st.add_sku(&data.product_number, id).map_err(r)?;
        if data.is_variant() {
            st.add_child(data.parent_product_id, id).map_err(r)?;
            st.mark_dirty(data.parent_product_id).map_err(r)?;
        }
        src.product = Some(data);
        src.withdrawn = false;
        src.product_observed_ms = observed;
        src.last_event_id = ev.meta.map(|m| m.event_id).unwrap_or_default();
        st.set_source(id, src);
        st.mark_dirty(id).map_err(r)?;
    } else if d.is::<v1::ProductWithdrawn>() {
        let ev: v1::ProductWithdrawn = d.decode()?;
        let observed = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let mut src = st.source(ev.product_id).map_err(r)?.unwrap_or_default();
        if observed < src.product_observed_ms {
            return Ok(());
        }
        src.withdrawn = true;
        src.product_observed_ms = observed;
        let parent = src
            .product
            .as_ref()
            .filter(|p| p.is_variant())
            .map(|p| p.parent_product_id);
        st.set_source(ev.product_id, src);
        st.mark_dirty(ev.product_id).map_err(r)?;
        if let Some(parent) = parent {
            st.mark_dirty(parent).map_err(r)?;
        }
    } else if d.is::<v1::StockObserved>() {
        let ev: v1::StockObserved = d.decode()?;
        let observed = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let mut src: Source = st.source(ev.product_id).map_err(r)?.unwrap_or_default();
        if observed < src.stock_observed_ms {
            return Ok(());
        }
        src.stock = stock_value(&ctx.settings, &ev);
        src.stock_observed_ms = observed;
        st.set_source(ev.product_id, src);
        st.mark_dirty(ev.product_id).map_err(r)?;
    } else if d.is::<v1::StockHoldChanged>() {
        let ev: v1::StockHoldChanged = d.decode()?;
        let lines: Vec<(i64, Decimal)> = ev
            .lines
            .iter()
            .filter(|l| l.duell_product_id > 0)
            .map(|l| {
                (
                    l.duell_product_id,
                    l.quantity.trim().parse().unwrap_or(Decimal::ZERO),
                )
            })
            .collect();
        set_hold(st, ev.woo_order_id, ev.phase, lines, ev.effective_at_ms).map_err(r)?;
    } else if d.is::<v1::OrderObserved>() {
        crate::holds::order_observed(ctx, st, d).map_err(r)?;
    } else if d.is::<v1::CatalogScanned>() {
        scans.push(d.decode()?);
    } else {
        return Err(HandleError::permanent(format!(
            "unexpected subject {}",
            d.subject
        )));
    }
    Ok(())
}

/// Moves an order's hold to `phase` (phases only move forward) and marks its products dirty.
pub(crate) fn set_hold(
    st: &mut Staged<'_>,
    order: i64,
    phase: i32,
    mut lines: Vec<(i64, Decimal)>,
    effective_at_ms: i64,
) -> anyhow::Result<()> {
    if st.t.released.contains(&(st.store_id.to_owned(), order))? {
        // Released and pruned: whatever comes now is late news.
        return Ok(());
    }
    let old = st.hold(order)?;
    if let Some(old) = &old {
        if phase < old.phase || (phase == old.phase && phase != RECEIVED) {
            return Ok(());
        }
        if lines.is_empty() {
            lines = old.lines.clone();
        }
    }
    if !matches!(phase, RECEIVED | IMPORTED_UNDRAWN | RELEASED) {
        return Ok(());
    }
    let mut touched: Vec<i64> = lines.iter().map(|(p, _)| *p).collect();
    if let Some(old) = &old {
        touched.extend(old.lines.iter().map(|(p, _)| *p));
    }
    touched.sort_unstable();
    touched.dedup();
    if phase == RELEASED && effective_at_ms > 0 {
        // The release counts only for stock read after DUELL drew the units; if the last reading
        // is older, ask for a fresh one (an unchanged number is not re-published by itself).
        for (p, _) in &lines {
            let observed = st.source(*p)?.map(|s| s.stock_observed_ms).unwrap_or(0);
            if observed < effective_at_ms {
                st.refresh.push((order, *p));
            }
        }
    }
    st.set_hold(
        order,
        Hold {
            phase,
            lines,
            effective_at_ms,
        },
    );
    for p in touched {
        st.mark_dirty(p)?;
    }
    Ok(())
}

/// Asks the poller for a fresh stock reading of a product (a change notice: the poller reads
/// DUELL and publishes what it finds, even an unchanged number).
async fn request_stock_refresh(ctx: &StoreCtx, order: i64, product: i64) {
    let number = ctx
        .t
        .source
        .get(&(ctx.id.clone(), product))
        .ok()
        .flatten()
        .and_then(|s| s.product)
        .map(|p| p.product_number)
        .unwrap_or_default();
    let id = duellsync_events::EventId::new("release-refresh", &ctx.id)
        .int(order)
        .int(product)
        .finish();
    let ev = v1::ChangeNoticed {
        meta: Some(duellsync_events::meta(
            &ctx.id,
            id,
            crate::SERVICE,
            duellsync_events::order_correlation(&ctx.id, order),
        )),
        kind: v1::change_noticed::Kind::Stock as i32,
        product_id: product,
        product_number: number,
    };
    if let Err(e) = ctx.bus.publish(&ev).await {
        tracing::warn!(store = %ctx.id, product, error = %e, "cannot ask for a stock refresh; the next stock change corrects it");
    }
}

/// Removes released holds that every later stock observation already reflects.
pub(crate) fn prune_holds(t: &Tables, store: &str) -> anyhow::Result<()> {
    let mut st = Staged::new(t, store);
    let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
    let mut prune = Vec::new();
    for row in t.holds.iter_group(store) {
        let ((_, order), h) = row?;
        if h.phase != RELEASED {
            continue;
        }
        let mut all_after = true;
        for (p, _) in &h.lines {
            let seen = match latest.get(p) {
                Some(v) => *v,
                None => {
                    let v = st.source(*p)?.map(|s| s.stock_observed_ms).unwrap_or(0);
                    latest.insert(*p, v);
                    v
                }
            };
            if seen < h.effective_at_ms {
                all_after = false;
            }
        }
        if all_after {
            prune.push(order);
        }
    }
    let now = duellsync_events::now_ms();
    // Past the streams' retention no observation of the order can come back.
    let forget_before = now - RELEASED_MEMORY.as_millis() as i64;
    let mut forget = Vec::new();
    for row in t.released.iter_group(store) {
        let ((_, order), at) = row?;
        if at < forget_before {
            forget.push(order);
        }
    }
    if prune.is_empty() && forget.is_empty() {
        return Ok(());
    }
    for o in prune {
        st.remove_hold(o);
        st.t.released
            .put(&mut st.commit, &(store.to_owned(), o), &now);
    }
    for o in forget {
        st.t.released.remove(&mut st.commit, &(store.to_owned(), o));
    }
    t.store.commit_blocking(st.commit)?;
    Ok(())
}

/// How long a pruned release is remembered: longer than the WOO and SYNC streams keep messages.
const RELEASED_MEMORY: Duration = Duration::from_secs(40 * 24 * 3600);

pub(crate) fn unix_now() -> i64 {
    now_unix()
}

/// Subjects the publisher consumes, per stream.
pub(crate) fn subjects(store: &str) -> [(&'static duellsync_events::StreamSpec, Vec<String>); 3] {
    [
        (
            &duellsync_events::STREAM_DUELL,
            vec![
                v1::ProductObserved::subject(store),
                v1::ProductWithdrawn::subject(store),
                v1::StockObserved::subject(store),
                v1::CatalogScanStarted::subject(store),
                v1::CatalogScanned::subject(store),
            ],
        ),
        (
            &duellsync_events::STREAM_SYNC,
            vec![v1::StockHoldChanged::subject(store)],
        ),
        (
            &duellsync_events::STREAM_WOO,
            vec![v1::OrderObserved::subject(store)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use duellsync_store::Store;
    use rust_decimal::Decimal;

    #[tokio::test]
    async fn a_pruned_release_is_not_held_again_by_a_late_observation() {
        let store = Store::temporary().unwrap();
        let t = Tables::new(&store);
        let lines = vec![(7, Decimal::ONE)];
        let mut st = Staged::new(&t, "s1");
        set_hold(&mut st, 100, RECEIVED, lines.clone(), 0).unwrap();
        st.commit().await.unwrap();
        let mut st = Staged::new(&t, "s1");
        set_hold(&mut st, 100, IMPORTED_UNDRAWN, lines.clone(), 0).unwrap();
        set_hold(&mut st, 100, RELEASED, lines.clone(), 1_000).unwrap();
        st.set_source(
            7,
            Source {
                stock_observed_ms: 2_000,
                ..Source::default()
            },
        );
        st.commit().await.unwrap();
        prune_holds(&t, "s1").unwrap();
        assert!(t.holds.get(&("s1".into(), 100)).unwrap().is_none());

        // A duplicate webhook of the (long imported) order arrives late.
        let mut st = Staged::new(&t, "s1");
        set_hold(&mut st, 100, RECEIVED, lines, 0).unwrap();
        st.commit().await.unwrap();
        assert!(
            t.holds.get(&("s1".into(), 100)).unwrap().is_none(),
            "the order holds nothing again"
        );
    }
}
