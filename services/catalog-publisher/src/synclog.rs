//! The sync log the publisher writes (`sync.<store>.product.applied/failed`) and the dead
//! letters of products that failed for good, all staged in the outbox with the state change
//! they report.

use duellsync_catalog::{ProductData, Source};
use duellsync_events::{caused_meta, headers, meta, product_correlation, v1, EventId, Meta};

use crate::ctx::StoreCtx;
use crate::outbox;
use crate::state::{mk, Parked, Staged};
use crate::SERVICE;

/// Failure code of a product whose SKU another product already has in WooCommerce (DUELL
/// numbers are not unique).
pub(crate) const DUPLICATE_SKU: &str = "duplicate_sku";

/// The DUELL product number the sync log shows for a product.
pub(crate) fn sku_of(source: Option<&Source>) -> String {
    source
        .and_then(|s| s.product.as_ref())
        .map(|p| p.product_number.clone())
        .unwrap_or_default()
}

pub(crate) fn source_sku(st: &Staged<'_>, id: i64) -> anyhow::Result<String> {
    Ok(sku_of(st.source(id)?.as_ref()))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn applied_event(
    ctx: &StoreCtx,
    id: i64,
    sku: String,
    woo_id: u64,
    action: v1::product_applied::Action,
    fields: &[&'static str],
    gen: Option<u64>,
    cause: &str,
) -> v1::ProductApplied {
    let event_id = EventId::new("product-applied", &ctx.id)
        .int(id)
        .int(woo_id as i64)
        .int(action as i64)
        .int(gen.unwrap_or(0) as i64)
        .str(&fields.join(","))
        .str(cause)
        .finish();
    let m = cause_meta(ctx, id, event_id, cause);
    v1::ProductApplied {
        meta: Some(m),
        product_id: id,
        sku,
        woo_id: woo_id as i64,
        action: action as i32,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        caused_by: if cause.is_empty() {
            Vec::new()
        } else {
            vec![cause.to_owned()]
        },
    }
}

/// Stages sync-log entries of written products in the commit that records the writes.
pub(crate) fn stage_applied(ctx: &StoreCtx, st: &mut Staged<'_>, events: &[v1::ProductApplied]) {
    for ev in events {
        outbox::stage_event(&ctx.t, &mut st.commit, &ctx.id, ev);
    }
}

pub(crate) fn cause_meta(ctx: &StoreCtx, id: i64, event_id: String, cause: &str) -> Meta {
    if cause.is_empty() {
        meta(&ctx.id, event_id, SERVICE, product_correlation(&ctx.id, id))
    } else {
        let c = Meta {
            store: ctx.id.clone(),
            event_id: cause.to_owned(),
            correlation_id: product_correlation(&ctx.id, id),
            ..Meta::default()
        };
        caused_meta(&c, event_id, SERVICE)
    }
}

/// A product that could not be written for a reason retrying will not fix: parked (left
/// alone until its cause changes — new DUELL facts about it, the clashing product renamed — or
/// a replay), logged in the sync log and dead-lettered with the product's facts, so
/// `syncctl dlq replay` retries it once the cause is fixed (e.g. the duplicate SKU renamed). All
/// of it is staged in the commit that records the failure: the entries go out through the
/// outbox, never lost between WooCommerce's answer and the broker. Its variants are parked with
/// its reason when they come to be written.
pub(crate) fn record_failure(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    id: i64,
    gen: Option<u64>,
    code: &str,
    message: &str,
) -> anyhow::Result<()> {
    metrics::counter!("duellsync_publisher_products_failed_total", "store" => ctx.id.clone(), "code" => code.to_owned())
        .increment(1);
    let source = st.source(id)?;
    let sku = sku_of(source.as_ref());
    tracing::warn!(store = %ctx.id, product_id = id, sku = %sku, code, message, "product not written; parked until its cause changes");
    if let Some(g) = gen {
        st.clear_dirty(id, g);
    }
    st.t.parked.put(
        &mut st.commit,
        &mk(&ctx.id, id),
        &Parked {
            code: code.to_owned(),
            message: message.to_owned(),
            sku: sku.clone(),
            at_ms: duellsync_events::now_ms(),
        },
    );
    let cause = source
        .as_ref()
        .map(|s| s.last_event_id.clone())
        .unwrap_or_default();
    // The same failure of the same DUELL facts is one entry, however often it is recorded.
    let event_id = EventId::new("product-failed", &ctx.id)
        .int(id)
        .str(code)
        .str(&cause)
        .finish();
    let ev = v1::ProductFailed {
        meta: Some(cause_meta(ctx, id, event_id.clone(), &cause)),
        product_id: id,
        sku: sku.clone(),
        code: code.to_owned(),
        message: message.to_owned(),
        permanent: true,
    };
    outbox::stage_event(&ctx.t, &mut st.commit, &ctx.id, &ev);
    let Some(Source {
        product: Some(p), ..
    }) = source
    else {
        return Ok(());
    };
    if code == PARENT_FAILED {
        // Replaying the parent's dead letter retries its variants too.
        return Ok(());
    }
    let replay = v1::ProductObserved {
        meta: Some(cause_meta(ctx, id, format!("dlq-{event_id}"), &cause)),
        product: Some(to_event_product(&p)),
        content_hash: String::new(),
    };
    let reason = format!("{code}: {message}").replace(['\r', '\n'], " ");
    let headers = vec![
        (headers::EVENT_TYPE.to_owned(), "ProductObserved".to_owned()),
        (headers::DLQ_REASON.to_owned(), reason),
        (
            headers::DLQ_SUBJECT.to_owned(),
            v1::ProductObserved::subject(&ctx.id),
        ),
        (
            headers::DLQ_CONSUMER.to_owned(),
            format!("{SERVICE}-{}", ctx.id),
        ),
        (headers::DLQ_DELIVERIES.to_owned(), "1".to_owned()),
        (
            headers::DLQ_AT.to_owned(),
            duellsync_events::now_ms().to_string(),
        ),
    ];
    outbox::stage_raw(
        &ctx.t,
        &mut st.commit,
        &ctx.id,
        &duellsync_events::dlq_subject(&ctx.id, SERVICE),
        &format!("dlq-{event_id}"),
        headers,
        &prost::Message::encode_to_vec(&replay),
    );
    Ok(())
}

/// Failure code of a variant whose parent failed (it waits for the parent).
pub(crate) const PARENT_FAILED: &str = "parent_failed";

use duellsync_events::Event as _;

fn to_event_product(p: &ProductData) -> v1::DuellProduct {
    let time_text = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    v1::DuellProduct {
        product_id: p.product_id,
        product_number: p.product_number.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        price_inc_vat: p.price_inc_vat.map(|d| d.to_string()).unwrap_or_default(),
        vat_rate_percent: p.vat_rate_percent.to_string(),
        special_price: p.special_price.map(|d| d.to_string()).unwrap_or_default(),
        special_from: time_text(p.special_from),
        special_to: time_text(p.special_to),
        category_path: p.category_path.clone(),
        category_id: 0,
        image_url: p.image_url.clone(),
        custom_fields: p
            .custom_fields
            .iter()
            .map(|(n, v)| v1::CustomField {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        is_parent: p.is_parent,
        parent_product_id: p.parent_product_id,
        barcode: String::new(),
        last_update: String::new(),
    }
}
