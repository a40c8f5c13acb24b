//! Turning plans into WooCommerce batch requests, recording their results, and settling writes
//! whose result is unknown by reading WooCommerce.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use duellsync_catalog::{
    attach_image, category_path, plan, variant_option, PlanInput, Planned, ProductData, Shape,
    Source, WooState,
};
use duellsync_events::v1;
use duellsync_woo::{Batch, BatchItem, CategoryCreated, Product, ProductQuery, ProductWrite};
use futures::StreamExt;

use crate::ctx::StoreCtx;
use crate::state::{mk, Hold, Link, Op, Parked, Pending, Staged};
use crate::worker::Worker;

use crate::synclog::{
    applied_event, record_failure, sku_of, source_sku, stage_applied, DUPLICATE_SKU, PARENT_FAILED,
};

/// A plan for one product, with the dirty generation it was made from.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: i64,
    pub gen: Option<u64>,
    pub plan: Planned,
    /// Failed for good earlier and left alone until its cause changes.
    pub parked: Option<Parked>,
    /// A variant that waits for a parent that failed for good: (parent's SKU, its failure).
    pub parent_parked: Option<(String, Parked)>,
    /// A write of this product is unsettled (sent, result unknown): nothing is planned until
    /// it is settled by reading WooCommerce.
    pub unsettled: bool,
}

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

/// Plans every product in `ids` against the state the publisher knows, with the holds as
/// they are now.
pub(crate) fn plan_items(
    ctx: &StoreCtx,
    ids: &[(i64, Option<u64>)],
    holds: &[Hold],
) -> anyhow::Result<Vec<Item>> {
    let st = Staged::new(&ctx.t, &ctx.id);
    let now_ms = duellsync_events::now_ms();
    let prices = ctx.prices();
    let mut out = Vec::with_capacity(ids.len());
    for (id, gen) in ids {
        let parked = ctx.t.parked.get(&mk(&ctx.id, *id))?;
        let unsettled = ctx.t.pending.contains(&mk(&ctx.id, *id))?;
        let mut parent_parked = None;
        let planned = match st.source(*id)? {
            None => Planned::Nothing,
            Some(source) => {
                let link = st.link(*id)?;
                let parent_id = source
                    .product
                    .as_ref()
                    .filter(|p| p.is_variant())
                    .map(|p| p.parent_product_id);
                let (parent_source, parent_link) = match parent_id {
                    Some(pid) => (st.source(pid)?, st.link(pid)?),
                    None => (None, None),
                };
                if let Some(pid) = parent_id {
                    if let Some(p) = ctx.t.parked.get(&mk(&ctx.id, pid))? {
                        parent_parked = Some((sku_of(parent_source.as_ref()), p));
                    }
                }
                let variant_options = match source.product.as_ref() {
                    Some(p) if p.is_parent => variant_options_of(ctx, &st, *id, p)?,
                    _ => Vec::new(),
                };
                let input = PlanInput {
                    id: *id,
                    source: &source,
                    link: link.as_ref(),
                    holds,
                    parent: parent_source.as_ref().map(|ps| (ps, parent_link.as_ref())),
                    variant_options,
                    settings: &ctx.settings,
                    prices,
                    now_ms,
                };
                plan(&input)
            }
        };
        out.push(Item {
            id: *id,
            gen: *gen,
            plan: planned,
            parked,
            parent_parked,
            unsettled,
        });
    }
    Ok(out)
}

fn variant_options_of(
    ctx: &StoreCtx,
    st: &Staged<'_>,
    parent: i64,
    p: &ProductData,
) -> anyhow::Result<Vec<String>> {
    let children = ctx
        .t
        .children
        .get(&mk(st.store_id, parent))?
        .unwrap_or_default();
    let mut opts = Vec::new();
    for c in children {
        if let Some(Source {
            product: Some(cp),
            withdrawn: false,
            ..
        }) = st.source(c)?
        {
            if cp.parent_product_id == parent {
                let o = variant_option(&p.name, &cp.name);
                if !opts.contains(&o) {
                    opts.push(o);
                }
            }
        }
    }
    Ok(opts)
}

/// Writes the dirty products that are ready; returns when to flush next.
pub(crate) async fn flush_dirty(w: &mut Worker, partial: bool) -> anyhow::Result<Option<Instant>> {
    let ctx = w.ctx.clone();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let now = Instant::now();
        let min = ctx.cfg.min_write_interval;
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for row in ctx.t.dirty.iter_group(&ctx.id) {
            let ((_, id), gen) = row?;
            if let Some(t) = w.last_write.get(&id) {
                let at = *t + min;
                if at > now {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    continue;
                }
            }
            ready.push((id, Some(gen)));
            if ready.len() >= 5000 {
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
        let holds = ctx.holds()?;
        let mut items = plan_items(&ctx, &ready, &holds)?;
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
        if outcome.waiting > 0 && !outcome.written.is_empty() && rounds < 5 && w.scanning.is_none()
        {
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
                st.clear_dirty(item.id, g)?;
            }
            continue;
        }
        match &item.plan {
            Planned::Nothing => {
                if let Some(g) = item.gen {
                    st.clear_dirty(item.id, g)?;
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
        if !image_url.is_empty() {
            let uploaded = ctx.t.images.get(&(ctx.id.clone(), image_url.clone()))?;
            attach_image(&mut write, shape, &image_url, uploaded);
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
    for item in work {
        let Planned::Create { write, .. } = &item.plan else {
            rest.push(item);
            continue;
        };
        let sku = write.sku.clone().unwrap_or_default().trim().to_lowercase();
        let Some(existing) = found.get(&sku) else {
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
                        hidden_by_us: false,
                        keep_lower_stock: false,
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

/// Reads compare against what writes return: stored values (`edit`), not the rendered `view`
/// (which wraps descriptions in HTML and would look like drift).
pub(crate) fn edit_context() -> Vec<(String, String)> {
    vec![("context".to_owned(), "edit".to_owned())]
}

/// WooCommerce products by lower-cased SKU (variations included), in lists of up to 50 SKUs.
async fn find_by_skus(ctx: &StoreCtx, skus: &[String]) -> anyhow::Result<HashMap<String, Product>> {
    let mut out = HashMap::new();
    let (plain, odd): (Vec<&String>, Vec<&String>) = skus
        .iter()
        .partition(|s| !s.contains(',') && s.trim() == s.as_str());
    let mut queries: Vec<String> = plain
        .chunks(50)
        .map(|c| c.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))
        .collect();
    queries.extend(odd.into_iter().cloned());
    // The look-ups run side by side within the store's request limit: one after the other they
    // were most of a full sync's time against a slow store (200 sequential reads for 10,000
    // new products).
    let concurrency = ctx.settings.woo.max_concurrency.max(1);
    let mut lookups =
        futures::stream::iter(queries.into_iter().map(|q| products_with_skus(ctx, q)))
            .buffer_unordered(concurrency);
    while let Some(found) = lookups.next().await {
        for p in found? {
            if !p.sku.is_empty() {
                out.insert(p.sku.trim().to_lowercase(), p);
            }
        }
    }
    Ok(out)
}

/// Every product matching one `sku` query (a comma-separated list of up to 50), all pages.
async fn products_with_skus(ctx: &StoreCtx, query: String) -> anyhow::Result<Vec<Product>> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let res = ctx
            .woo
            .list_products(&ProductQuery {
                sku: Some(query.clone()),
                per_page: Some(100),
                page: Some(page),
                extra: edit_context(),
                ..ProductQuery::default()
            })
            .await?;
        let n = res.items.len();
        out.extend(res.items);
        if n < 100 {
            return Ok(out);
        }
        page += 1;
    }
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

async fn send_job(ctx: &StoreCtx, job: Job) -> anyhow::Result<JobOutcome> {
    let mut out = JobOutcome::default();
    // Intents first: after a crash from here on, the result is learned by reading.
    let mut st = Staged::new(&ctx.t, &ctx.id);
    let at_ms = duellsync_events::now_ms();
    for (item, write, op, _) in &job.items {
        st.t.pending.put(
            &mut st.commit,
            &mk(st.store_id, item.id),
            &Pending {
                op: *op,
                sku: write.sku.clone().unwrap_or_default(),
                woo_id: write.id.unwrap_or(0),
                parent_woo_id: job.parent,
                at_ms,
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
                    st.clear_dirty(item.id, g)?;
                }
                st.commit().await?;
                Ok(out)
            }
            Err(e) => {
                settle_after_error(ctx, &job).await;
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
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            settle_after_error(ctx, &job).await;
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
        st.clear_dirty(item.id, g)?;
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

/// After a failed request: learn by reading what WooCommerce did with each item.
async fn settle_after_error(ctx: &StoreCtx, job: &Job) {
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
                },
            )
        })
        .collect();
    if let Err(e) = verify(ctx, &items).await {
        tracing::warn!(store = %ctx.id, error = %format!("{e:#}"), "cannot read back after a failed write; intents kept for the next start");
    }
}

/// Reads WooCommerce for products with an unsettled write and records what it really holds.
/// Creates are looked up by SKU (and our DUELL id in meta data), updates by id.
pub(crate) async fn verify(ctx: &StoreCtx, items: &[(i64, Pending)]) -> anyhow::Result<()> {
    let creates: Vec<&(i64, Pending)> = items.iter().filter(|(_, p)| p.op == Op::Create).collect();
    let others: Vec<&(i64, Pending)> = items.iter().filter(|(_, p)| p.op != Op::Create).collect();
    let mut st = Staged::new(&ctx.t, &ctx.id);
    if !creates.is_empty() {
        let skus: Vec<String> = creates
            .iter()
            .map(|(_, p)| p.sku.clone())
            .filter(|s| !s.is_empty())
            .collect();
        let found = find_by_skus(ctx, &skus).await?;
        for (id, p) in creates {
            if let Some(existing) = found.get(&p.sku.trim().to_lowercase()) {
                if WooState::duell_id_of(existing) == Some(*id) {
                    let mut state = WooState::from_product(existing);
                    if p.parent_woo_id > 0 {
                        state.parent_id = p.parent_woo_id;
                    }
                    remember_image(ctx, &mut st, *id, &state)?;
                    st.set_link(
                        *id,
                        Link {
                            woo: state,
                            hidden_by_us: false,
                            keep_lower_stock: false,
                        },
                    )?;
                }
            }
            st.t.pending.remove(&mut st.commit, &mk(st.store_id, *id));
            st.mark_dirty(*id)?;
        }
    }
    let ids: Vec<u64> = others
        .iter()
        .map(|(_, p)| p.woo_id)
        .filter(|w| *w > 0)
        .collect();
    let mut by_id: HashMap<u64, Product> = HashMap::new();
    for chunk in ids.chunks(100) {
        let res = ctx
            .woo
            .list_products(&ProductQuery {
                include: chunk.to_vec(),
                per_page: Some(100),
                status: Some("any".into()),
                extra: edit_context(),
                ..ProductQuery::default()
            })
            .await?;
        for p in res.items {
            by_id.insert(p.id, p);
        }
    }
    for (id, p) in others {
        let found = match by_id.get(&p.woo_id) {
            Some(prod) => Some(prod.clone()),
            // Variations are not in product lists; read them one by one.
            None => get_product_edit(ctx, p.woo_id).await,
        };
        if let Some(prod) = found {
            let old = st.link(*id)?;
            let keep_lower_stock = old.as_ref().map(|l| l.keep_lower_stock).unwrap_or(false);
            let mut state = WooState::from_product(&prod);
            if p.parent_woo_id > 0 {
                state.parent_id = p.parent_woo_id;
            }
            remember_image(ctx, &mut st, *id, &state)?;
            let hidden_by_us = old.map(|l| l.hidden_by_us).unwrap_or(false)
                || (p.op == Op::Trash && state.status == "trash");
            st.set_link(
                *id,
                Link {
                    woo: state,
                    hidden_by_us,
                    keep_lower_stock,
                },
            )?;
        }
        st.t.pending.remove(&mut st.commit, &mk(st.store_id, *id));
        st.mark_dirty(*id)?;
    }
    st.commit().await?;
    Ok(())
}

async fn get_product_edit(ctx: &StoreCtx, id: u64) -> Option<Product> {
    let req = duellsync_woo::WooRequest::new(
        duellsync_woo::Method::GET,
        format!("products/{id}"),
        duellsync_woo::Idempotency::Idempotent,
    )
    .query("context", "edit");
    let resp = ctx.woo.send(req).await.ok()?;
    resp.decode::<Product>("GET products/{id}").ok()
}

/// If a product carries an image that came from its DUELL URL, that attachment is the upload
/// to reuse (a create whose answer was lost still uploaded it).
fn remember_image(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    id: i64,
    state: &WooState,
) -> anyhow::Result<()> {
    let Some(att) = state.image_ids.first() else {
        return Ok(());
    };
    if let Some(Source {
        product: Some(p), ..
    }) = st.source(id)?
    {
        if !p.image_url.is_empty() {
            let k = (ctx.id.clone(), p.image_url.clone());
            if ctx.t.images.get(&k)?.is_none() {
                st.t.images.put(&mut st.commit, &k, att);
            }
        }
    }
    Ok(())
}
