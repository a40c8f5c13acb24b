//! The one error type of this crate, classified by what the caller should do next.

use std::time::Duration;

pub use duellsync_woo_model::{json_u64, ApiError};

/// What a caller should do about an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Temporary: retry later (5xx, 429, timeouts of safe requests, connection failures).
    Transient,
    /// The request itself is wrong for this store (validation, duplicate SKU, unknown id):
    /// retrying the same request will fail again; report it and move on.
    Permanent,
    /// The connection settings are wrong (credentials, URL, redirects, permalinks, a plugin
    /// printing HTML): an operator has to fix the configuration.
    Configuration,
    /// A non-idempotent write may or may not have been applied (timeout or server error
    /// during a create). Reconcile (e.g. look products up by SKU) before writing again.
    OutcomeUnknown,
}

/// Errors of the WooCommerce client.
///
/// No variant ever carries the consumer secret, a webhook secret, a signature or a URL with
/// query-string credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// WooCommerce answered with its JSON error envelope.
    #[error("woocommerce {endpoint} failed with http {status}: {}", .error.code)]
    Api {
        /// `METHOD path` of the request.
        endpoint: String,
        /// HTTP status of the response.
        status: u16,
        /// The parsed envelope.
        error: ApiError,
        /// `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// An HTTP error status without a WooCommerce JSON body (proxy, WAF, rate limiter).
    #[error("woocommerce {endpoint} failed with http {status} and no error body")]
    Http {
        /// `METHOD path` of the request.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// `Retry-After`, when present.
        retry_after: Option<Duration>,
    },
    /// The body is not JSON: an HTML error page, PHP warnings before the JSON, a login page.
    #[error("woocommerce {endpoint} answered http {status} with a non-json body ({content_type}): {snippet:?}")]
    NotJson {
        /// `METHOD path` of the request.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The `Content-Type` header.
        content_type: String,
        /// The first characters of the body, for the operator.
        snippet: String,
    },
    /// The store redirected; redirects are never followed (a redirected POST silently turns
    /// into a GET on most clients). Fix the configured URL.
    #[error("woocommerce {endpoint} redirected with http {status} to {location:?}; configure the final store url")]
    Redirect {
        /// `METHOD path` of the request.
        endpoint: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header.
        location: Option<String>,
    },
    /// The request timed out; safe to retry later for idempotent requests.
    #[error("woocommerce {endpoint} timed out")]
    Timeout {
        /// `METHOD path` of the request.
        endpoint: String,
    },
    /// The connection failed or broke.
    #[error("woocommerce {endpoint} transport error: {source}")]
    Transport {
        /// `METHOD path` of the request.
        endpoint: String,
        /// The underlying error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// A non-idempotent write failed in a way that leaves its outcome unknown. Reconcile
    /// (e.g. look the SKUs up) before sending it again.
    #[error("outcome of woocommerce {endpoint} is unknown; reconcile before retrying: {cause}")]
    OutcomeUnknown {
        /// `METHOD path` of the request.
        endpoint: String,
        /// What happened (timeout, 5xx, broken connection).
        cause: Box<Error>,
    },
    /// More than 100 items in one batch; refused client-side before sending.
    #[error("batch of {0} items exceeds woocommerce's limit of 100")]
    BatchTooLarge(usize),
    /// The response was JSON but not of the expected shape.
    #[error("could not decode woocommerce {endpoint} response: {source}")]
    Decode {
        /// `METHOD path` of the request.
        endpoint: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer was larger than this client reads for the endpoint's kind
    /// (`ClientConfig::response_limits`); it was not buffered. The same request would get the
    /// same answer: a plugin or proxy misbehaving, or a page too large (lower `per_page`, or
    /// raise the limit if it is legitimate).
    #[error("woocommerce {endpoint} answered http {status} with more than {limit} bytes; refused unread (raise ClientConfig::response_limits if it is legitimate)")]
    ResponseTooLarge {
        /// `METHOD path` of the request.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The client configuration is invalid (bad URL, unreadable CA certificate...).
    #[error("invalid woocommerce client configuration: {0}")]
    Config(String),
    /// The request was refused client-side because WooCommerce would reject or misread it
    /// (e.g. `per_page` outside 1..=100, several statuses on v2).
    #[error("invalid woocommerce request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// What the caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api { status, error, .. } => classify_status(*status, Some(&error.code)),
            Error::Http { status, .. } => classify_status(*status, None),
            Error::NotJson { status, .. } => {
                if *status >= 500 || *status == 429 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Configuration
                }
            }
            Error::Redirect { .. } | Error::Config(_) | Error::ResponseTooLarge { .. } => {
                ErrorKind::Configuration
            }
            Error::Timeout { .. } | Error::Transport { .. } => ErrorKind::Transient,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::BatchTooLarge(_) | Error::Decode { .. } | Error::InvalidRequest(_) => {
                ErrorKind::Permanent
            }
        }
    }

    /// True when retrying later is reasonable.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// The WooCommerce error code, when the store sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { error, .. } => Some(&error.code),
            Error::OutcomeUnknown { cause, .. } => cause.code(),
            _ => None,
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. }
            | Error::Http { status, .. }
            | Error::NotJson { status, .. }
            | Error::Redirect { status, .. }
            | Error::ResponseTooLarge { status, .. } => Some(*status),
            Error::OutcomeUnknown { cause, .. } => cause.status(),
            _ => None,
        }
    }

    /// The parsed WooCommerce envelope, when there is one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api { error, .. } => Some(error),
            Error::OutcomeUnknown { cause, .. } => cause.api_error(),
            _ => None,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } | Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn classify_status(status: u16, code: Option<&str>) -> ErrorKind {
    match status {
        408 | 425 | 429 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        401 | 403 => ErrorKind::Configuration,
        404 if code == Some("rest_no_route") || code.is_none() => ErrorKind::Configuration,
        _ => ErrorKind::Permanent,
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
