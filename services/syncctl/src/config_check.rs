//! `syncctl config check`: validates store files and service config files with the services'
//! own rules (their `Config` types and `validate()`), without starting anything. Every problem
//! is printed with its key, the value and the fix; literal secrets are warnings.

use std::path::{Path, PathBuf};

use duellsync_settings::service::{load_service_config, ServiceConfig};
use duellsync_settings::{ConfigError, Problem};
use serde_json::{json, Value};

use crate::ui::Tone;
use crate::{usage, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A service whose config file follows in the matching --config (repeat the pair).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// The config file of the --service at the same position.
    #[arg(long = "config", value_name = "FILE")]
    configs: Vec<PathBuf>,
}

/// The services whose configs syncctl knows.
pub const SERVICES: [&str; 5] = [
    "webhook-ingest",
    "change-poller",
    "catalog-publisher",
    "order-importer",
    "status-writeback",
];

/// The result of checking one file or directory.
struct Section {
    title: String,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    stores: Vec<String>,
}

impl Section {
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Splits "`x` is not …; use …" into what is wrong and the fix, and picks the quoted value.
fn split_problem(message: &str) -> (String, Option<String>, Option<String>) {
    let (what, fix) = match message.split_once("; ") {
        Some((w, f)) => (w.to_owned(), Some(f.to_owned())),
        None => (message.to_owned(), None),
    };
    let value = message
        .split_once('`')
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(v, _)| v.to_owned());
    (what, value, fix)
}

fn problem_json(p: &Problem) -> Value {
    let (what, value, fix) = split_problem(&p.message);
    json!({"key": p.key, "message": p.message, "problem": what, "value": value, "fix": fix})
}

fn stores_section(path: &Path, env: &[(String, String)], shard: &[String]) -> Section {
    let mut section = Section {
        title: format!("stores {}", path.display()),
        problems: Vec::new(),
        warnings: Vec::new(),
        stores: Vec::new(),
    };
    match duellsync_settings::load_stores(path, env).and_then(|s| s.select(shard)) {
        Ok(stores) => {
            section.stores = stores.ids().map(str::to_owned).collect();
            section.warnings = stores.warnings;
        }
        Err(ConfigError { problems }) => section.problems = problems,
    }
    section
}

fn service_sections<T: ServiceConfig>(
    name: &str,
    path: &Path,
    env: &[(String, String)],
    validate: impl Fn(&T) -> Result<(), ConfigError>,
) -> Vec<Section> {
    let mut section = Section {
        title: format!("service {name} {}", path.display()),
        problems: Vec::new(),
        warnings: Vec::new(),
        stores: Vec::new(),
    };
    let config: T = match load_service_config(Some(path), env) {
        Ok(c) => c,
        Err(ConfigError { problems }) => {
            section.problems = problems;
            return vec![section];
        }
    };
    if let Err(ConfigError { problems }) = validate(&config) {
        section.problems = problems;
    }
    // The stores this service would serve: its stores_path and shard, as it loads them.
    let stores = stores_section(config.stores_path(), env, config.shard());
    vec![section, stores]
}

fn check_service(name: &str, path: &Path, env: &[(String, String)]) -> Vec<Section> {
    match name {
        "webhook-ingest" => {
            service_sections(name, path, env, duellsync_webhook_ingest::Config::validate)
        }
        "change-poller" => service_sections(
            name,
            path,
            env,
            |_: &duellsync_change_poller::Config| Ok(()),
        ),
        "catalog-publisher" => service_sections(
            name,
            path,
            env,
            |_: &duellsync_catalog_publisher::Config| Ok(()),
        ),
        "order-importer" => {
            service_sections(name, path, env, duellsync_order_importer::Config::validate)
        }
        "status-writeback" => service_sections(
            name,
            path,
            env,
            duellsync_status_writeback::Config::validate,
        ),
        other => vec![Section {
            title: format!("service {other} {}", path.display()),
            problems: vec![Problem {
                key: "--service".into(),
                message: format!(
                    "`{other}` is not a service; use one of {}",
                    SERVICES.join(", ")
                ),
            }],
            warnings: Vec::new(),
            stores: Vec::new(),
        }],
    }
}

pub async fn run(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<Outcome> {
    if args.services.len() != args.configs.len() {
        return Err(usage(format!(
            "give each --service its --config file ({} services, {} files)",
            args.services.len(),
            args.configs.len()
        )));
    }
    for s in &args.services {
        if !SERVICES.contains(&s.as_str()) {
            return Err(usage(format!(
                "unknown service `{s}`; use one of {}",
                SERVICES.join(", ")
            )));
        }
    }
    if ctx.stores_path().is_none() && args.services.is_empty() {
        return Err(usage(
            "nothing to check: give --stores PATH and/or --service NAME --config FILE",
        ));
    }
    let mut sections = Vec::new();
    if let Some(path) = ctx.stores_path() {
        sections.push(stores_section(path, ctx.env(), &[]));
    }
    for (name, path) in args.services.iter().zip(&args.configs) {
        sections.extend(check_service(name, path, ctx.env()));
    }
    let ok = sections.iter().all(Section::ok);
    let ui = &ctx.ui;
    if ui.json {
        ui.json_out(&json!({
            "ok": ok,
            "sections": sections.iter().map(|s| json!({
                "title": s.title,
                "ok": s.ok(),
                "stores": s.stores,
                "problems": s.problems.iter().map(problem_json).collect::<Vec<_>>(),
                "warnings": s.warnings,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for s in &sections {
            ui.line(ui.paint(Tone::Bold, &s.title));
            if s.ok() {
                let what = if s.stores.is_empty() {
                    "valid".to_owned()
                } else {
                    format!("valid: {}", s.stores.join(", "))
                };
                ui.line(format!("  {} {what}", ui.paint(Tone::Good, "✔")));
            }
            for p in &s.problems {
                let (what, _, fix) = split_problem(&p.message);
                ui.line(format!("  {} {}: {what}", ui.paint(Tone::Bad, "✖"), p.key));
                if let Some(fix) = fix {
                    ui.line(format!(
                        "      {}",
                        ui.paint(Tone::Warn, &format!("fix: {fix}"))
                    ));
                }
            }
            for w in &s.warnings {
                ui.line(format!("  {} {w}", ui.paint(Tone::Warn, "⚠")));
            }
        }
    }
    Ok(if ok { Outcome::Ok } else { Outcome::Invalid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_splits_into_what_value_and_fix() {
        let (what, value, fix) = split_problem(
            "`12345` is not the 6-digit DUELL client number; copy it from DUELL (API-oppsett)",
        );
        assert_eq!(what, "`12345` is not the 6-digit DUELL client number");
        assert_eq!(value.as_deref(), Some("12345"));
        assert_eq!(fix.as_deref(), Some("copy it from DUELL (API-oppsett)"));
        let (what, value, fix) = split_problem("cannot read: no such file");
        assert_eq!(what, "cannot read: no such file");
        assert!(value.is_none() && fix.is_none());
    }
}
