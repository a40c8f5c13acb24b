//! Durable pull consumers: declaration, a delivery stream that survives broker restarts, and
//! the ack / nak / dead-letter policy.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::Acker, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use duellsync_events::{dlq_subject, headers, Event, StreamSpec};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{redelivery_backoff, trace, Bus, Error, Result};

/// Why a handler could not finish a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// Try again later (outside system down, rate limited, state locked). The message is nak'ed
    /// with a growing backoff and dead-lettered once it has been delivered too often.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will never succeed as it is (malformed event, validation error). Dead-lettered at once
    /// with the reason, so that it neither blocks other messages nor is retried forever.
    Permanent { reason: String },
}

impl HandleError {
    pub fn retry(reason: impl std::fmt::Display) -> Self {
        HandleError::Retry {
            reason: reason.to_string(),
            after: None,
        }
    }

    pub fn retry_after(reason: impl std::fmt::Display, after: Duration) -> Self {
        HandleError::Retry {
            reason: reason.to_string(),
            after: Some(after),
        }
    }

    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        HandleError::Permanent {
            reason: reason.to_string(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            HandleError::Retry { reason, .. } | HandleError::Permanent { reason } => reason,
        }
    }
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleError::Retry { reason, .. } => write!(f, "retryable: {reason}"),
            HandleError::Permanent { reason } => write!(f, "permanent: {reason}"),
        }
    }
}

impl std::error::Error for HandleError {}

/// A durable pull consumer as a service declares it.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: &'static StreamSpec,
    /// Durable name, e.g. `catalog-publisher-s1-duell`.
    pub durable: String,
    pub filter_subjects: Vec<String>,
    /// Service and store, for the dead-letter subject and headers.
    pub service: String,
    pub store: String,
    /// Deliveries after which a still-failing message is dead-lettered.
    pub max_deliveries: u64,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Unacked messages the server hands out at once; batching consumers need many.
    pub max_ack_pending: i64,
    /// Messages pulled per request.
    pub batch: usize,
    /// Longest nak delay.
    pub backoff_cap: Duration,
}

impl ConsumerSpec {
    pub fn new(
        stream: &'static StreamSpec,
        durable: impl Into<String>,
        filter_subjects: Vec<String>,
        service: impl Into<String>,
        store: impl Into<String>,
    ) -> Self {
        ConsumerSpec {
            stream,
            durable: durable.into(),
            filter_subjects,
            service: service.into(),
            store: store.into(),
            max_deliveries: 10,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            batch: 100,
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// A declared durable consumer.
#[derive(Clone)]
pub struct Consumer {
    bus: Bus,
    spec: Arc<ConsumerSpec>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("durable", &self.spec.durable)
            .finish()
    }
}

impl Consumer {
    pub(crate) async fn ensure(bus: Bus, spec: ConsumerSpec) -> Result<Consumer> {
        let consumer = Consumer {
            bus,
            spec: Arc::new(spec),
        };
        consumer.declare().await?;
        Ok(consumer)
    }

    fn config(&self) -> jetstream::consumer::pull::Config {
        let spec = &self.spec;
        let (filter_subject, filter_subjects) = if spec.filter_subjects.len() == 1 {
            (spec.filter_subjects[0].clone(), Vec::new())
        } else {
            (String::new(), spec.filter_subjects.clone())
        };
        jetstream::consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            description: Some(format!("{} for store {}", spec.service, spec.store)),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_wait: spec.ack_wait,
            // We dead-letter ourselves; the server must never silently stop redelivering.
            max_deliver: -1,
            filter_subject,
            filter_subjects,
            max_ack_pending: spec.max_ack_pending,
            ..Default::default()
        }
    }

    async fn declare(&self) -> Result<jetstream::consumer::PullConsumer> {
        let name = self.spec.stream.name;
        let stream = self
            .bus
            .api(
                format!("$JS.API.STREAM.INFO.{name}"),
                self.bus.jetstream().get_stream(name),
            )
            .await?
            .map_err(|e| Error::Stream {
                stream: name.to_owned(),
                reason: e.to_string(),
            })?;
        let config = self.config();
        // The API subject names the filter when there is one (what the server's permissions
        // can pin a consumer to).
        let api = if config.filter_subject.is_empty() {
            format!("$JS.API.CONSUMER.CREATE.{name}.{}", self.spec.durable)
        } else {
            format!(
                "$JS.API.CONSUMER.CREATE.{name}.{}.{}",
                self.spec.durable, config.filter_subject
            )
        };
        self.bus
            .api(api, stream.create_consumer(config))
            .await?
            .map_err(|e| Error::Consumer {
                consumer: self.spec.durable.clone(),
                reason: e.to_string(),
            })
    }

    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Messages not yet acknowledged by this consumer.
    pub async fn lag(&self) -> Result<u64> {
        self.bus
            .consumer_lag(self.spec.stream.name, &self.spec.durable)
            .await
    }

    /// Starts pulling and returns the deliveries. The pull loop re-creates its subscription after
    /// errors and broker restarts, and stops when `shutdown` is cancelled (the receiver then
    /// ends). Deliveries not yet handled at shutdown are simply not acked: the server redelivers
    /// them to the next process.
    pub fn deliveries(&self, shutdown: CancellationToken) -> mpsc::Receiver<Delivery> {
        let (tx, rx) = mpsc::channel(self.spec.batch.max(1) * 2);
        let me = self.clone();
        tokio::spawn(async move { me.pull_loop(tx, shutdown).await });
        rx
    }

    async fn pull_loop(self, tx: mpsc::Sender<Delivery>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let consumer = match self.declare().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(consumer = %self.spec.durable, error = %e, "cannot declare consumer; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.spec.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %self.spec.durable, error = %e, "cannot pull; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(msg)) => {
                        let delivery = Delivery::new(msg, self.bus.clone(), self.spec.clone());
                        if tx.send(delivery).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(consumer = %self.spec.durable, error = %e, "pull interrupted; resubscribing");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// The common loop: one message at a time, handler first, then ack (or nak/dead-letter as
    /// [`Delivery::finish`] decides). Returns when `shutdown` is cancelled.
    pub async fn run<F, Fut>(&self, shutdown: CancellationToken, mut handler: F) -> Result<()>
    where
        F: FnMut(Arc<Delivery>) -> Fut,
        Fut: Future<Output = std::result::Result<(), HandleError>>,
    {
        let mut rx = self.deliveries(shutdown.clone());
        while let Some(delivery) = rx.recv().await {
            let delivery = Arc::new(delivery);
            let span = delivery.span.clone();
            let result = handler(delivery.clone()).instrument(span).await;
            delivery.finish(result).await;
        }
        Ok(())
    }
}

/// One delivered message.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
    pub stream_sequence: u64,
    /// 1 on first delivery.
    pub delivered: u64,
    /// When JetStream stored the message, Unix ms.
    pub published_ms: i64,
    /// Span for handling this message, child of the publisher's trace context.
    pub span: tracing::Span,
    received: Instant,
    acker: Acker,
    bus: Bus,
    spec: Arc<ConsumerSpec>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("stream_sequence", &self.stream_sequence)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Delivery {
    fn new(msg: jetstream::Message, bus: Bus, spec: Arc<ConsumerSpec>) -> Delivery {
        let (stream_sequence, delivered, published_ms) = match msg.info() {
            Ok(info) => (
                info.stream_sequence,
                info.delivered.max(1) as u64,
                (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            ),
            Err(_) => (0, 1, 0),
        };
        let (msg, acker) = msg.split();
        let headers = msg.headers.unwrap_or_default();
        let subject = msg.subject.to_string();
        let event_id = headers
            .get(headers::MSG_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {}", subject),
            otel.kind = "consumer",
            consumer = %spec.durable,
            subject = %subject,
            stream_sequence,
            delivered,
            event_id = %event_id,
        );
        trace::set_parent(&span, &headers);
        metrics::counter!("duellsync_bus_delivered_total", "consumer" => spec.durable.clone())
            .increment(1);
        Delivery {
            subject,
            payload: msg.payload,
            headers,
            stream_sequence,
            delivered,
            published_ms,
            span,
            received: Instant::now(),
            acker,
            bus,
            spec,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// The trace this message continues (its consume span), for work done after the message
    /// was acked.
    pub fn trace_parent(&self) -> trace::TraceParent {
        trace::TraceParent::of(&self.span)
    }

    /// The event id (`Nats-Msg-Id`).
    pub fn event_id(&self) -> &str {
        self.header(headers::MSG_ID).unwrap_or("")
    }

    /// Whether an operator replayed this message from the dead-letter stream.
    pub fn is_replay(&self) -> bool {
        self.header(headers::REPLAY).is_some()
    }

    /// Store token of the subject.
    pub fn store(&self) -> &str {
        self.subject.split('.').nth(1).unwrap_or("")
    }

    /// Decodes the payload; a payload that is not the expected event is a permanent failure.
    pub fn decode<E: Event>(&self) -> std::result::Result<E, HandleError> {
        E::decode(self.payload.as_ref()).map_err(|e| {
            HandleError::permanent(format!(
                "cannot decode {} from {}: {e}",
                E::NAME,
                self.subject
            ))
        })
    }

    /// Whether the subject carries events of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        match duellsync_events::parse_subject(&self.subject) {
            Some((source, _, entity, fact)) => {
                source == E::SOURCE && entity == E::ENTITY && fact == E::FACT
            }
            None => false,
        }
    }

    /// Acknowledges. Call only after the state change is committed.
    pub async fn ack(&self) {
        self.observe("ack");
        if let Err(e) = self.acker.ack().await {
            // The server will redeliver; the handler's ledger absorbs the repeat.
            tracing::warn!(subject = %self.subject, error = %e, "ack failed");
        }
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(&self, delay: Duration) {
        self.observe("nak");
        if let Err(e) = self.acker.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(subject = %self.subject, error = %e, "nak failed");
        }
    }

    /// Tells the server the handler is still working (long operations).
    pub async fn in_progress(&self) {
        let _ = self.acker.ack_with(AckKind::Progress).await;
    }

    /// Copies the message with the reason to the dead-letter stream, then terminates it.
    pub async fn dead_letter(&self, reason: &str) {
        self.observe("dead_letter");
        let mut h = self.headers.clone();
        h.insert(headers::DLQ_REASON, sanitize_header(reason).as_str());
        h.insert(headers::DLQ_SUBJECT, self.subject.as_str());
        h.insert(headers::DLQ_CONSUMER, self.spec.durable.as_str());
        h.insert(headers::DLQ_DELIVERIES, self.delivered.to_string().as_str());
        h.insert(
            headers::DLQ_STREAM_SEQ,
            format!("{}:{}", self.spec.stream.name, self.stream_sequence).as_str(),
        );
        h.insert(
            headers::DLQ_AT,
            duellsync_events::now_ms().to_string().as_str(),
        );
        let subject = dlq_subject(&self.spec.store, &self.spec.service);
        // One dead letter per stored message and delivery attempt count is enough; the id keeps
        // a crash-and-retry of this very step from doubling it.
        let msg_id = format!(
            "dlq:{}:{}:{}",
            self.spec.stream.name, self.spec.durable, self.stream_sequence
        );
        tracing::error!(subject = %self.subject, consumer = %self.spec.durable, reason, "dead-lettered");
        match self
            .bus
            .publish_raw(&subject, &msg_id, h, self.payload.clone())
            .await
        {
            Ok(_) => {
                if let Err(e) = self.acker.ack_with(AckKind::Term).await {
                    tracing::warn!(subject = %self.subject, error = %e, "term after dead-letter failed");
                }
            }
            Err(e) => {
                // Not stored in the DLQ: leave the message to be redelivered rather than lose it.
                tracing::error!(subject = %self.subject, error = %e, "cannot dead-letter; will be redelivered");
                let _ = self
                    .acker
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
            }
        }
    }

    /// Applies the engine's policy to a handler result: ack on success; on a retryable error nak
    /// with backoff, or dead-letter once `max_deliveries` is reached; dead-letter permanent errors.
    pub async fn finish(&self, result: std::result::Result<(), HandleError>) {
        match result {
            Ok(()) => self.ack().await,
            Err(HandleError::Retry { reason, after }) => {
                if self.delivered >= self.spec.max_deliveries {
                    let reason = format!("gave up after {} deliveries: {reason}", self.delivered);
                    self.dead_letter(&reason).await;
                } else {
                    let delay = after.unwrap_or_else(|| {
                        redelivery_backoff(self.delivered, self.spec.backoff_cap)
                    });
                    tracing::warn!(subject = %self.subject, delivered = self.delivered, ?delay, reason = %reason, "will retry");
                    self.nak(delay).await;
                }
            }
            Err(HandleError::Permanent { reason }) => self.dead_letter(&reason).await,
        }
    }

    fn observe(&self, outcome: &'static str) {
        metrics::counter!(
            "duellsync_bus_handled_total",
            "consumer" => self.spec.durable.clone(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "duellsync_bus_handle_duration_seconds",
            "consumer" => self.spec.durable.clone()
        )
        .record(self.received.elapsed().as_secs_f64());
    }
}

/// Header values must be one line.
fn sanitize_header(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    one_line.chars().take(2000).collect()
}
