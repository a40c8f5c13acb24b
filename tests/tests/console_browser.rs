//! The console in a real browser (headless Chromium through chromedriver and WebDriver)
//! against the real console binary, NATS, every service and the simulators (issue 16 §4):
//! first run and invitations, a setting applied live, the refused combination, the connection
//! test red then green, a full sync to 100 %, the log and its CSV, and a retailer who cannot
//! reach another store; every page readable at 360 px with the keyboard's focus visible.
//! Screenshots of every page go to `target/browser-artifacts/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use duellsync_duell_sim::ProductPatch;
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use fantoccini::{Client, ClientBuilder, Locator};
use rust_decimal::Decimal;

const WAIT: Duration = Duration::from_secs(90);
const SETTINGS: &[&str] = &[
    "sync_orders = false",
    "poll_interval = \"200ms\"",
    "stock_poll_interval = \"200ms\"",
];

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let port = duellsync_test_support::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (apt-get install chromium chromium-driver; scripts/test does)",
            );
        let profile = tempfile::tempdir().unwrap();
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }))
        .unwrap();
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    let shots =
                        duellsync_test_support::workspace_root().join("target/browser-artifacts");
                    std::fs::create_dir_all(&shots).unwrap();
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                        shots,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    async fn go(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element, once the page shows it: a find right after a navigation may otherwise look
    /// at a page that is still loading.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Clicks, and when the click submits a form or follows a link, waits until the next page
    /// has replaced this one (WebDriver's click may return before the navigation it starts has
    /// even begun, and the next find would then read the old page).
    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        let navigates = self
            .client
            .execute(
                "const e = arguments[0]; \
                 const nav = e.closest('a[href]') !== null || \
                   (e.form != null && (e.type === 'submit' || e.type === 'image')); \
                 if (nav) { window.__before_click = true; } \
                 return nav;",
                vec![serde_json::to_value(&e).unwrap()],
            )
            .await
            .unwrap()
            .as_bool()
            .unwrap_or(false);
        e.click().await.unwrap();
        if navigates {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                // A new document has no marker; while the old one is still shown, it has.
                let replaced = self
                    .client
                    .execute(
                        "return window.__before_click !== true && document.readyState === 'complete';",
                        vec![],
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if replaced {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "clicking `{css}` did not lead to a new page"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Waits until the page holds `text` (a click's navigation may still be loading).
    async fn until(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = self.source().await;
            if page.contains(text) {
                return page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{text}` in:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Sets a checkbox to `on` (clicking it only when it differs).
    async fn check(&self, id: &str, on: bool) {
        let e = self.find(&format!("#{id}")).await;
        if e.is_selected().await.unwrap() != on {
            e.click().await.unwrap();
        }
    }

    async fn logout(&self) {
        self.click("header form button").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn revision(world: &World, store: &str) -> u64 {
    let out = world
        .sandbox
        .syncctl(&["--json", "store", "get", store])
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["revision"]
        .as_u64()
        .unwrap()
}

async fn woo_product(world: &World, sku: &str) -> Option<duellsync_woo::Product> {
    world.client.find_by_sku(sku).await.ok()?.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retailers_page_works_in_a_real_browser() {
    let mut world = World::new(12, SETTINGS, "").await;
    // The shop over https (the console requires it), trusting woo-sim's CA.
    let ca = world.sandbox.dir().join("woo-ca.pem");
    std::fs::write(&ca, world.woo.ca_pem().unwrap()).unwrap();
    let https = world.woo.https_base_url().unwrap();
    let s1 = world.store.to_toml().replacen(
        &format!("url = \"{}\"", world.woo.base_url()),
        &format!("url = \"{https}\"\nca_cert = \"{}\"", ca.display()),
        1,
    );
    world.sandbox.write_store("s1", &s1);
    // A second store (not synced) for the second retailer.
    world.sandbox.write_store(
        "s2",
        &s1.replacen("id = \"s1\"", "id = \"s2\"\nautomatic = false", 1),
    );
    world.start(&["change-poller", "catalog-publisher"]);
    let console_port = duellsync_test_support::free_port();
    let listen = format!("127.0.0.1:{console_port}");
    world.sandbox.start(
        "console",
        &[
            ("DUELLSYNC_CONSOLE__LISTEN", listen.as_str()),
            ("DUELLSYNC_CONSOLE__EGRESS_IP_URL", "http://127.0.0.1:9/"),
        ],
    );
    world.sandbox.wait_ready("console", WAIT);
    let base = format!("http://{listen}");
    let b = Browser::start().await;

    // First run: the operator is created on the first page.
    b.go(&format!("{base}/")).await;
    assert_eq!(b.path().await, "/setup");
    b.shot("01-first-run").await;
    b.fill("#username", "ops").await;
    b.fill("#password", "operator password").await;
    b.fill("#confirm", "operator password").await;
    b.click("form.card button").await;
    assert_eq!(b.path().await, "/operator");
    b.shot("02-operator").await;

    // Invitations for both stores.
    let mut links = Vec::new();
    for store in ["s1", "s2"] {
        b.go(&format!("{base}/operator")).await;
        b.click(&format!(
            "form[action='/operator/stores/{store}/invite'] button"
        ))
        .await;
        let link = b.text("#invite-link").await;
        links.push(format!("{base}{}", &link[link.find("/invite/").unwrap()..]));
    }
    b.shot("03-invitation").await;
    b.logout().await;

    // Retailer A signs up through the link and lands on the connection page.
    b.go(&links[0]).await;
    b.shot("04-accept-invitation").await;
    b.fill("#username", "anne@s1.no").await;
    b.fill("#password", "retailer password").await;
    b.fill("#confirm", "retailer password").await;
    b.click("form.card button").await;
    assert_eq!(b.path().await, "/stores/s1/connection");
    b.shot("05-connection").await;

    // "Synkronisere priser" off: applied live; a price change stays in DUELL, stock arrives.
    let visible: Vec<_> = world
        .duell
        .products()
        .into_iter()
        .filter(|p| p.view_on_webshop && !p.is_deleted && !p.is_parent && p.parent_variant == 0)
        .collect();
    let x = visible[0].clone();
    eventually("the initial sync", WAIT, || async {
        woo_product(&world, &x.product_number).await.map(|_| ())
    })
    .await;
    b.go(&format!("{base}/stores/s1/settings")).await;
    b.shot("06-settings").await;
    b.check("sync_prices", false).await;
    b.click("form.settings > button[type=submit]").await;
    b.until("class=\"notice\"").await;
    let csrf_a = b
        .js("return document.querySelector('form.settings input[name=csrf]').value")
        .await;
    eventually("the publisher to apply the change", WAIT, || async {
        let logs = world.sandbox.logs("catalog-publisher");
        let starts = logs
            .lines()
            .filter(|l| l.contains("store started") && l.contains("\"s1\""))
            .count();
        (starts >= 2).then_some(())
    })
    .await;
    let before = woo_product(&world, &x.product_number)
        .await
        .unwrap()
        .regular_price;
    world
        .duell
        .update_product(
            x.product_id,
            ProductPatch {
                price_inc_vat: Some(Decimal::from(999)),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    // Give the poller the price fact first, then the stock fact: once the stock is written, the
    // price fact (earlier in the stream) has been handled too.
    let bus = duellsync_bus::Bus::connect(duellsync_bus::BusOptions::new(
        world.sandbox.nats.url(),
        "test",
    ))
    .await
    .unwrap();
    eventually("the price change to be observed", WAIT, || async {
        use duellsync_events::Event;
        use prost::Message;
        let msgs = bus
            .read_at(
                "DUELL",
                &[duellsync_events::v1::ProductObserved::subject("s1")],
                duellsync_bus::StartAt::First,
                usize::MAX,
            )
            .await
            .ok()?;
        msgs.iter()
            .filter_map(|m| duellsync_events::v1::ProductObserved::decode(m.payload.as_ref()).ok())
            .any(|p| {
                p.product.as_ref().is_some_and(|p| {
                    p.product_id == x.product_id as i64
                        && p.price_inc_vat.parse::<Decimal>().ok() == Some(Decimal::from(999))
                })
            })
            .then_some(())
    })
    .await;
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, x.product_id, Decimal::from(321));
    eventually("the stock change in WooCommerce", WAIT, || async {
        (woo_product(&world, &x.product_number).await?.stock_quantity == Some(321)).then_some(())
    })
    .await;
    assert_eq!(
        woo_product(&world, &x.product_number)
            .await
            .unwrap()
            .regular_price,
        before
    );

    // "Trekk fra lager" with "Opprett kundeordre": refused with the message, nothing saved.
    let rev = revision(&world, "s1");
    b.go(&format!("{base}/stores/s1/settings")).await;
    b.check("create_customer_order", true).await;
    b.check("deduct_stock", true).await;
    b.click("form.settings > button[type=submit]").await;
    b.until("«Trekk fra lager» krever at «Opprett kundeordre» er deaktivert")
        .await;
    b.shot("07-settings-refused").await;
    assert_eq!(revision(&world, "s1"), rev, "nothing saved");

    // A wrong consumer secret: "Test integrasjon" is red naming it; corrected, green.
    let (_, good_secret) = world.woo.credentials();
    for (secret, want_red) in [("cs_wrong_secret_123", true), (good_secret.as_str(), false)] {
        b.go(&format!("{base}/stores/s1/connection")).await;
        b.fill("#consumer_secret", secret).await;
        b.click("main form > button[type=submit]").await;
        b.until("class=\"notice\"").await;
        b.go(&format!("{base}/stores/s1/test")).await;
        b.click("main form button").await;
        b.until("data-check=").await;
        let line = b
            .client
            .find(Locator::Css("li[data-check='WooCommerce credentials']"))
            .await
            .unwrap();
        let class = line.attr("class").await.unwrap().unwrap_or_default();
        let text = line.text().await.unwrap();
        if want_red {
            assert_eq!(class, "bad", "{text}");
            assert!(text.contains("woo.consumer_secret"), "{text}");
            b.shot("08-test-red").await;
        } else {
            assert_eq!(class, "ok", "{text}");
            assert!(!b.source().await.contains("class=\"bad\""));
            b.shot("09-test-green").await;
        }
    }

    // "Synkroniser": the attribute warning, then the progress bar to 100 % and a summary.
    b.go(&format!("{base}/stores/s1/sync")).await;
    assert!(b.source().await.contains("overskrevet"));
    b.check("confirm", true).await;
    b.click("#start-sync").await;
    assert!(b
        .client
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or("")
        .contains("run="));
    eventually("the progress bar at 100 %", WAIT, || async {
        let v = b
            .js("var e = document.getElementById('bar'); return e ? e.value : 0")
            .await;
        let summary = b.source().await.contains("data-k=\"creates\"");
        (v.as_f64() == Some(100.0) && summary).then_some(())
    })
    .await;
    b.shot("10-sync-done").await;
    let products = world.woo_products().await;
    for p in &visible {
        assert!(
            products.contains_key(&p.product_number),
            "{} in WooCommerce",
            p.product_number
        );
    }

    b.go(&format!("{base}/stores/s1/status")).await;
    b.shot("11-status").await;

    // The log, and its CSV export holds exactly the rows shown.
    b.go(&format!("{base}/stores/s1/log")).await;
    b.shot("12-log").await;
    // One product's lines: nothing new arrives for it while the CSV is fetched.
    b.go(&format!("{base}/stores/s1/log?q={}", x.product_number))
        .await;
    let shown: Vec<String> = serde_json::from_value(
        b.js("return Array.from(document.querySelectorAll('#log tbody tr')).map(r => r.getAttribute('data-seq'))")
            .await,
    )
    .unwrap();
    assert!(!shown.is_empty());
    let csv_url = b.js("return document.getElementById('csv').href").await;
    let cookie = b
        .client
        .get_named_cookie("duellsync_session")
        .await
        .unwrap();
    let csv = reqwest::Client::new()
        .get(csv_url.as_str().unwrap())
        .header("cookie", format!("duellsync_session={}", cookie.value()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csv_seqs: Vec<String> = csv
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(csv_seqs, shown, "the CSV holds exactly the rows shown");
    b.logout().await;

    // Retailer B (store s2) cannot read or change store s1.
    b.go(&links[1]).await;
    b.fill("#username", "bjorn@s2.no").await;
    b.fill("#password", "retailer password").await;
    b.fill("#confirm", "retailer password").await;
    b.click("form.card button").await;
    assert_eq!(b.path().await, "/stores/s2/connection");
    let rev = revision(&world, "s1");
    for path in ["settings", "connection", "log", "status", "sync", "history"] {
        b.go(&format!("{base}/stores/s1/{path}")).await;
        let page = b.source().await;
        assert!(page.contains("Finnes ikke"), "{path}: {page}");
        assert!(!page.contains(&https), "{path} leaks s1's settings");
    }
    b.shot("13-other-store-refused").await;
    // An altered form: B's own valid form sent to s1's address.
    b.go(&format!("{base}/stores/s2/settings")).await;
    b.js("document.querySelector('form.settings').action = '/stores/s1/settings'; return 1")
        .await;
    b.click("form.settings > button[type=submit]").await;
    b.until("Finnes ikke").await;
    // A replayed CSRF token (retailer A's, from another session) in B's own form: refused.
    let s2_rev = revision(&world, "s2");
    b.go(&format!("{base}/stores/s2/settings")).await;
    b.js(&format!(
        "document.querySelector('form.settings input[name=csrf]').value = {csrf_a}; return 1"
    ))
    .await;
    b.click("form.settings > button[type=submit]").await;
    b.until("Avvist").await;
    assert_eq!(revision(&world, "s1"), rev, "s1 untouched");
    assert_eq!(
        revision(&world, "s2"),
        s2_rev,
        "s2 untouched by the replayed token"
    );

    // Readable at 360 px: no page scrolls sideways (tables scroll in their own box).
    b.client.set_window_size(360, 800).await.unwrap();
    let width = b.js("return window.innerWidth").await.as_i64().unwrap();
    assert!(width <= 400, "a phone-sized window: {width} px");
    for path in [
        "connection",
        "settings",
        "test",
        "sync",
        "status",
        "log",
        "history",
    ] {
        b.go(&format!("{base}/stores/s2/{path}")).await;
        b.find("main h1").await;
        let overflow = b
            .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await
            .as_i64()
            .unwrap();
        assert!(
            overflow <= 0,
            "{path} scrolls sideways by {overflow} px at {width} px"
        );
    }
    b.go(&format!("{base}/stores/s2/settings")).await;
    b.shot("14-settings-360px").await;
    // The keyboard's focus is visible: Tab to the first control, which gets the outline.
    b.find("body").await.send_keys("\u{e004}").await.unwrap();
    let focus = b
        .js(
            "var e = document.activeElement; var s = getComputedStyle(e); \
             return [e.tagName, s.outlineStyle, s.outlineWidth].join(' ')",
        )
        .await;
    let focus = focus.as_str().unwrap_or_default().to_owned();
    assert!(
        focus.ends_with(" solid 3px") && !focus.starts_with("BODY"),
        "focus visible: {focus}"
    );
    b.client.clone().close().await.unwrap();
}
