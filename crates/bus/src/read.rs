//! Reading streams from the start (operator tools: sync log, explain, dead letters).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Bus, Error, Result};

/// A message as stored in a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub stream: String,
    pub subject: String,
    pub sequence: u64,
    /// When JetStream stored it, Unix ms.
    pub published_ms: i64,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl StoredMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn to_stored(stream: &str, msg: &jetstream::Message) -> StoredMessage {
    let (sequence, published_ms) = match msg.info() {
        Ok(i) => (
            i.stream_sequence,
            (i.published.unix_timestamp_nanos() / 1_000_000) as i64,
        ),
        Err(_) => (0, 0),
    };
    let headers = msg
        .headers
        .as_ref()
        .map(|h| {
            h.iter()
                .flat_map(|(k, vs)| {
                    vs.iter()
                        .map(move |v| (k.to_string(), v.as_str().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    StoredMessage {
        stream: stream.to_owned(),
        subject: msg.subject.to_string(),
        sequence,
        published_ms,
        headers,
        payload: msg.payload.clone(),
    }
}

impl Bus {
    async fn ordered(
        &self,
        stream: &str,
        filter: &str,
        start_sequence: u64,
    ) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::OrderedConfig>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        let deliver_policy = if start_sequence > 1 {
            DeliverPolicy::ByStartSequence { start_sequence }
        } else {
            DeliverPolicy::All
        };
        s.create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads up to `limit` messages matching `filter` from `start_sequence` (1 = the beginning)
    /// and returns once it has caught up with the stream.
    pub async fn read(
        &self,
        stream: &str,
        filter: &str,
        start_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let mut consumer = self.ordered(stream, filter, start_sequence).await?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?
            .num_pending;
        let mut out = Vec::new();
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })?;
        while out.len() < limit {
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            match next {
                Ok(Some(Ok(msg))) => {
                    let left = msg.info().map(|i| i.pending).unwrap_or(0);
                    out.push(to_stored(stream, &msg));
                    if left == 0 {
                        break;
                    }
                }
                Ok(Some(Err(e))) => {
                    return Err(Error::Stream {
                        stream: stream.to_owned(),
                        reason: e.to_string(),
                    })
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Follows a stream from `start_sequence`, forever (until `shutdown`): `syncctl log --follow`.
    pub fn follow(
        &self,
        stream: &str,
        filter: &str,
        start_sequence: u64,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<StoredMessage> {
        let (tx, rx) = mpsc::channel(256);
        let bus = self.clone();
        let stream = stream.to_owned();
        let filter = filter.to_owned();
        tokio::spawn(async move {
            let mut next_seq = start_sequence.max(1);
            while !shutdown.is_cancelled() {
                let consumer = match bus.ordered(&stream, &filter, next_seq).await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let Ok(mut messages) = consumer.messages().await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = messages.next() => n,
                    };
                    match next {
                        Some(Ok(msg)) => {
                            let m = to_stored(&stream, &msg);
                            next_seq = m.sequence + 1;
                            if tx.send(m).await.is_err() {
                                return;
                            }
                        }
                        _ => break,
                    }
                }
            }
        });
        rx
    }

    /// One message by stream sequence.
    pub async fn get(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        match s.get_raw_message(sequence).await {
            Ok(raw) => Ok(Some(stored_from_raw(stream, raw))),
            Err(e)
                if {
                    let s = e.to_string().to_lowercase();
                    s.contains("not found") || s.contains("no message")
                } =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// A message fetched by sequence or by subject, as a [`StoredMessage`].
pub(crate) fn stored_from_raw(
    stream: &str,
    raw: async_nats::jetstream::message::StreamMessage,
) -> StoredMessage {
    let headers = raw
        .headers
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (k.to_string(), v.as_str().to_owned()))
        })
        .collect();
    StoredMessage {
        stream: stream.to_owned(),
        subject: raw.subject.to_string(),
        sequence: raw.sequence,
        published_ms: (raw.time.unix_timestamp_nanos() / 1_000_000) as i64,
        headers,
        payload: raw.payload,
    }
}
