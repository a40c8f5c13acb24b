//! Reads of WooCommerce the publisher makes besides its full-sync listing: products by SKU
//! (before a create, and to settle one), recently changed products (to find our creates by the
//! DUELL id in their meta data), single products by id.

use std::collections::HashMap;

use duellsync_catalog::WooState;
use duellsync_woo::{Product, ProductQuery};
use futures::StreamExt;

use crate::ctx::StoreCtx;

/// Reads compare against what writes return: stored values (`edit`), not the rendered `view`
/// (which wraps descriptions in HTML and would look like drift).
pub(crate) fn edit_context() -> Vec<(String, String)> {
    vec![("context".to_owned(), "edit".to_owned())]
}

/// WooCommerce products by lower-cased SKU (variations included), oldest first, in lists of up
/// to 50 SKUs. A SKU may have several products: WooCommerce's uniqueness check is not atomic
/// against concurrent creates.
pub(crate) async fn find_by_skus(
    ctx: &StoreCtx,
    skus: &[String],
) -> anyhow::Result<HashMap<String, Vec<Product>>> {
    let mut out: HashMap<String, Vec<Product>> = HashMap::new();
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
                out.entry(p.sku.trim().to_lowercase()).or_default().push(p);
            }
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|p| p.id);
        list.dedup_by_key(|p| p.id);
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

/// Products (or a variable product's variations, with `parent`) changed since `since_ms`, by
/// the DUELL id in their meta data, oldest first: finds our creates even when their SKU was
/// changed or refused.
pub(crate) async fn changed_since_by_duell_id(
    ctx: &StoreCtx,
    since_ms: i64,
    parent: Option<u64>,
) -> anyhow::Result<HashMap<i64, Vec<Product>>> {
    let since = time::OffsetDateTime::from_unix_timestamp(since_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut out: HashMap<i64, Vec<Product>> = HashMap::new();
    let mut page = 1;
    loop {
        let q = ProductQuery {
            modified_after: Some(since),
            orderby: Some(duellsync_woo::OrderBy::Id),
            order: Some(duellsync_woo::SortOrder::Asc),
            per_page: Some(100),
            page: Some(page),
            status: Some("any".into()),
            extra: edit_context(),
            ..ProductQuery::default()
        };
        let res = match parent {
            Some(p) => ctx.woo.list_variations(p, &q).await?,
            None => ctx.woo.list_products(&q).await?,
        };
        let n = res.items.len();
        for p in res.items {
            if let Some(id) = WooState::duell_id_of(&p) {
                out.entry(id).or_default().push(p);
            }
        }
        if n < 100 {
            break;
        }
        page += 1;
    }
    for list in out.values_mut() {
        list.sort_by_key(|p| p.id);
        list.dedup_by_key(|p| p.id);
    }
    Ok(out)
}

/// One product or variation by id, stored values; `None` when it is gone.
pub(crate) async fn get_product_edit(ctx: &StoreCtx, id: u64) -> Option<Product> {
    let req = duellsync_woo::WooRequest::new(
        duellsync_woo::Method::GET,
        format!("products/{id}"),
        duellsync_woo::Idempotency::Idempotent,
    )
    .query("context", "edit");
    let resp = ctx.woo.send(req).await.ok()?;
    resp.decode::<Product>("GET products/{id}").ok()
}
