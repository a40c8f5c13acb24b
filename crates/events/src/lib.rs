//! The contract between the sync engine's processes: protobuf events (generated from
//! `proto/duellsync/v1`), the subjects they travel on, the JetStream streams that keep them,
//! deterministic event ids and the NATS header keys we use.
//!
//! Subjects follow `<source>.<store>.<entity>.<fact>` (SPEC §2). Sources (`duell`, `woo`) carry
//! observations of the outside world, `sync` carries what the sinks did (the sync log), `cmd`
//! carries operator and timer commands, and `dlq` keeps messages that failed for good.
#![forbid(unsafe_code)]

use std::time::Duration;

use prost::Message;
use sha2::{Digest, Sha256};

/// Generated protobuf types of package `duellsync.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/duellsync.v1.rs"));
}

pub use v1::Meta;

/// Header keys we set on NATS messages.
pub mod headers {
    /// JetStream de-duplication key; we always set it to the event id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// The event type name ("ProductObserved"), so tools can decode without knowing the subject.
    pub const EVENT_TYPE: &str = "Duellsync-Event";
    /// Dead-letter headers: why the message failed, where it came from, how often it was tried.
    pub const DLQ_REASON: &str = "Duellsync-Dlq-Reason";
    pub const DLQ_SUBJECT: &str = "Duellsync-Dlq-Subject";
    pub const DLQ_CONSUMER: &str = "Duellsync-Dlq-Consumer";
    pub const DLQ_DELIVERIES: &str = "Duellsync-Dlq-Deliveries";
    pub const DLQ_STREAM_SEQ: &str = "Duellsync-Dlq-Stream-Seq";
    pub const DLQ_AT: &str = "Duellsync-Dlq-At";
    /// Set when an operator replays a dead letter, so the consumer knows to try again even if
    /// its ledger says the event failed before.
    pub const REPLAY: &str = "Duellsync-Replay";
}

/// Sources, the first token of a subject.
pub mod source {
    pub const DUELL: &str = "duell";
    pub const WOO: &str = "woo";
    pub const SYNC: &str = "sync";
    pub const CMD: &str = "cmd";
    pub const DLQ: &str = "dlq";
}

/// A JetStream stream as the engine declares it. The bus creates or updates these at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
    /// How long facts are kept; long enough to rebuild any service's state from the stream.
    pub max_age: Duration,
    /// Window in which JetStream drops a second message with the same Nats-Msg-Id.
    pub duplicate_window: Duration,
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// Observations of DUELL.
pub const STREAM_DUELL: StreamSpec = StreamSpec {
    name: "DUELL",
    subjects: &["duell.>"],
    max_age: days(30),
    duplicate_window: Duration::from_secs(10 * 60),
};
/// Observations of WooCommerce (webhooks and gap-fill polling).
pub const STREAM_WOO: StreamSpec = StreamSpec {
    name: "WOO",
    subjects: &["woo.>"],
    max_age: days(30),
    duplicate_window: Duration::from_secs(10 * 60),
};
/// What the sinks did: the sync log, and facts the sinks hand to each other.
pub const STREAM_SYNC: StreamSpec = StreamSpec {
    name: "SYNC",
    subjects: &["sync.>"],
    max_age: days(30),
    duplicate_window: Duration::from_secs(10 * 60),
};
/// Commands from operators and timers.
pub const STREAM_CMD: StreamSpec = StreamSpec {
    name: "CMD",
    subjects: &["cmd.>"],
    max_age: days(7),
    duplicate_window: Duration::from_secs(10 * 60),
};
/// Messages that failed for good, with the reason in headers. Kept until handled.
pub const STREAM_DLQ: StreamSpec = StreamSpec {
    name: "DLQ",
    subjects: &["dlq.>"],
    max_age: days(365),
    duplicate_window: Duration::from_secs(2 * 60),
};

/// Every stream the engine uses, declared in one place.
pub const ALL_STREAMS: [StreamSpec; 5] = [
    STREAM_DUELL,
    STREAM_WOO,
    STREAM_SYNC,
    STREAM_CMD,
    STREAM_DLQ,
];

/// Who changed which store setting, when, and how (field by field): `audit.<store>.settings`.
/// Not among [`ALL_STREAMS`]: the services never read it; the store registry declares it.
pub const STREAM_AUDIT: StreamSpec = StreamSpec {
    name: "AUDIT",
    subjects: &["audit.>"],
    max_age: days(5 * 365),
    duplicate_window: Duration::from_secs(2 * 60),
};

/// A JetStream key-value bucket as the engine declares it (created idempotently, like the
/// streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Revisions kept per key (at most 64).
    pub history: i64,
    /// How long a revision is kept; zero = for ever.
    pub max_age: Duration,
}

/// The store registry: one record per store (settings, shard, sealed secrets), the one source
/// of truth every service watches.
pub const KV_STORES: KvSpec = KvSpec {
    name: "duellsync_stores",
    description: "store settings: one record per store",
    history: 64,
    max_age: Duration::ZERO,
};

/// Which instance serves which store right now (`<service>.<store>` → holder): a store moved
/// between shards is started by its new shard only after the old one let go of it.
pub const KV_LEASES: KvSpec = KvSpec {
    name: "duellsync_leases",
    description: "single-writer leases of the stateful services per store",
    history: 1,
    max_age: Duration::ZERO,
};

/// Console accounts, invitations and sessions (several console replicas share them).
pub const KV_CONSOLE: KvSpec = KvSpec {
    name: "duellsync_console",
    description: "console users, invitations and sessions",
    history: 1,
    max_age: Duration::ZERO,
};

/// The stream that holds a subject, by its first token.
pub fn stream_for_subject(subject: &str) -> Option<&'static StreamSpec> {
    let first = subject.split('.').next()?;
    ALL_STREAMS.iter().find(|s| {
        s.subjects
            .iter()
            .any(|p| p.split('.').next() == Some(first))
    })
}

/// `<source>.<store>.<entity>.<fact>`.
pub fn subject(source: &str, store: &str, entity: &str, fact: &str) -> String {
    format!("{source}.{store}.{entity}.{fact}")
}

/// Dead-letter subject for a consumer: `dlq.<store>.<service>`.
pub fn dlq_subject(store: &str, service: &str) -> String {
    format!("dlq.{store}.{service}")
}

/// Whether a store id can be used as a subject token and a consumer-name part.
pub fn is_valid_store_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A protobuf event with a fixed place in the subject tree.
pub trait Event: Message + Default + Sized {
    /// Type name, also sent in the `Duellsync-Event` header.
    const NAME: &'static str;
    const SOURCE: &'static str;
    const ENTITY: &'static str;
    const FACT: &'static str;

    fn meta(&self) -> Option<&Meta>;
    fn meta_mut(&mut self) -> &mut Meta;

    /// The subject this event goes to for `store`.
    fn subject(store: &str) -> String {
        subject(Self::SOURCE, store, Self::ENTITY, Self::FACT)
    }

    /// Filter that selects this event type for every store.
    fn subject_filter_all_stores() -> String {
        subject(Self::SOURCE, "*", Self::ENTITY, Self::FACT)
    }

    fn event_id(&self) -> &str {
        self.meta().map(|m| m.event_id.as_str()).unwrap_or("")
    }
}

macro_rules! event {
    ($ty:ident, $source:expr, $entity:literal, $fact:literal) => {
        impl Event for v1::$ty {
            const NAME: &'static str = stringify!($ty);
            const SOURCE: &'static str = $source;
            const ENTITY: &'static str = $entity;
            const FACT: &'static str = $fact;
            fn meta(&self) -> Option<&Meta> {
                self.meta.as_ref()
            }
            fn meta_mut(&mut self) -> &mut Meta {
                self.meta.get_or_insert_with(Meta::default)
            }
        }
    };
}

event!(ProductObserved, source::DUELL, "product", "observed");
event!(ProductWithdrawn, source::DUELL, "product", "withdrawn");
event!(StockObserved, source::DUELL, "stock", "observed");
event!(CatalogScanStarted, source::DUELL, "catalog", "scan_started");
event!(CatalogScanned, source::DUELL, "catalog", "scanned");
event!(ChangeNoticed, source::DUELL, "change", "noticed");
event!(
    OrderStatusObserved,
    source::DUELL,
    "order_status",
    "observed"
);
event!(OrderObserved, source::WOO, "order", "observed");
event!(FullSyncRequested, source::CMD, "fullsync", "requested");
event!(FullSyncProgress, source::SYNC, "fullsync", "progress");
event!(FullSyncCompleted, source::SYNC, "fullsync", "completed");
event!(ProductApplied, source::SYNC, "product", "applied");
event!(ProductFailed, source::SYNC, "product", "failed");
event!(StockHoldChanged, source::SYNC, "stock_hold", "changed");
event!(OrderImported, source::SYNC, "order", "imported");
event!(OrderParked, source::SYNC, "order", "parked");
event!(OrderInDoubt, source::SYNC, "order", "in_doubt");
event!(OrderSkipped, source::SYNC, "order", "skipped");
event!(OrderRetryRequested, source::CMD, "order", "retry_requested");
event!(OrderStatusWritten, source::SYNC, "order_status", "written");
event!(
    OrderStatusConflict,
    source::SYNC,
    "order_status",
    "conflict"
);
event!(WebhooksEnsured, source::SYNC, "webhooks", "ensured");

/// Parses a subject into `(source, store, entity, fact)`.
pub fn parse_subject(subject: &str) -> Option<(&str, &str, &str, &str)> {
    let mut it = subject.split('.');
    let parts = (it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some(parts)
}

/// Name of the event type carried on `subject`, for tools that decode any event (syncctl).
pub fn event_name_for_subject(subject: &str) -> Option<&'static str> {
    let (source, _, entity, fact) = parse_subject(subject)?;
    macro_rules! check {
        ($($ty:ident),*) => {
            $(
                if source == <v1::$ty as Event>::SOURCE
                    && entity == <v1::$ty as Event>::ENTITY
                    && fact == <v1::$ty as Event>::FACT
                {
                    return Some(<v1::$ty as Event>::NAME);
                }
            )*
        };
    }
    check!(
        ProductObserved,
        ProductWithdrawn,
        StockObserved,
        CatalogScanStarted,
        CatalogScanned,
        ChangeNoticed,
        OrderStatusObserved,
        OrderObserved,
        FullSyncRequested,
        FullSyncProgress,
        FullSyncCompleted,
        ProductApplied,
        ProductFailed,
        StockHoldChanged,
        OrderImported,
        OrderParked,
        OrderInDoubt,
        OrderSkipped,
        OrderRetryRequested,
        OrderStatusWritten,
        OrderStatusConflict,
        WebhooksEnsured
    );
    None
}

/// Builds deterministic event ids: the same fact always gets the same id, so JetStream's
/// duplicate window and the consumers' ledgers absorb re-observations and re-publishes.
///
/// The id is the first 128 bits of SHA-256 over the event kind, the store and the parts that
/// identify the fact, each length-prefixed so that ("ab","c") and ("a","bc") differ.
#[derive(Debug, Clone)]
pub struct EventId {
    hasher: Sha256,
}

impl EventId {
    pub fn new(kind: &str, store: &str) -> Self {
        let mut id = EventId {
            hasher: Sha256::new(),
        };
        id = id.part(kind.as_bytes()).part(store.as_bytes());
        id
    }

    pub fn part(mut self, bytes: &[u8]) -> Self {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
        self
    }

    pub fn str(self, s: &str) -> Self {
        self.part(s.as_bytes())
    }

    pub fn int(self, n: i64) -> Self {
        self.part(&n.to_be_bytes())
    }

    pub fn finish(self) -> String {
        let digest = self.hasher.finalize();
        hex::encode(&digest[..16])
    }
}

/// Hex SHA-256 of some bytes (body hashes in events).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A `Meta` for a fresh observation of the outside world.
pub fn meta(store: &str, event_id: String, producer: &str, correlation_id: String) -> Meta {
    Meta {
        store: store.to_owned(),
        event_id,
        observed_at_ms: now_ms(),
        causation_id: String::new(),
        correlation_id,
        producer: producer.to_owned(),
    }
}

/// A `Meta` for an event caused by another one: inherits the correlation id.
pub fn caused_meta(cause: &Meta, event_id: String, producer: &str) -> Meta {
    Meta {
        store: cause.store.clone(),
        event_id,
        observed_at_ms: now_ms(),
        causation_id: cause.event_id.clone(),
        correlation_id: cause.correlation_id.clone(),
        producer: producer.to_owned(),
    }
}

/// Correlation id of everything that happens to one WooCommerce order.
pub fn order_correlation(store: &str, woo_order_id: i64) -> String {
    format!("order:{store}:{woo_order_id}")
}

/// Correlation id of everything that happens to one DUELL product.
pub fn product_correlation(store: &str, product_id: i64) -> String {
    format!("product:{store}:{product_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_fact_gets_the_same_id() {
        let a = EventId::new("stock", "s1").int(42).str("12").finish();
        let b = EventId::new("stock", "s1").int(42).str("12").finish();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn parts_are_length_prefixed() {
        let a = EventId::new("k", "s1").str("ab").str("c").finish();
        let b = EventId::new("k", "s1").str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn other_store_gets_another_id() {
        let a = EventId::new("stock", "s1").int(1).finish();
        let b = EventId::new("stock", "s2").int(1).finish();
        assert_ne!(a, b);
    }

    #[test]
    fn subjects_follow_the_source_store_entity_fact_shape() {
        assert_eq!(v1::StockObserved::subject("s1"), "duell.s1.stock.observed");
        assert_eq!(v1::OrderObserved::subject("s1"), "woo.s1.order.observed");
        assert_eq!(
            v1::FullSyncRequested::subject_filter_all_stores(),
            "cmd.*.fullsync.requested"
        );
        assert_eq!(
            event_name_for_subject("sync.s9.order.imported"),
            Some("OrderImported")
        );
        assert_eq!(event_name_for_subject("sync.s9.order"), None);
    }

    #[test]
    fn every_subject_has_a_stream() {
        for s in [
            v1::StockObserved::subject("a"),
            v1::OrderObserved::subject("a"),
            v1::OrderImported::subject("a"),
            v1::FullSyncRequested::subject("a"),
            dlq_subject("a", "catalog-publisher"),
        ] {
            assert!(stream_for_subject(&s).is_some(), "{s}");
        }
        assert_eq!(stream_for_subject("nope.a.b.c"), None);
    }

    #[test]
    fn store_ids_must_be_subject_safe() {
        assert!(is_valid_store_id("s1"));
        assert!(is_valid_store_id("acme-shop_2"));
        for bad in ["", "a.b", "a*", "A", "a b", ">", &"x".repeat(33)] {
            assert!(!is_valid_store_id(bad), "{bad}");
        }
    }

    #[test]
    fn events_round_trip_through_protobuf() {
        let ev = v1::StockObserved {
            meta: Some(meta("s1", "id".into(), "test", "c".into())),
            product_id: 7,
            product_number: "1001".into(),
            stock: "12.5".into(),
            actual_stock: String::new(),
        };
        let bytes = ev.encode_to_vec();
        let back = v1::StockObserved::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.event_id(), "id");
    }
}
