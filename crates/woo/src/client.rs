//! Configuration, authentication, and the request loop (timeouts, retries, error parsing).

use duellsync_http_body::{read_capped, Capped};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument as _;
use url::Url;

use crate::error::{ApiError, Error, Result};
use crate::oauth::{self, ParamValue, SignatureMethod};

/// REST API namespace. v3 needs WooCommerce 3.5+, v2 3.0+.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiVersion {
    /// `wc/v3` (default).
    #[default]
    V3,
    /// `wc/v2`: `in_stock` instead of `stock_status`, one order status per filter.
    V2,
}

impl ApiVersion {
    /// The namespace segment, `v3` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V3 => "v3",
            ApiVersion::V2 => "v2",
        }
    }
}

/// Where OAuth 1.0a parameters travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OAuthPlacement {
    /// `Authorization: OAuth ...` (default; keeps them out of logs and `Link` headers).
    #[default]
    Header,
    /// In the query string (for hosts that strip `Authorization`).
    Query,
}

/// How requests are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Basic over https, OAuth 1.0a HMAC-SHA256 in the header over http. WooCommerce silently
    /// ignores Basic and query keys over plain http.
    #[default]
    Auto,
    /// HTTP Basic `consumer_key:consumer_secret` (https only).
    Basic,
    /// `consumer_key`/`consumer_secret` query parameters (https only; for hosts that strip
    /// the `Authorization` header). The secret then appears in server access logs.
    QueryString,
    /// OAuth 1.0a one-legged, signed against the configured store URL.
    OAuth1 {
        /// Digest.
        method: SignatureMethod,
        /// Header or query string.
        placement: OAuthPlacement,
    },
}

/// Retry behaviour for transient failures.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with jitter.
    pub base_delay: Duration,
    /// Cap on one backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured inside one call; longer waits are returned to
    /// the caller as a transient error carrying `retry_after`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Everything needed to talk to one store.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The store's home URL (WordPress "home" option), e.g. `https://shop.example`. OAuth
    /// signatures are computed against it, so it must match the store's setting exactly.
    pub url: String,
    /// `ck_...`.
    pub consumer_key: String,
    /// `cs_...`; never logged.
    pub consumer_secret: SecretString,
    /// REST namespace.
    pub api_version: ApiVersion,
    /// Authentication; `Auto` picks from the URL scheme.
    pub auth: AuthMode,
    /// Timeout of one attempt (connect + response).
    pub timeout: Duration,
    /// Connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Retries for transient failures.
    pub retry: RetryPolicy,
    /// Extra trusted CA certificate(s) in PEM, for stores with a self-signed certificate.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Largest answer read, by kind of endpoint; a larger one is an error, never buffered.
    pub response_limits: ResponseLimits,
}

/// The most bytes of an answer the client reads. The largest legitimate answer is a page (or
/// a batch) of 100 products: a few KB each as WooCommerce renders them, a few hundred KB with
/// long descriptions and many images. The defaults leave wide room while keeping one answer
/// (a misbehaving plugin, a proxy) from filling the pod's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Lists (`GET` of a collection) and batches: 16 MiB.
    pub collection: usize,
    /// One object (`GET`/`PUT` of an id, a create, settings): 4 MiB.
    pub object: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            collection: 16 * 1024 * 1024,
            object: 4 * 1024 * 1024,
        }
    }
}

impl ResponseLimits {
    /// The limit of a request's answer: a collection read or a batch, or one object.
    pub fn for_request(&self, req: &WooRequest) -> usize {
        let last = req
            .path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let collection = last == "batch"
            || (req.method == Method::GET && !last.bytes().all(|b| b.is_ascii_digit()));
        if collection {
            self.collection
        } else {
            self.object
        }
    }
}

impl ClientConfig {
    /// A configuration with defaults: v3, automatic auth, 30 s timeout, 4 attempts.
    pub fn new(
        url: impl Into<String>,
        consumer_key: impl Into<String>,
        consumer_secret: SecretString,
    ) -> Self {
        ClientConfig {
            url: url.into(),
            consumer_key: consumer_key.into(),
            consumer_secret,
            api_version: ApiVersion::V3,
            auth: AuthMode::Auto,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            ca_cert_pem: None,
            user_agent: concat!("duellsync-woo/", env!("CARGO_PKG_VERSION")).to_string(),
            response_limits: ResponseLimits::default(),
        }
    }
}

/// A WooCommerce REST client for one store. Cheap to clone.
#[derive(Clone)]
pub struct WooClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    /// Home URL with a trailing slash.
    home: Url,
    version: ApiVersion,
    auth: AuthMode,
    key: String,
    secret: SecretString,
    retry: RetryPolicy,
    response_limits: ResponseLimits,
}

impl fmt::Debug for WooClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WooClient")
            .field("url", &self.inner.home.as_str())
            .field("api_version", &self.inner.version)
            .field("auth", &self.inner.auth)
            .field("consumer_key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent again after a failure whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads and absolute writes (PUT of values, status changes): safe to repeat.
    Idempotent,
    /// Creates (products, orders, notes, webhooks, batches with creates): repeating after a
    /// timeout could duplicate; only retried when the request surely was not processed.
    NonIdempotent,
}

/// A request against the `wc/vN/` namespace.
#[derive(Clone, Debug)]
pub struct WooRequest {
    /// HTTP method.
    pub method: Method,
    /// Path below `wp-json/wc/vN/`, e.g. `products/batch`.
    pub path: String,
    /// Query parameters (send lists as comma strings, never `key[]`).
    pub query: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// Retry safety.
    pub idempotency: Idempotency,
}

impl WooRequest {
    /// A request with no query and no body.
    pub fn new(method: Method, path: impl Into<String>, idempotency: Idempotency) -> Self {
        WooRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            idempotency,
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Sets the JSON body.
    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// A successful response.
#[derive(Clone, Debug)]
pub struct WooResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// `X-WP-Total`, on collections.
    pub total: Option<u64>,
    /// `X-WP-TotalPages`, on collections.
    pub total_pages: Option<u64>,
    /// The parsed body.
    pub body: serde_json::Value,
}

impl WooResponse {
    /// Decodes the body into `T`.
    pub fn decode<T: DeserializeOwned>(self, endpoint: &str) -> Result<T> {
        serde_json::from_value(self.body).map_err(|source| Error::Decode {
            endpoint: endpoint.to_string(),
            source,
        })
    }
}

enum Attempt {
    Done(WooResponse),
    Failed(Error),
}

impl WooClient {
    /// Builds a client. Installs the ring crypto provider for rustls if none is installed.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut home = Url::parse(config.url.trim())
            .map_err(|e| Error::Config(format!("store url is not a valid url: {e}")))?;
        if home.scheme() != "http" && home.scheme() != "https" {
            return Err(Error::Config("store url must be http or https".into()));
        }
        if home.query().is_some() || home.fragment().is_some() {
            return Err(Error::Config(
                "store url must not have a query or fragment".into(),
            ));
        }
        if !home.path().ends_with('/') {
            let p = format!("{}/", home.path());
            home.set_path(&p);
        }
        if config.consumer_key.is_empty() || config.consumer_secret.expose_secret().is_empty() {
            return Err(Error::Config("consumer key and secret are required".into()));
        }
        let https = home.scheme() == "https";
        let auth = match config.auth {
            AuthMode::Auto if https => AuthMode::Basic,
            AuthMode::Auto => AuthMode::OAuth1 {
                method: SignatureMethod::HmacSha256,
                placement: OAuthPlacement::Header,
            },
            AuthMode::Basic | AuthMode::QueryString if !https => {
                return Err(Error::Config(
                    "woocommerce ignores basic and query-string keys over plain http; use https or oauth1".into(),
                ))
            }
            other => other,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone());
        if let Some(pem) = &config.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("ca certificate is not valid pem: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config(
                    "ca certificate file holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build http client: {e}")))?;
        Ok(WooClient {
            inner: Arc::new(Inner {
                http,
                home,
                version: config.api_version,
                auth,
                key: config.consumer_key,
                secret: config.consumer_secret,
                retry: config.retry,
                response_limits: config.response_limits,
            }),
        })
    }

    /// The API version in use.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.version
    }

    /// The resolved authentication mode.
    pub fn auth_mode(&self) -> AuthMode {
        self.inner.auth
    }

    /// The store's home URL (with a trailing slash).
    pub fn home_url(&self) -> &str {
        self.inner.home.as_str()
    }

    /// Sends a request with retries and returns the parsed JSON.
    ///
    /// Idempotent requests are retried on timeouts, connection errors, 5xx and 429.
    /// Non-idempotent ones only on 429 and failed connects (nothing was processed); a
    /// timeout or 5xx then yields [`Error::OutcomeUnknown`].
    pub async fn send(&self, req: WooRequest) -> Result<WooResponse> {
        let endpoint = format!("{} {}", req.method, endpoint_template(&req.path));
        let span = tracing::info_span!(
            "woo.request",
            endpoint = %endpoint,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        self.send_inner(req, endpoint).instrument(span).await
    }

    async fn send_inner(&self, req: WooRequest, endpoint: String) -> Result<WooResponse> {
        let retry = &self.inner.retry;
        let started = Instant::now();
        let max = retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let attempt_started = Instant::now();
            let outcome = self.attempt(&req, &endpoint).await;
            let status_label = match &outcome {
                Attempt::Done(resp) => resp.status.to_string(),
                Attempt::Failed(e) => match e.status() {
                    Some(s) => s.to_string(),
                    None => match e {
                        Error::Timeout { .. } => "timeout".to_owned(),
                        _ => "transport".to_owned(),
                    },
                },
            };
            metrics::histogram!("duellsync_woo_request_duration_seconds", "endpoint" => endpoint.clone())
                .record(attempt_started.elapsed().as_secs_f64());
            metrics::counter!("duellsync_woo_requests_total", "endpoint" => endpoint.clone(), "status" => status_label)
                .increment(1);
            let span = tracing::Span::current();
            span.record("attempts", attempt);
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            let err = match outcome {
                Attempt::Done(resp) => {
                    span.record("status", resp.status);
                    return Ok(resp);
                }
                Attempt::Failed(err) => err,
            };
            if let Some(s) = err.status() {
                span.record("status", s);
            }
            let idempotent = req.idempotency == Idempotency::Idempotent;
            let retryable = match &err {
                Error::Timeout { .. } => idempotent,
                Error::Transport { source, .. } => idempotent || source.is_connect(),
                e if e.status() == Some(429) => true,
                e if e.status().is_some_and(|s| s >= 500) => idempotent,
                _ => false,
            };
            let wait = retryable.then(|| backoff(retry, attempt, err.retry_after()));
            match wait {
                Some(Some(wait)) if attempt < max => {
                    tracing::warn!(endpoint = %endpoint, attempt, error = %err, wait_ms = wait.as_millis() as u64, "woocommerce request failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => {
                    let unknown = !idempotent
                        && match &err {
                            Error::Timeout { .. } => true,
                            // Answered (so processed), but unread: what it did is unknown.
                            Error::ResponseTooLarge { status, .. } => (200..300).contains(status),
                            Error::Transport { source, .. } => !source.is_connect(),
                            e => e.status().is_some_and(|s| s >= 500),
                        };
                    if unknown {
                        return Err(Error::OutcomeUnknown {
                            endpoint,
                            cause: Box::new(err),
                        });
                    }
                    return Err(err);
                }
            }
        }
    }

    fn url_and_auth(&self, req: &WooRequest) -> Result<(Url, Option<HeaderValue>)> {
        let inner = &self.inner;
        let path = format!(
            "wp-json/wc/{}/{}",
            inner.version.as_str(),
            req.path.trim_start_matches('/')
        );
        let mut url = inner
            .home
            .join(&path)
            .map_err(|e| Error::Config(format!("cannot build request url: {e}")))?;
        let mut query: Vec<(String, String)> = req.query.clone();
        let mut auth_header = None;
        match inner.auth {
            AuthMode::Basic | AuthMode::Auto => {
                let raw = format!("{}:{}", inner.key, inner.secret.expose_secret());
                let value = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                );
                let mut hv = HeaderValue::from_str(&value).map_err(|_| {
                    Error::Config("consumer key contains invalid characters".into())
                })?;
                hv.set_sensitive(true);
                auth_header = Some(hv);
            }
            AuthMode::QueryString => {
                query.push(("consumer_key".into(), inner.key.clone()));
                query.push((
                    "consumer_secret".into(),
                    inner.secret.expose_secret().to_string(),
                ));
            }
            AuthMode::OAuth1 { method, placement } => {
                let nonce: String = rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(32)
                    .map(char::from)
                    .collect();
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default()
                    .to_string();
                let oauth_params = vec![
                    ("oauth_consumer_key".to_string(), inner.key.clone()),
                    ("oauth_nonce".to_string(), nonce),
                    (
                        "oauth_signature_method".to_string(),
                        method.as_str().to_string(),
                    ),
                    ("oauth_timestamp".to_string(), timestamp),
                ];
                let mut all = oauth::php_params(query.iter().cloned());
                all.extend(
                    oauth_params
                        .iter()
                        .map(|(k, v)| (k.clone(), ParamValue::Scalar(v.clone()))),
                );
                let base_uri = base_uri(&url);
                let base = oauth::base_string(req.method.as_str(), &base_uri, &all);
                let sig = oauth::signature(method, inner.secret.expose_secret(), &base);
                match placement {
                    OAuthPlacement::Header => {
                        let mut parts: Vec<String> = oauth_params
                            .iter()
                            .map(|(k, v)| format!("{k}=\"{}\"", oauth::encode(v)))
                            .collect();
                        parts.push(format!("oauth_signature=\"{}\"", oauth::encode(&sig)));
                        let mut hv = HeaderValue::from_str(&format!("OAuth {}", parts.join(", ")))
                            .map_err(|_| {
                                Error::Config("consumer key contains invalid characters".into())
                            })?;
                        hv.set_sensitive(true);
                        auth_header = Some(hv);
                    }
                    OAuthPlacement::Query => {
                        query.extend(oauth_params);
                        query.push(("oauth_signature".into(), sig));
                    }
                }
            }
        }
        if !query.is_empty() {
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", oauth::encode(k), oauth::encode(v)))
                .collect();
            url.set_query(Some(&qs.join("&")));
        }
        Ok((url, auth_header))
    }

    async fn attempt(&self, req: &WooRequest, endpoint: &str) -> Attempt {
        let (url, auth) = match self.url_and_auth(req) {
            Ok(v) => v,
            Err(e) => return Attempt::Failed(e),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(auth) = auth {
            headers.insert(AUTHORIZATION, auth);
        }
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .headers(headers);
        if let Some(body) = &req.body {
            let bytes = match serde_json::to_vec(body) {
                Ok(b) => b,
                Err(source) => {
                    return Attempt::Failed(Error::Decode {
                        endpoint: endpoint.to_string(),
                        source,
                    })
                }
            };
            builder = builder.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(transport_error(endpoint, e)),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if (300..400).contains(&status) {
            return Attempt::Failed(Error::Redirect {
                endpoint: endpoint.to_string(),
                status,
                location: header("location").map(|l| strip_credentials(&l)),
            });
        }
        let limit = self.inner.response_limits.for_request(req);
        let bytes = match read_capped(resp, limit).await {
            Ok(b) => b,
            Err(Capped::TooLarge) => {
                return Attempt::Failed(Error::ResponseTooLarge {
                    endpoint: endpoint.to_string(),
                    status,
                    limit,
                })
            }
            Err(Capped::Read(e)) => return Attempt::Failed(transport_error(endpoint, e)),
        };
        let content_type = header("content-type").unwrap_or_default();
        let Some(body) = parse_json_body(&bytes) else {
            if !(200..300).contains(&status) && bytes.is_empty() {
                return Attempt::Failed(Error::Http {
                    endpoint: endpoint.to_string(),
                    status,
                    retry_after,
                });
            }
            return Attempt::Failed(Error::NotJson {
                endpoint: endpoint.to_string(),
                status,
                content_type,
                snippet: snippet(&bytes),
            });
        };
        if (200..300).contains(&status) {
            let num = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
            return Attempt::Done(WooResponse {
                status,
                total: num("x-wp-total"),
                total_pages: num("x-wp-totalpages"),
                body,
            });
        }
        Attempt::Failed(error_from_body(endpoint, status, retry_after, body))
    }

    /// Sends and decodes into `T`.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: WooRequest) -> Result<T> {
        let endpoint = format!("{} {}", req.method, endpoint_template(&req.path));
        self.send(req).await?.decode(&endpoint)
    }
}

/// The JSON of a response body: a UTF-8 BOM and leading whitespace are skipped, and only a
/// body that starts like an object or an array is parsed. `None`: not JSON (an HTML page, PHP
/// warnings before the JSON, an empty body).
pub(crate) fn parse_json_body(bytes: &[u8]) -> Option<serde_json::Value> {
    let trimmed = trim_bom_ws(bytes);
    let looks_json = trimmed.first().is_some_and(|b| *b == b'{' || *b == b'[');
    if looks_json {
        serde_json::from_slice(trimmed).ok()
    } else {
        None
    }
}

/// The error of a non-2xx response with a JSON body: WooCommerce's `{code, message, data}`
/// envelope when it is one, else a bare HTTP error.
pub(crate) fn error_from_body(
    endpoint: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: serde_json::Value,
) -> Error {
    match serde_json::from_value::<ApiError>(body) {
        Ok(error) => Error::Api {
            endpoint: endpoint.to_string(),
            status,
            error,
            retry_after,
        },
        Err(_) => Error::Http {
            endpoint: endpoint.to_string(),
            status,
            retry_after,
        },
    }
}

/// `scheme://host[:port]/path` exactly as WooCommerce rebuilds it from its home option.
pub(crate) fn base_uri(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn transport_error(endpoint: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            endpoint: endpoint.to_string(),
        }
    } else {
        // The URL may carry query-string credentials: never keep it.
        Error::Transport {
            endpoint: endpoint.to_string(),
            source: e.without_url(),
        }
    }
}

fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
    if let Some(ra) = retry_after {
        return (ra <= policy.max_retry_after).then_some(ra);
    }
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    let ms = exp.as_millis() as u64;
    let jittered = if ms > 1 {
        rand::rng().random_range(ms / 2..=ms)
    } else {
        ms
    };
    Some(Duration::from_millis(jittered))
}

fn trim_bom_ws(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
    strip_credentials(&s)
}

/// Removes credential-looking query values from a text (Location headers, body snippets).
fn strip_credentials(s: &str) -> String {
    let mut out = s.to_string();
    for key in ["consumer_secret=", "oauth_signature=", "consumer_key="] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key) {
            let start = from + pos + key.len();
            let end = out[start..]
                .find(['&', '"', '\'', ' ', '>', '\n'])
                .map(|e| start + e)
                .unwrap_or(out.len());
            out.replace_range(start..end, "[redacted]");
            from = start + "[redacted]".len();
        }
    }
    out
}

/// Replaces numeric path segments by `{id}` so logs and spans group by endpoint.
pub(crate) fn endpoint_template(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_numeric_segments() {
        assert_eq!(
            endpoint_template("products/12/variations/13"),
            "products/{id}/variations/{id}"
        );
        assert_eq!(endpoint_template("products/batch"), "products/batch");
    }

    #[test]
    fn strips_credentials_from_text() {
        let s = strip_credentials("https://x/?consumer_key=ck&consumer_secret=cs_123&a=1");
        assert!(!s.contains("cs_123"));
        assert!(s.contains("a=1"));
    }

    #[test]
    fn basic_auth_over_http_is_a_configuration_error() {
        let mut cfg = ClientConfig::new("http://shop.test", "ck", SecretString::from("cs"));
        cfg.auth = AuthMode::Basic;
        let err = WooClient::new(cfg).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Configuration);
    }
}
