//! No secret ever reaches a log (SPEC §4: "never in logs"), even on the paths that like to print
//! configuration, requests and errors: a store file that fails validation, a wrong WooCommerce
//! consumer secret and a wrong DUELL client token for a while, expired DUELL tokens, forged
//! webhook and notice signatures — around a whole flow through all five services (catalogue
//! sync, stock change, web order into DUELL, DUELL completion back to WooCommerce). Every
//! service also reports its `duellsync_*` metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use duellsync_duell_sim::{Fault, SimConfig as DuellConfig};
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_test_support::free_port;
use duellsync_test_support::sandbox::{StoreFile, SERVICES};
use duellsync_woo_sim::SimConfig as WooConfig;
use rust_decimal::Decimal;

const WAIT: Duration = Duration::from_secs(60);
const WRONG_WOO_SECRET: &str = "cs_wrong0000000000000000000000000000000000";
const WRONG_DUELL_TOKEN: &str = "ffffeeeeddddccccbbbbaaaa99998888";

/// The store file over https (Basic auth: the secret travels in every request's header) with
/// the simulator's CA.
fn store_toml(store: &StoreFile, ca: &std::path::Path) -> String {
    store.to_toml().replacen(
        "[woo]\n",
        &format!("[woo]\nca_cert = {:?}\n", ca.display().to_string()),
        1,
    )
}

fn base64(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A raw HTTP/1.0 POST (the forged requests); returns the status code.
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

/// Restarts every service (to pick up a changed store file) and waits until all are ready.
fn restart_all(world: &mut World) {
    block(|| {
        for s in SERVICES {
            world.sandbox.restart(s);
        }
        for s in SERVICES {
            world.sandbox.wait_ready(s, WAIT);
        }
    });
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_through_failures_and_a_whole_flow() {
    let ingest_port = free_port();
    let mut world = World::with(
        DuellConfig {
            products: 10,
            ..DuellConfig::default()
        },
        WooConfig::default(),
        &[
            r#"poll_interval = "500ms""#,
            r#"stock_poll_interval = "500ms""#,
            r#"status_after_import = "on-hold""#,
        ],
        "",
    )
    .await;
    let ca = world.sandbox.dir().join("woo-ca.pem");
    std::fs::write(&ca, world.woo.ca_pem().expect("woo-sim serves https")).expect("CA written");
    world.store.woo_url = world.woo.https_base_url().expect("woo-sim serves https");
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/s1");
    let good = world.store.clone();
    let mut secrets = good.secrets();
    secrets.push(WRONG_WOO_SECRET.into());
    secrets.push(WRONG_DUELL_TOKEN.into());
    // What Basic auth sends.
    secrets.push(base64(&format!(
        "{}:{}",
        good.consumer_key, good.consumer_secret
    )));
    secrets.push(base64(&format!("{}:{WRONG_WOO_SECRET}", good.consumer_key)));
    for s in good.secrets() {
        assert!(s.len() >= 8, "test secrets are long enough to be found");
    }

    // 1. Settings that fail validation are refused when they are saved to the registry, with
    //    the key and without a secret; nothing is stored, the services run on what is stored.
    let refused = world
        .sandbox
        .try_write_store(
            "s1",
            &store_toml(&good, &ca).replacen(
                "id = \"s1\"\n",
                "id = \"s1\"\nreconcile_interval = \"5s\"\n",
                1,
            ),
        )
        .expect_err("the registry refuses the store");
    assert!(refused.contains("reconcile_interval"), "{refused}");
    for s in &secrets {
        assert!(
            !refused.contains(s.as_str()),
            "a secret in the refusal:\n{refused}"
        );
    }
    // Debug logs everywhere (ours and the libraries'): a secret in a debug line leaks as
    // soon as someone turns debug on to chase a problem.
    world
        .sandbox
        .common_env
        .push(("DUELLSYNC_TELEMETRY__LOG_FILTER".into(), "debug".into()));
    let listen = format!("127.0.0.1:{ingest_port}");
    block(|| {
        world.sandbox.start(
            "webhook-ingest",
            &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
        );
        for s in &SERVICES[1..] {
            world.sandbox.start(s, &[]);
        }
    });

    // 2. A wrong WooCommerce consumer secret and a wrong DUELL client token for a while.
    let mut wrong = good.clone();
    wrong.consumer_secret = WRONG_WOO_SECRET.into();
    wrong.client_token = WRONG_DUELL_TOKEN.into();
    world.sandbox.write_store("s1", &store_toml(&wrong, &ca));
    restart_all(&mut world);
    eventually("the wrong credentials to be refused", WAIT, || {
        let duell_refused = world.duell.response_count(401) > 0;
        let woo_refused = world
            .sandbox
            .logs("catalog-publisher")
            .contains("cannot read WooCommerce price settings")
            && world
                .sandbox
                .logs("change-poller")
                .contains("webhook check failed");
        async move { (duell_refused && woo_refused).then_some(()) }
    })
    .await;

    // 3. The right credentials: the whole flow, with expired DUELL tokens and forged requests.
    world.sandbox.write_store("s1", &store_toml(&good, &ca));
    restart_all(&mut world);
    let forged = r#"{"id":1,"status":"processing"}"#;
    let wrong_signature = base64("not the signature of this body at all");
    let answers = block(|| {
        [
            post(
                ingest_port,
                "/webhooks/woocommerce/s1",
                &[
                    ("X-WC-Webhook-Topic", "order.created"),
                    ("X-WC-Webhook-Signature", wrong_signature.as_str()),
                ],
                forged,
            ),
            post(
                ingest_port,
                "/webhooks/woocommerce/s1",
                &[("X-WC-Webhook-Topic", "order.created")],
                forged,
            ),
            post(
                ingest_port,
                "/notices/duell/s1",
                &[("X-Duellsync-Signature", wrong_signature.as_str())],
                r#"{"product_id":1}"#,
            ),
        ]
    });
    assert_eq!(answers, [Some(401), Some(401), Some(401)]);

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

    // Every DUELL token expires; the next calls are refused and log in again.
    let logins = world.duell.login_count();
    world.duell.expire_all_tokens();
    world.duell.fail_next(None, 2, Fault::ExpiredToken);
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, product.product_id, Decimal::from(250));
    eventually("the stock change in WooCommerce", WAIT, || async {
        let found = world.client.find_by_sku(&sku).await.ok()?;
        (found.first()?.stock_quantity == Some(250)).then_some(())
    })
    .await;
    assert!(
        world.duell.login_count() > logins,
        "expired tokens were renewed"
    );

    let order_id = world.place_web_order(
        &sku,
        2,
        &[("email", "kari@example.no"), ("phone", "+47 912 34 567")],
    );
    let duell_order = eventually("the order in DUELL", WAIT, || async {
        world
            .duell
            .customer_orders()
            .into_iter()
            .find(|o| o.reference() == order_id.to_string())
    })
    .await;
    world.duell.expire_all_tokens();
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

    // Every service reports what it did.
    let expected: [(&str, &[&str]); 5] = [
        (
            "webhook-ingest",
            &[
                "duellsync_ingest_requests_total",
                "duellsync_ingest_publish_duration_seconds",
                "duellsync_bus_published_total",
            ],
        ),
        (
            "change-poller",
            &[
                "duellsync_poller_events_total",
                "duellsync_poller_cycle_duration_seconds",
                "duellsync_bus_published_total",
                "duellsync_bus_delivered_total",
                "duellsync_duell_request_duration_seconds",
                "duellsync_woo_request_duration_seconds",
            ],
        ),
        (
            "catalog-publisher",
            &[
                "duellsync_bus_delivered_total",
                "duellsync_bus_handled_total",
                "duellsync_bus_published_total",
                "duellsync_publisher_batch_writes_total",
                "duellsync_publisher_batch_duration_seconds",
                "duellsync_woo_request_duration_seconds",
            ],
        ),
        (
            "order-importer",
            &[
                "duellsync_bus_delivered_total",
                "duellsync_bus_handled_total",
                "duellsync_bus_published_total",
                "duellsync_importer_orders_imported_total",
                "duellsync_importer_duell_call_duration_seconds",
                "duellsync_duell_request_duration_seconds",
                "duellsync_woo_request_duration_seconds",
            ],
        ),
        (
            "status-writeback",
            &[
                "duellsync_bus_delivered_total",
                "duellsync_bus_handled_total",
                "duellsync_bus_published_total",
                "duellsync_writeback_written_total",
                "duellsync_writeback_woo_request_duration_seconds",
            ],
        ),
    ];
    for (service, names) in expected {
        let metrics = world.sandbox.metrics(service);
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !metrics.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "{service} lacks {missing:?}:\n{metrics}"
        );
    }

    // A graceful stop writes its own lines too.
    block(|| {
        for s in SERVICES {
            world.sandbox.terminate(s, Duration::from_secs(30));
        }
    });
    let logs = world.sandbox.all_logs();
    assert!(
        logs.contains("delivery refused: signature missing or wrong"),
        "the forged delivery was logged (without what it carried)"
    );
    for (i, secret) in secrets.iter().enumerate() {
        if let Some(at) = logs.find(secret.as_str()) {
            let line_start = logs[..at].rfind('\n').map_or(0, |n| n + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |n| at + n);
            panic!(
                "secret #{i} is in a log line: {}",
                logs[line_start..line_end].replace(secret.as_str(), "<SECRET>")
            );
        }
    }
}
