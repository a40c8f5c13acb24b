//! The public HTTP/1.1 server. `axum::serve` keeps every connection for as long as the client
//! likes: a half-sent request head or an idle keep-alive stayed open for minutes, and a few
//! hundred of them used up the file descriptors until real deliveries were no longer accepted.
//! This accept loop bounds connections instead:
//!
//! - a connection has `header_read_timeout` to send a request head, from its first byte (or
//!   from its opening, for a new one), and is closed after `idle_timeout` without a request;
//! - a request (reading its body, publishing, answering) may take `request_timeout`;
//! - at most `max_connections` are open (never more than the process's file limit allows);
//!   when a new one arrives at the limit, the connection that has been waiting longest without
//!   a request in progress is closed to make room — a real delivery is never queued behind
//!   connections that send nothing.
//!
//! The number of requests in flight and the memory they hold are bounded by the admission
//! layer in `lib.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The connection bounds (from `[ingest]`).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

/// Largest request head (request line and headers). WooCommerce's are well under 2 KiB; the
/// limit bounds what each connection can make the server buffer.
const MAX_HEAD: usize = 16 * 1024;

/// Descriptors kept free for everything else the process opens (NATS, the admin port, logs).
const RESERVED_FDS: usize = 64;

/// `max_connections`, lowered to what the process's open-file limit allows.
pub(crate) fn connection_cap(max_connections: usize) -> usize {
    match open_file_limit() {
        Some(limit) => max_connections.min(limit.saturating_sub(RESERVED_FDS).max(1)),
        None => max_connections,
    }
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc` (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing of a request received yet: a new connection, or one between requests.
    Waiting { fresh: bool },
    /// Part of a request head received.
    Head,
    /// A request is being handled.
    Busy,
}

/// What one connection is doing, shared by its reader, its service and the watchdog.
struct ConnState {
    phase: Mutex<(Phase, Instant)>,
    changed: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            phase: Mutex::new((Phase::Waiting { fresh: true }, Instant::now())),
            changed: Notify::new(),
        }
    }

    fn get(&self) -> (Phase, Instant) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = (phase, Instant::now());
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(p.0, Phase::Waiting { .. }) {
            *p = (Phase::Head, Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }

    /// When the connection must have moved on, and why it is closed if it has not.
    fn deadline(&self, limits: &Limits) -> (Instant, &'static str) {
        let (phase, since) = self.get();
        match phase {
            Phase::Waiting { fresh: true } | Phase::Head => {
                (since + limits.header_read_timeout, "header_timeout")
            }
            Phase::Waiting { fresh: false } => (since + limits.idle_timeout, "idle"),
            Phase::Busy => (since + limits.request_timeout, "request_timeout"),
        }
    }
}

/// The open connections, for the limit and for eviction.
#[derive(Default)]
struct Table {
    conns: Mutex<HashMap<u64, (Arc<ConnState>, CancellationToken)>>,
    next_id: AtomicU64,
}

impl Table {
    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn insert(&self, state: Arc<ConnState>, kill: CancellationToken) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (state, kill));
        metrics::gauge!("duellsync_ingest_open_connections").increment(1.0);
        id
    }

    fn remove(&self, id: u64) {
        if self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .is_some()
        {
            metrics::gauge!("duellsync_ingest_open_connections").decrement(1.0);
        }
    }

    /// Closes the connection that has waited longest without a request in progress. False
    /// when every connection is handling a request.
    fn evict_one(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let victim = conns
            .iter()
            .filter_map(|(id, (state, kill))| {
                let (phase, since) = state.get();
                (phase != Phase::Busy && !kill.is_cancelled()).then_some((since, *id, kill))
            })
            .min_by_key(|(since, id, _)| (*since, *id));
        match victim {
            Some((_, _, kill)) => {
                kill.cancel();
                closed("evicted");
                true
            }
            None => false,
        }
    }
}

fn closed(reason: &'static str) {
    metrics::counter!("duellsync_ingest_connections_closed_total", "reason" => reason).increment(1);
}

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets every
/// connection finish its request in progress, and returns once all are closed (the caller
/// bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> io::Result<()> {
    let cap = connection_cap(limits.max_connections);
    tracing::info!(
        max_connections = cap,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
        "public listener bounds"
    );
    let table = Arc::new(Table::default());
    let tracker = TaskTracker::new();
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or another transient failure): make room rather than
                // stop answering, and do not spin.
                if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, open = table.len(), "accept failed; closing a waiting connection");
                    last_accept_warning = Some(Instant::now());
                }
                table.evict_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if table.len() >= cap && !table.evict_one() {
            // Every connection is in a request: this one is turned away (the admission layer
            // would shed it anyway).
            closed("over_limit");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let kill = CancellationToken::new();
        let id = table.insert(state.clone(), kill.clone());
        let table = table.clone();
        let router = router.clone();
        let limits = limits.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            connection(stream, router, state, kill, limits, stop).await;
            table.remove(id);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    router: Router,
    state: Arc<ConnState>,
    kill: CancellationToken,
    limits: Limits,
    stop: CancellationToken,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        state: state.clone(),
    });
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let state = service_state.clone();
        state.set(Phase::Busy);
        async move {
            let response = router.oneshot(req.map(axum::body::Body::new)).await;
            state.set(Phase::Waiting { fresh: false });
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog below owns every timeout (hyper's header timer would also run while a
    // kept-alive connection idles, closing it long before the proxy expects).
    builder
        .keep_alive(true)
        .max_buf_size(MAX_HEAD)
        .header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let (deadline, reason) = state.deadline(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = kill.cancelled() => return,
            _ = stop.cancelled(), if !draining => {
                // Finish the request in progress, close an idle connection now.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = state.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                // The phase may have moved on since the deadline was taken.
                if state.deadline(&limits).0 <= Instant::now() {
                    closed(reason);
                    return;
                }
            }
        }
    }
}

/// The connection's socket, noting when the bytes of a new request start to arrive.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(40),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_own_deadline() {
        let s = ConnState::new();
        let l = limits();
        let (d, why) = s.deadline(&l);
        assert_eq!(why, "header_timeout");
        assert_eq!(d - Instant::now(), l.header_read_timeout);
        s.set(Phase::Busy);
        assert_eq!(s.deadline(&l).1, "request_timeout");
        s.set(Phase::Waiting { fresh: false });
        let (d, why) = s.deadline(&l);
        assert_eq!(why, "idle");
        assert_eq!(d - Instant::now(), l.idle_timeout);
        tokio::time::advance(Duration::from_secs(30)).await;
        s.bytes_arrived();
        let (d, why) = s.deadline(&l);
        assert_eq!(why, "header_timeout");
        assert_eq!(
            d - Instant::now(),
            l.header_read_timeout,
            "from the first byte"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_the_longest_waiting_connection_never_a_busy_one() {
        let t = Table::default();
        let busy = Arc::new(ConnState::new());
        busy.set(Phase::Busy);
        let busy_kill = CancellationToken::new();
        t.insert(busy, busy_kill.clone());
        tokio::time::advance(Duration::from_secs(1)).await;
        let old = Arc::new(ConnState::new());
        let old_kill = CancellationToken::new();
        t.insert(old, old_kill.clone());
        tokio::time::advance(Duration::from_secs(1)).await;
        let new_kill = CancellationToken::new();
        t.insert(Arc::new(ConnState::new()), new_kill.clone());
        assert!(t.evict_one());
        assert!(old_kill.is_cancelled() && !new_kill.is_cancelled() && !busy_kill.is_cancelled());
        assert!(t.evict_one());
        assert!(new_kill.is_cancelled());
        assert!(!t.evict_one(), "only a busy one is left");
    }

    #[test]
    fn the_cap_leaves_room_under_the_open_file_limit() {
        if let Some(limit) = open_file_limit() {
            assert!(connection_cap(usize::MAX) <= limit.saturating_sub(RESERVED_FDS).max(1));
        }
        assert!(connection_cap(3) <= 3);
    }
}
