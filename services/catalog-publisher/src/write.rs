//! The live writer: plans the dirty products with the holds as they are now, turns the plans
//! into WooCommerce batch requests (≤ 100 items, bounded concurrency) and records every result
//! with its sync-log entries. A full sync never writes itself; it marks products dirty and this
//! writer writes them in the same batches as live changes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use duellsync_bus::TraceParent;
use duellsync_catalog::{attach_image, category_path, downloads_image, Planned, Shape, WooState};
use duellsync_events::v1;
use duellsync_woo::{Batch, BatchItem, CategoryCreated, ProductWrite};
use futures::StreamExt;
use tracing::Instrument;

use crate::ctx::StoreCtx;
use crate::inputs::{plan_items, Item};
use crate::state::{mk, Link, Op, Pending, Staged};
use crate::woo_read::find_by_skus;

use crate::synclog::{
    applied_event, record_failure, sku_of, source_sku, stage_applied, DUPLICATE_SKU, PARENT_FAILED,
};

/// What an execution did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Left alone: failed for good earlier.
    pub parked: usize,
    /// Left for later: a write of them is being settled.
    pub unsettled: usize,
    pub written: Vec<i64>,
    pub waiting: usize,
    pub batch_writes: usize,
    pub failures: usize,
    pub applied: usize,
}

/// Mark holding when a full DUELL scan started (Unix ms), until its end marker: new products
/// are left to its full sync, which creates them in full batches.
pub(crate) const SCAN_STARTED: &str = "scan_started_ms";

/// A scan whose end marker never came (the poller died) stops holding creates back after this.
const SCAN_HOLD: Duration = Duration::from_secs(600);

/// The writer of one store.
pub(crate) struct Writer {
    pub ctx: StoreCtx,
    /// When each product was last written (storms of one product are spaced out).
    last_write: HashMap<i64, Instant>,
    /// After a failed write: no new attempt before this.
    retry_at: Option<Instant>,
    failures_in_row: u32,
    /// The trace of the newest message that made products dirty: the next write, which carries
    /// the newest state, continues it (one write coalesces many facts; see
    /// docs/architecture.md).
    pub trace: Option<TraceParent>,
}

impl Writer {
    pub fn new(ctx: StoreCtx) -> Self {
        Writer {
            ctx,
            last_write: HashMap::new(),
            retry_at: None,
            failures_in_row: 0,
            trace: None,
        }
    }

    /// Whether a full DUELL scan is running, so creates wait for its full sync.
    pub fn creates_held(&self) -> bool {
        let key = (self.ctx.id.clone(), SCAN_STARTED.to_owned());
        match self.ctx.t.marks.get(&key) {
            Ok(Some(at)) => duellsync_events::now_ms() - at < SCAN_HOLD.as_millis() as i64,
            _ => false,
        }
    }

    /// Writes what is dirty and ready (only full batches unless `partial`). Returns when the
    /// next flush is due, if any work remains.
    pub async fn flush(&mut self, partial: bool) -> Option<Instant> {
        if !self.ctx.settings.automatic && !self.ctx.live.any_forced() {
            // Facts are recorded; nothing is written until a full sync asks.
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
        match flush_dirty(self, partial).instrument(span).await {
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
}

/// Writes the dirty products that are ready; returns when to flush next.
async fn flush_dirty(w: &mut Writer, partial: bool) -> anyhow::Result<Option<Instant>> {
    let ctx = w.ctx.clone();
    let round = ctx.cfg.write_round.max(ctx.cfg.batch_size).max(1);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let now = Instant::now();
        let min = ctx.cfg.min_write_interval;
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        let automatic = ctx.settings.automatic;
        for row in ctx.t.dirty.iter_group(&ctx.id) {
            let ((_, id), gen) = row?;
            if !automatic && !ctx.live.is_forced(id) {
                continue;
            }
            if let Some(t) = w.last_write.get(&id) {
                let at = *t + min;
                if at > now {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    continue;
                }
            }
            ready.push((id, Some(gen)));
            if ready.len() >= round {
                next = Some(now);
                break;
            }
        }
        if !partial {
            // Only whole batches now; the rest waits for company (at most `linger`).
            let size = ctx.cfg.batch_size.clamp(1, 100);
            ready.truncate(ready.len() / size * size);
        }
        if ready.is_empty() {
            return Ok(next);
        }
        // Holds are read now, at write time: one that changed since the product was marked
        // (also by a reconciliation) is seen.
        let holds = ctx.holds()?;
        let mut items = plan_items(&ctx, &ready, &holds, None)?;
        if w.creates_held() {
            for item in items.iter_mut() {
                if matches!(item.plan, Planned::Create { .. }) {
                    item.plan = Planned::Wait;
                }
            }
        }
        let outcome = execute(&ctx, items, &mut |_, _| {}).await?;
        if !partial {
            return Ok(next);
        }
        let at = Instant::now();
        for id in &outcome.written {
            w.last_write.insert(*id, at);
        }
        metrics::gauge!("duellsync_publisher_dirty_products", "store" => ctx.id.clone())
            .set(ctx.t.dirty.iter_group(&ctx.id).count() as f64);
        // Creating parents makes their waiting variations possible: go again at once.
        if outcome.waiting > 0 && !outcome.written.is_empty() && rounds < 5 && !w.creates_held() {
            continue;
        }
        if outcome.waiting > 0 {
            let retry = at + ctx.cfg.retry_backoff;
            next = Some(next.map_or(retry, |n| n.min(retry)));
        }
        return Ok(next);
    }
}

struct Job {
    parent: u64,
    items: Vec<(Item, ProductWrite, Op, String)>,
}

/// Executes plans: settles the ones with nothing to do, adopts existing WooCommerce products by
/// SKU before creating, then sends batches (bounded concurrency) and records every result.
pub(crate) async fn execute(
    ctx: &StoreCtx,
    items: Vec<Item>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut st = Staged::new(&ctx.t, &ctx.id);
    let mut work = Vec::new();
    for item in items {
        if item.unsettled {
            // Left dirty: planned again once the write in flight is settled.
            outcome.unsettled += 1;
            continue;
        }
        if item.parked.is_some() {
            // Failed for good before: not retried until its cause changes (issue 12 §3).
            outcome.parked += 1;
            if let Some(g) = item.gen {
                st.clear_dirty(item.id, g);
            }
            continue;
        }
        match &item.plan {
            Planned::Nothing => {
                if let Some(g) = item.gen {
                    st.clear_dirty(item.id, g);
                }
            }
            Planned::Wait => match &item.parent_parked {
                Some((parent_sku, why)) => {
                    outcome.failures += 1;
                    let msg = format!(
                        "its parent (SKU {parent_sku}) could not be written: {}: {}",
                        why.code, why.message
                    );
                    record_failure(ctx, &mut st, item.id, item.gen, PARENT_FAILED, &msg)?;
                }
                None => outcome.waiting += 1,
            },
            _ => work.push(item),
        }
    }
    st.commit().await?;
    ctx.outbox_wake.notify_one();
    if work.is_empty() {
        return Ok(outcome);
    }

    let work = adopt_existing(ctx, work, &mut outcome).await?;

    // Images being downloaded now: by requests in flight, or by writes whose answer is being
    // settled.
    let mut downloading: std::collections::HashSet<String> = ctx.live.downloading();
    for row in ctx.t.pending.iter_group(&ctx.id) {
        let (_, p) = row?;
        if p.downloads && !p.image_url.is_empty() {
            downloading.insert(p.image_url);
        }
    }
    // Trash moves go one by one: a batch delete would delete for good.
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_parent: BTreeMap<u64, Vec<(Item, ProductWrite, Op, String)>> = BTreeMap::new();
    for item in work {
        let (mut write, op, parent, image_url, shape) = match &item.plan {
            Planned::Create {
                write,
                category_path,
                image_url,
                parent_woo_id,
                ..
            } => {
                let mut w = (**write).clone();
                if !category_path.is_empty() {
                    match resolve_categories(ctx, category_path).await {
                        Ok(ids) if !ids.is_empty() => {
                            w.categories = Some(
                                ids.into_iter()
                                    .map(|id| duellsync_woo::IdRef { id })
                                    .collect(),
                            )
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(store = %ctx.id, path = %category_path, error = %e, "category not resolved; creating the product without it");
                        }
                    }
                }
                let shape = if *parent_woo_id > 0 {
                    Shape::Variation
                } else {
                    Shape::Simple
                };
                (w, Op::Create, *parent_woo_id, image_url.clone(), shape)
            }
            Planned::Update {
                write,
                image_url,
                parent_woo_id,
                ..
            } => {
                let shape = if *parent_woo_id > 0 {
                    Shape::Variation
                } else {
                    Shape::Simple
                };
                (
                    (**write).clone(),
                    Op::Update,
                    *parent_woo_id,
                    image_url.clone(),
                    shape,
                )
            }
            Planned::Trash { woo_id } => (
                ProductWrite {
                    id: Some(*woo_id),
                    ..ProductWrite::default()
                },
                Op::Trash,
                0,
                String::new(),
                Shape::Simple,
            ),
            Planned::Nothing | Planned::Wait => continue,
        };
        let mut item = item;
        let mut image_url = image_url;
        if !image_url.is_empty() {
            let uploaded = ctx.t.images.get(&(ctx.id.clone(), image_url.clone()))?;
            // One download per image per store, ever: the first product showing a new image
            // carries its `src`; the others (in this flush, or while that download is in flight
            // or unsettled) are written without it and planned again to reuse the attachment.
            if uploaded.is_none() && !downloading.insert(image_url.clone()) {
                item.image_deferred = true;
                outcome.waiting += 1;
                image_url = String::new();
            } else {
                attach_image(&mut write, shape, &image_url, uploaded);
            }
        }
        if item.image_deferred && item.plan.fields() == ["image"] {
            // Nothing else to write: it waits for the attachment (it stays dirty).
            continue;
        }
        if op == Op::Trash {
            jobs.push(Job {
                parent: 0,
                items: vec![(item, write, op, image_url)],
            });
        } else {
            by_parent
                .entry(parent)
                .or_default()
                .push((item, write, op, image_url));
        }
    }
    for (parent, list) in by_parent {
        let mut current: Vec<(Item, ProductWrite, Op, String)> = Vec::new();
        let mut images_in_batch = 0;
        for entry in list {
            let downloads = entry
                .1
                .images
                .as_ref()
                .map(|v| v.iter().any(|i| i.src.is_some()))
                .unwrap_or(false)
                || entry
                    .1
                    .image
                    .as_ref()
                    .map(|i| i.src.is_some())
                    .unwrap_or(false);
            let limit = if images_in_batch > 0 || downloads {
                ctx.cfg.image_batch_size.clamp(1, 100)
            } else {
                ctx.cfg.batch_size.clamp(1, 100)
            };
            if !current.is_empty() && current.len() >= limit {
                jobs.push(Job {
                    parent,
                    items: std::mem::take(&mut current),
                });
                images_in_batch = 0;
            }
            if downloads {
                images_in_batch += 1;
            }
            current.push(entry);
        }
        if !current.is_empty() {
            jobs.push(Job {
                parent,
                items: current,
            });
        }
    }

    let total: usize = jobs.iter().map(|j| j.items.len()).sum();
    let mut done = 0;
    let concurrency = ctx.settings.woo.max_concurrency.max(1);
    let mut results = futures::stream::iter(jobs.into_iter().map(|job| send_job(ctx, job)))
        .buffer_unordered(concurrency);
    let mut first_error: Option<anyhow::Error> = None;
    while let Some(r) = results.next().await {
        match r {
            Ok(o) => {
                done += o.applied + o.failures;
                outcome.written.extend(o.written);
                outcome.batch_writes += o.batch_writes;
                outcome.failures += o.failures;
                outcome.applied += o.applied;
                progress(done, total);
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Before creating, looks for products WooCommerce already has under the same SKU (a lost
/// state, a product made by hand, a create whose answer was lost): ours (our DUELL id in their
/// meta data) or unclaimed ones are linked instead of created twice; another DUELL product's is
/// a SKU clash, reported for this product only.
async fn adopt_existing(
    ctx: &StoreCtx,
    work: Vec<Item>,
    outcome: &mut Outcome,
) -> anyhow::Result<Vec<Item>> {
    let skus: Vec<String> = work
        .iter()
        .filter(|i| matches!(i.plan, Planned::Create { .. }))
        .filter_map(|i| match &i.plan {
            Planned::Create { write, .. } => write.sku.clone().filter(|s| !s.trim().is_empty()),
            _ => None,
        })
        .collect();
    if skus.is_empty() {
        return Ok(work);
    }
    let found = find_by_skus(ctx, &skus).await?;
    let mut st = Staged::new(&ctx.t, &ctx.id);
    let mut rest = Vec::new();
    let mut adopted = Vec::new();
    // Two new DUELL products with one number: only one is created in a round (WooCommerce
    // would create both when they overlap); the other finds it next round and fails as a
    // clash instead of making a twin.
    let mut creating: std::collections::HashSet<String> = std::collections::HashSet::new();
    for item in work {
        let Planned::Create { write, .. } = &item.plan else {
            rest.push(item);
            continue;
        };
        let sku = write.sku.clone().unwrap_or_default().trim().to_lowercase();
        let list = found.get(&sku).map(Vec::as_slice).unwrap_or(&[]);
        // Ours (tagged with this DUELL id, the oldest if there are copies) or an unclaimed one
        // is linked; only products tagged with other DUELL ids make a clash.
        let existing = list
            .iter()
            .find(|p| WooState::duell_id_of(p) == Some(item.id))
            .or_else(|| list.iter().find(|p| WooState::duell_id_of(p).is_none()))
            .or_else(|| list.first());
        let Some(existing) = existing else {
            if !sku.is_empty() && !creating.insert(sku) {
                outcome.waiting += 1;
                continue;
            }
            rest.push(item);
            continue;
        };
        match WooState::duell_id_of(existing) {
            Some(other) if other != item.id => {
                outcome.failures += 1;
                let msg = format!(
                    "SKU {} is already used in WooCommerce by product {} (DUELL product {other})",
                    write.sku.as_deref().unwrap_or(""),
                    existing.id
                );
                record_failure(ctx, &mut st, item.id, item.gen, DUPLICATE_SKU, &msg)?;
            }
            _ => {
                let mut state = WooState::from_product(existing);
                if existing.kind == "variation" {
                    state.parent_id = existing.parent_id;
                }
                st.set_link(
                    item.id,
                    Link {
                        woo: state,
                        ..Link::default()
                    },
                )?;
                adopted.push((item.id, existing.id, source_sku(&st, item.id)?));
                // Still dirty: the next round compares and writes only what differs.
                st.mark_dirty(item.id)?;
                outcome.waiting += 1;
                outcome.written.push(item.id);
            }
        }
    }
    let linked: Vec<v1::ProductApplied> = adopted
        .into_iter()
        .map(|(id, woo_id, sku)| {
            applied_event(
                ctx,
                id,
                sku,
                woo_id,
                v1::product_applied::Action::Linked,
                &["link"],
                None,
                "",
            )
        })
        .collect();
    stage_applied(ctx, &mut st, &linked);
    st.commit().await?;
    ctx.outbox_wake.notify_one();
    Ok(rest)
}

/// Creates the category path on demand (WooCommerce answers `term_exists` with the id of an
/// existing one); remembers ids. Returns the deepest category (WooCommerce shows the tree).
async fn resolve_categories(ctx: &StoreCtx, path: &str) -> anyhow::Result<Vec<u64>> {
    let parts = category_path(path);
    let mut parent: Option<u64> = None;
    let mut key = String::new();
    for part in parts {
        if !key.is_empty() {
            key.push_str(" > ");
        }
        key.push_str(&part);
        let k = (ctx.id.clone(), key.clone());
        let id = match ctx.t.categories.get(&k)? {
            Some(id) => id,
            None => {
                let id = match ctx.woo.create_category(&part, parent).await? {
                    CategoryCreated::Created(c) => c.id,
                    CategoryCreated::Existing { id } => id,
                };
                ctx.t.categories.put_now(&ctx.t.store, &k, &id).await?;
                id
            }
        };
        parent = Some(id);
    }
    Ok(parent.into_iter().collect())
}

#[derive(Default)]
struct JobOutcome {
    written: Vec<i64>,
    batch_writes: usize,
    failures: usize,
    applied: usize,
    /// Sync log entries of the products written, published once their results are committed.
    applied_events: Vec<v1::ProductApplied>,
}

/// Sends one job while its products count as in flight (their intents are not settled by
/// reading while this request may still answer).
async fn send_job(ctx: &StoreCtx, job: Job) -> anyhow::Result<JobOutcome> {
    let ids: Vec<i64> = job.items.iter().map(|(i, ..)| i.id).collect();
    let urls: Vec<String> = job
        .items
        .iter()
        .filter(|(_, w, ..)| downloads_image(w))
        .map(|(.., url)| url.clone())
        .collect();
    ctx.live.enter(&ids, &urls);
    let r = send_job_inner(ctx, job).await;
    ctx.live.wrote(&ids, duellsync_events::now_ms());
    ctx.live.leave(&ids, &urls);
    r
}

async fn send_job_inner(ctx: &StoreCtx, job: Job) -> anyhow::Result<JobOutcome> {
    let mut out = JobOutcome::default();
    // Intents first: after a crash from here on, the result is learned by reading.
    let mut st = Staged::new(&ctx.t, &ctx.id);
    let at_ms = duellsync_events::now_ms();
    for (item, write, op, image_url) in &job.items {
        st.t.pending.put(
            &mut st.commit,
            &mk(st.store_id, item.id),
            &Pending {
                op: *op,
                sku: write.sku.clone().unwrap_or_default(),
                woo_id: write.id.unwrap_or(0),
                parent_woo_id: job.parent,
                at_ms,
                downloads: downloads_image(write),
                image_url: if downloads_image(write) {
                    image_url.clone()
                } else {
                    String::new()
                },
            },
        );
    }
    st.commit().await?;

    if let [(item, write, Op::Trash, _)] = job.items.as_slice() {
        let woo_id = write.id.unwrap_or(0);
        return match ctx.woo.delete_product(woo_id, false).await {
            Ok(p) => {
                let mut st = Staged::new(&ctx.t, &ctx.id);
                let mut state = WooState::from_product(&p);
                // The answer of a trashing DELETE still shows the old status.
                state.status = "trash".into();
                record_ok(ctx, &mut st, item, state, "", true, &mut out)?;
                stage_applied(ctx, &mut st, &std::mem::take(&mut out.applied_events));
                st.commit().await?;
                ctx.outbox_wake.notify_one();
                Ok(out)
            }
            Err(e) if e.status() == Some(410) || e.status() == Some(404) => {
                let mut st = Staged::new(&ctx.t, &ctx.id);
                st.t.pending
                    .remove(&mut st.commit, &mk(st.store_id, item.id));
                if let Some(g) = item.gen {
                    st.clear_dirty(item.id, g);
                }
                st.commit().await?;
                Ok(out)
            }
            Err(e) => {
                after_error(ctx, &job, &e).await;
                Err(e.into())
            }
        };
    }

    let mut batch = Batch::<ProductWrite>::default();
    for (_, write, op, _) in &job.items {
        match op {
            Op::Create => batch.create.push(write.clone()),
            _ => batch.update.push(write.clone()),
        }
    }
    let started = Instant::now();
    let result = if job.parent > 0 {
        ctx.woo.batch_variations(job.parent, &batch).await
    } else {
        ctx.woo.batch_products(&batch).await
    };
    metrics::histogram!("duellsync_publisher_batch_duration_seconds", "store" => ctx.id.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("duellsync_publisher_batch_items", "store" => ctx.id.clone())
        .record(batch.len() as f64);
    metrics::counter!("duellsync_publisher_batch_writes_total", "store" => ctx.id.clone())
        .increment(1);
    out.batch_writes += 1;
    ctx.live
        .batch_writes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            after_error(ctx, &job, &e).await;
            return Err(anyhow::Error::new(e).context("batch write"));
        }
    };
    let mut creates = result.create.into_iter();
    let mut updates = result.update.into_iter();
    let mut st = Staged::new(&ctx.t, &ctx.id);
    for (item, _, op, image_url) in &job.items {
        let r = match op {
            Op::Create => creates.next(),
            _ => updates.next(),
        };
        match r {
            Some(BatchItem::Ok(p)) => {
                let mut state = WooState::from_product(&p);
                if job.parent > 0 {
                    state.parent_id = job.parent;
                }
                record_ok(
                    ctx,
                    &mut st,
                    item,
                    state,
                    image_url,
                    *op == Op::Create,
                    &mut out,
                )?;
            }
            Some(BatchItem::Err { error, .. }) => {
                let code = error.code.clone();
                let stale_link =
                    code.ends_with("invalid_id") || code == "woocommerce_rest_invalid_product_id";
                if stale_link && *op == Op::Update {
                    // Deleted in WooCommerce behind our back: forget the link; a create follows
                    // if the settings allow it.
                    st.remove_link(item.id)?;
                    st.t.pending
                        .remove(&mut st.commit, &mk(st.store_id, item.id));
                    st.mark_dirty(item.id)?;
                    continue;
                }
                if code == "woocommerce_product_invalid_image_id" && !image_url.is_empty() {
                    // The attachment we remembered is gone: forget it so the next try downloads.
                    st.t.images
                        .remove(&mut st.commit, &(ctx.id.clone(), image_url.clone()));
                    st.t.pending
                        .remove(&mut st.commit, &mk(st.store_id, item.id));
                    continue;
                }
                out.failures += 1;
                st.t.pending
                    .remove(&mut st.commit, &mk(st.store_id, item.id));
                let transient = error.status().map(|s| s >= 500).unwrap_or(false);
                if transient {
                    continue;
                }
                // WooCommerce's code and ours name the same problem: one code for people.
                let code = if code == "product_invalid_sku" {
                    DUPLICATE_SKU.to_owned()
                } else {
                    code
                };
                record_failure(ctx, &mut st, item.id, item.gen, &code, &error.message)?;
            }
            None => {
                // WooCommerce answered fewer items than sent: treat as unknown and read back.
                st.t.pending
                    .remove(&mut st.commit, &mk(st.store_id, item.id));
            }
        }
    }
    stage_applied(ctx, &mut st, &std::mem::take(&mut out.applied_events));
    st.commit().await?;
    ctx.outbox_wake.notify_one();
    Ok(out)
}

fn record_ok(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    item: &Item,
    state: WooState,
    image_url: &str,
    created: bool,
    out: &mut JobOutcome,
) -> anyhow::Result<()> {
    let hides = match &item.plan {
        Planned::Update { hides, .. } => *hides,
        Planned::Trash { .. } => Some(true),
        _ => None,
    };
    let old = st.link(item.id)?;
    let keep_lower_stock = old.as_ref().map(|l| l.keep_lower_stock).unwrap_or(false);
    let hidden_by_us = match hides {
        Some(h) => h,
        None => old.map(|l| l.hidden_by_us).unwrap_or(false),
    };
    if !image_url.is_empty() {
        if let Some(att) = state.image_ids.first() {
            st.t.images
                .put(&mut st.commit, &(ctx.id.clone(), image_url.to_owned()), att);
        }
    }
    let woo_id = state.woo_id;
    let stock = state.stock;
    st.set_link(
        item.id,
        Link {
            woo: state,
            hidden_by_us,
            keep_lower_stock,
        },
    )?;
    st.t.pending
        .remove(&mut st.commit, &mk(st.store_id, item.id));
    if let Some(g) = item.gen {
        st.clear_dirty(item.id, g);
    }
    if item.image_deferred {
        // Its image comes with a later write, reusing the attachment being made now.
        st.mark_dirty(item.id)?;
    }
    out.written.push(item.id);
    out.applied += 1;
    let action = if created {
        v1::product_applied::Action::Created
    } else if hides == Some(true) {
        v1::product_applied::Action::Withdrawn
    } else {
        v1::product_applied::Action::Updated
    };
    let source = st.source(item.id)?;
    let cause = source
        .as_ref()
        .map(|s| s.last_event_id.clone())
        .unwrap_or_default();
    let sku = sku_of(source.as_ref());
    tracing::info!(store = %ctx.id, product_id = item.id, sku = %sku, woo_id, action = ?action, fields = ?item.plan.fields(), stock = ?stock, "product written");
    out.applied_events.push(applied_event(
        ctx,
        item.id,
        sku,
        woo_id,
        action,
        item.plan.fields(),
        item.gen,
        &cause,
    ));
    metrics::counter!("duellsync_publisher_products_applied_total", "store" => ctx.id.clone(), "action" => format!("{action:?}").to_lowercase())
        .increment(1);
    Ok(())
}

/// After a failed request. A refusal of the whole request (4xx) applied nothing: the intents go
/// and the products stay dirty. A write whose outcome is unknown and that is not idempotent (a
/// create, an image download) is left to be settled by reading once the store can no longer be
/// applying it (`settle_after`, see `settle`). Idempotent updates are read back at once.
async fn after_error(ctx: &StoreCtx, job: &Job, e: &duellsync_woo::Error) {
    let refused = e
        .status()
        .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429);
    let mut st = Staged::new(&ctx.t, &ctx.id);
    if refused {
        for (item, ..) in &job.items {
            st.t.pending
                .remove(&mut st.commit, &mk(st.store_id, item.id));
        }
        if let Err(e) = st.commit().await {
            tracing::warn!(store = %ctx.id, error = %format!("{e:#}"), "cannot drop the intents of a refused request; they are settled by reading");
        }
        return;
    }
    let deferred = job
        .items
        .iter()
        .any(|(_, w, op, _)| *op == Op::Create || downloads_image(w));
    if deferred {
        tracing::warn!(store = %ctx.id, products = job.items.len(), error = %e, settle_in = ?ctx.settle_after(), "the outcome of a write is unknown; WooCommerce is read once it can no longer be applying it");
        return;
    }
    let items: Vec<(i64, Pending)> = job
        .items
        .iter()
        .map(|(item, write, op, _)| {
            (
                item.id,
                Pending {
                    op: *op,
                    sku: write.sku.clone().unwrap_or_default(),
                    woo_id: write.id.unwrap_or(0),
                    parent_woo_id: job.parent,
                    at_ms: 0,
                    downloads: false,
                    image_url: String::new(),
                },
            )
        })
        .collect();
    if let Err(e) = crate::settle::verify(ctx, &items).await {
        tracing::warn!(store = %ctx.id, error = %format!("{e:#}"), "cannot read back after a failed write; the intents are settled later");
    }
}
