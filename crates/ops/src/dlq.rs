//! `syncctl dlq list|replay|skip`: the messages that failed for good (`dlq.<store>.<service>`).
//!
//! - `list` shows each dead letter: sequence, time, service, original subject, deliveries,
//!   reason and what the message was about.
//! - `replay` republishes the original payload to its original subject with the original
//!   headers, `Duellsync-Replay: 1` (the consumers then try again even where their ledger says
//!   the event was handled) and a new `Nats-Msg-Id` (otherwise JetStream's duplicate window
//!   could drop it as a repeat of the original), then deletes the dead letter. The new id is
//!   derived from the dead letter itself, so a replay interrupted between its publish and its
//!   delete and run again is dropped as a duplicate instead of being delivered twice; a second
//!   run after a complete one finds nothing.
//! - `skip` deletes dead letters (the operator decided nothing more is to be done; for an
//!   in-doubt order that means "DUELL has it") and prints what was skipped. It records nothing
//!   else.

use duellsync_bus::{Bus, HeaderMap, StartAt, StoredMessage};
use duellsync_events::{headers, STREAM_DLQ};
use serde_json::{json, Value};

use crate::events::decode_message;
use crate::timefmt::at;
use crate::ui::{cut, table, Tone};
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List {
        /// Only this store's.
        #[arg(long)]
        store: Option<String>,
    },
    /// Send dead letters to their original subject again, then remove them.
    Replay {
        /// Dead-letter sequence numbers (from `dlq list`).
        #[arg(
            value_name = "SEQ",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        seqs: Vec<u64>,
        /// Every dead letter (of --store, if given).
        #[arg(long)]
        all: bool,
        /// Only this store's (with --all), or refuse sequences of other stores.
        #[arg(long)]
        store: Option<String>,
    },
    /// Remove dead letters without sending them again.
    Skip {
        /// Dead-letter sequence numbers (from `dlq list`).
        #[arg(value_name = "SEQ", required = true)]
        seqs: Vec<u64>,
        /// Why, printed with what was skipped (for the terminal and shell history).
        #[arg(long)]
        reason: Option<String>,
        /// Refuse sequences of other stores.
        #[arg(long)]
        store: Option<String>,
    },
}

/// `dlq.<store>.<service>` → (store, service).
fn parts(subject: &str) -> (String, String) {
    let mut it = subject.splitn(3, '.');
    let _ = it.next();
    (
        it.next().unwrap_or_default().to_owned(),
        it.next().unwrap_or_default().to_owned(),
    )
}

fn dlq_time(m: &StoredMessage) -> i64 {
    m.header(headers::DLQ_AT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(m.published_ms)
}

fn letter_json(m: &StoredMessage) -> Value {
    let (store, service) = parts(&m.subject);
    let d = decode_message(m);
    json!({
        "seq": m.sequence,
        "time_ms": dlq_time(m),
        "store": store,
        "service": service,
        "subject": m.header(headers::DLQ_SUBJECT),
        "consumer": m.header(headers::DLQ_CONSUMER),
        "deliveries": m.header(headers::DLQ_DELIVERIES).and_then(|v| v.parse::<u64>().ok()),
        "original": m.header(headers::DLQ_STREAM_SEQ),
        "reason": m.header(headers::DLQ_REASON),
        "event_id": m.header(headers::MSG_ID),
        "event": d.to_json(),
    })
}

fn summary(m: &StoredMessage) -> String {
    let d = decode_message(m);
    format!("{} {}: {}", d.name, d.key, d.what)
}

/// The headers a replay carries: the original ones, without our dead-letter bookkeeping and
/// without the server's `Nats-*` headers (a new id is set), plus `Duellsync-Replay: 1`.
pub fn replay_headers(m: &StoredMessage) -> HeaderMap {
    let ours = [
        headers::DLQ_REASON,
        headers::DLQ_SUBJECT,
        headers::DLQ_CONSUMER,
        headers::DLQ_DELIVERIES,
        headers::DLQ_STREAM_SEQ,
        headers::DLQ_AT,
        headers::REPLAY,
    ];
    let mut h = HeaderMap::new();
    for (k, v) in &m.headers {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("nats-") || ours.iter().any(|o| o.eq_ignore_ascii_case(k)) {
            continue;
        }
        h.append(k.as_str(), v.as_str());
    }
    h.insert(headers::REPLAY, "1");
    h
}

/// The replay's `Nats-Msg-Id`: new (not the original event id) and the same for every replay
/// of one dead letter.
pub fn replay_msg_id(m: &StoredMessage) -> String {
    format!("replay:{}:{}", m.sequence, dlq_time(m))
}

async fn letters(bus: &Bus, store: Option<&str>) -> anyhow::Result<Vec<StoredMessage>> {
    let filter = match store {
        Some(s) => format!("dlq.{s}.>"),
        None => "dlq.>".to_owned(),
    };
    Ok(bus
        .read_at(STREAM_DLQ.name, &[filter], StartAt::First, usize::MAX)
        .await?)
}

async fn list(ctx: &Ctx, store: Option<String>) -> anyhow::Result<Outcome> {
    if let Some(s) = &store {
        check_store_id(s)?;
    }
    let bus = ctx.bus().await?;
    let all = letters(&bus, store.as_deref()).await?;
    let ui = &ctx.ui;
    if ui.json {
        ui.json_out(&json!({"dead_letters": all.iter().map(letter_json).collect::<Vec<_>>()}));
        return Ok(Outcome::Ok);
    }
    if all.is_empty() {
        ui.line(match &store {
            Some(s) => format!("no dead letters for store {s}"),
            None => "no dead letters".to_owned(),
        });
        return Ok(Outcome::Ok);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            let (store, service) = parts(&m.subject);
            vec![
                m.sequence.to_string(),
                at(dlq_time(m)),
                store,
                service,
                m.header(headers::DLQ_SUBJECT).unwrap_or("?").to_owned(),
                m.header(headers::DLQ_DELIVERIES).unwrap_or("?").to_owned(),
                cut(m.header(headers::DLQ_REASON).unwrap_or(""), 70),
                cut(&summary(m), 70),
            ]
        })
        .collect();
    for l in table(
        &[
            "SEQ", "TIME", "STORE", "SERVICE", "SUBJECT", "DELIV", "REASON", "MESSAGE",
        ],
        &rows,
    ) {
        ui.line(l);
    }
    ui.line(format!(
        "{} dead letter(s); the full reason: syncctl dlq list --json; then `syncctl dlq replay SEQ` or `syncctl dlq skip SEQ`",
        all.len()
    ));
    Ok(Outcome::Ok)
}

/// The dead letters to act on, by sequence; a missing one is reported, not an error (it was
/// replayed or skipped already). Letters of another store than `store` are refused.
async fn targets(
    ctx: &Ctx,
    bus: &Bus,
    seqs: &[u64],
    store: Option<&str>,
    report: &mut Vec<Value>,
) -> anyhow::Result<(Vec<StoredMessage>, bool)> {
    let mut out = Vec::new();
    let mut ok = true;
    for seq in seqs {
        match bus.get(STREAM_DLQ.name, *seq).await? {
            None => {
                ctx.ui.line(format!(
                    "– seq {seq}: not in the dead-letter queue (already replayed or skipped)"
                ));
                report.push(json!({"seq": seq, "result": "not_found"}));
            }
            Some(m) if store.is_some_and(|s| parts(&m.subject).0 != s) => {
                ctx.ui.line(format!(
                    "{} seq {seq}: belongs to store {}, not {}; left alone",
                    ctx.ui.paint(Tone::Bad, "✖"),
                    parts(&m.subject).0,
                    store.unwrap_or_default()
                ));
                report.push(json!({"seq": seq, "result": "other_store"}));
                ok = false;
            }
            Some(m) => out.push(m),
        }
    }
    Ok((out, ok))
}

async fn replay(
    ctx: &Ctx,
    seqs: Vec<u64>,
    all: bool,
    store: Option<String>,
) -> anyhow::Result<Outcome> {
    if let Some(s) = &store {
        check_store_id(s)?;
    }
    let bus = ctx.bus().await?;
    let mut report = Vec::new();
    let (chosen, mut ok) = if all {
        (letters(&bus, store.as_deref()).await?, true)
    } else {
        targets(ctx, &bus, &seqs, store.as_deref(), &mut report).await?
    };
    if all && chosen.is_empty() {
        ctx.ui.line("nothing to replay");
    }
    for m in chosen {
        let Some(subject) = m.header(headers::DLQ_SUBJECT).map(str::to_owned) else {
            ctx.ui.line(format!(
                "{} seq {}: has no {} header, so its original subject is unknown; skip it instead",
                ctx.ui.paint(Tone::Bad, "✖"),
                m.sequence,
                headers::DLQ_SUBJECT
            ));
            report.push(json!({"seq": m.sequence, "result": "no_subject"}));
            ok = false;
            continue;
        };
        let msg_id = replay_msg_id(&m);
        let published = bus
            .publish_raw(&subject, &msg_id, replay_headers(&m), m.payload.clone())
            .await;
        match published {
            Ok(p) => {
                bus.delete_message(STREAM_DLQ.name, m.sequence).await?;
                ctx.ui.line(format!(
                    "{} seq {} replayed to {subject} ({} seq {}{}) — {}",
                    ctx.ui.paint(Tone::Good, "✔"),
                    m.sequence,
                    p.stream,
                    p.sequence,
                    if p.duplicate {
                        ", already replayed before"
                    } else {
                        ""
                    },
                    cut(&summary(&m), 80)
                ));
                report.push(json!({
                    "seq": m.sequence, "result": "replayed", "subject": subject,
                    "stream": p.stream, "stream_seq": p.sequence, "msg_id": msg_id,
                    "duplicate": p.duplicate,
                }));
            }
            Err(e) => {
                ctx.ui.line(format!(
                    "{} seq {}: not replayed, left in the queue: {e}",
                    ctx.ui.paint(Tone::Bad, "✖"),
                    m.sequence
                ));
                report.push(json!({"seq": m.sequence, "result": "error", "error": e.to_string()}));
                ok = false;
            }
        }
    }
    if ctx.ui.json {
        ctx.ui.json_out(&json!({"ok": ok, "replayed": report}));
    }
    Ok(Outcome::from_ok(ok))
}

async fn skip(
    ctx: &Ctx,
    seqs: Vec<u64>,
    reason: Option<String>,
    store: Option<String>,
) -> anyhow::Result<Outcome> {
    if let Some(s) = &store {
        check_store_id(s)?;
    }
    if seqs.is_empty() {
        return Err(usage(
            "name the dead letters to skip by sequence (syncctl dlq list)",
        ));
    }
    let bus = ctx.bus().await?;
    let mut report = Vec::new();
    let (chosen, ok) = targets(ctx, &bus, &seqs, store.as_deref(), &mut report).await?;
    for m in chosen {
        bus.delete_message(STREAM_DLQ.name, m.sequence).await?;
        let (store, service) = parts(&m.subject);
        ctx.ui.line(format!(
            "{} seq {} skipped: {store}/{service} {} — {} — {}{}",
            ctx.ui.paint(Tone::Good, "✔"),
            m.sequence,
            m.header(headers::DLQ_SUBJECT).unwrap_or("?"),
            cut(m.header(headers::DLQ_REASON).unwrap_or(""), 100),
            cut(&summary(&m), 80),
            reason
                .as_deref()
                .map(|r| format!(" (skipped because: {r})"))
                .unwrap_or_default()
        ));
        let mut v = letter_json(&m);
        v["result"] = json!("skipped");
        v["skip_reason"] = json!(reason);
        report.push(v);
    }
    if ctx.ui.json {
        ctx.ui.json_out(&json!({"ok": ok, "skipped": report}));
    }
    Ok(Outcome::from_ok(ok))
}

pub async fn run(ctx: &Ctx, cmd: DlqCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DlqCommand::List { store } => list(ctx, store).await,
        DlqCommand::Replay { seqs, all, store } => replay(ctx, seqs, all, store).await,
        DlqCommand::Skip {
            seqs,
            reason,
            store,
        } => skip(ctx, seqs, reason, store).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> StoredMessage {
        StoredMessage {
            stream: "DLQ".into(),
            subject: "dlq.s1.order-importer".into(),
            sequence: 7,
            published_ms: 1000,
            headers: vec![
                ("Nats-Msg-Id".into(), "orig-id".into()),
                ("Duellsync-Event".into(), "OrderObserved".into()),
                ("traceparent".into(), "00-abc-def-01".into()),
                (headers::DLQ_REASON.into(), "boom".into()),
                (headers::DLQ_SUBJECT.into(), "woo.s1.order.observed".into()),
                (headers::DLQ_AT.into(), "2000".into()),
                ("Nats-Expected-Stream".into(), "WOO".into()),
            ],
            payload: Default::default(),
        }
    }

    #[test]
    fn a_replay_keeps_the_original_headers_and_marks_itself() {
        let h = replay_headers(&letter());
        assert_eq!(
            h.get("Duellsync-Event").map(|v| v.as_str()),
            Some("OrderObserved")
        );
        assert_eq!(
            h.get("traceparent").map(|v| v.as_str()),
            Some("00-abc-def-01")
        );
        assert_eq!(h.get(headers::REPLAY).map(|v| v.as_str()), Some("1"));
        assert!(h.get("Nats-Msg-Id").is_none());
        assert!(h.get("Nats-Expected-Stream").is_none());
        assert!(h.get(headers::DLQ_REASON).is_none());
        assert!(h.get(headers::DLQ_SUBJECT).is_none());
    }

    #[test]
    fn a_replay_id_is_new_and_stable_per_dead_letter() {
        let m = letter();
        assert_eq!(replay_msg_id(&m), "replay:7:2000");
        assert_ne!(replay_msg_id(&m), "orig-id");
        assert_eq!(parts(&m.subject), ("s1".into(), "order-importer".into()));
    }
}
