//! `syncctl test --store S`: the connection test of SPEC §3.5. One line per check, green or red,
//! with the precise reason and the fix. Nothing is changed anywhere: the write-permission probe
//! is an update of product id 0, which WooCommerce refuses as an invalid id when the key may
//! write and as unauthorised when it may not.

use std::time::Duration;

use duellsync_clients as clients;
use duellsync_duell::{DuellClient, StockQuery};
use duellsync_settings::{ApiVersion, StoreSettings};
use duellsync_woo::{ProductQuery, ProductWrite, RetryPolicy, WebhookHealth, WooClient};
use serde_json::json;

use crate::{check_store_id, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The store to test.
    #[arg(long)]
    store: String,
    /// The public address the engine's requests leave from, for the firewall advice (found
    /// with --egress-ip-url when not given).
    #[arg(long, value_name = "IP")]
    egress_ip: Option<String>,
    /// Where to ask for this host's public address when DUELL's firewall blocks it. (Not a
    /// `DUELLSYNC_` variable: those are service config keys, and `config check` would read it
    /// as one.)
    #[arg(
        long,
        env = "SYNCCTL_EGRESS_IP_URL",
        default_value = "https://checkip.amazonaws.com",
        value_name = "URL"
    )]
    egress_ip_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    /// Works, but a setting is likely wrong: shown with the advice, does not fail the test.
    Warning,
    /// Not run because an earlier check failed.
    Skipped,
}

#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        });
    }
    fn fail(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            status: Status::Failed,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
    fn warn(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            status: Status::Warning,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
    fn skip(&mut self, name: &str, why: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            status: Status::Skipped,
            detail: why.into(),
            fix: None,
        });
    }
}

const DUELL_CREDENTIALS_FIX: &str =
    "copy the client number and client token from Duell Manager → API-oppsett into duell.client_number and duell.client_token";

/// What to tell about a DUELL error that is not a refusal of the credentials.
fn duell_problem(e: &duellsync_duell::Error) -> (String, String) {
    use duellsync_duell::Error as E;
    match e {
        E::Auth { message, .. } => (
            format!("DUELL refused the credentials: {message}"),
            DUELL_CREDENTIALS_FIX.into(),
        ),
        E::RateLimited { .. } => (
            e.to_string(),
            "DUELL is throttling this client (other integrations share the limit); try again in a minute".into(),
        ),
        E::Unavailable { .. } | E::EmptyBody { .. } => (
            e.to_string(),
            "check duell.url (default https://api.kasseservice.no/v1/) and this host's network, then try again".into(),
        ),
        E::Config(_) => (e.to_string(), "fix duell.url, duell.client_number and duell.client_token".into()),
        _ => (e.to_string(), "run again; if it persists, report it with this message".into()),
    }
}

async fn egress_ip(args: &TestArgs) -> String {
    if let Some(ip) = &args.egress_ip {
        return ip.clone();
    }
    let fallback = "this host's public IP address (find it with `curl https://checkip.amazonaws.com` from where the services run)".to_owned();
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return fallback;
    };
    let Ok(resp) = client.get(&args.egress_ip_url).send().await else {
        return fallback;
    };
    match resp.text().await {
        Ok(t) if t.trim().parse::<std::net::IpAddr>().is_ok() => t.trim().to_owned(),
        _ => fallback,
    }
}

async fn test_duell(store: &StoreSettings, args: &TestArgs, checks: &mut Checks) {
    let mut config = match clients::duell_config(store) {
        Ok(c) => c,
        Err(e) => {
            checks.fail("DUELL login", e, DUELL_CREDENTIALS_FIX);
            checks.skip("DUELL firewall", "no DUELL client");
            checks.skip("Stock department", "no DUELL client");
            checks.skip("Order department", "no DUELL client");
            return;
        }
    };
    // A person is waiting: fewer, shorter attempts than the services use.
    config.request_timeout = Duration::from_secs(15);
    config.max_attempts = 2;
    let duell = match DuellClient::new(config) {
        Ok(d) => d,
        Err(e) => {
            checks.fail("DUELL login", e.to_string(), DUELL_CREDENTIALS_FIX);
            checks.skip("DUELL firewall", "no DUELL client");
            checks.skip("Stock department", "no DUELL client");
            checks.skip("Order department", "no DUELL client");
            return;
        }
    };
    let client_number = &store.duell.client_number;
    let firewall = |checks: &mut Checks, ip: String| {
        checks.fail(
            "DUELL firewall",
            "DUELL's firewall answered with its captcha page (HTML) instead of JSON: this host is blocked",
            format!("ask support@duell.no to whitelist {ip}"),
        );
    };
    if let Err(e) = duell.login().await {
        if matches!(e, duellsync_duell::Error::Firewall { .. }) {
            checks.fail(
                "DUELL login",
                "blocked by DUELL's firewall before the login",
                "see the firewall line",
            );
            firewall(checks, egress_ip(args).await);
        } else {
            let (detail, fix) = duell_problem(&e);
            checks.fail(
                "DUELL login",
                format!("client {client_number} at {}: {detail}", store.duell.url),
                fix,
            );
            checks.skip("DUELL firewall", "no answer from DUELL to judge by");
        }
        checks.skip("Stock department", "not logged in");
        checks.skip("Order department", "not logged in");
        return;
    }
    checks.ok(
        "DUELL login",
        format!("client {client_number} at {}", store.duell.url),
    );
    let departments = match duell.departments().await {
        Ok(d) => {
            checks.ok("DUELL firewall", "DUELL answers with JSON (not blocked)");
            d
        }
        Err(e) => {
            if matches!(e, duellsync_duell::Error::Firewall { .. }) {
                firewall(checks, egress_ip(args).await);
            } else {
                checks.ok("DUELL firewall", "DUELL answers with JSON (not blocked)");
            }
            let (detail, fix) = duell_problem(&e);
            checks.fail(
                "Stock department",
                format!("cannot list departments: {detail}"),
                fix.clone(),
            );
            checks.fail(
                "Order department",
                format!("cannot list departments: {detail}"),
                fix,
            );
            return;
        }
    };
    let find = |token: &str| {
        departments.iter().find(|d| {
            d.api_token
                .as_ref()
                .is_some_and(|t| !token.is_empty() && t.expose() == token)
        })
    };
    let names: Vec<String> = departments
        .iter()
        .map(|d| d.department_name.clone())
        .collect();
    let not_listed = |key: &str| {
        (
            format!(
                "the token in {key} is not one of client {client_number}'s {} departments ({})",
                departments.len(),
                names.join(", ")
            ),
            format!(
                "copy the department's API token from DUELL (Avdelinger) into {key}, the whole token"
            ),
        )
    };
    match find(store.duell.stock_department.expose()) {
        Some(d) => {
            let label = format!(
                "{} (id {})",
                d.department_name,
                d.department_id.unwrap_or_default()
            );
            let mut query = StockQuery::department(clients::stock_department(store));
            query.page_size = 1;
            match duell.stock(query).next_page().await {
                Ok(_) => checks.ok(
                    "Stock department",
                    format!("{label}: listed, stock query answered"),
                ),
                Err(e) => {
                    let (detail, fix) = duell_problem(&e);
                    checks.fail(
                        "Stock department",
                        format!("{label} is listed but its stock query failed: {detail}"),
                        fix,
                    );
                }
            }
        }
        None => {
            let (detail, fix) = not_listed("duell.stock_department");
            checks.fail("Stock department", detail, fix);
        }
    }
    let stock = find(store.duell.stock_department.expose());
    match find(store.duell.order_department.expose()) {
        // DUELL draws a customer order's units from the department the order is saved in; the
        // web shop's stock is the stock department's. Apart, the units sold never leave the
        // web stock: they come back on the web shop when DUELL draws the order.
        Some(d) if stock.is_some_and(|s| s.department_id != d.department_id) => {
            let s = stock.expect("checked above");
            checks.warn(
                "Order department",
                format!(
                    "{} (id {}) is not the stock department {} (id {}): DUELL draws a customer order's units from the department it is saved in, so web orders never leave the stock the web shop sells from, and their units come back on the web shop when DUELL draws them",
                    d.department_name,
                    d.department_id.unwrap_or_default(),
                    s.department_name,
                    s.department_id.unwrap_or_default()
                ),
                "leave duell.order_department out (it then is the stock department) or set it to the stock department's token; keep them apart only if the stock department's stock already counts what the order department sells",
            );
        }
        Some(d) => checks.ok(
            "Order department",
            format!(
                "{} (id {}): listed; the stock department, so DUELL draws web orders from the stock the web shop sells",
                d.department_name,
                d.department_id.unwrap_or_default()
            ),
        ),
        None => {
            let (detail, fix) = not_listed("duell.order_department");
            checks.fail("Order department", detail, fix);
        }
    }
}

fn woo_client(store: &StoreSettings, key: Option<(&str, &str)>) -> Result<WooClient, String> {
    let mut config = clients::woo_config(store)?;
    if let Some((k, s)) = key {
        config.consumer_key = k.to_owned();
        config.consumer_secret = s.to_owned().into();
    }
    config.timeout = Duration::from_secs(15);
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(5),
    };
    WooClient::new(config).map_err(|e| e.to_string())
}

fn version_supported(version: &str, api: ApiVersion) -> Option<bool> {
    let mut parts = version.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let need = match api {
        ApiVersion::V3 => (3, 5),
        ApiVersion::V2 => (3, 0),
    };
    Some((major, minor) >= need)
}

fn api_label(api: ApiVersion) -> &'static str {
    match api {
        ApiVersion::V3 => "wc/v3",
        ApiVersion::V2 => "wc/v2",
    }
}

fn auth_label(mode: duellsync_woo::AuthMode) -> &'static str {
    match mode {
        duellsync_woo::AuthMode::OAuth1 { .. } => "OAuth 1.0a signatures over http",
        duellsync_woo::AuthMode::QueryString => "keys in the query string over https",
        duellsync_woo::AuthMode::Basic | duellsync_woo::AuthMode::Auto => "HTTP Basic over https",
    }
}

fn masked_key(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Whether an error from the write probe shows that the key may write.
fn write_allowed(e: &duellsync_woo::Error) -> bool {
    matches!(e.status(), Some(400) | Some(404))
        && e.code().is_some_and(|c| c.ends_with("invalid_id"))
}

fn denied(e: &duellsync_woo::Error) -> bool {
    matches!(e.status(), Some(401) | Some(403))
}

fn api_message(e: &duellsync_woo::Error) -> String {
    match e.api_error() {
        Some(a) if !a.message.is_empty() => format!("{} ({})", a.code, a.message),
        Some(a) => a.code.clone(),
        None => e.to_string(),
    }
}

const KEY_FIX: &str = "create a key in WooCommerce → Settings → Advanced → REST API for a Shop manager or Administrator with Permissions = Read/Write, and put it in woo.consumer_key and woo.consumer_secret";

async fn test_woo(store: &StoreSettings, checks: &mut Checks) {
    let api = api_label(store.woo.api_version);
    let url = &store.woo.url;
    let later = [
        "WooCommerce credentials",
        "WooCommerce API version",
        "Read permission",
        "Write permission",
    ];
    let skip_rest = |checks: &mut Checks, why: &str| {
        for name in later {
            checks.skip(name, why);
        }
    };
    // 1. Is this WooCommerce? A request with a key the shop cannot know: WooCommerce answers
    //    with its own error codes (`woocommerce_rest_…`), anything else is not the shop's API.
    let probe = match woo_client(store, Some(("ck_syncctl_probe", "cs_syncctl_probe"))) {
        Ok(p) => p,
        Err(e) => {
            checks.fail(
                "WooCommerce URL",
                e,
                "write woo.url as the shop's address, e.g. \"https://shop.example.com\"",
            );
            skip_rest(checks, "no usable woo.url");
            return;
        }
    };
    let query = ProductQuery {
        per_page: Some(1),
        fields: vec!["id".into()],
        ..ProductQuery::default()
    };
    let reachable = match probe.list_products(&query).await {
        Ok(_) => {
            checks.ok(
                "WooCommerce URL",
                format!("{url} serves the WooCommerce REST API {api}"),
            );
            true
        }
        Err(e) if e.code().is_some_and(|c| c.starts_with("woocommerce_")) => {
            checks.ok(
                "WooCommerce URL",
                format!("{url} serves the WooCommerce REST API {api}"),
            );
            true
        }
        Err(e) if e.code() == Some("rest_no_route") => {
            checks.fail(
                "WooCommerce URL",
                format!("{url} runs WordPress but serves no WooCommerce REST API {api}"),
                "activate WooCommerce; WooCommerce 3.0-3.4 only has wc/v2: set woo.api_version = \"v2\"",
            );
            false
        }
        Err(duellsync_woo::Error::Redirect { location, .. }) => {
            checks.fail(
                "WooCommerce URL",
                format!(
                    "{url} redirects to {}",
                    location.unwrap_or_else(|| "another address".into())
                ),
                "set woo.url to the final address (https, with or without www, exactly as WordPress → Settings → General has it)",
            );
            false
        }
        Err(e @ duellsync_woo::Error::NotJson { .. }) => {
            checks.fail(
                "WooCommerce URL",
                format!("{url} is not the WordPress REST API: {e}"),
                "check woo.url (the shop's home address) and that WordPress → Settings → Permalinks is not \"Plain\"",
            );
            false
        }
        Err(e) if e.code().is_some() => {
            checks.fail(
                "WooCommerce URL",
                format!("{url} answered {} instead of WooCommerce", api_message(&e)),
                "check woo.url and that WooCommerce is active",
            );
            false
        }
        Err(e) => {
            checks.fail(
                "WooCommerce URL",
                format!("cannot reach {url}: {e}"),
                "check woo.url, DNS and that the shop is up and reachable from here",
            );
            false
        }
    };
    if !reachable {
        skip_rest(checks, "WooCommerce not reachable");
        return;
    }
    let client = match woo_client(store, None) {
        Ok(c) => c,
        Err(e) => {
            checks.fail("WooCommerce credentials", e, KEY_FIX);
            skip_rest(checks, "no WooCommerce client");
            return;
        }
    };
    // 2. Credentials, version, permissions: a read (system status), a harmless write.
    let version = client.woocommerce_version().await;
    let write = client.update_product(0, &ProductWrite::default()).await;
    let write_ok = match &write {
        Ok(_) => true,
        Err(e) => write_allowed(e),
    };
    let key = masked_key(store.woo.consumer_key.expose());
    match (&version, write_ok) {
        (Ok(_), _) | (_, true) => checks.ok(
            "WooCommerce credentials",
            format!("key {key} accepted ({})", auth_label(client.auth_mode())),
        ),
        (Err(e), false) => {
            checks.fail(
                "WooCommerce credentials",
                format!("WooCommerce refused key {key}: {}", api_message(e)),
                format!("{KEY_FIX}; over http the shop checks OAuth signatures against its home address, so woo.url must equal it exactly"),
            );
            for name in &later[1..] {
                checks.skip(name, "credentials refused");
            }
            return;
        }
    }
    match &version {
        Ok(v) => match version_supported(v, store.woo.api_version) {
            Some(true) => checks.ok("WooCommerce API version", format!("WooCommerce {v} supports {api}")),
            Some(false) => checks.fail(
                "WooCommerce API version",
                format!("WooCommerce {v} is too old for {api} (v3 needs 3.5+, v2 needs 3.0+)"),
                "update WooCommerce, or set woo.api_version = \"v2\" for WooCommerce 3.0-3.4",
            ),
            None => checks.fail(
                "WooCommerce API version",
                format!("WooCommerce reports version `{v}`, which is not a version number"),
                "check the shop's WooCommerce installation (WooCommerce → Status)",
            ),
        },
        Err(e) => checks.fail(
            "WooCommerce API version",
            format!("cannot read the system status: {}", api_message(e)),
            "give the key's user the Shop manager or Administrator role, with Read/Write permissions",
        ),
    }
    match client.list_products(&query).await {
        Ok(page) => checks.ok(
            "Read permission",
            format!(
                "products can be listed ({} in the shop)",
                page.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            ),
        ),
        Err(e) => checks.fail(
            "Read permission",
            format!("listing products failed: {}", api_message(&e)),
            if denied(&e) {
                "edit the key in WooCommerce → Settings → Advanced → REST API: Permissions = Read/Write".to_owned()
            } else {
                "run again; if it persists, check the shop's error log".to_owned()
            },
        ),
    }
    match &write {
        Err(e) if !write_ok && denied(e) => checks.fail(
            "Write permission",
            format!("the key may not write: {}", api_message(e)),
            "edit the key in WooCommerce → Settings → Advanced → REST API: Permissions = Read/Write",
        ),
        Err(e) if !write_ok => checks.fail(
            "Write permission",
            format!("the write probe failed: {}", api_message(e)),
            "run again; if it persists, check the shop's error log",
        ),
        _ => checks.ok(
            "Write permission",
            "the key may write (a no-op update of product 0 was refused as an invalid id, not as forbidden)",
        ),
    }
    // 3. Webhooks.
    let url = &store.woo.webhook_delivery_url;
    if url.is_empty() || !store.sync_orders {
        checks.ok(
            "Webhooks",
            if url.is_empty() {
                "not managed (woo.webhook_delivery_url is empty): orders arrive by polling"
            } else {
                "not managed (sync_orders = false)"
            },
        );
        return;
    }
    match client.order_webhook_states(url).await {
        Ok(states) => {
            for s in states {
                let name = format!("Webhook {}", s.topic);
                let ids: Vec<String> = s.hooks.iter().map(|h| format!("#{}", h.id)).collect();
                match s.health {
                    WebhookHealth::Active => checks.ok(&name, format!("active ({}) → {url}", ids.join(", "))),
                    WebhookHealth::Missing => checks.fail(
                        &name,
                        format!("missing: no webhook delivers {} to {url}", s.topic),
                        format!("syncctl webhooks ensure --store {} (the change-poller also creates it at its next reconciliation)", store.id),
                    ),
                    WebhookHealth::Disabled => checks.fail(
                        &name,
                        format!("disabled ({}): WooCommerce stopped delivering after failed deliveries", ids.join(", ")),
                        format!("make sure webhook-ingest answers at {url}, then syncctl webhooks ensure --store {} (re-creates it with a fresh failure count)", store.id),
                    ),
                    WebhookHealth::Paused => checks.fail(
                        &name,
                        format!("paused ({}) by a person: orders arrive by polling only", ids.join(", ")),
                        "set it Active in WooCommerce → Settings → Advanced → Webhooks (syncctl leaves paused webhooks alone)",
                    ),
                }
            }
        }
        Err(e) => checks.fail(
            "Webhooks",
            format!("cannot list webhooks: {}", api_message(&e)),
            "give the key Read/Write permissions for a Shop manager or Administrator",
        ),
    }
}

pub async fn run(ctx: &Ctx, args: TestArgs) -> anyhow::Result<Outcome> {
    check_store_id(&args.store)?;
    let store = ctx.store(&args.store)?;
    let mut checks = Checks::default();
    test_duell(&store, &args, &mut checks).await;
    test_woo(&store, &mut checks).await;
    let ok = checks.0.iter().all(|c| c.status != Status::Failed);
    let ui = &ctx.ui;
    if ui.json {
        ui.json_out(&json!({
            "store": store.id,
            "ok": ok,
            "checks": checks.0.iter().map(|c| json!({
                "name": c.name,
                "status": match c.status { Status::Ok => "ok", Status::Failed => "failed", Status::Warning => "warning", Status::Skipped => "skipped" },
                "detail": c.detail,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
        }));
    } else {
        ui.line(format!("Connection test of store {}", store.id));
        for c in &checks.0 {
            match c.status {
                Status::Ok => ui.check(true, &c.name, &c.detail, None),
                Status::Failed => ui.check(false, &c.name, &c.detail, c.fix.as_deref()),
                Status::Warning => {
                    ui.line(format!(
                        "{} {:<26} {}",
                        ui.paint(crate::ui::Tone::Warn, "⚠"),
                        c.name,
                        c.detail
                    ));
                    if let Some(fix) = &c.fix {
                        ui.line(format!(
                            "  {:<26} {}",
                            "",
                            ui.paint(crate::ui::Tone::Warn, &format!("fix: {fix}"))
                        ));
                    }
                }
                Status::Skipped => ui.line(format!(
                    "{} {:<26} {}",
                    ui.paint(crate::ui::Tone::Dim, "–"),
                    c.name,
                    ui.paint(crate::ui::Tone::Dim, &format!("not checked: {}", c.detail))
                )),
            }
        }
    }
    Ok(Outcome::from_ok(ok))
}

/// The connection test as data (the console draws its own green and red lines).
pub async fn checks(store: &StoreSettings, egress_ip_url: &str) -> Vec<Check> {
    let args = TestArgs {
        store: store.id.clone(),
        egress_ip: None,
        egress_ip_url: egress_ip_url.to_owned(),
    };
    let mut checks = Checks::default();
    test_duell(store, &args, &mut checks).await;
    test_woo(store, &mut checks).await;
    checks.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_need_their_woocommerce_release() {
        assert_eq!(version_supported("7.9.0", ApiVersion::V3), Some(true));
        assert_eq!(version_supported("3.5", ApiVersion::V3), Some(true));
        assert_eq!(version_supported("3.4.7", ApiVersion::V3), Some(false));
        assert_eq!(version_supported("3.4.7", ApiVersion::V2), Some(true));
        assert_eq!(version_supported("2.6.14", ApiVersion::V2), Some(false));
        assert_eq!(version_supported("10.0.0-beta", ApiVersion::V3), Some(true));
        assert_eq!(version_supported("unknown", ApiVersion::V3), None);
    }

    #[test]
    fn keys_show_only_their_end() {
        assert_eq!(masked_key("ck_abcdef1234"), "…1234");
        assert_eq!(masked_key("ab"), "…ab");
    }
}
