//! A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, each sending its
//! next request as soon as the previous answer is read. Bodies and headers are prepared before
//! the clock starts, so the generator spends its cycles on sockets only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One prepared request.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub elapsed: Duration,
    /// Per answered request, from sending it to reading the whole answer.
    pub latencies: Vec<Duration>,
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no answer (connection errors).
    pub errors: usize,
}

impl Outcome {
    pub fn ok(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }

    /// `200×9990 503×10` for notes.
    pub fn status_text(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("errors×{}", self.errors));
        }
        parts.join(" ")
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends every request in `requests` to `http://addr{path}` over `concurrency` connections.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    requests: Arc<Vec<Prepared>>,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        senders.push(connect(addr).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let host = HeaderValue::from_str(&addr.to_string())?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(senders.len());
    for mut sender in senders {
        let requests = requests.clone();
        let next = next.clone();
        let host = host.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = requests.get(i) else { break };
                let mut req = Request::post(path.as_str())
                    .header(http::header::HOST, host.clone())
                    .body(Full::new(p.body.clone()))
                    .expect("a valid request");
                for (k, v) in &p.headers {
                    req.headers_mut().insert(k.clone(), v.clone());
                }
                let sent = Instant::now();
                let answered = async {
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status().as_u16();
                    resp.into_body().collect().await?;
                    Ok::<u16, hyper::Error>(status)
                }
                .await;
                match answered {
                    Ok(status) => {
                        latencies.push(sent.elapsed());
                        *statuses.entry(status).or_default() += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        match connect(addr).await {
                            Ok(s) => sender = s,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                if let Ok(s) = connect(addr).await {
                                    sender = s;
                                }
                            }
                        }
                    }
                }
            }
            (latencies, statuses, errors)
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        let (lat, st, err) = t.await?;
        out.latencies.extend(lat);
        for (s, n) in st {
            *out.statuses.entry(s).or_default() += n;
        }
        out.errors += err;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// Headers of a WooCommerce `order.created` delivery, signed with `secret` when given.
pub fn delivery_headers(body: &[u8], secret: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    let mut h = vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            http::header::USER_AGENT,
            HeaderValue::from_static("WooCommerce/7.9.0 Hookshot (WordPress/6.1.9)"),
        ),
        (
            HeaderName::from_static("x-wc-webhook-topic"),
            HeaderValue::from_static("order.created"),
        ),
        (
            HeaderName::from_static("x-wc-webhook-resource"),
            HeaderValue::from_static("order"),
        ),
        (
            HeaderName::from_static("x-wc-webhook-event"),
            HeaderValue::from_static("created"),
        ),
        (
            HeaderName::from_static("x-wc-webhook-id"),
            HeaderValue::from_static("1"),
        ),
        (
            HeaderName::from_static("x-wc-webhook-delivery-id"),
            HeaderValue::from_static("5912cecbc9d6400f5bb967b46673adea"),
        ),
    ];
    if let Some(secret) = secret {
        let sig = duellsync_woo::webhook_signature::sign(secret, body);
        h.push((
            HeaderName::from_static("x-wc-webhook-signature"),
            HeaderValue::from_str(&sig).expect("base64 is a valid header value"),
        ));
    }
    h
}
