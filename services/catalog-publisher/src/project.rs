//! Applying facts to one store's projection: DUELL products, stock readings and withdrawals,
//! and the stock holds of web orders (from the intake stream, so a hold exists even while the
//! importer is down, and from the importer's `StockHoldChanged`). Nothing here writes to
//! WooCommerce: touched products are marked dirty for the writer.

use std::collections::BTreeMap;
use std::time::Duration;

use duellsync_bus::{Delivery, HandleError};
use duellsync_catalog::holds::{advance, Phase};
use duellsync_catalog::{ProductData, Source};
use duellsync_events::{v1, Event};
use duellsync_orders::SkipReason;
use duellsync_settings::{StockSource, StoreSettings};
use duellsync_woo::Order;
use rust_decimal::Decimal;

use crate::ctx::StoreCtx;
use crate::state::{ids_for_sku, mk, Staged, Tables};
use crate::synclog::{DUPLICATE_SKU, PARENT_FAILED};

fn stock_value(settings: &StoreSettings, ev: &v1::StockObserved) -> Option<Decimal> {
    let text = match settings.stock.source {
        StockSource::Stock => &ev.stock,
        StockSource::ActualStock if !ev.actual_stock.is_empty() => &ev.actual_stock,
        StockSource::ActualStock => &ev.stock,
    };
    text.trim().parse().ok()
}

/// Applies one delivery to the staged projection.
pub(crate) fn apply_one(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    d: &Delivery,
) -> Result<(), HandleError> {
    let r = |e: anyhow::Error| HandleError::retry(format!("{e:#}"));
    if d.is::<v1::ProductObserved>() {
        let ev: v1::ProductObserved = d.decode()?;
        let observed = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let Some(p) = ev.product.as_ref() else {
            return Err(HandleError::permanent("ProductObserved without a product"));
        };
        let data = ProductData::from_event(p, &ctx.tz);
        let id = data.product_id;
        let mut src = st.source(id).map_err(r)?.unwrap_or_default();
        if observed < src.product_observed_ms && !d.is_replay() {
            return Ok(());
        }
        if let Some(old) = &src.product {
            if old.product_number != data.product_number {
                st.remove_sku(&old.product_number, id).map_err(r)?;
                // The old number is free: products that clashed with it are tried again.
                for other in ids_for_sku(st.t, st.store_id, &old.product_number).map_err(r)? {
                    if other != id
                        && st.parked(other).map_err(r)?.map(|p| p.code)
                            == Some(DUPLICATE_SKU.to_owned())
                    {
                        st.unpark(other).map_err(r)?;
                    }
                }
            }
        }
        // New facts (or a replay of its dead letter) may have fixed what made it fail; its
        // variants that waited for it are tried again with it.
        if st.unpark(id).map_err(r)?.is_some() {
            tracing::info!(store = %ctx.id, product_id = id, "a failed product has new facts; trying it again");
        }
        for child in st.children(id).map_err(r)? {
            if st.parked(child).map_err(r)?.map(|p| p.code) == Some(PARENT_FAILED.to_owned()) {
                st.unpark(child).map_err(r)?;
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
        st.stock_fact(ev.product_id).map_err(r)?;
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
        set_hold(
            st,
            ctx.settings.stock.subtract_undrawn_customer_orders,
            ev.woo_order_id,
            ev.phase,
            lines,
            ev.effective_at_ms,
        )
        .map_err(r)?;
    } else if d.is::<v1::OrderObserved>() {
        order_observed(ctx, st, d).map_err(r)?;
    } else {
        return Err(HandleError::permanent(format!(
            "unexpected subject {}",
            d.subject
        )));
    }
    Ok(())
}

/// Moves an order's hold to `phase` (phases only move forward, see
/// [`duellsync_catalog::holds::advance`]) and marks its products dirty. When the new phase
/// counts only for stock read before DUELL applied it and the last reading is older, a fresh
/// reading is asked for (DUELL does not publish an unchanged number by itself): until it
/// arrives the hold keeps counting.
pub(crate) fn set_hold(
    st: &mut Staged<'_>,
    subtract_undrawn: bool,
    order: i64,
    phase: i32,
    lines: Vec<(i64, Decimal)>,
    effective_at_ms: i64,
) -> anyhow::Result<()> {
    if st.t.released.contains(&(st.store_id.to_owned(), order))? {
        // Released and pruned: whatever comes now is late news.
        return Ok(());
    }
    let Some(phase) = Phase::from_i32(phase) else {
        return Ok(());
    };
    let old = st.hold(order)?;
    let Some(hold) = advance(old.as_ref(), phase, lines, effective_at_ms) else {
        return Ok(());
    };
    let mut touched: Vec<i64> = hold.lines.iter().map(|(p, _)| *p).collect();
    if let Some(old) = &old {
        touched.extend(old.lines.iter().map(|(p, _)| *p));
    }
    touched.sort_unstable();
    touched.dedup();
    for (p, _) in &hold.lines {
        let observed = st.source(*p)?.map(|s| s.stock_observed_ms).unwrap_or(0);
        if hold.needs_fresh_reading(observed, subtract_undrawn) {
            st.refresh.push((order, phase as i32, *p));
        }
    }
    st.set_hold(order, hold);
    for p in touched {
        st.stock_fact(p)?;
        st.mark_dirty(p)?;
    }
    Ok(())
}

/// Asks the poller for a fresh stock reading of a product (a change notice: the poller reads
/// DUELL and publishes what it finds, even an unchanged number).
/// Staged in the outbox with the hold that needs it: a lost request would leave the hold
/// counting until the next stock change.
pub(crate) fn stage_stock_refresh(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    order: i64,
    phase: i32,
    product: i64,
) -> anyhow::Result<()> {
    let number = st
        .source(product)?
        .and_then(|s| s.product)
        .map(|p| p.product_number)
        .unwrap_or_default();
    let id = duellsync_events::EventId::new("release-refresh", &ctx.id)
        .int(order)
        .int(product)
        .int(i64::from(phase))
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
    crate::outbox::stage_event(&ctx.t, &mut st.commit, &ctx.id, &ev);
    Ok(())
}

/// Removes released holds that every later stock observation already reflects.
pub(crate) fn prune_holds(t: &Tables, store: &str) -> anyhow::Result<()> {
    let mut st = Staged::new(t, store);
    let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
    let mut prune = Vec::new();
    for row in t.holds.iter_group(store) {
        let ((_, order), h) = row?;
        if h.phase != Phase::Released {
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

fn order_observed(ctx: &StoreCtx, st: &mut Staged<'_>, d: &Delivery) -> anyhow::Result<()> {
    let subtract_undrawn = ctx.settings.stock.subtract_undrawn_customer_orders;
    let ev: v1::OrderObserved = d.decode().map_err(|e| anyhow::anyhow!("{e}"))?;
    // An order we cannot read is the importer's to park; it holds nothing here.
    let Ok(order) = serde_json::from_slice::<Order>(&ev.payload_json) else {
        return Ok(());
    };
    let id = order.id as i64;
    let existing = st.hold(id)?;
    if existing
        .as_ref()
        .map(|h| h.phase >= Phase::ImportedUndrawn)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let will_import = match duellsync_orders::eligibility(&order, &ctx.settings) {
        Ok(()) => true,
        // The status filter decides *when* the order is imported (an on-hold order is imported
        // once paid), not whether its units are gone from WooCommerce's stock meanwhile.
        Err(SkipReason::Status { .. }) => true,
        Err(_) => false,
    };
    if will_import && duellsync_orders::takes_woo_stock(&order.status) {
        let lines = resolve_lines(ctx, st, &order)?;
        if let Some(h) = &existing {
            if h.lines == lines {
                return Ok(());
            }
        }
        set_hold(st, subtract_undrawn, id, Phase::Received as i32, lines, 0)?;
    } else if existing
        .map(|h| h.phase == Phase::Received)
        .unwrap_or(false)
    {
        // Cancelled (or never paid) before DUELL saw it: WooCommerce restored its own stock and
        // DUELL never counted it, so the release applies to every stock reading.
        set_hold(
            st,
            subtract_undrawn,
            id,
            Phase::Released as i32,
            Vec::new(),
            0,
        )?;
    }
    Ok(())
}

/// Order lines as (DUELL product id, units): by the WooCommerce id we linked, else by SKU.
fn resolve_lines(
    ctx: &StoreCtx,
    st: &Staged<'_>,
    order: &Order,
) -> anyhow::Result<Vec<(i64, Decimal)>> {
    let mut out: Vec<(i64, Decimal)> = Vec::new();
    for line in &order.line_items {
        if line.quantity <= 0 {
            continue;
        }
        let woo_id = if line.variation_id > 0 {
            line.variation_id
        } else {
            line.product_id
        };
        let mut pid = if woo_id > 0 {
            ctx.t.rev.get(&mk(st.store_id, woo_id as i64))?
        } else {
            None
        };
        if pid.is_none() {
            if let Some(sku) = line.sku.as_deref().filter(|s| !s.trim().is_empty()) {
                pid = ids_for_sku(&ctx.t, &ctx.id, sku)?.first().copied();
            }
        }
        if let Some(pid) = pid {
            let q = Decimal::from(line.quantity);
            match out.iter_mut().find(|(p, _)| *p == pid) {
                Some((_, n)) => *n += q,
                None => out.push((pid, q)),
            }
        }
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
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
        set_hold(&mut st, true, 100, 1, lines.clone(), 0).unwrap();
        st.commit().await.unwrap();
        let mut st = Staged::new(&t, "s1");
        set_hold(&mut st, true, 100, 2, lines.clone(), 0).unwrap();
        set_hold(&mut st, true, 100, 3, lines.clone(), 1_000).unwrap();
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
        set_hold(&mut st, true, 100, 1, lines, 0).unwrap();
        st.commit().await.unwrap();
        assert!(
            t.holds.get(&("s1".into(), 100)).unwrap().is_none(),
            "the order holds nothing again"
        );
    }
}
