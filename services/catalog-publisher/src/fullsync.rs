//! Full sync and reconciliation (SPEC §3.4): after the poller's full DUELL scan (the
//! `catalog.scanned` marker), read every WooCommerce product (100 per page, ordered by id, only
//! the fields compared), refresh what the publisher knows WooCommerce holds, and correct drift in
//! the fields DUELL owns. A dry run computes the same plan and writes nothing.

use std::collections::HashSet;

use duellsync_catalog::{count_fields, drift_left_alone, PlanInput, Planned, WooState};
use duellsync_events::{caused_meta, meta, v1, EventId, Meta};

use crate::ctx::StoreCtx;
use crate::state::{mk, Link, Staged};
use crate::worker::Worker;
use crate::write::{edit_context, execute, plan_items, Item};
use crate::SERVICE;

const FIELDS: [&str; 16] = [
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
    "stock_quantity",
    "images",
    "attributes",
    "meta_data",
];

const SAMPLE_LINES: usize = 200;
const CHUNK: usize = 500;

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
    if let Err(e) = ctx.bus.publish(&ev).await {
        tracing::debug!(error = %e, "progress not published");
    }
}

pub(crate) async fn report_failure(ctx: &StoreCtx, scan: &v1::CatalogScanned, error: &str) {
    let ev = v1::FullSyncCompleted {
        meta: Some(run_meta(ctx, scan, "fullsync-completed", 0)),
        run_id: scan.run_id.clone(),
        dry_run: scan.dry_run,
        plan: None,
        batch_writes: 0,
        error: error.to_owned(),
    };
    let _ = ctx.bus.publish(&ev).await;
}

pub(crate) async fn run(w: &mut Worker, scan: &v1::CatalogScanned) -> anyhow::Result<()> {
    let ctx = w.ctx.clone();
    tracing::info!(store = %ctx.id, run_id = %scan.run_id, dry_run = scan.dry_run, "full sync: reading WooCommerce");
    ctx.load_prices().await?;
    refresh_from_woo(&ctx, scan).await?;

    let holds = ctx.holds()?;
    let mut plan = v1::SyncPlan {
        replaces_attributes: ctx.settings.sync_attributes,
        ..v1::SyncPlan::default()
    };
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
    let mut batch_writes = 0i64;
    let mut failures = 0i64;
    // Parents before variants: a variation needs its parent's WooCommerce id.
    let (parents, rest): (Vec<_>, Vec<_>) = {
        let st = Staged::new(&ctx.t, &ctx.id);
        ids.into_iter().partition(|(id, _)| {
            st.source(*id)
                .ok()
                .flatten()
                .and_then(|s| s.product)
                .map(|p| !p.is_variant())
                .unwrap_or(true)
        })
    };
    for group in [parents, rest] {
        for chunk in group.chunks(CHUNK) {
            let items = plan_items(&ctx, chunk, &holds)?;
            for item in &items {
                describe(&ctx, item, &mut plan, &mut fields_changed);
                if let Some(d) = drift_of(&ctx, item.id, &holds)? {
                    drift.push(d);
                }
            }
            if !scan.dry_run {
                let out = execute(&ctx, items, &mut |_, _| {}).await?;
                batch_writes += out.batch_writes as i64;
                failures += out.failures as i64;
            }
            done += chunk.len() as i64;
            progress(&ctx, scan, "write", done, total).await;
        }
    }
    plan.updates_by_field = count_fields(fields_changed.iter().map(|v| v.as_slice()))
        .into_iter()
        .filter(|(k, _)| k != "create")
        .collect();
    plan.drift_left_alone = count_fields(drift.iter().map(|v| v.as_slice()))
        .into_iter()
        .collect();
    plan.failures = failures;
    if !scan.dry_run {
        // Writes of this run may have left variants waiting for their new parents.
        w.flush(true).await;
        crate::project::prune_holds(&ctx.t, &ctx.id)?;
    }
    let ev = v1::FullSyncCompleted {
        meta: Some(run_meta(&ctx, scan, "fullsync-completed", 0)),
        run_id: scan.run_id.clone(),
        dry_run: scan.dry_run,
        plan: Some(plan.clone()),
        batch_writes,
        error: String::new(),
    };
    ctx.bus.publish(&ev).await?;
    tracing::info!(store = %ctx.id, run_id = %scan.run_id, creates = plan.creates, withdrawals = plan.withdrawals, unchanged = plan.unchanged, batch_writes, "full sync done");
    Ok(())
}

fn describe(
    ctx: &StoreCtx,
    item: &Item,
    plan: &mut v1::SyncPlan,
    fields: &mut Vec<Vec<&'static str>>,
) {
    let sku = ctx
        .t
        .source
        .get(&(ctx.id.clone(), item.id))
        .ok()
        .flatten()
        .and_then(|s| s.product)
        .map(|p| format!("SKU {} '{}'", p.product_number, p.name))
        .unwrap_or_else(|| format!("product {}", item.id));
    let line = match &item.plan {
        Planned::Nothing => {
            plan.unchanged += 1;
            None
        }
        Planned::Wait => Some(format!(
            "wait   {sku}: its parent is not in WooCommerce yet"
        )),
        Planned::Create { .. } => {
            plan.creates += 1;
            Some(format!("create {sku}"))
        }
        Planned::Update {
            hides, fields: f, ..
        } => {
            if *hides == Some(true) {
                plan.withdrawals += 1;
            }
            fields.push(f.clone());
            Some(format!("update {sku}: {}", f.join(", ")))
        }
        Planned::Trash { .. } => {
            plan.withdrawals += 1;
            Some(format!("trash  {sku}"))
        }
    };
    if let Some(l) = line {
        if plan.sample.len() < SAMPLE_LINES {
            plan.sample.push(l);
        }
    }
}

fn drift_of(
    ctx: &StoreCtx,
    id: i64,
    holds: &[crate::state::Hold],
) -> anyhow::Result<Option<Vec<&'static str>>> {
    let st = Staged::new(&ctx.t, &ctx.id);
    let (Some(src), Some(link)) = (st.source(id)?, st.link(id)?) else {
        return Ok(None);
    };
    let Some(p) = src.product.as_ref() else {
        return Ok(None);
    };
    if src.withdrawn || p.is_variant() || p.is_parent {
        return Ok(None);
    }
    let input = PlanInput {
        id,
        source: &src,
        link: Some(&link),
        holds,
        parent: None,
        variant_options: Vec::new(),
        settings: &ctx.settings,
        prices: ctx.prices(),
        now_ms: duellsync_events::now_ms(),
    };
    let d = drift_left_alone(&input, &link.woo);
    Ok(if d.is_empty() { None } else { Some(d) })
}

/// Reads every WooCommerce product and variation and records what it really holds: links are
/// refreshed (or rebuilt from the DUELL id in meta data, or adopted by SKU), and links to
/// products deleted in WooCommerce are dropped.
async fn refresh_from_woo(ctx: &StoreCtx, scan: &v1::CatalogScanned) -> anyhow::Result<()> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut variable: Vec<u64> = Vec::new();
    let mut page_no = 1u32;
    let mut read = 0i64;
    loop {
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
        read += n as i64;
        let mut st = Staged::new(&ctx.t, &ctx.id);
        for p in &page.items {
            seen.insert(p.id);
            if p.kind == "variable" {
                variable.push(p.id);
            }
            attach(ctx, &mut st, p, 0)?;
        }
        st.commit().await?;
        progress(ctx, scan, "read-woo", read, page.total.unwrap_or(0) as i64).await;
        let last = n < 100 || page.total_pages.is_some_and(|tp| u64::from(page_no) >= tp);
        if last {
            break;
        }
        page_no += 1;
    }
    for parent in variable {
        let mut page_no = 1;
        loop {
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
                attach(ctx, &mut st, v, parent)?;
            }
            st.commit().await?;
            if n < 100 {
                break;
            }
            page_no += 1;
        }
    }
    // Links whose product is gone from WooCommerce (deleted by a person) are forgotten; a
    // product we moved to the trash is not listed, but it is still there.
    let mut st = Staged::new(&ctx.t, &ctx.id);
    let links: Vec<(i64, Link)> = ctx
        .t
        .link
        .iter_group(&ctx.id)
        .map(|r| r.map(|((_, id), l)| (id, l)))
        .collect::<Result<_, _>>()?;
    for (id, link) in links {
        if !seen.contains(&link.woo.woo_id) && link.woo.status != "trash" {
            st.remove_link(id)?;
            st.mark_dirty(id)?;
        }
    }
    st.commit().await?;
    Ok(())
}

/// Records one WooCommerce product against the DUELL product it belongs to, if any.
fn attach(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    p: &duellsync_woo::Product,
    parent: u64,
) -> anyhow::Result<()> {
    let mut state = WooState::from_product(p);
    if parent > 0 {
        state.parent_id = parent;
    }
    let by_meta = WooState::duell_id_of(p);
    let by_rev = ctx.t.rev.get(&mk(st.store_id, p.id as i64))?;
    let id = match (by_meta, by_rev) {
        (Some(m), _) => Some(m),
        (None, Some(r)) => Some(r),
        (None, None) => {
            // Adopt an unclaimed product whose SKU belongs to exactly one unlinked DUELL product.
            let ids = crate::state::ids_for_sku(&ctx.t, &ctx.id, &p.sku)?;
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
    let old = st.link(id)?;
    // WooCommerce's stock went down since the publisher last knew it: most likely a web order
    // whose webhook has not arrived yet, so it is not raised back until a new DUELL fact says
    // what to write (a person's edit is corrected by the next reconciliation, when the number no
    // longer moves). Lowering is always written at once.
    let keep_lower_stock = matches!(
        (old.as_ref().and_then(|l| l.woo.stock), state.stock),
        (Some(before), Some(now)) if now < before
    );
    let hidden_by_us = old.map(|l| l.hidden_by_us).unwrap_or(false);
    st.set_link(
        id,
        Link {
            woo: state,
            hidden_by_us,
            keep_lower_stock,
        },
    )?;
    Ok(())
}
