//! `syncctl sync --store S [--dry-run] [--yes]`: asks for a full sync and follows it.
//!
//! The request (`cmd.<s>.fullsync.requested`, trigger MANUAL, a fresh run id) goes to the
//! change-poller, which scans DUELL and ends with `duell.<s>.catalog.scanned`; the catalogue
//! publisher then reads WooCommerce and writes (or, dry, only plans). Both report
//! `sync.<s>.fullsync.progress`; the publisher ends with `sync.<s>.fullsync.completed`, whose
//! plan is the summary printed here. A request the poller gives up on lands in its dead letters,
//! which are watched too, so a failure is reported instead of waiting for the timeout.

use std::time::{Duration, Instant};

use duellsync_bus::StartAt;
use duellsync_events::{
    dlq_subject, meta, v1, Event, EventId, STREAM_CMD, STREAM_DLQ, STREAM_SYNC,
};
use prost::Message;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::ui::Tone;
use crate::{check_store_id, parse_duration, usage, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The store to sync.
    #[arg(long)]
    store: String,
    /// Compute and print the plan; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask before a sync that replaces WooCommerce attributes (needed without a terminal).
    #[arg(long)]
    yes: bool,
    /// How long to wait for the result before giving up waiting (the sync itself goes on).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    timeout: Duration,
}

pub fn new_run_id() -> String {
    format!(
        "manual-{}-{:08x}",
        duellsync_events::now_ms(),
        rand::random::<u32>()
    )
}

/// Whether to go on with a real full sync: it replaces WooCommerce attributes when
/// `sync_attributes` is on, which a person must accept.
fn confirm_attributes(ctx: &Ctx, args: &SyncArgs) -> anyhow::Result<bool> {
    if args.dry_run {
        return Ok(true);
    }
    let store = ctx.store(&args.store)?;
    if !store.sync_attributes {
        return Ok(true);
    }
    let warning = format!(
        "store {} has sync_attributes on: a full sync replaces the attributes of every synced WooCommerce product with DUELL's custom fields (attributes added in WooCommerce are lost)",
        store.id
    );
    if args.yes {
        ctx.ui.note(format!("warning: {warning}"));
        return Ok(true);
    }
    ctx.ui.note(format!("warning: {warning}"));
    match ctx.ui.confirm("Run the full sync?") {
        Some(answer) => Ok(answer),
        None => Err(usage(format!(
            "refusing without confirmation: {warning}. Run it on a terminal, or add --yes"
        ))),
    }
}

pub enum RunEvent {
    Progress(v1::FullSyncProgress),
    Completed(v1::FullSyncCompleted),
    GaveUp { service: String, reason: String },
}

/// The run's events among the messages of the sync log and the dead letters.
pub fn classify(run_id: &str, m: &duellsync_bus::StoredMessage) -> Option<RunEvent> {
    if m.stream == STREAM_DLQ.name {
        let original = m.header(duellsync_events::headers::DLQ_SUBJECT)?;
        let run = match duellsync_events::event_name_for_subject(original)? {
            "FullSyncRequested" => {
                v1::FullSyncRequested::decode(m.payload.as_ref())
                    .ok()?
                    .run_id
            }
            "CatalogScanned" => v1::CatalogScanned::decode(m.payload.as_ref()).ok()?.run_id,
            _ => return None,
        };
        if run != run_id {
            return None;
        }
        return Some(RunEvent::GaveUp {
            service: m.subject.rsplit('.').next().unwrap_or_default().to_owned(),
            reason: m
                .header(duellsync_events::headers::DLQ_REASON)
                .unwrap_or("no reason given")
                .to_owned(),
        });
    }
    if m.subject.ends_with(".fullsync.progress") {
        let ev = v1::FullSyncProgress::decode(m.payload.as_ref()).ok()?;
        return (ev.run_id == run_id).then_some(RunEvent::Progress(ev));
    }
    if m.subject.ends_with(".fullsync.completed") {
        let ev = v1::FullSyncCompleted::decode(m.payload.as_ref()).ok()?;
        return (ev.run_id == run_id).then_some(RunEvent::Completed(ev));
    }
    None
}

pub fn phase_label(phase: &str) -> &str {
    match phase {
        "scan-duell" => "reading DUELL",
        "read-woo" => "reading WooCommerce",
        "write" => "writing",
        other => other,
    }
}

pub async fn run(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<Outcome> {
    check_store_id(&args.store)?;
    if !confirm_attributes(ctx, &args)? {
        ctx.ui.note("cancelled; nothing was requested");
        return Ok(Outcome::Failed);
    }
    let bus = ctx.bus().await?;
    let store = args.store.as_str();
    let (_, sync_last) = bus.stream_state(STREAM_SYNC.name).await?;
    let (_, dlq_last) = bus.stream_state(STREAM_DLQ.name).await?;
    let poller = format!("change-poller-{store}-cmd");
    let served = bus
        .consumers(STREAM_CMD.name)
        .await
        .map(|cs| cs.iter().any(|c| c.name == poller))
        .unwrap_or(false);
    if !served {
        ctx.ui.note(format!(
            "warning: no change-poller has ever served store {store} (no consumer {poller}); the request waits until one starts"
        ));
    }
    let publisher = format!("catalog-publisher-{store}-duell");
    let published = bus
        .consumers(duellsync_events::STREAM_DUELL.name)
        .await
        .map(|cs| cs.iter().any(|c| c.name == publisher))
        .unwrap_or(false);
    if !published {
        ctx.ui.note(format!(
            "warning: no catalog-publisher has ever served store {store} (no consumer {publisher}); the sync runs when one starts"
        ));
    }

    let run_id = new_run_id();
    let event_id = EventId::new("fullsync-requested", store)
        .str(&run_id)
        .finish();
    let request = v1::FullSyncRequested {
        meta: Some(meta(
            store,
            event_id,
            "syncctl",
            format!("fullsync:{run_id}"),
        )),
        run_id: run_id.clone(),
        dry_run: args.dry_run,
        trigger: v1::full_sync_requested::Trigger::Manual as i32,
    };
    bus.publish(&request).await?;
    let started = Instant::now();
    if !ctx.ui.json {
        ctx.ui.note(format!(
            "{} of store {store} requested (run {run_id}); waiting for the change-poller and the catalogue publisher",
            if args.dry_run { "Dry run" } else { "Full sync" }
        ));
    }

    let stop = CancellationToken::new();
    let mut sync_rx = bus.follow_at(
        STREAM_SYNC.name,
        &[
            v1::FullSyncProgress::subject(store),
            v1::FullSyncCompleted::subject(store),
        ],
        StartAt::Sequence(sync_last + 1),
        stop.clone(),
    );
    let mut dlq_rx = bus.follow_at(
        STREAM_DLQ.name,
        &[
            dlq_subject(store, "change-poller"),
            dlq_subject(store, "catalog-publisher"),
        ],
        StartAt::Sequence(dlq_last + 1),
        stop.clone(),
    );
    let bar = ctx.ui.progress("waiting");
    let deadline = tokio::time::sleep(args.timeout);
    tokio::pin!(deadline);
    let result = loop {
        let m = tokio::select! {
            m = sync_rx.recv() => m,
            m = dlq_rx.recv() => m,
            _ = &mut deadline => break Err(format!(
                "no result within {}; the sync goes on in the services: follow it with `syncctl log --store {store} --follow`",
                duellsync_settings::duration::format(args.timeout)
            )),
            _ = tokio::signal::ctrl_c() => break Err(format!(
                "stopped waiting; the sync goes on in the services: follow it with `syncctl log --store {store} --follow`"
            )),
        };
        let Some(m) = m else { continue };
        match classify(&run_id, &m) {
            Some(RunEvent::Progress(p)) => {
                bar.set_message(phase_label(&p.phase).to_owned());
                bar.set_length(p.total.max(p.done).max(0) as u64);
                bar.set_position(p.done.max(0) as u64);
            }
            Some(RunEvent::Completed(c)) => break Ok(c),
            Some(RunEvent::GaveUp { service, reason }) => {
                break Err(format!("the {service} gave up on this run: {reason}"))
            }
            None => {}
        }
    };
    bar.finish_and_clear();
    stop.cancel();
    let elapsed = started.elapsed();
    let completed = match result {
        Ok(c) => c,
        Err(reason) => {
            if ctx.ui.json {
                ctx.ui.json_out(&json!({
                    "ok": false, "store": store, "run_id": run_id, "dry_run": args.dry_run,
                    "error": reason, "elapsed_ms": elapsed.as_millis() as u64,
                }));
            } else {
                ctx.ui
                    .line(format!("{} {reason}", ctx.ui.paint(Tone::Bad, "✖")));
            }
            return Ok(Outcome::Failed);
        }
    };
    let plan = completed.plan.clone().unwrap_or_default();
    let ok = completed.error.is_empty() && plan.failures == 0;
    if ctx.ui.json {
        let d = crate::events::decode(
            &v1::FullSyncCompleted::subject(store),
            &completed.encode_to_vec(),
        );
        ctx.ui.json_out(&json!({
            "ok": ok,
            "store": store,
            "run_id": run_id,
            "dry_run": completed.dry_run,
            "elapsed_ms": elapsed.as_millis() as u64,
            "error": completed.error,
            "batch_writes": completed.batch_writes,
            "plan": d.fields["plan"],
        }));
    } else {
        print_summary(ctx, store, &run_id, &completed, elapsed);
    }
    Ok(Outcome::from_ok(ok))
}

fn by_field(m: &std::collections::HashMap<String, i64>) -> String {
    let mut v: Vec<(&String, &i64)> = m.iter().collect();
    v.sort();
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(
    ctx: &Ctx,
    store: &str,
    run_id: &str,
    c: &v1::FullSyncCompleted,
    elapsed: Duration,
) {
    let ui = &ctx.ui;
    let p = c.plan.clone().unwrap_or_default();
    let secs = format!("{:.1} s", elapsed.as_secs_f64());
    if !c.error.is_empty() {
        ui.line(format!(
            "{} full sync of store {store} (run {run_id}) failed after {secs}: {}",
            ui.paint(Tone::Bad, "✖"),
            c.error
        ));
        return;
    }
    let (title, verb) = if c.dry_run {
        (
            format!(
                "Dry run of store {store} (run {run_id}) planned in {secs}; nothing was written"
            ),
            "would be ",
        )
    } else {
        (
            format!("Full sync of store {store} (run {run_id}) done in {secs}"),
            "",
        )
    };
    let mark = if p.failures == 0 {
        ui.paint(Tone::Good, "✔")
    } else {
        ui.paint(Tone::Bad, "✖")
    };
    ui.line(format!("{mark} {title}"));
    let updates: i64 = p.updates_by_field.values().sum();
    let rows = vec![
        vec![
            format!("{verb}created"),
            p.creates.to_string(),
            String::new(),
        ],
        vec![
            format!("{verb}updated (fields)"),
            updates.to_string(),
            by_field(&p.updates_by_field),
        ],
        vec![
            format!("{verb}withdrawn / hidden"),
            p.withdrawals.to_string(),
            String::new(),
        ],
        vec!["unchanged".into(), p.unchanged.to_string(), String::new()],
        vec![
            "drift left alone".into(),
            p.drift_left_alone.values().sum::<i64>().to_string(),
            by_field(&p.drift_left_alone),
        ],
        vec!["failed".into(), p.failures.to_string(), String::new()],
        vec![
            "pending anyway".into(),
            p.pending.to_string(),
            if c.dry_run {
                "written by the live path without a sync".into()
            } else {
                String::new()
            },
        ],
        vec![
            "duplicates in WooCommerce".into(),
            p.duplicates.to_string(),
            String::new(),
        ],
        vec![
            "batch writes".into(),
            c.batch_writes.to_string(),
            String::new(),
        ],
    ];
    for line in crate::ui::table(&["", "", ""], &rows).iter().skip(1) {
        ui.line(format!("  {line}"));
    }
    if p.replaces_attributes {
        ui.line("  attributes: WooCommerce attributes are replaced by DUELL's custom fields (sync_attributes)");
    }
    if p.duplicates > 0 {
        ui.line(format!(
            "  {}",
            ui.paint(
                Tone::Warn,
                &format!("DUELL products with several WooCommerce products (the oldest is written to); trash the copies with: syncctl repair duplicates --store {store} [--dry-run]")
            )
        ));
        for l in &p.duplicate_lines {
            ui.line(format!("    {l}"));
        }
    }
    if p.failures > 0 {
        ui.line(format!(
            "  {}",
            ui.paint(
                Tone::Warn,
                &format!("see the failures: syncctl log --store {store} --failed")
            )
        ));
    }
    if c.dry_run && !p.sample.is_empty() {
        ui.line(format!("Plan ({} lines):", p.sample.len()));
        for s in &p.sample {
            ui.line(format!("  {s}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique() {
        assert_ne!(new_run_id(), new_run_id());
    }

    #[test]
    fn only_this_runs_events_count() {
        let ev = v1::FullSyncCompleted {
            run_id: "other".into(),
            ..Default::default()
        };
        let m = duellsync_bus::StoredMessage {
            stream: "SYNC".into(),
            subject: v1::FullSyncCompleted::subject("s1"),
            sequence: 1,
            published_ms: 0,
            headers: Vec::new(),
            payload: ev.encode_to_vec().into(),
        };
        assert!(classify("mine", &m).is_none());
        assert!(matches!(
            classify("other", &m),
            Some(RunEvent::Completed(_))
        ));
    }
}
