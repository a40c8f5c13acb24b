//! Fault injection per endpoint: what hosts, proxies and WAFs do to WooCommerce traffic.

use serde::{Deserialize, Serialize};

/// What to do to a matching request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Delay the response, then answer normally.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer a 5xx JSON `internal_server_error` (or the HTML "critical error" page).
    ServerError {
        /// HTTP status (500, 502, 503...).
        status: u16,
        /// HTML body instead of JSON.
        #[serde(default)]
        html: bool,
    },
    /// 429 with `Retry-After` and an HTML body, as host rate limiters do.
    TooManyRequests {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Never answer (until the client gives up).
    Hang,
    /// Process the request, then never answer: the write happened but the client times out.
    HangAfterApply,
    /// Process the request, then wait this long before answering: the answer describes the
    /// store as it was when the request was processed, however much changed meanwhile (a
    /// slow page of a large catalogue on a busy host).
    SlowAnswer {
        /// Milliseconds.
        ms: u64,
    },
    /// An HTML error page with this status (WAF 403, maintenance 503...).
    HtmlError {
        /// HTTP status.
        status: u16,
    },
    /// 200 whose body starts with a PHP warning before the JSON.
    PhpWarning,
    /// A redirect (e.g. 301 http→https) instead of processing.
    Redirect {
        /// 301, 302, 307, 308.
        status: u16,
        /// `Location`.
        location: String,
    },
    /// Drop the `Authorization` header (FastCGI hosts), turning the request into a guest.
    StripAuth,
}

/// A fault rule. All given matchers must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method, e.g. `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Route template below `wc/vN/`, e.g. `products/batch` or `products/{id}`.
    #[serde(default)]
    pub route: Option<String>,
    /// Substring of the request path.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Substring of the raw query string (e.g. `orderby=id`).
    #[serde(default)]
    pub query_contains: Option<String>,
    /// The fault.
    pub kind: FaultKind,
    /// Apply to the next N matching requests only (deterministic); `None` = unlimited.
    #[serde(default)]
    pub times: Option<u32>,
    /// Probability per matching request (seeded RNG); `None` = always.
    #[serde(default)]
    pub probability: Option<f64>,
}

impl FaultRule {
    /// A rule for the next `times` requests of `method route`.
    pub fn next(method: &str, route: &str, times: u32, kind: FaultKind) -> Self {
        FaultRule {
            method: Some(method.to_string()),
            route: Some(route.to_string()),
            path_contains: None,
            query_contains: None,
            kind,
            times: Some(times),
            probability: None,
        }
    }

    pub(crate) fn matches(&self, method: &str, route: &str, path: &str, query: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.route.as_deref().is_none_or(|r| r == route)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}
