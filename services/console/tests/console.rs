//! The console over HTTP against a real NATS, the registry and the simulators: who may see and
//! change what, the settings rules on save, the connection test, the log and its CSV.

use duellsync_bus::{Bus, BusOptions};
use duellsync_console::{App, Config};
use duellsync_duell_sim::{DuellSim, SimConfig as DuellConfig};
use duellsync_events::{meta, v1, EventId};
use duellsync_registry::{generate_key, Keyring, Registry};
use duellsync_settings::Secret;
use duellsync_test_support::csrf_field as csrf;
use duellsync_test_support::NatsServer;
use duellsync_woo_sim::{SimConfig as WooConfig, WooSim};
use std::collections::HashMap;

use reqwest::StatusCode;

const OPERATOR_PW: &str = "operator password 1";

struct Console {
    _nats: NatsServer,
    base: String,
    registry: Registry,
    bus: Bus,
    woo: WooSim,
    duell: DuellSim,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn client() -> reqwest::Client {
    client_from("127.0.0.1")
}

/// A browser on the host with this loopback address (all of 127.0.0.0/8 reaches the console).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The start tags `<name …>` of a page, each as its attributes (values unescaped).
fn tags(html: &str, name: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        if !rest.starts_with([' ', '>', '/']) {
            continue;
        }
        let mut attrs = HashMap::new();
        let mut s = rest;
        loop {
            s = s.trim_start();
            if s.is_empty() || s.starts_with('>') || s.starts_with("/>") {
                break;
            }
            let end = s
                .find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/')
                .unwrap_or(s.len());
            let key = s[..end].to_owned();
            s = &s[end..];
            if let Some(after) = s.strip_prefix("=\"") {
                let close = after.find('"').expect("a closed attribute value");
                attrs.insert(key, unescape(&after[..close]));
                s = &after[close + 1..];
            } else {
                if key.is_empty() {
                    s = &s[1..];
                    continue;
                }
                attrs.insert(key, String::new());
            }
        }
        out.push(attrs);
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What a browser submits from the form whose `action` is given: text fields, checked boxes,
/// the selected option of each select (the page's values, as drawn).
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let at = html
        .find(&format!("action=\"{action}\""))
        .expect("the form");
    let form = &html[at..at + html[at..].find("</form>").unwrap()];
    let mut out = Vec::new();
    for i in tags(form, "input") {
        let (Some(name), kind) = (i.get("name"), i.get("type").map(String::as_str)) else {
            continue;
        };
        match kind {
            Some("checkbox") if !i.contains_key("checked") => {}
            Some("submit") => {}
            _ => out.push((name.clone(), i.get("value").cloned().unwrap_or_default())),
        }
    }
    for part in form.split("<select").skip(1) {
        let part = &part[..part.find("</select>").unwrap()];
        let select = &tags(&format!("<select{part}"), "select")[0];
        let chosen = tags(part, "option")
            .into_iter()
            .find(|o| o.contains_key("selected"))
            .and_then(|o| o.get("value").cloned())
            .unwrap_or_default();
        out.push((select["name"].clone(), chosen));
    }
    out
}

fn set(form: &mut Vec<(String, String)>, name: &str, value: &str) {
    form.retain(|(k, _)| k != name);
    form.push((name.to_owned(), value.to_owned()));
}

/// Every form control a person fills in has a label: a `<label for>` naming its id, or an
/// `aria-label`/`aria-labelledby`. And every page is drawn for small screens.
fn assert_accessible(path: &str, html: &str) -> usize {
    assert!(
        html.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""),
        "{path}: no viewport meta"
    );
    let labelled: Vec<String> = tags(html, "label")
        .into_iter()
        .filter_map(|l| l.get("for").cloned())
        .collect();
    let ids: Vec<String> = ["input", "select", "textarea"]
        .iter()
        .flat_map(|t| tags(html, t))
        .filter_map(|c| c.get("id").cloned())
        .collect();
    for f in &labelled {
        assert!(
            ids.contains(f),
            "{path}: <label for=\"{f}\"> labels nothing"
        );
    }
    let mut controls = 0;
    for kind in ["input", "select", "textarea"] {
        for c in tags(html, kind) {
            if matches!(
                c.get("type").map(String::as_str),
                Some("hidden" | "submit" | "button")
            ) {
                continue;
            }
            controls += 1;
            let named = c
                .get("aria-label")
                .or(c.get("aria-labelledby"))
                .is_some_and(|x| !x.trim().is_empty());
            let labelled = c.get("id").is_some_and(|id| labelled.contains(id));
            assert!(
                named || labelled,
                "{path}: a <{kind}> without a label: {c:?}"
            );
        }
    }
    controls
}

fn store_table(woo: &WooSim, duell: &DuellSim, ca: &std::path::Path, extra: &str) -> toml::Table {
    let (ck, cs) = woo.credentials();
    format!(
        r#"{extra}
[woo]
url = "{}"
ca_cert = "{}"
consumer_key = "{ck}"
consumer_secret = "{cs}"
[duell]
url = "{}"
client_number = "{}"
client_token = "{}"
stock_department = "{}"
order_department = "{}"
"#,
        woo.https_base_url().unwrap(),
        ca.display(),
        duell.base_url(),
        duell.client_number(),
        duell.client_token(),
        duell.department_token(1).unwrap(),
        duell.department_token(2).unwrap(),
    )
    .parse()
    .unwrap()
}

async fn start() -> Console {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut Config)) -> Console {
    let nats = NatsServer::start();
    let (api, receiver) = (generate_key(), generate_key());
    let env = vec![
        ("DUELLSYNC_SEAL__API_KEY".to_owned(), api.clone()),
        ("DUELLSYNC_SEAL__RECEIVER_KEY".to_owned(), receiver.clone()),
    ];
    let mut config: Config = duellsync_settings::service::load_service_config(None, &env).unwrap();
    config.nats.url = nats.url();
    config.admin.listen = "127.0.0.1:0".into();
    config.console.listen = "127.0.0.1:0".into();
    // reqwest's cookie store keeps Secure cookies off plain http, as browsers do off localhost.
    config.console.secure_cookies = false;
    config.console.egress_ip_url = "http://127.0.0.1:9/".into();
    config.console.operator_password_hash =
        Secret::literal(duellsync_console::auth::hash_password(OPERATOR_PW));
    configure(&mut config);
    let bus = Bus::connect(BusOptions::new(nats.url(), "test"))
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    let registry = Registry::open(&bus, Keyring::new(Some(&api), Some(&receiver)).unwrap())
        .await
        .unwrap();
    let woo = WooSim::start(WooConfig::default()).await.unwrap();
    let duell = DuellSim::start(DuellConfig {
        products: 5,
        ..DuellConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("woo-ca.pem");
    std::fs::write(&ca, woo.ca_pem().unwrap()).unwrap();
    for id in ["acme", "bolt"] {
        registry
            .save(id, store_table(&woo, &duell, &ca, ""), None, "test")
            .await
            .unwrap();
    }
    let app = App::build(config, env).await.unwrap();
    let base = format!("http://{}", app.addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Console {
        _nats: nats,
        base,
        registry,
        bus,
        woo,
        duell,
        _dir: dir,
        _stop: tx,
    }
}

impl Console {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self, c: &reqwest::Client, user: &str, pw: &str) -> reqwest::Response {
        let page = c
            .get(self.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        c.post(self.url("/login"))
            .form(&[
                ("csrf", csrf(&page).as_str()),
                ("username", user),
                ("password", pw),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, c: &reqwest::Client, path: &str) -> (StatusCode, String) {
        let r = c.get(self.url(path)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// A retailer of `store`, signed up through an operator's invitation.
    async fn retailer(
        &self,
        operator: &reqwest::Client,
        store: &str,
        user: &str,
    ) -> reqwest::Client {
        let (_, ops) = self.page(operator, "/operator").await;
        let r = operator
            .post(self.url(&format!("/operator/stores/{store}/invite")))
            .form(&[("csrf", csrf(&ops))])
            .send()
            .await
            .unwrap();
        let html = r.text().await.unwrap();
        let at = html.find("/invite/").expect("an invitation link");
        let token: String = html[at + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let c = client();
        let form = c
            .get(self.url(&format!("/invite/{token}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = c
            .post(self.url(&format!("/invite/{token}")))
            .form(&[
                ("csrf", csrf(&form).as_str()),
                ("username", user),
                ("password", "retailer password"),
                ("confirm", "retailer password"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.url().path().starts_with(&format!("/stores/{store}/")),
            "{}",
            r.url()
        );
        // Single use: the link does not work again.
        let again = c
            .get(self.url(&format!("/invite/{token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_sees_and_changes_only_its_own_store_whatever_is_tampered_with() {
    let console = start().await;
    let op = client();
    let r = console.login(&op, "operator", "wrong password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = console.login(&op, "operator", OPERATOR_PW).await;
    assert_eq!(r.url().path(), "/operator");
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(html.contains("acme") && html.contains("bolt"));

    let b = console.retailer(&op, "bolt", "bo@bolt.no").await;
    let acme_before = console.registry.get("acme").await.unwrap().unwrap();

    // Direct URLs of another store: not found, never its data.
    for path in [
        "/stores/acme/settings",
        "/stores/acme/connection",
        "/stores/acme/log",
        "/stores/acme/log.csv",
        "/stores/acme/status",
        "/stores/acme/history",
        "/stores/acme/sync/events?run=x",
        "/operator",
    ] {
        let (status, body) = console.page(&b, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !body.contains(&console.woo.base_url()),
            "{path} leaks acme's settings"
        );
    }
    // Posting to another store with a valid token of its own session: refused.
    let (_, bolt_page) = console.page(&b, "/stores/bolt/settings").await;
    let b_csrf = csrf(&bolt_page);
    let rev = acme_before.revision.to_string();
    let r = b
        .post(console.url("/stores/acme/settings"))
        .form(&[("csrf", b_csrf.as_str()), ("revision", rev.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A form field naming another store changes only the URL's store.
    let bolt = console.registry.get("bolt").await.unwrap().unwrap();
    let bolt_rev = bolt.revision.to_string();
    let r = b
        .post(console.url("/stores/bolt/settings"))
        .form(&[
            ("csrf", b_csrf.as_str()),
            ("revision", bolt_rev.as_str()),
            ("id", "acme"),
            ("store", "acme"),
            ("automatic", "on"),
            ("create_products", "on"),
            ("update_products", "on"),
            ("sync_stock", "on"),
            ("sync_images", "on"),
            ("sync_new_categories", "on"),
            ("sync_orders", "on"),
            ("create_customer_order", "on"),
            ("sync_attributes", "on"),
            ("stock__subtract_undrawn_customer_orders", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let acme_after = console.registry.get("acme").await.unwrap().unwrap();
    assert_eq!(acme_after.revision, acme_before.revision, "acme untouched");
    let bolt_after = console.registry.get("bolt").await.unwrap().unwrap();
    assert!(
        bolt_after.record.settings.contains("sync_prices = false"),
        "{}",
        bolt_after.record.settings
    );
    let history = console.registry.history("bolt").await.unwrap();
    assert!(history.last().unwrap().by.contains("bo@bolt.no"));

    // A CSRF token of another session (the operator's), or none: refused.
    let (_, op_page) = console.page(&op, "/stores/bolt/settings").await;
    for token in [csrf(&op_page), String::new()] {
        let r = b
            .post(console.url("/stores/bolt/settings"))
            .form(&[
                ("csrf", token.as_str()),
                ("revision", bolt_after.revision.to_string().as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // After logout the old token is worthless.
    let r = b
        .post(console.url("/logout"))
        .form(&[("csrf", b_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/login");
    let r = b
        .post(console.url("/stores/bolt/settings"))
        .form(&[("csrf", b_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/login");
    assert_eq!(
        console
            .registry
            .get("bolt")
            .await
            .unwrap()
            .unwrap()
            .revision,
        bolt_after.revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduct_stock_with_customer_orders_is_refused_and_nothing_is_saved() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    assert!(
        page.contains("Trekk fra lager")
            && page.contains("Krever &#39;Opprett kundeordre&#39; deaktivert")
            || page.contains("Krever 'Opprett kundeordre' deaktivert"),
        "help text shown"
    );
    let before = console.registry.get("acme").await.unwrap().unwrap();
    let rev = before.revision.to_string();
    let r = op
        .post(console.url("/stores/acme/settings"))
        .form(&[
            ("csrf", csrf(&page).as_str()),
            ("revision", rev.as_str()),
            ("create_customer_order", "on"),
            ("deduct_stock", "on"),
            ("sync_orders", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("«Trekk fra lager» krever at «Opprett kundeordre» er deaktivert"),
        "{body}"
    );
    assert_eq!(
        console
            .registry
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .revision,
        before.revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_test_names_a_wrong_secret_and_turns_green_when_it_is_fixed() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let run = |c: &reqwest::Client| {
        let c = c.clone();
        let url = console.url("/stores/acme/test");
        async move {
            let page = c.get(&url).send().await.unwrap().text().await.unwrap();
            c.post(&url)
                .form(&[("csrf", csrf(&page))])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let green = run(&op).await;
    assert!(
        green.contains("data-check=\"WooCommerce credentials\""),
        "{green}"
    );
    assert!(!green.contains("class=\"bad\""), "{green}");

    let cur = console.registry.get("acme").await.unwrap().unwrap();
    let mut t = cur.record.table();
    t["woo"].as_table_mut().unwrap().insert(
        "consumer_secret".into(),
        toml::Value::String("cs_wrong_secret".into()),
    );
    console
        .registry
        .save("acme", t, Some(&cur), "test")
        .await
        .unwrap();
    let red = run(&op).await;
    let line = red
        .split("<li ")
        .find(|l| l.contains("data-check=\"WooCommerce credentials\""))
        .unwrap();
    assert!(line.starts_with("class=\"bad\""), "{line}");
    assert!(
        line.contains("woo.consumer_secret"),
        "the fix names the credential: {line}"
    );

    // Corrected on the Connection page (a write-only field): green again.
    let (_, conn) = console.page(&op, "/stores/acme/connection").await;
    assert!(
        !conn.contains("cs_wrong_secret"),
        "secrets never reach the page"
    );
    let rev = console
        .registry
        .get("acme")
        .await
        .unwrap()
        .unwrap()
        .revision
        .to_string();
    let (_, cs) = console.woo.credentials();
    let r = op
        .post(console.url("/stores/acme/connection"))
        .form(&[
            ("csrf", csrf(&conn).as_str()),
            ("revision", rev.as_str()),
            ("woo_url", console.woo.https_base_url().unwrap().as_str()),
            ("api_version", "v3"),
            ("consumer_secret", cs.as_str()),
            ("client_number", console.duell.client_number()),
            ("stock_department", "1"),
            ("order_department", "2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let green = run(&op).await;
    assert!(!green.contains("class=\"bad\""), "{green}");
    assert!(!console
        .registry
        .get("acme")
        .await
        .unwrap()
        .unwrap()
        .record
        .settings
        .contains(&cs));

    // Plain http is refused unless the store allows it.
    let (_, conn) = console.page(&op, "/stores/acme/connection").await;
    let rev = console
        .registry
        .get("acme")
        .await
        .unwrap()
        .unwrap()
        .revision
        .to_string();
    let r = op
        .post(console.url("/stores/acme/connection"))
        .form(&[
            ("csrf", csrf(&conn).as_str()),
            ("revision", rev.as_str()),
            ("woo_url", console.woo.base_url().as_str()),
            ("client_number", console.duell.client_number()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_filtered_paged_and_exported_as_exactly_the_rows_shown() {
    let console = start().await;
    for n in 0..5i64 {
        let failed = n % 2 == 0;
        if failed {
            let ev = v1::ProductFailed {
                meta: Some(meta(
                    "acme",
                    EventId::new("t", "acme").int(n).finish(),
                    "test",
                    String::new(),
                )),
                product_id: n,
                sku: format!("SKU-{n}"),
                code: "woocommerce_rest_product_invalid_sku".into(),
                message: format!("refused \"{n}\", with a comma"),
                ..Default::default()
            };
            console.bus.publish(&ev).await.unwrap();
        } else {
            let ev = v1::ProductApplied {
                meta: Some(meta(
                    "acme",
                    EventId::new("t", "acme").int(n).finish(),
                    "test",
                    String::new(),
                )),
                product_id: n,
                sku: format!("SKU-{n}"),
                ..Default::default()
            };
            console.bus.publish(&ev).await.unwrap();
        }
    }
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let (status, html) = console.page(&op, "/stores/acme/log?failed=1").await;
    assert_eq!(status, StatusCode::OK);
    let shown: Vec<String> = html
        .split("data-seq=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect();
    assert_eq!(shown.len(), 3, "{html}");
    let csv = op
        .get(console.url("/stores/acme/log.csv?failed=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // RFC 4180: quoted fields with doubled quotes and commas inside.
    let mut rows = Vec::new();
    for line in csv.trim_end().split("\r\n").skip(1) {
        rows.push(line.split(',').next().unwrap().to_owned());
    }
    assert_eq!(rows, shown, "{csv}");
    assert!(csv.contains("\"\"0\"\", with a comma"), "{csv}");
    let (_, one) = console.page(&op, "/stores/acme/log?q=SKU-1").await;
    assert_eq!(one.matches("data-seq=").count(), 1, "{one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_store_choosing_departments_from_duells_list() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let (_, page) = console.page(&op, "/operator").await;
    let (ck, cs) = console.woo.credentials();
    let https = console.woo.https_base_url().unwrap();
    let duell_url = console.duell.base_url();
    let mut form = vec![
        ("csrf", csrf(&page)),
        ("id", "cafe".to_owned()),
        ("woo_url", https.clone()),
        ("consumer_key", ck.clone()),
        ("consumer_secret", cs.clone()),
        ("client_number", console.duell.client_number().to_owned()),
        ("client_token", console.duell.client_token().to_owned()),
        ("duell_url", duell_url.clone()),
    ];
    // First: DUELL's departments for the credentials, by name; nothing stored yet.
    let html = op
        .post(console.url("/operator/stores"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"stock_department\""), "{html}");
    assert!(
        !html.contains(&console.duell.department_token(1).unwrap()),
        "tokens stay on the server"
    );
    assert!(console.registry.get("cafe").await.unwrap().is_none());
    // Then the chosen departments: stored, secrets sealed.
    form.push(("stock_department", "1".into()));
    form.push(("order_department", "2".into()));
    let r = op
        .post(console.url("/operator/stores"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/stores/cafe/settings");
    let stored = console.registry.get("cafe").await.unwrap().unwrap();
    assert!(!stored.record.settings.contains(&cs));
    assert!(stored.record.settings.contains(&duell_url));
    assert!(stored.record.secrets.contains_key("duell.stock_department"));
}

async fn post_form(c: &reqwest::Client, url: &str, form: &[(String, String)]) -> reqwest::Response {
    c.post(url).form(form).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_save_names_key_value_and_fix_in_the_pages_language_and_saves_nothing() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let before = console.registry.get("acme").await.unwrap().unwrap();
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    let mut form = form_fields(&page, "/stores/acme/settings");
    set(&mut form, "poll_interval", "soon");
    set(&mut form, "orders_from_date", "31.01.2026");
    let r = post_form(&op, &console.url("/stores/acme/settings"), &form).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    // Norwegian by default: the label, the key, the value and the fix, all in Norwegian.
    assert!(body.contains("lang=\"nb\""), "{body}");
    assert!(
        body.contains("<strong>Ordrespørring hvert</strong> (<code>poll_interval</code>) = «soon»: «soon» er ikke en varighet. Skriv f.eks. «30s»"),
        "{body}"
    );
    assert!(
        body.contains("<strong>Fra dato</strong> (<code>orders_from_date</code>) = «31.01.2026»: «31.01.2026» er ikke en dato."),
        "{body}"
    );
    assert!(
        !body.contains("is not a date"),
        "no English in a Norwegian page: {body}"
    );
    // What was typed stays in the form.
    assert!(body.contains("value=\"soon\""), "{body}");
    let after = console.registry.get("acme").await.unwrap().unwrap();
    assert_eq!(after.revision, before.revision, "nothing saved");

    // English when chosen.
    op.get(console.url("/lang/en")).send().await.unwrap();
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    let mut form = form_fields(&page, "/stores/acme/settings");
    set(&mut form, "woo__max_concurrency", "64");
    let body = post_form(&op, &console.url("/stores/acme/settings"), &form)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("<strong>Concurrent shop requests</strong> (<code>woo.max_concurrency</code>) = «64»: “64” is out of range. Use 1 to 32."),
        "{body}"
    );
    assert_eq!(
        console
            .registry
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .revision,
        before.revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_status_table_is_edited_in_the_form_and_checked_on_save() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    for text in [
        "Hent ordre med status",
        "Status etter import",
        "DUELL-status som betyr fullført",
        "Status ved fullføring",
        "Legg til flere, f.eks. 8 (Kansellert) → cancelled",
    ] {
        assert!(page.contains(text), "{text} missing");
    }
    let mut form = form_fields(&page, "/stores/acme/settings");
    // The default is drawn as the completion row, with empty rows to add to.
    assert!(
        form.contains(&("status_map__0__duell".into(), "5".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("status_map__0__woo".into(), "completed".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("status_map__1__duell".into(), String::new())),
        "{form:?}"
    );
    set(&mut form, "fetch_statuses", "processing, on-hold");
    set(&mut form, "status_after_import", "on-hold");
    set(&mut form, "status_map__0__duell", "6");
    set(&mut form, "status_map__1__duell", "8");
    set(&mut form, "status_map__1__woo", "cancelled");
    let r = post_form(&op, &console.url("/stores/acme/settings"), &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.url().query().unwrap_or("").contains("saved=1"),
        "{}",
        r.url()
    );
    let stored: duellsync_settings::StoreSettings = toml::from_str(
        &console
            .registry
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .record
            .settings,
    )
    .unwrap();
    assert_eq!(stored.fetch_statuses, ["processing", "on-hold"]);
    assert_eq!(stored.status_after_import.as_deref(), Some("on-hold"));
    assert_eq!(
        stored.status_map(),
        [(6, "completed".to_owned()), (8, "cancelled".to_owned())].into()
    );

    // Drawn back: completion first, then the added row, then empty rows.
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    let form = form_fields(&page, "/stores/acme/settings");
    for (k, v) in [
        ("status_map__0__duell", "6"),
        ("status_map__1__duell", "8"),
        ("status_map__1__woo", "cancelled"),
        ("status_map__2__duell", ""),
    ] {
        assert!(form.contains(&(k.into(), v.into())), "{k}={v} in {form:?}");
    }

    // A status DUELL does not have, a status twice, an empty fetch list: refused, in
    // Norwegian, nothing saved.
    let before = console.registry.get("acme").await.unwrap().unwrap();
    for (name, value, expected) in [
        ("status_map__1__duell", "12", "<strong>Statuskobling</strong> (<code>status_map</code>) = «12»: «12» er ikke en DUELL-kundeordrestatus. Bruk et tall fra 1 til 11"),
        ("status_map__1__duell", "6", "«6»: DUELL-status «6» står i flere rader."),
        ("status_map__1__woo", "kansellert!", "= «kansellert!»: «kansellert!» er ikke en WooCommerce-ordrestatus."),
        ("fetch_statuses", " , ", "<strong>Hent ordre med status</strong> (<code>fetch_statuses</code>): Listen er tom"),
    ] {
        let mut bad = form.clone();
        set(&mut bad, name, value);
        let r = post_form(&op, &console.url("/stores/acme/settings"), &bad).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}={value}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expected), "{name}={value}: {body}");
        assert_eq!(
            console.registry.get("acme").await.unwrap().unwrap().revision,
            before.revision,
            "{name}={value} saved nothing"
        );
    }

    // Emptying a row removes the mapping.
    let mut less = form.clone();
    set(&mut less, "status_map__1__duell", "");
    set(&mut less, "status_map__1__woo", "");
    let r = post_form(&op, &console.url("/stores/acme/settings"), &less).await;
    assert_eq!(r.status(), StatusCode::OK);
    let stored: duellsync_settings::StoreSettings = toml::from_str(
        &console
            .registry
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .record
            .settings,
    )
    .unwrap();
    assert_eq!(stored.status_map(), [(6, "completed".to_owned())].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_spraying_user_names_is_locked_out_while_another_address_logs_in() {
    let console = start().await;
    let attacker = client_from("127.0.0.1");
    let mut locked = None;
    for n in 0..40 {
        // A different name every time (the per-name lock never trips) and a forged
        // X-Forwarded-For, which a console not behind a trusted proxy ignores.
        let page = attacker
            .get(console.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = attacker
            .post(console.url("/login"))
            .header("x-forwarded-for", format!("10.0.0.{n}"))
            .form(&[
                ("csrf", csrf(&page).as_str()),
                ("username", &format!("user{n}")),
                ("password", "guess guess guess"),
            ])
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            locked = Some(n);
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let locked = locked.expect("the spraying address is locked");
    assert_eq!(locked, 20, "locked after 20 failures");
    // Locked for every name, even with the right password.
    let r = console.login(&attacker, "operator", OPERATOR_PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("For mange mislykkede forsøk"));
    // Another address is not affected.
    let other = client_from("127.0.0.2");
    let r = console.login(&other, "operator", OPERATOR_PW).await;
    assert_eq!(r.url().path(), "/operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_address_is_throttled() {
    let console = start_with(|c| c.console.trusted_proxy_hops = 1).await;
    // Every request comes from the proxy's address; the proxy appends the client's.
    let via_proxy = |client: &'static str| {
        let c = client_from("127.0.0.1");
        let base = console.base.clone();
        async move {
            let mut outcomes = Vec::new();
            for n in 0..21 {
                let page = c
                    .get(format!("{base}/login"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let r = c
                    .post(format!("{base}/login"))
                    // A client-written entry on the left, the proxy's on the right.
                    .header("x-forwarded-for", format!("192.0.2.{n}, {client}"))
                    .form(&[
                        ("csrf", csrf(&page).as_str()),
                        ("username", &format!("user{n}")),
                        ("password", "guess guess guess"),
                    ])
                    .send()
                    .await
                    .unwrap();
                outcomes.push(r.status());
            }
            outcomes
        }
    };
    let sprayed = via_proxy("203.0.113.5").await;
    assert_eq!(sprayed[19], StatusCode::UNAUTHORIZED);
    assert_eq!(sprayed[20], StatusCode::TOO_MANY_REQUESTS, "{sprayed:?}");
    // Another client behind the same proxy logs in.
    let other = client_from("127.0.0.1");
    let page = other
        .get(console.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = other
        .post(console.url("/login"))
        .header("x-forwarded-for", "203.0.113.6")
        .form(&[
            ("csrf", csrf(&page).as_str()),
            ("username", "operator"),
            ("password", OPERATOR_PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/operator");
}

/// Reads a response to its end; `None` if it did not end within a minute (a hang guard only:
/// a stream that keeps going after logout never ends).
async fn read_to_end(mut r: reqwest::Response) -> Option<String> {
    let read = async move {
        let mut all = Vec::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            all.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&all).into_owned()
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_end_when_the_session_ends() {
    let console = start().await;
    let op = client();
    console.login(&op, "operator", OPERATOR_PW).await;
    let mut status = op
        .get(console.url("/stores/acme/status/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    let first = status.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: status"));
    // A run that does not exist: the stream waits for it, delivering nothing.
    let progress = op
        .get(console.url("/stores/acme/sync/events?run=none"))
        .send()
        .await
        .unwrap();
    assert_eq!(progress.status(), StatusCode::OK);

    let (_, page) = console.page(&op, "/stores/acme/status").await;
    let r = op
        .post(console.url("/logout"))
        .form(&[("csrf", csrf(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/login");
    assert!(
        read_to_end(status).await.is_some(),
        "the status stream ended"
    );
    assert!(
        read_to_end(progress).await.is_some(),
        "the progress stream ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_control_of_every_page_has_a_label() {
    let console = start().await;
    let op = client();
    let (_, login) = console.page(&op, "/login").await;
    assert!(assert_accessible("/login", &login) >= 2);
    console.login(&op, "operator", OPERATOR_PW).await;
    // A dead letter, so that the log shows its replay/skip form.
    let mut h = duellsync_bus::HeaderMap::new();
    h.insert(duellsync_events::headers::DLQ_REASON, "refused by the shop");
    h.insert(
        duellsync_events::headers::DLQ_SUBJECT,
        "catalog.acme.product",
    );
    console
        .bus
        .publish_raw(
            &duellsync_events::dlq_subject("acme", "catalog-publisher"),
            "dlq-test-1",
            h,
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let mut controls = 0;
    for path in [
        "/operator",
        "/stores/acme/connection",
        "/stores/acme/settings",
        "/stores/acme/test",
        "/stores/acme/sync",
        "/stores/acme/status",
        "/stores/acme/log",
        "/stores/acme/history",
    ] {
        let (status, html) = console.page(&op, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        controls += assert_accessible(path, &html);
    }
    assert!(controls > 50, "the pages' controls were found: {controls}");
    // Pages drawn after a submit: a refused save, the test's result.
    let (_, page) = console.page(&op, "/stores/acme/settings").await;
    let mut form = form_fields(&page, "/stores/acme/settings");
    set(&mut form, "poll_interval", "soon");
    let refused = post_form(&op, &console.url("/stores/acme/settings"), &form)
        .await
        .text()
        .await
        .unwrap();
    assert_accessible("refused settings", &refused);
    let (_, page) = console.page(&op, "/stores/acme/test").await;
    let tested = op
        .post(console.url("/stores/acme/test"))
        .form(&[("csrf", csrf(&page))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_accessible("test result", &tested);
    // An invitation's sign-up page.
    let (_, ops) = console.page(&op, "/operator").await;
    let html = op
        .post(console.url("/operator/stores/bolt/invite"))
        .form(&[("csrf", csrf(&ops))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_accessible("invitation link", &html);
    let at = html.find("/invite/").unwrap();
    let link: String = html[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '<')
        .collect();
    let (_, invite) = console.page(&client(), &link).await;
    assert!(assert_accessible("/invite", &invite) >= 3);

    // The style sheet: focus always visible, no fixed widths wider than a phone.
    let css = op
        .get(console.url("/static/console.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains(":focus-visible { outline: 3px solid"), "{css}");
    for rule in css.split('}') {
        for decl in rule.split(['{', ';']) {
            let Some((prop, value)) = decl.split_once(':') else {
                continue;
            };
            let prop = prop.trim();
            if prop == "width" || prop == "min-width" {
                let px: Option<u32> = value.trim().strip_suffix("px").and_then(|n| n.parse().ok());
                assert!(px.is_none_or(|n| n <= 360), "{prop}: {value} in {rule}");
            }
        }
    }
}
