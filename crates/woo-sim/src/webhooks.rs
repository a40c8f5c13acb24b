//! Webhooks: REST rendering and validation, the synchronous ping, and the asynchronous,
//! signed, never-retried delivery queue with its fault knobs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde::Serialize;
use sha2::Digest as _;
use tokio::sync::Notify;

use crate::json::J;
use crate::obj;
use crate::products::{render_product, render_variation, Ctx};
use crate::store::{fmt_date, Webhook, WpError};
use crate::Shared;

/// `User-Agent` of WooCommerce 7.9.0's webhook sender.
pub const HOOKSHOT_UA: &str = "WooCommerce/7.9.0 Hookshot (WordPress/6.1.9)";

/// The WordPress hooks behind a topic, as `hooks` shows them.
pub fn hooks_for(topic: &str) -> Vec<String> {
    let v: &[&str] = match topic {
        "order.created" => &["woocommerce_new_order"],
        "order.updated" => &["woocommerce_update_order", "woocommerce_order_refunded"],
        "order.deleted" => &["wp_trash_post"],
        "order.restored" => &["untrashed_post"],
        "product.created" => &[
            "woocommerce_process_product_meta",
            "woocommerce_new_product",
            "woocommerce_new_product_variation",
        ],
        "product.updated" => &[
            "woocommerce_process_product_meta",
            "woocommerce_update_product",
            "woocommerce_update_product_variation",
        ],
        "product.deleted" => &["wp_trash_post"],
        "product.restored" => &["untrashed_post"],
        t => {
            if let Some(action) = t.strip_prefix("action.") {
                return vec![action.to_string()];
            }
            &[]
        }
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Validates a topic as 7.9 does (`product.published` does not exist yet).
pub fn valid_topic(topic: &str) -> bool {
    if let Some(action) = topic.strip_prefix("action.") {
        return action.starts_with("woocommerce_") || action.starts_with("wc_");
    }
    match topic.split_once('.') {
        Some((res, ev)) => {
            ["coupon", "customer", "order", "product"].contains(&res)
                && ["created", "updated", "deleted", "restored"].contains(&ev)
        }
        None => false,
    }
}

/// REST representation (no secret, no failure count, no api_version).
pub fn render_webhook(ctx: &Ctx, w: &Webhook) -> J {
    let (resource, event) = w
        .topic
        .split_once('.')
        .map(|(r, e)| (r.to_string(), e.to_string()))
        .unwrap_or_default();
    obj! {
        "id" => w.id,
        "name" => w.name.as_str(),
        "status" => w.status.as_str(),
        "topic" => w.topic.as_str(),
        "resource" => resource,
        "event" => event,
        "hooks" => J::Arr(hooks_for(&w.topic).into_iter().map(J::from).collect()),
        "delivery_url" => w.delivery_url.as_str(),
        "date_created" => J::Str(fmt_date(w.created, ctx.offset)),
        "date_created_gmt" => J::Str(fmt_date(w.created, 0)),
        "date_modified" => J::from(w.modified.map(|t| fmt_date(t, ctx.offset))),
        "date_modified_gmt" => J::from(w.modified.map(|t| fmt_date(t, 0))),
        "_links" => obj!{
            "self" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/webhooks/{}", ctx.home, ctx.version, w.id) }],
            "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/webhooks", ctx.home, ctx.version) }],
        },
    }
}

/// Fault knobs of the delivery queue.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct DeliveryKnobs {
    /// Delay between the event and the delivery (Action Scheduler latency).
    pub delay_ms: u64,
    /// Extra copies of every delivery (WooCommerce's duplicate deliveries).
    pub duplicates: u32,
    /// Fraction of deliveries silently never sent.
    pub drop_rate: f64,
}

impl Default for DeliveryKnobs {
    fn default() -> Self {
        DeliveryKnobs {
            delay_ms: 20,
            duplicates: 0,
            drop_rate: 0.0,
        }
    }
}

/// One delivery attempt as recorded by the simulator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// Webhook id.
    pub webhook_id: u64,
    /// Topic.
    pub topic: String,
    /// Resource id (the action argument).
    pub resource_id: u64,
    /// `X-WC-Webhook-Delivery-ID`.
    pub delivery_id: String,
    /// HTTP status received, if any.
    pub status: Option<u16>,
    /// 200..=302.
    pub success: bool,
    /// Dropped by the `drop_rate` knob (never sent).
    pub dropped: bool,
    /// The raw body sent.
    pub body: String,
}

#[derive(Clone, Debug)]
struct Job {
    webhook_id: u64,
    topic: String,
    arg: u64,
    due: Instant,
}

/// The delivery queue (Action Scheduler stand-in).
pub(crate) struct Hooks {
    queue: Mutex<VecDeque<Job>>,
    wake: Notify,
    pub(crate) paused: AtomicBool,
    inflight: AtomicUsize,
    pub(crate) knobs: Mutex<DeliveryKnobs>,
    pub(crate) log: Mutex<Vec<DeliveryRecord>>,
    coalesce: bool,
}

impl Hooks {
    pub(crate) fn new(coalesce: bool, knobs: DeliveryKnobs) -> Self {
        Hooks {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            knobs: Mutex::new(knobs),
            log: Mutex::new(Vec::new()),
            coalesce,
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }
}

/// Queues deliveries for `(topic, resource id)` events of one request, deduplicated per
/// request and coalesced with jobs still pending for the same webhook and resource.
pub(crate) fn enqueue(shared: &Shared, events: &[(String, u64)]) {
    if events.is_empty() {
        return;
    }
    let hooks: Vec<(u64, String)> = match shared.state.lock() {
        Ok(s) => s
            .webhooks
            .values()
            .filter(|w| w.status == "active")
            .map(|w| (w.id, w.topic.clone()))
            .collect(),
        Err(_) => return,
    };
    let delay = shared
        .hooks
        .knobs
        .lock()
        .map(|k| k.delay_ms)
        .unwrap_or_default();
    let due = Instant::now() + Duration::from_millis(delay);
    let Ok(mut q) = shared.hooks.queue.lock() else {
        return;
    };
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for (topic, arg) in events {
        for (wid, wtopic) in &hooks {
            if wtopic != topic || seen.contains(&(*wid, *arg)) {
                continue;
            }
            seen.push((*wid, *arg));
            if shared.hooks.coalesce
                && q.iter()
                    .any(|j| j.webhook_id == *wid && j.arg == *arg && j.topic == *topic)
            {
                continue;
            }
            q.push_back(Job {
                webhook_id: *wid,
                topic: topic.clone(),
                arg: *arg,
                due,
            });
        }
    }
    drop(q);
    shared.hooks.wake.notify_one();
}

/// The background worker: delivers due jobs unless paused.
pub(crate) async fn worker(shared: Arc<Shared>) {
    loop {
        if shared.hooks.paused.load(Ordering::SeqCst) {
            tokio::select! {
                _ = shared.hooks.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let (job, next_due) = {
            let Ok(mut q) = shared.hooks.queue.lock() else {
                return;
            };
            let now = Instant::now();
            match q.iter().position(|j| j.due <= now) {
                Some(i) => {
                    shared.hooks.inflight.fetch_add(1, Ordering::SeqCst);
                    (q.remove(i), None)
                }
                None => (None, q.iter().map(|j| j.due).min()),
            }
        };
        match (job, next_due) {
            (Some(job), _) => {
                deliver(&shared, job).await;
                shared.hooks.inflight.fetch_sub(1, Ordering::SeqCst);
            }
            (None, Some(due)) => {
                tokio::select! {
                    _ = shared.hooks.wake.notified() => {}
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
                }
            }
            (None, None) => shared.hooks.wake.notified().await,
        }
    }
}

/// Delivers everything queued now (ignoring pause and delay) and waits for in-flight ones.
pub(crate) async fn flush(shared: &Arc<Shared>) {
    loop {
        let job = shared.hooks.queue.lock().ok().and_then(|mut q| {
            let j = q.pop_front();
            if j.is_some() {
                shared.hooks.inflight.fetch_add(1, Ordering::SeqCst);
            }
            j
        });
        match job {
            Some(job) => {
                deliver(shared, job).await;
                shared.hooks.inflight.fetch_sub(1, Ordering::SeqCst);
            }
            None => break,
        }
    }
    while shared.hooks.inflight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn delivery_id(webhook_id: u64, unix: i64) -> String {
    // wp_hash(id . time()): the same for every delivery of one webhook within a second.
    let digest = sha2::Sha256::digest(format!("{webhook_id}{unix}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

async fn deliver(shared: &Arc<Shared>, job: Job) {
    let now = shared.now();
    let built = {
        let Ok(state) = shared.state.lock() else {
            return;
        };
        let Some(w) = state.webhooks.get(&job.webhook_id).cloned() else {
            return;
        };
        let ctx = Ctx {
            home: shared.home_http(),
            version: if w.api_version == "wp_api_v2" {
                "v2".into()
            } else {
                "v3".into()
            },
            view: true,
            offset: shared.cfg.site_utc_offset_secs,
            now,
        };
        let (resource, event) = job.topic.split_once('.').unwrap_or(("", ""));
        let payload = if event == "deleted" {
            obj! { "id" => job.arg }
        } else {
            match resource {
                "order" => match state.orders.get(&job.arg) {
                    Some(o) => crate::orders::render_order(&state, &ctx, o),
                    None => {
                        WpError::new(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                            .to_j()
                    }
                },
                "product" => match state.products.get(&job.arg) {
                    Some(p) if p.is_variation() => render_variation(&state, &ctx, p),
                    Some(p) => render_product(&state, &ctx, p),
                    None => WpError::new(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                        .to_j(),
                },
                _ => obj! { "action" => job.topic.clone(), "arg" => job.arg },
            }
        };
        (w, payload.to_php())
    };
    let (w, body) = built;
    let knobs = shared
        .hooks
        .knobs
        .lock()
        .map(|k| k.clone())
        .unwrap_or_default();
    let did = delivery_id(w.id, now);
    let dropped = knobs.drop_rate > 0.0
        && shared
            .rng
            .lock()
            .map(|mut r| r.random::<f64>() < knobs.drop_rate)
            .unwrap_or(false);
    if dropped {
        if let Ok(mut log) = shared.hooks.log.lock() {
            log.push(DeliveryRecord {
                webhook_id: w.id,
                topic: job.topic.clone(),
                resource_id: job.arg,
                delivery_id: did,
                status: None,
                success: false,
                dropped: true,
                body,
            });
        }
        return;
    }
    let signature = duellsync_signature(&w.secret, body.as_bytes());
    let (resource, event) = job.topic.split_once('.').unwrap_or(("", ""));
    for _copy in 0..=knobs.duplicates {
        let status = if shared.outgoing_allowed(&w.delivery_url) {
            let resp = shared
                .http
                .post(&w.delivery_url)
                .timeout(shared.cfg.delivery_timeout)
                .header("Content-Type", "application/json")
                .header("User-Agent", HOOKSHOT_UA)
                .header("X-WC-Webhook-Source", format!("{}/", shared.home_http()))
                .header("X-WC-Webhook-Topic", job.topic.as_str())
                .header("X-WC-Webhook-Resource", resource)
                .header("X-WC-Webhook-Event", event)
                .header("X-WC-Webhook-Signature", signature.as_str())
                .header("X-WC-Webhook-ID", w.id.to_string())
                .header("X-WC-Webhook-Delivery-ID", did.as_str())
                .body(body.clone())
                .send()
                .await;
            resp.ok().map(|r| r.status().as_u16())
        } else {
            None
        };
        let success = status.is_some_and(|s| (200..303).contains(&s));
        let needs_ping = {
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            let mut ping = false;
            if let Some(stored) = state.webhooks.get_mut(&w.id) {
                if success {
                    stored.failure_count = 0;
                } else if stored.failure_count > 5 {
                    stored.status = "disabled".into();
                } else {
                    stored.failure_count += 1;
                }
                // The save that records the result pings again while the first ping has
                // not succeeded.
                ping = stored.pending_delivery && stored.status == "active";
            }
            ping
        };
        if let Ok(mut log) = shared.hooks.log.lock() {
            log.push(DeliveryRecord {
                webhook_id: w.id,
                topic: job.topic.clone(),
                resource_id: job.arg,
                delivery_id: did.clone(),
                status,
                success,
                dropped: false,
                body: body.clone(),
            });
        }
        if needs_ping {
            ping(shared, w.id).await;
        }
    }
}

fn duellsync_signature(secret: &str, body: &[u8]) -> String {
    crate::sign(secret, body)
}

/// The synchronous ping: form body `webhook_id=N`, unsigned, success only on exactly 200.
pub(crate) async fn ping(shared: &Arc<Shared>, id: u64) {
    let url = match shared.state.lock() {
        Ok(s) => match s.webhooks.get(&id) {
            Some(w) => w.delivery_url.clone(),
            None => return,
        },
        Err(_) => return,
    };
    let ok = if shared.outgoing_allowed(&url) {
        shared
            .http
            .post(&url)
            .timeout(shared.cfg.ping_timeout)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", HOOKSHOT_UA)
            .body(format!("webhook_id={id}"))
            .send()
            .await
            .map(|r| r.status().as_u16() == 200)
            .unwrap_or(false)
    } else {
        false
    };
    let now = shared.now();
    if let Ok(mut s) = shared.state.lock() {
        if let Some(w) = s.webhooks.get_mut(&id) {
            if ok {
                w.pending_delivery = false;
            }
            w.modified = Some(now);
        }
    }
}
