//! The HTTP core: one place that sends a request, classifies DUELL's answer, logs in, paces and
//! retries. Endpoint methods live in `endpoints.rs`.

use duellsync_http_body::{read_capped, Capped};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;
use url::Url;

use crate::auth::Token;
use crate::de;
use crate::error::{Error, Result};
use crate::model::ValidationMessage;
use crate::pacing::{Gate, Pacer, PacingConfig, RateHeaders};
use crate::query::Query;

/// Where DUELL's production API lives.
pub const DEFAULT_BASE_URL: &str = "https://api.kasseservice.no/v1/";

/// Settings of a [`DuellClient`].
#[derive(Clone)]
pub struct ClientConfig {
    /// API base, ending in `/v1/` (a missing trailing slash is added). Paths are joined to it.
    pub base_url: Url,
    /// DUELL client number: a string, it may start with 0.
    pub client_number: String,
    /// DUELL client token.
    pub client_token: SecretString,
    /// Whole-request timeout of every call (DUELL's own plugin sets none; never copy that).
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Attempts per call for retryable failures (5xx, timeouts and 429 on reads; 429 on writes).
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Renew the token when less than this is left before its `exp` (capped at half the
    /// token's lifetime).
    pub token_renew_margin: Duration,
    /// Lifetime assumed for a token whose `exp` cannot be read.
    pub assumed_token_ttl: Duration,
    /// Rate-limit pacing.
    pub pacing: PacingConfig,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Largest answer read, by kind of endpoint; a larger one is an error, never buffered.
    pub response_limits: ResponseLimits,
}

/// The most bytes of an answer the client reads. DUELL pages at most 100 rows (whatever
/// `length` asks); a page of products with their custom fields is well under 1 MB, so the
/// defaults leave wide room while keeping one answer from filling the pod's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// A page of a list (`product/list`, `all/product/stock`, order lists): 16 MiB.
    pub page: usize,
    /// Anything else (login, one order, a save's answer): 2 MiB.
    pub object: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            page: 16 * 1024 * 1024,
            object: 2 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("client_number", &"[REDACTED]")
            .field("client_token", &"[REDACTED]")
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("token_renew_margin", &self.token_renew_margin)
            .field("assumed_token_ttl", &self.assumed_token_ttl)
            .field("pacing", &self.pacing)
            .field("user_agent", &self.user_agent)
            .field("response_limits", &self.response_limits)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration with production defaults for the given account.
    pub fn new(
        base_url: &str,
        client_number: impl Into<String>,
        client_token: SecretString,
    ) -> Result<Self> {
        let mut base = base_url.trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let base_url = Url::parse(&base)
            .map_err(|e| Error::Config(format!("base url is not a valid url: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(Error::Config("base url must be http or https".into()));
        }
        let client_number = client_number.into().trim().to_string();
        if client_number.is_empty() {
            return Err(Error::Config("client number is empty".into()));
        }
        if client_token.expose_secret().trim().is_empty() {
            return Err(Error::Config("client token is empty".into()));
        }
        Ok(ClientConfig {
            base_url,
            client_number,
            client_token,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            token_renew_margin: Duration::from_secs(3600),
            assumed_token_ttl: Duration::from_secs(12 * 3600),
            pacing: PacingConfig::default(),
            user_agent: concat!("duellsync/", env!("CARGO_PKG_VERSION")).to_string(),
            response_limits: ResponseLimits::default(),
        })
    }
}

/// Counters of one client, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful logins.
    pub logins: u64,
    /// Requests that waited for the rate limit before being sent.
    pub rate_limit_waits: u64,
}

/// Whether a call may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Reads and login: retried on 5xx, timeouts, empty bodies.
    Read,
    /// Writes whose repetition has no extra effect (customer update by id): retried like reads.
    IdempotentWrite,
    /// Writes that would be applied twice: never re-sent once they may have reached DUELL.
    Write,
}

pub(crate) enum Payload {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One logical call (possibly several attempts).
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Endpoint label for spans and errors (`logistics/orders/view`, without ids).
    pub(crate) endpoint: &'static str,
    /// Path relative to the base URL.
    pub(crate) path: String,
    pub(crate) query: Query,
    pub(crate) payload: Payload,
    pub(crate) kind: Kind,
    pub(crate) authed: bool,
}

impl Call {
    pub(crate) fn get(endpoint: &'static str, query: Query) -> Call {
        Call {
            method: Method::GET,
            endpoint,
            path: endpoint.to_string(),
            query,
            payload: Payload::None,
            kind: Kind::Read,
            authed: true,
        }
    }

    pub(crate) fn post(endpoint: &'static str, body: Value, kind: Kind) -> Call {
        Call {
            method: Method::POST,
            endpoint,
            path: endpoint.to_string(),
            query: Query::new(),
            payload: Payload::Json(body),
            kind,
            authed: true,
        }
    }
}

/// The result of one attempt.
pub(crate) enum Attempt {
    Done(Value),
    Relogin,
    RateLimited(Duration),
    Transient {
        http_status: Option<u16>,
        reason: String,
        /// The request may have reached DUELL and been applied.
        maybe_applied: bool,
        empty: bool,
    },
    Fatal(Error),
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    /// The shared token. Held across a login so concurrent callers wait for one login.
    token: tokio::sync::Mutex<Option<Token>>,
    generation: AtomicU64,
    logins: AtomicU64,
    pacer: Pacer,
}

/// A DUELL API client. Cheap to clone; clones share the token, the pacing state and the
/// connection pool.
#[derive(Clone)]
pub struct DuellClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DuellClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuellClient")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DuellClient {
    /// Builds a client. Installs the ring TLS provider if no process-wide provider exists yet.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(format!("cannot build http client: {}", describe(e))))?;
        Ok(DuellClient {
            inner: Arc::new(Inner {
                http,
                pacer: Pacer::new(config.pacing.clone()),
                config,
                token: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                logins: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Counters of this client.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            logins: self.inner.logins.load(Ordering::Relaxed),
            rate_limit_waits: self.inner.pacer.waits(),
        }
    }

    /// Logs in now (replacing any cached token). Use it to test credentials; normal calls log in
    /// by themselves.
    pub async fn login(&self) -> Result<()> {
        let mut slot = self.inner.token.lock().await;
        let token = self.login_now().await?;
        *slot = Some(token);
        Ok(())
    }

    /// Drops the cached token so the next call logs in.
    pub async fn forget_token(&self) {
        *self.inner.token.lock().await = None;
    }

    /// A valid token: the cached one, or a new one when it is near expiry or when `refused`
    /// names the generation DUELL just refused. Concurrent callers share one login.
    async fn token(&self, refused: Option<u64>) -> Result<Token> {
        let mut slot = self.inner.token.lock().await;
        if let Some(t) = slot.as_ref() {
            let replaced_since = refused.is_some_and(|g| g != t.generation);
            let usable = refused.is_none() && !t.needs_renewal(SystemTime::now());
            if usable || replaced_since {
                return Ok(t.clone());
            }
        }
        let token = self.login_now().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// [`Self::token`] behind a boxed future: `execute` → `token` → `login_now` → `execute` is
    /// a cycle, and the box gives the compiler a `Send` type to stop at.
    fn token_boxed(
        &self,
        refused: Option<u64>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Token>> + Send + '_>> {
        Box::pin(self.token(refused))
    }

    async fn login_now(&self) -> Result<Token> {
        let cfg = &self.inner.config;
        let call = Call {
            method: Method::POST,
            endpoint: "getaccesstokens",
            path: "getaccesstokens".into(),
            query: Query::new(),
            payload: Payload::Form(vec![
                ("client_number".into(), cfg.client_number.clone()),
                (
                    "client_token".into(),
                    cfg.client_token.expose_secret().to_string(),
                ),
            ]),
            kind: Kind::Read,
            authed: false,
        };
        let value = match self.execute(&call).await {
            Ok(v) => v,
            Err(Error::Rejected { message, .. }) => {
                return Err(Error::Auth {
                    endpoint: "getaccesstokens".into(),
                    message: format!(
                        "login refused: {message}; check client number and client token"
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let jwt = token_of(&value)?;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.logins.fetch_add(1, Ordering::Relaxed);
        tracing::info!(generation, "logged in to duell");
        Ok(Token::new(
            jwt.to_string(),
            generation,
            SystemTime::now(),
            cfg.token_renew_margin,
            cfg.assumed_token_ttl,
        ))
    }

    /// Waits until the pacer lets a request go.
    async fn pace(&self, endpoint: &str) -> Result<()> {
        let max_wait = self.inner.pacer.config().max_wait;
        let mut waited = Duration::ZERO;
        loop {
            match self.inner.pacer.check(Instant::now(), SystemTime::now()) {
                Gate::Go => return Ok(()),
                Gate::Wait(d) => {
                    if waited + d > max_wait {
                        return Err(Error::RateLimited {
                            endpoint: endpoint.to_string(),
                            retry_after: Some(d),
                        });
                    }
                    waited += d;
                    self.inner.pacer.note_wait();
                    metrics::counter!("duellsync_duell_rate_limit_waits_total", "endpoint" => endpoint.to_owned())
                        .increment(1);
                    metrics::histogram!("duellsync_duell_rate_limit_wait_seconds")
                        .record(d.as_secs_f64());
                    tracing::debug!(
                        endpoint,
                        wait_ms = d.as_millis() as u64,
                        "pacing for the duell rate limit"
                    );
                    tokio::time::sleep(d).await;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cfg = &self.inner.config;
        let exp = cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(cfg.backoff_max);
        // Full jitter over the upper half keeps some spacing while de-synchronising callers.
        let millis = exp.as_millis() as u64;
        let low = millis / 2;
        Duration::from_millis(if millis > low {
            rand::rng().random_range(low..=millis)
        } else {
            millis
        })
    }

    /// Sends a call with login, pacing and retries; returns the success envelope.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Value> {
        let cfg = &self.inner.config;
        let max_attempts = cfg.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut relogged = false;
        loop {
            attempt += 1;
            self.pace(call.endpoint).await?;
            let token = if call.authed {
                Some(self.token_boxed(None).await?)
            } else {
                None
            };
            let span = tracing::info_span!(
                "duell_call",
                endpoint = call.endpoint,
                method = %call.method,
                attempt,
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            let outcome = self
                .attempt(call, token.as_ref(), &span)
                .instrument(span.clone())
                .await;
            match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Relogin if !call.authed => {
                    return Err(Error::Auth {
                        endpoint: call.endpoint.into(),
                        message: "client number or client token refused".into(),
                    })
                }
                Attempt::Relogin if relogged => {
                    return Err(Error::Auth {
                        endpoint: call.endpoint.into(),
                        message: "token refused again right after a fresh login (expired account, \
                                  missing module/role, or ip binding)"
                            .into(),
                    })
                }
                Attempt::Relogin => {
                    // The token was refused, so nothing was done: safe to send a write again.
                    relogged = true;
                    attempt -= 1;
                    tracing::info!(
                        endpoint = call.endpoint,
                        "duell refused the token; logging in again"
                    );
                    self.token_boxed(token.map(|t| t.generation)).await?;
                }
                Attempt::RateLimited(wait) => {
                    // A 429 is refused before any work, so writes may be sent again too.
                    if attempt >= max_attempts || wait > cfg.pacing.max_wait {
                        return Err(Error::RateLimited {
                            endpoint: call.endpoint.into(),
                            retry_after: Some(wait),
                        });
                    }
                    tracing::warn!(
                        endpoint = call.endpoint,
                        wait_ms = wait.as_millis() as u64,
                        "duell rate limit hit"
                    );
                    self.inner.pacer.block_for(Instant::now(), wait);
                }
                Attempt::Transient {
                    http_status,
                    reason,
                    maybe_applied,
                    empty,
                } => {
                    if call.kind == Kind::Write && maybe_applied {
                        return Err(Error::OutcomeUnknown {
                            endpoint: call.endpoint.into(),
                            reason,
                        });
                    }
                    if attempt >= max_attempts {
                        return Err(match (empty, http_status) {
                            (true, Some(s)) => Error::EmptyBody {
                                endpoint: call.endpoint.into(),
                                http_status: s,
                            },
                            _ => Error::Unavailable {
                                endpoint: call.endpoint.into(),
                                http_status,
                                attempts: attempt,
                                reason,
                            },
                        });
                    }
                    let delay = self.backoff(attempt);
                    tracing::warn!(endpoint = call.endpoint, attempt, %reason, delay_ms = delay.as_millis() as u64, "duell call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Attempt::Fatal(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, call: &Call, token: Option<&Token>, span: &tracing::Span) -> Attempt {
        let cfg = &self.inner.config;
        let started = Instant::now();
        let mut url = match cfg.base_url.join(&call.path) {
            Ok(u) => u,
            Err(e) => return Attempt::Fatal(Error::Config(format!("bad endpoint path: {e}"))),
        };
        if !call.query.is_empty() {
            url.set_query(Some(&call.query.encode()));
        }
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), url)
            .header(ACCEPT, "application/json");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, t.bearer());
        }
        req = match &call.payload {
            Payload::None => req,
            Payload::Json(v) => req.json(v),
            Payload::Form(f) => req.form(f),
        };
        tracing::debug!(query = %call.query.redacted(), "sending duell request");
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                span.record("duration_ms", started.elapsed().as_millis() as u64);
                metrics::counter!("duellsync_duell_requests_total", "endpoint" => call.endpoint.to_owned(), "status" => if e.is_timeout() { "timeout" } else { "transport" })
                    .increment(1);
                // A connect failure proves nothing reached DUELL; anything later may have.
                let maybe_applied = !e.is_connect();
                let what = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport error"
                };
                return Attempt::Transient {
                    http_status: None,
                    reason: format!("{what}: {}", describe(e)),
                    maybe_applied,
                    empty: false,
                };
            }
        };
        let status = resp.status().as_u16();
        metrics::histogram!("duellsync_duell_request_duration_seconds", "endpoint" => call.endpoint.to_owned())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("duellsync_duell_requests_total", "endpoint" => call.endpoint.to_owned(), "status" => status.to_string())
            .increment(1);
        let rate = RateHeaders::parse(resp.headers(), SystemTime::now());
        self.inner.pacer.observe(&rate);
        // Lists page; everything else is one object (or a login, or a save's answer).
        let limits = cfg.response_limits;
        let limit = if call.kind == Kind::Read && call.query.has("length") {
            limits.page
        } else {
            limits.object
        };
        let body = read_capped(resp, limit).await;
        span.record("status", status);
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        let body = match body {
            Ok(b) => b,
            Err(Capped::TooLarge) => {
                let reason = format!(
                    "the answer is larger than {limit} bytes (ClientConfig::response_limits)"
                );
                if call.kind == Kind::Write {
                    // It was sent and answered: it may well have been applied.
                    return Attempt::Fatal(Error::OutcomeUnknown {
                        endpoint: call.endpoint.into(),
                        reason,
                    });
                }
                return Attempt::Fatal(Error::ResponseTooLarge {
                    endpoint: call.endpoint.into(),
                    limit,
                });
            }
            Err(Capped::Read(e)) => {
                return Attempt::Transient {
                    http_status: Some(status),
                    reason: format!("reading body: {}", describe(e)),
                    maybe_applied: true,
                    empty: false,
                }
            }
        };
        let fallback = self.inner.pacer.config().default_retry_after;
        classify(call.endpoint, call.kind, status, &rate, &body, fallback)
    }
}

/// How one answer is taken: a success envelope, a refused token, a rate limit, a retryable
/// failure or a final error. `fallback` is the wait after a 429 that names none.
pub(crate) fn classify(
    endpoint: &str,
    kind: Kind,
    status: u16,
    rate: &RateHeaders,
    body: &[u8],
    fallback: Duration,
) -> Attempt {
    let text = body.trim_ascii();
    let success = (200..300).contains(&status);
    if status == 429 {
        return Attempt::RateLimited(rate.wait_after_429(SystemTime::now(), fallback));
    }
    if status >= 500 {
        // JSON envelope or a gateway's HTML page: a server failure either way.
        let message = serde_json::from_slice::<Value>(text)
            .ok()
            .and_then(|v| v.get("message").and_then(de::string_from_value));
        return Attempt::Transient {
            http_status: Some(status),
            reason: match message {
                Some(m) => format!("http {status}: {m}"),
                None => format!("http {status}"),
            },
            maybe_applied: true,
            empty: text.is_empty(),
        };
    }
    if text.is_empty() {
        if status == 401 || status == 403 {
            return Attempt::Relogin;
        }
        if success {
            return Attempt::Transient {
                http_status: Some(status),
                reason: format!("empty body (http {status})"),
                maybe_applied: true,
                empty: true,
            };
        }
        return Attempt::Fatal(Error::Rejected {
            endpoint: endpoint.into(),
            http_status: status,
            code: None,
            message: "empty body".into(),
            validation: None,
        });
    }
    if text.first() == Some(&b'<') {
        return Attempt::Fatal(Error::Firewall {
            endpoint: endpoint.into(),
            http_status: status,
        });
    }
    if status == 401 {
        return Attempt::Relogin;
    }
    let unreadable = |detail: String| -> Attempt {
        if success && kind == Kind::Write {
            Attempt::Fatal(Error::OutcomeUnknown {
                endpoint: endpoint.into(),
                reason: format!("unreadable answer: {detail}"),
            })
        } else if success {
            Attempt::Fatal(Error::InvalidResponse {
                endpoint: endpoint.into(),
                detail,
            })
        } else {
            Attempt::Fatal(Error::Rejected {
                endpoint: endpoint.into(),
                http_status: status,
                code: None,
                message: format!("unreadable body: {detail}"),
                validation: None,
            })
        }
    };
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return unreadable(format!("body is not json: {e}")),
    };
    let Value::Object(map) = &value else {
        return unreadable("body is not a json object".into());
    };
    let flag = map.get("status").and_then(de::bool_from_value);
    let code = map
        .get("code")
        .and_then(|c| de::decimal_from_value(c).ok().flatten())
        .and_then(|d| i64::try_from(d.trunc()).ok());
    match flag {
        Some(true) => return Attempt::Done(value),
        // Some list endpoints may omit `status` (reference §6.2); a 2xx without an error
        // code is a success.
        None if success && code.is_none() => return Attempt::Done(value),
        _ => {}
    }
    if matches!(code, Some(401) | Some(403)) || status == 403 {
        return Attempt::Relogin;
    }
    if code == Some(429) {
        return Attempt::RateLimited(rate.wait_after_429(SystemTime::now(), fallback));
    }
    let message = map
        .get("message")
        .and_then(de::string_from_value)
        .unwrap_or_else(|| "status false without message".into());
    let validation = map
        .get("validation_message")
        .cloned()
        .map(ValidationMessage)
        .filter(|v| !v.is_empty());
    Attempt::Fatal(Error::Rejected {
        endpoint: endpoint.into(),
        http_status: status,
        code,
        message,
        validation,
    })
}

/// The token of a login answer.
pub(crate) fn token_of(value: &Value) -> Result<&str> {
    value
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::InvalidResponse {
            endpoint: "getaccesstokens".into(),
            detail: "login answer has no token".into(),
        })
}

/// A transport error as text, without the URL (its query may hold a department token) and
/// with its cause chain.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
