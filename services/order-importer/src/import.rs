//! The import of one WooCommerce order (SPEC §3.2), exactly once: the IO shell of
//! `duellsync_orders::lifecycle`.
//!
//! Every trigger (an observation, a redelivery, a replayed dead letter, a retry of a parked
//! order, start-up recovery, a DUELL status change) runs one *round* under the order's lock:
//! [`decide`] says what to do next and how to save the order's record first; this module saves
//! it, performs the action (a WooCommerce read, the plan, the DUELL write, the lookup, a
//! publish, a WooCommerce write) and feeds the result back, until the decision finishes the
//! round with an ack, a retry or a dead letter.
//!
//! Saving: a [`Save::Durable`] decision (the intent before the DUELL write) is committed with a
//! flush before its action runs; a [`Save::DurableAtEnd`] one (the outcome after it) is queued
//! and syncs while the steps after the import run (the events and the note at once, then the
//! status and marker), and the round waits for it before it ends; [`Save::Lazy`] ones (what
//! follows an import, which is safe to repeat) are written once, without a flush of their own,
//! when the round ends or with the next durable commit. Concurrent rounds share flushes (the
//! store's group commit). On the happy path an order costs two flushes and waits for one.
//!
//! See `docs/order-importer.md` for the state diagram and the recovery rules.

use std::time::Duration;

use duellsync_bus::HandleError;
use duellsync_duell::{
    Action as DuellAction, Address as DuellAddress, CustomerId, NewOrder, OrderLine, ProductId,
    SaveOutcome, SavedOrder, StockAdjustment,
};
use duellsync_events::{now_ms, v1, Meta};
use duellsync_orders::customer::street;
use duellsync_orders::lifecycle::{
    decide, Action, Answer, Body as KeepBody, Cause, Decision, Finish, Input, Judged, Lookup,
    Planning, Policy, Published, Round, Save, WooRead,
};
use duellsync_orders::{
    check_total, eligibility, is_abandoned_status, map_lines, taxes_computed_in_json, LineSource,
    MapOptions, Marker, Origin, SkipReason,
};
use duellsync_store::Commit;
use duellsync_woo::Order;
use serde_json::Value;
use tracing::Instrument as _;

use crate::events;
use crate::resolve::{line_sku, Stop};
use crate::state::{
    Body, ImportPlan, Operation, OrderKey, OrderRecord, ParkIndex, PlannedLine, Stage,
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

fn store_err(e: duellsync_store::Error) -> HandleError {
    tracing::error!(error = %e, "state store failed");
    HandleError::retry(format!("state store: {e}"))
}

fn bus_err(e: duellsync_bus::Error) -> HandleError {
    HandleError::retry(format!("publishing: {e}"))
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses the raw order JSON of an observation: the typed order, and whether WooCommerce
/// computed taxes for it (the one thing read from the raw JSON). Both straight from the bytes,
/// without a `Value` tree in between: building and converting a whole order's tree per message
/// was a visible share of the importer's CPU.
fn parse(observed: &v1::OrderObserved) -> Result<(Order, Option<bool>), HandleError> {
    let order: Order = serde_json::from_slice(&observed.payload_json).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "is not JSON"
        } else {
            "is not a WooCommerce order"
        };
        HandleError::permanent(format!(
            "order {}: payload_json {what}: {e}",
            observed.order_id
        ))
    })?;
    let taxes_computed = taxes_computed_in_json(&observed.payload_json);
    if i64::try_from(order.id).ok() != Some(observed.order_id) || observed.order_id <= 0 {
        return Err(HandleError::permanent(format!(
            "order id {} in the event does not match id {} in payload_json",
            observed.order_id, order.id
        )));
    }
    Ok((order, taxes_computed))
}

fn modified_of(order: &Order) -> i64 {
    order
        .date_modified_gmt
        .map(|d| d.assume_utc().unix_timestamp())
        .unwrap_or(0)
}

pub(crate) fn policy(ctx: &StoreCtx) -> Policy {
    Policy {
        store: ctx.id().to_owned(),
        lookup: ctx.settings.duell.order_lookup,
        lookup_settle_ms: i64::try_from(ctx.config.lookup_settle.as_millis()).unwrap_or(i64::MAX),
        status_after_import: ctx
            .settings
            .status_after_import
            .clone()
            .filter(|s| !s.trim().is_empty()),
    }
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

/// The body a round works on.
struct Subject {
    observed: v1::OrderObserved,
    order: Order,
    /// `taxes_computed_in` of the raw JSON.
    taxes_computed: Option<bool>,
}

/// One round of work on one order (see the module docs).
pub(crate) struct Work<'a> {
    ctx: &'a StoreCtx,
    key: OrderKey,
    woo_order_id: i64,
    round: Round,
    policy: Policy,
    /// The meta of the fact that caused the round (events derive from it).
    cause: Meta,
    subject: Option<Subject>,
    /// A lazy save is waiting for the end of the round (or the next durable commit).
    unsaved: bool,
    /// The subject is the body of the message this round handles (not a stored body): until
    /// the round acks it, a crash brings the same body back by redelivery.
    subject_in_message: bool,
    /// No body is stored for the order (checked under its lock when an intent skipped it).
    body_absent: bool,
    /// The outcome's commit, queued and syncing while the post-import steps run; waited for
    /// before the round ends (see [`Work::persist`]).
    syncing: Option<duellsync_store::Synced>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(ctx: &'a StoreCtx, woo_order_id: i64, cause: Cause, meta: Meta) -> Self {
        Work {
            ctx,
            key: ctx.key(woo_order_id),
            woo_order_id,
            round: Round {
                woo_order_id,
                cause,
                now_ms: now_ms(),
                imported_here: false,
            },
            policy: policy(ctx),
            cause: meta,
            subject: None,
            unsaved: false,
            subject_in_message: false,
            body_absent: false,
            syncing: None,
        }
    }

    /// Runs the round from `input` until it finishes; the record is saved as the decisions
    /// say, and whatever is unsaved when the round ends (also by an error) is written then.
    pub(crate) async fn run(
        &mut self,
        record: OrderRecord,
        input: Input,
    ) -> Result<(), HandleError> {
        let mut rec = record;
        let mut result = self.steps(&mut rec, input).await;
        if let Some(synced) = self.syncing.take() {
            // The message is acked (and the round's lock let go) only once the outcome is on
            // disk.
            if let Err(e) = synced.wait().await {
                result = Err(store_err(e));
            }
        }
        if self.unsaved {
            let mut c = Commit::new();
            self.ctx.t.orders.put(&mut c, &self.key, &rec);
            if let Err(e) = self.ctx.state.commit_unflushed(c).await {
                // Only idempotent bookkeeping is lost: the next trigger repeats it.
                tracing::warn!(store = %self.ctx.id(), woo_order_id = self.woo_order_id, error = %e, "could not record the end of the round");
            }
            self.unsaved = false;
        }
        result
    }

    /// The newest observation changed the record: save it with the round.
    pub(crate) fn mark_unsaved(&mut self) {
        self.unsaved = true;
    }

    async fn steps(&mut self, rec: &mut OrderRecord, first: Input) -> Result<(), HandleError> {
        let mut input = first;
        for _ in 0..64 {
            self.round.now_ms = now_ms();
            let d = decide(rec, &self.round, &self.policy, input);
            self.persist(rec, &d).await?;
            self.noticed(rec, &d);
            *rec = d.record;
            input = match d.action {
                Action::Finish(f) => return finish(f),
                action => self.perform(rec, action).await?,
            };
        }
        Err(HandleError::permanent(format!(
            "bug: the import of order {} did not finish in 64 steps",
            self.woo_order_id
        )))
    }

    /// Saves the decision's record and keeps the side tables in step with its stage.
    ///
    /// Off the parked path the writes go as an in-order commit (no sled batch, two log writes
    /// fewer per commit): side-table entries are put before the record and removed after it, so
    /// a crash between the writes can only leave an `open` entry or a body that the record does
    /// not need, which [`recover_on_start`] clears. A park changes the parked index, which other
    /// triggers scan: that commit stays atomic.
    async fn persist(&mut self, old: &OrderRecord, d: &Decision) -> Result<(), HandleError> {
        let body = match d.body {
            KeepBody::Keep => None,
            KeepBody::Store => self.body_to_store(&d.record.stage)?,
            KeepBody::Drop if self.body_absent => None,
            KeepBody::Drop => Some(None),
        };
        let t = &self.ctx.t;
        let key = &self.key;
        let durable = matches!(d.save, Save::Durable | Save::DurableAtEnd);
        if d.save == Save::Lazy {
            // Written once when the round ends, or with the next commit of the round.
            self.unsaved = true;
        }
        let open = match (old.stage.open_attempt(), d.record.stage.open_attempt()) {
            (_, Some(a)) if durable => Some(Some(&a.id)),
            (Some(_), None) if d.save != Save::Keep => Some(None),
            _ => None,
        };
        let parked = match (&old.stage, &d.record.stage) {
            (_, Stage::Parked(p)) if d.save != Save::Keep => Some(Some(ParkIndex {
                missing_skus: p.missing_skus.clone(),
                missing_woo_ids: p.missing_woo_ids.clone(),
                retry_requested: false,
            })),
            (Stage::Parked(_), new) if !matches!(new, Stage::Parked(_)) => Some(None),
            _ => None,
        };
        if !durable && open.is_none() && parked.is_none() && body.is_none() {
            return Ok(());
        }
        // Side tables of a lazy step go out with the record they belong to.
        let record = std::mem::take(&mut self.unsaved) | durable;
        let mut c = if parked.is_some() {
            Commit::new()
        } else {
            Commit::in_order()
        };
        // Entries first, the record, then removals (see above).
        if let Some(Some(b)) = &body {
            t.bodies.put(&mut c, key, b);
        }
        if let Some(Some(id)) = open {
            t.open.put(&mut c, key, id);
        }
        if let Some(Some(p)) = &parked {
            t.parked.put(&mut c, key, p);
        }
        if record {
            t.orders.put(&mut c, key, &d.record);
        }
        if let Some(None) = parked {
            t.parked.remove(&mut c, key);
        }
        if let Some(None) = body {
            t.bodies.remove(&mut c, key);
        }
        if let Some(None) = open {
            t.open.remove(&mut c, key);
        }
        match d.save {
            // The sync runs while the steps after the outcome do; `run` waits for it.
            Save::DurableAtEnd => {
                let queued = self.ctx.state.commit_queued(c).map_err(store_err)?;
                if let Some(earlier) = self.syncing.replace(queued) {
                    earlier.wait().await.map_err(store_err)?;
                }
                Ok(())
            }
            Save::Durable => self.ctx.state.commit(c).await.map_err(store_err),
            Save::Keep | Save::Lazy => self.ctx.state.commit_unflushed(c).await.map_err(store_err),
        }
    }

    /// What a decision that keeps the body writes.
    ///
    /// An intent made from the body of the message being handled writes none when no body is
    /// stored: the message is not acked before the round ends, so a crash brings the same body
    /// back (a redelivery of the newest observation counts as fresh); a round that ends without
    /// the import either keeps the body itself (park, in doubt) or leaves its message unacked
    /// (retry), which brings the body back the same way. On the happy path that spares writing
    /// the whole order at the intent and removing it at the outcome. A stored body (older, or
    /// the one this round works on) is overwritten as before, so a stale trigger never finds an
    /// older body than the intent's.
    fn body_to_store(&mut self, stage: &Stage) -> Result<Option<Option<Body>>, HandleError> {
        let Some(s) = self.subject.as_ref() else {
            return Ok(None);
        };
        if matches!(stage, Stage::Intent { .. })
            && self.subject_in_message
            && !self.ctx.t.bodies.contains(&self.key).map_err(store_err)?
        {
            self.body_absent = true;
            return Ok(None);
        }
        self.body_absent = false;
        Ok(Some(Some(Body::of(&s.observed))))
    }

    /// Metrics and logs of transitions.
    fn noticed(&mut self, old: &OrderRecord, d: &Decision) {
        let id = self.ctx.id().to_owned();
        let woo_order_id = self.woo_order_id;
        if let (None, Some(imp)) = (old.stage.imported(), d.record.stage.imported()) {
            if imp.origin == Origin::Answer {
                self.round.imported_here = true;
            }
            let recovered = match imp.origin {
                Origin::Answer => "no",
                Origin::Lookup => "lookup",
                Origin::Marker => "marker",
                Origin::SyncLog => "sync_log",
            };
            metrics::counter!("duellsync_importer_orders_imported_total", "store" => id.clone(), "kind" => imp.operation.as_str(), "recovered" => recovered)
                .increment(1);
            match imp.origin {
                Origin::Marker => {
                    metrics::counter!("duellsync_importer_recovered_total", "store" => id.clone(), "how" => "marker").increment(1);
                    tracing::warn!(store = %self.ctx.id(), woo_order_id, duell_order_id = imp.duell_order_id, "the order carries the import marker: it is in DUELL already (imported before this ledger); nothing is sent");
                }
                Origin::Lookup => {
                    metrics::counter!("duellsync_importer_recovered_total", "store" => id.clone(), "how" => "lookup_found").increment(1);
                    tracing::info!(store = %self.ctx.id(), woo_order_id, duell_order_id = imp.duell_order_id, "order lookup found the order: recovered");
                }
                _ => {
                    tracing::info!(store = %self.ctx.id(), woo_order_id, attempt = %imp.attempt_id, operation = imp.operation.as_str(), duell_order_id = imp.duell_order_id, "imported into DUELL");
                }
            }
        }
        // Absent after an unknown outcome (a provable "not applied" finishes with a retry).
        if old.stage.open_attempt().is_some()
            && d.record.stage == Stage::Pending
            && !matches!(d.action, Action::Finish(Finish::Retry { .. }))
        {
            metrics::counter!("duellsync_importer_recovered_total", "store" => id, "how" => "lookup_absent").increment(1);
            tracing::warn!(store = %self.ctx.id(), woo_order_id, "order lookup: DUELL does not have the order; importing again");
        }
        if let (Stage::InDoubt(_), Stage::Pending) = (&old.stage, &d.record.stage) {
            tracing::warn!(store = %self.ctx.id(), woo_order_id, "operator replayed the in-doubt order: importing it again");
        }
    }

    fn subject(&self) -> Result<&Subject, HandleError> {
        self.subject.as_ref().ok_or_else(|| {
            HandleError::permanent(format!(
                "bug: order {} needs its body for this step and has none",
                self.woo_order_id
            ))
        })
    }

    async fn perform(&mut self, rec: &OrderRecord, action: Action) -> Result<Input, HandleError> {
        let ctx = self.ctx;
        let woo_order_id = self.woo_order_id;
        Ok(match action {
            Action::ReadWoo => Input::Read(self.read_woo(rec).await),
            Action::Plan => {
                let s = self.subject()?;
                Input::Planned(
                    match plan(ctx, woo_order_id, &s.order, s.taxes_computed).await {
                        Ok(p) => Planning::Ready(p),
                        Err(Stop::Park {
                            code,
                            reason,
                            missing_skus,
                            missing_woo_ids,
                        }) => Planning::Park {
                            code: code.to_owned(),
                            reason,
                            missing_skus,
                            missing_woo_ids,
                        },
                        Err(Stop::Retry { reason, after }) => Planning::Retry {
                            reason,
                            after_ms: ms(after),
                        },
                    },
                )
            }
            Action::Write(attempt) => {
                let s = self.subject()?;
                Input::Answered(write(ctx, woo_order_id, &s.order, &attempt).await)
            }
            Action::Lookup(attempt) => Input::LookedUp(lookup(ctx, woo_order_id, &attempt).await),
            Action::PublishInDoubt {
                attempt_id,
                operation,
                detail,
            } => {
                ctx.bus
                    .publish(&events::in_doubt(
                        ctx,
                        &self.cause,
                        woo_order_id,
                        operation.as_str(),
                        &attempt_id,
                        &detail,
                    ))
                    .await
                    .map_err(bus_err)?;
                tracing::error!(store = %ctx.id(), woo_order_id, attempt = %attempt_id, operation = operation.as_str(), detail = %detail, "order is IN DOUBT: never retried blindly; an operator decides");
                metrics::counter!("duellsync_importer_orders_in_doubt_total", "store" => ctx.id().to_owned(), "operation" => operation.as_str())
                    .increment(1);
                Input::Published(Published::InDoubt)
            }
            Action::PublishSkipped {
                status,
                reason,
                release,
            } => {
                if release.is_some() {
                    let s = self.subject()?;
                    let at = s
                        .observed
                        .meta
                        .as_ref()
                        .map(|m| m.observed_at_ms)
                        .filter(|t| *t > 0)
                        .unwrap_or_else(now_ms);
                    let cause = events::cause_of(ctx, woo_order_id, s.observed.meta.as_ref());
                    ctx.bus
                        .publish(&events::hold_released_unimported(ctx, &cause, &s.order, at))
                        .await
                        .map_err(bus_err)?;
                }
                if let Some(status) = &status {
                    let cause = events::cause_of(
                        ctx,
                        woo_order_id,
                        self.subject.as_ref().and_then(|s| s.observed.meta.as_ref()),
                    );
                    ctx.bus
                        .publish(&events::skipped(
                            ctx,
                            &cause,
                            woo_order_id,
                            status,
                            &reason.to_string(),
                        ))
                        .await
                        .map_err(bus_err)?;
                    metrics::counter!("duellsync_importer_orders_skipped_total", "store" => ctx.id().to_owned(), "reason" => reason.code())
                        .increment(1);
                    tracing::info!(store = %ctx.id(), woo_order_id, status = %status, reason = %reason, "order not imported");
                }
                Input::Published(Published::Skipped {
                    status,
                    released: release,
                })
            }
            Action::PublishParked { parked, new_cause } => {
                ctx.bus
                    .publish(&events::parked(
                        ctx,
                        &self.cause,
                        woo_order_id,
                        &parked.code,
                        &parked.reason,
                        &parked.missing_skus,
                        &parked.missing_woo_ids,
                    ))
                    .await
                    .map_err(bus_err)?;
                if new_cause {
                    metrics::counter!("duellsync_importer_orders_parked_total", "store" => ctx.id().to_owned(), "code" => parked.code.clone())
                        .increment(1);
                }
                tracing::warn!(store = %ctx.id(), woo_order_id, code = %parked.code, reason = %parked.reason, "order parked: needs attention");
                Input::Published(Published::Parked)
            }
            Action::Announce { note } => {
                let Some(imp) = rec.stage.imported() else {
                    return Err(HandleError::permanent("bug: announce without an import"));
                };
                let imported = events::imported(ctx, &self.cause, woo_order_id, imp);
                let hold = events::hold_after_import(ctx, &self.cause, woo_order_id, imp);
                let add_note = futures::future::OptionFuture::from(note.map(|check_first| {
                    crate::woo_side::add_note(ctx, woo_order_id, imp, check_first)
                }));
                let (a, b, note) =
                    tokio::join!(ctx.bus.publish(&imported), ctx.bus.publish(&hold), add_note);
                a.map_err(bus_err)?;
                b.map_err(bus_err)?;
                Input::Announced { note }
            }
            Action::WriteWoo { status, marker } => {
                Input::Woo(crate::woo_side::write_marker(ctx, woo_order_id, status, marker).await)
            }
            Action::AddNote { check_first } => {
                let Some(imp) = rec.stage.imported() else {
                    return Err(HandleError::permanent("bug: a note without an import"));
                };
                Input::Woo(crate::woo_side::add_note(ctx, woo_order_id, imp, check_first).await)
            }
            Action::ReleaseHold {
                effective_at_ms,
                reason,
            } => {
                let Some(imp) = rec.stage.imported() else {
                    return Err(HandleError::permanent("bug: a release without an import"));
                };
                ctx.bus
                    .publish(&events::hold_released_by_status(
                        ctx,
                        &self.cause,
                        woo_order_id,
                        imp,
                        effective_at_ms,
                        reason,
                    ))
                    .await
                    .map_err(bus_err)?;
                Input::Published(Published::HoldReleased)
            }
            Action::Finish(_) => unreachable!("finish ends the round before perform"),
        })
    }

    /// The order as WooCommerce shows it now: its import marker, and its current status judged
    /// against the store's settings.
    async fn read_woo(&self, rec: &OrderRecord) -> WooRead {
        let ctx = self.ctx;
        let observation_id = self
            .subject
            .as_ref()
            .and_then(|s| s.observed.meta.as_ref())
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        let Ok(id) = u64::try_from(self.woo_order_id) else {
            return WooRead::Failed {
                reason: "not a WooCommerce order id".into(),
                after_ms: None,
            };
        };
        // Only what the marker and the eligibility need: a tenth of the whole order.
        match ctx.woo.get_order_fields(id, FRESH_READ_FIELDS).await {
            Ok(order) => match Marker::read(&order.meta_data) {
                Some(m) => WooRead::Marked(m),
                None => WooRead::Unmarked(Judged {
                    status: order.status.clone(),
                    eligible: eligibility(&order, &ctx.settings),
                    observation_id,
                }),
            },
            // The order's own 404 (not a wrong route or URL, which would skip every order).
            Err(e) if e.code() == Some("woocommerce_rest_shop_order_invalid_id") => {
                WooRead::Unmarked(Judged {
                    status: rec.newest.status.clone(),
                    eligible: Err(SkipReason::Gone),
                    observation_id,
                })
            }
            Err(e) => WooRead::Failed {
                reason: e.to_string(),
                after_ms: None,
            },
        }
    }
}

/// The fields of the fresh read before an intent.
pub(crate) const FRESH_READ_FIELDS: &[&str] = &[
    "id",
    "number",
    "status",
    "date_created_gmt",
    "date_modified_gmt",
    "meta_data",
];

fn finish(f: Finish) -> Result<(), HandleError> {
    match f {
        Finish::Ack => Ok(()),
        Finish::Retry { reason, after_ms } => Err(HandleError::Retry {
            reason,
            after: after_ms.map(Duration::from_millis),
        }),
        Finish::DeadLetter(reason) => Err(HandleError::permanent(reason)),
    }
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
        process(ctx, inc, parsed).await
    }
    .instrument(span)
    .await
}

async fn process(
    ctx: &StoreCtx,
    inc: Incoming,
    (incoming_order, incoming_taxes): (Order, Option<bool>),
) -> Result<(), HandleError> {
    let woo_order_id = inc.observed.order_id;
    let key = ctx.key(woo_order_id);
    let mut rec = ctx
        .t
        .orders
        .get(&key)
        .map_err(store_err)?
        .unwrap_or_default();
    let observation_id = inc
        .observed
        .meta
        .as_ref()
        .map(|m| m.event_id.clone())
        .unwrap_or_default();
    // Newest observation first: decisions are made on the newest body, whatever triggered us.
    let fresh = rec.observe(
        modified_of(&incoming_order),
        &incoming_order.status,
        &observation_id,
    );
    let imported = rec.stage.imported().is_some();
    if imported && fresh && is_abandoned_status(&incoming_order.status) {
        tracing::warn!(store = %ctx.id(), woo_order_id, status = %incoming_order.status,
            "order changed to {} in WooCommerce after its import; the DUELL order stays until a person changes it", incoming_order.status);
    }
    let subject = if fresh || imported {
        Subject {
            observed: inc.observed.clone(),
            order: incoming_order,
            taxes_computed: incoming_taxes,
        }
    } else {
        match ctx
            .t
            .bodies
            .get(&key)
            .map_err(store_err)?
            .and_then(|b| b.decode())
        {
            Some(b) => {
                let (order, taxes_computed) = parse(&b)?;
                Subject {
                    observed: b,
                    order,
                    taxes_computed,
                }
            }
            None => {
                // Older than the newest observation, which was not importable (no body kept).
                tracing::debug!(store = %ctx.id(), woo_order_id, "stale observation; nothing to do");
                if inc.replay {
                    return Err(HandleError::permanent(format!(
                        "order {woo_order_id} has changed since this message (now {}); nothing to import",
                        rec.newest.status
                    )));
                }
                return Ok(());
            }
        }
    };
    let judged = Judged {
        status: subject.order.status.clone(),
        eligible: eligibility(&subject.order, &ctx.settings),
        observation_id: subject
            .observed
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default(),
    };
    let cause = events::cause_of(ctx, woo_order_id, Some(&inc.message_meta));
    let mut work = Work::new(
        ctx,
        woo_order_id,
        Cause::Message {
            event_id: inc.message_meta.event_id.clone(),
            replay: inc.replay,
        },
        cause,
    );
    work.subject_in_message = fresh || imported;
    work.subject = Some(subject);
    if fresh {
        work.mark_unsaved();
    }
    work.run(rec, Input::Triggered(judged)).await
}

/// Resolves everything the DUELL write needs. Reads DUELL; may create the customer, missing
/// products and the shipping/fee products (each looked up first, so a retry creates nothing
/// twice).
async fn plan(
    ctx: &StoreCtx,
    woo_order_id: i64,
    order: &Order,
    taxes_computed: Option<bool>,
) -> Result<ImportPlan, Stop> {
    let op = operation(ctx);
    let opts = MapOptions {
        taxes_computed,
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
fn classify(plan: &ImportPlan, reference: &str, result: duellsync_duell::Result<Saved>) -> Answer {
    let at_ms = now_ms();
    match result {
        Ok(Saved::Order(outcome)) => {
            let row = outcome
                .order_for(reference)
                .or_else(|| (outcome.data.len() == 1).then(|| &outcome.data[0]));
            match row {
                Some(o) => Answer::Applied {
                    order_id: i64::try_from(o.order_id.0).unwrap_or(i64::MAX),
                    order_number: o.order_number.clone(),
                    refused: None,
                    at_ms,
                },
                None if outcome.data.is_empty()
                    && outcome.total_affected.unwrap_or(0) == 0
                    && outcome.validation.is_some() =>
                {
                    Answer::NotApplied {
                        reason: format!(
                            "DUELL refused the order: {}",
                            outcome
                                .validation
                                .as_ref()
                                .map(|v| v.to_string())
                                .unwrap_or_default()
                        ),
                        rejected: true,
                        after_ms: None,
                    }
                }
                None => Answer::Unknown {
                    detail: format!(
                        "DUELL answered without the created order (total_affected {:?}, {} rows)",
                        outcome.total_affected,
                        outcome.data.len()
                    ),
                },
            }
        }
        Ok(Saved::Stock(outcome)) => {
            let refused = outcome.validation.as_ref().filter(|v| !v.is_empty());
            match refused {
                None => Answer::Applied {
                    order_id: 0,
                    order_number: String::new(),
                    refused: None,
                    at_ms,
                },
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
                        Answer::NotApplied {
                            reason: format!("DUELL refused the stock deduction: {v}"),
                            rejected: true,
                            after_ms: None,
                        }
                    } else {
                        Answer::Applied {
                            order_id: 0,
                            order_number: String::new(),
                            refused: Some(v.to_string()),
                            at_ms,
                        }
                    }
                }
            }
        }
        Err(e) => match e.action() {
            DuellAction::RetryLater => Answer::NotApplied {
                after_ms: ms(e.retry_after()),
                reason: e.to_string(),
                rejected: false,
            },
            DuellAction::FixConfiguration => Answer::NotApplied {
                reason: e.to_string(),
                rejected: false,
                after_ms: None,
            },
            DuellAction::Reject => Answer::NotApplied {
                reason: e.to_string(),
                rejected: true,
                after_ms: None,
            },
            // A write answered with something unreadable may have been applied.
            DuellAction::ResolveInDoubt | DuellAction::Investigate => Answer::Unknown {
                detail: e.to_string(),
            },
        },
    }
}

/// The DUELL write of an attempt. Its intent is on disk; everything the call needs is built
/// from the attempt's plan, and nothing else is awaited before the call.
async fn write(
    ctx: &StoreCtx,
    woo_order_id: i64,
    order: &Order,
    attempt: &duellsync_orders::Attempt,
) -> Answer {
    let plan = &attempt.plan;
    let op = plan.operation;
    let reference = woo_order_id.to_string();
    let result = match op {
        Operation::CustomerOrder | Operation::SalesOrder => {
            let request = new_order(ctx, woo_order_id, order, plan);
            let department = duellsync_clients::order_department(&ctx.settings);
            let call = async {
                if op == Operation::CustomerOrder {
                    ctx.duell
                        .save_customer_orders(&department, std::slice::from_ref(&request))
                        .await
                } else {
                    ctx.duell
                        .save_sales_orders(&department, std::slice::from_ref(&request))
                        .await
                }
            };
            crate::resolve::timed(ctx.id(), op.endpoint(), call)
                .await
                .map(Saved::Order)
        }
        Operation::AdjustStock => {
            let adjustments: Vec<StockAdjustment> = plan
                .lines
                .iter()
                .filter(|l| l.product_line)
                .map(|l| StockAdjustment {
                    product_number: l.product_number.clone(),
                    quantity: l.quantity,
                })
                .collect();
            let department = duellsync_clients::stock_department(&ctx.settings);
            crate::resolve::timed(
                ctx.id(),
                op.endpoint(),
                ctx.duell.adjust_stock(&department, &adjustments),
            )
            .await
            .map(Saved::Stock)
        }
    };
    let answer = classify(plan, &reference, result);
    let refused = match &answer {
        Answer::NotApplied { rejected, .. } => *rejected,
        Answer::Applied { refused, .. } => refused.is_some(),
        Answer::Unknown { .. } => false,
    };
    if refused {
        // A product or customer it named may be gone: the retry resolves them afresh.
        ctx.lookups.forget_all();
    }
    if let Answer::Unknown { detail } = &answer {
        tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %attempt.id, operation = op.as_str(), detail = %detail, "outcome of the DUELL write is unknown");
    }
    answer
}

/// Asks DUELL's order lookup (UNVERIFIED against real DUELL) for the attempt's order.
async fn lookup(ctx: &StoreCtx, woo_order_id: i64, attempt: &duellsync_orders::Attempt) -> Lookup {
    let op = attempt.plan.operation;
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
        Ok(list) => match list.iter().min_by_key(|o| o.order_id.0) {
            Some(o) => {
                if list.len() > 1 {
                    tracing::error!(store = %ctx.id(), woo_order_id, count = list.len(), "DUELL holds several orders for this WooCommerce order; using the lowest id");
                }
                Lookup::Found {
                    order_id: i64::try_from(o.order_id.0).unwrap_or(i64::MAX),
                    order_number: o.order_number.clone(),
                }
            }
            None => Lookup::NotFound,
        },
        Err(e) => Lookup::Failed {
            reason: e.to_string(),
            refused: e.action() == DuellAction::Reject,
            after_ms: ms(e.retry_after()),
        },
    }
}

/// Settles attempts left unresolved by a crash, at start-up, before their messages come back
/// (those are redelivered: the crash kept them from being acked).
pub(crate) async fn recover_on_start(ctx: &StoreCtx) -> anyhow::Result<()> {
    let open: Vec<(OrderKey, String)> =
        ctx.t.open.iter_group(ctx.id()).collect::<Result<_, _>>()?;
    for (key, attempt_id) in open {
        let woo_order_id = key.1;
        let _guard = ctx.locks.lock(woo_order_id).await;
        let rec = ctx.t.orders.get(&key)?;
        let imported = rec.as_ref().is_some_and(|r| r.stage.imported().is_some());
        let Some(rec) = rec.filter(|r| r.stage.open_attempt().is_some()) else {
            // A crash between the writes of an in-order commit (`Work::persist`): the entry
            // was put before an intent that never got saved, or the outcome was saved and the
            // entry (and the body after it) not yet removed.
            let mut c = Commit::in_order();
            if imported {
                ctx.t.bodies.remove(&mut c, &key);
            }
            ctx.t.open.remove(&mut c, &key);
            ctx.state.commit(c).await?;
            tracing::info!(store = %ctx.id(), woo_order_id, "cleared an attempt entry its order no longer needs");
            continue;
        };
        tracing::warn!(store = %ctx.id(), woo_order_id, attempt = %attempt_id, "found an attempt without outcome after a restart; resolving it");
        let cause = events::cause_of(ctx, woo_order_id, None);
        let mut work = Work::new(ctx, woo_order_id, Cause::Restart, cause);
        if let Err(e) = work.run(rec, Input::Restarted).await {
            tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "cannot resolve the attempt now; the redelivery will");
        }
    }
    Ok(())
}

/// Starts a round for a DUELL status change of an imported order (stock hold release).
pub(crate) async fn duell_released(
    ctx: &StoreCtx,
    woo_order_id: i64,
    cause: Meta,
    input: Input,
) -> Result<(), HandleError> {
    let key = ctx.key(woo_order_id);
    let Some(rec) = ctx.t.orders.get(&key).map_err(store_err)? else {
        tracing::warn!(store = %ctx.id(), woo_order_id, "DUELL status of an order this importer does not know");
        return Ok(());
    };
    let mut work = Work::new(ctx, woo_order_id, Cause::DuellStatus, cause);
    work.run(rec, input).await
}
