//! Our API over NATS JetStream. No service imports async-nats directly: they use this crate.
//!
//! - [`Bus::connect`] connects (reconnecting forever afterwards) and [`Bus::ensure_streams`]
//!   declares the streams of `duellsync_events::ALL_STREAMS` idempotently.
//! - [`Bus::publish`] sends an event with `Nats-Msg-Id` = its event id and the current W3C trace
//!   context in the headers, and returns only once JetStream has stored it (or dropped it as a
//!   duplicate), retrying through broker restarts up to a deadline.
//! - [`Bus::consumer`] declares a durable pull consumer; [`Consumer::deliveries`] yields
//!   messages, surviving broker restarts; [`Consumer::run`] is the common sequential loop:
//!   handle, then ack; nak with backoff on retryable errors; dead-letter on permanent errors or
//!   after too many deliveries.
//!
//! Acks are the last step: a handler commits its state first (see `duellsync-store`), then the
//! message is acked. A crash in between causes a redelivery, which the handler's ledger absorbs.
#![forbid(unsafe_code)]

mod connection;
mod consume;
mod inspect;
mod kv;
mod read;
mod trace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use duellsync_events::{headers, Event, StreamSpec, ALL_STREAMS};
use futures::StreamExt;

pub use async_nats::HeaderMap;
pub use connection::{redact_url, BusOptions};
pub use consume::{Consumer, ConsumerSpec, Delivery, HandleError};
pub use inspect::{ConsumerState, StartAt};
pub use kv::{Kv, KvChange, KvEntry, KvError};
pub use read::StoredMessage;
pub use trace::TraceParent;

/// Errors from the bus. `Unavailable` means "the broker could not be reached in time; try again
/// later"; `Denied` and `Config` need an operator; the others are configuration or programming
/// errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL in it is redacted ([`redact_url`]).
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("invalid NATS settings: {0}")]
    Config(String),
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    /// The server refused: this service's credentials may not use the subject.
    #[error("NATS refused {subject}: these credentials may not use it (the permission table is deploy/nats/permissions.toml)")]
    Denied { subject: String },
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("consumer {consumer}: {reason}")]
    Consumer { consumer: String, reason: String },
    #[error("publish to {subject} rejected: {reason}")]
    Rejected { subject: String, reason: String },
    #[error("event has no meta or no event id")]
    MissingEventId,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Acknowledgement of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub stream: String,
    pub sequence: u64,
    /// JetStream already had a message with this id within the duplicate window.
    pub duplicate: bool,
}

/// A connection to NATS JetStream. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    options: Arc<BusOptions>,
    connected: Arc<AtomicBool>,
    denials: Arc<connection::Denials>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("url", &redact_url(&self.options.url))
            .field("name", &self.options.name)
            .finish()
    }
}

impl Bus {
    /// Connects to NATS. Waits up to `connect_timeout` for the first connection; afterwards the
    /// client reconnects on its own, forever. Options with problems (a plain connection to
    /// another machine, two kinds of credentials) are refused before anything is sent.
    pub async fn connect(options: BusOptions) -> Result<Bus> {
        let problems = options.problems();
        if !problems.is_empty() {
            return Err(Error::Config(
                problems
                    .iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let url = redact_url(&options.url);
        let connected = Arc::new(AtomicBool::new(false));
        let denials = Arc::new(connection::Denials::default());
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let mut backoff = Duration::from_millis(50);
        // Without `retry_on_initial_connect` a failed first attempt says why (authorization,
        // TLS, refused); retrying here keeps that reason for the error.
        let client = loop {
            let attempt =
                connect_options(&options, connected.clone(), denials.clone(), &url).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reason =
                match tokio::time::timeout(left, attempt.connect(options.url.as_str())).await {
                    Ok(Ok(client)) => break client,
                    Ok(Err(e)) => connect_failure(&e, &options),
                    Err(_) => format!("no connection within {:?}", options.connect_timeout),
                };
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(Error::Connect {
                    url,
                    reason: scrub(&reason, &options.url),
                });
            }
            tracing::debug!(url = %url, reason = %scrub(&reason, &options.url), "nats not reachable yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        };
        connected.store(true, Ordering::SeqCst);
        let js = jetstream::new(client.clone());
        Ok(Bus {
            client,
            js,
            options: Arc::new(options),
            connected,
            denials,
        })
    }

    /// Whether the client is connected right now (readiness).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn options(&self) -> &BusOptions {
        &self.options
    }

    /// Creates or updates every stream of the engine. Safe to call from every service at
    /// start-up, concurrently.
    pub async fn ensure_streams(&self) -> Result<()> {
        for spec in ALL_STREAMS.iter() {
            self.ensure_stream(spec).await?;
        }
        Ok(())
    }

    /// Creates a missing stream, and updates one whose declaration changed. Looking a stream up
    /// and creating a missing one is every service's right; changing an existing stream is not
    /// (a shorter `max_age` deletes data), so a service whose credentials may not update it
    /// logs the difference and goes on with the stream as it is: an operator applies the change
    /// with the admin credentials.
    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()> {
        let config = jetstream::stream::Config {
            name: spec.name.to_owned(),
            subjects: spec.subjects.iter().map(|s| (*s).to_owned()).collect(),
            max_age: spec.max_age,
            duplicate_window: spec.duplicate_window,
            storage: jetstream::stream::StorageType::File,
            num_replicas: self.options.replicas,
            retention: jetstream::stream::RetentionPolicy::Limits,
            discard: jetstream::stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let mut last = String::new();
        // Two services starting at once may race on creation; the loser finds it and compares.
        for _ in 0..5 {
            let info = self
                .api(
                    format!("$JS.API.STREAM.INFO.{}", spec.name),
                    self.js.get_stream(spec.name),
                )
                .await?;
            let outcome = match info {
                Ok(stream) => {
                    let differs = stream_differences(&stream.cached_info().config, &config);
                    if differs.is_empty() {
                        return Ok(());
                    }
                    match self
                        .api(
                            format!("$JS.API.STREAM.UPDATE.{}", spec.name),
                            self.js.update_stream(&config),
                        )
                        .await
                    {
                        Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                        Err(Error::Denied { .. }) => {
                            tracing::warn!(
                                stream = spec.name,
                                differences = %differs.join(", "),
                                "stream differs from this release's declaration and these credentials may not change it; the stream keeps working as it is until an operator applies the change (docs/operations.md, Security model)"
                            );
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if is_not_found(&e) => self
                    .api(
                        format!("$JS.API.STREAM.CREATE.{}", spec.name),
                        self.js.create_stream(config.clone()),
                    )
                    .await?
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(Error::Stream {
            stream: spec.name.to_owned(),
            reason: last,
        })
    }

    /// Runs one request to the JetStream API (`api_subject` is what it publishes to), failing at
    /// once with [`Error::Denied`] when the server refuses it instead of waiting for a reply
    /// that never comes.
    pub(crate) async fn api<T>(
        &self,
        api_subject: String,
        request: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let mark = self.denials.mark();
        tokio::select! {
            r = request => Ok(r),
            _ = self.denials.refused(&api_subject, mark) => Err(Error::Denied { subject: api_subject }),
        }
    }

    /// Whether every stream exists (readiness).
    pub async fn streams_present(&self) -> bool {
        for spec in ALL_STREAMS.iter() {
            // `get_stream` asks the server (the `_no_info` variant would not).
            if self.js.get_stream(spec.name).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Publishes an event and waits for JetStream to store it.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Published> {
        let meta = event.meta().ok_or(Error::MissingEventId)?;
        if meta.event_id.is_empty() {
            return Err(Error::MissingEventId);
        }
        let subject = E::subject(&meta.store);
        let mut h = HeaderMap::new();
        h.insert(headers::EVENT_TYPE, E::NAME);
        self.publish_raw(
            &subject,
            &meta.event_id,
            h,
            Bytes::from(event.encode_to_vec()),
        )
        .await
    }

    /// Publishes many events, keeping up to `in_flight` unacknowledged at once, and returns when
    /// all are stored. Order of storage follows the order of `events`.
    pub async fn publish_all<E: Event>(&self, events: &[E], in_flight: usize) -> Result<usize> {
        let mut pending = futures::stream::FuturesOrdered::new();
        let mut n = 0;
        for e in events {
            if pending.len() >= in_flight.max(1) {
                if let Some(r) = pending.next().await {
                    let _: Published = r?;
                    n += 1;
                }
            }
            pending.push_back(self.publish(e));
        }
        while let Some(r) = pending.next().await {
            let _: Published = r?;
            n += 1;
        }
        Ok(n)
    }

    /// Publishes raw bytes with our headers (`msg_id` becomes `Nats-Msg-Id`; the current trace
    /// context is added) and waits for the ack, retrying while the broker is unreachable.
    pub async fn publish_raw(
        &self,
        subject: &str,
        msg_id: &str,
        mut h: HeaderMap,
        payload: Bytes,
    ) -> Result<Published> {
        h.insert(headers::MSG_ID, msg_id);
        trace::inject(&mut h);
        let deadline = tokio::time::Instant::now() + self.options.publish_deadline;
        let mut backoff = Duration::from_millis(50);
        let mark = self.denials.mark();
        loop {
            let attempt = async {
                let ack_future = self
                    .js
                    .publish_with_headers(subject.to_owned(), h.clone(), payload.clone())
                    .await
                    .map_err(|e| (e.kind().to_string(), e.to_string()))?;
                ack_future
                    .await
                    .map_err(|e| (format!("{:?}", e.kind()), e.to_string()))
            };
            let attempt = tokio::select! {
                r = attempt => r,
                // A refused publish is not stored and never will be: no retry.
                _ = self.denials.refused(subject, mark) => {
                    return Err(Error::Denied { subject: subject.to_owned() });
                }
            };
            match attempt {
                Ok(ack) => {
                    metrics::counter!("duellsync_bus_published_total", "stream" => ack.stream.clone())
                        .increment(1);
                    return Ok(Published {
                        stream: ack.stream,
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err((kind, reason)) => {
                    // "no responders" means no stream takes the subject: not a transient fault.
                    if kind.contains("NoResponders") && self.is_connected() {
                        return Err(Error::Rejected {
                            subject: subject.to_owned(),
                            reason,
                        });
                    }
                    if tokio::time::Instant::now() + backoff > deadline {
                        return Err(Error::Unavailable(format!(
                            "publish to {subject} not confirmed: {reason}"
                        )));
                    }
                    tracing::warn!(subject, error = %reason, "publish not confirmed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Declares (or updates) a durable pull consumer and returns a handle to it.
    pub async fn consumer(&self, spec: ConsumerSpec) -> Result<Consumer> {
        Consumer::ensure(self.clone(), spec).await
    }

    /// Number of messages a durable consumer has not yet acknowledged (pending + in flight).
    pub async fn consumer_lag(&self, stream: &str, durable: &str) -> Result<u64> {
        let mut consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(durable, stream)
            .await
            .map_err(|e| Error::Consumer {
                consumer: durable.to_owned(),
                reason: e.to_string(),
            })?;
        let info = consumer.info().await.map_err(|e| Error::Consumer {
            consumer: durable.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// Names of the durable consumers on a stream.
    pub async fn consumer_names(&self, stream: &str) -> Result<Vec<String>> {
        let s = self.stream(stream).await?;
        let mut names = s.consumer_names();
        let mut out = Vec::new();
        while let Some(n) = names.next().await {
            out.push(n.map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Deletes a durable consumer (state rebuild, moving a store to another shard).
    pub async fn delete_consumer(&self, stream: &str, durable: &str) -> Result<bool> {
        let s = self.stream(stream).await?;
        match s.delete_consumer(durable).await {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("not found") => Ok(false),
            Err(e) => Err(Error::Consumer {
                consumer: durable.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Messages in a stream (last sequence) and bytes, for status and metrics.
    pub async fn stream_state(&self, stream: &str) -> Result<(u64, u64)> {
        let mut s = self.stream(stream).await?;
        let info = s.info().await.map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })?;
        Ok((info.state.messages, info.state.last_sequence))
    }

    /// Removes one message from a stream (a handled dead letter).
    pub async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        let s = self.stream(stream).await?;
        s.delete_message(sequence).await.map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream> {
        self.js.get_stream(name).await.map_err(|e| Error::Stream {
            stream: name.to_owned(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Flushes buffered client writes (shutdown).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
    }
}

/// The readiness check every service registers on its admin port: connected to NATS, and the
/// engine's streams are there (a broker that lost its state is not ready until they are back).
pub struct BusReady(pub Bus);

impl duellsync_telemetry::ReadinessCheck for BusReady {
    fn name(&self) -> &str {
        "nats"
    }

    fn check(&self) -> futures::future::BoxFuture<'_, std::result::Result<(), String>> {
        Box::pin(async move {
            if !self.0.is_connected() {
                return Err("not connected".into());
            }
            if !self.0.streams_present().await {
                return Err("streams missing".into());
            }
            Ok(())
        })
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// What differs between a stream as it is and as the engine declares it, in the settings the
/// engine declares (the server fills in the rest).
fn stream_differences(
    have: &jetstream::stream::Config,
    want: &jetstream::stream::Config,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut hs = have.subjects.clone();
    let mut ws = want.subjects.clone();
    hs.sort();
    ws.sort();
    if hs != ws {
        out.push(format!("subjects {hs:?} → {ws:?}"));
    }
    macro_rules! field {
        ($f:ident) => {
            if have.$f != want.$f {
                out.push(format!("{} {:?} → {:?}", stringify!($f), have.$f, want.$f));
            }
        };
    }
    field!(max_age);
    field!(duplicate_window);
    field!(storage);
    field!(num_replicas);
    field!(retention);
    field!(discard);
    out
}

/// Backoff for the n-th delivery (1-based): 1 s, 2 s, 4 s ... capped, with ±20 % jitter.
pub fn redelivery_backoff(delivered: u64, cap: Duration) -> Duration {
    let exp = delivered.saturating_sub(1).min(16) as u32;
    let base = Duration::from_millis(1000u64.saturating_mul(1u64 << exp)).min(cap);
    let jitter = rand::random_range(0.8..1.2);
    base.mul_f64(jitter)
}

/// The client options of one connection attempt: name, credentials, TLS, our own inbox prefix,
/// reconnecting forever once connected, and the event callback that tracks the connection and
/// the server's permission refusals.
async fn connect_options(
    options: &BusOptions,
    connected: Arc<AtomicBool>,
    denials: Arc<connection::Denials>,
    url: &str,
) -> Result<async_nats::ConnectOptions> {
    let name = options.name.clone();
    let url = url.to_owned();
    let mut o = async_nats::ConnectOptions::new()
        .name(&options.name)
        .custom_inbox_prefix(connection::inbox_prefix(&options.name))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .event_callback(move |event| {
            let flag = connected.clone();
            let denials = denials.clone();
            let name = name.clone();
            let url = url.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        flag.store(true, Ordering::SeqCst);
                        tracing::info!(client = %name, url = %url, "nats connected");
                    }
                    async_nats::Event::Disconnected => {
                        flag.store(false, Ordering::SeqCst);
                        tracing::warn!(client = %name, "nats disconnected; reconnecting");
                    }
                    async_nats::Event::ServerError(async_nats::ServerError::Other(e)) => {
                        match denials.record(&e) {
                            Some(subject) => tracing::error!(
                                client = %name,
                                subject = %subject,
                                "NATS refused a publish: this service's credentials may not use the subject"
                            ),
                            None => tracing::warn!(client = %name, error = %e, "nats server error"),
                        }
                    }
                    other => tracing::debug!(client = %name, event = %other, "nats event"),
                }
            }
        });
    if let Some(path) = &options.nkey_file {
        let seed = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "nats.nkey_file: cannot read {}: {e}; mount the service's NKey seed there",
                path.display()
            ))
        })?;
        let seed = seed.trim();
        // A seed starts with S (`SU…` for a user); the public key (`U…`) belongs in the server's
        // config, and a mix-up must not end in an unexplained authorization failure.
        if !seed.starts_with('S') {
            return Err(Error::Config(format!(
                "nats.nkey_file: {} does not hold an NKey seed (it starts with `S`, e.g. SU…); the public key (U…) goes into the server's configuration",
                path.display()
            )));
        }
        o = o.nkey(seed.to_owned());
    }
    if let Some(path) = &options.credentials_file {
        o = o.credentials_file(path).await.map_err(|e| {
            Error::Config(format!(
                "nats.credentials_file: cannot read {}: {e}",
                path.display()
            ))
        })?;
    }
    if options.wants_tls() {
        o = o.require_tls(true);
    }
    if let Some(ca) = &options.tls_ca_file {
        if !ca.is_file() {
            return Err(Error::Config(format!(
                "nats.tls_ca_file: {} is not a file; mount the CA certificate (PEM) of the NATS server there",
                ca.display()
            )));
        }
        o = o.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &options.tls_client {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(o)
}

/// Why a connection attempt failed, with the setting to look at.
fn connect_failure(e: &async_nats::ConnectError, options: &BusOptions) -> String {
    use async_nats::ConnectErrorKind as K;
    let hint = match e.kind() {
        K::AuthorizationViolation | K::Authentication => {
            if options.nkey_file.is_some() || options.credentials_file.is_some() {
                "; the server does not accept these credentials: check that the public key of nats.nkey_file (or the .creds) is in the server's configuration"
            } else {
                "; the server requires credentials: set nats.nkey_file (or nats.credentials_file)"
            }
        }
        _ if e.kind() == K::Tls || e.to_string().contains("certificate") => {
            "; check nats.tls_ca_file (the CA that signed the server's certificate) and that the URL's host name is in that certificate"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// `text` without the raw URL (which may carry a password or token).
fn scrub(text: &str, raw_url: &str) -> String {
    let mut out = text.to_owned();
    for server in raw_url.split(',').map(str::trim) {
        if let Some((_, rest)) = server.split_once("://") {
            if let Some((userinfo, _)) = rest.rsplit_once('@') {
                for secret in userinfo.split(':').filter(|s| s.len() >= 3) {
                    out = out.replace(secret, "***");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(30);
        let b1 = redelivery_backoff(1, cap);
        assert!(b1 >= Duration::from_millis(800) && b1 <= Duration::from_millis(1200));
        let b3 = redelivery_backoff(3, cap);
        assert!(b3 >= Duration::from_millis(3200) && b3 <= Duration::from_millis(4800));
        assert!(redelivery_backoff(60, cap) <= cap.mul_f64(1.2));
    }
}
