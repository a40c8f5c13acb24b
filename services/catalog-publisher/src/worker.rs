//! One store's live path: applies DUELL facts and stock holds to its projection, and has the
//! writer write the difference to WooCommerce. Full syncs run beside it (`reconcile`), and
//! writes whose result is unknown are settled on a timer (`settle`).
//!
//! Order of things, so that a crash anywhere loses nothing and writes nothing twice:
//! 1. facts are applied to the projection and the touched products marked dirty, together with
//!    the processed-event ledger (and a full-sync run to do), in one sled commit; then the
//!    messages are acked;
//! 2. before a write goes out, an intent per product is committed;
//! 3. the write's result (WooCommerce's own answer) replaces the known WooCommerce state, clears
//!    the intent and the dirty mark, and stages the sync-log entries, in one commit;
//! 4. intents left by a crash or a lost answer are settled by reading WooCommerce once it can no
//!    longer be applying them, never by writing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duellsync_bus::{Delivery, HandleError, TraceParent};
use duellsync_events::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ctx::StoreCtx;
use crate::project::{apply_one, stage_stock_refresh};
use crate::state::Staged;
use crate::write::{Writer, SCAN_STARTED};

pub(crate) struct Worker {
    ctx: StoreCtx,
    writer: Writer,
}

impl Worker {
    pub fn new(ctx: StoreCtx) -> Self {
        Worker {
            writer: Writer::new(ctx.clone()),
            ctx,
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
        // Full batches go out as soon as they are full; a partial batch waits at most `linger`
        // for company, so a bulk change costs ⌈N/100⌉ requests and a lone change is still
        // written within milliseconds.
        let mut next_flush: Option<Instant> = Some(Instant::now());
        let mut partial_at: Option<Instant> = None;
        // Writes a crash left unsettled are settled once the store can no longer be applying
        // them; the first check runs at once.
        let mut settle_at: Option<Instant> = Some(Instant::now());
        loop {
            let due = [next_flush, partial_at, settle_at]
                .into_iter()
                .flatten()
                .min();
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
                    let dirtied_by = self.apply(batch).await;
                    if let Some(trace) = dirtied_by {
                        self.writer.trace = Some(trace);
                        partial_at.get_or_insert_with(|| Instant::now() + self.ctx.cfg.linger);
                        if let Some(n) = self.writer.flush(false).await {
                            next_flush = Some(next_flush.map_or(n, |x| x.min(n)));
                        }
                    }
                }
                _ = self.ctx.live.wake.notified() => {
                    // A reconciliation or a settlement marked products dirty.
                    partial_at.get_or_insert_with(|| Instant::now() + self.ctx.cfg.linger);
                    if let Some(n) = self.writer.flush(false).await {
                        next_flush = Some(next_flush.map_or(n, |x| x.min(n)));
                    }
                    settle_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(200));
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)), if due.is_some() => {
                    let now = Instant::now();
                    if settle_at.is_some_and(|t| t <= now) {
                        settle_at = self.settle().await;
                    }
                    if next_flush.is_some_and(|t| t <= now) || partial_at.is_some_and(|t| t <= now) {
                        partial_at = None;
                        next_flush = self.writer.flush(true).await;
                    }
                }
            }
        }
    }

    /// Settles the unsettled writes that are due; returns when to look again.
    async fn settle(&mut self) -> Option<Instant> {
        match crate::settle::settle_due(&self.ctx).await {
            Ok(Some(at_ms)) => {
                let wait = (at_ms - duellsync_events::now_ms()).max(0) as u64;
                Some(Instant::now() + Duration::from_millis(wait))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(store = %self.ctx.id, error = %format!("{e:#}"), "cannot settle earlier writes yet; will retry");
                Some(Instant::now() + self.ctx.cfg.retry_backoff)
            }
        }
    }

    /// Applies a batch of deliveries to the projection, commits, then acks them. Returns, when
    /// products became dirty, the trace of the last message that dirtied one.
    async fn apply(&mut self, batch: Vec<Arc<Delivery>>) -> Option<TraceParent> {
        let ctx = self.ctx.clone();
        let ledger = ctx.t.store.ledger();
        let mut st = Staged::new(&ctx.t, &ctx.id);
        let mut done = Vec::new();
        let mut failed: Vec<(Arc<Delivery>, HandleError)> = Vec::new();
        let mut runs = false;
        let mut dirtied_by = None;
        let scan_key = (ctx.id.clone(), SCAN_STARTED.to_owned());
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
            let dirty_before = st.dirty_marks();
            let applied = if d.is::<v1::CatalogScanStarted>() {
                d.decode::<v1::CatalogScanStarted>().map(|ev| {
                    if !ev.dry_run {
                        // New products are left to this scan's full sync (full batches).
                        st.t.marks
                            .put(&mut st.commit, &scan_key, &duellsync_events::now_ms());
                    }
                })
            } else if d.is::<v1::CatalogScanned>() {
                d.decode::<v1::CatalogScanned>().and_then(|scan| {
                    if !scan.dry_run {
                        st.t.marks.remove(&mut st.commit, &scan_key);
                    }
                    runs = true;
                    crate::reconcile::record_run(&mut st, &scan)
                        .map_err(|e| HandleError::retry(format!("{e:#}")))
                })
            } else {
                apply_one(&ctx, &mut st, &d)
            };
            // Catalogue facts are applied by the time they were observed (an older or the same
            // fact again changes nothing), so they need no ledger entry: at 100,000 products the
            // ledger of handled facts was most of the publisher's state. Orders and holds do.
            let needs_ledger = !(d.is::<v1::ProductObserved>()
                || d.is::<v1::StockObserved>()
                || d.is::<v1::ProductWithdrawn>());
            match applied {
                Ok(()) => {
                    if !id.is_empty() && needs_ledger {
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
            return None;
        }
        ctx.outbox_wake.notify_one();
        if runs {
            ctx.live.runs.notify_one();
        }
        for d in done {
            d.ack().await;
        }
        for (d, e) in failed {
            d.finish(Err(e)).await;
        }
        dirtied_by
    }
}
