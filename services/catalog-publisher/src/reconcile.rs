//! Full sync and reconciliation (SPEC §3.4), beside the live path.
//!
//! After the poller's full DUELL scan (the `catalog.scanned` marker) the run is recorded in the
//! state together with the marker's ack, so a run survives a crash and is done (again) after a
//! restart until it completes. A reconciler task per store then reads every WooCommerce product
//! (100 per page, ordered by id, only the fields compared), refreshes what the publisher knows
//! WooCommerce holds, plans every product with the pure planner and **marks** the ones that
//! need a write dirty. It never writes itself: the live writer writes them in the same batches
//! as live changes, with the holds as they are at write time, so stock and price changes never
//! wait behind a reconciliation. The run completes when its products are written (or failed),
//! and its `FullSyncCompleted` goes out through the outbox in the same commit that drops the
//! run.
//!
//! A dry run reads the same and plans the same, but records nothing: no link, no dirty mark —
//! it can never lead to a write. Its plan says which of the writes are pending anyway (facts
//! the live path has not written yet).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use duellsync_catalog::{count_fields, drift_left_alone, PlanInput, Planned, WooState};
use duellsync_events::{caused_meta, meta, v1, EventId, Meta};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ctx::StoreCtx;
use crate::inputs::{plan_items, Item};
use crate::state::{ids_for_sku, mk, Hold, Link, Staged};
use crate::woo_read::edit_context;
use crate::SERVICE;

const FIELDS: [&str; 18] = [
    "id",
    "sku",
    "name",
    "description",
    "status",
    "type",
    "parent_id",
    "regular_price",
    "sale_price",
    "date_on_sale_from_gmt",
    "date_on_sale_to_gmt",
    "manage_stock",
    "tax_class",
    "stock_quantity",
    "images",
    "attributes",
    "meta_data",
    "date_created_gmt",
];

const SAMPLE_LINES: usize = 200;
const CHUNK: usize = 500;

/// Mark holding when the last full sync started (Unix ms).
const LAST_FULL_SYNC: &str = "last_full_sync_started_ms";

/// A run whose products stopped getting written (WooCommerce refuses, is down) completes with
/// what is left after this long without progress; the live path goes on retrying them.
const STALL: Duration = Duration::from_secs(60);

/// A full sync to do: the scan marker that asked for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Run {
    /// The `CatalogScanned` event, encoded (hex).
    pub scan: String,
    pub recorded_ms: i64,
    /// Attempts that failed before (reading WooCommerce failed).
    #[serde(default)]
    pub failures: u32,
}

impl Run {
    fn event(&self) -> Option<v1::CatalogScanned> {
        let bytes = hex::decode(&self.scan).ok()?;
        v1::CatalogScanned::decode(bytes.as_slice()).ok()
    }
}

/// Records a full sync to run, in the commit that acks its marker. A marker older than the
/// last full sync this publisher started is a replay (a rebuilt state reads the streams from
/// the start): one full sync over today's WooCommerce covers it.
pub(crate) fn record_run(st: &mut Staged<'_>, scan: &v1::CatalogScanned) -> anyhow::Result<()> {
    let key = (st.store_id.to_owned(), LAST_FULL_SYNC.to_owned());
    let observed = scan.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
    let last = st.t.marks.get(&key)?.unwrap_or(0);
    if observed > 0 && observed < last {
        tracing::info!(store = %st.store_id, run_id = %scan.run_id, "skipping a full-sync marker older than the last full sync (a replay)");
        return Ok(());
    }
    let now = duellsync_events::now_ms();
    let run_key = (st.store_id.to_owned(), format!("{now:020}-{}", scan.run_id));
    st.t.runs.put(
        &mut st.commit,
        &run_key,
        &Run {
            scan: hex::encode(scan.encode_to_vec()),
            recorded_ms: now,
            failures: 0,
        },
    );
    Ok(())
}

/// Runs the recorded full syncs of one store, oldest first, until `stop`.
pub(crate) async fn reconciler(ctx: StoreCtx, stop: CancellationToken) {
    loop {
        let next = ctx
            .t
            .runs
            .iter_group(&ctx.id)
            .next()
            .transpose()
            .unwrap_or_else(|e| {
                tracing::error!(store = %ctx.id, error = %e, "cannot read the recorded full syncs");
                None
            });
        let Some((key, run)) = next else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ctx.live.runs.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        };
        let Some(scan) = run.event() else {
            tracing::error!(store = %ctx.id, run = %key.1, "a recorded full sync cannot be read; dropped");
            let mut c = duellsync_store::Commit::new();
            ctx.t.runs.remove(&mut c, &key);
            let _ = ctx.t.store.commit(c).await;
            continue;
        };
        let started = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => {
                ctx.live.watch_writes(false);
                // Recorded: the next start runs it again.
                return;
            }
            r = run_once(&ctx, &scan) => r,
        };
        ctx.live.watch_writes(false);
        ctx.live.force(&[]);
        let done = match result {
            Ok(completed) => Ok(completed),
            Err(e) if run.failures < 2 => {
                let wait = Duration::from_secs(5 * 6u64.pow(run.failures));
                tracing::warn!(store = %ctx.id, run_id = %scan.run_id, error = %format!("{e:#}"), retry_in = ?wait, "full sync failed; trying again");
                let again = Run {
                    failures: run.failures + 1,
                    ..run.clone()
                };
                let _ = ctx.t.runs.put_now(&ctx.t.store, &key, &again).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            Err(e) => Err(e),
        };
        let completed = match done {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(store = %ctx.id, run_id = %scan.run_id, error = %format!("{e:#}"), "full sync failed");
                v1::FullSyncCompleted {
                    meta: Some(run_meta(&ctx, &scan, "fullsync-completed", 0)),
                    run_id: scan.run_id.clone(),
                    dry_run: scan.dry_run,
                    plan: None,
                    batch_writes: 0,
                    error: format!("{e:#}"),
                }
            }
        };
        // The report and the end of the run are one commit: reported exactly once, even
        // across a crash.
        let mut st = Staged::new(&ctx.t, &ctx.id);
        crate::outbox::stage_event(&ctx.t, &mut st.commit, &ctx.id, &completed);
        ctx.t.runs.remove(&mut st.commit, &key);
        if let Err(e) = st.commit().await {
            tracing::error!(store = %ctx.id, error = %format!("{e:#}"), "cannot record the end of a full sync; it runs again");
            continue;
        }
        ctx.outbox_wake.notify_one();
        let plan = completed.plan.clone().unwrap_or_default();
        tracing::info!(store = %ctx.id, run_id = %scan.run_id, dry_run = scan.dry_run, creates = plan.creates, withdrawals = plan.withdrawals, unchanged = plan.unchanged, failures = plan.failures, duplicates = plan.duplicates, batch_writes = completed.batch_writes, secs = started.elapsed().as_secs_f64(), "full sync done");
    }
}

fn run_meta(ctx: &StoreCtx, scan: &v1::CatalogScanned, kind: &str, n: i64) -> Meta {
    let id = EventId::new(kind, &ctx.id)
        .str(&scan.run_id)
        .int(n)
        .finish();
    match &scan.meta {
        Some(cause) => caused_meta(cause, id, SERVICE),
        None => meta(&ctx.id, id, SERVICE, format!("fullsync:{}", scan.run_id)),
    }
}

async fn progress(ctx: &StoreCtx, scan: &v1::CatalogScanned, phase: &str, done: i64, total: i64) {
    let ev = v1::FullSyncProgress {
        meta: Some(run_meta(
            ctx,
            scan,
            &format!("fullsync-progress-{phase}"),
            done,
        )),
        run_id: scan.run_id.clone(),
        phase: phase.to_owned(),
        done,
        total,
    };
    // Progress is informational: a lost one only makes a progress bar jump.
    if let Err(e) = ctx.bus.publish(&ev).await {
        tracing::debug!(error = %e, "progress not published");
    }
}

/// What reading WooCommerce found.
#[derive(Default)]
struct Read {
    /// Links a dry run would have changed (`None` = removed), instead of recording them.
    overlay: HashMap<i64, Option<Link>>,
    /// Lower-cased SKU → the DUELL id of the WooCommerce product holding it (`None` untagged).
    skus: HashMap<String, Option<i64>>,
    /// DUELL id → its WooCommerce products (ascending ids), when there is more than one.
    copies: HashMap<i64, Vec<u64>>,
}

async fn run_once(
    ctx: &StoreCtx,
    scan: &v1::CatalogScanned,
) -> anyhow::Result<v1::FullSyncCompleted> {
    let dry = scan.dry_run;
    tracing::info!(store = %ctx.id, run_id = %scan.run_id, dry_run = dry, "full sync: reading WooCommerce");
    if !dry {
        ctx.t
            .marks
            .put_now(
                &ctx.t.store,
                &(ctx.id.clone(), LAST_FULL_SYNC.to_owned()),
                &duellsync_events::now_ms(),
            )
            .await?;
        ctx.live.watch_writes(true);
    }
    let writes_before = ctx
        .live
        .batch_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    ctx.load_prices().await?;
    let read = read_woo(ctx, scan).await?;

    let holds = ctx.holds()?;
    let mut plan = v1::SyncPlan {
        replaces_attributes: ctx.settings.sync_attributes,
        ..v1::SyncPlan::default()
    };
    for (id, woo_ids) in &read.copies {
        plan.duplicates += 1;
        if plan.duplicate_lines.len() < SAMPLE_LINES {
            let sku = crate::synclog::sku_of(ctx.t.source.get(&mk(&ctx.id, *id))?.as_ref());
            let rest: Vec<String> = woo_ids[1..].iter().map(u64::to_string).collect();
            plan.duplicate_lines.push(format!(
                "SKU {sku} (DUELL {id}): WooCommerce {} (kept), {}",
                woo_ids[0],
                rest.join(", ")
            ));
        }
    }
    let mut fields_changed: Vec<Vec<&'static str>> = Vec::new();
    let mut drift: Vec<Vec<&'static str>> = Vec::new();
    let ids: Vec<(i64, Option<u64>)> = {
        let st = Staged::new(&ctx.t, &ctx.id);
        let mut v = Vec::new();
        for row in ctx.t.source.iter_group(&ctx.id) {
            let ((_, id), _) = row?;
            v.push((id, st.dirty_gen(id)?));
        }
        v
    };
    let total = ids.len() as i64;
    let mut done = 0i64;
    let mut marked: Vec<i64> = Vec::new();
    let mut creating: HashSet<String> = HashSet::new();
    let overlay = dry.then_some(&read.overlay);
    for chunk in ids.chunks(CHUNK) {
        let step = Instant::now();
        let items = plan_items(ctx, chunk, &holds, overlay)?;
        let mut st = Staged::new(&ctx.t, &ctx.id);
        for item in &items {
            let writes = describe(
                ctx,
                item,
                &read,
                &mut creating,
                &mut plan,
                &mut fields_changed,
            )?;
            if let Some(d) = drift_of(ctx, item.id, &holds, overlay)? {
                drift.push(d);
            }
            if writes {
                if item.gen.is_some() || item.unsettled {
                    // The live path writes it anyway (or is settling a write of it).
                    plan.pending += 1;
                }
                if !dry && !item.unsettled {
                    st.mark_dirty(item.id)?;
                    marked.push(item.id);
                }
            }
        }
        st.commit().await?;
        ctx.live.wake.notify_one();
        done += chunk.len() as i64;
        progress(ctx, scan, "plan", done, total).await;
        pace(ctx, step).await;
    }
    plan.updates_by_field = count_fields(fields_changed.iter().map(|v| v.as_slice()))
        .into_iter()
        .filter(|(k, _)| k != "create")
        .collect();
    plan.drift_left_alone = count_fields(drift.iter().map(|v| v.as_slice()))
        .into_iter()
        .collect();
    let mut error = String::new();
    if !dry {
        ctx.live.force(&marked);
        ctx.live.wake.notify_one();
        let waited = wait_written(ctx, scan, &marked).await;
        ctx.live.force(&[]);
        let (failed, left) = waited?;
        plan.failures += failed;
        if left > 0 {
            error = format!(
                "{left} products are not written yet (WooCommerce refused or did not answer for {} s); the publisher goes on trying",
                STALL.as_secs()
            );
        }
        crate::project::prune_holds(&ctx.t, &ctx.id)?;
    }
    let batch_writes = ctx
        .live
        .batch_writes
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(writes_before);
    Ok(v1::FullSyncCompleted {
        meta: Some(run_meta(ctx, scan, "fullsync-completed", 0)),
        run_id: scan.run_id.clone(),
        dry_run: dry,
        plan: Some(plan),
        batch_writes: if dry { 0 } else { batch_writes as i64 },
        error,
    })
}

/// Gives the live path room after a step of the reconciliation that started at `step`: the
/// reconciliation is a background job, and a stock change must not queue behind it for CPU, the
/// sled log or the shop (`publisher.reconcile_duty_percent`).
async fn pace(ctx: &StoreCtx, step: Instant) {
    let pause = ctx.cfg.reconcile_pause(step.elapsed());
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
}

/// Waits until the live writer wrote (or failed) every product this run marked. Returns the
/// products that failed for good and those still not written when progress stalled.
async fn wait_written(
    ctx: &StoreCtx,
    scan: &v1::CatalogScanned,
    marked: &[i64],
) -> anyhow::Result<(i64, i64)> {
    let total = marked.len() as i64;
    let mut left: Vec<i64> = marked.to_vec();
    let mut last_progress = Instant::now();
    let mut failed = 0i64;
    loop {
        let before = left.len();
        let mut still = Vec::with_capacity(left.len());
        for id in left {
            let key = mk(&ctx.id, id);
            if ctx.t.parked.contains(&key)? {
                failed += 1;
            } else if ctx.t.dirty.contains(&key)? || ctx.t.pending.contains(&key)? {
                still.push(id);
            }
        }
        left = still;
        if left.len() != before {
            last_progress = Instant::now();
            progress(ctx, scan, "write", total - left.len() as i64, total).await;
        }
        if left.is_empty() {
            return Ok((failed, 0));
        }
        if last_progress.elapsed() > STALL {
            return Ok((failed, left.len() as i64));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts one product into the plan; returns whether it needs a write.
fn describe(
    ctx: &StoreCtx,
    item: &Item,
    read: &Read,
    creating: &mut HashSet<String>,
    plan: &mut v1::SyncPlan,
    fields: &mut Vec<Vec<&'static str>>,
) -> anyhow::Result<bool> {
    let product = ctx
        .t
        .source
        .get(&mk(&ctx.id, item.id))?
        .and_then(|s| s.product);
    let sku = product
        .as_ref()
        .map(|p| format!("SKU {} '{}'", p.product_number, p.name))
        .unwrap_or_else(|| format!("product {}", item.id));
    let mut sample = |l: String| {
        if plan.sample.len() < SAMPLE_LINES {
            plan.sample.push(l);
        }
    };
    if let Some(p) = &item.parked {
        // Failed for good before and not tried again until its cause changes: a failure, not
        // a create (issue 12 §6: it was counted as both).
        plan.failures += 1;
        sample(format!("failed {sku}: {} ({})", p.code, p.message));
        return Ok(false);
    }
    let writes = match &item.plan {
        Planned::Nothing => {
            plan.unchanged += 1;
            false
        }
        Planned::Wait => {
            sample(format!(
                "wait   {sku}: its parent is not in WooCommerce yet"
            ));
            true
        }
        Planned::Create { write, .. } => {
            let number = write.sku.clone().unwrap_or_default().trim().to_lowercase();
            let clash = read
                .skus
                .get(&number)
                .is_some_and(|owner| owner.is_some_and(|o| o != item.id));
            if !number.is_empty() && (clash || !creating.insert(number)) {
                plan.failures += 1;
                sample(format!(
                    "fail   {sku}: another product has this SKU (duplicate_sku)"
                ));
            } else {
                plan.creates += 1;
                sample(format!("create {sku}"));
            }
            true
        }
        Planned::Update {
            hides, fields: f, ..
        } => {
            if *hides == Some(true) {
                plan.withdrawals += 1;
            }
            fields.push(f.clone());
            sample(format!("update {sku}: {}", f.join(", ")));
            true
        }
        Planned::Trash { .. } => {
            plan.withdrawals += 1;
            sample(format!("trash  {sku}"));
            true
        }
    };
    Ok(writes)
}

fn drift_of(
    ctx: &StoreCtx,
    id: i64,
    holds: &[Hold],
    overlay: Option<&HashMap<i64, Option<Link>>>,
) -> anyhow::Result<Option<Vec<&'static str>>> {
    let st = Staged::new(&ctx.t, &ctx.id);
    let Some(src) = st.source(id)? else {
        return Ok(None);
    };
    let link = match overlay.and_then(|o| o.get(&id)) {
        Some(l) => l.clone(),
        None => st.link(id)?,
    };
    let Some(link) = link else {
        return Ok(None);
    };
    let Some(p) = src.product.as_ref() else {
        return Ok(None);
    };
    if src.withdrawn || p.is_variant() || p.is_parent {
        return Ok(None);
    }
    let taxes = ctx.taxes();
    let input = PlanInput {
        id,
        source: &src,
        link: Some(&link),
        holds,
        parent: None,
        variant_options: Vec::new(),
        settings: &ctx.settings,
        prices: ctx.prices(),
        tax: &taxes,
        now_ms: duellsync_events::now_ms(),
    };
    let d = drift_left_alone(&input, &link.woo);
    Ok(if d.is_empty() { None } else { Some(d) })
}

/// Reads every WooCommerce product and variation and records (or, dry, only notes) what it
/// really holds: links are refreshed (or rebuilt from the DUELL id in meta data, or adopted by
/// SKU), links to products deleted in WooCommerce are dropped, and DUELL products with several
/// WooCommerce products are found (the oldest is kept).
async fn read_woo(ctx: &StoreCtx, scan: &v1::CatalogScanned) -> anyhow::Result<Read> {
    let mut read = Read::default();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut attached: HashMap<i64, u64> = HashMap::new();
    let mut variable: Vec<u64> = Vec::new();
    let mut page_no = 1u32;
    let mut done = 0i64;
    let read_started = duellsync_events::now_ms();
    loop {
        let page_started = duellsync_events::now_ms();
        let step = Instant::now();
        // Ordered by id: other orderings skip and repeat rows on real stores.
        let page = ctx
            .woo
            .list_products(&duellsync_woo::ProductQuery {
                orderby: Some(duellsync_woo::OrderBy::Id),
                order: Some(duellsync_woo::SortOrder::Asc),
                per_page: Some(100),
                page: Some(page_no),
                fields: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
                extra: edit_context(),
                ..duellsync_woo::ProductQuery::default()
            })
            .await?;
        let n = page.items.len();
        done += n as i64;
        let mut st = Staged::new(&ctx.t, &ctx.id);
        for p in &page.items {
            seen.insert(p.id);
            if p.kind == "variable" {
                variable.push(p.id);
            }
            attach(
                ctx,
                &mut st,
                &mut read,
                &mut attached,
                p,
                0,
                page_started,
                scan.dry_run,
            )?;
        }
        if !scan.dry_run {
            st.commit().await?;
        }
        progress(ctx, scan, "read-woo", done, page.total.unwrap_or(0) as i64).await;
        pace(ctx, step).await;
        let last = n < 100 || page.total_pages.is_some_and(|tp| u64::from(page_no) >= tp);
        if last {
            break;
        }
        page_no += 1;
    }
    for parent in variable {
        let mut page_no = 1;
        loop {
            let page_started = duellsync_events::now_ms();
            let step = Instant::now();
            let page = ctx
                .woo
                .list_variations(
                    parent,
                    &duellsync_woo::ProductQuery {
                        per_page: Some(100),
                        page: Some(page_no),
                        orderby: Some(duellsync_woo::OrderBy::Id),
                        order: Some(duellsync_woo::SortOrder::Asc),
                        extra: edit_context(),
                        ..duellsync_woo::ProductQuery::default()
                    },
                )
                .await?;
            let n = page.items.len();
            let mut st = Staged::new(&ctx.t, &ctx.id);
            for v in &page.items {
                seen.insert(v.id);
                attach(
                    ctx,
                    &mut st,
                    &mut read,
                    &mut attached,
                    v,
                    parent,
                    page_started,
                    scan.dry_run,
                )?;
            }
            if !scan.dry_run {
                st.commit().await?;
            }
            pace(ctx, step).await;
            if n < 100 {
                break;
            }
            page_no += 1;
        }
    }
    // Links whose product is gone from WooCommerce (deleted by a person) are forgotten; a
    // product we moved to the trash is not listed, but it is still there. A link the writer
    // recorded after the read began is newer than every page: its product may have been made
    // after its page was read.
    //
    // One link at a time: all of a large catalogue's links at once were tens of MB, a peak
    // that stayed with the process as scattered free memory after the run.
    let mut gone = Vec::new();
    for row in ctx.t.link.iter_group(&ctx.id) {
        let ((_, id), link) = row?;
        if !seen.contains(&link.woo.woo_id)
            && link.woo.status != "trash"
            && !busy(ctx, id, read_started)?
        {
            gone.push(id);
        }
    }
    let mut st = Staged::new(&ctx.t, &ctx.id);
    for id in gone {
        if scan.dry_run {
            read.overlay.insert(id, None);
        } else {
            st.remove_link(id)?;
            st.mark_dirty(id)?;
        }
    }
    if !scan.dry_run {
        st.commit().await?;
    }
    Ok(read)
}

/// Whether the writer knows better than a read that began at `read_started_ms`: a write of
/// the product is in flight or unsettled, or its result was recorded after the read began.
fn busy(ctx: &StoreCtx, id: i64, read_started_ms: i64) -> anyhow::Result<bool> {
    Ok(ctx.t.pending.contains(&mk(&ctx.id, id))?
        || ctx.live.is_in_flight(id)
        || (read_started_ms > 0 && ctx.live.written_since(id, read_started_ms)))
}

/// Records one WooCommerce product against the DUELL product it belongs to, if any.
#[allow(clippy::too_many_arguments)]
fn attach(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    read: &mut Read,
    attached: &mut HashMap<i64, u64>,
    p: &duellsync_woo::Product,
    parent: u64,
    read_started_ms: i64,
    dry: bool,
) -> anyhow::Result<()> {
    let by_meta = WooState::duell_id_of(p);
    if !p.sku.is_empty() {
        let owner = read
            .skus
            .entry(p.sku.trim().to_lowercase())
            .or_insert(by_meta);
        if owner.is_none() {
            *owner = by_meta;
        }
    }
    let mut state = WooState::from_product(p);
    if parent > 0 {
        state.parent_id = parent;
    }
    let by_rev = ctx.t.rev.get(&mk(st.store_id, p.id as i64))?;
    let id = match (by_meta, by_rev) {
        (Some(m), _) => Some(m),
        (None, Some(r)) => Some(r),
        (None, None) => {
            // Adopt an unclaimed product whose SKU belongs to exactly one unlinked DUELL product.
            let ids = ids_for_sku(&ctx.t, &ctx.id, &p.sku)?;
            match ids.as_slice() {
                [one] if !p.sku.is_empty() && st.link(*one)?.is_none() => Some(*one),
                _ => None,
            }
        }
    };
    let Some(id) = id else {
        return Ok(());
    };
    if st.source(id)?.is_none() {
        // WooCommerce knows a DUELL id we have no facts for (yet): leave it alone.
        return Ok(());
    }
    if let Some(first) = attached.get(&id) {
        // A second WooCommerce product of one DUELL product (a create repeated, a copy made
        // by hand): the oldest (read first, ids ascending) stays the one written to.
        let copies = read.copies.entry(id).or_insert_with(|| vec![*first]);
        copies.push(p.id);
        return Ok(());
    }
    attached.insert(id, p.id);
    if busy(ctx, id, read_started_ms)? {
        return Ok(());
    }
    let old = st.link(id)?;
    // WooCommerce's stock went down since the publisher last knew it: most likely a web order
    // whose webhook has not arrived yet, so it is not raised back until a new DUELL fact says
    // what to write (a person's edit is corrected by the next reconciliation, when the number no
    // longer moves). Lowering is always written at once.
    let keep_lower_stock = matches!(
        (old.as_ref().and_then(|l| l.woo.stock), state.stock),
        (Some(before), Some(now)) if now < before
    );
    let hidden_by_us = old.as_ref().map(|l| l.hidden_by_us).unwrap_or(false);
    let link = Link {
        woo: state,
        hidden_by_us,
        keep_lower_stock,
    };
    if old.as_ref() == Some(&link) {
        return Ok(());
    }
    if dry {
        read.overlay.insert(id, Some(link));
    } else {
        st.set_link(id, link)?;
    }
    Ok(())
}
