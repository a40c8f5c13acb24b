//! Settling writes whose result is unknown (a crash, a timeout, a 5xx) by reading WooCommerce —
//! never by writing again.
//!
//! A real store keeps executing a request after the client is gone (a batch create of 100
//! products takes ~20 s), so a read right after a lost answer can miss creates that are still
//! being made; creating those products again would make duplicates (WooCommerce's SKU check is
//! not atomic). A write that is not idempotent (a create, an image download) is therefore
//! settled only once `publisher.settle_after` has passed since it was sent — past the longest
//! request the client allows and what a store runs on after the client gave up — and then
//! looked up by SKU **and** by the DUELL id in the meta data of products changed since. Until it
//! is settled the product is not written again. Several products found for one DUELL product
//! are duplicates: the oldest is kept and written to, the others are reported (full syncs,
//! `syncctl repair duplicates`).

use std::collections::HashMap;

use duellsync_catalog::{Link, Source, WooState};
use duellsync_woo::{Product, ProductQuery};

use crate::ctx::StoreCtx;
use crate::state::{mk, Op, Pending, Staged};
use crate::woo_read::{changed_since_by_duell_id, edit_context, find_by_skus, get_product_edit};

/// When an intent may be settled: idempotent writes at once, the others after `settle_after`.
pub(crate) fn due_at_ms(ctx: &StoreCtx, p: &Pending) -> i64 {
    if p.op == Op::Create || p.downloads {
        p.at_ms
            .saturating_add(ctx.settle_after().as_millis() as i64)
    } else {
        p.at_ms
    }
}

/// Settles every intent that is due and not in flight in this process; returns when the next
/// one is due (Unix ms), if any is left.
pub(crate) async fn settle_due(ctx: &StoreCtx) -> anyhow::Result<Option<i64>> {
    let now = duellsync_events::now_ms();
    let in_flight = ctx.live.in_flight_ids();
    let mut due = Vec::new();
    let mut next: Option<i64> = None;
    for row in ctx.t.pending.iter_group(&ctx.id) {
        let ((_, id), p) = row?;
        if in_flight.contains(&id) {
            continue;
        }
        let at = due_at_ms(ctx, &p);
        if at <= now {
            due.push((id, p));
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    if !due.is_empty() {
        tracing::info!(store = %ctx.id, writes = due.len(), "settling writes whose result is unknown by reading WooCommerce");
        for chunk in due.chunks(500) {
            verify(ctx, chunk).await?;
        }
        ctx.live.wake.notify_one();
    }
    Ok(next)
}

/// Reads WooCommerce for products with an unsettled write and records what it really holds.
/// Creates are looked up by SKU and by our DUELL id in meta data, updates by id.
pub(crate) async fn verify(ctx: &StoreCtx, items: &[(i64, Pending)]) -> anyhow::Result<()> {
    let creates: Vec<&(i64, Pending)> = items.iter().filter(|(_, p)| p.op == Op::Create).collect();
    let others: Vec<&(i64, Pending)> = items.iter().filter(|(_, p)| p.op != Op::Create).collect();
    let mut st = Staged::new(&ctx.t, &ctx.id);
    if !creates.is_empty() {
        let found = find_creates(ctx, &creates).await?;
        for (id, p) in creates {
            let mine = found.get(id).cloned().unwrap_or_default();
            if let Some(oldest) = mine.first() {
                if mine.len() > 1 {
                    let copies: Vec<u64> = mine.iter().map(|p| p.id).collect();
                    tracing::warn!(store = %ctx.id, product_id = id, sku = %p.sku, woo_ids = ?copies, "WooCommerce has this product more than once; writing to the oldest (syncctl repair duplicates trashes the others)");
                    metrics::counter!("duellsync_publisher_duplicates_found_total", "store" => ctx.id.clone())
                        .increment(1);
                }
                let mut state = WooState::from_product(oldest);
                if p.parent_woo_id > 0 {
                    state.parent_id = p.parent_woo_id;
                }
                remember_image(ctx, &mut st, *id, &state)?;
                st.set_link(
                    *id,
                    Link {
                        woo: state,
                        ..Link::default()
                    },
                )?;
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
    // What was read here is newer than the pages of a full sync reading now (a create that
    // ran on after its client gave up may be missing from them).
    let settled: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    ctx.live.wrote(&settled, duellsync_events::now_ms());
    Ok(())
}

/// The WooCommerce products each interrupted create made, oldest first: by SKU (tagged with
/// this DUELL id, or untagged — a lost tag), and by the DUELL id among products changed since
/// shortly before the first of these writes.
async fn find_creates(
    ctx: &StoreCtx,
    creates: &[&(i64, Pending)],
) -> anyhow::Result<HashMap<i64, Vec<Product>>> {
    let skus: Vec<String> = creates
        .iter()
        .map(|(_, p)| p.sku.clone())
        .filter(|s| !s.is_empty())
        .collect();
    let by_sku = find_by_skus(ctx, &skus).await?;
    // WooCommerce's modified dates have second resolution, and clocks differ a little.
    let since = creates.iter().map(|(_, p)| p.at_ms).min().unwrap_or(0) - 120_000;
    let mut parents: Vec<Option<u64>> = creates
        .iter()
        .map(|(_, p)| (p.parent_woo_id > 0).then_some(p.parent_woo_id))
        .collect();
    parents.sort();
    parents.dedup();
    let mut by_meta: HashMap<i64, Vec<Product>> = HashMap::new();
    for parent in parents {
        for (id, list) in changed_since_by_duell_id(ctx, since, parent).await? {
            by_meta.entry(id).or_default().extend(list);
        }
    }
    let mut out: HashMap<i64, Vec<Product>> = HashMap::new();
    for (id, p) in creates {
        let mut mine: Vec<Product> = by_sku
            .get(&p.sku.trim().to_lowercase())
            .into_iter()
            .flatten()
            .filter(|w| WooState::duell_id_of(w).is_none_or(|x| x == *id))
            .cloned()
            .collect();
        mine.extend(by_meta.get(id).into_iter().flatten().cloned());
        mine.sort_by_key(|w| w.id);
        mine.dedup_by_key(|w| w.id);
        if !mine.is_empty() {
            out.insert(*id, mine);
        }
    }
    Ok(out)
}

/// If a product carries an image that came from its DUELL URL, that attachment is the upload
/// to reuse (a create whose answer was lost still uploaded it).
pub(crate) fn remember_image(
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
