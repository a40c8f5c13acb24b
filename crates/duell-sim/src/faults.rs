//! Fault injection, the fixed-window rate limiter and the request counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::config::RateLimit;

/// A misbehaviour the simulator can show on a `/v1` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this 5xx status and a JSON error envelope, without processing.
    ServerError {
        /// HTTP status (default 500).
        #[serde(default = "default_500")]
        status: u16,
    },
    /// Answer 429 with `Retry-After` and the rate-limit headers, without processing.
    RateLimited {
        /// `Retry-After` seconds (default 1).
        #[serde(default = "default_1")]
        retry_after_secs: u64,
    },
    /// Answer 401 `{"status":false,"code":401,…}` as for an expired token. Random draws skip
    /// it on `getaccesstokens`, where a 401 means refused credentials.
    ExpiredToken,
    /// Answer with the AWS WAF captcha HTML page (HTTP 405).
    Firewall,
    /// Answer with an empty body, without processing.
    EmptyBody {
        /// HTTP status (default 200).
        #[serde(default = "default_200")]
        status: u16,
    },
    /// Answer with a truncated JSON body, without processing.
    MalformedJson,
    /// Never answer (the request hangs until the client gives up), without processing.
    Hang,
    /// Wait this long, then process normally.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Process the request (the write happens), then never answer: the client times out.
    HangAfterProcessing,
    /// Process the request (the write happens), then answer with this 5xx status.
    ServerErrorAfterProcessing {
        /// HTTP status (default 502).
        #[serde(default = "default_502")]
        status: u16,
    },
    /// Process the request (the write happens), then answer with an empty body.
    EmptyBodyAfterProcessing,
}

fn default_500() -> u16 {
    500
}
fn default_502() -> u16 {
    502
}
fn default_200() -> u16 {
    200
}
fn default_1() -> u64 {
    1
}

impl Fault {
    /// True when the request is processed before the fault shows.
    pub fn after_processing(&self) -> bool {
        matches!(
            self,
            Fault::HangAfterProcessing
                | Fault::ServerErrorAfterProcessing { .. }
                | Fault::EmptyBodyAfterProcessing
                | Fault::Latency { .. }
        )
    }
}

/// "Fail the next `count` requests to `endpoint` with `fault`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// Endpoint key (e.g. `product/list`, `logistics/orders/view`, `customer`); `None` = any
    /// `/v1` endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How many matching requests get the fault (default 1).
    #[serde(default = "default_count")]
    pub count: u32,
    /// The fault.
    pub fault: Fault,
}

fn default_count() -> u32 {
    1
}

/// Faults drawn at random with a seed: each matching request gets one of `faults` with
/// probability `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomFaults {
    /// Probability per request, 0.0–1.0.
    pub rate: f64,
    /// Seed of the draw.
    #[serde(default)]
    pub seed: u64,
    /// Faults to choose from (uniformly).
    pub faults: Vec<Fault>,
    /// Endpoint key, or `None` for every `/v1` endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Default)]
struct FaultInner {
    scheduled: Vec<ScheduledFault>,
    random: Option<(RandomFaults, StdRng)>,
    latency: Duration,
    rate_limit: Option<RateLimit>,
    window: u64,
    window_count: u32,
}

/// Fault plan, latency and rate limiter.
#[derive(Default)]
pub(crate) struct Faults {
    inner: Mutex<FaultInner>,
}

/// Rate-limit headers for one response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateInfo {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Epoch seconds at which the window resets.
    pub(crate) reset: u64,
    /// The request exceeded the limit.
    pub(crate) exceeded: bool,
}

impl Faults {
    pub(crate) fn new(rate_limit: Option<RateLimit>, latency: Duration) -> Faults {
        Faults {
            inner: Mutex::new(FaultInner {
                rate_limit,
                latency,
                ..FaultInner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn schedule(&self, f: ScheduledFault) {
        if f.count > 0 {
            self.lock().scheduled.push(f);
        }
    }

    pub(crate) fn set_random(&self, r: Option<RandomFaults>) {
        self.lock().random = r.map(|r| {
            let rng = StdRng::seed_from_u64(r.seed);
            (r, rng)
        });
    }

    pub(crate) fn clear(&self) {
        let mut f = self.lock();
        f.scheduled.clear();
        f.random = None;
        f.latency = Duration::ZERO;
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn set_rate_limit(&self, r: Option<RateLimit>) {
        let mut f = self.lock();
        f.rate_limit = r;
        f.window = 0;
        f.window_count = 0;
    }

    /// The fault for this request, if any (scheduled faults first, in order).
    pub(crate) fn take(&self, endpoint: &str) -> Option<Fault> {
        let mut f = self.lock();
        let hit = f
            .scheduled
            .iter()
            .position(|s| s.endpoint.as_deref().is_none_or(|e| e == endpoint));
        if let Some(i) = hit {
            let fault = f.scheduled[i].fault.clone();
            f.scheduled[i].count -= 1;
            if f.scheduled[i].count == 0 {
                f.scheduled.remove(i);
            }
            return Some(fault);
        }
        if let Some((r, rng)) = f.random.as_mut() {
            if r.faults.is_empty() || r.endpoint.as_deref().is_some_and(|e| e != endpoint) {
                return None;
            }
            if rng.random_bool(r.rate.clamp(0.0, 1.0)) {
                let i = rng.random_range(0..r.faults.len());
                let fault = &r.faults[i];
                // A login carries no token to expire: a 401 there means refused credentials,
                // which a random draw must not fake (a scheduled fault can still ask for it).
                if matches!(fault, Fault::ExpiredToken) && endpoint == "getaccesstokens" {
                    return None;
                }
                return Some(fault.clone());
            }
        }
        None
    }

    /// Counts the request against the fixed window.
    pub(crate) fn rate_check(&self) -> Option<RateInfo> {
        let mut f = self.lock();
        let rl = f.rate_limit?;
        let window_ms = rl.window_ms.max(1);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let window = now_ms / window_ms;
        if window != f.window {
            f.window = window;
            f.window_count = 0;
        }
        f.window_count = f.window_count.saturating_add(1);
        let reset_ms = (window + 1) * window_ms;
        Some(RateInfo {
            limit: rl.limit,
            remaining: rl.limit.saturating_sub(f.window_count),
            reset: reset_ms.div_ceil(1000),
            exceeded: f.window_count > rl.limit,
        })
    }
}

/// Request and response counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests received per endpoint key (every `/v1` request, faulted ones included).
    pub requests: BTreeMap<String, u64>,
    /// Responses sent per HTTP status.
    pub responses: BTreeMap<u16, u64>,
    /// Tokens issued (successful logins).
    pub logins: u64,
    /// Requests refused with 401 because the token was unknown, expired or force-expired.
    pub unauthorized: u64,
    /// Requests refused by the rate limiter (429).
    pub rate_limited: u64,
}

impl SimStats {
    /// Requests received for an endpoint key.
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }

    /// Responses sent with an HTTP status.
    pub fn responses_with(&self, status: u16) -> u64 {
        self.responses.get(&status).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<SimStats>,
}

impl Stats {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut SimStats) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        self.with(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_token_expiry_never_hits_the_login() {
        let faults = Faults::default();
        faults.set_random(Some(RandomFaults {
            rate: 1.0,
            seed: 7,
            faults: vec![Fault::ExpiredToken],
            endpoint: None,
        }));
        for _ in 0..50 {
            assert_eq!(faults.take("getaccesstokens"), None);
            assert_eq!(faults.take("product/list"), Some(Fault::ExpiredToken));
        }
        faults.schedule(ScheduledFault {
            fault: Fault::ExpiredToken,
            endpoint: Some("getaccesstokens".into()),
            count: 1,
        });
        assert_eq!(faults.take("getaccesstokens"), Some(Fault::ExpiredToken));
    }
}
