//! The whole engine on NATS as the deployment configures it: the accounts and permissions of
//! deploy/nats/permissions.toml (rendered by deploy/generate.py, as for the cluster), each
//! service with its own NKey, TLS with a certificate the services check. The flow that crosses
//! every service — catalogue sync, a web order delivered by webhook into DUELL, DUELL's
//! completion back to WooCommerce, a full sync and the operator's reads with syncctl — runs
//! without a single permission refusal, which the server would log.

use duellsync_test_support::csrf_field as csrf;
use std::time::Duration;

use base64::Engine as _;
use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::SimConfig as DuellConfig;
use duellsync_e2e::{eventually, World};
use duellsync_test_support::free_port;
use duellsync_test_support::sandbox::{Sandbox, SERVICES};
use duellsync_woo_sim::SimConfig as WooConfig;
use hmac::{Hmac, Mac};
use prost::Message as _;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(90);

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_does_its_work_with_its_own_credentials_and_nothing_is_refused() {
    let ingest_port = free_port();
    let mut world = World::with(
        DuellConfig {
            products: 6,
            ..DuellConfig::default()
        },
        WooConfig::default(),
        &[
            r#"poll_interval = "500ms""#,
            r#"stock_poll_interval = "500ms""#,
        ],
        "",
    )
    .await;
    world.sandbox = Sandbox::secured();
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/s1");
    world.sandbox.write_store("s1", &world.store.to_toml());
    let listen = format!("127.0.0.1:{ingest_port}");
    block(|| {
        world.sandbox.start(
            "webhook-ingest",
            &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
        );
        for s in &SERVICES[1..] {
            world.sandbox.start(s, &[]);
        }
        for s in SERVICES {
            world.sandbox.wait_ready(s, WAIT);
        }
    });

    let all = world.duell.products();
    let product = all
        .iter()
        .find(|p| {
            p.view_on_webshop
                && !p.is_deleted
                && !p.is_parent
                && p.parent_variant == 0
                && all
                    .iter()
                    .filter(|q| q.product_number.eq_ignore_ascii_case(&p.product_number))
                    .count()
                    == 1
        })
        .expect("a simple product")
        .clone();
    let sku = product.product_number.clone();
    eventually("the initial sync", WAIT, || async {
        world.woo_products().await.contains_key(&sku).then_some(())
    })
    .await;

    // The order reaches the ingest as a signed webhook delivery (the poller created the
    // webhook), then the importer.
    let order_id = world.place_web_order(&sku, 1, &[("email", "kari@example.no")]);
    let duell_order = eventually("the order in DUELL", WAIT, || async {
        world
            .duell
            .customer_orders()
            .into_iter()
            .find(|o| o.reference() == order_id.to_string())
    })
    .await;
    world
        .duell
        .set_order_status(duell_order.order_id, 5)
        .expect("DUELL completes the order");
    eventually("the order completed in WooCommerce", WAIT, || async {
        let status = world
            .woo
            .order_json(order_id)?
            .get("status")?
            .as_str()?
            .to_owned();
        (status == "completed").then_some(())
    })
    .await;
    let ingest_metrics = world.sandbox.metrics("webhook-ingest");
    assert!(
        ingest_metrics
            .lines()
            .any(|l| l.starts_with("duellsync_ingest_requests_total")
                && l.contains("outcome=\"accepted\"")
                && !l.ends_with(" 0")),
        "the order came through the ingest:\n{ingest_metrics}"
    );

    // A change notice through the ingest reaches the poller's notice consumer.
    let body = format!(r#"{{"kind":"stock","product_id":{}}}"#, product.product_id);
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(world.store.notice_secret.as_bytes())
        .expect("any key length");
    mac.update(format!("notice-1.{ts}.").as_bytes());
    mac.update(body.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let status = reqwest::Client::new()
        .post(format!("http://{listen}/notices/duell/s1"))
        .header("x-duellsync-notice-id", "notice-1")
        .header("x-duellsync-timestamp", ts.to_string())
        .header("x-duellsync-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let mut admin = BusOptions::new(world.sandbox.nats.url(), "syncctl");
    admin.nkey_file = world.sandbox.nats.nkey_file("syncctl").map(Into::into);
    admin.tls_ca_file = world.sandbox.nats.ca_file().map(Into::into);
    let admin = Bus::connect(admin).await.expect("syncctl's credentials");
    eventually("the poller took the notice", WAIT, || async {
        // (The publisher also notices products whose stock hold it released.)
        let from_ingest = admin
            .read("DUELL", "duell.s1.change.noticed", 1, 100)
            .await
            .ok()?
            .iter()
            .filter(|m| {
                duellsync_events::v1::ChangeNoticed::decode(m.payload.as_ref())
                    .is_ok_and(|n| n.meta.is_some_and(|m| m.producer == "webhook-ingest"))
            })
            .count();
        let lag = admin
            .consumer_lag("DUELL", "change-poller-s1-notice")
            .await
            .ok()?;
        (from_ingest == 1 && lag == 0).then_some(())
    })
    .await;

    // The operator's tool, with its own credentials: a full sync, the log, the dead letters.
    let sync = block(|| {
        world
            .sandbox
            .syncctl(&["sync", "--store", "s1", "--timeout", "60s", "--yes"])
    });
    if let Err(out) = sync {
        panic!("syncctl sync: {out}");
    }
    for args in [
        &["status", "--store", "s1"][..],
        &["log", "--store", "s1"],
        &["dlq", "list"],
    ] {
        let out = block(|| world.sandbox.syncctl(args));
        if let Err(out) = out {
            panic!("syncctl {args:?}: {out}");
        }
    }

    // The console, with its own credentials: its accounts and sessions (first run), the
    // operator's overview, a setting changed live (registry and audit), a dry run requested,
    // the status, log and history pages.
    let console_listen = format!("127.0.0.1:{}", free_port());
    block(|| {
        world.sandbox.start(
            "console",
            &[
                ("DUELLSYNC_CONSOLE__LISTEN", console_listen.as_str()),
                ("DUELLSYNC_CONSOLE__SECURE_COOKIES", "false"),
                ("DUELLSYNC_CONSOLE__EGRESS_IP_URL", "http://127.0.0.1:9/"),
            ],
        );
        world.sandbox.wait_ready("console", WAIT);
    });
    let web = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{console_listen}{path}");
    let page = |path: String| {
        let web = web.clone();
        async move {
            let r = web.get(path.as_str()).send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let page = |path: String| {
        let fetch = &page;
        let world = &world;
        async move {
            let (status, text) = fetch(path.clone()).await;
            assert_eq!(
                status,
                200,
                "{path}:\n{text}\nconsole log:\n{}\nNATS refusals:\n{}",
                world.sandbox.logs("console"),
                world
                    .sandbox
                    .nats
                    .log()
                    .lines()
                    .filter(|l| l.contains("Violation"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            text
        }
    };
    let setup = page(url("/setup")).await;
    let r = web
        .post(url("/setup"))
        .form(&[
            ("csrf", csrf(&setup).as_str()),
            ("username", "ops"),
            ("password", "operator password"),
            ("confirm", "operator password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/operator", "the operator was created");
    let overview = r.text().await.unwrap();
    assert!(overview.contains("s1"), "{overview}");
    let revision = {
        let out = block(|| world.sandbox.syncctl(&["--json", "store", "get", "s1"])).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["revision"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let r = web
        .post(url("/stores/s1/settings"))
        .form(&[
            ("csrf", csrf(&overview).as_str()),
            ("revision", revision.as_str()),
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
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stored = block(|| world.sandbox.syncctl(&["store", "get", "s1"])).unwrap();
    assert!(stored.contains("sync_prices = false"), "{stored}");
    let r = web
        .post(url("/stores/s1/sync"))
        .form(&[("csrf", csrf(&overview).as_str()), ("dry_run", "on")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    for path in ["/stores/s1/status", "/stores/s1/log", "/stores/s1/history"] {
        page(url(path)).await;
    }
    let history = page(url("/stores/s1/history")).await;
    assert!(history.contains("ops"), "the change is audited:\n{history}");

    let server_log = world.sandbox.nats.log();
    let refusals: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("Violation"))
        .collect();
    assert!(
        refusals.is_empty(),
        "the permission table misses what a service needs:\n{}",
        refusals.join("\n")
    );
    for s in SERVICES.iter().chain(&["console"]) {
        assert!(
            !world.sandbox.logs(s).contains("NATS refused"),
            "{s}:\n{}",
            world.sandbox.logs(s)
        );
    }
}
