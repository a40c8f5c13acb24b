//! The operations as data, for the console: the sync log filtered and paged, full-sync
//! requests and their progress, dead letters with replay and skip. The command-line renderings
//! in the other modules print; these return what a page draws.

use duellsync_bus::{Bus, StartAt, StoredMessage};
use duellsync_events::{headers, meta, v1, Event, EventId, STREAM_DLQ, STREAM_SYNC};
use prost::Message;
use serde::Serialize;
use serde_json::{json, Value};

use crate::events::decode_message;
use crate::sync::{classify, new_run_id, RunEvent};

/// Which sync-log lines to show.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only failures.
    pub failed: bool,
    /// A SKU or an order number the line is about (matched on the product/order key).
    pub needle: Option<String>,
    /// From this instant (Unix ms; default 7 days back).
    pub since_ms: Option<i64>,
    /// Until this instant (Unix ms).
    pub until_ms: Option<i64>,
}

/// One line of the sync log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRow {
    pub seq: u64,
    pub time_ms: i64,
    pub kind: String,
    pub key: String,
    pub what: String,
    pub reason: String,
    pub failed: bool,
}

impl LogFilter {
    fn matches(&self, row: &LogRow, sku: Option<&str>, order: Option<i64>) -> bool {
        if self.failed && !row.failed {
            return false;
        }
        if self.until_ms.is_some_and(|u| row.time_ms > u) {
            return false;
        }
        if let Some(n) = self
            .needle
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let by_sku = sku.is_some_and(|s| s.eq_ignore_ascii_case(n));
            let by_order = order.is_some_and(|o| o.to_string() == n);
            if !(by_sku || by_order) {
                return false;
            }
        }
        true
    }
}

/// The store's sync log, newest first, filtered (full-sync progress ticks left out).
pub async fn log_rows(bus: &Bus, store: &str, filter: &LogFilter) -> anyhow::Result<Vec<LogRow>> {
    let since = filter
        .since_ms
        .unwrap_or_else(|| duellsync_events::now_ms() - 7 * 24 * 3600 * 1000);
    let mut rows = Vec::new();
    bus.scan_at(
        STREAM_SYNC.name,
        &[format!("sync.{store}.>")],
        StartAt::TimeMs(since),
        usize::MAX,
        |m| {
            let d = decode_message(&m);
            if d.name == v1::FullSyncProgress::NAME {
                return;
            }
            let row = LogRow {
                seq: m.sequence,
                time_ms: if d.meta.observed_at_ms > 0 {
                    d.meta.observed_at_ms
                } else {
                    m.published_ms
                },
                kind: d.name.clone(),
                key: d.key.clone(),
                what: d.what.clone(),
                reason: d.reason.clone(),
                failed: d.failed,
            };
            if filter.matches(&row, d.sku.as_deref(), d.order_id) {
                rows.push(row);
            }
        },
    )
    .await?;
    rows.reverse();
    Ok(rows)
}

/// CSV of log rows (RFC 4180: every field quoted, quotes doubled).
pub fn log_csv(rows: &[LogRow]) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from("seq,time,kind,key,what,reason,failed\r\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            r.seq,
            q(&crate::timefmt::at(r.time_ms)),
            q(&r.kind),
            q(&r.key),
            q(&r.what),
            q(&r.reason),
            r.failed
        ));
    }
    out
}

/// Asks for a full sync (or a plan, `dry_run`) the way `syncctl sync` does; returns the run id.
pub async fn request_full_sync(
    bus: &Bus,
    store: &str,
    dry_run: bool,
    producer: &str,
) -> anyhow::Result<String> {
    let run_id = new_run_id();
    let event_id = EventId::new("fullsync-requested", store)
        .str(&run_id)
        .finish();
    let request = v1::FullSyncRequested {
        meta: Some(meta(
            store,
            event_id,
            producer,
            format!("fullsync:{run_id}"),
        )),
        run_id: run_id.clone(),
        dry_run,
        trigger: v1::full_sync_requested::Trigger::Manual as i32,
    };
    bus.publish(&request).await?;
    Ok(run_id)
}

/// Where a full sync is, from its events so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunState {
    pub run_id: String,
    pub dry_run: bool,
    pub phase: String,
    pub done: i64,
    pub total: i64,
    /// Items per second over the run so far.
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_secs: Option<i64>,
    pub finished: bool,
    pub ok: bool,
    pub error: String,
    /// The plan or result summary, when finished.
    pub summary: Option<Value>,
    pub started_ms: i64,
}

impl RunState {
    /// Folds one of the run's events in.
    pub fn apply(&mut self, m: &StoredMessage) {
        let Some(ev) = classify(&self.run_id, m) else {
            return;
        };
        if self.started_ms == 0 {
            self.started_ms = m.published_ms;
        }
        match ev {
            RunEvent::Progress(p) => {
                self.phase = p.phase.clone();
                self.done = p.done.max(0);
                self.total = p.total.max(p.done).max(0);
                let secs = ((m.published_ms - self.started_ms).max(1)) as f64 / 1000.0;
                self.rate = self.done as f64 / secs;
                self.eta_secs = (self.rate > 0.0)
                    .then(|| ((self.total - self.done).max(0) as f64 / self.rate) as i64);
            }
            RunEvent::Completed(c) => {
                let plan = c.plan.clone().unwrap_or_default();
                self.finished = true;
                self.dry_run = c.dry_run;
                self.error = c.error.clone();
                self.ok = c.error.is_empty() && plan.failures == 0;
                if self.total == 0 {
                    self.total = self.done;
                }
                self.done = self.total.max(self.done);
                let updates: i64 = plan.updates_by_field.values().sum();
                self.summary = Some(json!({
                    "creates": plan.creates,
                    "updates": updates,
                    "updates_by_field": plan.updates_by_field,
                    "withdrawals": plan.withdrawals,
                    "unchanged": plan.unchanged,
                    "failures": plan.failures,
                    "batch_writes": c.batch_writes,
                    "replaces_attributes": plan.replaces_attributes,
                    "sample": plan.sample,
                }));
            }
            RunEvent::GaveUp { service, reason } => {
                self.finished = true;
                self.ok = false;
                self.error = format!("{service}: {reason}");
            }
        }
    }
}

/// The run's state from the sync log and dead letters (a page reloaded mid-run).
pub async fn run_state(bus: &Bus, store: &str, run_id: &str) -> anyhow::Result<RunState> {
    let mut state = RunState {
        run_id: run_id.to_owned(),
        ..RunState::default()
    };
    // Run ids carry their request time (`manual-<ms>-…`): read from a little before it.
    let since = run_id
        .split('-')
        .nth(1)
        .and_then(|t| t.parse::<i64>().ok())
        .map(|t| t - 60_000)
        .unwrap_or(0);
    for (stream, filters) in [
        (
            STREAM_SYNC.name,
            vec![
                v1::FullSyncProgress::subject(store),
                v1::FullSyncCompleted::subject(store),
            ],
        ),
        (
            STREAM_DLQ.name,
            vec![
                duellsync_events::dlq_subject(store, "change-poller"),
                duellsync_events::dlq_subject(store, "catalog-publisher"),
            ],
        ),
    ] {
        bus.scan_at(stream, &filters, StartAt::TimeMs(since), usize::MAX, |m| {
            state.apply(&m)
        })
        .await?;
    }
    Ok(state)
}

/// The latest full sync of a store (its run id), if the sync log still has one.
pub async fn latest_run(bus: &Bus, store: &str) -> anyhow::Result<Option<String>> {
    let mut latest: Option<(i64, String)> = None;
    for subject in [
        v1::FullSyncProgress::subject(store),
        v1::FullSyncCompleted::subject(store),
    ] {
        if let Some(m) = bus.last_message(STREAM_SYNC.name, &subject).await? {
            let run = if subject.ends_with("progress") {
                v1::FullSyncProgress::decode(m.payload.as_ref())
                    .ok()
                    .map(|e| e.run_id)
            } else {
                v1::FullSyncCompleted::decode(m.payload.as_ref())
                    .ok()
                    .map(|e| e.run_id)
            };
            if let Some(run) = run {
                if latest.as_ref().is_none_or(|(t, _)| m.published_ms > *t) {
                    latest = Some((m.published_ms, run));
                }
            }
        }
    }
    Ok(latest.map(|(_, r)| r))
}

/// A dead letter as a page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub seq: u64,
    pub time_ms: i64,
    pub service: String,
    pub subject: String,
    pub reason: String,
    pub deliveries: String,
    pub summary: String,
}

fn letter(m: &StoredMessage) -> Letter {
    let d = decode_message(m);
    Letter {
        seq: m.sequence,
        time_ms: m
            .header(headers::DLQ_AT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(m.published_ms),
        service: m.subject.rsplit('.').next().unwrap_or_default().to_owned(),
        subject: m.header(headers::DLQ_SUBJECT).unwrap_or("?").to_owned(),
        reason: m.header(headers::DLQ_REASON).unwrap_or("").to_owned(),
        deliveries: m.header(headers::DLQ_DELIVERIES).unwrap_or("?").to_owned(),
        summary: format!("{} {}: {}", d.name, d.key, d.what),
    }
}

/// The store's dead letters, oldest first.
pub async fn letters(bus: &Bus, store: &str) -> anyhow::Result<Vec<Letter>> {
    let all = bus
        .read_at(
            STREAM_DLQ.name,
            &[format!("dlq.{store}.>")],
            StartAt::First,
            usize::MAX,
        )
        .await?;
    Ok(all.iter().map(letter).collect())
}

/// What became of a replay or skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetterOutcome {
    Done,
    /// Already replayed or skipped.
    Gone,
    /// The sequence belongs to another store: refused.
    OtherStore,
}

async fn own_letter(
    bus: &Bus,
    store: &str,
    seq: u64,
) -> anyhow::Result<Result<StoredMessage, LetterOutcome>> {
    Ok(match bus.get(STREAM_DLQ.name, seq).await? {
        None => Err(LetterOutcome::Gone),
        Some(m) if m.subject.split('.').nth(1) != Some(store) => Err(LetterOutcome::OtherStore),
        Some(m) => Ok(m),
    })
}

/// Replays one dead letter of `store` as `syncctl dlq replay` does, and audits who and why.
pub async fn replay(
    bus: &Bus,
    store: &str,
    seq: u64,
    by: &str,
    reason: &str,
) -> anyhow::Result<LetterOutcome> {
    let m = match own_letter(bus, store, seq).await? {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    let Some(subject) = m.header(headers::DLQ_SUBJECT).map(str::to_owned) else {
        anyhow::bail!("dead letter {seq} has no original subject; skip it instead");
    };
    bus.publish_raw(
        &subject,
        &crate::dlq::replay_msg_id(&m),
        crate::dlq::replay_headers(&m),
        m.payload.clone(),
    )
    .await?;
    bus.delete_message(STREAM_DLQ.name, seq).await?;
    audit_letter(bus, store, "replay", &m, by, reason).await;
    Ok(LetterOutcome::Done)
}

/// Skips (removes) one dead letter of `store`, recording who and why.
pub async fn skip(
    bus: &Bus,
    store: &str,
    seq: u64,
    by: &str,
    reason: &str,
) -> anyhow::Result<LetterOutcome> {
    let m = match own_letter(bus, store, seq).await? {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    bus.delete_message(STREAM_DLQ.name, seq).await?;
    audit_letter(bus, store, "skip", &m, by, reason).await;
    Ok(LetterOutcome::Done)
}

async fn audit_letter(
    bus: &Bus,
    store: &str,
    action: &str,
    m: &StoredMessage,
    by: &str,
    reason: &str,
) {
    let l = letter(m);
    let entry = json!({
        "store": store, "action": action, "by": by, "reason": reason,
        "at_ms": duellsync_events::now_ms(), "seq": l.seq, "subject": l.subject,
        "dead_letter_reason": l.reason, "summary": l.summary,
    });
    let _ = bus
        .publish_raw(
            &format!("audit.{store}.dlq"),
            &format!("dlq:{store}:{}:{action}", l.seq),
            duellsync_bus::HeaderMap::new(),
            bytes::Bytes::from(entry.to_string()),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_every_field_and_doubles_quotes() {
        let rows = vec![LogRow {
            seq: 7,
            time_ms: 86_400_000,
            kind: "ProductFailed".into(),
            key: "product 1 SKU \"A\"".into(),
            what: "refused, really".into(),
            reason: "line\nbreak".into(),
            failed: true,
        }];
        let csv = log_csv(&rows);
        assert_eq!(
            csv,
            "seq,time,kind,key,what,reason,failed\r\n7,\"1970-01-02 00:00:00Z\",\"ProductFailed\",\"product 1 SKU \"\"A\"\"\",\"refused, really\",\"line\nbreak\",true\r\n"
        );
    }

    #[test]
    fn the_filter_keeps_failures_and_matches_a_sku_or_an_order() {
        let row = |failed| LogRow {
            seq: 1,
            time_ms: 10,
            kind: "X".into(),
            key: String::new(),
            what: String::new(),
            reason: String::new(),
            failed,
        };
        let f = LogFilter {
            failed: true,
            ..LogFilter::default()
        };
        assert!(f.matches(&row(true), None, None));
        assert!(!f.matches(&row(false), None, None));
        let f = LogFilter {
            needle: Some("1001".into()),
            ..LogFilter::default()
        };
        assert!(f.matches(&row(false), Some("1001"), None));
        assert!(f.matches(&row(false), None, Some(1001)));
        assert!(!f.matches(&row(false), Some("1002"), Some(5)));
        let f = LogFilter {
            until_ms: Some(5),
            ..LogFilter::default()
        };
        assert!(!f.matches(&row(false), None, None));
    }
}
