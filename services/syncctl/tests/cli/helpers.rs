//! Running the `syncctl` binary and reading what it printed; publishing events the way the
//! services do, for commands that only read the streams.

use std::time::Duration;

use duellsync_bus::{Bus, BusOptions, HeaderMap};
use duellsync_events::{headers, meta, Event, Meta};
use serde_json::Value;

/// What one syncctl run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// stdout as JSON Lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}\n{self}"))
            })
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs syncctl with only `env` (and PATH) in its environment: the tests never depend on the
/// developer's shell.
pub async fn syncctl(env: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncctl"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        // Never ask the internet for our address in tests.
        .env("SYNCCTL_EGRESS_IP_URL", "http://127.0.0.1:9/")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("syncctl finishes within 5 minutes")
        .expect("syncctl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The environment pointing syncctl at a NATS server and a stores path.
pub fn env(nats_url: &str, stores: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("DUELLSYNC_NATS__URL", nats_url.to_owned()),
        ("DUELLSYNC_STORES_PATH", stores.display().to_string()),
    ]
}

/// A bus with the engine's streams (the services create them; syncctl never does).
pub async fn bus(url: &str) -> Bus {
    let bus = Bus::connect(BusOptions::new(url, "syncctl-test"))
        .await
        .expect("connects");
    bus.ensure_streams().await.expect("streams");
    bus
}

/// A meta as a service would write it, at a chosen time.
pub fn meta_at(store: &str, id: &str, correlation: &str, cause: &str, at_ms: i64) -> Meta {
    let mut m = meta(store, id.to_owned(), "test", correlation.to_owned());
    m.observed_at_ms = at_ms;
    m.causation_id = cause.to_owned();
    m
}

pub async fn publish<E: Event>(bus: &Bus, ev: &E) {
    let p = bus.publish(ev).await.expect("published");
    assert!(!p.duplicate, "test events have unique ids");
}

/// Stores `ev` as a dead letter of `service`, the way the bus's consumers do.
pub async fn dead_letter<E: Event>(
    bus: &Bus,
    store: &str,
    service: &str,
    ev: &E,
    reason: &str,
) -> u64 {
    let mut h = HeaderMap::new();
    h.insert(headers::EVENT_TYPE, E::NAME);
    h.insert(headers::DLQ_REASON, reason);
    h.insert(headers::DLQ_SUBJECT, E::subject(store).as_str());
    h.insert(
        headers::DLQ_CONSUMER,
        format!("{service}-{store}-x").as_str(),
    );
    h.insert(headers::DLQ_DELIVERIES, "10");
    h.insert(headers::DLQ_STREAM_SEQ, "WOO:1");
    h.insert(
        headers::DLQ_AT,
        duellsync_events::now_ms().to_string().as_str(),
    );
    let p = bus
        .publish_raw(
            &duellsync_events::dlq_subject(store, service),
            &format!("dlq:{}", ev.event_id()),
            h,
            prost::Message::encode_to_vec(ev).into(),
        )
        .await
        .expect("dead letter stored");
    p.sequence
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
