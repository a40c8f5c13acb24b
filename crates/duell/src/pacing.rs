//! Client-side pacing so DUELL's rate limiter never has to say 429: the client remembers the last
//! `x-duell-ratelimit-remaining` / `-reset` it saw, counts the requests it sends against that
//! budget, and when the budget is spent waits until the window resets. A 429 (or `Retry-After`)
//! blocks every caller of this client until the wait is over.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// How the client paces itself. Part of [`crate::ClientConfig`].
#[derive(Debug, Clone)]
pub struct PacingConfig {
    /// Honour `x-duell-ratelimit-remaining`/`-reset`: when the remaining budget reaches 0, wait
    /// until the reset time before the next request.
    pub respect_rate_headers: bool,
    /// Added to the reset time before sending again (clock skew between us and DUELL; the
    /// reset header has one-second resolution).
    pub reset_margin: Duration,
    /// Spread the remaining budget evenly over the rest of the window instead of bursting.
    pub spread: bool,
    /// A fixed minimum gap between two requests (DUELL's own plugin waits 0.5 s between pages).
    pub min_interval: Option<Duration>,
    /// The longest this client waits for the rate limit by itself. A longer wait is returned to
    /// the caller as [`crate::Error::RateLimited`] so it can reschedule the work.
    pub max_wait: Duration,
    /// Wait after a 429 that names no `Retry-After` and no reset time.
    pub default_retry_after: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            respect_rate_headers: true,
            reset_margin: Duration::from_millis(1000),
            spread: false,
            min_interval: None,
            max_wait: Duration::from_secs(120),
            default_retry_after: Duration::from_secs(10),
        }
    }
}

/// Rate-limit information read from one response.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RateHeaders {
    pub(crate) remaining: Option<u64>,
    pub(crate) reset: Option<SystemTime>,
    pub(crate) retry_after: Option<Duration>,
}

impl RateHeaders {
    pub(crate) fn parse(headers: &HeaderMap, now: SystemTime) -> RateHeaders {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let remaining = text("x-duell-ratelimit-remaining").and_then(|s| {
            crate::de::parse_decimal(s).and_then(|d| u64::try_from(d.trunc().max(0.into())).ok())
        });
        let reset = text("x-duell-ratelimit-reset").and_then(epoch);
        let retry_after = text("retry-after").and_then(|s| retry_after(s, now));
        RateHeaders {
            remaining,
            reset,
            retry_after,
        }
    }

    /// How long a 429 asks us to wait: `Retry-After` wins over the reset time.
    pub(crate) fn wait_after_429(&self, now: SystemTime, fallback: Duration) -> Duration {
        if let Some(d) = self.retry_after {
            return d;
        }
        if let Some(reset) = self.reset {
            if let Ok(d) = reset.duration_since(now) {
                return d;
            }
        }
        fallback
    }
}

/// Absolute epoch seconds, possibly fractional.
fn epoch(s: &str) -> Option<SystemTime> {
    let d = crate::de::parse_decimal(s)?;
    if d.is_sign_negative() {
        return None;
    }
    // Checked: a header is outside input, and `Decimal`'s `*` panics on overflow.
    let millis = u64::try_from(d.checked_mul(1000.into())?.trunc()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// `Retry-After`: delta seconds or an HTTP date.
fn retry_after(s: &str, now: SystemTime) -> Option<Duration> {
    if let Some(d) = crate::de::parse_decimal(s) {
        let millis = u64::try_from(d.max(0.into()).checked_mul(1000.into())?.trunc()).ok()?;
        return Some(Duration::from_millis(millis));
    }
    let date =
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).ok()?;
    let at: SystemTime = date.into();
    Some(at.duration_since(now).unwrap_or_default())
}

#[derive(Debug, Default)]
struct State {
    /// Budget left in the current window, as we estimate it.
    remaining: Option<u64>,
    /// When the current window ends.
    reset: Option<SystemTime>,
    /// Nobody sends before this (set by a 429 / Retry-After).
    blocked_until: Option<Instant>,
    last_sent: Option<Instant>,
    /// Requests that waited for the limiter (for tests and metrics).
    waits: u64,
}

#[derive(Debug)]
pub(crate) struct Pacer {
    config: PacingConfig,
    state: Mutex<State>,
}

/// The pacer's answer before a request.
pub(crate) enum Gate {
    Go,
    Wait(Duration),
}

impl Pacer {
    pub(crate) fn new(config: PacingConfig) -> Self {
        Pacer {
            config,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn config(&self) -> &PacingConfig {
        &self.config
    }

    /// Either reserves one request of the budget (`Go`) or says how long to wait first.
    pub(crate) fn check(&self, now: Instant, wall: SystemTime) -> Gate {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = st.blocked_until {
            if until > now {
                return Gate::Wait(until - now);
            }
            st.blocked_until = None;
        }
        if self.config.respect_rate_headers {
            if let (Some(0), Some(reset)) = (st.remaining, st.reset) {
                let ready = reset + self.config.reset_margin;
                match ready.duration_since(wall) {
                    Ok(d) if !d.is_zero() => return Gate::Wait(d),
                    _ => {
                        // The window has rolled over: the budget is unknown until the next
                        // response tells us.
                        st.remaining = None;
                        st.reset = None;
                    }
                }
            }
            if self.config.spread {
                if let (Some(r), Some(reset), Some(last)) = (st.remaining, st.reset, st.last_sent) {
                    if let Ok(left) = reset.duration_since(wall) {
                        let gap = left / u32::try_from(r.saturating_add(1)).unwrap_or(u32::MAX);
                        if last + gap > now {
                            return Gate::Wait(last + gap - now);
                        }
                    }
                }
            }
        }
        if let (Some(min), Some(last)) = (self.config.min_interval, st.last_sent) {
            if last + min > now {
                return Gate::Wait(last + min - now);
            }
        }
        st.remaining = st.remaining.map(|r| r.saturating_sub(1));
        st.last_sent = Some(now);
        Gate::Go
    }

    pub(crate) fn note_wait(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.waits += 1;
    }

    /// Learns the budget from a response's headers.
    pub(crate) fn observe(&self, h: &RateHeaders) {
        let Some(remaining) = h.remaining else {
            return;
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let same_window = h.reset.is_some() && st.reset == h.reset;
        st.remaining = Some(match (same_window, st.remaining) {
            // Requests still in flight were already counted locally; keep the lower figure.
            (true, Some(local)) => local.min(remaining),
            _ => remaining,
        });
        if h.reset.is_some() {
            st.reset = h.reset;
        }
    }

    /// After a 429: nobody sends for `wait`.
    pub(crate) fn block_for(&self, now: Instant, wait: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = now + wait;
        st.blocked_until = Some(st.blocked_until.map_or(until, |u| u.max(until)));
    }

    /// How many requests had to wait for the limiter so far.
    pub(crate) fn waits(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).waits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_retry_after_as_seconds_or_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            RateHeaders::parse(&h, now).retry_after,
            Some(Duration::from_secs(7))
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT"),
        );
        assert_eq!(
            RateHeaders::parse(&h, now).retry_after,
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn absurd_reset_and_retry_after_values_are_ignored_not_a_panic() {
        // Found by the duell_responses fuzz target: `Decimal`'s `*` panicked on overflow.
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut h = HeaderMap::new();
        h.insert(
            "x-duell-ratelimit-reset",
            HeaderValue::from_static("80000000000000000000000000"),
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("79228162514264337593543950335"),
        );
        let parsed = RateHeaders::parse(&h, now);
        assert_eq!(parsed.reset, None);
        assert_eq!(parsed.retry_after, None);
        // Large but representable values still count.
        h.insert("retry-after", HeaderValue::from_static("18446744073709551"));
        assert_eq!(
            RateHeaders::parse(&h, now).retry_after,
            Some(Duration::from_millis(18_446_744_073_709_551_000))
        );
    }

    #[test]
    fn waits_for_the_reset_when_the_budget_is_spent() {
        let pacer = Pacer::new(PacingConfig {
            reset_margin: Duration::ZERO,
            ..PacingConfig::default()
        });
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        let mut h = HeaderMap::new();
        h.insert("x-duell-ratelimit-remaining", HeaderValue::from_static("1"));
        h.insert("x-duell-ratelimit-reset", HeaderValue::from_static("1005"));
        pacer.observe(&RateHeaders::parse(&h, wall));
        assert!(matches!(pacer.check(now, wall), Gate::Go));
        match pacer.check(now, wall) {
            Gate::Wait(d) => assert_eq!(d, Duration::from_secs(5)),
            Gate::Go => panic!("should wait for the reset"),
        }
        assert!(matches!(
            pacer.check(now, wall + Duration::from_secs(6)),
            Gate::Go
        ));
    }

    #[test]
    fn spreads_the_remaining_budget_over_the_window_when_asked() {
        let pacer = Pacer::new(PacingConfig {
            spread: true,
            reset_margin: Duration::ZERO,
            ..PacingConfig::default()
        });
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        let mut h = HeaderMap::new();
        h.insert("x-duell-ratelimit-remaining", HeaderValue::from_static("4"));
        h.insert("x-duell-ratelimit-reset", HeaderValue::from_static("1010"));
        pacer.observe(&RateHeaders::parse(&h, wall));
        assert!(matches!(pacer.check(now, wall), Gate::Go));
        // 3 left for 10 s: one request every 2.5 s.
        match pacer.check(now, wall) {
            Gate::Wait(d) => assert_eq!(d, Duration::from_millis(2500)),
            Gate::Go => panic!("should spread"),
        }
    }

    #[test]
    fn a_429_blocks_every_caller_for_the_asked_wait() {
        let pacer = Pacer::new(PacingConfig::default());
        let now = Instant::now();
        pacer.block_for(now, Duration::from_secs(3));
        assert!(matches!(pacer.check(now, SystemTime::now()), Gate::Wait(_)));
        assert!(matches!(
            pacer.check(now + Duration::from_secs(3), SystemTime::now()),
            Gate::Go
        ));
    }
}
