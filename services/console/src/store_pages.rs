//! A store's pages: Connection, Settings, Test integration, Synchronise, Status, Log (with the
//! dead letters), change history; and creating a store (operators).
//!
//! The store comes from the URL only and every handler first asks [`Viewer::for_store`]
//! whether the session may use it; saves go through the registry (validated, audited,
//! compare-and-set on the revision the form was drawn from).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use duellsync_registry::{Error as RegistryError, RegistrySource, Stored};
use duellsync_settings::{ConfigError, Needs, Refusal, RefusalCode, StoreSettings};
use maud::{html, Markup};

use crate::auth::Session;
use crate::texts::{bool_default, key_label, refusal_text, shown_value, Group, Kind, Lang, FIELDS};
use crate::web::{internal, page, Viewer};
use crate::AppState;

type F = Form<HashMap<String, String>>;
type Q = Query<HashMap<String, String>>;

fn field<'a>(form: &'a HashMap<String, String>, k: &str) -> &'a str {
    form.get(k).map(String::as_str).unwrap_or("").trim()
}

fn get_path<'a>(t: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        Some((a, b)) => t.get(a)?.as_table()?.get(b),
        None => t.get(key),
    }
}

fn set_path(t: &mut toml::Table, key: &str, v: Option<toml::Value>) {
    match key.split_once('.') {
        Some((a, b)) => {
            let sec = t
                .entry(a.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(sec) = sec.as_table_mut() {
                match v {
                    Some(v) => {
                        sec.insert(b.to_owned(), v);
                    }
                    None => {
                        sec.remove(b);
                    }
                }
            }
        }
        None => match v {
            Some(v) => {
                t.insert(key.to_owned(), v);
            }
            None => {
                t.remove(key);
            }
        },
    }
}

/// The store's settings resolved as a service would (secrets opened with the console's keys).
fn resolve(st: &AppState, stored: &Stored) -> Result<StoreSettings, String> {
    let source = RegistrySource {
        shard: String::new(),
        keys: st.registry.keys().clone(),
        env: st.env.clone(),
        needs: Needs::ALL,
    };
    source
        .resolve(&stored.record)
        .unwrap_or_else(|| Err("not served here".into()))
}

/// Opens sealed secrets with the console's keys for a check before saving; a secret sealed
/// under a key the console does not hold (a receiver secret, when it holds only the API key)
/// passes, as in the registry's own check at save.
struct Opener<'a>(&'a duellsync_registry::Keyring);

impl duellsync_settings::Unseal for Opener<'_> {
    fn unseal(&self, sealed: &str, aad: &str) -> Result<String, String> {
        match duellsync_settings::Unseal::unseal(self.0, sealed, aad) {
            Err(e) if e.contains("does not have") => Ok("x".repeat(64)),
            other => other,
        }
    }
}

/// The refusals of `duellsync-settings` (the one place with the rules) for a table the console
/// is about to save: machine-readable, so that the page words them in its own language.
fn check(st: &AppState, store: &str, table: &toml::Table) -> Vec<Refusal> {
    duellsync_settings::check_store_table(store, table, &Opener(st.registry.keys()), Needs::RECORD)
}

/// Refusals as a person reads them: the setting's label and key, the value, what is wrong and
/// the fix, in the page's language. Secrets are never repeated (their refusals carry no value).
fn refusals(lang: Lang, list: &[Refusal]) -> Markup {
    html! {
        div class="error" role="alert" {
            p { (crate::texts::t(lang, "refused")) }
            ul {
                @for r in list {
                    li data-code=(r.code.as_str()) data-key=(r.key) {
                        @if !r.key.is_empty() {
                            strong { (key_label(lang, &r.key)) } " (" code { (r.key) } ")"
                            @if !r.value.is_empty() { " = «" (shown_value(lang, &r.value)) "»" }
                            ": "
                        }
                        (refusal_text(lang, r))
                    }
                }
            }
        }
    }
}

/// What the registry refused that the check before did not (sealing, a changed store): its
/// English problems, each with the setting's label.
fn problems(lang: Lang, e: &ConfigError) -> Markup {
    html! {
        div class="error" role="alert" {
            p { (crate::texts::t(lang, "refused")) }
            ul {
                @for p in &e.problems {
                    @let key = p.key.rsplit(": ").next().unwrap_or(&p.key);
                    li { strong { (key_label(lang, key)) } ": " (p.message) }
                }
            }
        }
    }
}

async fn load(st: &AppState, v: &Viewer, store: &str) -> Result<Stored, Response> {
    match st.registry.get(store).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(v.not_found()),
        Err(e) => Err(internal(v.lang, e)),
    }
}

/// A page of `store` the viewer may see, with the store's record.
async fn readable(st: &AppState, v: &Viewer, store: &str) -> Result<(Session, Stored), Response> {
    let s = v.for_store(store)?.clone();
    Ok((s, load(st, v, store).await?))
}

/// A state-changing request on `store`: the viewer may use it, the form carries the session's
/// CSRF token; with the store's record as it is now.
async fn editable(
    st: &AppState,
    v: &Viewer,
    store: &str,
    form: &HashMap<String, String>,
) -> Result<(Session, Stored), Response> {
    let s = v.for_store(store)?.clone();
    v.csrf(&s, form)?;
    Ok((s, load(st, v, store).await?))
}

pub async fn store_home(v: Viewer, Path(store): Path<String>) -> Response {
    match v.for_store(&store) {
        Ok(_) => Redirect::to(&format!("/stores/{store}/settings")).into_response(),
        Err(r) => r,
    }
}

// ----------------------------------------------------------------------------------------
// Settings

/// What a field shows: the submitted value, else the stored one, else the default.
fn shown(
    f: &crate::texts::Field,
    table: &toml::Table,
    submitted: Option<&HashMap<String, String>>,
) -> String {
    if let Some(form) = submitted {
        return match f.kind {
            Kind::Bool => form.contains_key(&f.name()).to_string(),
            _ => field(form, &f.name()).to_owned(),
        };
    }
    match (get_path(table, f.key), f.kind) {
        (Some(toml::Value::Boolean(b)), _) => b.to_string(),
        (Some(toml::Value::String(s)), _) => s.clone(),
        (Some(toml::Value::Integer(n)), _) => n.to_string(),
        (Some(toml::Value::Array(a)), _) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        (Some(other), _) => other.to_string(),
        (None, Kind::Bool) => bool_default(f.key).to_string(),
        (None, _) => String::new(),
    }
}

fn settings_form(
    v: &Viewer,
    s: &Session,
    store: &str,
    stored: &Stored,
    submitted: Option<&HashMap<String, String>>,
    notice: Markup,
) -> Markup {
    let table = stored.record.table();
    let action = format!("/stores/{store}/settings");
    html! {
        (notice)
        form method="post" action=(action) class="settings" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="revision" value=(stored.revision);
            @for group in Group::ALL {
                @let fields: Vec<_> = FIELDS.iter().filter(|f| f.group == group).collect();
                @if group == Group::Advanced {
                    details { summary { (group.title(v.lang)) } (fieldset(v, &fields, &table, submitted)) }
                } @else {
                    fieldset {
                        legend { (group.title(v.lang)) }
                        (fieldset(v, &fields, &table, submitted))
                        @if group == Group::OrderStatuses {
                            (status_map_rows(v, &table, submitted))
                        }
                    }
                }
            }
            button type="submit" { (v.t("save")) }
        }
        p { a href=(format!("/stores/{store}/history")) { (v.t("history")) } }
    }
}

fn fieldset(
    v: &Viewer,
    fields: &[&crate::texts::Field],
    table: &toml::Table,
    submitted: Option<&HashMap<String, String>>,
) -> Markup {
    html! {
        @for f in fields {
            @let name = f.name();
            @let value = shown(f, table, submitted);
            @let help_id = format!("{name}-help");
            div class="field" {
                @match f.kind {
                    Kind::Bool => {
                        input type="checkbox" id=(name) name=(name) value="on" checked[value == "true"] aria-describedby=(help_id);
                        label for=(name) { (f.label(v.lang)) }
                    }
                    Kind::Select(options) => {
                        label for=(name) { (f.label(v.lang)) }
                        select id=(name) name=(name) aria-describedby=(help_id) {
                            option value="" selected[value.is_empty()] { "—" }
                            @for o in options {
                                option value=(o) selected[value == *o] { (o) }
                            }
                        }
                    }
                    Kind::Number => {
                        label for=(name) { (f.label(v.lang)) }
                        input type="number" id=(name) name=(name) value=(value) inputmode="numeric" aria-describedby=(help_id);
                    }
                    _ => {
                        label for=(name) { (f.label(v.lang)) }
                        input type="text" id=(name) name=(name) value=(value) aria-describedby=(help_id);
                    }
                }
                p class="help" id=(help_id) { (f.help(v.lang)) }
            }
        }
    }
}

pub async fn settings_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    let (s, stored) = match readable(&st, &v, &store).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let notice = match q.get("saved").map(String::as_str) {
        Some("1") => html! { p class="notice" role="status" { (v.t("saved")) } },
        Some("0") => html! { p class="notice" role="status" { (v.t("unchanged")) } },
        _ => html! {},
    };
    page(
        &v,
        v.t("settings"),
        Some(&store),
        "settings",
        settings_form(&v, &s, &store, &stored, None, notice),
    )
    .into_response()
}

/// The status map's rows as the form shows them: the completion row first (the entry mapped to
/// `completed`, else the first), then the others by DUELL status, then empty rows to add to.
fn status_rows(table: &toml::Table) -> Vec<(String, String)> {
    let map: Vec<(String, String)> = match table.get("status_map") {
        Some(toml::Value::Table(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Some(_) => Vec::new(),
        None => vec![("5".into(), "completed".into())],
    };
    let mut rows = map.clone();
    rows.sort_by_key(|(k, v)| {
        (
            v != "completed",
            k.trim().parse::<i64>().unwrap_or(i64::MAX),
        )
    });
    rows.extend(std::iter::repeat_n(
        (String::new(), String::new()),
        EMPTY_ROWS,
    ));
    rows
}

/// Empty rows the form offers for new status mappings.
const EMPTY_ROWS: usize = 2;
/// Rows read from a form at most (a tampered form cannot make the console loop long).
const MAX_ROWS: usize = 32;

fn row_name(i: usize, side: &str) -> String {
    format!("status_map__{i}__{side}")
}

/// The rows a submitted form holds.
fn submitted_rows(form: &HashMap<String, String>) -> Vec<(String, String)> {
    (0..MAX_ROWS)
        .take_while(|i| {
            form.contains_key(&row_name(*i, "duell")) || form.contains_key(&row_name(*i, "woo"))
        })
        .map(|i| {
            (
                field(form, &row_name(i, "duell")).to_owned(),
                field(form, &row_name(i, "woo")).to_owned(),
            )
        })
        .collect()
}

/// "Ordre statuser"' mapping table: a DUELL status and a WooCommerce status a row, each field
/// with its own label; the first row is the completion (DUELL's "status that means completed").
fn status_map_rows(
    v: &Viewer,
    table: &toml::Table,
    submitted: Option<&HashMap<String, String>>,
) -> Markup {
    let rows = match submitted {
        Some(form) if form.contains_key(&row_name(0, "duell")) => submitted_rows(form),
        _ => status_rows(table),
    };
    html! {
        fieldset class="status-map" aria-describedby="status_map-help" {
            legend { (v.t("status_map")) }
            p class="help" id="status_map-help" { (v.t("status_map_help")) }
            @for (i, (duell, woo)) in rows.iter().enumerate() {
                @let (dl, wl) = if i == 0 { (v.t("completed_duell"), v.t("completed_woo")) } else { (v.t("duell_status"), v.t("woo_status")) };
                div class="status-row" {
                    div class="field" {
                        label for=(row_name(i, "duell")) { (dl) @if i > 0 { " " (i + 1) } }
                        input type="text" inputmode="numeric" id=(row_name(i, "duell")) name=(row_name(i, "duell")) value=(duell) aria-describedby="status_map-help";
                    }
                    div class="field" {
                        label for=(row_name(i, "woo")) { (wl) @if i > 0 { " " (i + 1) } }
                        input type="text" id=(row_name(i, "woo")) name=(row_name(i, "woo")) value=(woo) aria-describedby="status_map-help";
                    }
                }
            }
        }
    }
}

/// The table a settings form asks for: the stored one with the form's fields written over it.
/// Values go in as typed (a number field that holds no number stays text): the settings crate
/// refuses what is wrong, by key and value. A DUELL status in two rows is refused here, since
/// the table could not hold both.
fn settings_table(
    base: &toml::Table,
    form: &HashMap<String, String>,
) -> Result<toml::Table, Vec<Refusal>> {
    let mut t = base.clone();
    let number = |raw: &str| match raw.parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    for f in FIELDS {
        let raw = field(form, &f.name());
        let value = match f.kind {
            Kind::Bool => {
                let on = form.contains_key(&f.name());
                (on != bool_default(f.key)).then_some(toml::Value::Boolean(on))
            }
            _ if raw.is_empty() => None,
            Kind::Number => Some(number(raw)),
            Kind::NumberList => Some(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(number)
                    .collect(),
            )),
            Kind::TextList => Some(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| toml::Value::String(p.to_owned()))
                    .collect(),
            )),
            Kind::Select(_) | Kind::Text => Some(toml::Value::String(raw.to_owned())),
        };
        set_path(&mut t, f.key, value);
    }
    // The mapping table, when the form has it (a form without its rows keeps the stored one).
    if form.contains_key(&row_name(0, "duell")) {
        let mut map = toml::Table::new();
        let mut refused = Vec::new();
        for (duell, woo) in submitted_rows(form) {
            if duell.is_empty() && woo.is_empty() {
                continue;
            }
            if map.contains_key(&duell) {
                refused.push(Refusal::new(
                    RefusalCode::Duplicate,
                    "status_map",
                    &duell,
                    format!("DUELL status {duell} is mapped twice; keep one entry for it"),
                ));
                continue;
            }
            map.insert(duell, toml::Value::String(woo));
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        // The default left as it was stays unwritten (a save changes only what was changed).
        let default = map.len() == 1
            && map.get("5").and_then(|v| v.as_str()) == Some("completed")
            && !base.contains_key("status_map");
        if !default {
            t.insert("status_map".into(), toml::Value::Table(map));
        }
    }
    Ok(t)
}

pub async fn settings_submit(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Form(form): F,
) -> Response {
    let (s, stored) = match editable(&st, &v, &store, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let redraw = |notice: Markup| {
        (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &v,
                v.t("settings"),
                Some(&store),
                "settings",
                settings_form(&v, &s, &store, &stored, Some(&form), notice),
            ),
        )
            .into_response()
    };
    if field(&form, "revision") != stored.revision.to_string() {
        return redraw(html! { p class="error" role="alert" { (v.t("conflict")) } });
    }
    let table = match settings_table(&stored.record.table(), &form) {
        Ok(t) => t,
        Err(refused) => return redraw(refusals(v.lang, &refused)),
    };
    let refused = check(&st, &store, &table);
    if !refused.is_empty() {
        return redraw(refusals(v.lang, &refused));
    }
    match st
        .registry
        .save(&store, table, Some(&stored), &s.actor())
        .await
    {
        Ok((plan, _)) => Redirect::to(&format!(
            "/stores/{store}/settings?saved={}",
            if plan.is_noop() { 0 } else { 1 }
        ))
        .into_response(),
        Err(RegistryError::Invalid(e)) => redraw(problems(v.lang, &e)),
        Err(RegistryError::Conflict(_)) => {
            redraw(html! { p class="error" role="alert" { (v.t("conflict")) } })
        }
        Err(e) => internal(v.lang, e),
    }
}

// ----------------------------------------------------------------------------------------
// Connection (and creating a store)

fn stamp(v: &Viewer, stored: Option<&Stored>, key: &str) -> String {
    match stored.and_then(|s| s.record.secrets.get(key)) {
        Some(st) => format!(
            "{} {} {} {}",
            v.t("secret_set"),
            duellsync_ops::timefmt::at(st.at_ms),
            v.t("by"),
            st.by
        ),
        None => {
            let referenced = stored
                .and_then(|s| get_path(&s.record.table(), key).cloned())
                .is_some();
            if referenced {
                v.t("secret_set")
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                v.t("secret_unset").to_owned()
            }
        }
    }
}

/// Departments DUELL lists for the credentials: (id, name, token).
async fn departments(
    url: &str,
    client_number: &str,
    token: &str,
) -> Result<Vec<(String, String, String)>, String> {
    let mut config = duellsync_duell::ClientConfig::new(
        url,
        client_number,
        secrecy::SecretString::from(token.to_owned()),
    )
    .map_err(|e| e.to_string())?;
    config.request_timeout = Duration::from_secs(15);
    config.max_attempts = 2;
    let client = duellsync_duell::DuellClient::new(config).map_err(|e| e.to_string())?;
    let list = client.departments().await.map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .filter_map(|d| {
            let token = d.api_token.as_ref()?.expose().to_owned();
            Some((
                d.department_id.unwrap_or_default().to_string(),
                d.department_name.clone(),
                token,
            ))
        })
        .collect())
}

fn connection_fields(
    v: &Viewer,
    stored: Option<&Stored>,
    settings: Option<&StoreSettings>,
    depts: &Result<Vec<(String, String, String)>, String>,
    detected: Option<&str>,
) -> Markup {
    let table = stored.map(|s| s.record.table()).unwrap_or_default();
    let text = |k: &str| {
        get_path(&table, k)
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let current = |tok: Option<&str>| -> String {
        match (depts, tok) {
            (Ok(list), Some(tok)) => list
                .iter()
                .find(|d| d.2 == tok)
                .map(|d| d.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let stock = current(settings.map(|s| s.duell.stock_department.expose()));
    let order = current(settings.map(|s| s.duell.order_department.expose()));
    html! {
        fieldset {
            legend { "WooCommerce" }
            div class="field" {
                label for="woo_url" { "Butikkadresse / Shop URL" }
                input id="woo_url" name="woo_url" type="url" value=(text("woo.url")) required aria-describedby="woo_url-help";
                p class="help" id="woo_url-help" { (v.t("https_required")) }
            }
            div class="field" {
                label for="api_version" { "API-versjon" }
                select id="api_version" name="api_version" aria-describedby="api_version-help" {
                    @for o in ["v3", "v2"] { option value=(o) selected[text("woo.api_version") == o || (o == "v3" && text("woo.api_version").is_empty())] { (o) } }
                }
                p class="help" id="api_version-help" {
                    "v3: WooCommerce 3.5+, v2: 3.0-3.4."
                    @if let Some(d) = detected { " " (v.t("api_detected")) ": " strong { (d) } }
                }
            }
            div class="field" {
                label for="consumer_key" { "Consumer key" }
                input id="consumer_key" name="consumer_key" type="password" autocomplete="off" aria-describedby="ck-help";
                p class="help" id="ck-help" { (stamp(v, stored, "woo.consumer_key")) ". " (v.t("secret_keep")) }
            }
            div class="field" {
                label for="consumer_secret" { "Consumer secret" }
                input id="consumer_secret" name="consumer_secret" type="password" autocomplete="off" aria-describedby="cs-help";
                p class="help" id="cs-help" { (stamp(v, stored, "woo.consumer_secret")) ". " (v.t("secret_keep")) }
            }
        }
        fieldset {
            legend { "DUELL" }
            div class="field" {
                label for="client_number" { "Kundenummer / Client number" }
                input id="client_number" name="client_number" value=(text("duell.client_number")) inputmode="numeric" pattern="[0-9]{6}" required;
            }
            div class="field" {
                label for="client_token" { "Token" }
                input id="client_token" name="client_token" type="password" autocomplete="off" aria-describedby="ct-help";
                p class="help" id="ct-help" { (stamp(v, stored, "duell.client_token")) ". " (v.t("secret_keep")) }
            }
            @match depts {
                Ok(list) if !list.is_empty() => {
                    @for (name, key, cur) in [("stock_department", "stock_department", &stock), ("order_department", "order_department", &order)] {
                        div class="field" {
                            label for=(name) { (v.t(key)) }
                            select id=(name) name=(name) required {
                                option value="" selected[cur.is_empty()] { "—" }
                                @for (id, dname, _) in list { option value=(id) selected[cur == id] { (dname) " (" (id) ")" } }
                            }
                        }
                    }
                }
                Ok(_) => { p class="help" { (v.t("no_departments")) } }
                Err(e) => { p class="error" { (v.t("departments")) ": " (e) } }
            }
        }
    }
}

pub async fn connection_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    let (s, stored) = match readable(&st, &v, &store).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let settings = resolve(&st, &stored).ok();
    let (depts, detected) = match &settings {
        Some(set) => {
            let depts = departments(
                &set.duell.url,
                &set.duell.client_number,
                set.duell.client_token.expose(),
            )
            .await;
            let detected = match duellsync_clients::woo_client(set) {
                Ok(c) => c.woocommerce_version().await.ok().map(|ver| {
                    let api = if version_at_least(&ver, 3, 5) {
                        "wc/v3"
                    } else {
                        "wc/v2"
                    };
                    format!("WooCommerce {ver} → {api}")
                }),
                Err(_) => None,
            };
            (depts, detected)
        }
        None => (Ok(Vec::new()), None),
    };
    let notice = if q.contains_key("saved") {
        html! { p class="notice" role="status" { (v.t("saved")) } }
    } else {
        html! {}
    };
    page(&v, v.t("connection"), Some(&store), "connection", html! {
        (notice)
        form method="post" action=(format!("/stores/{store}/connection")) {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="revision" value=(stored.revision);
            (connection_fields(&v, Some(&stored), settings.as_ref(), &depts, detected.as_deref()))
            button type="submit" { (v.t("save")) }
        }
    })
    .into_response()
}

fn version_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut p = v.split('.').map(|x| {
        x.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    (p.next().unwrap_or(0), p.next().unwrap_or(0)) >= (major, minor)
}

/// Writes the connection form over a table; department ids become their tokens (which never
/// reach the browser) through DUELL's list for the credentials.
async fn apply_connection(
    table: &mut toml::Table,
    form: &HashMap<String, String>,
    current: Option<&StoreSettings>,
    v: &Viewer,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let url = field(form, "woo_url");
    let insecure_ok = get_path(table, "allow_insecure_http")
        .and_then(|x| x.as_bool())
        .unwrap_or(false)
        || get_path(table, "woo.allow_insecure_http")
            .and_then(|x| x.as_bool())
            .unwrap_or(false);
    if url.starts_with("http://") && !insecure_ok {
        errors.push(v.t("https_required").to_owned());
    }
    set_path(table, "woo.url", Some(toml::Value::String(url.to_owned())));
    let api = if field(form, "api_version") == "v2" {
        "v2"
    } else {
        "v3"
    };
    set_path(
        table,
        "woo.api_version",
        (api == "v2").then(|| toml::Value::String("v2".into())),
    );
    for (name, key) in [
        ("consumer_key", "woo.consumer_key"),
        ("consumer_secret", "woo.consumer_secret"),
        ("client_token", "duell.client_token"),
    ] {
        let value = form.get(name).map(String::as_str).unwrap_or("");
        if !value.is_empty() {
            set_path(table, key, Some(toml::Value::String(value.to_owned())));
        }
    }
    let client_number = field(form, "client_number");
    set_path(
        table,
        "duell.client_number",
        Some(toml::Value::String(client_number.to_owned())),
    );
    let token = match form
        .get("client_token")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
    {
        Some(t) => t.to_owned(),
        None => current
            .map(|c| c.duell.client_token.expose().to_owned())
            .unwrap_or_default(),
    };
    let duell_url = get_path(table, "duell.url")
        .and_then(|x| x.as_str())
        .unwrap_or("https://api.kasseservice.no/v1/")
        .to_owned();
    let (stock, order) = (
        field(form, "stock_department"),
        field(form, "order_department"),
    );
    if !stock.is_empty() || !order.is_empty() {
        match departments(&duell_url, client_number, &token).await {
            Ok(list) => {
                for (choice, key) in [
                    (stock, "duell.stock_department"),
                    (order, "duell.order_department"),
                ] {
                    match list.iter().find(|d| d.0 == choice) {
                        Some(d) => set_path(table, key, Some(toml::Value::String(d.2.clone()))),
                        None if choice.is_empty() => {}
                        None => errors.push(format!("{}: {choice}", v.t("departments"))),
                    }
                }
            }
            Err(e) => errors.push(format!("{}: {e}", v.t("departments"))),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub async fn connection_submit(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Form(form): F,
) -> Response {
    let (s, stored) = match editable(&st, &v, &store, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let err_page = |m: Markup| {
        (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &v,
                v.t("connection"),
                Some(&store),
                "connection",
                html! {
                    (m) p { a href=(format!("/stores/{store}/connection")) { (v.t("connection")) } }
                },
            ),
        )
            .into_response()
    };
    if field(&form, "revision") != stored.revision.to_string() {
        return err_page(html! { p class="error" role="alert" { (v.t("conflict")) } });
    }
    let current = resolve(&st, &stored).ok();
    let mut table = stored.record.table();
    if let Err(errors) = apply_connection(&mut table, &form, current.as_ref(), &v).await {
        return err_page(
            html! { div class="error" role="alert" { p { (v.t("refused")) } ul { @for e in &errors { li { (e) } } } } },
        );
    }
    let refused = check(&st, &store, &table);
    if !refused.is_empty() {
        return err_page(refusals(v.lang, &refused));
    }
    match st
        .registry
        .save(&store, table, Some(&stored), &s.actor())
        .await
    {
        Ok(_) => Redirect::to(&format!("/stores/{store}/connection?saved=1")).into_response(),
        Err(RegistryError::Invalid(e)) => err_page(problems(v.lang, &e)),
        Err(RegistryError::Conflict(_)) => {
            err_page(html! { p class="error" role="alert" { (v.t("conflict")) } })
        }
        Err(e) => internal(v.lang, e),
    }
}

pub fn new_store_form(
    v: &Viewer,
    s: &Session,
    form: &HashMap<String, String>,
    depts: &[(String, String, String)],
) -> Markup {
    let val = |k: &str| form.get(k).cloned().unwrap_or_default();
    html! {
        form method="post" action="/operator/stores" class="card" {
            input type="hidden" name="csrf" value=(s.csrf);
            div class="field" { label for="id" { (v.t("store_id")) } input id="id" name="id" value=(val("id")) pattern="[a-z0-9_-]{1,32}" required; }
            div class="field" { label for="shard" { (v.t("shard")) } input id="shard" name="shard" value=(val("shard")); }
            div class="field" { label for="woo_url" { "Butikkadresse / Shop URL" } input id="woo_url" name="woo_url" type="url" value=(val("woo_url")) required; }
            div class="field" { label for="consumer_key" { "Consumer key" } input id="consumer_key" name="consumer_key" type="password" value=(val("consumer_key")) autocomplete="off" required; }
            div class="field" { label for="consumer_secret" { "Consumer secret" } input id="consumer_secret" name="consumer_secret" type="password" value=(val("consumer_secret")) autocomplete="off" required; }
            div class="field" { label for="client_number" { "DUELL kundenummer" } input id="client_number" name="client_number" value=(val("client_number")) inputmode="numeric" required; }
            div class="field" { label for="client_token" { "DUELL token" } input id="client_token" name="client_token" type="password" value=(val("client_token")) autocomplete="off" required; }
            div class="field" {
                label for="duell_url" { "DUELL API-adresse / address" }
                input id="duell_url" name="duell_url" type="url" value=(form.get("duell_url").cloned().unwrap_or_else(|| DUELL_URL.to_owned())) required;
            }
            @if !depts.is_empty() {
                @for (name, key) in [("stock_department", "stock_department"), ("order_department", "order_department")] {
                    div class="field" {
                        label for=(name) { (v.t(key)) }
                        select id=(name) name=(name) required {
                            option value="" { "—" }
                            @for (id, dname, _) in depts { option value=(id) selected[val(name) == *id] { (dname) " (" (id) ")" } }
                        }
                    }
                }
            }
            button type="submit" { (v.t("create_store")) }
        }
    }
}

/// Creating a store: the first submit lists DUELL's departments for the credentials, the second
/// (departments chosen) saves the store through the registry.
pub async fn create_store(
    st: &AppState,
    v: &Viewer,
    s: &Session,
    form: HashMap<String, String>,
) -> Response {
    let id = field(&form, "id").to_owned();
    let redraw = |m: Markup, depts: &[(String, String, String)]| {
        page(
            v,
            v.t("create_store"),
            None,
            "",
            html! { (m) (new_store_form(v, s, &form, depts)) },
        )
        .into_response()
    };
    if !duellsync_events::is_valid_store_id(&id) {
        return redraw(
            html! { p class="error" role="alert" { (v.t("store_id")) ": " (id) } },
            &[],
        );
    }
    match st.registry.get(&id).await {
        Ok(Some(_)) => {
            return redraw(
                html! { p class="error" role="alert" { (v.t("taken")) } },
                &[],
            )
        }
        Ok(None) => {}
        Err(e) => return internal(v.lang, e),
    }
    let client_number = field(&form, "client_number");
    let token = form.get("client_token").cloned().unwrap_or_default();
    let duell_url = match field(&form, "duell_url") {
        "" => DUELL_URL,
        u => u,
    };
    let depts = match departments(duell_url, client_number, &token).await {
        Ok(d) => d,
        Err(e) => {
            return redraw(
                html! { p class="error" role="alert" { (v.t("departments")) ": " (e) } },
                &[],
            );
        }
    };
    if field(&form, "stock_department").is_empty() {
        return redraw(html! {}, &depts);
    }
    let mut table = toml::Table::new();
    if duell_url != DUELL_URL {
        set_path(
            &mut table,
            "duell.url",
            Some(toml::Value::String(duell_url.to_owned())),
        );
    }
    if !field(&form, "shard").is_empty() {
        table.insert(
            "shard".into(),
            toml::Value::String(field(&form, "shard").to_owned()),
        );
    }
    if let Err(errors) = apply_connection(&mut table, &form, None, v).await {
        return redraw(
            html! { div class="error" role="alert" { ul { @for e in &errors { li { (e) } } } } },
            &depts,
        );
    }
    let refused = check(st, &id, &table);
    if !refused.is_empty() {
        return redraw(refusals(v.lang, &refused), &depts);
    }
    match st.registry.save(&id, table, None, &s.actor()).await {
        Ok(_) => Redirect::to(&format!("/stores/{id}/settings?saved=1")).into_response(),
        Err(RegistryError::Invalid(e)) => redraw(problems(v.lang, &e), &depts),
        Err(RegistryError::Conflict(_)) => {
            redraw(html! { p class="error" { (v.t("taken")) } }, &depts)
        }
        Err(e) => internal(v.lang, e),
    }
}

// ----------------------------------------------------------------------------------------
// Test integration

pub async fn test_page(v: Viewer, Path(store): Path<String>) -> Response {
    let s = match v.for_store(&store) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    page(
        &v,
        v.t("test"),
        Some(&store),
        "test",
        test_form(&v, &s, &store),
    )
    .into_response()
}

fn test_form(v: &Viewer, s: &Session, store: &str) -> Markup {
    html! {
        form method="post" action=(format!("/stores/{store}/test")) {
            input type="hidden" name="csrf" value=(s.csrf);
            button type="submit" { (v.t("run_test")) }
        }
    }
}

pub async fn test_submit(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Form(form): F,
) -> Response {
    let (s, stored) = match editable(&st, &v, &store, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match resolve(&st, &stored) {
        Ok(settings) => {
            let checks = duellsync_ops::conn_test::checks(&settings, &st.cfg.egress_ip_url).await;
            html! {
                ul class="checks" {
                    @for c in &checks {
                        @let (class, mark) = match c.status {
                            duellsync_ops::conn_test::Status::Ok => ("ok", "✔"),
                            duellsync_ops::conn_test::Status::Failed => ("bad", "✖"),
                            duellsync_ops::conn_test::Status::Warning => ("warn", "!"),
                            duellsync_ops::conn_test::Status::Skipped => ("skip", "–"),
                        };
                        li class=(class) data-check=(c.name) {
                            span class="mark" aria-hidden="true" { (mark) }
                            strong { (c.name) }
                            " "
                            @if c.status == duellsync_ops::conn_test::Status::Skipped { (v.t("not_checked")) ": " }
                            @if c.status == duellsync_ops::conn_test::Status::Warning { (v.t("warning")) ": " }
                            (c.detail)
                            @if let Some(fix) = &c.fix { br; span class="fix" { (v.t("fix")) ": " (fix) } }
                        }
                    }
                }
            }
        }
        Err(e) => html! { p class="error" { (e) } },
    };
    page(
        &v,
        v.t("test"),
        Some(&store),
        "test",
        html! { (body) (test_form(&v, &s, &store)) },
    )
    .into_response()
}

// ----------------------------------------------------------------------------------------
// Synchronise

fn progress(v: &Viewer, store: &str, state: &duellsync_ops::query::RunState) -> Markup {
    let pct = if state.total > 0 {
        (state.done * 100 / state.total).min(100)
    } else if state.finished {
        100
    } else {
        0
    };
    html! {
        section id="run" data-events=(format!("/stores/{store}/sync/events?run={}", state.run_id)) data-finished=(state.finished) {
            h2 { (v.t("progress")) }
            progress id="bar" max="100" value=(pct) aria-label=(v.t("progress")) { (pct) "%" }
            p id="run-text" aria-live="polite" {
                span id="pct" { (pct) "%" } " — " (state.done) "/" (state.total) " " (v.t("done_of"))
                @if state.rate > 0.0 { ", " (format!("{:.1}", state.rate)) " " (v.t("per_sec")) }
                @if let Some(eta) = state.eta_secs { @if !state.finished { ", " (eta) " s " (v.t("left")) } }
                " (" (duellsync_ops::sync::phase_label(&state.phase)) ")"
            }
            @if state.finished {
                @if !state.error.is_empty() { p class="error" role="alert" { (state.error) } }
                @if let Some(sum) = &state.summary {
                    h2 { (v.t("summary")) @if state.dry_run { " (plan)" } }
                    table class="summary" {
                        tr { th { (v.t("creates")) } td data-k="creates" { (sum["creates"]) } }
                        tr { th { (v.t("updates")) } td data-k="updates" { (sum["updates"]) } }
                        tr { th { (v.t("hides")) } td data-k="withdrawals" { (sum["withdrawals"]) } }
                        tr { th { (v.t("unchanged_n")) } td data-k="unchanged" { (sum["unchanged"]) } }
                        tr { th { (v.t("failures")) } td data-k="failures" { (sum["failures"]) } }
                    }
                    @if let Some(fields) = sum["updates_by_field"].as_object() {
                        @if !fields.is_empty() {
                            ul { @for (k, n) in fields { li { (k) ": " (n) } } }
                        }
                    }
                    @if let Some(sample) = sum["sample"].as_array() {
                        @if !sample.is_empty() {
                            details { summary { "Plan" } ul { @for l in sample { li { (l.as_str().unwrap_or_default()) } } } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn sync_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    let (s, stored) = match readable(&st, &v, &store).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let attributes = resolve(&st, &stored)
        .map(|x| x.sync_attributes)
        .unwrap_or(true);
    let run = match q.get("run").cloned() {
        Some(r) => Some(r),
        None => duellsync_ops::query::latest_run(&st.bus, &store)
            .await
            .ok()
            .flatten(),
    };
    let state = match &run {
        Some(r) => duellsync_ops::query::run_state(&st.bus, &store, r)
            .await
            .ok(),
        None => None,
    };
    page(
        &v,
        v.t("sync"),
        Some(&store),
        "sync",
        html! {
            form method="post" action=(format!("/stores/{store}/sync")) class="inline" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="dry_run" value="1";
                button type="submit" { (v.t("plan")) }
            }
            form method="post" action=(format!("/stores/{store}/sync")) class="card" {
                input type="hidden" name="csrf" value=(s.csrf);
                @if attributes {
                    p class="warning" role="note" { (v.t("attr_warning")) }
                    div class="field" {
                        input type="checkbox" id="confirm" name="confirm" value="on" required;
                        label for="confirm" { (v.t("confirm_attr")) }
                    }
                }
                button type="submit" id="start-sync" { (v.t("start_sync")) }
            }
            @if let Some(state) = &state { (progress(&v, &store, state)) }
        },
    )
    .into_response()
}

pub async fn sync_submit(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Form(form): F,
) -> Response {
    let (_, stored) = match editable(&st, &v, &store, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let dry_run = form.contains_key("dry_run");
    let attributes = resolve(&st, &stored)
        .map(|x| x.sync_attributes)
        .unwrap_or(true);
    if !dry_run && attributes && !form.contains_key("confirm") {
        return Redirect::to(&format!("/stores/{store}/sync")).into_response();
    }
    match duellsync_ops::query::request_full_sync(&st.bus, &store, dry_run, "console").await {
        Ok(run) => Redirect::to(&format!("/stores/{store}/sync?run={run}")).into_response(),
        Err(e) => internal(v.lang, e),
    }
}

/// Server-Sent Events: the run's state as JSON whenever it changes, until it is finished or the
/// session ends (logout or expiry: a stream never outlives the session that opened it).
pub async fn sync_events(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    if let Err(r) = v.for_store(&store) {
        return r;
    }
    let Some(run) = q.get("run").cloned().filter(|r| r.len() < 100) else {
        return v.not_found();
    };
    let sid = v.session_id.clone().unwrap_or_default();
    let stream = futures::stream::unfold(
        (st, store, run, String::new(), false),
        move |(st, store, run, last, done)| {
            let sid = sid.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    if !session_open(&st, &sid).await {
                        return None;
                    }
                    if let Ok(state) = duellsync_ops::query::run_state(&st.bus, &store, &run).await
                    {
                        let json = serde_json::to_string(&state).unwrap_or_default();
                        if json != last {
                            let finished = state.finished;
                            let ev: Result<Event, Infallible> =
                                Ok(Event::default().event("progress").data(json.clone()));
                            return Some((ev, (st, store, run, json, finished)));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Whether a live stream's session is still open. A failed read ends the stream too: the
/// browser reconnects, and the new request is checked like any other.
async fn session_open(st: &AppState, session_id: &str) -> bool {
    st.accounts.is_open(session_id).await.unwrap_or(false)
}

// ----------------------------------------------------------------------------------------
// Status

fn status_fragment(v: &Viewer, s: &serde_json::Value) -> Markup {
    let now = duellsync_events::now_ms();
    let flows = [
        ("catalogue", "Katalog / Catalogue"),
        ("orders", "Ordre / Orders"),
        ("status", "Status write-back"),
        ("fullsync", "Full sync"),
    ];
    let lag_of = |service: &str| -> u64 {
        s["consumers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter(|c| c["name"].as_str().unwrap_or("").starts_with(service))
                    .map(|c| c["lag"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let service_of = |flow: &str| match flow {
        "catalogue" | "fullsync" => "catalog-publisher",
        "orders" => "order-importer",
        _ => "status-writeback",
    };
    let open = &s["open_failures"];
    html! {
        div id="status" {
            table {
                thead { tr { th { "" } th { (v.t("last_success")) } th { (v.t("lag")) } } }
                tbody {
                    @for (flow, label) in flows {
                        @let at = s["last"][flow]["at_ms"].as_i64().unwrap_or(0);
                        tr {
                            th scope="row" { (label) }
                            td { @if at > 0 { (duellsync_ops::timefmt::at_ago(at, now)) } @else { (v.t("never")) } }
                            td { (lag_of(service_of(flow))) }
                        }
                    }
                }
            }
            h2 { (v.t("today")) }
            ul {
                @if let Some(counts) = s["counts"].as_object() {
                    @for (k, n) in counts { li { (k) ": " (n) } }
                }
            }
            h2 { (v.t("failures")) }
            ul {
                li { (v.t("dead_letters")) ": " strong { (open["dlq_depth"]) } }
                li { "In doubt: " (open["in_doubt_orders"].as_array().map(|a| a.len()).unwrap_or(0)) }
                li { "Parked: " (open["parked_orders"].as_array().map(|a| a.len()).unwrap_or(0)) }
            }
            h2 { (v.t("webhooks")) }
            @match s["webhooks"].as_object() {
                Some(w) => {
                    @let bad = w.get("not_active").and_then(|x| x.as_array()).map(|a| !a.is_empty()).unwrap_or(false);
                    p class=(if bad { "bad" } else { "ok" }) {
                        @if bad { "✖ " } @else { "✔ " }
                        "healthy: " (w.get("healthy").map(|x| x.to_string()).unwrap_or_default())
                        @if bad { ", not active: " (w.get("not_active").map(|x| x.to_string()).unwrap_or_default()) }
                    }
                }
                None => p { (v.t("never")) }
            }
        }
    }
}

pub async fn status_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
) -> Response {
    if let Err(r) = v.for_store(&store) {
        return r;
    }
    let json = match duellsync_ops::status::store_json(&st.bus, &store, Duration::from_secs(86400))
        .await
    {
        Ok(j) => j,
        Err(e) => return internal(v.lang, e),
    };
    page(&v, v.t("status"), Some(&store), "status", html! {
        div data-live=(format!("/stores/{store}/status/events")) data-target="status" { (status_fragment(&v, &json)) }
    })
    .into_response()
}

/// Server-Sent Events: the status fragment every few seconds, while the session is open.
pub async fn status_events(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
) -> Response {
    if let Err(r) = v.for_store(&store) {
        return r;
    }
    let lang = v.lang;
    let sid = v.session_id.clone().unwrap_or_default();
    let stream = futures::stream::unfold((st, store, true), move |(st, store, first)| {
        let sid = sid.clone();
        async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            if !session_open(&st, &sid).await {
                return None;
            }
            let fragment = match duellsync_ops::status::store_json(
                &st.bus,
                &store,
                Duration::from_secs(86400),
            )
            .await
            {
                Ok(j) => {
                    let v = Viewer {
                        lang,
                        session: None,
                        session_id: None,
                        form_token: None,
                        secure: true,
                        client: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    };
                    status_fragment(&v, &j).into_string()
                }
                Err(_) => String::new(),
            };
            let ev: Result<Event, Infallible> = Ok(Event::default().event("status").data(fragment));
            Some((ev, (st, store, false)))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ----------------------------------------------------------------------------------------
// Log, CSV, dead letters, history

const PAGE: usize = 50;

/// DUELL's API (the default of `duell.url`).
const DUELL_URL: &str = "https://api.kasseservice.no/v1/";

fn parse_day(s: &str, end: bool) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &fmt).ok()?;
    let t = d.midnight().assume_utc().unix_timestamp() * 1000;
    Some(if end { t + 86_400_000 - 1 } else { t })
}

fn log_filter(q: &HashMap<String, String>) -> duellsync_ops::query::LogFilter {
    duellsync_ops::query::LogFilter {
        failed: q.get("failed").is_some_and(|x| x == "1" || x == "on"),
        needle: q
            .get("q")
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty()),
        since_ms: q.get("from").and_then(|x| parse_day(x, false)),
        until_ms: q.get("to").and_then(|x| parse_day(x, true)),
    }
}

pub async fn log_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    let s = match v.for_store(&store) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let filter = log_filter(&q);
    let rows = match duellsync_ops::query::log_rows(&st.bus, &store, &filter).await {
        Ok(r) => r,
        Err(e) => return internal(v.lang, e),
    };
    let page_no: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let shown: Vec<_> = rows.iter().skip(page_no * PAGE).take(PAGE).collect();
    let mut params: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| *k != "page")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort();
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    let letters = duellsync_ops::query::letters(&st.bus, &store)
        .await
        .unwrap_or_default();
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    page(&v, v.t("log"), Some(&store), "log", html! {
        form method="get" action=(format!("/stores/{store}/log")) class="filters" {
            div class="field" {
                input type="checkbox" id="failed" name="failed" value="1" checked[filter.failed];
                label for="failed" { (v.t("failed_only")) }
            }
            div class="field" { label for="q" { (v.t("sku_or_order")) } input id="q" name="q" value=(val("q")); }
            div class="field" { label for="from" { (v.t("from")) } input id="from" name="from" type="date" value=(val("from")); }
            div class="field" { label for="to" { (v.t("to")) } input id="to" name="to" type="date" value=(val("to")); }
            button type="submit" { (v.t("filter")) }
            a class="button" id="csv" href=(format!("/stores/{store}/log.csv?{qs}")) { (v.t("export_csv")) }
        }
        div class="scroll" {
            table id="log" {
                thead { tr { th { "#" } th { (v.t("time")) } th { (v.t("kind")) } th { "" } th { (v.t("what")) } th { (v.t("why")) } } }
                tbody {
                    @for r in &shown {
                        tr class=(if r.failed { "bad" } else { "" }) data-seq=(r.seq) {
                            td { (r.seq) } td { (duellsync_ops::timefmt::at(r.time_ms)) } td { (r.kind) } td { (r.key) } td { (r.what) } td { (r.reason) }
                        }
                    }
                }
            }
        }
        nav class="pager" {
            @if page_no > 0 { a href=(format!("/stores/{store}/log?{qs}&page={}", page_no - 1)) { "← " (v.t("newer")) } }
            " " (page_no * PAGE + shown.len().min(1)) "–" (page_no * PAGE + shown.len()) " / " (rows.len()) " "
            @if (page_no + 1) * PAGE < rows.len() { a href=(format!("/stores/{store}/log?{qs}&page={}", page_no + 1)) { (v.t("older")) " →" } }
        }
        h2 { (v.t("dead_letters")) " (" (letters.len()) ")" }
        @if !letters.is_empty() {
            div class="scroll" {
                table id="dlq" {
                    thead { tr { th { "#" } th { (v.t("time")) } th { "" } th { (v.t("why")) } th { (v.t("what")) } @if s.is_operator() { th {} } } }
                    tbody {
                        @for l in &letters {
                            tr {
                                td { (l.seq) } td { (duellsync_ops::timefmt::at(l.time_ms)) } td { (l.service) } td { (l.reason) } td { (l.summary) }
                                @if s.is_operator() {
                                    td {
                                        form method="post" action=(format!("/stores/{store}/dlq/{}", l.seq)) class="dlq" {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            label for=(format!("reason-{}", l.seq)) { (v.t("reason")) }
                                            input id=(format!("reason-{}", l.seq)) name="reason" required;
                                            button type="submit" name="action" value="replay" { (v.t("replay")) }
                                            button type="submit" name="action" value="skip" { (v.t("skip")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
    .into_response()
}

pub async fn log_csv(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Query(q): Q,
) -> Response {
    if let Err(r) = v.for_store(&store) {
        return r;
    }
    match duellsync_ops::query::log_rows(&st.bus, &store, &log_filter(&q)).await {
        Ok(rows) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{store}-log.csv\""),
                ),
            ],
            duellsync_ops::query::log_csv(&rows),
        )
            .into_response(),
        Err(e) => internal(v.lang, e),
    }
}

pub async fn dlq_action(
    State(st): State<AppState>,
    v: Viewer,
    Path((store, seq)): Path<(String, u64)>,
    Form(form): F,
) -> Response {
    let s = match v.for_store(&store) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    if !s.is_operator() {
        return v.not_found();
    }
    if let Err(r) = v.csrf(&s, &form) {
        return r;
    }
    let reason = field(&form, "reason");
    if reason.is_empty() {
        return Redirect::to(&format!("/stores/{store}/log")).into_response();
    }
    let result = match field(&form, "action") {
        "replay" => duellsync_ops::query::replay(&st.bus, &store, seq, &s.actor(), reason).await,
        "skip" => duellsync_ops::query::skip(&st.bus, &store, seq, &s.actor(), reason).await,
        _ => return v.not_found(),
    };
    match result {
        Ok(duellsync_ops::query::LetterOutcome::OtherStore) => v.not_found(),
        Ok(_) => Redirect::to(&format!("/stores/{store}/log")).into_response(),
        Err(e) => internal(v.lang, e),
    }
}

pub async fn history_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
) -> Response {
    if let Err(r) = v.for_store(&store) {
        return r;
    }
    let history = match st.registry.history(&store).await {
        Ok(h) => h,
        Err(e) => return internal(v.lang, e),
    };
    page(&v, v.t("history"), Some(&store), "", html! {
        @for h in history.iter().rev() {
            section {
                h2 { (duellsync_ops::timefmt::at(h.at_ms)) " — " (h.action) " " (v.t("by")) " " (h.by) }
                ul { @for c in &h.changes {
                    li { code { (c.key) } ": " (c.before.clone().unwrap_or_else(|| "—".into())) " → " (c.after.clone().unwrap_or_else(|| "—".into())) }
                } }
            }
        }
    })
    .into_response()
}
