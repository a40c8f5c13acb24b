//! `spawn_app()`: the ingest on port 0 with a private NATS and store files in a temp dir.

use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions, StoredMessage};
use duellsync_test_support::sandbox::StoreFile;
use duellsync_test_support::NatsServer;
use duellsync_webhook_ingest::{App, Config};
use prost::Message;
use tokio::sync::oneshot;

/// Webhook secret of store `s1` (and `s2`, `slow`).
pub const S1_SECRET: &str = "s1-webhook-secret";
/// Notice secret of store `s1` (`s2` has none).
pub const S1_NOTICE_SECRET: &str = "s1-notice-secret";

pub struct TestApp {
    pub url: String,
    pub admin_url: String,
    pub nats: NatsServer,
    /// A separate connection to read what the ingest stored.
    pub bus: Bus,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Store `rot`: its new webhook secret, and the old one still accepted during the rotation.
pub const ROTATED_NEW_SECRET: &str = "rotNewSecret2";
pub const ROTATED_OLD_SECRET: &str = "rotOldSecret1";

fn store(id: &str, webhook_secret: &str, notice_secret: &str) -> StoreFile {
    StoreFile {
        id: id.to_owned(),
        woo_url: "http://127.0.0.1:9/".into(),
        consumer_key: "ck_test".into(),
        consumer_secret: "cs_test".into(),
        webhook_secret: webhook_secret.to_owned(),
        webhook_delivery_url: String::new(),
        duell_url: "http://127.0.0.1:9/v1/".into(),
        client_number: "123456".into(),
        client_token: "t".repeat(40),
        stock_department: "d".repeat(40),
        order_department: "o".repeat(40),
        notice_secret: notice_secret.to_owned(),
        settings: Vec::new(),
        sections: String::new(),
    }
}

/// The webhook secret a captured sample was signed with, read from the webhook-create request
/// recorded next to it.
pub fn sample_secret(create_sample: &str) -> String {
    let v = read_sample(create_sample);
    v["request"]["body"]["secret"]
        .as_str()
        .expect("the create request carries the secret")
        .to_owned()
}

pub fn read_sample(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../../tests/fixtures/woocommerce-samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("samples are JSON")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the ingest; `tune` adjusts the config first.
pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    duellsync_test_support::init_tracing();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = dir.path().join("stores");
    std::fs::create_dir_all(&stores).unwrap();
    let files = [
        store("s1", S1_SECRET, S1_NOTICE_SECRET),
        store("s2", S1_SECRET, ""),
        store("slow", S1_SECRET, ""),
        store(
            "lab",
            &sample_secret("20-webhook-create-order-created.json"),
            "",
        ),
        store(
            "vfy",
            &sample_secret("76-webhook-create-status-paused-ignored.json"),
            "",
        ),
        store("rot", ROTATED_NEW_SECRET, ""),
    ];
    for f in files {
        std::fs::write(stores.join(format!("{}.toml", f.id)), f.to_toml()).unwrap();
    }
    // Store `rot` is in the middle of a webhook secret rotation.
    let env = vec![(
        "DUELLSYNC_STORES__ROT__WOO__PREVIOUS_WEBHOOK_SECRET".to_owned(),
        ROTATED_OLD_SECRET.to_owned(),
    )];
    let stores = duellsync_settings::load_stores(&stores, &env).expect("store files are valid");

    let mut config = Config::default();
    config.nats.url = nats.url();
    config.ingest.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    config.ingest.publish_timeout = Duration::from_secs(2);
    config.ingest.shutdown_grace = Duration::from_secs(10);
    tune(&mut config);

    let app = App::build(config, stores).await.expect("the app builds");
    let url = format!("http://{}", app.addr());
    let admin_url = format!("http://{}", app.admin_addr());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = stop_rx.await;
    }));
    let mut opts = BusOptions::new(nats.url(), "ingest-test");
    opts.publish_deadline = Duration::from_secs(5);
    let bus = Bus::connect(opts).await.expect("test bus connects");
    TestApp {
        url,
        admin_url,
        nats,
        bus,
        http: reqwest::Client::new(),
        stop: Some(stop_tx),
        task: Some(task),
        _dir: dir,
    }
}

impl TestApp {
    /// A delivery as WooCommerce sends it, signed with `secret`.
    pub async fn deliver_signed(
        &self,
        store: &str,
        topic: &str,
        secret: &str,
        body: &[u8],
    ) -> reqwest::Response {
        let sig = duellsync_woo::webhook_signature::sign(secret, body);
        self.post_webhook(store, Some(topic), Some(&sig), body.to_vec())
            .await
    }

    /// A delivery for `s1`, correctly signed.
    pub async fn deliver(&self, topic: &str, body: &[u8]) -> reqwest::Response {
        self.deliver_signed("s1", topic, S1_SECRET, body).await
    }

    pub async fn post_webhook(
        &self,
        store: &str,
        topic: Option<&str>,
        signature: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/woocommerce/{store}", self.url))
            .header("Content-Type", "application/json")
            .header("User-Agent", "WooCommerce/7.9.0 Hookshot (WordPress/6.1.9)")
            .header("X-WC-Webhook-ID", "1")
            .header(
                "X-WC-Webhook-Delivery-ID",
                "5912cecbc9d6400f5bb967b46673adea",
            );
        if let Some(t) = topic {
            let (resource, event) = t.split_once('.').unwrap_or((t, ""));
            req = req
                .header("X-WC-Webhook-Topic", t)
                .header("X-WC-Webhook-Resource", resource)
                .header("X-WC-Webhook-Event", event);
        }
        if let Some(s) = signature {
            req = req.header("X-WC-Webhook-Signature", s);
        }
        req.body(body).send().await.expect("the ingest answers")
    }

    /// Posts a change notice with these `X-Duellsync-*` headers (name without the prefix:
    /// `Notice-Id`, `Timestamp`, `Signature`).
    pub async fn notice_with(
        &self,
        store: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/notices/duell/{store}", self.url))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(format!("X-Duellsync-{k}"), *v);
        }
        req.body(body.to_owned())
            .send()
            .await
            .expect("the ingest answers")
    }

    /// A notice as a DUELL-side sender signs it: id, the current time, `secret`.
    pub async fn notice(
        &self,
        store: &str,
        id: &str,
        secret: &str,
        body: &str,
    ) -> reqwest::Response {
        let ts = now_s();
        self.notice_at(store, id, ts, secret, body).await
    }

    /// A notice signed with `secret` for timestamp `ts` (Unix seconds).
    pub async fn notice_at(
        &self,
        store: &str,
        id: &str,
        ts: i64,
        secret: &str,
        body: &str,
    ) -> reqwest::Response {
        let sig = duellsync_webhook_ingest::sign_change_notice(secret, id, ts, body.as_bytes());
        let ts = ts.to_string();
        self.notice_with(
            store,
            &[("Notice-Id", id), ("Timestamp", &ts), ("Signature", &sig)],
            body,
        )
        .await
    }

    /// Everything in the WOO stream.
    pub async fn woo_events(&self) -> Vec<StoredMessage> {
        self.bus
            .read("WOO", "woo.>", 1, 1000)
            .await
            .expect("WOO is readable")
    }

    pub async fn orders_observed(&self) -> Vec<duellsync_events::v1::OrderObserved> {
        self.woo_events()
            .await
            .iter()
            .map(|m| {
                duellsync_events::v1::OrderObserved::decode(m.payload.as_ref())
                    .expect("WOO holds OrderObserved events")
            })
            .collect()
    }

    pub async fn notices_stored(&self) -> Vec<duellsync_events::v1::ChangeNoticed> {
        self.bus
            .read("DUELL", "duell.*.change.noticed", 1, 1000)
            .await
            .expect("DUELL is readable")
            .iter()
            .map(|m| {
                duellsync_events::v1::ChangeNoticed::decode(m.payload.as_ref())
                    .expect("change.noticed holds ChangeNoticed")
            })
            .collect()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .expect("admin answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// Polls `/metrics` until `line_prefix` shows a value `>= at_least`.
    pub async fn wait_metric(&self, line_prefix: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics().await;
            let value = text
                .lines()
                .find(|l| l.starts_with(line_prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
            if value.is_some_and(|v| v >= at_least) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metric {line_prefix} did not reach {at_least}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Triggers a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `App::run` to return.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        let task = self.task.take().expect("run once");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the ingest stops within 30 s")
            .expect("run does not panic")
    }
}

/// Now, Unix seconds.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Polls `f` until it returns `Some`, failing after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A small order body in WooCommerce's PHP-escaped style.
pub fn order_body(id: i64, status: &str, total: &str) -> Vec<u8> {
    format!(
        r#"{{"id":{id},"parent_id":0,"status":"{status}","currency":"NOK","date_created":"2026-11-29T01:57:40","date_created_gmt":"2026-11-29T01:57:40","date_modified_gmt":"2026-11-29T01:57:41","total":"{total}","number":"{id}","line_items":[{{"id":1,"name":"Kaffe \/ Te","quantity":2,"total":"{total}","price":10}}],"_links":{{"self":[{{"href":"http:\/\/shop.example\/wp-json\/wc\/v3\/orders\/{id}"}}]}}}}"#
    )
    .into_bytes()
}

/// An HTTP/1.1 request written by hand with a chunked body, so a test controls exactly when
/// each part of the body is sent (oversize bodies without Content-Length, slow senders).
pub struct RawConnection {
    stream: tokio::net::TcpStream,
}

impl RawConnection {
    pub async fn open(base_url: &str, path: &str, headers: &[(&str, &str)]) -> RawConnection {
        use tokio::io::AsyncWriteExt;
        let addr = base_url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("writes the head");
        RawConnection { stream }
    }

    pub async fn send_chunk(&mut self, chunk: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        // The server may answer (413) and stop reading before everything is written.
        let _ = self.stream.write_all(&framed).await;
    }

    /// Ends the body and returns the response status.
    pub async fn finish(mut self) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.stream.write_all(b"0\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(20), self.stream.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP response: {text:?}"))
    }
}
