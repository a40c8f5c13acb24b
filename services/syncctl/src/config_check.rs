//! `syncctl config check`: validates store files, and service config files with the services'
//! own rules, without starting anything. Every problem is printed with its key, the value and
//! the fix; literal secrets are warnings.
//!
//! A service's config is checked by the service binary itself (`<service> --check-config`,
//! which prints a JSON report), so syncctl does not link the five services to know their
//! `Config` types.

use std::path::{Path, PathBuf};

use duellsync_settings::service::CheckReport;
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

/// Where a service binary is: next to syncctl (the image and `target/` keep them together),
/// else on `PATH`.
fn service_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The service checks its own config: `<service> --check-config --config FILE` prints a
/// [`CheckReport`] (its `Config` type and `validate()`, then the stores it would serve).
async fn check_service(name: &str, path: &Path, env: &[(String, String)]) -> Vec<Section> {
    let failed = |message: String| {
        vec![Section {
            title: format!("service {name} {}", path.display()),
            problems: vec![Problem {
                key: "--service".into(),
                message,
            }],
            warnings: Vec::new(),
            stores: Vec::new(),
        }]
    };
    let binary = service_binary(name);
    let out = tokio::process::Command::new(&binary)
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return failed(format!(
                "cannot run `{}`: {e}; install the service binaries next to syncctl or on PATH",
                binary.display()
            ))
        }
    };
    match serde_json::from_slice::<CheckReport>(&out.stdout) {
        Ok(report) => report
            .sections
            .into_iter()
            .map(|s| Section {
                title: s.title,
                problems: s
                    .problems
                    .into_iter()
                    .map(|p| Problem {
                        key: p.key,
                        message: p.message,
                    })
                    .collect(),
                warnings: s.warnings,
                stores: s.stores,
            })
            .collect(),
        Err(_) => failed(format!(
            "`{} --check-config` did not report (exit {}): {}; is it a duellsync service binary of this version?",
            binary.display(),
            out.status.code().unwrap_or(-1),
            crate::ui::cut(String::from_utf8_lossy(&out.stderr).trim(), 300)
        )),
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
        sections.extend(check_service(name, path, ctx.env()).await);
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
