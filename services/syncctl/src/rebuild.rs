//! `syncctl state rebuild --service NAME --store S --state-dir DIR`: drops one store's share of
//! a stopped service's state so that the service rebuilds it from the streams (also the way to
//! move a store to another shard: rebuild it in the new shard's state).
//!
//! Steps, in this order so that an interruption never leaves a service that skips the replay:
//! 1. refuse if the service still runs (its sled database is locked, or a process still pulls
//!    one of its consumers);
//! 2. delete the service's durable consumers of the store that feed its state (the poller's
//!    command and notice consumers stay: replaying old full-sync requests and change notices
//!    would run old scans again, and the poller re-observes DUELL anyway);
//! 3. forget the ledger entries of the store's events (the rebuilt projection must not skip the
//!    events it is rebuilt from) and remove every row of the store from every table.
//!
//! On restart the service recreates the consumers, which start at the beginning of the streams.
//! The order importer first puts its ledger back from the sync log (`order.imported`,
//! `order.in_doubt`, kept 30 days) before it takes any order, then completes it in the
//! background from the import markers (`_duell_order_id` in the meta data) of WooCommerce orders
//! older than the sync log; and it reads every order fresh from WooCommerce before importing it,
//! so an order whose marker says it is in DUELL is never sent again, however old.

use std::path::PathBuf;

use duellsync_bus::{Bus, ConsumerState, StartAt};
use duellsync_events::{headers, ALL_STREAMS, STREAM_DLQ};
use duellsync_store::{Commit, Store};
use prost::Message;
use serde_json::json;

use crate::ui::Tone;
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Drop one store's state of a stopped service so that it is rebuilt from the streams.
    Rebuild(RebuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The service whose state to rebuild.
    #[arg(long)]
    service: String,
    /// The store whose state to drop.
    #[arg(long)]
    store: String,
    /// The service's state directory (its `state_dir`; the database is DIR/sled).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Do not ask (needed without a terminal).
    #[arg(long)]
    yes: bool,
}

/// Consumer name suffixes that are kept: commands, not state.
fn kept_suffixes(service: &str) -> &'static [&'static str] {
    match service {
        "change-poller" => &["cmd", "notice"],
        _ => &[],
    }
}

fn next_steps(service: &str, store: &str) -> Vec<String> {
    let how = match service {
        "catalog-publisher" => "it replays the store's DUELL facts, stock holds and orders, and re-reads WooCommerce at each replayed full-sync marker: links come back from the DUELL id in each product's meta data (or the SKU), so nothing is created twice",
        "change-poller" => "it re-observes DUELL's catalogue and stock and WooCommerce's orders from scratch (repeated facts are dropped by their ids) and replays the imported orders it watches",
        "order-importer" => "it restores its ledger from the sync log before it takes any order, then learns older imported orders from their import markers in WooCommerce (in the background: watch for \"import ledger completed from the import markers\" in its log); the WOO stream is replayed, and every order is read fresh from WooCommerce before an import, so an order imported before is never sent to DUELL again",
        _ => "it replays the imported orders and DUELL's status changes; a status WooCommerce already has is not written again",
    };
    vec![
        format!("start {service} again (Kubernetes: scale its StatefulSet back to 1): it recreates the deleted consumers at the beginning of the streams"),
        how.to_owned(),
        format!("watch the replay with `syncctl status --store {store}` (the consumers' lag falls to 0) and `syncctl log --store {store} --failed`"),
    ]
}

/// Any event's `Meta`: the ledgers record `meta.event_id` or the message id.
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(message, optional, tag = "1")]
    meta: Option<duellsync_events::Meta>,
}

/// Forgets the ledger entries of every event of the store in the streams; returns how many.
async fn forget_ledger(ctx: &Ctx, bus: &Bus, state: &Store, store: &str) -> anyhow::Result<u64> {
    let ledger = state.ledger();
    let mut forgotten = 0u64;
    let mut commit = Commit::new();
    let mut failure: Option<duellsync_store::Error> = None;
    let spinner = ctx.ui.spinner("forgetting the store's ledger entries");
    for spec in ALL_STREAMS.iter().filter(|s| s.name != STREAM_DLQ.name) {
        let source = spec.subjects[0].trim_end_matches(".>");
        bus.scan_at(
            spec.name,
            &[format!("{source}.{store}.>")],
            StartAt::First,
            usize::MAX,
            |m| {
                spinner.inc(1);
                if failure.is_some() {
                    return;
                }
                let mut ids = Vec::with_capacity(2);
                if let Some(id) = m.header(headers::MSG_ID) {
                    ids.push(id.to_owned());
                }
                if let Some(meta) = Envelope::decode(m.payload.as_ref())
                    .ok()
                    .and_then(|e| e.meta)
                {
                    if !meta.event_id.is_empty() {
                        ids.push(meta.event_id);
                    }
                }
                for id in ids {
                    match ledger.seen(&id) {
                        Ok(true) => {
                            ledger.forget(&mut commit, &id);
                            forgotten += 1;
                        }
                        Ok(false) => {}
                        Err(e) => failure = Some(e),
                    }
                }
                if commit.len() >= 10_000 {
                    if let Err(e) = state.commit_blocking(std::mem::take(&mut commit)) {
                        failure = Some(e);
                    }
                }
            },
        )
        .await?;
    }
    spinner.finish_and_clear();
    if let Some(e) = failure {
        return Err(e.into());
    }
    state.commit_blocking(commit)?;
    Ok(forgotten)
}

pub async fn run(ctx: &Ctx, cmd: StateCommand) -> anyhow::Result<Outcome> {
    let StateCommand::Rebuild(args) = cmd;
    check_store_id(&args.store)?;
    let service = args.service.as_str();
    let store = args.store.as_str();
    match service {
        // The importer restores its ledger from the store's `sync.<store>.order.imported` and
        // `order.in_doubt` facts before it takes any order, and from the import markers in
        // WooCommerce for older orders, so a replay imports nothing twice.
        "change-poller" | "catalog-publisher" | "status-writeback" | "order-importer" => {}
        "webhook-ingest" => return Err(usage("webhook-ingest keeps no state; there is nothing to rebuild")),
        other => return Err(usage(format!(
            "unknown service `{other}`; use change-poller, catalog-publisher, order-importer or status-writeback"
        ))),
    }
    if !args.state_dir.is_dir() {
        return Err(usage(format!(
            "{} is not a directory: give the service's state_dir (the database is DIR/sled)",
            args.state_dir.display()
        )));
    }
    let db = args.state_dir.join("sled");
    // 1. The service must be stopped: sled locks its files while it runs. Holding the database
    //    open from here on also keeps it from starting half way through.
    let state = if db.exists() {
        match Store::open(&db) {
            Ok(s) => Some(s),
            Err(e) if e.is_locked() => {
                ctx.ui.note(format!(
                    "error: the state database {} is locked: {service} is still running. Stop it first (Kubernetes: scale its StatefulSet to 0 and wait for the pod to go), then run this again",
                    db.display()
                ));
                return Ok(Outcome::Failed);
            }
            Err(e) => return Err(anyhow::anyhow!("cannot open {}: {e}", db.display())),
        }
    } else {
        None
    };
    let bus = ctx.bus().await?;
    let prefix = format!("{service}-{store}");
    let mut delete: Vec<ConsumerState> = Vec::new();
    let mut keep: Vec<ConsumerState> = Vec::new();
    for spec in ALL_STREAMS.iter().filter(|s| s.name != STREAM_DLQ.name) {
        for c in bus.consumers(spec.name).await? {
            let ours = c.store() == Some(store)
                && (c.name == prefix || c.name.starts_with(&format!("{prefix}-")));
            if !ours {
                continue;
            }
            let suffix = c.name[prefix.len()..].trim_start_matches('-');
            if kept_suffixes(service).contains(&suffix) {
                keep.push(c);
            } else {
                delete.push(c);
            }
        }
    }

    // A process still pulling a consumer is a running service (perhaps with its state
    // elsewhere than --state-dir): its consumers must not be deleted under it.
    if let Some(c) = delete.iter().chain(&keep).find(|c| c.num_waiting > 0) {
        ctx.ui.note(format!(
            "error: a process is still pulling consumer {} ({}): {service} is running for store {store}. Stop it first (Kubernetes: scale its StatefulSet to 0 and wait for the pod to go), then run this again",
            c.name, c.stream
        ));
        return Ok(Outcome::Failed);
    }

    let ui = &ctx.ui;
    if !ui.json {
        ui.line(format!("Rebuild of {service}'s state of store {store}:"));
        match &state {
            Some(_) => ui.line(format!(
                "  - remove the store's rows and ledger entries from {}",
                db.display()
            )),
            None => ui.line(format!(
                "  - no state database at {} (a new state dir): nothing to remove there",
                db.display()
            )),
        }
        for c in &delete {
            ui.line(format!(
                "  - delete consumer {} ({}), which then replays from the start",
                c.name, c.stream
            ));
        }
        for c in &keep {
            ui.line(format!(
                "  - keep consumer {} ({}): commands are not replayed",
                c.name, c.stream
            ));
        }
    }
    if !args.yes {
        match ui.confirm("Go ahead?") {
            Some(true) => {}
            Some(false) => {
                ui.note("cancelled; nothing was changed");
                return Ok(Outcome::Failed);
            }
            None => {
                return Err(usage(
                    "refusing without confirmation: run it on a terminal, or add --yes",
                ))
            }
        }
    }

    // 2. Consumers first: if the next step fails, the service still replays on restart and
    //    its (complete) old state absorbs the replay.
    let mut deleted = Vec::new();
    for c in &delete {
        if bus.delete_consumer(&c.stream, &c.name).await? {
            deleted.push(json!({"stream": c.stream, "name": c.name}));
        }
    }
    // 3. The ledger entries of the store's events, then its rows.
    let (forgotten, removed) = match &state {
        Some(st) => {
            let forgotten = forget_ledger(ctx, &bus, st, store).await?;
            let removed = st.remove_group(store)?;
            st.flush().await?;
            (forgotten, removed)
        }
        None => (0, Default::default()),
    };
    drop(state);
    let steps = next_steps(service, store);
    if ui.json {
        ui.json_out(&json!({
            "ok": true,
            "service": service,
            "store": store,
            "state_db": db.display().to_string(),
            "consumers_deleted": deleted,
            "consumers_kept": keep.iter().map(|c| json!({"stream": c.stream, "name": c.name})).collect::<Vec<_>>(),
            "rows_removed": removed,
            "ledger_entries_forgotten": forgotten,
            "next_steps": steps,
        }));
    } else {
        let rows: usize = removed.values().sum();
        ui.line(format!(
            "{} done: {} consumer(s) deleted, {rows} row(s) removed ({}), {forgotten} ledger entr{} forgotten",
            ui.paint(Tone::Good, "✔"),
            deleted.len(),
            if removed.is_empty() {
                "none".to_owned()
            } else {
                removed
                    .iter()
                    .map(|(t, n)| format!("{t} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if forgotten == 1 { "y" } else { "ies" }
        ));
        ui.line("Next:");
        for (i, s) in steps.iter().enumerate() {
            ui.line(format!("  {}. {s}", i + 1));
        }
    }
    Ok(Outcome::Ok)
}
