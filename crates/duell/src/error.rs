//! The one error type of this crate. Every variant tells the caller what to do with the failed
//! call (see [`Error::action`]); none of them carries a credential, a token or a response body
//! that could contain one.

use std::time::Duration;

use crate::model::ValidationMessage;

/// What a caller should do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A transient problem (DUELL down, slow, throttling us). Try the same call again later;
    /// nothing was changed in DUELL.
    RetryLater,
    /// DUELL understood the request and refused it. Retrying the same request will fail again:
    /// report it (dead-letter) and move on.
    Reject,
    /// Our settings are wrong or our egress is blocked (credentials, department token, base URL,
    /// firewall). An operator has to act; retrying without a fix is pointless.
    FixConfiguration,
    /// A write may or may not have been applied by DUELL. Do not retry blindly: resolve the
    /// operation by a lookup or flag it *in doubt* for the operator.
    ResolveInDoubt,
    /// DUELL answered something this client does not understand (API change or a bug here).
    Investigate,
}

/// Errors of the DUELL client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client configuration is invalid (for example an unparsable base URL).
    #[error("invalid duell client configuration: {0}")]
    Config(String),

    /// DUELL refused our client number / client token at login, or refused a fresh token again
    /// right after a re-login. Check the API credentials (Duell Manager → API-oppsett) and the
    /// modules (roles) of the DUELL account.
    #[error("duell rejected the credentials on {endpoint}: {message}")]
    Auth {
        /// The endpoint that failed (path relative to the base URL).
        endpoint: String,
        /// DUELL's message, or ours.
        message: String,
    },

    /// DUELL's firewall (AWS WAF) answered with an HTML captcha page instead of JSON. This does
    /// not go away by retrying: ask DUELL support (support@duell.no) to whitelist the egress IP
    /// of this service.
    #[error(
        "duell firewall blocked {endpoint} (http {http_status}, html captcha page instead of json): \
         ask duell support (support@duell.no) to whitelist this service's egress ip"
    )]
    Firewall {
        /// The endpoint that was blocked.
        endpoint: String,
        /// The HTTP status of the HTML page (AWS WAF captcha answers 405).
        http_status: u16,
    },

    /// DUELL throttled us and the wait it asked for exceeds what this client may wait for, or
    /// the retries were used up. Retry after `retry_after`.
    #[error("duell rate limit on {endpoint}; retry after {retry_after:?}")]
    RateLimited {
        /// The throttled endpoint.
        endpoint: String,
        /// How long DUELL asked us to wait, when it said so.
        retry_after: Option<Duration>,
    },

    /// DUELL is unavailable (5xx, timeout, connection failure, empty or garbled body on a read)
    /// and the retries were used up. Nothing was written; retry later.
    #[error("duell unavailable on {endpoint} after {attempts} attempt(s): {reason}")]
    Unavailable {
        /// The endpoint that failed.
        endpoint: String,
        /// The HTTP status of the last attempt, if a response came at all.
        http_status: Option<u16>,
        /// Attempts made, including the first.
        attempts: u32,
        /// What went wrong on the last attempt.
        reason: String,
    },

    /// DUELL answered with an empty body. On a read this is reported after the retries; on a
    /// write it is [`Error::OutcomeUnknown`] instead.
    #[error("duell sent an empty body on {endpoint} (http {http_status}); retry later")]
    EmptyBody {
        /// The endpoint that failed.
        endpoint: String,
        /// The HTTP status of the empty answer.
        http_status: u16,
    },

    /// A non-idempotent write (order save, sales order save, stock adjustment, customer creation,
    /// product save, category save) was sent but no trustworthy answer came back (timeout,
    /// connection dropped mid-request, 5xx, empty or garbled body). DUELL may or may not have
    /// applied it. It was NOT retried: resolve it by a lookup or mark the operation in doubt.
    #[error("outcome of {endpoint} unknown ({reason}); the write may have been applied, resolve before retrying")]
    OutcomeUnknown {
        /// The write endpoint.
        endpoint: String,
        /// Why the outcome is unknown.
        reason: String,
    },

    /// DUELL refused the request (`status:false`, a 4xx, or a bulk save that saved nothing:
    /// `total_affected: 0`). Permanent: the same request will fail again.
    #[error("duell rejected {endpoint}: {message}{}", fmt_validation(.validation))]
    Rejected {
        /// The endpoint that refused.
        endpoint: String,
        /// The HTTP status.
        http_status: u16,
        /// DUELL's `code`, when present.
        code: Option<i64>,
        /// DUELL's `message`, or ours.
        message: String,
        /// DUELL's `validation_message`, when present and not empty.
        validation: Option<ValidationMessage>,
    },

    /// DUELL's answer was larger than this client reads for the endpoint's kind
    /// (`ClientConfig::response_limits`); it was not buffered. A read retried would get the
    /// same; investigate (a proxy's page, a page size DUELL no longer caps) or raise the limit.
    #[error("duell answer on {endpoint} is larger than {limit} bytes; refused unread (raise ClientConfig::response_limits if it is legitimate)")]
    ResponseTooLarge {
        /// The endpoint.
        endpoint: String,
        /// The limit it exceeded.
        limit: usize,
    },

    /// DUELL answered with a body this client cannot interpret (not JSON, or JSON of another
    /// shape). Probably an API change; investigate.
    #[error("unexpected duell response on {endpoint}: {detail}")]
    InvalidResponse {
        /// The endpoint.
        endpoint: String,
        /// What did not fit (never the body itself: it may hold a token).
        detail: String,
    },
}

fn fmt_validation(v: &Option<ValidationMessage>) -> String {
    match v {
        Some(v) if !v.is_empty() => format!(" ({v})"),
        _ => String::new(),
    }
}

impl Error {
    /// What the caller should do about this error.
    pub fn action(&self) -> Action {
        match self {
            Error::Config(_) | Error::Auth { .. } | Error::Firewall { .. } => {
                Action::FixConfiguration
            }
            Error::RateLimited { .. } | Error::Unavailable { .. } | Error::EmptyBody { .. } => {
                Action::RetryLater
            }
            Error::OutcomeUnknown { .. } => Action::ResolveInDoubt,
            Error::Rejected { .. } => Action::Reject,
            Error::InvalidResponse { .. } | Error::ResponseTooLarge { .. } => Action::Investigate,
        }
    }

    /// True when retrying the same call later may succeed and cannot cause a double effect.
    pub fn is_retryable(&self) -> bool {
        self.action() == Action::RetryLater
    }

    /// True when a write may have been applied although the call failed.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// How long DUELL asked us to wait before the next call, when it throttled us and said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status DUELL answered with, when the error came from a response.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Firewall { http_status, .. }
            | Error::EmptyBody { http_status, .. }
            | Error::Rejected { http_status, .. } => Some(*http_status),
            Error::Unavailable { http_status, .. } => *http_status,
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
