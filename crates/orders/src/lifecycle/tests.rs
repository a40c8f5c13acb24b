//! Transitions one by one, then the property: no sequence of deliveries, redeliveries, replays,
//! crashes between any two steps, lost volumes and DUELL/lookup/WooCommerce answers writes one
//! WooCommerce order to DUELL twice.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::ledger::PlannedLine;

const WOO: i64 = 101;

fn policy(lookup: bool) -> Policy {
    Policy {
        store: "s1".into(),
        lookup,
        lookup_settle_ms: 1_000,
        status_after_import: Some("completed".into()),
    }
}

fn plan(op: Operation) -> ImportPlan {
    ImportPlan {
        operation: op,
        customer_id: 7,
        woo_number: "101".into(),
        total: "100.00".into(),
        lines: vec![PlannedLine {
            key: "1".into(),
            duell_product_id: 5,
            product_number: "A-1".into(),
            woo_product_id: 20,
            sku: "A-1".into(),
            name: "Vare".into(),
            quantity: Decimal::ONE,
            price_ex_vat: Decimal::from(80),
            price_inc_vat: Decimal::from(100),
            vat_rate: Decimal::from(25),
            discount_inc_vat: None,
            comments: String::new(),
            product_line: true,
        }],
        remarks: Vec::new(),
    }
}

fn round(event: &str, replay: bool, now_ms: i64) -> Round {
    Round {
        woo_order_id: WOO,
        cause: Cause::Message {
            event_id: event.into(),
            replay,
        },
        now_ms,
        imported_here: false,
    }
}

fn eligible(status: &str) -> Judged {
    Judged {
        status: status.into(),
        eligible: Ok(()),
        observation_id: "obs-1".into(),
    }
}

fn pending() -> OrderRecord {
    let mut r = OrderRecord::default();
    r.observe(1, "processing", "obs-1");
    r
}

/// The events are stored and the note added with them.
fn announced_with_the_note() -> Input {
    Input::Announced {
        note: Some(WooWrite::Written {
            status_written: false,
        }),
    }
}

#[test]
fn a_new_order_is_read_fresh_planned_written_after_a_durable_intent_and_finished() {
    let p = policy(false);
    let r = round("m1", false, 10);
    let d = decide(&pending(), &r, &p, Input::Triggered(eligible("processing")));
    assert_eq!(d.action, Action::ReadWoo);
    let d = decide(
        &d.record,
        &r,
        &p,
        Input::Read(WooRead::Unmarked(eligible("processing"))),
    );
    assert_eq!(d.action, Action::Plan);
    let d = decide(
        &d.record,
        &r,
        &p,
        Input::Planned(Planning::Ready(plan(Operation::CustomerOrder))),
    );
    let Action::Write(attempt) = &d.action else {
        panic!("{:?}", d.action)
    };
    assert_eq!(attempt.id, "101-1");
    assert_eq!(
        d.save,
        Save::Durable,
        "the intent is on disk before the write"
    );
    assert!(matches!(d.record.stage, Stage::Intent { .. }));
    let d = decide(
        &d.record,
        &r,
        &p,
        Input::Answered(Answer::Applied {
            order_id: 900,
            order_number: "KO-900".into(),
            refused: None,
            at_ms: 11,
        }),
    );
    assert_eq!(
        d.save,
        Save::DurableAtEnd,
        "the outcome is on disk before the round ends"
    );
    // The events and the note at once; the round's own write, so no note to look for first.
    assert_eq!(d.action, Action::Announce { note: Some(false) });
    let r = Round {
        imported_here: true,
        ..r
    };
    let d = decide(&d.record, &r, &p, announced_with_the_note());
    assert_eq!(d.save, Save::Lazy);
    // The status (after the stock hold is stored) and the marker in one write.
    let Action::WriteWoo { status, marker } = &d.action else {
        panic!("{:?}", d.action)
    };
    assert_eq!(status.as_deref(), Some("completed"));
    assert_eq!(marker.as_ref().map(|m| m.duell_order_id), Some(900));
    let d = decide(
        &d.record,
        &r,
        &p,
        Input::Woo(WooWrite::Written {
            status_written: true,
        }),
    );
    assert_eq!(d.record.newest.status, "completed");
    assert_eq!(d.action, Action::Finish(Finish::Ack));
    assert_eq!(d.save, Save::Lazy);
    let imp = d.record.stage.imported().expect("imported");
    assert!(imp.progress.announced && imp.progress.marked && imp.progress.noted);
}

#[test]
fn a_marker_on_the_order_means_imported_and_nothing_is_sent() {
    let p = policy(false);
    let r = round("m1", false, 10);
    let d = decide(
        &pending(),
        &r,
        &p,
        Input::Read(WooRead::Marked(Marker {
            operation: Operation::CustomerOrder,
            duell_order_id: 900,
            duell_order_number: "KO-900".into(),
        })),
    );
    assert_eq!(d.action, Action::Finish(Finish::Ack));
    assert_eq!(d.save, Save::Durable);
    let imp = d.record.stage.imported().expect("imported");
    assert_eq!(imp.origin, Origin::Marker);
    assert_eq!(imp.progress, Progress::all_done());
    // Any later trigger has nothing to do.
    let d = decide(&d.record, &r, &p, Input::Triggered(eligible("processing")));
    assert_eq!(d.action, Action::Finish(Finish::Ack));
}

#[test]
fn an_open_attempt_is_looked_up_or_flagged_in_doubt_never_written_again() {
    let mut rec = pending();
    rec.stage = Stage::Intent {
        attempt: Attempt {
            id: "101-1".into(),
            started_ms: 5,
            plan: plan(Operation::CustomerOrder),
        },
    };
    let r = round("m2", false, 10);
    let d = decide(
        &rec,
        &r,
        &policy(true),
        Input::Triggered(eligible("processing")),
    );
    assert!(matches!(d.action, Action::Lookup(_)));
    let d = decide(
        &rec,
        &r,
        &policy(false),
        Input::Triggered(eligible("processing")),
    );
    assert!(matches!(d.action, Action::PublishInDoubt { .. }));
    assert_eq!(d.save, Save::Durable);
    let Stage::InDoubt(doubt) = &d.record.stage else {
        panic!()
    };
    assert_eq!(doubt.dlq_event_id.as_deref(), Some("m2"));
    let d = decide(
        &d.record,
        &r,
        &policy(false),
        Input::Published(Published::InDoubt),
    );
    let Action::Finish(Finish::DeadLetter(reason)) = &d.action else {
        panic!("{:?}", d.action)
    };
    assert!(reason.contains("reference 101") && reason.contains("lookup is off"));
    // A stock deduction has no lookup.
    rec.stage = Stage::Intent {
        attempt: Attempt {
            id: "101-1".into(),
            started_ms: 5,
            plan: plan(Operation::AdjustStock),
        },
    };
    let d = decide(
        &rec,
        &r,
        &policy(true),
        Input::Triggered(eligible("processing")),
    );
    assert!(matches!(d.action, Action::PublishInDoubt { .. }));
}

#[test]
fn absence_is_trusted_only_after_the_settle_time() {
    let mut rec = pending();
    rec.stage = Stage::Unknown {
        attempt: Attempt {
            id: "101-1".into(),
            started_ms: 5,
            plan: plan(Operation::SalesOrder),
        },
        detail: "timeout".into(),
        since_ms: 100,
    };
    let p = policy(true);
    let d = decide(
        &rec,
        &round("m", false, 600),
        &p,
        Input::LookedUp(Lookup::NotFound),
    );
    assert_eq!(
        d.action,
        Action::Finish(Finish::Retry {
            reason: "order lookup found nothing yet; trusted as absent 1000 ms after the unknown outcome".into(),
            after_ms: Some(500)
        })
    );
    let d = decide(
        &rec,
        &round("m", false, 1_100),
        &p,
        Input::LookedUp(Lookup::NotFound),
    );
    assert_eq!(d.record.stage, Stage::Pending);
    assert_eq!(d.save, Save::Durable);
    assert_eq!(
        d.action,
        Action::ReadWoo,
        "a new attempt, after a fresh read"
    );
}

#[test]
fn only_a_replay_of_the_in_doubt_dead_letter_is_the_operators_decision() {
    let mut rec = pending();
    rec.stage = Stage::InDoubt(InDoubt {
        attempt: Attempt {
            id: "101-1".into(),
            started_ms: 5,
            plan: plan(Operation::CustomerOrder),
        },
        detail: "timeout".into(),
        at_ms: 6,
        dlq_event_id: Some("m1".into()),
        announced: true,
    });
    let p = policy(false);
    let j = Input::Triggered(eligible("processing"));
    assert_eq!(
        decide(&rec, &round("m2", false, 10), &p, j.clone()).action,
        Action::Finish(Finish::Ack),
        "another observation: quiet"
    );
    let d = decide(&rec, &round("m2", true, 10), &p, j.clone());
    assert!(
        matches!(&d.action, Action::Finish(Finish::DeadLetter(r)) if r.contains("replay the one of event m1"))
    );
    let d = decide(&rec, &round("m1", true, 10), &p, j.clone());
    assert_eq!(d.record.stage, Stage::Pending);
    assert_eq!(d.action, Action::ReadWoo);
    // With the lookup on, the operator's replay asks it first.
    let d = decide(&rec, &round("m1", true, 10), &policy(true), j);
    assert!(matches!(d.action, Action::Lookup(_)));
}

#[test]
fn a_second_park_for_the_same_cause_is_quiet_and_a_skip_is_published_once_per_status() {
    let p = policy(false);
    let park = || {
        Input::Planned(Planning::Park {
            code: "unknown_product".into(),
            reason: "SKU X not in DUELL".into(),
            missing_skus: vec!["X".into()],
            missing_woo_ids: vec![],
        })
    };
    let d = decide(&pending(), &round("m1", false, 1), &p, park());
    assert!(matches!(
        d.action,
        Action::PublishParked {
            new_cause: true,
            ..
        }
    ));
    let d = decide(
        &d.record,
        &round("m1", false, 1),
        &p,
        Input::Published(Published::Parked),
    );
    assert!(matches!(d.action, Action::Finish(Finish::DeadLetter(_))));
    let again = decide(&d.record, &round("m2", false, 2), &p, park());
    assert_eq!(again.action, Action::Finish(Finish::Ack));
    // An operator's replay parks it loudly again.
    let replayed = decide(&d.record, &round("m1", true, 3), &p, park());
    assert!(matches!(
        replayed.action,
        Action::PublishParked {
            new_cause: false,
            ..
        }
    ));

    let cancelled = Judged {
        status: "cancelled".into(),
        eligible: Err(SkipReason::Status {
            status: "cancelled".into(),
            wanted: vec!["processing".into()],
        }),
        observation_id: "obs-9".into(),
    };
    let d = decide(
        &d.record,
        &round("m3", false, 4),
        &p,
        Input::Triggered(cancelled.clone()),
    );
    let Action::PublishSkipped {
        status, release, ..
    } = &d.action
    else {
        panic!("{:?}", d.action)
    };
    assert_eq!(status.as_deref(), Some("cancelled"));
    assert_eq!(release.as_deref(), Some("obs-9"));
    let d = decide(
        &d.record,
        &round("m3", false, 4),
        &p,
        Input::Published(Published::Skipped {
            status: Some("cancelled".into()),
            released: Some("obs-9".into()),
        }),
    );
    assert_eq!(d.record.stage, Stage::Pending, "the park is forgotten");
    let d = decide(
        &d.record,
        &round("m4", false, 5),
        &p,
        Input::Triggered(cancelled),
    );
    assert_eq!(
        d.action,
        Action::Finish(Finish::Ack),
        "once per status and observation"
    );
}

#[test]
fn a_final_status_is_never_overwritten_and_a_partial_deduction_is_reported_once() {
    let p = policy(false);
    let mut rec = pending();
    rec.newest.status = "cancelled".into();
    rec.stage = Stage::Intent {
        attempt: Attempt {
            id: "101-1".into(),
            started_ms: 5,
            plan: plan(Operation::AdjustStock),
        },
    };
    let r = round("m1", false, 10);
    let d = decide(
        &rec,
        &r,
        &p,
        Input::Answered(Answer::Applied {
            order_id: 0,
            order_number: String::new(),
            refused: Some("B".into()),
            at_ms: 10,
        }),
    );
    let d = decide(&d.record, &r, &p, announced_with_the_note());
    assert!(matches!(
        d.action,
        Action::WriteWoo {
            status: None,
            marker: Some(_)
        }
    ));
    let d = decide(
        &d.record,
        &r,
        &p,
        Input::Woo(WooWrite::GaveUp {
            reason: "gone".into(),
        }),
    );
    assert!(matches!(&d.action, Action::Finish(Finish::DeadLetter(r)) if r.contains("refused: B")));
    let d = decide(
        &d.record,
        &round("m2", false, 11),
        &p,
        Input::Triggered(eligible("processing")),
    );
    assert_eq!(d.action, Action::Finish(Finish::Ack));
}

#[test]
fn a_customer_orders_hold_is_released_once_after_it_was_announced() {
    let p = policy(false);
    let mut rec = pending();
    rec.stage = imported_stage(
        &Attempt {
            id: "101-1".into(),
            started_ms: 1,
            plan: plan(Operation::CustomerOrder),
        },
        Origin::Answer,
        900,
        "KO-900".into(),
        None,
        2,
    );
    let r = Round {
        cause: Cause::DuellStatus,
        ..round("s", false, 3)
    };
    let rel = |id| Input::DuellReleased {
        duell_order_id: id,
        effective_at_ms: 3,
        reason: "drawn".into(),
    };
    assert!(matches!(
        decide(&rec, &r, &p, rel(900)).action,
        Action::Finish(Finish::Retry { .. })
    ));
    if let Stage::Imported(i) = &mut rec.stage {
        i.progress.announced = true;
    }
    assert_eq!(
        decide(&rec, &r, &p, rel(901)).action,
        Action::Finish(Finish::Ack),
        "another DUELL order"
    );
    let d = decide(&rec, &r, &p, rel(900));
    assert!(matches!(d.action, Action::ReleaseHold { .. }));
    let d = decide(&d.record, &r, &p, Input::Published(Published::HoldReleased));
    assert_eq!(
        decide(&d.record, &r, &p, rel(900)).action,
        Action::Finish(Finish::Ack)
    );
}

// ---------------------------------------------------------------------------------------------
// The property: a model of DUELL, WooCommerce, the sync log and the importer's disk, driven by
// random schedules.

/// What one scheduled event does.
#[derive(Debug, Clone)]
enum Op {
    /// A message for the order (observation, redelivery, retry); the process crashes after
    /// `crash_after` steps of the round, if given.
    Deliver { crash_after: Option<u8> },
    /// The operator replays the in-doubt dead letter, having checked that DUELL lacks the
    /// order (an operator who replays an order DUELL has is outside what the engine can help).
    Replay { crash_after: Option<u8> },
    /// The process starts again and settles open attempts.
    Restart { crash_after: Option<u8> },
    /// DUELL draws the customer order.
    Drawn,
    /// The importer's volume is lost (and, with `sync_log`, the SYNC stream too).
    Wipe { sync_log: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let crash = prop::option::weighted(0.3, 0u8..12);
    prop_oneof![
        6 => crash.clone().prop_map(|crash_after| Op::Deliver { crash_after }),
        2 => crash.clone().prop_map(|crash_after| Op::Replay { crash_after }),
        2 => crash.prop_map(|crash_after| Op::Restart { crash_after }),
        1 => Just(Op::Drawn),
        1 => any::<bool>().prop_map(|sync_log| Op::Wipe { sync_log }),
    ]
}

#[derive(Default, Debug)]
struct World {
    /// Writes DUELL applied / received for the order.
    applied: u32,
    sent: u32,
    /// A write was sent while DUELL already had the order.
    sent_after_applied: bool,
    marker: Option<Marker>,
    /// `OrderImported` in the SYNC stream.
    sync_log: Option<Marker>,
    notes: u32,
    /// The message dead-lettered as in doubt.
    in_doubt_dlq: Option<String>,
    /// A volume was lost while DUELL had the order but neither the sync log nor the marker
    /// said so: the one window no durable record outside the importer covers.
    unprotected_wipe: bool,
}

/// The importer's disk: the last flushed record, and the unflushed writes after it (a crash
/// keeps any prefix of them: the journal is a log).
#[derive(Default, Debug)]
struct Disk {
    durable: OrderRecord,
    unflushed: Vec<OrderRecord>,
    /// The unsynced record that the round syncs before it ends ([`Save::DurableAtEnd`]).
    at_end: Option<usize>,
}

impl Disk {
    fn save(&mut self, rec: &OrderRecord, save: Save) {
        match save {
            Save::Keep => {}
            Save::Lazy => self.unflushed.push(rec.clone()),
            Save::DurableAtEnd => {
                self.unflushed.push(rec.clone());
                self.at_end = Some(self.unflushed.len() - 1);
            }
            Save::Durable => {
                self.durable = rec.clone();
                self.unflushed.clear();
                self.at_end = None;
            }
        }
    }

    fn round_end(&mut self) {
        if let Some(i) = self.at_end.take() {
            self.durable = self.unflushed[i].clone();
            self.unflushed.drain(..=i);
        }
    }

    fn crash(&mut self, keep: usize) -> OrderRecord {
        let keep = keep % (self.unflushed.len() + 1);
        if keep > 0 {
            self.durable = self.unflushed[keep - 1].clone();
        }
        self.unflushed.clear();
        self.at_end = None;
        self.durable.clone()
    }
}

struct Model {
    world: World,
    disk: Disk,
    /// In memory (what the running process last saved).
    rec: OrderRecord,
    policy: Policy,
    operation: Operation,
    choices: Vec<u8>,
    next_choice: usize,
    now_ms: i64,
    messages: u32,
}

impl Model {
    fn choose(&mut self, n: u8) -> u8 {
        let c = self.choices[self.next_choice % self.choices.len()];
        self.next_choice += 1;
        c % n
    }

    /// Adds the note, or finds it there when checking first; it may be added and still answer
    /// with a timeout.
    fn note(&mut self, check_first: bool) -> WooWrite {
        let outcome = self.choose(8);
        let add = !(check_first && self.world.notes > 0) && outcome != 0;
        if add {
            self.world.notes += 1;
        }
        match outcome {
            0 | 7 => WooWrite::Retry {
                reason: "timeout".into(),
                after_ms: None,
            },
            _ => WooWrite::Written {
                status_written: false,
            },
        }
    }

    /// Runs one round; returns false when the process crashed in it.
    fn round(&mut self, cause: Cause, first: Input, crash_after: Option<u8>) -> bool {
        let mut round = Round {
            woo_order_id: WOO,
            cause,
            now_ms: self.now_ms,
            imported_here: false,
        };
        let mut input = first;
        // A fresh read in this round found the order unmarked and wanted.
        let mut read_unmarked = false;
        for step in 0u8.. {
            assert!(step < 100, "a round that never finishes");
            if crash_after == Some(step) {
                let keep = usize::from(self.choose(8));
                self.rec = self.disk.crash(keep);
                return false;
            }
            let d = decide(&self.rec, &round, &self.policy, input);
            let was_imported = self.rec.stage.imported().is_some();
            self.disk.save(&d.record, d.save);
            self.rec = d.record;
            if !was_imported
                && self
                    .rec
                    .stage
                    .imported()
                    .is_some_and(|i| i.origin == Origin::Answer)
            {
                round.imported_here = true;
            }
            input = match d.action {
                Action::Finish(Finish::DeadLetter(_)) => {
                    self.disk.round_end();
                    if let (Stage::InDoubt(x), Cause::Message { event_id, .. }) =
                        (&self.rec.stage, &round.cause)
                    {
                        if x.dlq_event_id.as_deref() == Some(event_id.as_str()) {
                            self.world.in_doubt_dlq = Some(event_id.clone());
                        }
                    }
                    return true;
                }
                Action::Finish(_) => {
                    self.disk.round_end();
                    return true;
                }
                Action::ReadWoo => match (self.world.marker.clone(), self.choose(10)) {
                    (_, 0) => Input::Read(WooRead::Failed {
                        reason: "502".into(),
                        after_ms: None,
                    }),
                    // Cancelled since the message was published.
                    (None, 1) => Input::Read(WooRead::Unmarked(Judged {
                        status: "cancelled".into(),
                        eligible: Err(SkipReason::Status {
                            status: "cancelled".into(),
                            wanted: vec!["processing".into()],
                        }),
                        observation_id: "obs-2".into(),
                    })),
                    (Some(m), _) => Input::Read(WooRead::Marked(m)),
                    (None, _) => {
                        read_unmarked = true;
                        Input::Read(WooRead::Unmarked(eligible("processing")))
                    }
                },
                Action::Plan => match self.choose(10) {
                    0 => Input::Planned(Planning::Park {
                        code: "unknown_product".into(),
                        reason: "SKU X".into(),
                        missing_skus: vec!["X".into()],
                        missing_woo_ids: vec![],
                    }),
                    1 => Input::Planned(Planning::Retry {
                        reason: "customer lookup failed".into(),
                        after_ms: None,
                    }),
                    _ => Input::Planned(Planning::Ready(plan(self.operation))),
                },
                Action::Write(attempt) => {
                    assert!(
                        read_unmarked,
                        "a write without a fresh read in its round that found the order unmarked"
                    );
                    assert_eq!(
                        self.disk.durable.stage,
                        Stage::Intent {
                            attempt: attempt.clone()
                        },
                        "the intent is on disk before the write leaves"
                    );
                    self.world.sent += 1;
                    if self.world.applied > 0 {
                        self.world.sent_after_applied = true;
                    }
                    match self.choose(8) {
                        0 | 1 => {
                            self.world.applied += 1;
                            Input::Answered(Answer::Applied {
                                order_id: 900,
                                order_number: "KO-900".into(),
                                refused: None,
                                at_ms: self.now_ms,
                            })
                        }
                        2 => {
                            self.world.applied += 1;
                            Input::Answered(Answer::Unknown {
                                detail: "answer lost".into(),
                            })
                        }
                        3 => Input::Answered(Answer::Unknown {
                            detail: "timeout before processing".into(),
                        }),
                        4 => Input::Answered(Answer::NotApplied {
                            reason: "429".into(),
                            rejected: false,
                            after_ms: None,
                        }),
                        5 => Input::Answered(Answer::NotApplied {
                            reason: "validation".into(),
                            rejected: true,
                            after_ms: None,
                        }),
                        6 => {
                            // Applied, then the process died waiting for the answer.
                            self.world.applied += 1;
                            let keep = usize::from(self.choose(8));
                            self.rec = self.disk.crash(keep);
                            return false;
                        }
                        _ => {
                            let keep = usize::from(self.choose(8));
                            self.rec = self.disk.crash(keep);
                            return false;
                        }
                    }
                }
                Action::Lookup(_) => match self.choose(6) {
                    0 => Input::LookedUp(Lookup::Failed {
                        reason: "503".into(),
                        refused: false,
                        after_ms: None,
                    }),
                    1 => Input::LookedUp(Lookup::Failed {
                        reason: "404".into(),
                        refused: true,
                        after_ms: None,
                    }),
                    // DUELL's lookup tells the truth (once the settle time has passed).
                    _ if self.world.applied > 0 => Input::LookedUp(Lookup::Found {
                        order_id: 900,
                        order_number: "KO-900".into(),
                    }),
                    _ => Input::LookedUp(Lookup::NotFound),
                },
                Action::PublishInDoubt { .. } => Input::Published(Published::InDoubt),
                Action::PublishParked { .. } => Input::Published(Published::Parked),
                Action::PublishSkipped {
                    status, release, ..
                } => Input::Published(Published::Skipped {
                    status,
                    released: release,
                }),
                Action::Announce { note } => {
                    if let Some(i) = self.rec.stage.imported() {
                        self.world.sync_log = Some(Marker::of(i));
                    }
                    let note = note.map(|check_first| self.note(check_first));
                    Input::Announced { note }
                }
                Action::WriteWoo { status, marker } => {
                    if self.choose(8) == 0 {
                        Input::Woo(WooWrite::Retry {
                            reason: "timeout".into(),
                            after_ms: None,
                        })
                    } else {
                        if let Some(m) = marker {
                            self.world.marker = Some(m);
                        }
                        Input::Woo(WooWrite::Written {
                            status_written: status.is_some(),
                        })
                    }
                }
                Action::AddNote { check_first } => Input::Woo(self.note(check_first)),
                Action::ReleaseHold { .. } => Input::Published(Published::HoldReleased),
            };
        }
        true
    }

    fn run(&mut self, op: Op) {
        // Time moves on between events, sometimes past the lookup's settle time.
        self.now_ms += i64::from(self.choose(4)) * 600;
        match op {
            Op::Deliver { crash_after } => {
                self.messages += 1;
                let cause = Cause::Message {
                    event_id: format!("m{}", self.messages),
                    replay: false,
                };
                self.rec.observe(1, "processing", "obs-1");
                self.round(cause, Input::Triggered(eligible("processing")), crash_after);
            }
            Op::Replay { crash_after } => {
                let Some(dlq) = self.world.in_doubt_dlq.clone() else {
                    return;
                };
                if self.world.applied > 0 {
                    return;
                }
                let cause = Cause::Message {
                    event_id: dlq,
                    replay: true,
                };
                self.round(cause, Input::Triggered(eligible("processing")), crash_after);
            }
            Op::Restart { crash_after } => {
                // A graceful stop loses nothing; a restart after a crash was modelled at the
                // crash. Start-up settles an open attempt.
                if self.rec.stage.open_attempt().is_some() {
                    self.round(Cause::Restart, Input::Restarted, crash_after);
                }
            }
            Op::Drawn => {
                let input = Input::DuellReleased {
                    duell_order_id: 900,
                    effective_at_ms: self.now_ms,
                    reason: "drawn".into(),
                };
                self.round(Cause::DuellStatus, input, None);
            }
            Op::Wipe { sync_log } => {
                if self.world.applied > 0
                    && self.world.marker.is_none()
                    && (self.world.sync_log.is_none() || sync_log)
                {
                    self.world.unprotected_wipe = true;
                }
                if sync_log {
                    self.world.sync_log = None;
                }
                // Start-up restores the ledger from the sync log.
                let mut rec = OrderRecord::default();
                if let Some(m) = &self.world.sync_log {
                    rec.stage = Stage::Imported(Imported {
                        operation: m.operation,
                        duell_order_id: m.duell_order_id,
                        duell_order_number: m.duell_order_number.clone(),
                        customer_id: 0,
                        woo_number: String::new(),
                        total: String::new(),
                        lines: Vec::new(),
                        remarks: Vec::new(),
                        origin: Origin::SyncLog,
                        attempt_id: String::new(),
                        effective_at_ms: 0,
                        refused: None,
                        progress: Progress::all_done(),
                    });
                }
                self.disk = Disk {
                    durable: rec.clone(),
                    ..Disk::default()
                };
                self.rec = rec;
                // A new volume: dead letters of the old life are no operator's business here.
                self.world.in_doubt_dlq = None;
            }
        }
    }
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::CustomerOrder),
        Just(Operation::SalesOrder),
        Just(Operation::AdjustStock)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn no_schedule_writes_one_order_to_duell_twice(
        ops in prop::collection::vec(op(), 1..40),
        choices in prop::collection::vec(any::<u8>(), 16..128),
        lookup in any::<bool>(),
        op in operation(),
    ) {
        let mut m = Model {
            world: World::default(),
            disk: Disk::default(),
            rec: OrderRecord::default(),
            policy: policy(lookup),
            operation: op,
            choices,
            next_choice: 0,
            now_ms: 1_000,
            messages: 0,
        };
        for o in ops {
            m.run(o);
            if !m.world.unprotected_wipe {
                prop_assert!(m.world.applied <= 1, "applied {} times: {:?}", m.world.applied, m.world);
                prop_assert!(!m.world.sent_after_applied, "a write was sent while DUELL had the order: {:?}", m.world);
            }
            if !m.world.unprotected_wipe {
                // (A wipe in that window imports the order again, note and all.)
                prop_assert!(m.world.notes <= 1, "{} notes: {:?}", m.world.notes, m.world);
            }
        }
    }

    #[test]
    fn a_lost_volume_after_the_marker_or_the_sync_log_imports_nothing_again(
        wipe_at in 0usize..6,
        sync_log_too in any::<bool>(),
        choices in prop::collection::vec(any::<u8>(), 16..64),
        op in operation(),
    ) {
        // The order is imported without faults, the volume is lost at some point after the
        // import, then the order is delivered again many times.
        let mut m = Model {
            world: World::default(),
            disk: Disk::default(),
            rec: OrderRecord::default(),
            policy: policy(false),
            operation: op,
            // Every read, plan and write succeeds (9 picks those answers below).
            choices: vec![9],
            next_choice: 0,
            now_ms: 1_000,
            messages: 0,
        };
        m.run(Op::Deliver { crash_after: None });
        prop_assert_eq!(m.world.applied, 1);
        prop_assert!(m.world.marker.is_some(), "{:?}", m.world);
        m.choices = choices;
        for i in 0..6 {
            if i == wipe_at {
                m.run(Op::Wipe { sync_log: sync_log_too });
            }
            m.run(Op::Deliver { crash_after: None });
        }
        prop_assert!(!m.world.unprotected_wipe);
        prop_assert_eq!(m.world.applied, 1);
        prop_assert!(!m.world.sent_after_applied);
    }
}
