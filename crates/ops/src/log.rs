//! `syncctl log --store S`: the sync log (SPEC §5): every event of `sync.<s>.>` as one line —
//! time, kind, product/order, what happened, why. `--failed` keeps the failures
//! (ProductFailed, OrderParked, OrderInDoubt, OrderStatusConflict, a FullSyncCompleted with an
//! error), `--follow` keeps printing new events. Full-sync progress ticks are left out unless
//! `--progress` (a large sync makes hundreds of them). `--json` prints one object per line.

use std::collections::VecDeque;
use std::time::Duration;

use duellsync_bus::{StartAt, StoredMessage};
use duellsync_events::{v1, Event, STREAM_SYNC};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{decode_message, Decoded};
use crate::timefmt::at;
use crate::ui::{cut, Tone};
use crate::{check_store_id, parse_duration, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The store whose log to show.
    #[arg(long)]
    store: String,
    /// Only failures.
    #[arg(long)]
    failed: bool,
    /// Keep printing new events (Ctrl-C stops).
    #[arg(long)]
    follow: bool,
    /// How far back to start.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    since: Duration,
    /// At most this many of the latest events before following.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Include full-sync progress ticks.
    #[arg(long)]
    progress: bool,
}

fn filters(store: &str, failed: bool) -> Vec<String> {
    if failed {
        vec![
            v1::ProductFailed::subject(store),
            v1::OrderParked::subject(store),
            v1::OrderInDoubt::subject(store),
            v1::OrderStatusConflict::subject(store),
            v1::FullSyncCompleted::subject(store),
        ]
    } else {
        vec![format!("sync.{store}.>")]
    }
}

fn wanted(args: &LogArgs, d: &Decoded) -> bool {
    if args.failed {
        return d.failed;
    }
    args.progress || d.name != v1::FullSyncProgress::NAME
}

fn time_of(m: &StoredMessage, d: &Decoded) -> i64 {
    if d.meta.observed_at_ms > 0 {
        d.meta.observed_at_ms
    } else {
        m.published_ms
    }
}

fn print(ctx: &Ctx, m: &StoredMessage, d: &Decoded) {
    let ui = &ctx.ui;
    if ui.json {
        let mut v = d.to_json();
        v["seq"] = json!(m.sequence);
        v["subject"] = json!(m.subject);
        v["time_ms"] = json!(time_of(m, d));
        ui.json_line(&v);
        return;
    }
    let kind = format!("{:<20}", d.name);
    let kind = if d.failed {
        ui.paint(Tone::Bad, &kind)
    } else {
        kind
    };
    let mut line = format!(
        "{}  {kind}  {:<28}  {}",
        at(time_of(m, d)),
        cut(&d.key, 28),
        cut(&d.what, 80)
    );
    if !d.reason.is_empty() {
        line.push_str(&format!("  — {}", cut(&d.reason, 160)));
    }
    ui.line(line);
}

pub async fn run(ctx: &Ctx, args: LogArgs) -> anyhow::Result<Outcome> {
    check_store_id(&args.store)?;
    let bus = ctx.bus().await?;
    let filters = filters(&args.store, args.failed);
    let (_, last_before) = bus.stream_state(STREAM_SYNC.name).await?;
    let since =
        duellsync_events::now_ms() - i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX);
    let mut kept: VecDeque<(StoredMessage, Decoded)> = VecDeque::new();
    let mut last_seen = last_before;
    let spinner = ctx.ui.spinner("reading the sync log");
    bus.scan_at(
        STREAM_SYNC.name,
        &filters,
        StartAt::TimeMs(since),
        usize::MAX,
        |m| {
            spinner.inc(1);
            last_seen = last_seen.max(m.sequence);
            let d = decode_message(&m);
            if wanted(&args, &d) {
                kept.push_back((m, d));
                if kept.len() > args.limit {
                    kept.pop_front();
                }
            }
        },
    )
    .await?;
    spinner.finish_and_clear();
    if kept.is_empty() && !args.follow && !ctx.ui.json {
        ctx.ui.line(format!(
            "no {}events for store {} in the last {}",
            if args.failed { "failed " } else { "" },
            args.store,
            duellsync_settings::duration::format(args.since)
        ));
    }
    for (m, d) in &kept {
        print(ctx, m, d);
    }
    if !args.follow {
        return Ok(Outcome::Ok);
    }
    let stop = CancellationToken::new();
    let mut rx = bus.follow_at(
        STREAM_SYNC.name,
        &filters,
        StartAt::Sequence(last_seen + 1),
        stop.clone(),
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            m = rx.recv() => match m {
                Some(m) => {
                    let d = decode_message(&m);
                    if wanted(&args, &d) {
                        print(ctx, &m, &d);
                    }
                }
                None => break,
            },
        }
    }
    stop.cancel();
    Ok(Outcome::Ok)
}
