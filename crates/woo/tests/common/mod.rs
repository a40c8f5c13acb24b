//! Shared test harness: a target store (the simulator in-process by default, or a real store
//! from `WOO_URL`/`WOO_CONSUMER_KEY`/`WOO_CONSUMER_SECRET`[/`WOO_CA_CERT`]), clients, a raw
//! signed request helper, a tiny local HTTP receiver for webhooks and images, and the store's
//! tax settings with what WooCommerce charges under them ([`taxes`]).
#![allow(dead_code)]

pub mod taxes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duellsync_woo::oauth::{self, ParamValue, SignatureMethod};
use duellsync_woo::{ClientConfig, RetryPolicy, WooClient};
use duellsync_woo_sim::{SimConfig, WooSim};
use secrecy::SecretString;

pub struct Target {
    pub sim: Option<WooSim>,
    pub url: String,
    pub key: String,
    pub secret: String,
    pub ca_pem: Option<Vec<u8>>,
    pub prefix: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("CT-{:x}-{n}-", t % 0xFFFF_FFFF)
}

impl Target {
    /// The simulator, or the real store when `WOO_URL` is set.
    pub async fn new() -> Target {
        Target::with_config(SimConfig::default()).await
    }

    pub async fn with_config(cfg: SimConfig) -> Target {
        if let Ok(url) = std::env::var("WOO_URL") {
            let key =
                std::env::var("WOO_CONSUMER_KEY").expect("WOO_CONSUMER_KEY is set with WOO_URL");
            let secret = std::env::var("WOO_CONSUMER_SECRET")
                .expect("WOO_CONSUMER_SECRET is set with WOO_URL");
            return Target::real(url, key, secret, std::env::var("WOO_CA_CERT").ok());
        }
        let sim = WooSim::start(cfg).await.expect("simulator starts");
        let (key, secret) = sim.credentials();
        Target {
            url: sim.base_url(),
            ca_pem: sim.ca_pem().map(String::into_bytes),
            sim: Some(sim),
            key,
            secret,
            prefix: unique_prefix(),
        }
    }

    /// A real store as the environment describes it: `WOO_URL`, the key and secret, and
    /// optionally the path of a PEM CA certificate (`WOO_CA_CERT`) for a private https store.
    pub fn real(url: String, key: String, secret: String, ca_cert_path: Option<String>) -> Target {
        let ca_pem = ca_cert_path.map(|p| {
            std::fs::read(&p).unwrap_or_else(|e| panic!("WOO_CA_CERT {p} is not readable: {e}"))
        });
        Target {
            sim: None,
            url,
            key,
            secret,
            ca_pem,
            prefix: unique_prefix(),
        }
    }

    /// The simulator over https, its certificate signed by its own private CA (which the
    /// target trusts, as `WOO_CA_CERT` makes a real store's target trust it); the real store
    /// when `WOO_URL` is set.
    pub async fn https(cfg: SimConfig) -> Target {
        let mut t = Target::with_config(SimConfig { https: true, ..cfg }).await;
        if let Some(url) = t.sim.as_ref().and_then(WooSim::https_base_url) {
            t.url = url;
        }
        t
    }

    pub fn is_sim(&self) -> bool {
        self.sim.is_some()
    }

    /// The simulator, or `None` with a printed note when running against a real store.
    pub fn sim_only(&self, what: &str) -> Option<&WooSim> {
        if self.sim.is_none() {
            eprintln!("skipped against a real store (needs the simulator's control API): {what}");
        }
        self.sim.as_ref()
    }

    pub fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new(
            self.url.clone(),
            self.key.clone(),
            SecretString::from(self.secret.clone()),
        );
        cfg.ca_cert_pem = self.ca_pem.clone();
        cfg.timeout = Duration::from_secs(20);
        cfg.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(2),
        };
        cfg
    }

    pub fn client(&self) -> WooClient {
        WooClient::new(self.config()).expect("client builds")
    }

    pub fn sku(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    /// A raw request to this store, authenticated as the client does it (Basic over https,
    /// OAuth 1.0a in the header over http) and trusting the same CA.
    pub async fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Raw {
        let auth = if self.url.starts_with("https://") {
            RawAuth::Basic
        } else {
            RawAuth::OAuth
        };
        send_raw(
            &self.url,
            &self.key,
            &self.secret,
            self.ca_pem.as_deref(),
            method,
            path_and_query,
            body,
            auth,
        )
        .await
    }
}

/// How a raw request authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawAuth {
    None,
    OAuth,
    Basic,
}

/// A raw request signed with OAuth 1.0a in the header (or unsigned), for comparing the exact
/// status, headers and body with the captured samples.
pub struct Raw {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

pub async fn raw(
    base: &str,
    key: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
    sign: bool,
) -> Raw {
    let auth = if sign { RawAuth::OAuth } else { RawAuth::None };
    send_raw(base, key, secret, None, method, path_and_query, body, auth).await
}

/// A raw request; `ca_pem` is trusted besides the system roots, as the client trusts
/// `ClientConfig::ca_cert_pem`.
#[allow(clippy::too_many_arguments)]
pub async fn send_raw(
    base: &str,
    key: &str,
    secret: &str,
    ca_pem: Option<&[u8]>,
    method: &str,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
    auth: RawAuth,
) -> Raw {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{base}{path_and_query}");
    let parsed = url::Url::parse(&url).expect("valid url");
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).expect("WOO_CA_CERT holds PEM certificates");
        builder = builder.tls_certs_merge(certs);
    }
    let http = builder.build().expect("client");
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = http.request(m, parsed.clone());
    if auth == RawAuth::Basic {
        rb = rb.basic_auth(key, Some(secret));
    }
    if auth == RawAuth::OAuth {
        let pairs: Vec<(String, String)> = parsed
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (oauth::form_decode(k), oauth::form_decode(v))
            })
            .collect();
        let mut params = oauth::php_params(pairs);
        let nonce = format!(
            "n{}{}",
            COUNTER.fetch_add(1, Ordering::SeqCst),
            rand_suffix()
        );
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string();
        let oauth_params = [
            ("oauth_consumer_key".to_string(), key.to_string()),
            ("oauth_nonce".to_string(), nonce),
            (
                "oauth_signature_method".to_string(),
                "HMAC-SHA256".to_string(),
            ),
            ("oauth_timestamp".to_string(), ts),
        ];
        params.extend(
            oauth_params
                .iter()
                .map(|(k, v)| (k.clone(), ParamValue::Scalar(v.clone()))),
        );
        let mut base_uri = parsed.clone();
        base_uri.set_query(None);
        let bs = oauth::base_string(method, base_uri.as_str(), &params);
        let sig = oauth::signature(SignatureMethod::HmacSha256, secret, &bs);
        let mut parts: Vec<String> = oauth_params
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", oauth::encode(v)))
            .collect();
        parts.push(format!("oauth_signature=\"{}\"", oauth::encode(&sig)));
        rb = rb.header("Authorization", format!("OAuth {}", parts.join(", ")));
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(b).expect("json"));
    }
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Raw {
        status,
        headers,
        body,
        text,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default()
}

/// What the local receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

/// A local HTTP server on 127.0.0.1: records every request, answers `status` (200 by
/// default), and serves a tiny PNG under any `*.png` path.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<std::sync::atomic::AtomicU16>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (g, s) = (got.clone(), status.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    let path = uri.path().to_string();
                    if path.ends_with(".png") {
                        return (
                            axum::http::StatusCode::OK,
                            [("content-type", "image/png")],
                            b"\x89PNG\r\n\x1a\n".to_vec(),
                        );
                    }
                    if let Ok(mut v) = g.lock() {
                        v.push(Received {
                            path,
                            headers,
                            body: body.to_vec(),
                        });
                    }
                    let code = axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst))
                        .unwrap_or(axum::http::StatusCode::OK);
                    (code, [("content-type", "text/plain")], b"ok".to_vec())
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}"),
            got,
            status,
            _task: task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.received()
    }
}
