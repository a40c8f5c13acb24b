//! The import of one WooCommerce order (SPEC §3.2), exactly once.
//!
//! Every trigger (an observation, a redelivery, a replayed dead letter, a retry of a parked
//! order) runs [`handle`] under the order's lock, and works on the newest body known for the
//! order. The order's ledger entry ([`OrderState`]) decides what is left to do:
//!
//! 1. imported → only the post-import steps that are not done yet (events, WooCommerce status and
//!    note);
//! 2. in doubt → nothing, until an operator replays the in-doubt dead letter;
//! 3. an unresolved attempt (crash between intent and outcome, or an unknown outcome) → resolved
//!    by the order lookup when it is on, else flagged in doubt; never re-sent blindly;
//! 4. not eligible → `OrderSkipped` once per status (and the stock hold released when the order
//!    was abandoned before import);
//! 5. otherwise: plan (lines, totals check, products, customer), record the intent, flush, call
//!    DUELL, record the outcome, then announce and write back to WooCommerce.
//!
//! See `docs/order-importer.md` for the whole state machine and the recovery rules.

use std::time::Duration;

use duellsync_bus::HandleError;
use duellsync_duell::{
    Action, Address as DuellAddress, CustomerId, NewOrder, OrderLine, ProductId, SaveOutcome,
    SavedOrder, StockAdjustment,
};
use duellsync_events::{now_ms, v1, Meta};
use duellsync_orders::customer::street;
use duellsync_orders::{
    check_total, eligibility, is_abandoned_status, is_final_status, map_lines, normalize_status,
    status_rank, taxes_computed_in, LineSource, MapOptions, SkipReason,
};
use duellsync_store::Commit;
use duellsync_woo::Order;
use serde_json::Value;
use tracing::Instrument as _;

use crate::events;
use crate::resolve::{line_sku, Stop};
use crate::state::{
    Attempt, Body, ImportPlan, Imported, InDoubt, Operation, OrderKey, OrderState, Outcome,
    ParkIndex, Parked, PlannedLine,
};
use crate::StoreCtx;

/// A message that asks for an order to be imported.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub observed: v1::OrderObserved,
    /// Meta of the delivered message: the observation, or the retry command carrying it. Its
    /// event id names the message in the dead-letter stream.
    pub message_meta: Meta,
    /// An operator replayed the message from the dead-letter stream.
    pub replay: bool,
}

impl Incoming {
    fn message_event_id(&self) -> &str {
        &self.message_meta.event_id
    }
}

fn store_err(e: duellsync_store::Error) -> HandleError {
    tracing::error!(error = %e, "state store failed");
    HandleError::retry(format!("state store: {e}"))
}

fn bus_err(e: duellsync_bus::Error) -> HandleError {
    HandleError::retry(format!("publishing: {e}"))
}

fn stop_to_handle(stop: Stop) -> HandleError {
    match stop {
        Stop::Retry { reason, after } => HandleError::Retry { reason, after },
        Stop::Park { code, reason, .. } => HandleError::permanent(format!("{code}: {reason}")),
    }
}

/// Parses the raw order JSON of an observation.
fn parse(observed: &v1::OrderObserved) -> Result<(Order, Value), HandleError> {
    let raw: Value = serde_json::from_slice(&observed.payload_json).map_err(|e| {
        HandleError::permanent(format!(
            "order {}: payload_json is not JSON: {e}",
            observed.order_id
        ))
    })?;
    if !raw.is_object() {
        return Err(HandleError::permanent(format!(
            "order {}: payload_json is not a JSON object",
            observed.order_id
        )));
    }
    let order: Order = serde_json::from_value(raw.clone()).map_err(|e| {
        HandleError::permanent(format!(
            "order {}: payload_json is not a WooCommerce order: {e}",
            observed.order_id
        ))
    })?;
    if i64::try_from(order.id).ok() != Some(observed.order_id) || observed.order_id <= 0 {
        return Err(HandleError::permanent(format!(
            "order id {} in the event does not match id {} in payload_json",
            observed.order_id, order.id
        )));
    }
    Ok((order, raw))
}

fn modified_of(order: &Order) -> i64 {
    order
        .date_modified_gmt
        .map(|d| d.assume_utc().unix_timestamp())
        .unwrap_or(0)
}

/// Handles one trigger for one order, under the order's lock.
pub(crate) async fn handle(ctx: &StoreCtx, inc: Incoming) -> Result<(), HandleError> {
    let woo_order_id = inc.observed.order_id;
    let span = tracing::info_span!(
        "import_order",
        store = %ctx.id(),
        woo_order_id,
        status = %inc.observed.status,
        replay = inc.replay,
    );
    async move {
        let parsed = parse(&inc.observed)?;
        let _guard = ctx.locks.lock(woo_order_id).await;
        process(ctx, &inc, parsed).await
    }
    .instrument(span)
    .await
}

async fn process(
    ctx: &StoreCtx,
    inc: &Incoming,
    (incoming_order, incoming_raw): (Order, Value),
) -> Result<(), HandleError> {
    let woo_order_id = inc.observed.order_id;
    let key = ctx.key(woo_order_id);
    let mut st = ctx
        .t
        .orders
        .get(&key)
        .map_err(store_err)?
        .unwrap_or_default();
    let cause = events::cause_of(ctx, woo_order_id, Some(&inc.message_meta));

    // Newest observation first: decisions are made on the newest body, whatever triggered us.
    let modified = modified_of(&incoming_order);
    let rank = status_rank(&incoming_order.status);
    let fresh =
        st.newest_event_id.is_empty() || (modified, rank) >= (st.newest_modified, st.newest_rank);
    if fresh {
        st.newest_modified = modified;
        st.newest_rank = rank;
        st.newest_status = normalize_status(&incoming_order.status);
        st.newest_event_id = inc
            .observed
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
    }

    // 1. Imported: only what follows the import can be left.
    if st.imported.is_some() {
        if fresh && is_abandoned_status(&incoming_order.status) {
            tracing::warn!(store = %ctx.id(), woo_order_id, status = %incoming_order.status,
                "order changed to {} in WooCommerce after its import; the DUELL order stays until a person changes it", incoming_order.status);
        }
        return finish_import(ctx, &mut st, woo_order_id, &cause).await;
    }

    let (observed, order, raw) = if fresh {
        (inc.observed.clone(), incoming_order, incoming_raw)
    } else {
        match ctx
            .t
            .bodies
            .get(&key)
            .map_err(store_err)?
            .and_then(|b| b.decode())
        {
            Some(b) => {
                let (o, r) = parse(&b)?;
                (b, o, r)
            }
            None => {
                // Older than the newest observation, which was not importable (no body kept).
                tracing::debug!(store = %ctx.id(), woo_order_id, "stale observation; nothing to do");
                if inc.replay {
                    return Err(HandleError::permanent(format!(
                        "order {woo_order_id} has changed since this message (now {}); nothing to import",
                        st.newest_status
                    )));
                }
                return Ok(());
            }
        }
    };

    // 2. In doubt: only an operator's replay of the in-doubt dead letter moves it.
    if let Some(d) = st.in_doubt.clone() {
        let is_dlq_message = d.dlq_event_id.as_deref() == Some(inc.message_event_id());
        if inc.replay && is_dlq_message {
            let i = st
                .attempts
                .iter()
                .position(|a| a.id == d.attempt_id)
                .unwrap_or(st.attempts.len().saturating_sub(1));
            match recover(ctx, &mut st, i, woo_order_id, &cause, true)
                .await
                .map_err(stop_to_handle)?
            {
                Recovered::Imported => {
                    return finish_import(ctx, &mut st, woo_order_id, &cause).await
                }
                Recovered::Absent => {
                    tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %d.attempt_id,
                        "operator replayed the in-doubt order: importing it again");
                }
                Recovered::InDoubt(reason) => return Err(HandleError::permanent(reason)),
                Recovered::Wait { reason, after } => {
                    return Err(HandleError::Retry { reason, after })
                }
            }
        } else {
            let reason = in_doubt_reason(ctx, woo_order_id, &d);
            let mut c = Commit::new();
            ctx.t.bodies.put(&mut c, &key, &Body::of(&observed));
            if inc.replay {
                if let Some(dlq) = d.dlq_event_id.as_deref() {
                    ctx.t.orders.put(&mut c, &key, &st);
                    ctx.state.commit(c).await.map_err(store_err)?;
                    return Err(HandleError::permanent(format!(
                        "{reason} (this is not the in-doubt dead letter: replay the one of event {dlq})"
                    )));
                }
                // No in-doubt dead letter yet (flagged at start-up, its message not back yet):
                // this replay was not a decision about the doubt, it becomes that dead letter.
            }
            if d.dlq_event_id.is_none() || is_dlq_message {
                if let Some(x) = st.in_doubt.as_mut() {
                    x.dlq_event_id = Some(inc.message_event_id().to_owned());
                }
                ctx.t.orders.put(&mut c, &key, &st);
                ctx.state.commit(c).await.map_err(store_err)?;
                return Err(HandleError::permanent(reason));
            }
            ctx.t.orders.put(&mut c, &key, &st);
            ctx.state.commit(c).await.map_err(store_err)?;
            tracing::info!(store = %ctx.id(), woo_order_id, "order is in doubt; waiting for an operator");
            return Ok(());
        }
    }

    // 3. An attempt whose outcome is unknown (a crash between intent and outcome, or a timeout).
    if let Some(i) = st.unresolved_attempt() {
        match recover(ctx, &mut st, i, woo_order_id, &cause, false)
            .await
            .map_err(stop_to_handle)?
        {
            Recovered::Imported => return finish_import(ctx, &mut st, woo_order_id, &cause).await,
            Recovered::Absent => {}
            Recovered::InDoubt(reason) => {
                return dead_letter_in_doubt(ctx, &mut st, &key, &observed, inc, reason).await
            }
            Recovered::Wait { reason, after } => {
                save(ctx, &key, &st, Some(&observed)).await?;
                return Err(HandleError::Retry { reason, after });
            }
        }
    }

    // 4. Eligibility, on the newest body.
    if let Err(reason) = eligibility(&order, &ctx.settings) {
        return not_eligible(ctx, &mut st, &key, &observed, &order, reason).await;
    }

    // 5. Plan, then import.
    let plan = match plan(ctx, woo_order_id, &order, &raw).await {
        Ok(p) => p,
        Err(Stop::Park {
            code,
            reason,
            missing_skus,
            missing_woo_ids,
        }) => {
            return park(
                ctx,
                &mut st,
                &key,
                &observed,
                inc,
                code,
                reason,
                missing_skus,
                missing_woo_ids,
            )
            .await
        }
        Err(Stop::Retry { reason, after }) => {
            save(ctx, &key, &st, Some(&observed)).await?;
            return Err(HandleError::Retry { reason, after });
        }
    };
    attempt(ctx, &mut st, &key, &observed, &order, plan, inc, &cause).await
}

async fn save(
    ctx: &StoreCtx,
    key: &OrderKey,
    st: &OrderState,
    body: Option<&v1::OrderObserved>,
) -> Result<(), HandleError> {
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, key, st);
    if let Some(b) = body {
        ctx.t.bodies.put(&mut c, key, &Body::of(b));
    }
    ctx.state.commit(c).await.map_err(store_err)
}

fn operation(ctx: &StoreCtx) -> Operation {
    if ctx.settings.create_customer_order {
        Operation::CustomerOrder
    } else if ctx.settings.deduct_stock {
        Operation::AdjustStock
    } else {
        Operation::SalesOrder
    }
}

/// Resolves everything the DUELL write needs. Reads DUELL; may create the customer, missing
/// products and the shipping/fee products (each looked up first, so a retry creates nothing
/// twice).
async fn plan(
    ctx: &StoreCtx,
    woo_order_id: i64,
    order: &Order,
    raw: &Value,
) -> Result<ImportPlan, Stop> {
    let op = operation(ctx);
    let opts = MapOptions {
        taxes_computed: taxes_computed_in(raw),
        ..MapOptions::default()
    };
    let mapped = map_lines(order, &opts).map_err(|e| Stop::park("validation", e.to_string()))?;
    let stock_only = op == Operation::AdjustStock;
    // A stock deduction books no money, so only orders and sales are checked against the total.
    if !stock_only {
        check_total(&mapped, order.total, ctx.tolerance)
            .map_err(|e| Stop::park("total_mismatch", e.to_string()))?;
    }
    let mut lines = Vec::new();
    let mut remarks = Vec::new();
    let mut missing_skus: Vec<String> = Vec::new();
    let mut missing_woo_ids: Vec<i64> = Vec::new();
    for m in mapped
        .iter()
        .filter(|m| matches!(m.source, LineSource::Product { .. }))
    {
        let resolved = match ctx.resolve_product(m).await? {
            Some(r) => Some(r),
            None => match line_sku(m) {
                None => {
                    missing_woo_ids.push(
                        m.source
                            .woo_product_key()
                            .and_then(|w| i64::try_from(w).ok())
                            .unwrap_or(0),
                    );
                    None
                }
                Some(sku) if !ctx.settings.create_missing_products => {
                    missing_skus.push(sku);
                    None
                }
                Some(_) => Some(ctx.create_missing(m).await?),
            },
        };
        let Some(r) = resolved else { continue };
        remarks.extend(r.remark.clone());
        lines.push(PlannedLine {
            key: m.key.clone(),
            duell_product_id: r.duell_product_id,
            product_number: r.product_number,
            woo_product_id: m
                .source
                .woo_product_key()
                .and_then(|w| i64::try_from(w).ok())
                .unwrap_or(0),
            sku: line_sku(m).unwrap_or_default(),
            name: m.name.clone(),
            quantity: m.quantity,
            price_ex_vat: m.price_ex_vat,
            price_inc_vat: m.price_inc_vat,
            vat_rate: m.vat_rate,
            discount_inc_vat: m.discount_inc_vat,
            comments: m.comments.clone(),
            product_line: true,
        });
    }
    if !missing_skus.is_empty() || !missing_woo_ids.is_empty() {
        missing_skus.sort();
        missing_skus.dedup();
        missing_woo_ids.sort();
        missing_woo_ids.dedup();
        let mut what = Vec::new();
        if !missing_skus.is_empty() {
            what.push(format!("SKU {} not in DUELL", missing_skus.join(", ")));
        }
        if !missing_woo_ids.is_empty() {
            what.push(format!(
                "WooCommerce product {} has no SKU and no link to a DUELL product",
                missing_woo_ids
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return Err(Stop::Park {
            code: "unknown_product",
            reason: format!(
                "order {woo_order_id}: {} (create_missing_products is {}); it is retried when the product appears in DUELL or is linked, or when this dead letter is replayed",
                what.join("; "),
                if ctx.settings.create_missing_products { "on" } else { "off" }
            ),
            missing_skus,
            missing_woo_ids,
        });
    }
    if !stock_only {
        let shipping_number = ctx.settings.orders.shipping_product_number.clone();
        let fee_number = ctx.settings.orders.fee_product_number.clone();
        for m in &mapped {
            let (number, name) = match &m.source {
                LineSource::Product { .. } => continue,
                LineSource::Shipping { .. } => (&shipping_number, "Frakt"),
                LineSource::Fee { .. } => (&fee_number, "Gebyr"),
            };
            let id = ctx.special_product(number, name).await?;
            lines.push(PlannedLine {
                key: m.key.clone(),
                duell_product_id: id,
                product_number: number.clone(),
                woo_product_id: 0,
                sku: String::new(),
                name: m.name.clone(),
                quantity: m.quantity,
                price_ex_vat: m.price_ex_vat,
                price_inc_vat: m.price_inc_vat,
                vat_rate: m.vat_rate,
                discount_inc_vat: m.discount_inc_vat,
                comments: m.comments.clone(),
                product_line: false,
            });
        }
    }
    let customer_id = if stock_only {
        0
    } else {
        ctx.customer_for(order).await?
    };
    Ok(ImportPlan {
        operation: op,
        customer_id,
        woo_number: if order.number.trim().is_empty() {
            woo_order_id.to_string()
        } else {
            order.number.clone()
        },
        // WooCommerce's own text ("200.00"): status write-back compares it before completing.
        total: order.total.to_string(),
        lines,
        remarks,
    })
}

fn duell_address(a: &duellsync_woo::Address) -> DuellAddress {
    DuellAddress {
        address: street(a),
        city: a.city.trim().to_owned(),
        zip: a.postcode.trim().to_owned(),
        country: a.country.trim().to_owned(),
    }
}

/// The DUELL order for a plan. Pure: the same plan always makes the same request.
fn new_order(ctx: &StoreCtx, woo_order_id: i64, order: &Order, plan: &ImportPlan) -> NewOrder {
    let reference_comment = format!("Ordre {} {}", plan.woo_number, ctx.site)
        .trim()
        .to_owned();
    let mut comments = reference_comment.clone();
    if !order.customer_note.trim().is_empty() {
        comments.push('\n');
        comments.push_str(order.customer_note.trim());
    }
    for r in &plan.remarks {
        comments.push('\n');
        comments.push_str(r);
    }
    let order_date = order
        .date_created
        .or(order.date_created_gmt)
        .unwrap_or_else(|| {
            let now = time::OffsetDateTime::now_utc();
            time::PrimitiveDateTime::new(now.date(), now.time())
        });
    let shipping =
        if order.shipping.address_1.trim().is_empty() && order.shipping.city.trim().is_empty() {
            &order.billing
        } else {
            &order.shipping
        };
    NewOrder {
        key: woo_order_id.to_string(),
        customer_id: CustomerId(plan.customer_id.max(0) as u64),
        reference_order_number: woo_order_id.to_string(),
        reference_comment,
        comments,
        order_date,
        round_off_amount: rust_decimal::Decimal::ZERO,
        order_address: Some(duell_address(&order.billing)),
        shipping_address: Some(duell_address(shipping)),
        purchase_order_status_id: u32::try_from(ctx.settings.orders.initial_status).ok(),
        ref_customer_order_id: None,
        lines: plan
            .lines
            .iter()
            .map(|l| OrderLine {
                key: l.key.clone(),
                entity_type: "product".into(),
                product_id: ProductId(l.duell_product_id.max(0) as u64),
                price_ex_vat: l.price_ex_vat,
                price_inc_vat: l.price_inc_vat,
                quantity: l.quantity,
                vatrate_percent: l.vat_rate,
                discount_amount: l.discount_inc_vat,
                comments: l.comments.clone(),
            })
            .collect(),
    }
}

enum Saved {
    Order(SaveOutcome<SavedOrder>),
    Stock(SaveOutcome<Value>),
}

/// What a DUELL write did.
enum Classified {
    Done(Outcome),
    NotApplied {
        reason: String,
        rejected: bool,
        after: Option<Duration>,
    },
    Unknown(String),
}

fn classify(
    plan: &ImportPlan,
    reference: &str,
    result: duellsync_duell::Result<Saved>,
) -> Classified {
    let at_ms = now_ms();
    match result {
        Ok(Saved::Order(outcome)) => {
            let row = outcome
                .order_for(reference)
                .or_else(|| (outcome.data.len() == 1).then(|| &outcome.data[0]));
            match row {
                Some(o) => Classified::Done(Outcome::Created {
                    order_id: i64::try_from(o.order_id.0).unwrap_or(i64::MAX),
                    order_number: o.order_number.clone(),
                    at_ms,
                }),
                None if outcome.data.is_empty()
                    && outcome.total_affected.unwrap_or(0) == 0
                    && outcome.validation.is_some() =>
                {
                    Classified::NotApplied {
                        reason: format!(
                            "DUELL refused the order: {}",
                            outcome
                                .validation
                                .as_ref()
                                .map(|v| v.to_string())
                                .unwrap_or_default()
                        ),
                        rejected: true,
                        after: None,
                    }
                }
                None => Classified::Unknown(format!(
                    "DUELL answered without the created order (total_affected {:?}, {} rows)",
                    outcome.total_affected,
                    outcome.data.len()
                )),
            }
        }
        Ok(Saved::Stock(outcome)) => {
            let refused = outcome.validation.as_ref().filter(|v| !v.is_empty());
            match refused {
                None => Classified::Done(Outcome::Adjusted {
                    at_ms,
                    refused: None,
                }),
                Some(v) => {
                    let numbers: Vec<&str> = plan
                        .lines
                        .iter()
                        .filter(|l| l.product_line)
                        .map(|l| l.product_number.as_str())
                        .collect();
                    let all_refused =
                        !numbers.is_empty() && numbers.iter().all(|n| !v.for_row(n).is_empty());
                    if all_refused {
                        Classified::NotApplied {
                            reason: format!("DUELL refused the stock deduction: {v}"),
                            rejected: true,
                            after: None,
                        }
                    } else {
                        Classified::Done(Outcome::Adjusted {
                            at_ms,
                            refused: Some(v.to_string()),
                        })
                    }
                }
            }
        }
        Err(e) => match e.action() {
            Action::RetryLater => Classified::NotApplied {
                after: e.retry_after(),
                reason: e.to_string(),
                rejected: false,
            },
            Action::FixConfiguration => Classified::NotApplied {
                reason: e.to_string(),
                rejected: false,
                after: None,
            },
            Action::Reject => Classified::NotApplied {
                reason: e.to_string(),
                rejected: true,
                after: None,
            },
            // A write answered with something unreadable may have been applied.
            Action::ResolveInDoubt | Action::Investigate => Classified::Unknown(e.to_string()),
        },
    }
}

/// Records the intent, calls DUELL, records the outcome.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    ctx: &StoreCtx,
    st: &mut OrderState,
    key: &OrderKey,
    observed: &v1::OrderObserved,
    order: &Order,
    plan: ImportPlan,
    inc: &Incoming,
    cause: &Meta,
) -> Result<(), HandleError> {
    let woo_order_id = key.1;
    let reference = woo_order_id.to_string();
    let attempt_id = format!("{woo_order_id}-{}", st.attempts.len() + 1);
    let op = plan.operation;
    // Everything the call needs is built before the intent, so that nothing but the call runs
    // between the flush and the write.
    let request = new_order(ctx, woo_order_id, order, &plan);
    let adjustments: Vec<StockAdjustment> = plan
        .lines
        .iter()
        .filter(|l| l.product_line)
        .map(|l| StockAdjustment {
            product_number: l.product_number.clone(),
            quantity: l.quantity,
        })
        .collect();
    let order_department = duellsync_clients::order_department(&ctx.settings);
    let stock_department = duellsync_clients::stock_department(&ctx.settings);

    st.attempts.push(Attempt {
        id: attempt_id.clone(),
        started_ms: now_ms(),
        plan: plan.clone(),
        outcome: None,
    });
    let idx = st.attempts.len() - 1;
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, key, st);
    ctx.t.bodies.put(&mut c, key, &Body::of(observed));
    ctx.t.open.put(&mut c, key, &attempt_id);
    ctx.state.commit(c).await.map_err(store_err)?;

    // The intent is on disk: the write goes out now, with no other await in between.
    let result = match op {
        Operation::CustomerOrder => crate::resolve::timed(
            ctx.id(),
            op.endpoint(),
            ctx.duell
                .save_customer_orders(&order_department, std::slice::from_ref(&request)),
        )
        .await
        .map(Saved::Order),
        Operation::SalesOrder => crate::resolve::timed(
            ctx.id(),
            op.endpoint(),
            ctx.duell
                .save_sales_orders(&order_department, std::slice::from_ref(&request)),
        )
        .await
        .map(Saved::Order),
        Operation::AdjustStock => crate::resolve::timed(
            ctx.id(),
            op.endpoint(),
            ctx.duell.adjust_stock(&stock_department, &adjustments),
        )
        .await
        .map(Saved::Stock),
    };

    match classify(&plan, &reference, result) {
        Classified::Done(outcome) => {
            tracing::info!(store = %ctx.id(), woo_order_id, attempt = %attempt_id, operation = op.as_str(), ?outcome, "imported into DUELL");
            imported(ctx, st, key, idx, outcome, false).await?;
            finish_import(ctx, st, woo_order_id, cause).await
        }
        Classified::NotApplied {
            reason,
            rejected,
            after,
        } => {
            st.attempts[idx].outcome = Some(Outcome::NotApplied {
                reason: reason.clone(),
                at_ms: now_ms(),
            });
            let mut c = Commit::new();
            ctx.t.orders.put(&mut c, key, st);
            ctx.t.open.remove(&mut c, key);
            ctx.state.commit(c).await.map_err(store_err)?;
            if rejected {
                park(
                    ctx,
                    st,
                    key,
                    observed,
                    inc,
                    "validation",
                    format!("order {woo_order_id}: {reason}"),
                    Vec::new(),
                    Vec::new(),
                )
                .await
            } else {
                Err(HandleError::Retry {
                    reason: format!("DUELL did not take the order (nothing was written): {reason}"),
                    after,
                })
            }
        }
        Classified::Unknown(detail) => {
            tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %attempt_id, operation = op.as_str(), detail = %detail, "outcome of the DUELL write is unknown");
            st.attempts[idx].outcome = Some(Outcome::Unknown {
                detail,
                at_ms: now_ms(),
            });
            save(ctx, key, st, None).await?;
            match recover(ctx, st, idx, woo_order_id, cause, false)
                .await
                .map_err(stop_to_handle)?
            {
                Recovered::Imported => finish_import(ctx, st, woo_order_id, cause).await,
                Recovered::InDoubt(reason) => {
                    dead_letter_in_doubt(ctx, st, key, observed, inc, reason).await
                }
                Recovered::Absent => Err(HandleError::retry(
                    "DUELL provably did not take the order; importing it again",
                )),
                Recovered::Wait { reason, after } => Err(HandleError::Retry { reason, after }),
            }
        }
    }
}

/// Records an import (from the answer or a lookup) and forgets what only a pending order needs.
async fn imported(
    ctx: &StoreCtx,
    st: &mut OrderState,
    key: &OrderKey,
    idx: usize,
    outcome: Outcome,
    recovered_by_lookup: bool,
) -> Result<(), HandleError> {
    let a = &mut st.attempts[idx];
    let plan = a.plan.clone();
    let (order_id, order_number, at_ms, refused) = match &outcome {
        Outcome::Created {
            order_id,
            order_number,
            at_ms,
        }
        | Outcome::FoundByLookup {
            order_id,
            order_number,
            at_ms,
        } => (*order_id, order_number.clone(), *at_ms, None),
        Outcome::Adjusted { at_ms, refused } => (0, String::new(), *at_ms, refused.clone()),
        other => {
            return Err(HandleError::permanent(format!(
                "bug: {other:?} is not an import"
            )))
        }
    };
    a.outcome = Some(outcome);
    let attempt_id = a.id.clone();
    st.imported = Some(Imported {
        operation: plan.operation,
        duell_order_id: order_id,
        duell_order_number: order_number,
        customer_id: plan.customer_id,
        woo_number: plan.woo_number.clone(),
        total: plan.total.clone(),
        lines: plan.lines.clone(),
        remarks: plan.remarks.clone(),
        recovered_by_lookup,
        attempt_id,
        effective_at_ms: at_ms,
        refused,
        announced: false,
        woo_done: false,
        refusal_reported: false,
        hold_released: plan.operation != Operation::CustomerOrder,
    });
    st.parked = None;
    st.in_doubt = None;
    // `Imported` keeps the lines; the attempts' copies are no longer needed.
    for a in st.attempts.iter_mut() {
        a.plan.lines.clear();
        a.plan.remarks.clear();
    }
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, key, st);
    ctx.t.open.remove(&mut c, key);
    ctx.t.parked.remove(&mut c, key);
    ctx.t.bodies.remove(&mut c, key);
    ctx.state.commit(c).await.map_err(store_err)?;
    metrics::counter!(
        "duellsync_importer_orders_imported_total",
        "store" => ctx.id().to_owned(),
        "kind" => plan.operation.as_str(),
        "recovered" => if recovered_by_lookup { "lookup" } else { "no" }
    )
    .increment(1);
    Ok(())
}

/// Publishes what the import means (once) and writes it back to WooCommerce (once).
pub(crate) async fn finish_import(
    ctx: &StoreCtx,
    st: &mut OrderState,
    woo_order_id: i64,
    cause: &Meta,
) -> Result<(), HandleError> {
    let key = ctx.key(woo_order_id);
    let Some(mut imp) = st.imported.clone() else {
        return Ok(());
    };
    if !imp.announced {
        ctx.bus
            .publish(&events::imported(ctx, cause, woo_order_id, &imp))
            .await
            .map_err(bus_err)?;
        ctx.bus
            .publish(&events::hold_after_import(ctx, cause, woo_order_id, &imp))
            .await
            .map_err(bus_err)?;
        imp.announced = true;
        st.imported = Some(imp.clone());
        save(ctx, &key, st, None).await?;
    }
    if !imp.woo_done {
        crate::woo_side::after_import(ctx, woo_order_id, &st.newest_status, &imp)
            .await
            .map_err(stop_to_handle)?;
        imp.woo_done = true;
        if let Some(s) = ctx.settings.status_after_import.as_deref() {
            if !is_final_status(&st.newest_status) {
                st.newest_status = normalize_status(s);
            }
        }
        st.imported = Some(imp.clone());
        save(ctx, &key, st, None).await?;
    }
    if let (Some(refused), false) = (&imp.refused, imp.refusal_reported) {
        imp.refusal_reported = true;
        st.imported = Some(imp.clone());
        save(ctx, &key, st, None).await?;
        return Err(HandleError::permanent(format!(
            "order {woo_order_id}: the stock deduction was applied in part; DUELL refused: {refused}. It is never re-sent: adjust the refused lines by hand"
        )));
    }
    Ok(())
}

/// How an unresolved attempt was settled.
pub(crate) enum Recovered {
    /// DUELL has it: recorded as imported.
    Imported,
    /// Provably not in DUELL: a new attempt may be made.
    Absent,
    /// Nobody can tell: flagged in doubt (published); the reason is for the dead letter.
    InDoubt(String),
    /// Ask again later (lookup not settled yet, or DUELL unavailable).
    Wait {
        reason: String,
        after: Option<Duration>,
    },
}

/// Settles attempt `i` whose outcome is unknown: by the order lookup when it is on (UNVERIFIED
/// against real DUELL), else it is in doubt. `operator`: an operator replayed the in-doubt dead
/// letter, which is their decision that DUELL does not have the order (a working lookup is still
/// asked first).
pub(crate) async fn recover(
    ctx: &StoreCtx,
    st: &mut OrderState,
    i: usize,
    woo_order_id: i64,
    cause: &Meta,
    operator: bool,
) -> Result<Recovered, Stop> {
    let key = ctx.key(woo_order_id);
    let a = st.attempts[i].clone();
    let op = a.plan.operation;
    let lookup_on = ctx.settings.duell.order_lookup && op != Operation::AdjustStock;
    let detail = match &a.outcome {
        Some(Outcome::Unknown { detail, .. }) => detail.clone(),
        _ => "the importer stopped between recording the intent and recording the outcome".into(),
    };
    let absent = |st: &mut OrderState, by: &str| {
        st.attempts[i].outcome = Some(Outcome::Absent {
            by: by.to_owned(),
            at_ms: now_ms(),
        });
        st.in_doubt = None;
    };
    if !lookup_on {
        if operator {
            absent(st, "operator");
            let mut c = Commit::new();
            ctx.t.orders.put(&mut c, &key, st);
            ctx.t.open.remove(&mut c, &key);
            ctx.state.commit(c).await?;
            return Ok(Recovered::Absent);
        }
        let why = if op == Operation::AdjustStock {
            "DUELL has no lookup for stock adjustments"
        } else {
            "the order lookup is off (duell.order_lookup = false)"
        };
        return flag_in_doubt(ctx, st, i, woo_order_id, cause, format!("{detail}; {why}")).await;
    }
    let reference = woo_order_id.to_string();
    let endpoint = match op {
        Operation::CustomerOrder => "logistics/orders/list",
        _ => "sale/orders/list",
    };
    let found = crate::resolve::timed(ctx.id(), endpoint, async {
        match op {
            Operation::CustomerOrder => {
                ctx.duell
                    .find_customer_orders_by_reference(&reference)
                    .await
            }
            _ => ctx.duell.find_sales_orders_by_reference(&reference).await,
        }
    })
    .await;
    match found {
        Ok(list) if !list.is_empty() => {
            let Some(o) = list.iter().min_by_key(|o| o.order_id.0) else {
                return Ok(Recovered::Wait {
                    reason: "lookup result vanished".into(),
                    after: None,
                });
            };
            if list.len() > 1 {
                tracing::error!(store = %ctx.id(), woo_order_id, count = list.len(), "DUELL holds several orders for this WooCommerce order; using the lowest id");
            }
            tracing::info!(store = %ctx.id(), woo_order_id, attempt = %a.id, duell_order_id = o.order_id.0, "order lookup found the order: recovered");
            metrics::counter!("duellsync_importer_recovered_total", "store" => ctx.id().to_owned(), "how" => "lookup_found")
                .increment(1);
            imported(
                ctx,
                st,
                &key,
                i,
                Outcome::FoundByLookup {
                    order_id: i64::try_from(o.order_id.0).unwrap_or(i64::MAX),
                    order_number: o.order_number.clone(),
                    at_ms: now_ms(),
                },
                true,
            )
            .await
            .map_err(|e| Stop::retry(e.reason().to_owned()))?;
            Ok(Recovered::Imported)
        }
        Ok(_) => {
            let elapsed = now_ms().saturating_sub(a.unknown_since_ms()).max(0) as u64;
            let settle = ctx.config.lookup_settle.as_millis() as u64;
            if !operator && elapsed < settle {
                // A slow DUELL may still apply the write: absence is trusted only after a while.
                return Ok(Recovered::Wait {
                    reason: format!(
                        "order lookup found nothing yet; trusted as absent {} ms after the unknown outcome",
                        settle
                    ),
                    after: Some(Duration::from_millis(settle - elapsed)),
                });
            }
            tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %a.id, "order lookup: DUELL does not have the order; importing again");
            metrics::counter!("duellsync_importer_recovered_total", "store" => ctx.id().to_owned(), "how" => "lookup_absent")
                .increment(1);
            absent(st, if operator { "operator" } else { "lookup" });
            let mut c = Commit::new();
            ctx.t.orders.put(&mut c, &key, st);
            ctx.t.open.remove(&mut c, &key);
            ctx.state.commit(c).await?;
            Ok(Recovered::Absent)
        }
        // The lookup is a read: repeating it cannot apply anything, so only an endpoint DUELL
        // refuses outright (no order lookup on this installation) leaves the order in doubt.
        // Refused credentials, an outage or an unreadable answer are waited out like any other
        // read, bounded by the consumer's max deliveries.
        Err(e) if e.action() != Action::Reject => Ok(Recovered::Wait {
            reason: format!("order lookup: {e}"),
            after: e.retry_after(),
        }),
        Err(e) => {
            if operator {
                absent(st, "operator");
                let mut c = Commit::new();
                ctx.t.orders.put(&mut c, &key, st);
                ctx.t.open.remove(&mut c, &key);
                ctx.state.commit(c).await?;
                return Ok(Recovered::Absent);
            }
            flag_in_doubt(
                ctx,
                st,
                i,
                woo_order_id,
                cause,
                format!("{detail}; the order lookup failed: {e}"),
            )
            .await
        }
    }
}

async fn flag_in_doubt(
    ctx: &StoreCtx,
    st: &mut OrderState,
    i: usize,
    woo_order_id: i64,
    cause: &Meta,
    detail: String,
) -> Result<Recovered, Stop> {
    let key = ctx.key(woo_order_id);
    let a = st.attempts[i].clone();
    let d = InDoubt {
        attempt_id: a.id.clone(),
        operation: a.plan.operation,
        detail: detail.clone(),
        at_ms: now_ms(),
        dlq_event_id: None,
    };
    // Published before it is committed: a crash in between repeats the same event id.
    ctx.bus
        .publish(&events::in_doubt(
            ctx,
            cause,
            woo_order_id,
            a.plan.operation.as_str(),
            &a.id,
            &detail,
        ))
        .await
        .map_err(|e| Stop::retry(format!("publishing OrderInDoubt: {e}")))?;
    if st.attempts[i].outcome.is_none() {
        st.attempts[i].outcome = Some(Outcome::Unknown {
            detail: detail.clone(),
            at_ms: now_ms(),
        });
    }
    let reason = in_doubt_reason(ctx, woo_order_id, &d);
    st.in_doubt = Some(d);
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, &key, st);
    ctx.t.open.remove(&mut c, &key);
    ctx.state.commit(c).await?;
    tracing::error!(store = %ctx.id(), woo_order_id, attempt = %a.id, operation = a.plan.operation.as_str(), detail = %detail, "order is IN DOUBT: never retried blindly; an operator decides");
    metrics::counter!("duellsync_importer_orders_in_doubt_total", "store" => ctx.id().to_owned(), "operation" => a.plan.operation.as_str())
        .increment(1);
    Ok(Recovered::InDoubt(reason))
}

fn in_doubt_reason(ctx: &StoreCtx, woo_order_id: i64, d: &InDoubt) -> String {
    let check = match d.operation {
        Operation::AdjustStock => format!(
            "check DUELL's stock adjustments for the lines of WooCommerce order {woo_order_id}"
        ),
        op => format!(
            "check DUELL for a {} with reference {woo_order_id}",
            op.label()
        ),
    };
    format!(
        "in doubt: DUELL may have applied the {} of WooCommerce order {woo_order_id} (store {}, attempt {}: {}). It is never retried blindly: {check}; if it is there, skip this dead letter (syncctl dlq skip); if not, replay it (syncctl dlq replay) to import the order",
        d.operation.label(),
        ctx.id(),
        d.attempt_id,
        d.detail
    )
}

async fn dead_letter_in_doubt(
    ctx: &StoreCtx,
    st: &mut OrderState,
    key: &OrderKey,
    observed: &v1::OrderObserved,
    inc: &Incoming,
    reason: String,
) -> Result<(), HandleError> {
    if let Some(d) = st.in_doubt.as_mut() {
        d.dlq_event_id = Some(inc.message_event_id().to_owned());
    }
    save(ctx, key, st, Some(observed)).await?;
    Err(HandleError::permanent(reason))
}

/// Parks the order: remembered (to be retried when the cause goes away) and dead-lettered with
/// the reason. A later trigger that parks it again for the same cause is acked quietly: the
/// dead letter and the `OrderParked` event already say it.
#[allow(clippy::too_many_arguments)]
async fn park(
    ctx: &StoreCtx,
    st: &mut OrderState,
    key: &OrderKey,
    observed: &v1::OrderObserved,
    inc: &Incoming,
    code: &'static str,
    reason: String,
    missing_skus: Vec<String>,
    missing_woo_ids: Vec<i64>,
) -> Result<(), HandleError> {
    let woo_order_id = key.1;
    let previous = st.parked.clone();
    let same = previous
        .as_ref()
        .is_some_and(|p| p.same_cause(code, &missing_skus, &missing_woo_ids));
    let dlq_event_id = match &previous {
        Some(p) if same && !inc.replay => p.dlq_event_id.clone(),
        _ => inc.message_event_id().to_owned(),
    };
    let quiet = same && !inc.replay && dlq_event_id != inc.message_event_id();
    st.parked = Some(Parked {
        code: code.to_owned(),
        reason: reason.clone(),
        missing_skus: missing_skus.clone(),
        missing_woo_ids: missing_woo_ids.clone(),
        at_ms: now_ms(),
        dlq_event_id,
    });
    if !quiet {
        ctx.bus
            .publish(&events::parked(
                ctx,
                &events::cause_of(ctx, woo_order_id, Some(&inc.message_meta)),
                woo_order_id,
                code,
                &reason,
                &missing_skus,
                &missing_woo_ids,
            ))
            .await
            .map_err(bus_err)?;
    }
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, key, st);
    ctx.t.bodies.put(&mut c, key, &Body::of(observed));
    ctx.t.parked.put(
        &mut c,
        key,
        &ParkIndex {
            missing_skus,
            missing_woo_ids,
            retry_requested: false,
        },
    );
    ctx.state.commit(c).await.map_err(store_err)?;
    if quiet {
        tracing::info!(store = %ctx.id(), woo_order_id, code, "order still parked for the same reason");
        return Ok(());
    }
    if !same {
        metrics::counter!("duellsync_importer_orders_parked_total", "store" => ctx.id().to_owned(), "code" => code)
            .increment(1);
    }
    tracing::warn!(store = %ctx.id(), woo_order_id, code, reason = %reason, "order parked: needs attention");
    Err(HandleError::permanent(format!("parked ({code}): {reason}")))
}

async fn not_eligible(
    ctx: &StoreCtx,
    st: &mut OrderState,
    key: &OrderKey,
    observed: &v1::OrderObserved,
    order: &Order,
    reason: SkipReason,
) -> Result<(), HandleError> {
    let woo_order_id = key.1;
    let cause = events::cause_of(ctx, woo_order_id, observed.meta.as_ref());
    let observation = cause.event_id.clone();
    if is_abandoned_status(&order.status)
        && st.released_unimported.as_deref() != Some(observation.as_str())
    {
        let at = observed
            .meta
            .as_ref()
            .map(|m| m.observed_at_ms)
            .filter(|t| *t > 0)
            .unwrap_or_else(now_ms);
        ctx.bus
            .publish(&events::hold_released_unimported(ctx, &cause, order, at))
            .await
            .map_err(bus_err)?;
        st.released_unimported = Some(observation);
    }
    let status = normalize_status(&order.status);
    let new_skip = st.skipped.insert(status.clone());
    if new_skip {
        ctx.bus
            .publish(&events::skipped(
                ctx,
                &cause,
                woo_order_id,
                &status,
                &reason.to_string(),
            ))
            .await
            .map_err(bus_err)?;
        metrics::counter!("duellsync_importer_orders_skipped_total", "store" => ctx.id().to_owned(), "reason" => reason.code())
            .increment(1);
        tracing::info!(store = %ctx.id(), woo_order_id, status = %status, reason = %reason, "order not imported");
    }
    // No longer wanted as it is: nothing to retry.
    st.parked = None;
    let mut c = Commit::new();
    ctx.t.orders.put(&mut c, key, st);
    ctx.t.parked.remove(&mut c, key);
    ctx.t.bodies.remove(&mut c, key);
    ctx.state.commit(c).await.map_err(store_err)
}

/// Settles attempts left unresolved by a crash, at start-up, before their messages come back
/// (those are redelivered: the crash kept them from being acked).
pub(crate) async fn recover_on_start(ctx: &StoreCtx) -> anyhow::Result<()> {
    let open: Vec<(OrderKey, String)> =
        ctx.t.open.iter_group(ctx.id()).collect::<Result<_, _>>()?;
    for (key, attempt_id) in open {
        let woo_order_id = key.1;
        let _guard = ctx.locks.lock(woo_order_id).await;
        let Some(mut st) = ctx.t.orders.get(&key)? else {
            continue;
        };
        if st.in_doubt.is_some() || st.imported.is_some() {
            continue;
        }
        let Some(i) = st.unresolved_attempt() else {
            continue;
        };
        tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %attempt_id, "found an attempt without outcome after a restart; resolving it");
        let cause = events::cause_of(ctx, woo_order_id, None);
        match recover(ctx, &mut st, i, woo_order_id, &cause, false).await {
            Ok(Recovered::Imported) => {
                if let Err(e) = finish_import(ctx, &mut st, woo_order_id, &cause).await {
                    tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "post-import steps left for the redelivery");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(store = %ctx.id(), woo_order_id, error = ?e, "cannot resolve the attempt now; the redelivery will")
            }
        }
    }
    Ok(())
}
