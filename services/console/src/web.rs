//! Routing, the security headers every answer carries, cookies, the viewer of a request (its
//! session and language) and the page layout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use crate::auth::Session;
use crate::texts::{t, Lang};
use crate::{pages, store_pages, AppState};

pub const SESSION_COOKIE: &str = "duellsync_session";
pub const FORM_COOKIE: &str = "duellsync_form";
pub const LANG_COOKIE: &str = "duellsync_lang";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/setup", get(pages::setup_page).post(pages::setup_submit))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/lang/{code}", get(pages::language))
        .route(
            "/invite/{token}",
            get(pages::invite_page).post(pages::invite_submit),
        )
        .route("/operator", get(pages::operator))
        .route("/operator/stores", post(pages::create_store))
        .route("/operator/stores/{store}/invite", post(pages::invite))
        .route("/stores/{store}", get(store_pages::store_home))
        .route(
            "/stores/{store}/settings",
            get(store_pages::settings_page).post(store_pages::settings_submit),
        )
        .route(
            "/stores/{store}/connection",
            get(store_pages::connection_page).post(store_pages::connection_submit),
        )
        .route(
            "/stores/{store}/test",
            get(store_pages::test_page).post(store_pages::test_submit),
        )
        .route(
            "/stores/{store}/sync",
            get(store_pages::sync_page).post(store_pages::sync_submit),
        )
        .route("/stores/{store}/sync/events", get(store_pages::sync_events))
        .route("/stores/{store}/status", get(store_pages::status_page))
        .route(
            "/stores/{store}/status/events",
            get(store_pages::status_events),
        )
        .route("/stores/{store}/log", get(store_pages::log_page))
        .route("/stores/{store}/log.csv", get(store_pages::log_csv))
        .route("/stores/{store}/dlq/{seq}", post(store_pages::dlq_action))
        .route("/stores/{store}/history", get(store_pages::history_page))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// CSP without inline script, no framing, no sniffing, no referrer to other sites, no caching
/// of pages that show store data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/console.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/console.css"),
    )
        .into_response()
}

async fn not_found(viewer: Viewer) -> Response {
    viewer.not_found()
}

/// The cookies of a request.
pub fn cookies(parts: &http::request::Parts) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for v in parts.headers.get_all(header::COOKIE) {
        if let Ok(s) = v.to_str() {
            for pair in s.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    out
}

/// Who is asking, in which language.
pub struct Viewer {
    pub lang: Lang,
    pub session: Option<Session>,
    pub session_id: Option<String>,
    /// The anonymous forms' double-submit token (login, invitation, first run).
    pub form_token: Option<String>,
    pub secure: bool,
    /// The client's address, for login throttling (see [`client_address`]).
    pub client: IpAddr,
}

/// The address of the client: the connection's peer, or with `trusted_proxy_hops` set, the
/// entry of `X-Forwarded-For` that the outermost trusted proxy appended (entries further left
/// are whatever the client wrote and are never trusted). Unknown: the unspecified address, one
/// bucket for all.
pub fn client_address(parts: &http::request::Parts, trusted_proxy_hops: usize) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if trusted_proxy_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return peer;
    }
    // Fewer entries than proxies: the leftmost was still written by a trusted proxy.
    let at = entries.len().saturating_sub(trusted_proxy_hops);
    entries[at].parse().unwrap_or(peer)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let c = cookies(parts);
        let lang = Lang::from_cookie(c.get(LANG_COOKIE).map(String::as_str));
        let session_id = c.get(SESSION_COOKIE).cloned();
        let session = match &session_id {
            Some(id) => match state.accounts.session(id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read sessions");
                    return Err(error_page(lang, StatusCode::SERVICE_UNAVAILABLE));
                }
            },
            None => None,
        };
        Ok(Viewer {
            lang,
            session,
            session_id,
            form_token: c.get(FORM_COOKIE).cloned(),
            secure: state.cfg.secure_cookies,
            client: client_address(parts, state.cfg.trusted_proxy_hops),
        })
    }
}

impl Viewer {
    pub fn t(&self, key: &str) -> &'static str {
        t(self.lang, key)
    }

    pub fn not_found(&self) -> Response {
        (
            StatusCode::NOT_FOUND,
            page(
                self,
                self.t("no_access"),
                None,
                "",
                html! { p { (self.t("no_access")) } },
            ),
        )
            .into_response()
    }

    /// The session allowed to use `store`, or the answer to give instead: the login page, or
    /// "not found" (a retailer never learns whether another store exists).
    pub fn for_store(&self, store: &str) -> Result<&Session, Response> {
        let Some(s) = &self.session else {
            return Err(Redirect::to("/login").into_response());
        };
        if !duellsync_events::is_valid_store_id(store) || !s.may_use(store) {
            return Err(self.not_found());
        }
        Ok(s)
    }

    pub fn operator(&self) -> Result<&Session, Response> {
        match &self.session {
            None => Err(Redirect::to("/login").into_response()),
            Some(s) if s.is_operator() => Ok(s),
            Some(_) => Err(self.not_found()),
        }
    }

    /// A state-changing request of a session: its CSRF token must match.
    pub fn csrf(&self, session: &Session, form: &HashMap<String, String>) -> Result<(), Response> {
        if session.csrf_ok(form.get("csrf").map(String::as_str).unwrap_or("")) {
            Ok(())
        } else {
            Err(forbidden(self.lang))
        }
    }

    /// An anonymous form: the field must repeat the form cookie.
    pub fn form_csrf(&self, form: &HashMap<String, String>) -> Result<(), Response> {
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        match &self.form_token {
            Some(c)
                if !sent.is_empty()
                    && subtle::ConstantTimeEq::ct_eq(c.as_bytes(), sent.as_bytes()).into() =>
            {
                Ok(())
            }
            _ => Err(forbidden(self.lang)),
        }
    }

    pub fn cookie(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie values are base64url")
    }
}

pub fn forbidden(lang: Lang) -> Response {
    (
        StatusCode::FORBIDDEN,
        match lang {
            Lang::Nb => {
                "Avvist: skjemaet er utløpt eller kom ikke fra denne siden. Last siden på nytt."
            }
            Lang::En => {
                "Refused: the form expired or did not come from this page. Reload the page."
            }
        },
    )
        .into_response()
}

pub fn error_page(lang: Lang, status: StatusCode) -> Response {
    (
        status,
        match lang {
            Lang::Nb => "Tjenesten er midlertidig utilgjengelig. Prøv igjen om litt.",
            Lang::En => "The service is unavailable for a moment. Try again shortly.",
        },
    )
        .into_response()
}

/// Logs an internal error with its cause and answers an opaque 503.
pub fn internal(lang: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console request failed");
    error_page(lang, StatusCode::SERVICE_UNAVAILABLE)
}

/// The store pages' tabs.
const TABS: [(&str, &str); 6] = [
    ("connection", "connection"),
    ("settings", "settings"),
    ("test", "test"),
    ("sync", "sync"),
    ("status", "status"),
    ("log", "log"),
];

/// The page shell: header with language and logout, the store's tabs, the body.
pub fn page(v: &Viewer, title: &str, store: Option<&str>, active: &str, body: Markup) -> Markup {
    let other = match v.lang {
        Lang::Nb => "en",
        Lang::En => "nb",
    };
    html! {
        (DOCTYPE)
        html lang=(v.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (v.t("title")) }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header class="top" {
                    a class="brand" href="/" { (v.t("title")) }
                    nav class="tools" aria-label=(v.t("account")) {
                        a href=(format!("/lang/{other}")) lang=(other) { (v.t("language")) }
                        @if let Some(s) = &v.session {
                            @if s.is_operator() {
                                a href="/operator" { (v.t("stores")) }
                            }
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (v.t("logout")) " (" (s.username) ")" }
                            }
                        }
                    }
                }
                @if let Some(store) = store {
                    nav class="tabs" aria-label=(store) {
                        span class="store" { (store) }
                        @for (path, key) in TABS {
                            @if path == active {
                                a href=(format!("/stores/{store}/{path}")) aria-current="page" { (v.t(key)) }
                            } @else {
                                a href=(format!("/stores/{store}/{path}")) { (v.t(key)) }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
