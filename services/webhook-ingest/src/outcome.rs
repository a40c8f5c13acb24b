//! How a request ended: its HTTP answer, its metric labels and its span fields.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram};

/// Every way a request can end. Validation problems are 4xx; anything on our side is an opaque
/// 5xx (the cause is logged, never sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored by JetStream.
    Accepted,
    /// JetStream already had this event id (a repeated delivery); nothing new was stored.
    Duplicate,
    /// WooCommerce's unsigned creation ping. Exactly 200, or WooCommerce pings again forever.
    Ping,
    /// Authentic, but of no interest (topic) or unusable (an error object instead of an order).
    Dropped,
    /// No such store here, or the store does not take this kind of request.
    UnknownStore,
    /// Signature missing or wrong.
    Unauthorized,
    /// Not the JSON we expect, or a broken body.
    Malformed,
    /// Body over the limit.
    TooLarge,
    /// The client did not send its body in time.
    Timeout,
    /// JetStream did not confirm in time: the event may not be stored.
    Unavailable,
    /// A bug or a misconfiguration on our side.
    Failed,
    /// Too many requests in flight: shed at once (503 with `Retry-After`).
    Overloaded,
    /// Too many change notices for the store: 429 with `Retry-After`.
    RateLimited,
    /// A change notice signed too long ago (or for too far ahead): a replay, refused.
    Expired,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 14] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Ping,
        Outcome::Dropped,
        Outcome::UnknownStore,
        Outcome::Unauthorized,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Failed,
        Outcome::Overloaded,
        Outcome::RateLimited,
        Outcome::Expired,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            Outcome::Accepted | Outcome::Duplicate | Outcome::Ping | Outcome::Dropped => {
                StatusCode::OK
            }
            Outcome::UnknownStore => StatusCode::NOT_FOUND,
            Outcome::Unauthorized | Outcome::Expired => StatusCode::UNAUTHORIZED,
            Outcome::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Outcome::Malformed => StatusCode::BAD_REQUEST,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::Timeout => StatusCode::REQUEST_TIMEOUT,
            Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Ping => "ping",
            Outcome::Dropped => "dropped",
            Outcome::UnknownStore => "unknown_store",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
            Outcome::Overloaded => "overloaded",
            Outcome::RateLimited => "rate_limited",
            Outcome::Expired => "expired",
        }
    }

    fn status_label(self) -> &'static str {
        match self.status() {
            StatusCode::OK => "200",
            StatusCode::NOT_FOUND => "404",
            StatusCode::UNAUTHORIZED => "401",
            StatusCode::BAD_REQUEST => "400",
            StatusCode::PAYLOAD_TOO_LARGE => "413",
            StatusCode::REQUEST_TIMEOUT => "408",
            StatusCode::SERVICE_UNAVAILABLE => "503",
            StatusCode::TOO_MANY_REQUESTS => "429",
            _ => "500",
        }
    }

    /// A short, fixed body: nothing from the request and nothing internal is echoed.
    fn body(self) -> &'static str {
        match self {
            Outcome::Accepted | Outcome::Duplicate | Outcome::Ping | Outcome::Dropped => "ok",
            Outcome::UnknownStore => "unknown store",
            Outcome::Unauthorized => "invalid signature",
            Outcome::Malformed => "malformed body",
            Outcome::TooLarge => "body too large",
            Outcome::Timeout => "request body timeout",
            Outcome::Unavailable => "temporarily unavailable",
            Outcome::Failed => "internal error",
            Outcome::Overloaded => "busy, try again",
            Outcome::RateLimited => "too many notices",
            Outcome::Expired => "timestamp outside the tolerance",
        }
    }

    pub(crate) fn response(self) -> Response {
        (self.status(), self.body()).into_response()
    }

    /// The answer with a `Retry-After` (seconds), for refusals that say when to come back.
    pub(crate) fn response_retry_after(self, seconds: u64) -> Response {
        (
            self.status(),
            [(axum::http::header::RETRY_AFTER, seconds.max(1).to_string())],
            self.body(),
        )
            .into_response()
    }
}

/// The two public endpoints, a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    WooCommerce,
    DuellNotice,
}

impl Endpoint {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::WooCommerce => "woocommerce",
            Endpoint::DuellNotice => "duell_notice",
        }
    }
}

/// Metric handles of one (store, endpoint), registered once at start so the request path does
/// not build label sets. Requests for unknown stores share the store label `unknown`, so
/// random paths cannot blow up the number of series.
#[derive(Clone)]
pub(crate) struct EndpointMetrics {
    requests: Vec<Counter>,
    publish_seconds: Histogram,
    in_flight: Gauge,
}

/// Counts a request as in flight until dropped (shutdown drains these).
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl EndpointMetrics {
    pub(crate) fn new(store: &str, endpoint: Endpoint) -> EndpointMetrics {
        let requests = Outcome::ALL
            .iter()
            .map(|o| {
                metrics::counter!(
                    "duellsync_ingest_requests_total",
                    "store" => store.to_owned(),
                    "endpoint" => endpoint.as_str(),
                    "outcome" => o.as_str(),
                    "status" => o.status_label()
                )
            })
            .collect();
        let publish_seconds = metrics::histogram!(
            "duellsync_ingest_publish_duration_seconds",
            "store" => store.to_owned(),
            "endpoint" => endpoint.as_str()
        );
        let in_flight = metrics::gauge!(
            "duellsync_ingest_in_flight_requests",
            "store" => store.to_owned(),
            "endpoint" => endpoint.as_str()
        );
        EndpointMetrics {
            requests,
            publish_seconds,
            in_flight,
        }
    }

    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.increment(1.0);
        InFlight(self.in_flight.clone())
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        if let Some(c) = self.requests.get(outcome.index()) {
            c.increment(1);
        }
    }

    pub(crate) fn publish_latency(&self, seconds: f64) {
        self.publish_seconds.record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot_and_status() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
            assert_eq!(o.status_label(), o.status().as_str());
        }
        assert_eq!(Outcome::Ping.status(), StatusCode::OK);
        assert_eq!(Outcome::Unavailable.status().as_u16(), 503);
    }
}
