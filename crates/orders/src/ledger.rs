//! The order importer's ledger entry for one WooCommerce order ([`OrderRecord`]) and the data it
//! holds: the plan of a DUELL write, the attempt that carries it, and where the order is in its
//! import lifecycle ([`Stage`]). Pure data; [`crate::lifecycle`] decides how it moves.
//!
//! Records written before the lifecycle was an explicit enum (a set of `Option`s and flags,
//! "v1") still load: [`OrderRecord`] deserialises either shape and turns a v1 record into the
//! stage it meant (see [`legacy`]).

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The DUELL write that imports an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `logistics/orders/save`.
    CustomerOrder,
    /// `sale/orders/save`.
    SalesOrder,
    /// `product/adjust-stock` (no lookup exists for it).
    AdjustStock,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "customer_order",
            Operation::SalesOrder => "sales_order",
            Operation::AdjustStock => "adjust_stock",
        }
    }

    /// Parses [`Operation::as_str`]; anything else is `None`.
    pub fn parse(s: &str) -> Option<Operation> {
        match s.trim() {
            "customer_order" => Some(Operation::CustomerOrder),
            "sales_order" => Some(Operation::SalesOrder),
            "adjust_stock" => Some(Operation::AdjustStock),
            _ => None,
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "logistics/orders/save",
            Operation::SalesOrder => "sale/orders/save",
            Operation::AdjustStock => "product/adjust-stock",
        }
    }

    /// Words for notes and logs.
    pub fn label(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "customer order",
            Operation::SalesOrder => "sales order",
            Operation::AdjustStock => "stock deduction",
        }
    }
}

/// One line of a planned import, with its DUELL product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedLine {
    pub key: String,
    pub duell_product_id: i64,
    pub product_number: String,
    /// The WooCommerce product or variation the line sold; 0 for shipping and fee lines.
    pub woo_product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: Decimal,
    pub price_ex_vat: Decimal,
    pub price_inc_vat: Decimal,
    pub vat_rate: Decimal,
    pub discount_inc_vat: Option<Decimal>,
    pub comments: String,
    /// A product line (stock moves); false for shipping and fees.
    pub product_line: bool,
}

/// Everything the DUELL write needs, fixed at intent time so that a recovery after a crash
/// knows what was (maybe) written without resolving anything again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    pub operation: Operation,
    /// 0 for a stock deduction.
    pub customer_id: i64,
    pub woo_number: String,
    /// WooCommerce order total, decimal text.
    pub total: String,
    pub lines: Vec<PlannedLine>,
    /// Remarks for the DUELL order comment and the WooCommerce note (ambiguous SKUs).
    pub remarks: Vec<String>,
}

/// One try at the DUELL write. Its intent (the record in stage [`Stage::Intent`]) is on disk
/// before the write is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// `<woo order id>-<n>`.
    pub id: String,
    pub started_ms: i64,
    pub plan: ImportPlan,
}

/// How the importer knows that an order is in DUELL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// DUELL's answer to the write.
    Answer,
    /// The order lookup found what an attempt with an unknown outcome created.
    Lookup,
    /// The import marker on the WooCommerce order (an earlier life of the importer, or DUELL's
    /// own plugin, imported it).
    Marker,
    /// The sync log (`OrderImported`) after the ledger was lost.
    SyncLog,
}

/// What is done of the steps that follow an import. Each is safe to repeat, so they are
/// recorded without a flush of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `OrderImported` and the stock hold event are published.
    pub announced: bool,
    /// `status_after_import` written (or not wanted, or given up on).
    pub status_done: bool,
    /// The import marker is in the WooCommerce order's meta data (or given up on).
    pub marked: bool,
    /// The note naming the DUELL order is on the WooCommerce order (or given up on).
    pub noted: bool,
    /// The refused rows of a partial stock deduction were dead-lettered for a person.
    pub refusal_reported: bool,
    /// The stock hold was released (sales order, stock deduction, drawn or cancelled in DUELL).
    pub hold_released: bool,
}

impl Progress {
    /// Everything done: a record restored from outside (marker) must not redo anything.
    pub fn all_done() -> Progress {
        Progress {
            announced: true,
            status_done: true,
            marked: true,
            noted: true,
            refusal_reported: true,
            hold_released: true,
        }
    }
}

/// The order is in DUELL (or its stock deducted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    pub operation: Operation,
    /// 0 for a stock deduction.
    pub duell_order_id: i64,
    pub duell_order_number: String,
    pub customer_id: i64,
    pub woo_number: String,
    pub total: String,
    pub lines: Vec<PlannedLine>,
    pub remarks: Vec<String>,
    pub origin: Origin,
    /// The attempt that wrote it; empty when restored from outside.
    pub attempt_id: String,
    /// When DUELL applied it (an upper bound: the answer or the lookup), for stock holds.
    pub effective_at_ms: i64,
    /// Rows of a stock deduction DUELL refused (reported once, never re-sent).
    pub refused: Option<String>,
    pub progress: Progress,
}

impl Imported {
    pub fn recovered_by_lookup(&self) -> bool {
        self.origin == Origin::Lookup
    }
}

/// Waiting for a person or for the cause to go away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// "unknown_product", "total_mismatch", "validation", "customer".
    pub code: String,
    pub reason: String,
    pub missing_skus: Vec<String>,
    /// WooCommerce products/variations without SKU and without link.
    pub missing_woo_ids: Vec<i64>,
    pub at_ms: i64,
    /// Event id of the message dead-lettered for this park.
    pub dlq_event_id: String,
    /// `OrderParked` is published.
    pub announced: bool,
}

impl Parked {
    pub fn same_cause(&self, code: &str, skus: &[String], woo_ids: &[i64]) -> bool {
        self.code == code && self.missing_skus == skus && self.missing_woo_ids == woo_ids
    }
}

/// A DUELL write whose outcome is unknown and that no lookup could settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InDoubt {
    pub attempt: Attempt,
    pub detail: String,
    pub at_ms: i64,
    /// Event id of the message dead-lettered as in doubt. Only a replay of that very message
    /// is an operator's decision.
    pub dlq_event_id: Option<String>,
    /// `OrderInDoubt` is published.
    pub announced: bool,
}

/// Where an order is in its import. Exactly one at a time: the combinations the flags of v1
/// could express but that meant nothing (imported *and* in doubt) cannot be written down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Known, nothing under way: not imported, no attempt open (a new one may be made).
    #[default]
    Pending,
    /// Waiting for its cause to go away.
    Parked(Parked),
    /// The intent of `attempt` is on disk: its DUELL write may have been sent.
    Intent { attempt: Attempt },
    /// The write was answered with something that may or may not have been applied.
    Unknown {
        attempt: Attempt,
        detail: String,
        since_ms: i64,
    },
    /// Nobody can tell whether DUELL applied the write: an operator decides.
    InDoubt(InDoubt),
    /// In DUELL; what follows the import is in its [`Progress`].
    Imported(Imported),
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Parked(_) => "parked",
            Stage::Intent { .. } => "intent",
            Stage::Unknown { .. } => "unknown",
            Stage::InDoubt(_) => "in_doubt",
            Stage::Imported(_) => "imported",
        }
    }

    /// An attempt whose outcome nobody knows yet (settled by lookup or flagged in doubt).
    pub fn open_attempt(&self) -> Option<&Attempt> {
        match self {
            Stage::Intent { attempt } | Stage::Unknown { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    pub fn imported(&self) -> Option<&Imported> {
        match self {
            Stage::Imported(i) => Some(i),
            _ => None,
        }
    }

    pub fn parked(&self) -> Option<&Parked> {
        match self {
            Stage::Parked(p) => Some(p),
            _ => None,
        }
    }
}

/// The newest observation of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Newest {
    /// `date_modified_gmt`, Unix seconds (0 unknown).
    pub modified: i64,
    pub rank: u8,
    pub status: String,
    pub event_id: String,
}

/// The importer's ledger entry for one WooCommerce order (one per order, not per event: one
/// order arrives many times with different bodies and event ids).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OrderRecord {
    pub newest: Newest,
    /// Statuses an `OrderSkipped` was published for.
    pub skipped: BTreeSet<String>,
    /// Attempts made so far (the next one is `<woo id>-<attempts + 1>`).
    pub attempts: u32,
    pub stage: Stage,
    /// Observation whose "abandoned before import" hold release was published.
    pub released_unimported: Option<String>,
}

impl OrderRecord {
    /// Takes an observation into account. Returns whether it is the newest one known, which
    /// decides which body the work is done on: `(date_modified_gmt, status rank)`, and at an
    /// equal pair the later arrival (WooCommerce does not move `date_modified` on most edits).
    pub fn observe(&mut self, modified: i64, status: &str, event_id: &str) -> bool {
        let rank = crate::status_rank(status);
        let fresh = self.newest.event_id.is_empty()
            || (modified, rank) >= (self.newest.modified, self.newest.rank);
        if fresh {
            self.newest = Newest {
                modified,
                rank,
                status: crate::normalize_status(status),
                event_id: event_id.to_owned(),
            };
        }
        fresh
    }
}

/// The current stored shape (a v1 record has no `stage`).
#[derive(Deserialize)]
struct Current {
    newest: Newest,
    #[serde(default)]
    skipped: BTreeSet<String>,
    #[serde(default)]
    attempts: u32,
    stage: Stage,
    #[serde(default)]
    released_unimported: Option<String>,
}

impl<'de> Deserialize<'de> for OrderRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a `Value` rather than an untagged enum: serde buffers untagged input in a way
        // that loses numbers when serde_json's arbitrary precision is on (rust_decimal turns it
        // on), and a `Value` picks the shape by the presence of `stage` alone.
        let v = serde_json::Value::deserialize(d)?;
        if v.get("stage").is_some() {
            let c: Current = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            Ok(OrderRecord {
                newest: c.newest,
                skipped: c.skipped,
                attempts: c.attempts,
                stage: c.stage,
                released_unimported: c.released_unimported,
            })
        } else {
            let v1: legacy::OrderStateV1 =
                serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            Ok(v1.migrate())
        }
    }
}

/// The ledger as the importer wrote it before the lifecycle was an enum (up to commit 8fc2bf7):
/// every state an independent `Option`, post-import steps as flags. Kept to read old records.
pub mod legacy {
    use std::collections::BTreeSet;

    use serde::Deserialize;

    use super::{
        Attempt, ImportPlan, Imported, InDoubt, Newest, OrderRecord, Origin, Parked, Progress,
        Stage,
    };

    #[derive(Debug, Clone, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum OutcomeV1 {
        Created {
            order_id: i64,
            order_number: String,
            at_ms: i64,
        },
        Adjusted {
            at_ms: i64,
            refused: Option<String>,
        },
        NotApplied {
            reason: String,
            at_ms: i64,
        },
        Unknown {
            detail: String,
            at_ms: i64,
        },
        FoundByLookup {
            order_id: i64,
            order_number: String,
            at_ms: i64,
        },
        Absent {
            by: String,
            at_ms: i64,
        },
    }

    #[derive(Debug, Clone, Deserialize)]
    pub struct AttemptV1 {
        pub id: String,
        pub started_ms: i64,
        pub plan: ImportPlan,
        pub outcome: Option<OutcomeV1>,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub struct ImportedV1 {
        pub operation: super::Operation,
        pub duell_order_id: i64,
        pub duell_order_number: String,
        pub customer_id: i64,
        pub woo_number: String,
        pub total: String,
        pub lines: Vec<super::PlannedLine>,
        pub remarks: Vec<String>,
        pub recovered_by_lookup: bool,
        pub attempt_id: String,
        pub effective_at_ms: i64,
        pub refused: Option<String>,
        pub announced: bool,
        pub woo_done: bool,
        pub refusal_reported: bool,
        pub hold_released: bool,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub struct ParkedV1 {
        pub code: String,
        pub reason: String,
        pub missing_skus: Vec<String>,
        pub missing_woo_ids: Vec<i64>,
        pub at_ms: i64,
        pub dlq_event_id: String,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub struct InDoubtV1 {
        pub attempt_id: String,
        pub operation: super::Operation,
        pub detail: String,
        pub at_ms: i64,
        pub dlq_event_id: Option<String>,
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct OrderStateV1 {
        #[serde(default)]
        pub newest_modified: i64,
        #[serde(default)]
        pub newest_rank: u8,
        #[serde(default)]
        pub newest_status: String,
        #[serde(default)]
        pub newest_event_id: String,
        #[serde(default)]
        pub skipped: BTreeSet<String>,
        #[serde(default)]
        pub attempts: Vec<AttemptV1>,
        #[serde(default)]
        pub imported: Option<ImportedV1>,
        #[serde(default)]
        pub parked: Option<ParkedV1>,
        #[serde(default)]
        pub in_doubt: Option<InDoubtV1>,
        #[serde(default)]
        pub released_unimported: Option<String>,
    }

    impl OrderStateV1 {
        /// The stage a v1 record meant. v1 checked, in this order: imported, in doubt, an
        /// unresolved last attempt, parked; so does this.
        pub fn migrate(self) -> OrderRecord {
            let last = self.attempts.last().cloned();
            let attempt_of = |a: &AttemptV1| Attempt {
                id: a.id.clone(),
                started_ms: a.started_ms,
                plan: a.plan.clone(),
            };
            let stage = if let Some(i) = self.imported {
                Stage::Imported(Imported {
                    operation: i.operation,
                    duell_order_id: i.duell_order_id,
                    duell_order_number: i.duell_order_number,
                    customer_id: i.customer_id,
                    woo_number: i.woo_number,
                    total: i.total,
                    lines: i.lines,
                    remarks: i.remarks,
                    origin: if i.recovered_by_lookup {
                        Origin::Lookup
                    } else if i.attempt_id.is_empty() {
                        Origin::SyncLog
                    } else {
                        Origin::Answer
                    },
                    attempt_id: i.attempt_id,
                    effective_at_ms: i.effective_at_ms,
                    refused: i.refused,
                    progress: Progress {
                        announced: i.announced,
                        status_done: i.woo_done,
                        // v1 wrote no marker: the next trigger of the order adds it (meta only;
                        // the status and the note were done by v1).
                        marked: false,
                        noted: i.woo_done,
                        refusal_reported: i.refusal_reported,
                        hold_released: i.hold_released,
                    },
                })
            } else if let Some(d) = self.in_doubt {
                let attempt = self
                    .attempts
                    .iter()
                    .find(|a| a.id == d.attempt_id)
                    .map(attempt_of)
                    .unwrap_or_else(|| Attempt {
                        id: d.attempt_id.clone(),
                        started_ms: d.at_ms,
                        plan: ImportPlan {
                            operation: d.operation,
                            customer_id: 0,
                            woo_number: String::new(),
                            total: String::new(),
                            lines: Vec::new(),
                            remarks: Vec::new(),
                        },
                    });
                Stage::InDoubt(InDoubt {
                    attempt,
                    detail: d.detail,
                    at_ms: d.at_ms,
                    dlq_event_id: d.dlq_event_id,
                    // v1 published `OrderInDoubt` before it recorded the doubt.
                    announced: true,
                })
            } else if let Some(a) =
                last.filter(|a| matches!(a.outcome, None | Some(OutcomeV1::Unknown { .. })))
            {
                match &a.outcome {
                    Some(OutcomeV1::Unknown { detail, at_ms }) => Stage::Unknown {
                        attempt: attempt_of(&a),
                        detail: detail.clone(),
                        since_ms: *at_ms,
                    },
                    _ => Stage::Intent {
                        attempt: attempt_of(&a),
                    },
                }
            } else if let Some(p) = self.parked {
                Stage::Parked(Parked {
                    code: p.code,
                    reason: p.reason,
                    missing_skus: p.missing_skus,
                    missing_woo_ids: p.missing_woo_ids,
                    at_ms: p.at_ms,
                    dlq_event_id: p.dlq_event_id,
                    // v1 published `OrderParked` before it recorded the park.
                    announced: true,
                })
            } else {
                Stage::Pending
            };
            OrderRecord {
                newest: Newest {
                    modified: self.newest_modified,
                    rank: self.newest_rank,
                    status: self.newest_status,
                    event_id: self.newest_event_id,
                },
                skipped: self.skipped,
                attempts: u32::try_from(self.attempts.len()).unwrap_or(u32::MAX),
                stage,
                released_unimported: self.released_unimported,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Records as the importer of commit 8fc2bf7 wrote them (serialised by that code).
    const V1_IMPORTED: &str = r#"{"newest_modified":1790000000,"newest_rank":2,"newest_status":"processing","newest_event_id":"ev1","skipped":["pending"],"attempts":[{"id":"101-1","started_ms":1,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"created","order_id":900,"order_number":"KO-900","at_ms":2}}],"imported":{"operation":"customer_order","duell_order_id":900,"duell_order_number":"KO-900","customer_id":7,"woo_number":"101","total":"200.00","lines":[{"key":"11","duell_product_id":5,"product_number":"A-1","woo_product_id":20,"sku":"A-1","name":"Vare","quantity":"2","price_ex_vat":"80.00","price_inc_vat":"100.00","vat_rate":"25","discount_inc_vat":null,"comments":"","product_line":true}],"remarks":[],"recovered_by_lookup":false,"attempt_id":"101-1","effective_at_ms":2,"refused":null,"announced":true,"woo_done":false,"refusal_reported":false,"hold_released":false},"parked":null,"in_doubt":null,"released_unimported":null}"#;
    const V1_OPEN: &str = r#"{"newest_modified":0,"newest_rank":2,"newest_status":"processing","newest_event_id":"ev2","skipped":[],"attempts":[{"id":"102-1","started_ms":1,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[{"key":"11","duell_product_id":5,"product_number":"A-1","woo_product_id":20,"sku":"A-1","name":"Vare","quantity":"2","price_ex_vat":"80.00","price_inc_vat":"100.00","vat_rate":"25","discount_inc_vat":null,"comments":"","product_line":true}],"remarks":[]},"outcome":{"kind":"not_applied","reason":"down","at_ms":2}},{"id":"102-2","started_ms":3,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[{"key":"11","duell_product_id":5,"product_number":"A-1","woo_product_id":20,"sku":"A-1","name":"Vare","quantity":"2","price_ex_vat":"80.00","price_inc_vat":"100.00","vat_rate":"25","discount_inc_vat":null,"comments":"","product_line":true}],"remarks":[]},"outcome":null}],"imported":null,"parked":null,"in_doubt":null,"released_unimported":null}"#;
    const V1_UNKNOWN: &str = r#"{"newest_modified":0,"newest_rank":2,"newest_status":"processing","newest_event_id":"ev2","skipped":[],"attempts":[{"id":"102-1","started_ms":1,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"not_applied","reason":"down","at_ms":2}},{"id":"102-2","started_ms":3,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"unknown","detail":"timeout","at_ms":4}}],"imported":null,"parked":null,"in_doubt":null,"released_unimported":null}"#;
    const V1_DOUBT: &str = r#"{"newest_modified":0,"newest_rank":2,"newest_status":"processing","newest_event_id":"ev2","skipped":[],"attempts":[{"id":"102-1","started_ms":1,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"not_applied","reason":"down","at_ms":2}},{"id":"102-2","started_ms":3,"plan":{"operation":"customer_order","customer_id":7,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"unknown","detail":"timeout","at_ms":4}}],"imported":null,"parked":null,"in_doubt":{"attempt_id":"102-2","operation":"customer_order","detail":"timeout; the order lookup is off","at_ms":5,"dlq_event_id":"ev2"},"released_unimported":null}"#;
    const V1_PARKED: &str = r#"{"newest_modified":0,"newest_rank":2,"newest_status":"processing","newest_event_id":"ev3","skipped":[],"attempts":[],"imported":null,"parked":{"code":"unknown_product","reason":"SKU X not in DUELL","missing_skus":["X"],"missing_woo_ids":[],"at_ms":6,"dlq_event_id":"ev3"},"in_doubt":null,"released_unimported":null}"#;
    const V1_SKIPPED: &str = r#"{"newest_modified":0,"newest_rank":3,"newest_status":"cancelled","newest_event_id":"ev4","skipped":["cancelled"],"attempts":[],"imported":null,"parked":null,"in_doubt":null,"released_unimported":"ev4"}"#;
    const V1_ADJUSTED: &str = r#"{"newest_modified":0,"newest_rank":0,"newest_status":"","newest_event_id":"","skipped":[],"attempts":[{"id":"104-1","started_ms":1,"plan":{"operation":"adjust_stock","customer_id":0,"woo_number":"101","total":"200.00","lines":[],"remarks":[]},"outcome":{"kind":"adjusted","at_ms":2,"refused":"row B"}}],"imported":{"operation":"adjust_stock","duell_order_id":0,"duell_order_number":"","customer_id":0,"woo_number":"104","total":"1","lines":[{"key":"11","duell_product_id":5,"product_number":"A-1","woo_product_id":20,"sku":"A-1","name":"Vare","quantity":"2","price_ex_vat":"80.00","price_inc_vat":"100.00","vat_rate":"25","discount_inc_vat":null,"comments":"","product_line":true}],"remarks":["r"],"recovered_by_lookup":false,"attempt_id":"104-1","effective_at_ms":2,"refused":"row B","announced":true,"woo_done":true,"refusal_reported":true,"hold_released":true},"parked":null,"in_doubt":null,"released_unimported":null}"#;

    fn load(json: &str) -> OrderRecord {
        serde_json::from_str(json).expect("a v1 record loads")
    }

    #[test]
    fn a_v1_imported_record_loads_as_imported_with_its_steps() {
        let r = load(V1_IMPORTED);
        assert_eq!(r.newest.status, "processing");
        assert_eq!(r.newest.modified, 1_790_000_000);
        assert!(r.skipped.contains("pending"));
        assert_eq!(r.attempts, 1);
        let imp = r.stage.imported().expect("imported");
        assert_eq!(
            (imp.duell_order_id, imp.duell_order_number.as_str()),
            (900, "KO-900")
        );
        assert_eq!(imp.origin, Origin::Answer);
        assert_eq!(imp.lines.len(), 1);
        assert!(imp.progress.announced && !imp.progress.noted && !imp.progress.marked);
        assert!(!imp.progress.hold_released);
    }

    #[test]
    fn a_v1_attempt_without_outcome_loads_as_an_open_intent() {
        let r = load(V1_OPEN);
        assert_eq!(r.attempts, 2);
        match &r.stage {
            Stage::Intent { attempt } => {
                assert_eq!(attempt.id, "102-2");
                assert_eq!(attempt.plan.lines.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match load(V1_UNKNOWN).stage {
            Stage::Unknown {
                attempt, since_ms, ..
            } => assert_eq!((attempt.id.as_str(), since_ms), ("102-2", 4)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1_in_doubt_parked_skipped_and_partial_deductions_keep_their_meaning() {
        match load(V1_DOUBT).stage {
            Stage::InDoubt(d) => {
                assert_eq!(d.attempt.id, "102-2");
                assert_eq!(d.dlq_event_id.as_deref(), Some("ev2"));
                assert!(d.announced);
            }
            other => panic!("{other:?}"),
        }
        match load(V1_PARKED).stage {
            Stage::Parked(p) => {
                assert_eq!(p.code, "unknown_product");
                assert_eq!(p.missing_skus, vec!["X".to_owned()]);
                assert!(p.announced);
            }
            other => panic!("{other:?}"),
        }
        let s = load(V1_SKIPPED);
        assert_eq!(s.stage, Stage::Pending);
        assert_eq!(s.released_unimported.as_deref(), Some("ev4"));
        let a = load(V1_ADJUSTED);
        let imp = a.stage.imported().expect("imported");
        assert_eq!(imp.refused.as_deref(), Some("row B"));
        assert!(imp.progress.refusal_reported && imp.progress.noted);
        assert!(!imp.progress.marked, "v1 wrote no marker");
    }

    #[test]
    fn a_current_record_round_trips() {
        for json in [V1_IMPORTED, V1_OPEN, V1_DOUBT, V1_PARKED, V1_SKIPPED] {
            let r = load(json);
            let again: OrderRecord =
                serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(again, r);
        }
    }

    #[test]
    fn the_newest_observation_wins_by_modification_time_then_status_rank() {
        let mut r = OrderRecord::default();
        assert!(r.observe(100, "processing", "a"));
        assert!(!r.observe(99, "completed", "b"), "older");
        assert!(!r.observe(100, "on-hold", "c"), "same time, lower rank");
        assert!(
            r.observe(100, "processing", "d"),
            "same pair: the later arrival"
        );
        assert!(r.observe(100, "cancelled", "e"));
        assert_eq!(r.newest.event_id, "e");
        assert_eq!(r.newest.status, "cancelled");
    }
}
