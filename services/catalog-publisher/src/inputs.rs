//! Gathering what the pure planner (`duellsync_catalog::plan`) needs for each product from the
//! publisher's state: DUELL's facts, the link to WooCommerce, the parent, the variants' options,
//! whether it is parked or has a write being settled.

use std::collections::HashMap;

use duellsync_catalog::{plan, variant_option, PlanInput, Planned, ProductData, Source};

use crate::ctx::StoreCtx;
use crate::state::{mk, Hold, Link, Parked, Staged};
use crate::synclog::sku_of;

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
    /// Its image is being downloaded for another product (or one whose answer is being
    /// settled): written without it now and planned again, to reuse that attachment.
    pub image_deferred: bool,
}

/// Plans every product in `ids` against the state the publisher knows, with the holds as
/// they are now.
///
/// `overlay` replaces links with what a dry run read from WooCommerce without recording it.
pub(crate) fn plan_items(
    ctx: &StoreCtx,
    ids: &[(i64, Option<u64>)],
    holds: &[Hold],
    overlay: Option<&HashMap<i64, Option<Link>>>,
) -> anyhow::Result<Vec<Item>> {
    let link_of = |st: &Staged<'_>, id: i64| -> anyhow::Result<Option<Link>> {
        match overlay.and_then(|o| o.get(&id)) {
            Some(l) => Ok(l.clone()),
            None => st.link(id),
        }
    };
    let st = Staged::new(&ctx.t, &ctx.id);
    let now_ms = duellsync_events::now_ms();
    let prices = ctx.prices();
    let taxes = ctx.taxes();
    let mut out = Vec::with_capacity(ids.len());
    for (id, gen) in ids {
        let parked = ctx.t.parked.get(&mk(&ctx.id, *id))?;
        let unsettled = ctx.t.pending.contains(&mk(&ctx.id, *id))?;
        let mut parent_parked = None;
        let planned = match st.source(*id)? {
            None => Planned::Nothing,
            Some(source) => {
                let link = link_of(&st, *id)?;
                let parent_id = source
                    .product
                    .as_ref()
                    .filter(|p| p.is_variant())
                    .map(|p| p.parent_product_id);
                let (parent_source, parent_link) = match parent_id {
                    Some(pid) => (st.source(pid)?, link_of(&st, pid)?),
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
                    tax: &taxes,
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
            image_deferred: false,
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
