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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duellsync_bus::{Delivery, HandleError, TraceParent};
use duellsync_events::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ctx::StoreCtx;
use crate::project::{apply_one, stage_stock_refresh};
use crate::state::Staged;

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
        let mut staged = Ok(());
        for (order, phase, product) in refresh {
            staged = staged.and(stage_stock_refresh(&ctx, &mut st, order, phase, product));
        }
        if let Err(e) = staged.and(st.commit().await) {
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
        ctx.outbox_wake.notify_one();
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
