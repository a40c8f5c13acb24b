//! The import lifecycle of one WooCommerce order as a state machine: [`decide`] takes the
//! order's ledger entry ([`OrderRecord`], whose [`Stage`] is the state), what just happened
//! ([`Input`]) and returns what to do next ([`Decision`]: the new record, how to save it, and
//! one [`Action`]). It does no IO; the order importer is the shell that saves, performs the
//! action and feeds its result back in, until the action is [`Action::Finish`].
//!
//! The rules that keep "one WooCommerce order → at most one DUELL write":
//! - a DUELL write is only ever the action of a decision whose record (stage
//!   [`Stage::Intent`]) is saved [`Save::Durable`] — on disk before the write leaves;
//! - an attempt without outcome (a crash, an unknown answer) is never written again: it is
//!   settled by the order lookup, or flagged in doubt for an operator;
//! - before a new intent the order is read fresh from WooCommerce ([`Action::ReadWoo`]), and an
//!   import marker there means it was imported already (by an importer whose state is gone);
//! - the outcome is saved durably before the round ends ([`Save::DurableAtEnd`]); what follows
//!   it (events, WooCommerce status, marker, note) is idempotent, may run while the outcome
//!   syncs, and is saved [`Save::Lazy`]. A crash before that sync leaves the attempt open,
//!   which is settled as after a crash during the DUELL call (never written again).
//!
//! The property tests at the end drive `decide` through random deliveries, crashes between any
//! two steps, lost volumes and every DUELL and lookup answer, against a model of DUELL and
//! WooCommerce, and check that no order is ever written to DUELL twice. `docs/order-importer.md`
//! has the state diagram.

use crate::eligibility::SkipReason;
use crate::ledger::Operation;
use crate::ledger::{
    Attempt, ImportPlan, Imported, InDoubt, OrderRecord, Origin, Parked, Progress, Stage,
};
use crate::marker::Marker;
use crate::status::{is_abandoned_status, is_final_status, normalize_status};

/// The store's settings that steer the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Store id (in messages for people).
    pub store: String,
    /// `duell.order_lookup`.
    pub lookup: bool,
    /// `importer.lookup_settle`: how long after an unknown outcome "not found" is trusted.
    pub lookup_settle_ms: i64,
    /// `status_after_import`.
    pub status_after_import: Option<String>,
}

impl Policy {
    /// DUELL offers a lookup for orders, not for stock adjustments.
    pub fn lookup_for(&self, op: Operation) -> bool {
        self.lookup && op != Operation::AdjustStock
    }
}

/// What started the current round of work on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A delivered message: an observation, its redelivery, a retry command, or an operator's
    /// replay of a dead letter. `event_id` names the message in the dead-letter stream.
    Message { event_id: String, replay: bool },
    /// Start-up: an attempt a crash left open is settled before its message comes back.
    Restart,
    /// DUELL changed the status of the imported customer order.
    DuellStatus,
}

/// One round: from a trigger to [`Action::Finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub woo_order_id: i64,
    pub cause: Cause,
    pub now_ms: i64,
    /// DUELL answered this round's own write, so no note of the import can be on the order yet:
    /// a write is only sent for a new intent, never again after one whose round may have got
    /// as far as the note. (An outcome found by the lookup may follow a round that crashed
    /// after adding the note, before its outcome was on disk: that note is looked for first.)
    pub imported_here: bool,
}

impl Round {
    fn message(&self) -> Option<(&str, bool)> {
        match &self.cause {
            Cause::Message { event_id, replay } => Some((event_id.as_str(), *replay)),
            _ => None,
        }
    }
}

/// The order's newest body judged against the store's settings (`crate::eligibility`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub status: String,
    pub eligible: Result<(), SkipReason>,
    /// Event id of the observation (names the "abandoned before import" hold release).
    pub observation_id: String,
}

impl Judged {
    fn abandoned(&self) -> bool {
        is_abandoned_status(&self.status) || self.eligible == Err(SkipReason::Gone)
    }
}

/// The order read fresh from WooCommerce before a new intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WooRead {
    /// It carries the import marker: it is in DUELL.
    Marked(Marker),
    /// No marker; judged on the fresh body (`Err(SkipReason::Gone)` when it no longer exists).
    Unmarked(Judged),
    /// Could not be read; ask again later.
    Failed {
        reason: String,
        after_ms: Option<u64>,
    },
}

/// What resolving the DUELL write's needs (lines, products, customer) gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Planning {
    Ready(ImportPlan),
    /// A person has to act, or the cause has to go away.
    Park {
        code: String,
        reason: String,
        missing_skus: Vec<String>,
        missing_woo_ids: Vec<i64>,
    },
    /// Nothing half-done; try the whole order again later.
    Retry {
        reason: String,
        after_ms: Option<u64>,
    },
}

/// DUELL's answer to the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Created the order (or applied the stock deduction; `refused` rows it did not apply).
    Applied {
        order_id: i64,
        order_number: String,
        refused: Option<String>,
        at_ms: i64,
    },
    /// Provably nothing written (refused, unreachable, throttled). `rejected`: for good.
    NotApplied {
        reason: String,
        rejected: bool,
        after_ms: Option<u64>,
    },
    /// May or may not have been applied (timeout, 5xx, unreadable answer).
    Unknown { detail: String },
}

/// The order lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found {
        order_id: i64,
        order_number: String,
    },
    NotFound,
    /// `refused`: DUELL refuses the lookup outright (no such endpoint); otherwise a read that
    /// may be asked again.
    Failed {
        reason: String,
        refused: bool,
        after_ms: Option<u64>,
    },
}

/// A WooCommerce write after the import (status + marker, or the note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WooWrite {
    /// Done; `status_written`: the status was part of it.
    Written { status_written: bool },
    /// WooCommerce refuses it for good (the order is gone): the import stands without it.
    GaveUp { reason: String },
    Retry {
        reason: String,
        after_ms: Option<u64>,
    },
}

/// What a publish action published (echoed back so the record can note it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    InDoubt,
    Parked,
    Skipped {
        status: Option<String>,
        released: Option<String>,
    },
    HoldReleased,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A message asks for the order; judged on the newest body.
    Triggered(Judged),
    /// Start-up found the order with an open attempt.
    Restarted,
    Read(WooRead),
    Planned(Planning),
    Answered(Answer),
    LookedUp(Lookup),
    Published(Published),
    /// `OrderImported` and the stock hold are stored; the note's answer when it was added with
    /// them.
    Announced {
        note: Option<WooWrite>,
    },
    Woo(WooWrite),
    /// DUELL drew or cancelled the customer order `duell_order_id` (0 unknown).
    DuellReleased {
        duell_order_id: i64,
        effective_at_ms: i64,
        reason: String,
    },
}

/// How the shell ends a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Ack,
    Retry {
        reason: String,
        after_ms: Option<u64>,
    },
    /// Dead-letter the message with this reason (for a person).
    DeadLetter(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Read the order from WooCommerce (marker, current status, current body).
    ReadWoo,
    /// Resolve lines, products and customer.
    Plan,
    /// Send the DUELL write of the attempt (its intent is on disk).
    Write(Attempt),
    /// Ask DUELL's order lookup for the attempt's order.
    Lookup(Attempt),
    /// Publish `OrderInDoubt`.
    PublishInDoubt {
        attempt_id: String,
        operation: Operation,
        detail: String,
    },
    /// Publish `OrderSkipped` for `status` (once per status) and/or the release of the hold of
    /// an order abandoned before import (once per observation).
    PublishSkipped {
        status: Option<String>,
        reason: SkipReason,
        release: Option<String>,
    },
    /// Publish `OrderParked`; `new_cause`: not parked for this cause before.
    PublishParked {
        parked: Parked,
        new_cause: bool,
    },
    /// Publish `OrderImported` and the stock hold after the import; with `note:
    /// Some(check_first)`, add the note (see [`Action::AddNote`]) at the same time: the two are
    /// independent and idempotent, and neither changes the order's status (which the stock hold
    /// has to reach the catalog before).
    Announce {
        note: Option<bool>,
    },
    /// One WooCommerce write: the import marker and/or `status_after_import`.
    WriteWoo {
        status: Option<String>,
        marker: Option<Marker>,
    },
    /// Add the note naming the DUELL order; `check_first`: an earlier try may have added it.
    AddNote {
        check_first: bool,
    },
    /// Publish the release of an imported customer order's hold.
    ReleaseHold {
        effective_at_ms: i64,
        reason: String,
    },
    Finish(Finish),
}

/// How the decision's record is saved before its action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Save {
    /// Unchanged.
    Keep,
    /// Written without a flush of its own: losing it in a crash only repeats idempotent steps.
    Lazy,
    /// On disk before the round ends (its message is acked), not necessarily before the action
    /// runs: for the outcome of a DUELL write, whose loss in a crash leaves the attempt open
    /// (settled by the marker, the lookup or an operator, never by writing again), so the steps
    /// after it need not wait for its sync.
    DurableAtEnd,
    /// On disk before the action.
    Durable,
}

/// What the shell keeps of the order's newest body (needed while it is not imported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Keep,
    Store,
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub record: OrderRecord,
    pub save: Save,
    pub body: Body,
    pub action: Action,
}

impl Decision {
    fn new(record: OrderRecord, save: Save, action: Action) -> Decision {
        Decision {
            record,
            save,
            body: Body::Keep,
            action,
        }
    }

    fn body(mut self, body: Body) -> Decision {
        self.body = body;
        self
    }

    /// This decision, after an earlier step of the same call that saved with `save`.
    fn after(mut self, save: Save) -> Decision {
        self.save = self.save.max(save);
        self
    }
}

fn finish(record: OrderRecord, save: Save, f: Finish) -> Decision {
    Decision::new(record, save, Action::Finish(f))
}

fn retry(reason: String, after_ms: Option<u64>) -> Finish {
    Finish::Retry { reason, after_ms }
}

/// The next step for `record` given `input`.
pub fn decide(record: &OrderRecord, round: &Round, policy: &Policy, input: Input) -> Decision {
    let rec = record.clone();
    match input {
        Input::Triggered(judged) => triggered(rec, round, policy, judged),
        Input::Restarted => match rec.stage.clone() {
            Stage::Intent { attempt } => unresolved(rec, round, policy, attempt, None),
            Stage::Unknown {
                attempt, detail, ..
            } => unresolved(rec, round, policy, attempt, Some(detail)),
            _ => finish(rec, Save::Keep, Finish::Ack),
        },
        Input::Read(read) => woo_read(rec, round, read),
        Input::Planned(p) => planned(rec, round, p),
        Input::Answered(a) => answered(rec, round, policy, a),
        Input::LookedUp(l) => looked_up(rec, round, policy, l),
        Input::Published(p) => published(rec, round, policy, p),
        Input::Announced { note } => announced(rec, round, policy, note),
        Input::Woo(w) => woo_written(rec, round, policy, w),
        Input::DuellReleased {
            duell_order_id,
            effective_at_ms,
            reason,
        } => duell_released(rec, duell_order_id, effective_at_ms, reason),
    }
}

fn triggered(rec: OrderRecord, round: &Round, policy: &Policy, judged: Judged) -> Decision {
    match rec.stage.clone() {
        Stage::Imported(_) => post_import(rec, round, policy, Save::Keep),
        Stage::InDoubt(d) => in_doubt(rec, round, policy, d, Save::Keep),
        Stage::Intent { attempt } => unresolved(rec, round, policy, attempt, None),
        Stage::Unknown {
            attempt, detail, ..
        } => unresolved(rec, round, policy, attempt, Some(detail)),
        Stage::Pending | Stage::Parked(_) => match judged.eligible.clone() {
            Err(reason) => skip(rec, judged, reason, Save::Keep),
            Ok(()) => Decision::new(rec, Save::Keep, Action::ReadWoo),
        },
    }
}

/// A trigger of an order in doubt: only an operator's replay of the in-doubt dead letter moves
/// it; the first message seen for it becomes that dead letter.
fn in_doubt(rec: OrderRecord, round: &Round, policy: &Policy, d: InDoubt, save: Save) -> Decision {
    if !d.announced {
        let action = Action::PublishInDoubt {
            attempt_id: d.attempt.id.clone(),
            operation: d.attempt.plan.operation,
            detail: d.detail.clone(),
        };
        return Decision::new(rec, save, action);
    }
    let Some((msg, replay)) = round.message() else {
        return finish(rec, save, Finish::Ack);
    };
    let is_dlq = d.dlq_event_id.as_deref() == Some(msg);
    if replay && is_dlq {
        if policy.lookup_for(d.attempt.plan.operation) {
            return Decision::new(rec, save, Action::Lookup(d.attempt));
        }
        // The operator checked DUELL and found nothing: their decision.
        return absent(rec, round, save);
    }
    let reason = in_doubt_reason(policy, round.woo_order_id, &d);
    if replay {
        if let Some(dlq) = &d.dlq_event_id {
            return finish(
                rec,
                save.max(Save::Lazy),
                Finish::DeadLetter(format!(
                    "{reason} (this is not the in-doubt dead letter: replay the one of event {dlq})"
                )),
            )
            .body(Body::Store);
        }
        // No in-doubt dead letter yet (flagged at start-up, its message not back yet): this
        // replay was not a decision about the doubt, it becomes that dead letter.
    }
    if d.dlq_event_id.is_none() || is_dlq {
        let mut rec = rec;
        if let Stage::InDoubt(x) = &mut rec.stage {
            x.dlq_event_id = Some(msg.to_owned());
        }
        let save = if is_dlq { save } else { Save::Durable };
        return finish(rec, save, Finish::DeadLetter(reason)).body(Body::Store);
    }
    finish(rec, save.max(Save::Lazy), Finish::Ack).body(Body::Store)
}

/// The words of the in-doubt dead letter: what is unknown and what to check.
pub fn in_doubt_reason(policy: &Policy, woo_order_id: i64, d: &InDoubt) -> String {
    let op = d.attempt.plan.operation;
    let check = match op {
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
        op.label(),
        policy.store,
        d.attempt.id,
        d.detail
    )
}

/// An attempt whose outcome is unknown: the lookup settles it, or it is in doubt.
fn unresolved(
    rec: OrderRecord,
    round: &Round,
    policy: &Policy,
    attempt: Attempt,
    detail: Option<String>,
) -> Decision {
    let op = attempt.plan.operation;
    if policy.lookup_for(op) {
        return Decision::new(rec, Save::Keep, Action::Lookup(attempt));
    }
    let detail = detail.unwrap_or_else(|| {
        "the importer stopped between recording the intent and recording the outcome".into()
    });
    let why = if op == Operation::AdjustStock {
        "DUELL has no lookup for stock adjustments"
    } else {
        "the order lookup is off (duell.order_lookup = false)"
    };
    flag_in_doubt(rec, round, attempt, format!("{detail}; {why}"))
}

fn flag_in_doubt(
    mut rec: OrderRecord,
    round: &Round,
    attempt: Attempt,
    detail: String,
) -> Decision {
    let action = Action::PublishInDoubt {
        attempt_id: attempt.id.clone(),
        operation: attempt.plan.operation,
        detail: detail.clone(),
    };
    let from_message = round.message().is_some();
    rec.stage = Stage::InDoubt(InDoubt {
        attempt,
        detail,
        at_ms: round.now_ms,
        dlq_event_id: round.message().map(|(m, _)| m.to_owned()),
        announced: false,
    });
    let d = Decision::new(rec, Save::Durable, action);
    if from_message {
        d.body(Body::Store)
    } else {
        d
    }
}

/// Provably not in DUELL (the lookup found nothing after the settle time, or an operator said
/// so): a new attempt may be made.
fn absent(mut rec: OrderRecord, round: &Round, save: Save) -> Decision {
    rec.stage = Stage::Pending;
    match round.cause {
        Cause::Message { .. } => Decision::new(rec, Save::Durable, Action::ReadWoo),
        _ => finish(rec, Save::Durable, Finish::Ack),
    }
    .after(save)
}

fn skip(mut rec: OrderRecord, judged: Judged, reason: SkipReason, save: Save) -> Decision {
    let status = normalize_status(&judged.status);
    let new_status = !rec.skipped.contains(&status);
    let release = judged.abandoned()
        && rec.released_unimported.as_deref() != Some(judged.observation_id.as_str());
    if new_status || release {
        let action = Action::PublishSkipped {
            status: new_status.then_some(status),
            reason,
            release: release.then_some(judged.observation_id),
        };
        return Decision::new(rec, save, action);
    }
    // No longer wanted as it is: nothing to retry.
    let changed = rec.stage != Stage::Pending;
    rec.stage = Stage::Pending;
    let save = if changed { save.max(Save::Lazy) } else { save };
    finish(rec, save, Finish::Ack).body(Body::Drop)
}

fn woo_read(mut rec: OrderRecord, round: &Round, read: WooRead) -> Decision {
    match read {
        WooRead::Marked(m) => {
            rec.stage = Stage::Imported(Imported {
                operation: m.operation,
                duell_order_id: m.duell_order_id,
                duell_order_number: m.duell_order_number,
                customer_id: 0,
                woo_number: String::new(),
                total: String::new(),
                lines: Vec::new(),
                remarks: Vec::new(),
                origin: Origin::Marker,
                attempt_id: String::new(),
                effective_at_ms: round.now_ms,
                refused: None,
                // Imported by an earlier life: what followed it was done then (the marker is
                // written after the events); nothing is published or written again.
                progress: Progress::all_done(),
            });
            finish(rec, Save::Durable, Finish::Ack).body(Body::Drop)
        }
        WooRead::Unmarked(judged) => match judged.eligible.clone() {
            Err(reason) => skip(rec, judged, reason, Save::Keep),
            Ok(()) => Decision::new(rec, Save::Keep, Action::Plan),
        },
        WooRead::Failed { reason, after_ms } => finish(
            rec,
            Save::Keep,
            retry(
                format!("reading the order from WooCommerce before importing it: {reason}"),
                after_ms,
            ),
        )
        .body(Body::Store),
    }
}

fn planned(mut rec: OrderRecord, round: &Round, p: Planning) -> Decision {
    match p {
        Planning::Ready(plan) => {
            rec.attempts = rec.attempts.saturating_add(1);
            let attempt = Attempt {
                id: format!("{}-{}", round.woo_order_id, rec.attempts),
                started_ms: round.now_ms,
                plan,
            };
            rec.stage = Stage::Intent {
                attempt: attempt.clone(),
            };
            Decision::new(rec, Save::Durable, Action::Write(attempt)).body(Body::Store)
        }
        Planning::Park {
            code,
            reason,
            missing_skus,
            missing_woo_ids,
        } => park(
            rec,
            round,
            code,
            reason,
            missing_skus,
            missing_woo_ids,
            Save::Lazy,
        ),
        Planning::Retry { reason, after_ms } => {
            finish(rec, Save::Keep, retry(reason, after_ms)).body(Body::Store)
        }
    }
}

/// Parks the order. A later trigger that parks it again for the same cause is acked quietly:
/// the dead letter and the `OrderParked` event already say it.
fn park(
    mut rec: OrderRecord,
    round: &Round,
    code: String,
    reason: String,
    missing_skus: Vec<String>,
    missing_woo_ids: Vec<i64>,
    save: Save,
) -> Decision {
    let (msg, replay) = round.message().unwrap_or(("", false));
    let previous = rec.stage.parked().cloned();
    let same = previous
        .as_ref()
        .is_some_and(|p| p.announced && p.same_cause(&code, &missing_skus, &missing_woo_ids));
    let dlq_event_id = match &previous {
        Some(p) if same && !replay => p.dlq_event_id.clone(),
        _ => msg.to_owned(),
    };
    let quiet = same && !replay && dlq_event_id != msg;
    let parked = Parked {
        code,
        reason,
        missing_skus,
        missing_woo_ids,
        at_ms: round.now_ms,
        dlq_event_id,
        announced: quiet,
    };
    rec.stage = Stage::Parked(parked.clone());
    if quiet {
        return finish(rec, save, Finish::Ack).body(Body::Store);
    }
    Decision::new(
        rec,
        save,
        Action::PublishParked {
            parked,
            new_cause: !same,
        },
    )
    .body(Body::Store)
}

fn imported_stage(
    attempt: &Attempt,
    origin: Origin,
    order_id: i64,
    order_number: String,
    refused: Option<String>,
    at_ms: i64,
) -> Stage {
    let plan = &attempt.plan;
    Stage::Imported(Imported {
        operation: plan.operation,
        duell_order_id: order_id,
        duell_order_number: order_number,
        customer_id: plan.customer_id,
        woo_number: plan.woo_number.clone(),
        total: plan.total.clone(),
        lines: plan.lines.clone(),
        remarks: plan.remarks.clone(),
        origin,
        attempt_id: attempt.id.clone(),
        effective_at_ms: at_ms,
        refused,
        progress: Progress {
            // A customer order holds its units until DUELL draws them; a sales order or a
            // stock deduction is in DUELL's stock at once.
            hold_released: plan.operation != Operation::CustomerOrder,
            ..Progress::default()
        },
    })
}

fn answered(mut rec: OrderRecord, round: &Round, policy: &Policy, a: Answer) -> Decision {
    let Stage::Intent { attempt } = rec.stage.clone() else {
        return finish(
            rec,
            Save::Keep,
            retry("bug: a DUELL answer without an open intent".into(), None),
        );
    };
    match a {
        Answer::Applied {
            order_id,
            order_number,
            refused,
            at_ms,
        } => {
            rec.stage = imported_stage(
                &attempt,
                Origin::Answer,
                order_id,
                order_number,
                refused,
                at_ms,
            );
            imported_now(rec, round, policy, true)
        }
        Answer::NotApplied {
            reason,
            rejected: false,
            after_ms,
        } => {
            // Durable: left at Intent, a crash would take the attempt for one with an unknown
            // outcome and flag an order DUELL provably does not have.
            rec.stage = Stage::Pending;
            finish(
                rec,
                Save::Durable,
                retry(
                    format!("DUELL did not take the order (nothing was written): {reason}"),
                    after_ms,
                ),
            )
        }
        Answer::NotApplied {
            reason,
            rejected: true,
            ..
        } => {
            let reason = format!("order {}: {reason}", round.woo_order_id);
            park(
                rec,
                round,
                "validation".into(),
                reason,
                Vec::new(),
                Vec::new(),
                Save::Durable,
            )
        }
        Answer::Unknown { detail } => {
            if policy.lookup_for(attempt.plan.operation) {
                rec.stage = Stage::Unknown {
                    attempt: attempt.clone(),
                    detail,
                    since_ms: round.now_ms,
                };
                Decision::new(rec, Save::Durable, Action::Lookup(attempt))
            } else {
                unresolved(rec, round, policy, attempt, Some(detail))
            }
        }
    }
}

/// The outcome is recorded (durably) and the post-import steps begin.
fn imported_now(rec: OrderRecord, round: &Round, policy: &Policy, answered: bool) -> Decision {
    let here = Round {
        imported_here: answered,
        ..round.clone()
    };
    post_import(rec, &here, policy, Save::DurableAtEnd).body(Body::Drop)
}

fn looked_up(mut rec: OrderRecord, round: &Round, policy: &Policy, l: Lookup) -> Decision {
    let (attempt, since_ms, operator) = match rec.stage.clone() {
        Stage::Intent { attempt } => {
            let s = attempt.started_ms;
            (attempt, s, false)
        }
        Stage::Unknown {
            attempt, since_ms, ..
        } => (attempt, since_ms, false),
        // A lookup of an order in doubt is only asked for an operator's replay.
        Stage::InDoubt(d) => (d.attempt, d.at_ms, true),
        _ => {
            return finish(
                rec,
                Save::Keep,
                retry("bug: a lookup answer without an open attempt".into(), None),
            )
        }
    };
    match l {
        Lookup::Found {
            order_id,
            order_number,
        } => {
            rec.stage = imported_stage(
                &attempt,
                Origin::Lookup,
                order_id,
                order_number,
                None,
                round.now_ms,
            );
            imported_now(rec, round, policy, false)
        }
        Lookup::NotFound => {
            let elapsed = round.now_ms.saturating_sub(since_ms).max(0);
            let settle = policy.lookup_settle_ms.max(0);
            if !operator && elapsed < settle {
                // A slow DUELL may still apply the write: absence is trusted only after a while.
                return finish(
                    rec,
                    Save::Keep,
                    retry(
                        format!(
                            "order lookup found nothing yet; trusted as absent {settle} ms after the unknown outcome"
                        ),
                        Some((settle - elapsed) as u64),
                    ),
                );
            }
            absent(rec, round, Save::Keep)
        }
        // The lookup is a read: repeating it cannot apply anything, so only a lookup DUELL
        // refuses outright leaves the order in doubt.
        Lookup::Failed {
            reason,
            refused: false,
            after_ms,
        } => finish(
            rec,
            Save::Keep,
            retry(format!("order lookup: {reason}"), after_ms),
        ),
        Lookup::Failed {
            reason,
            refused: true,
            ..
        } => {
            if operator {
                return absent(rec, round, Save::Keep);
            }
            let detail = match rec.stage {
                Stage::Unknown { ref detail, .. } => detail.clone(),
                _ => "the importer stopped between recording the intent and recording the outcome"
                    .into(),
            };
            flag_in_doubt(
                rec,
                round,
                attempt,
                format!("{detail}; the order lookup failed: {reason}"),
            )
        }
    }
}

/// `status_after_import` when it is to be written now: never over a final decision of a person
/// or gateway, never when the order is there already.
fn wanted_status(policy: &Policy, current: &str) -> Option<String> {
    policy
        .status_after_import
        .as_deref()
        .filter(|t| {
            !t.trim().is_empty()
                && !is_final_status(current)
                && normalize_status(current) != normalize_status(t)
        })
        .map(str::to_owned)
}

/// The next unfinished step after the import: events, WooCommerce (status and marker in one
/// write), the note, the report of refused rows.
fn post_import(mut rec: OrderRecord, round: &Round, policy: &Policy, save: Save) -> Decision {
    let Stage::Imported(imp) = &mut rec.stage else {
        return finish(rec, save, Finish::Ack);
    };
    let p = &imp.progress;
    if !p.announced {
        let note = (!p.noted).then_some(!round.imported_here);
        return Decision::new(rec, save, Action::Announce { note });
    }
    if !p.marked || !p.status_done {
        let status = if p.status_done {
            None
        } else {
            wanted_status(policy, &rec.newest.status)
        };
        let marker = (!p.marked).then(|| Marker::of(imp));
        if status.is_none() && marker.is_none() {
            imp.progress.status_done = true;
            return post_import(rec, round, policy, save.max(Save::Lazy));
        }
        return Decision::new(rec, save, Action::WriteWoo { status, marker });
    }
    if !p.noted {
        return Decision::new(
            rec,
            save,
            Action::AddNote {
                check_first: !round.imported_here,
            },
        );
    }
    if let (Some(refused), false) = (imp.refused.clone(), p.refusal_reported) {
        imp.progress.refusal_reported = true;
        return finish(
            rec,
            Save::Durable,
            Finish::DeadLetter(format!(
                "order {}: the stock deduction was applied in part; DUELL refused: {refused}. It is never re-sent: adjust the refused lines by hand",
                round.woo_order_id
            )),
        );
    }
    finish(rec, save, Finish::Ack)
}

fn woo_written(mut rec: OrderRecord, round: &Round, policy: &Policy, w: WooWrite) -> Decision {
    let Stage::Imported(imp) = &rec.stage else {
        return finish(rec, Save::Keep, Finish::Ack);
    };
    let writing_status_and_marker = !imp.progress.marked || !imp.progress.status_done;
    let wanted = (!imp.progress.status_done)
        .then(|| wanted_status(policy, &rec.newest.status))
        .flatten();
    match w {
        WooWrite::Retry { reason, after_ms } => finish(rec, Save::Keep, retry(reason, after_ms)),
        WooWrite::Written { .. } | WooWrite::GaveUp { .. } => {
            let status_written = matches!(
                w,
                WooWrite::Written {
                    status_written: true
                }
            );
            if writing_status_and_marker {
                if let (true, Some(s)) = (status_written, wanted) {
                    rec.newest.status = normalize_status(&s);
                }
            }
            if let Stage::Imported(imp) = &mut rec.stage {
                if writing_status_and_marker {
                    imp.progress.marked = true;
                    imp.progress.status_done = true;
                } else {
                    imp.progress.noted = true;
                }
            }
            post_import(rec, round, policy, Save::Lazy)
        }
    }
}

fn announced(
    mut rec: OrderRecord,
    round: &Round,
    policy: &Policy,
    note: Option<WooWrite>,
) -> Decision {
    let Stage::Imported(imp) = &mut rec.stage else {
        return finish(rec, Save::Keep, Finish::Ack);
    };
    imp.progress.announced = true;
    match note {
        // Not added again in this round: the note may be on the order after all (a timeout),
        // and only the next round checks before adding.
        Some(WooWrite::Retry { reason, after_ms }) => {
            finish(rec, Save::Lazy, retry(reason, after_ms))
        }
        Some(WooWrite::Written { .. } | WooWrite::GaveUp { .. }) => {
            imp.progress.noted = true;
            post_import(rec, round, policy, Save::Lazy)
        }
        None => post_import(rec, round, policy, Save::Lazy),
    }
}

fn published(mut rec: OrderRecord, round: &Round, policy: &Policy, p: Published) -> Decision {
    match p {
        Published::InDoubt => {
            let Stage::InDoubt(d) = &mut rec.stage else {
                return finish(rec, Save::Keep, Finish::Ack);
            };
            d.announced = true;
            // Only the message the doubt names is dead-lettered; never read as a decision here
            // (the replay that led to this new doubt was the decision about the previous one).
            let dead = round
                .message()
                .is_some_and(|(msg, _)| d.dlq_event_id.as_deref() == Some(msg));
            let reason = in_doubt_reason(policy, round.woo_order_id, d);
            let f = if dead {
                Finish::DeadLetter(reason)
            } else {
                Finish::Ack
            };
            finish(rec, Save::Lazy, f)
        }
        Published::Parked => {
            let Stage::Parked(p) = &mut rec.stage else {
                return finish(rec, Save::Keep, Finish::Ack);
            };
            p.announced = true;
            let reason = format!("parked ({}): {}", p.code, p.reason);
            finish(rec, Save::Lazy, Finish::DeadLetter(reason))
        }
        Published::Skipped { status, released } => {
            if let Some(s) = status {
                rec.skipped.insert(s);
            }
            if released.is_some() {
                rec.released_unimported = released;
            }
            rec.stage = Stage::Pending;
            finish(rec, Save::Lazy, Finish::Ack).body(Body::Drop)
        }
        Published::HoldReleased => {
            if let Stage::Imported(imp) = &mut rec.stage {
                imp.progress.hold_released = true;
            }
            finish(rec, Save::Lazy, Finish::Ack)
        }
    }
}

fn duell_released(
    rec: OrderRecord,
    duell_order_id: i64,
    effective_at_ms: i64,
    reason: String,
) -> Decision {
    let Some(imp) = rec.stage.imported() else {
        return finish(rec, Save::Keep, Finish::Ack);
    };
    if imp.operation != Operation::CustomerOrder
        || imp.progress.hold_released
        || (duell_order_id != 0 && duell_order_id != imp.duell_order_id)
    {
        return finish(rec, Save::Keep, Finish::Ack);
    }
    if !imp.progress.announced {
        // The IMPORTED_UNDRAWN hold must be published before its release.
        return finish(
            rec,
            Save::Keep,
            retry("import not announced yet".into(), None),
        );
    }
    Decision::new(
        rec,
        Save::Keep,
        Action::ReleaseHold {
            effective_at_ms,
            reason,
        },
    )
}

#[cfg(test)]
mod tests;
