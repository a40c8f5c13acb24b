//! What the ingest takes on at once: a bounded number of requests in flight, shed with 503 and
//! `Retry-After` beyond it, in two pools so that large uploads never crowd out real deliveries;
//! and a per-store rate for change notices.
//!
//! Memory follows: at most `max_large_in_flight` bodies of up to `body_limit` bytes and
//! `max_in_flight` bodies of up to `small_body` bytes are held at a time
//! (`IngestSection::memory_bound`). 100 parallel unsigned 2 MiB bodies once took the pod past
//! its memory limit; now all but a few are turned away before their body is read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::body;
use crate::config::IngestSection;
use crate::outcome::Outcome;

/// The two pools of request slots.
pub(crate) struct Admission {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
    small_body: u64,
}

impl Admission {
    pub(crate) fn new(config: &IngestSection) -> Admission {
        Admission {
            small: Arc::new(Semaphore::new(config.max_in_flight)),
            large: Arc::new(Semaphore::new(config.max_large_in_flight)),
            small_body: config.small_body() as u64,
        }
    }
}

/// The admission layer: takes a slot of the request's pool for the whole request, or answers
/// 503 with `Retry-After` at once. The pool is chosen by the declared length: a body of unknown
/// length (chunked) counts as large.
pub(crate) async fn admit(State(a): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let small = match body::content_length(headers) {
        Some(n) => n <= a.small_body,
        None => !headers.contains_key(axum::http::header::TRANSFER_ENCODING),
    };
    let (pool, name) = if small {
        (&a.small, "small")
    } else {
        (&a.large, "large")
    };
    match pool.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        Err(_) => {
            metrics::counter!("duellsync_ingest_shed_total", "pool" => name).increment(1);
            tracing::debug!(pool = name, "request shed: too many in flight");
            Outcome::Overloaded.response_retry_after(1)
        }
    }
}

/// A token bucket: `rate` a second, up to `burst` at once.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token, or says how long until there is one.
    pub(crate) fn take(&self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let r = RateLimiter::new(2.0, 3);
        for _ in 0..3 {
            assert!(r.take_at(t0).is_ok());
        }
        let wait = r.take_at(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(r.take_at(t0 + Duration::from_millis(500)).is_ok());
        assert!(r.take_at(t0 + Duration::from_millis(500)).is_err());
        // An idle hour refills only the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(r.take_at(later).is_ok());
        }
        assert!(r.take_at(later).is_err());
    }
}
