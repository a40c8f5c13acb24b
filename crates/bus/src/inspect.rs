//! Looking into streams and consumers for operator tools (`syncctl status`, `log --since`,
//! `state rebuild`): reads that start at a time or a sequence and take several subject filters,
//! the last message on a subject, message counts per subject, and consumer states.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::read::{stored_from_raw, to_stored};
use crate::{Bus, Error, Result, StoredMessage};

/// Where a read of a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the stream still holds.
    First,
    /// This stream sequence (or the next one that matches the filters).
    Sequence(u64),
    /// The first message stored at or after this instant, Unix ms.
    TimeMs(i64),
}

/// A durable consumer as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerState {
    pub stream: String,
    pub name: String,
    /// What the service wrote when it declared the consumer ("catalog-publisher for store s1").
    pub description: Option<String>,
    /// The subjects it takes (one or several).
    pub filter_subjects: Vec<String>,
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    /// Pull requests waiting for messages: a process is consuming (a stopped one's requests
    /// expire within the pull's expiry).
    pub num_waiting: u64,
    /// Last stream sequence delivered and the one below which everything is acknowledged.
    pub delivered_stream_seq: u64,
    pub ack_floor_stream_seq: u64,
    /// When a message was last delivered, Unix ms.
    pub last_active_ms: Option<i64>,
}

impl ConsumerState {
    /// Messages the consumer still has to finish (the same number as [`Bus::consumer_lag`]).
    pub fn lag(&self) -> u64 {
        self.num_pending + self.num_ack_pending
    }

    /// The store token of the consumer's filter subjects (`<source>.<store>.…`), when they all
    /// name the same store. Consumer names alone are ambiguous: store ids may contain `-`.
    pub fn store(&self) -> Option<&str> {
        let mut stores = self.filter_subjects.iter().map(|s| s.split('.').nth(1));
        let first = stores.next()??;
        if first == "*" || first == ">" {
            return None;
        }
        stores.all(|s| s == Some(first)).then_some(first)
    }
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Bus {
    async fn ordered_at(
        &self,
        stream: &str,
        filters: &[String],
        start: StartAt,
    ) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::OrderedConfig>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        let deliver_policy = match start {
            StartAt::First => DeliverPolicy::All,
            StartAt::Sequence(seq) if seq <= 1 => DeliverPolicy::All,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::TimeMs(t) => DeliverPolicy::ByStartTime {
                // The server counts in i64 nanoseconds (until 2262): a later instant would wrap
                // around and start at the beginning, so the far future is capped at 2200.
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(t.clamp(0, 7_258_118_400_000)) * 1_000_000,
                )
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            },
        };
        let (filter_subject, filter_subjects) = match filters {
            [] => (String::new(), Vec::new()),
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        s.create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject,
            filter_subjects,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads up to `limit` messages matching any of `filters` (none = every subject), starting
    /// at `start`, and returns once it has caught up with the stream.
    pub async fn read_at(
        &self,
        stream: &str,
        filters: &[String],
        start: StartAt,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::new();
        self.scan_at(stream, filters, start, limit, |m| out.push(m))
            .await?;
        Ok(out)
    }

    /// Like [`Bus::read_at`], but hands each message to `visit` instead of collecting them, so a
    /// tool can walk a large stream in constant memory. Returns how many messages it visited.
    pub async fn scan_at(
        &self,
        stream: &str,
        filters: &[String],
        start: StartAt,
        limit: usize,
        mut visit: impl FnMut(StoredMessage),
    ) -> Result<usize> {
        let mut consumer = self.ordered_at(stream, filters, start).await?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?
            .num_pending;
        if pending == 0 || limit == 0 {
            return Ok(0);
        }
        let mut messages = consumer.messages().await.map_err(|e| Error::Stream {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })?;
        let mut n = 0;
        while n < limit {
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            match next {
                Ok(Some(Ok(msg))) => {
                    let left = msg.info().map(|i| i.pending).unwrap_or(0);
                    visit(to_stored(stream, &msg));
                    n += 1;
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
        Ok(n)
    }

    /// Follows a stream from `start` until `shutdown`, with several filters: the messages
    /// stored so far, then every new one as it arrives (`syncctl log --follow`, `sync`).
    pub fn follow_at(
        &self,
        stream: &str,
        filters: &[String],
        start: StartAt,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<StoredMessage> {
        let (tx, rx) = mpsc::channel(256);
        let bus = self.clone();
        let stream = stream.to_owned();
        let filters = filters.to_vec();
        tokio::spawn(async move {
            let mut start = start;
            while !shutdown.is_cancelled() {
                let consumer = match bus.ordered_at(&stream, &filters, start).await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        }
                    }
                };
                let Ok(mut messages) = consumer.messages().await else {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                };
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = messages.next() => n,
                    };
                    match next {
                        Some(Ok(msg)) => {
                            let m = to_stored(&stream, &msg);
                            // After an interruption, go on right after the last message seen.
                            start = StartAt::Sequence(m.sequence + 1);
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

    /// The newest message stored on `subject` (an exact subject), if any.
    pub async fn last_message(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(raw) => Ok(Some(stored_from_raw(stream, raw))),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// How many messages the stream holds per subject matching `filter` (`dlq.s1.>`).
    pub async fn subject_counts(
        &self,
        stream: &str,
        filter: &str,
    ) -> Result<BTreeMap<String, u64>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        let mut info = s
            .info_with_subjects(filter)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        let mut out = BTreeMap::new();
        while let Some(row) = info.next().await {
            let (subject, n) = row.map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
            out.insert(subject, n as u64);
        }
        Ok(out)
    }

    /// Every durable consumer of a stream with its position and lag.
    pub async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerState>> {
        let s = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
        let mut list = s.consumers();
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| Error::Stream {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
            // Ordered consumers of readers (`read`, `follow`) are ephemeral: not a service's.
            if info.config.durable_name.is_none() {
                continue;
            }
            let mut filter_subjects = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filter_subjects.insert(0, info.config.filter_subject.clone());
            }
            out.push(ConsumerState {
                stream: stream.to_owned(),
                name: info.name.clone(),
                description: info.config.description.clone(),
                filter_subjects,
                num_pending: info.num_pending,
                num_ack_pending: info.num_ack_pending as u64,
                num_redelivered: info.num_redelivered as u64,
                num_waiting: info.num_waiting as u64,
                delivered_stream_seq: info.delivered.stream_sequence,
                ack_floor_stream_seq: info.ack_floor.stream_sequence,
                last_active_ms: info.delivered.last_active.map(ms),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(filters: &[&str]) -> ConsumerState {
        ConsumerState {
            stream: "DUELL".into(),
            name: "c".into(),
            description: None,
            filter_subjects: filters.iter().map(|s| (*s).to_owned()).collect(),
            num_pending: 2,
            num_ack_pending: 1,
            num_redelivered: 0,
            num_waiting: 0,
            delivered_stream_seq: 0,
            ack_floor_stream_seq: 0,
            last_active_ms: None,
        }
    }

    #[test]
    fn a_consumer_belongs_to_the_store_its_filters_name() {
        assert_eq!(
            state(&["duell.s1-x.product.observed", "duell.s1-x.stock.observed"]).store(),
            Some("s1-x")
        );
        assert_eq!(state(&["duell.*.product.observed"]).store(), None);
        assert_eq!(
            state(&["duell.a.product.observed", "duell.b.stock.observed"]).store(),
            None
        );
        assert_eq!(state(&[]).store(), None);
        assert_eq!(state(&["duell.s1.x.y"]).lag(), 3);
    }
}
