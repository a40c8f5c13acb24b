//! `syncctl store apply|get|list|delete|history|keygen`: the store registry from the command
//! line (the GitOps path). `apply -f` creates or updates stores from TOML files (one store per
//! file, `[stores.<id>]` tables, or a directory of files), showing the field-by-field diff
//! first; `--dry-run` stops there. Secrets written as plain text in a file are sealed into the
//! registry (syncctl needs the sealing keys for that); `{ env }` and `{ file }` references are
//! stored as references. Secrets are never printed: `get` shows who set them and when.

use std::path::{Path, PathBuf};

use duellsync_registry::{Error as RegistryError, FieldChange, Plan, Registry, StoreRecord};
use serde_json::json;

use crate::timefmt::at;
use crate::ui::{table, Tone};
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Create or update stores from TOML files, showing the diff first.
    Apply {
        /// A store file, a file of `[stores.<id>]` tables, or a directory of `<id>.toml`.
        #[arg(short = 'f', long = "file", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Show what would change; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who makes the change, for the audit (default: $USER on this host).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// One store's settings (secrets shown as set or not, never their value).
    Get { id: String },
    /// Every store: shard, revision, last change.
    List,
    /// Remove a store: every service stops serving it.
    Delete {
        id: String,
        /// Confirm (needed without a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Every change of a store's settings: who, when, which fields.
    History { id: String },
    /// Serve a store by another shard (its `shard`); the old shard lets go first. A name no
    /// shard has (e.g. `parked`) stops it everywhere but webhook-ingest.
    Move {
        id: String,
        shard: String,
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Print a new sealing key (for DUELLSYNC_SEAL__API_KEY / DUELLSYNC_SEAL__RECEIVER_KEY).
    Keygen,
}

fn actor(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        if host.is_empty() {
            format!("{user} (syncctl)")
        } else {
            format!("{user}@{host} (syncctl)")
        }
    })
}

/// The stores a path holds, by id, as raw tables.
fn read_stores(path: &Path) -> anyhow::Result<Vec<(String, toml::Table)>> {
    let read = |p: &Path| -> anyhow::Result<toml::Table> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| usage(format!("{}: cannot read: {e}", p.display())))?;
        text.parse::<toml::Table>()
            .map_err(|e| usage(format!("{}: {}", p.display(), e.to_string().trim())))
    };
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut files = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| usage(format!("{}: cannot list: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        entries.sort();
        files.extend(entries);
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for f in files {
        let mut t = read(&f)?;
        if let Some(stores) = t.remove("stores") {
            let toml::Value::Table(stores) = stores else {
                return Err(usage(format!(
                    "{}: `stores` must be a table of [stores.<id>] sections",
                    f.display()
                )));
            };
            for (id, v) in stores {
                let toml::Value::Table(v) = v else {
                    return Err(usage(format!(
                        "{}: stores.{id} must be a table",
                        f.display()
                    )));
                };
                out.push((id, v));
            }
        } else {
            let id = t
                .get("id")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| stem(&f));
            out.push((id, t));
        }
    }
    Ok(out)
}

fn change_line(ctx: &Ctx, c: &FieldChange) -> String {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    let mark = match (&c.before, &c.after) {
        (None, Some(_)) => ctx.ui.paint(Tone::Good, "+"),
        (Some(_), None) => ctx.ui.paint(Tone::Bad, "-"),
        _ => ctx.ui.paint(Tone::Warn, "~"),
    };
    format!(
        "  {mark} {:<34} {} → {}",
        c.key,
        show(&c.before),
        show(&c.after)
    )
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    json!({
        "store": plan.id,
        "create": plan.base.is_none(),
        "changes": plan.changes,
    })
}

fn problems_json(e: &duellsync_settings::ConfigError) -> serde_json::Value {
    json!(e
        .problems
        .iter()
        .map(|p| json!({"key": p.key, "message": p.message}))
        .collect::<Vec<_>>())
}

async fn apply(
    ctx: &Ctx,
    files: Vec<PathBuf>,
    dry_run: bool,
    who: String,
) -> anyhow::Result<Outcome> {
    let mut wanted = Vec::new();
    for f in &files {
        wanted.extend(read_stores(f)?);
    }
    if wanted.is_empty() {
        return Err(usage("the files define no store"));
    }
    let registry = ctx.registry().await?;
    let mut report = Vec::new();
    let mut outcome = Outcome::Ok;
    for (id, table) in wanted {
        check_store_id(&id)?;
        let base = registry.get(&id).await?;
        let plan = match registry.plan(&id, table, base.as_ref(), &who) {
            Ok(p) => p,
            Err(RegistryError::Invalid(e)) => {
                outcome = Outcome::Invalid;
                ctx.ui.line(format!(
                    "{} store {id}: refused, nothing stored",
                    ctx.ui.paint(Tone::Bad, "✖")
                ));
                for p in &e.problems {
                    ctx.ui.line(format!("    {}: {}", p.key, p.message));
                }
                report
                    .push(json!({"store": id, "result": "invalid", "problems": problems_json(&e)}));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if plan.is_noop() {
            ctx.ui.line(format!("= store {id}: unchanged"));
            report.push(json!({"store": id, "result": "unchanged"}));
            continue;
        }
        ctx.ui.line(format!(
            "{} store {id}{}:",
            if plan.base.is_none() { "+" } else { "~" },
            if plan.base.is_none() { " (new)" } else { "" }
        ));
        for c in &plan.changes {
            ctx.ui.line(change_line(ctx, c));
        }
        let mut v = plan_json(&plan);
        if dry_run {
            v["result"] = json!("planned");
        } else {
            match registry.commit(&plan).await {
                Ok(rev) => {
                    ctx.ui.line(format!(
                        "  {} stored (revision {rev}); the services apply it within seconds",
                        ctx.ui.paint(Tone::Good, "✔")
                    ));
                    v["result"] = json!("stored");
                    v["revision"] = json!(rev);
                }
                Err(RegistryError::Conflict(_)) => {
                    outcome = Outcome::Failed;
                    ctx.ui.line(format!(
                        "  {} someone changed store {id} meanwhile; nothing stored, run it again",
                        ctx.ui.paint(Tone::Bad, "✖")
                    ));
                    v["result"] = json!("conflict");
                }
                Err(e) => return Err(e.into()),
            }
        }
        report.push(v);
    }
    if dry_run {
        ctx.ui.note("dry run: nothing was stored");
    }
    if ctx.ui.json {
        ctx.ui
            .json_out(&json!({"ok": outcome == Outcome::Ok, "dry_run": dry_run, "stores": report}));
    }
    Ok(outcome)
}

/// A record as shown: the settings with every sealed secret replaced by who set it, when.
fn shown(record: &StoreRecord) -> String {
    let mut t = record.table();
    for key in duellsync_settings::SECRET_KEYS {
        let (section, name) = key.split_once('.').expect("secret keys are dotted");
        let Some(toml::Value::Table(sec)) = t.get_mut(section) else {
            continue;
        };
        if sec.get(name).and_then(|v| v.get("sealed")).is_some() {
            let stamp = record
                .secrets
                .get(key)
                .map(|s| format!("set, changed {} by {}", at(s.at_ms), s.by))
                .unwrap_or_else(|| "set".into());
            sec.insert(
                name.to_owned(),
                toml::Value::String(format!("<sealed: {stamp}>")),
            );
        }
    }
    toml::to_string(&t).unwrap_or_default()
}

async fn get(ctx: &Ctx, registry: &Registry, id: &str) -> anyhow::Result<Outcome> {
    check_store_id(id)?;
    let Some(s) = registry.get(id).await? else {
        return Err(usage(format!("no store `{id}` in the registry")));
    };
    if ctx.ui.json {
        ctx.ui.json_out(&json!({
            "store": id,
            "revision": s.revision,
            "shard": s.record.shard(),
            "changed_at_ms": s.record.changed_at_ms,
            "changed_by": s.record.changed_by,
            "settings": shown(&s.record),
            "secrets": s.record.secrets,
        }));
    } else {
        ctx.ui.line(format!(
            "# store {id}, revision {}, changed {} by {}",
            s.revision,
            at(s.record.changed_at_ms),
            s.record.changed_by
        ));
        ctx.ui.line(format!("id = \"{id}\""));
        ctx.ui.line(shown(&s.record).trim_end());
    }
    Ok(Outcome::Ok)
}

pub async fn run(ctx: &Ctx, cmd: StoreCommand) -> anyhow::Result<Outcome> {
    match cmd {
        StoreCommand::Keygen => {
            let key = duellsync_registry::generate_key();
            if ctx.ui.json {
                ctx.ui.json_out(&json!({"key": key}));
            } else {
                println!("{key}");
            }
            Ok(Outcome::Ok)
        }
        StoreCommand::Apply {
            files,
            dry_run,
            actor: who,
        } => apply(ctx, files, dry_run, actor(who)).await,
        StoreCommand::Get { id } => get(ctx, &ctx.registry().await?, &id).await,
        StoreCommand::List => {
            let registry = ctx.registry().await?;
            let all = registry.list().await?;
            if ctx.ui.json {
                ctx.ui.json_out(&json!({"stores": all.iter().map(|s| json!({
                    "store": s.record.id, "shard": s.record.shard(), "revision": s.revision,
                    "changed_at_ms": s.record.changed_at_ms, "changed_by": s.record.changed_by,
                })).collect::<Vec<_>>()}));
            } else if all.is_empty() {
                ctx.ui
                    .line("no stores in the registry (add one: syncctl store apply -f STORE.toml)");
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.record.id.clone(),
                            s.record.shard(),
                            s.revision.to_string(),
                            at(s.record.changed_at_ms),
                            s.record.changed_by.clone(),
                        ]
                    })
                    .collect();
                for l in table(&["STORE", "SHARD", "REVISION", "CHANGED", "BY"], &rows) {
                    ctx.ui.line(l);
                }
            }
            Ok(Outcome::Ok)
        }
        StoreCommand::Delete {
            id,
            yes,
            actor: who,
        } => {
            check_store_id(&id)?;
            if !yes {
                match ctx.ui.confirm(&format!(
                    "Delete store {id}? Every service stops serving it."
                )) {
                    Some(true) => {}
                    Some(false) => return Ok(Outcome::Failed),
                    None => return Err(usage("refusing without confirmation; add --yes")),
                }
            }
            let registry = ctx.registry().await?;
            match registry.delete(&id, None, &actor(who)).await {
                Ok(()) => {
                    ctx.ui.line(format!(
                        "{} store {id} deleted; its history stays (syncctl store history {id})",
                        ctx.ui.paint(Tone::Good, "✔")
                    ));
                    if ctx.ui.json {
                        ctx.ui.json_out(&json!({"ok": true, "store": id}));
                    }
                    Ok(Outcome::Ok)
                }
                Err(RegistryError::NotFound(_)) => {
                    Err(usage(format!("no store `{id}` in the registry")))
                }
                Err(e) => Err(e.into()),
            }
        }
        StoreCommand::Move {
            id,
            shard,
            actor: who,
        } => {
            check_store_id(&id)?;
            let registry = ctx.registry().await?;
            let Some(current) = registry.get(&id).await? else {
                return Err(usage(format!("no store `{id}` in the registry")));
            };
            let mut table = current.record.table();
            table.insert("shard".into(), toml::Value::String(shard.clone()));
            match registry.save(&id, table, Some(&current), &actor(who)).await {
                Ok((plan, rev)) => {
                    for c in &plan.changes {
                        ctx.ui.line(change_line(ctx, c));
                    }
                    ctx.ui.line(format!(
                        "{} store {id} is served by shard {shard} from revision {rev}",
                        ctx.ui.paint(Tone::Good, "✔")
                    ));
                    if ctx.ui.json {
                        ctx.ui.json_out(
                            &json!({"ok": true, "store": id, "shard": shard, "revision": rev}),
                        );
                    }
                    Ok(Outcome::Ok)
                }
                Err(RegistryError::Invalid(e)) => Err(usage(e.to_string())),
                Err(e) => Err(e.into()),
            }
        }
        StoreCommand::History { id } => {
            check_store_id(&id)?;
            let registry = ctx.registry().await?;
            let history = registry.history(&id).await?;
            if ctx.ui.json {
                ctx.ui.json_out(&json!({"store": id, "changes": history}));
            } else if history.is_empty() {
                ctx.ui.line(format!("no recorded changes of store {id}"));
            } else {
                for h in &history {
                    ctx.ui.line(format!(
                        "{} {} by {} (revision {})",
                        at(h.at_ms),
                        h.action,
                        h.by,
                        h.revision
                    ));
                    for c in &h.changes {
                        ctx.ui.line(change_line(ctx, c));
                    }
                }
            }
            Ok(Outcome::Ok)
        }
    }
}
