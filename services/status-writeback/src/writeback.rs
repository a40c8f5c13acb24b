//! DUELL order status → WooCommerce order status (SPEC §3.3).
//!
//! For each `duell.<store>.order_status.observed`:
//! 1. skip an event already handled (ledger), unless an operator replays it;
//! 2. map the DUELL status through `status_map`; unmapped → nothing;
//! 3. the order must have been imported here as a customer order (else retry: the import fact
//!    is on another stream and may be a moment behind);
//! 4. a status the engine already wrote to this order is never written again;
//! 5. read the WooCommerce order; settle an earlier write whose outcome was not recorded;
//! 6. already there → nothing; a final status (completed / cancelled / refunded) → conflict;
//!    backwards → conflict (rules in `duellsync_orders::status`);
//! 7. before `completed`: WooCommerce's total must still equal the total at import, else the
//!    order is parked (conflict `total_mismatch` + dead letter with the reason);
//! 8. record the intent, write the status, add the order note, publish `OrderStatusWritten`,
//!    commit (with the ledger entry), ack.
//!
//! Exactly once: a status is written at most once per order (`Progress.written`), redeliveries
//! stop at the ledger, and a crash between the write and the commit is settled on the next
//! delivery by reading WooCommerce (the PUT itself is harmless to repeat: a second `completed`
//! neither captures again nor adds a note).

use std::time::Instant;

use duellsync_bus::{Delivery, HandleError};
use duellsync_events::{caused_meta, order_correlation, v1, EventId, Meta};
use duellsync_orders::status::{normalize_status, plan_status_move, StatusMove};
use duellsync_store::Commit;
use rust_decimal::Decimal;
use tracing::Instrument;

use crate::state::{OrderKey, Pending, Progress, Written};
use crate::{StoreCtx, SERVICE};

/// How a status event ended, a metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written,
    AlreadyWritten,
    AlreadyInWoo,
    Unmapped,
    NotCustomerOrder,
    Redelivered,
    Conflict(&'static str),
    /// Needs a person: recorded as a conflict and dead-lettered with the reason.
    Parked {
        code: &'static str,
        reason: String,
    },
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::AlreadyWritten => "already_written",
            Outcome::AlreadyInWoo => "already_in_woo",
            Outcome::Unmapped => "unmapped",
            Outcome::NotCustomerOrder => "not_customer_order",
            Outcome::Redelivered => "redelivered",
            Outcome::Conflict(code) | Outcome::Parked { code, .. } => code,
        }
    }
}

/// Conflict codes (`OrderStatusConflict.code`).
pub(crate) mod code {
    pub const BACKWARDS: &str = "backwards";
    pub const FINAL_BY_PERSON: &str = "final_status_set_by_person";
    /// The final status in WooCommerce is one the engine wrote itself (e.g. DUELL completed,
    /// then cancelled): still never overridden, but nobody in the shop decided it.
    pub const FINAL_BY_ENGINE: &str = "final_status_written_by_engine";
    pub const TOTAL_MISMATCH: &str = "total_mismatch";
    pub const ORDER_MISSING: &str = "order_missing";
}

/// DUELL's customer-order status labels (reference §7), for notes and logs.
pub(crate) fn duell_label(status: i32) -> String {
    let label = match status {
        1 => "Behandles",
        2 => "Venter",
        3 => "Sendt",
        4 => "Mottatt",
        5 => "Fullført",
        6 => "Fakturert",
        7 => "Betalt",
        8 => "Kansellert",
        9 => "Under bestilling",
        10 => "Klar for plukking",
        11 => "Ferdig plukket",
        other => return format!("status {other}"),
    };
    label.to_owned()
}

/// The order note that tells the shop why its order moved.
pub(crate) fn note_text(duell_status: i32) -> String {
    format!("Status from DUELL: {}", duell_label(duell_status))
}

/// Handles one `OrderStatusObserved` delivery.
pub(crate) async fn on_status(ctx: &StoreCtx, d: &Delivery) -> Result<(), HandleError> {
    let ev: v1::OrderStatusObserved = d.decode()?;
    let event_id = ev
        .meta
        .as_ref()
        .map(|m| m.event_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| d.event_id().to_owned());
    if event_id.is_empty() {
        return Err(HandleError::permanent("status event without an event id"));
    }
    if ev.woo_order_id <= 0 {
        return Err(HandleError::permanent(format!(
            "status event {event_id} names no WooCommerce order ({})",
            ev.woo_order_id
        )));
    }
    let mut cause = ev.meta.clone().unwrap_or_default();
    if cause.store.is_empty() {
        cause.store = ctx.id.clone();
    }
    if cause.correlation_id.is_empty() {
        cause.correlation_id = order_correlation(&ctx.id, ev.woo_order_id);
    }
    cause.event_id = event_id;
    let span = tracing::info_span!(
        "status_writeback",
        store = %ctx.id,
        woo_order_id = ev.woo_order_id,
        duell_status = ev.status_id,
        target = tracing::field::Empty,
        woo_status = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let job = Job {
        ctx,
        key: (ctx.id.clone(), ev.woo_order_id),
        ev,
        cause,
    };
    let result = job.run(d.is_replay()).instrument(span.clone()).await;
    let label = match &result {
        Ok(o) => o.as_str(),
        Err(HandleError::Retry { .. }) => "retry",
        Err(HandleError::Permanent { .. }) => "failed",
    };
    span.record("outcome", label);
    metrics::counter!(
        "duellsync_writeback_status_events_total",
        "store" => ctx.id.clone(),
        "outcome" => label
    )
    .increment(1);
    match result? {
        // Dead-lettering is how a parked order reaches `syncctl dlq` with its reason.
        Outcome::Parked { reason, .. } => Err(HandleError::permanent(reason)),
        _ => Ok(()),
    }
}

struct Job<'a> {
    ctx: &'a StoreCtx,
    key: OrderKey,
    ev: v1::OrderStatusObserved,
    /// The status event's meta (store, id and correlation filled in).
    cause: Meta,
}

fn state_error(e: duellsync_store::Error) -> HandleError {
    HandleError::retry(format!("local state: {e}"))
}

impl Job<'_> {
    fn order_id(&self) -> i64 {
        self.ev.woo_order_id
    }

    fn event_id(&self) -> &str {
        &self.cause.event_id
    }

    async fn run(&self, replay: bool) -> Result<Outcome, HandleError> {
        let ctx = self.ctx;
        let ledger = ctx.state.ledger();
        if !replay && ledger.seen(self.event_id()).map_err(state_error)? {
            return Ok(Outcome::Redelivered);
        }
        let Some(target) = ctx.status_map.get(&self.ev.status_id) else {
            tracing::debug!("DUELL status not in status_map; nothing to write");
            self.commit().await?;
            return Ok(Outcome::Unmapped);
        };
        let target = normalize_status(target);
        tracing::Span::current().record("target", target.as_str());

        let Some(imported) = ctx.imported.get(&self.key).map_err(state_error)? else {
            return Err(HandleError::retry(format!(
                "WooCommerce order {} has no OrderImported here (yet)",
                self.order_id()
            )));
        };
        if imported.kind != v1::order_imported::Kind::CustomerOrder as i32 {
            tracing::info!("not a DUELL customer order; its status is not written back");
            self.commit().await?;
            return Ok(Outcome::NotCustomerOrder);
        }
        let mut progress = ctx
            .progress
            .get(&self.key)
            .map_err(state_error)?
            .unwrap_or_default();
        if progress.pending.is_none() && progress.written.contains_key(&target) {
            self.commit().await?;
            return Ok(Outcome::AlreadyWritten);
        }

        let order = match self.woo_get_order().await {
            Ok(o) => o,
            Err(e) if is_missing_order(&e) => {
                self.conflict("", &target, code::ORDER_MISSING, format!(
                    "WooCommerce order {} does not exist any more; DUELL status {} ({}) not written",
                    self.order_id(),
                    self.ev.status_id,
                    duell_label(self.ev.status_id)
                ))
                .await?;
                self.commit().await?;
                return Ok(Outcome::Conflict(code::ORDER_MISSING));
            }
            Err(e) => return Err(woo_failure("read order", &e)),
        };
        let current = normalize_status(&order.status);
        tracing::Span::current().record("woo_status", current.as_str());

        // An earlier attempt recorded its intent but not its outcome (crash, failed note).
        if let Some(p) = progress.pending.clone() {
            if current == p.target {
                self.complete_write(&p, &mut progress, true).await?;
            } else {
                tracing::info!(intended = %p.target, woo_status = %current, "an earlier write did not land; forgetting it");
                progress.pending = None;
                let mut c = Commit::new();
                ctx.progress.put(&mut c, &self.key, &progress);
                ctx.state.commit(c).await.map_err(state_error)?;
            }
        }
        if progress.written.contains_key(&target) {
            self.commit().await?;
            return Ok(Outcome::AlreadyWritten);
        }

        match plan_status_move(&current, &target) {
            StatusMove::AlreadyThere => {
                tracing::info!("WooCommerce already has the status; nothing to write");
                self.commit().await?;
                Ok(Outcome::AlreadyInWoo)
            }
            StatusMove::FinalDecision => {
                let code = if progress.written.contains_key(&current) {
                    code::FINAL_BY_ENGINE
                } else {
                    code::FINAL_BY_PERSON
                };
                self.conflict(&current, &target, code, format!(
                    "WooCommerce order {} is {current}, a final status; DUELL status {} ({}) would make it {target}",
                    self.order_id(),
                    self.ev.status_id,
                    duell_label(self.ev.status_id)
                ))
                .await?;
                self.commit().await?;
                Ok(Outcome::Conflict(code))
            }
            StatusMove::Backwards => {
                self.conflict(&current, &target, code::BACKWARDS, format!(
                    "WooCommerce order {} is {current}; DUELL status {} ({}) would move it back to {target}",
                    self.order_id(),
                    self.ev.status_id,
                    duell_label(self.ev.status_id)
                ))
                .await?;
                self.commit().await?;
                Ok(Outcome::Conflict(code::BACKWARDS))
            }
            StatusMove::Write => {
                if target == "completed" {
                    if let Some(reason) = self
                        .check_total(&imported.total, order.total, &current)
                        .await?
                    {
                        return Ok(Outcome::Parked {
                            code: code::TOTAL_MISMATCH,
                            reason,
                        });
                    }
                }
                self.write(&current, &target, &mut progress).await?;
                Ok(Outcome::Written)
            }
        }
    }

    /// Completing captures the payment, so it is only done for the order DUELL has: the same
    /// total as at import. Otherwise the conflict is recorded and the reason returned: the
    /// order is parked for a person.
    async fn check_total(
        &self,
        imported_total: &str,
        woo_total: Decimal,
        current: &str,
    ) -> Result<Option<String>, HandleError> {
        let imported: Option<Decimal> = imported_total.trim().parse().ok();
        if imported == Some(woo_total) {
            return Ok(None);
        }
        let reason = match imported {
            Some(t) => format!(
                "WooCommerce order {} total is {woo_total} but {t} was imported into DUELL; not completed (payment would be captured for a different amount). Fix the order, then `syncctl dlq replay`",
                self.order_id()
            ),
            None => format!(
                "WooCommerce order {} was imported without a readable total ({imported_total:?}); not completed. Check the order, then `syncctl dlq replay`",
                self.order_id()
            ),
        };
        self.conflict(current, "completed", code::TOTAL_MISMATCH, reason.clone())
            .await?;
        Ok(Some(reason))
    }

    /// Records the intent, writes the status, notes it, publishes and commits.
    async fn write(
        &self,
        current: &str,
        target: &str,
        progress: &mut Progress,
    ) -> Result<(), HandleError> {
        let ctx = self.ctx;
        let pending = Pending {
            target: target.to_owned(),
            from: current.to_owned(),
            duell_status: self.ev.status_id,
            cause_event_id: self.event_id().to_owned(),
            correlation_id: self.cause.correlation_id.clone(),
        };
        progress.pending = Some(pending.clone());
        let mut c = Commit::new();
        ctx.progress.put(&mut c, &self.key, progress);
        ctx.state.commit(c).await.map_err(state_error)?;

        let started = Instant::now();
        let result = ctx
            .woo
            .update_order_status(self.order_id() as u64, target)
            .await;
        observe_call(ctx, "update_status", started, &result);
        if let Err(e) = result {
            let failure = woo_failure("write status", &e);
            if matches!(failure, HandleError::Permanent { .. }) {
                // WooCommerce refused the status itself (e.g. a status the shop does not have):
                // nothing was written, so the intent goes.
                progress.pending = None;
                let mut c = Commit::new();
                ctx.progress.put(&mut c, &self.key, progress);
                ctx.state.commit(c).await.map_err(state_error)?;
            }
            return Err(failure);
        }
        self.complete_write(&pending, progress, false).await
    }

    /// Adds the note (checking first when recovering), publishes `OrderStatusWritten` and
    /// commits the written status, the cleared intent and the ledger entry at once.
    async fn complete_write(
        &self,
        p: &Pending,
        progress: &mut Progress,
        recovering: bool,
    ) -> Result<(), HandleError> {
        let ctx = self.ctx;
        let id = self.order_id() as u64;
        let note = note_text(p.duell_status);
        let noted = if recovering {
            let started = Instant::now();
            let notes = ctx.woo.list_order_notes(id).await;
            observe_call(ctx, "list_notes", started, &notes);
            notes
                .map_err(|e| woo_failure("list notes", &e))?
                .iter()
                .any(|n| n.note.trim() == note)
        } else {
            false
        };
        if !noted {
            let started = Instant::now();
            let added = ctx.woo.add_order_note(id, &note, false).await;
            observe_call(ctx, "add_note", started, &added);
            // The status is written; without its note the next delivery settles the intent
            // and checks the notes before adding one (a note is not safe to repeat blindly).
            added.map_err(|e| woo_failure("add note", &e))?;
        }

        let written_id = EventId::new("order-status-written", &ctx.id)
            .int(self.order_id())
            .str(&p.target)
            .finish();
        let cause = Meta {
            event_id: p.cause_event_id.clone(),
            correlation_id: p.correlation_id.clone(),
            ..self.cause.clone()
        };
        let ev = v1::OrderStatusWritten {
            meta: Some(caused_meta(&cause, written_id, SERVICE)),
            woo_order_id: self.order_id(),
            from_status: p.from.clone(),
            to_status: p.target.clone(),
            duell_status_id: p.duell_status,
        };
        ctx.bus
            .publish(&ev)
            .await
            .map_err(|e| HandleError::retry(format!("publish OrderStatusWritten: {e}")))?;

        progress.written.insert(
            p.target.clone(),
            Written {
                from: p.from.clone(),
                duell_status: p.duell_status,
                cause_event_id: p.cause_event_id.clone(),
                at_ms: duellsync_events::now_ms(),
            },
        );
        progress.pending = None;
        let mut c = Commit::new();
        ctx.progress.put(&mut c, &self.key, progress);
        ctx.state.ledger().record(&mut c, &p.cause_event_id);
        ctx.state.commit(c).await.map_err(state_error)?;
        metrics::counter!(
            "duellsync_writeback_written_total",
            "store" => ctx.id.clone(),
            "status" => p.target.clone()
        )
        .increment(1);
        tracing::info!(
            woo_order_id = self.order_id(),
            from = %p.from,
            to = %p.target,
            duell_status = p.duell_status,
            recovered = recovering,
            "WooCommerce order status written"
        );
        Ok(())
    }

    /// Records this event as handled.
    async fn commit(&self) -> Result<(), HandleError> {
        let mut c = Commit::new();
        self.ctx.state.ledger().record(&mut c, self.event_id());
        self.ctx.state.commit(c).await.map_err(state_error)
    }

    async fn conflict(
        &self,
        woo_status: &str,
        wanted: &str,
        code: &'static str,
        reason: String,
    ) -> Result<(), HandleError> {
        tracing::warn!(code, reason = %reason, "status not written");
        let id = EventId::new("order-status-conflict", &self.ctx.id)
            .str(self.event_id())
            .str(code)
            .finish();
        let ev = v1::OrderStatusConflict {
            meta: Some(caused_meta(&self.cause, id, SERVICE)),
            woo_order_id: self.order_id(),
            woo_status: woo_status.to_owned(),
            wanted_status: wanted.to_owned(),
            code: code.to_owned(),
            reason,
        };
        self.ctx
            .bus
            .publish(&ev)
            .await
            .map_err(|e| HandleError::retry(format!("publish OrderStatusConflict: {e}")))?;
        Ok(())
    }

    async fn woo_get_order(&self) -> duellsync_woo::Result<duellsync_woo::Order> {
        let started = Instant::now();
        let r = self.ctx.woo.get_order(self.order_id() as u64).await;
        observe_call(self.ctx, "get_order", started, &r);
        r
    }
}

fn is_missing_order(e: &duellsync_woo::Error) -> bool {
    e.status() == Some(404) && e.code() == Some("woocommerce_rest_shop_order_invalid_id")
}

/// What a failed WooCommerce call means for the event: wait and retry, or dead-letter.
fn woo_failure(what: &str, e: &duellsync_woo::Error) -> HandleError {
    use duellsync_woo::ErrorKind;
    let reason = format!("woocommerce {what}: {e}");
    match e.kind() {
        ErrorKind::Transient => match e.retry_after() {
            Some(after) => HandleError::retry_after(reason, after),
            None => HandleError::retry(reason),
        },
        // Credentials, URL or a plugin in the way: an operator fixes it; until then the event
        // waits (and lands in the dead-letter stream with this reason if it takes too long).
        ErrorKind::Configuration | ErrorKind::OutcomeUnknown => HandleError::retry(reason),
        ErrorKind::Permanent => HandleError::permanent(reason),
    }
}

fn observe_call<T>(
    ctx: &StoreCtx,
    call: &'static str,
    started: Instant,
    result: &duellsync_woo::Result<T>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => match e.kind() {
            duellsync_woo::ErrorKind::Transient => "transient",
            duellsync_woo::ErrorKind::Permanent => "permanent",
            duellsync_woo::ErrorKind::Configuration => "configuration",
            duellsync_woo::ErrorKind::OutcomeUnknown => "outcome_unknown",
        },
    };
    metrics::counter!(
        "duellsync_writeback_woo_requests_total",
        "store" => ctx.id.clone(),
        "call" => call,
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "duellsync_writeback_woo_request_duration_seconds",
        "call" => call
    )
    .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_duell_status() {
        assert_eq!(note_text(5), "Status from DUELL: Fullført");
        assert_eq!(note_text(8), "Status from DUELL: Kansellert");
        assert_eq!(note_text(42), "Status from DUELL: status 42");
    }
}
