//! The console over HTTP against a real NATS, the registry and the simulators: who may see and
//! change what, the settings rules on save, the connection test, the log and its CSV.

use duellsync_bus::{Bus, BusOptions};
use duellsync_console::{App, Config};
use duellsync_duell_sim::{DuellSim, SimConfig as DuellConfig};
use duellsync_events::{meta, v1, EventId};
use duellsync_registry::{generate_key, Keyring, Registry};
use duellsync_settings::Secret;
use duellsync_test_support::NatsServer;
use duellsync_woo_sim::{SimConfig as WooConfig, WooSim};
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
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap()
}

/// The value of `name="csrf"` in a page.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
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
