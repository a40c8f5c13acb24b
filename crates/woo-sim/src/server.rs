//! HTTP front: routing, authentication, faults, request accounting, the REST handlers and
//! the control API.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use duellsync_woo::oauth::{self, ParamValue, SignatureMethod};
use rand::Rng as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::faults::FaultKind;
use crate::json::J;
use crate::obj;
use crate::orders::{self, render_note, render_order};
use crate::products::{self, apply_write, render_product, render_variation, Ctx, Fetched, Mode};
use crate::store::{dec, parse_date, Order, Product, State, WpError};
use crate::tax;
use crate::webhooks::{self, render_webhook};
use crate::{Permissions, PlaceOrder, Shared};

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    https: bool,
}

pub(crate) fn router(shared: Arc<Shared>, https: bool) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(AppState { shared, https })
}

/// A response under construction.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    content_type: &'static str,
}

impl Resp {
    fn json(status: u16, j: &J) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            body: j.to_php(),
            content_type: "application/json; charset=UTF-8",
        }
    }
    fn err(e: &WpError) -> Self {
        Resp::json(e.status, &e.to_j())
    }
    fn html(status: u16, body: &str) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            content_type: "text/html; charset=UTF-8",
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn into_response(self, home: &str) -> Response {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("Content-Type", self.content_type);
        let has_link = self.headers.iter().any(|(k, _)| k == "Link");
        if !has_link && self.content_type.starts_with("application/json") {
            b = b.header(
                "Link",
                format!("<{home}/wp-json/>; rel=\"https://api.w.org/\""),
            );
        }
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::from("internal error")))
    }
}

/// Parsed query string, PHP-style.
#[derive(Clone, Debug, Default)]
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (oauth::form_decode(k), oauth::form_decode(v))
            })
            .collect();
        Query { pairs }
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// A list from `key=a,b` or `key[]=a&key[]=b`.
    fn list(&self, key: &str) -> Option<Vec<String>> {
        let arr: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{key}[")) && k.ends_with(']'))
            .map(|(_, v)| v.clone())
            .collect();
        if !arr.is_empty() {
            return Some(arr);
        }
        self.get(key).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

fn template(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Counts a request as being served until dropped, and keeps the peak (benchmarks read how
/// many requests a client really had in flight).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    AxState(app): AxState<AppState>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = app.shared.clone();
    let is_ssl = app.https
        || (shared.cfg.trust_forwarded_proto
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")));
    let home = if app.https {
        shared.home_https.get().cloned().unwrap_or_default()
    } else {
        shared.home_http()
    };
    let path = uri.path().to_string();
    if let Some(rest) = path.strip_prefix("/__sim/") {
        return control(&shared, &method, rest, &body)
            .await
            .into_response(&home);
    }
    let _in_flight = InFlight::enter(&shared);
    let query = Query::parse(uri.query());
    // Resolve the REST route: pretty permalinks, or ?rest_route= (never authenticated).
    let (route, via_rest_route) = if let Some(r) = path.strip_prefix("/wp-json/") {
        (r.to_string(), false)
    } else if let Some(r) = query.get("rest_route") {
        (r.trim_start_matches('/').to_string(), true)
    } else {
        return Resp::html(
            404,
            "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>",
        )
        .into_response(&home);
    };
    let segments: Vec<&str> = route.trim_end_matches('/').split('/').collect();
    let (version, rest): (String, Vec<&str>) = match segments.as_slice() {
        ["wc", v @ ("v3" | "v2"), rest @ ..] => (v.to_string(), rest.to_vec()),
        _ => (String::new(), Vec::new()),
    };
    let effective_method = query
        .get("_method")
        .map(str::to_ascii_uppercase)
        .or_else(|| {
            headers
                .get("x-http-method-override")
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_uppercase)
        })
        .filter(|_| method == Method::POST)
        .unwrap_or_else(|| method.as_str().to_string());
    let route_key = template(&rest);
    if let Ok(mut c) = shared.counts.lock() {
        *c.entry(format!("{effective_method} {route_key}"))
            .or_insert(0) += 1;
    }
    // Faults act like the host in front of WordPress.
    let mut hang_after = false;
    let mut answer_after = Duration::ZERO;
    let mut php_warning = false;
    let raw_query = uri.query().unwrap_or("");
    for fault in take_faults(&shared, &effective_method, &route_key, &path, raw_query) {
        match fault {
            FaultKind::Latency { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultKind::Hang => {
                tokio::time::sleep(shared.cfg.hang).await;
                return Resp::html(504, "gateway timeout").into_response(&home);
            }
            FaultKind::ServerError { status, html } => {
                return if html {
                    Resp::html(status, "<!DOCTYPE html><html><body><p>There has been a critical error on this website.</p></body></html>")
                } else {
                    Resp::err(&WpError::new(status, "internal_server_error", "<p>There has been a critical error on this website.</p>"))
                }
                .into_response(&home);
            }
            FaultKind::TooManyRequests { retry_after_secs } => {
                return Resp::html(429, "<html><body><h1>429 Too Many Requests</h1></body></html>")
                    .header("Retry-After", retry_after_secs.to_string())
                    .into_response(&home)
            }
            FaultKind::HtmlError { status } => {
                return Resp::html(status, "<html><head><title>Error</title></head><body><h1>Service unavailable</h1></body></html>")
                    .into_response(&home)
            }
            FaultKind::Redirect { status, location } => {
                return Resp::html(status, "")
                    .header("Location", location)
                    .into_response(&home)
            }
            FaultKind::StripAuth => {
                headers.remove("authorization");
            }
            FaultKind::HangAfterApply => hang_after = true,
            FaultKind::SlowAnswer { ms } => answer_after = Duration::from_millis(ms),
            FaultKind::PhpWarning => php_warning = true,
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let form: Vec<(String, String)> =
        if content_type.starts_with("application/x-www-form-urlencoded") {
            Query::parse(std::str::from_utf8(&body).ok()).pairs
        } else {
            Vec::new()
        };
    // Authentication, only for URIs containing wp-json/wc/.
    let auth = if via_rest_route || !path.contains("wp-json/wc/") {
        Auth::Guest
    } else {
        authenticate(
            &shared,
            is_ssl,
            method.as_str(),
            &format!("{home}{path}"),
            &headers,
            &query,
            &form,
        )
    };
    let perm = match auth {
        Auth::Error(e) => return Resp::err(&e).into_response(&home),
        Auth::Guest => None,
        Auth::User(p) => Some(p),
    };
    if version.is_empty() || !route_exists(&effective_method, &rest) {
        return Resp::err(&WpError::new(
            404,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        ))
        .into_response(&home);
    }
    let Some(perm) = perm else {
        return Resp::err(&guest_error(&effective_method, &rest)).into_response(&home);
    };
    let read = matches!(effective_method.as_str(), "GET" | "HEAD");
    let allowed = match perm {
        Permissions::ReadWrite => true,
        Permissions::Read => read,
        Permissions::Write => !read,
    };
    if !allowed {
        let which = if read { "read" } else { "write" };
        return Resp::err(&WpError::new(
            401,
            "woocommerce_rest_authentication_error",
            &format!("The API key provided does not have {which} permissions."),
        ))
        .into_response(&home);
    }
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else if content_type.contains("json") || content_type.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(_) => {
                return Resp::err(
                    &WpError::new(400, "rest_invalid_json", "Invalid JSON body passed.")
                        .with("json_error_code", J::Int(4))
                        .with("json_error_message", J::from("Syntax error")),
                )
                .into_response(&home)
            }
        }
    } else {
        Some(Value::Object(
            form.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ))
    };
    // WooCommerce renders reads in `view` context unless `context=edit` asks for stored values.
    let view = read && query.get("context") != Some("edit");
    let ctx = Ctx {
        home: home.clone(),
        version: version.clone(),
        view,
        offset: shared.cfg.site_utc_offset_secs,
        now: shared.now(),
    };
    let req = Req {
        method: effective_method,
        rest: rest.iter().map(|s| s.to_string()).collect(),
        query,
        body: json_body,
        ctx,
    };
    let resp = dispatch(&shared, &req).await;
    if hang_after {
        tokio::time::sleep(shared.cfg.hang).await;
    }
    if !answer_after.is_zero() {
        tokio::time::sleep(answer_after).await;
    }
    let mut resp = resp;
    if php_warning {
        resp.body = format!(
            "<br />\n<b>Warning</b>:  Undefined array key \"x\" in <b>/var/www/html/wp-content/plugins/some-plugin/plugin.php</b> on line <b>42</b><br />\n{}",
            resp.body
        );
    }
    resp.into_response(&home)
}

fn take_faults(
    shared: &Shared,
    method: &str,
    route: &str,
    path: &str,
    query: &str,
) -> Vec<FaultKind> {
    let Ok(mut rules) = shared.faults.lock() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in rules.iter_mut() {
        if !rule.matches(method, route, path, query) || rule.times == Some(0) {
            continue;
        }
        if let Some(p) = rule.probability {
            let hit = shared
                .rng
                .lock()
                .map(|mut r| r.random::<f64>() < p)
                .unwrap_or(false);
            if !hit {
                continue;
            }
        }
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        out.push(rule.kind.clone());
        // One terminal fault per request: later rules wait for the next request.
        let terminal = matches!(
            rule.kind,
            FaultKind::Hang
                | FaultKind::ServerError { .. }
                | FaultKind::TooManyRequests { .. }
                | FaultKind::HtmlError { .. }
                | FaultKind::Redirect { .. }
        );
        if terminal {
            break;
        }
    }
    rules.retain(|r| r.times != Some(0));
    out
}

enum Auth {
    User(Permissions),
    Guest,
    Error(WpError),
}

fn auth_err(msg: &str) -> Auth {
    Auth::Error(WpError::new(
        401,
        "woocommerce_rest_authentication_error",
        msg,
    ))
}

fn authenticate(
    shared: &Shared,
    is_ssl: bool,
    real_method: &str,
    base_uri: &str,
    headers: &HeaderMap,
    query: &Query,
    form: &[(String, String)],
) -> Auth {
    let keys = &shared.cfg.keys;
    let authz = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_ssl {
        let creds = match (query.get("consumer_key"), query.get("consumer_secret")) {
            (Some(k), Some(s)) => Some((k.to_string(), s.to_string())),
            _ => authz.strip_prefix("Basic ").and_then(|b| {
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()?;
                let s = String::from_utf8(raw).ok()?;
                let (k, v) = s.split_once(':')?;
                Some((k.to_string(), v.to_string()))
            }),
        };
        if let Some((k, s)) = creds {
            if let Some(key) = keys.iter().find(|x| x.consumer_key == k) {
                if bool::from(key.consumer_secret.as_bytes().ct_eq(s.as_bytes())) {
                    return Auth::User(key.permissions);
                }
                return auth_err("Consumer secret is invalid.");
            }
        }
    }
    // OAuth 1.0a: query ∪ form ∪ Authorization header oauth_* (header wins).
    let mut pairs: Vec<(String, String)> = query.pairs.clone();
    pairs.extend(form.iter().cloned());
    if let Some(h) = oauth::parse_authorization_header(authz) {
        for (k, v) in h {
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
        }
    }
    let params = oauth::php_params(pairs);
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .and_then(|(_, v)| match v {
                ParamValue::Scalar(s) => Some(s.clone()),
                ParamValue::Array(_) => None,
            })
    };
    let required = [
        "oauth_consumer_key",
        "oauth_timestamp",
        "oauth_nonce",
        "oauth_signature",
        "oauth_signature_method",
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| get(k).is_none())
        .collect();
    if missing.len() == required.len() {
        return Auth::Guest;
    }
    if !missing.is_empty() {
        return Auth::Error(WpError::new(
            401,
            "woocommerce_rest_authentication_missing_parameter",
            &format!("Missing OAuth parameters {}", missing.join(", ")),
        ));
    }
    let ck = get("oauth_consumer_key").unwrap_or_default();
    let Some(key) = keys.iter().find(|k| k.consumer_key == ck) else {
        return auth_err("Consumer key is invalid.");
    };
    let Some(sig_method) =
        SignatureMethod::parse(&get("oauth_signature_method").unwrap_or_default())
    else {
        return auth_err("Invalid signature - signature method is invalid.");
    };
    let given = oauth::raw_decode(&get("oauth_signature").unwrap_or_default().replace(' ', "+"));
    let signed: Vec<(String, ParamValue)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .cloned()
        .collect();
    let base = oauth::base_string(real_method, base_uri, &signed);
    let expected = oauth::signature(sig_method, &key.consumer_secret, &base);
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return auth_err("Invalid signature - provided signature does not match.");
    }
    // The ±900 s window uses real time: the simulator's clock offset only moves store time.
    let now = shared.now() - shared.clock_offset.load(Ordering::SeqCst);
    let Some(ts) = get("oauth_timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return auth_err("Invalid timestamp.");
    };
    if (now - ts).abs() > 900 {
        return auth_err("Invalid timestamp.");
    }
    let nonce = get("oauth_nonce").unwrap_or_default();
    if let Ok(mut state) = shared.state.lock() {
        let used = state.nonces.entry(ck.clone()).or_default();
        used.retain(|t, _| *t > now - 900);
        if used.values().any(|n| *n == nonce) {
            return auth_err("Invalid nonce - nonce has already been used.");
        }
        used.insert(ts, nonce);
    }
    Auth::User(key.permissions)
}

fn route_exists(method: &str, rest: &[&str]) -> bool {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let write = matches!(method, "POST" | "PUT" | "PATCH");
    match rest {
        ["products"] | ["orders"] | ["webhooks"] | ["products", "categories"] => {
            matches!(method, "GET" | "POST")
        }
        ["products", "batch"] | ["orders", "batch"] => write,
        ["products", id] | ["orders", id] | ["webhooks", id] | ["products", "categories", id]
            if num(id) =>
        {
            matches!(method, "GET" | "DELETE") || write
        }
        ["products", id, "variations"] | ["orders", id, "notes"] if num(id) => {
            matches!(method, "GET" | "POST")
        }
        ["products", id, "variations", "batch"] if num(id) => write,
        ["products", id, "variations", vid] if num(id) && num(vid) => {
            matches!(method, "GET" | "DELETE") || write
        }
        ["orders", id, "notes", nid] if num(id) && num(nid) => matches!(method, "GET" | "DELETE"),
        ["settings", _group, _id] => method == "GET" || write,
        ["taxes"] | ["taxes", "classes"] => method == "GET",
        ["taxes", id] if num(id) => method == "GET",
        ["system_status"] => method == "GET",
        _ => false,
    }
}

fn guest_error(method: &str, rest: &[&str]) -> WpError {
    let collection = rest.len() == 1
        || rest
            .last()
            .is_some_and(|s| !s.bytes().all(|b| b.is_ascii_digit()));
    if rest.last() == Some(&"batch") {
        return WpError::new(
            401,
            "woocommerce_rest_cannot_batch",
            "Sorry, you are not allowed to batch manipulate this resource.",
        );
    }
    match method {
        "GET" | "HEAD" if collection => WpError::new(
            401,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot list resources.",
        ),
        "GET" | "HEAD" => WpError::new(
            401,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot view this resource.",
        ),
        "POST" if collection => WpError::new(
            401,
            "woocommerce_rest_cannot_create",
            "Sorry, you are not allowed to create resources.",
        ),
        "DELETE" => WpError::new(
            401,
            "woocommerce_rest_cannot_delete",
            "Sorry, you are not allowed to delete this resource.",
        ),
        _ => WpError::new(
            401,
            "woocommerce_rest_cannot_edit",
            "Sorry, you are not allowed to edit this resource.",
        ),
    }
}

#[derive(Clone)]
struct Req {
    method: String,
    rest: Vec<String>,
    query: Query,
    body: Option<Value>,
    ctx: Ctx,
}

impl Req {
    fn body_obj(&self) -> Map<String, Value> {
        match &self.body {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }
    fn id(&self, i: usize) -> u64 {
        self.rest.get(i).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

async fn dispatch(shared: &Arc<Shared>, req: &Req) -> Resp {
    let r: Vec<&str> = req.rest.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let result = match (m, r.as_slice()) {
        ("GET", ["products"]) => list_products(shared, req, None),
        ("POST", ["products"]) => create_product(shared, req, None).await,
        (_, ["products", "batch"]) => detached_batch(shared, req, None).await,
        ("GET", ["products", "categories"]) => list_categories(shared, req),
        ("POST", ["products", "categories"]) => create_category(shared, req),
        ("GET", ["products", "categories", _]) => get_category(shared, req),
        ("DELETE", ["products", "categories", _]) => delete_category(shared, req),
        ("GET", ["products", _]) => get_product(shared, req, req.id(1), None),
        ("DELETE", ["products", _]) => delete_product(shared, req, req.id(1), None),
        (_, ["products", _]) => update_product(shared, req, req.id(1), None).await,
        ("GET", ["products", _, "variations"]) => list_products(shared, req, Some(req.id(1))),
        ("POST", ["products", _, "variations"]) => {
            create_product(shared, req, Some(req.id(1))).await
        }
        (_, ["products", _, "variations", "batch"]) => {
            detached_batch(shared, req, Some(req.id(1))).await
        }
        ("GET", ["products", _, "variations", _]) => {
            get_product(shared, req, req.id(3), Some(req.id(1)))
        }
        ("DELETE", ["products", _, "variations", _]) => {
            delete_product(shared, req, req.id(3), Some(req.id(1)))
        }
        (_, ["products", _, "variations", _]) => {
            update_product(shared, req, req.id(3), Some(req.id(1))).await
        }
        ("GET", ["orders"]) => list_orders(shared, req),
        ("POST", ["orders"]) => create_order(shared, req),
        ("GET", ["orders", _]) => get_order(shared, req),
        ("DELETE", ["orders", _]) => delete_order(shared, req),
        (_, ["orders", "batch"]) => batch_orders(shared, req),
        (_, ["orders", _]) => update_order(shared, req),
        ("GET", ["orders", _, "notes"]) => list_notes(shared, req),
        ("POST", ["orders", _, "notes"]) => create_note(shared, req),
        ("GET", ["orders", _, "notes", _]) | ("DELETE", ["orders", _, "notes", _]) => {
            note_item(shared, req)
        }
        ("GET", ["webhooks"]) => list_webhooks(shared, req),
        ("POST", ["webhooks"]) => create_webhook(shared, req).await,
        ("GET", ["webhooks", _]) => get_webhook(shared, req),
        ("DELETE", ["webhooks", _]) => delete_webhook(shared, req),
        (_, ["webhooks", _]) => update_webhook(shared, req).await,
        ("GET", ["settings", group, id]) => get_setting(shared, req, group, id),
        ("GET", ["taxes"]) => list_tax_rates(shared, req),
        ("GET", ["taxes", "classes"]) => list_tax_classes(shared, req),
        ("GET", ["taxes", _]) => get_tax_rate(shared, req),
        ("GET", ["system_status"]) => system_status(shared, req),
        _ => Err(WpError::new(
            404,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => Resp::err(&e),
    }
}

fn lock(shared: &Shared) -> Result<std::sync::MutexGuard<'_, State>, WpError> {
    shared
        .state
        .lock()
        .map_err(|_| WpError::new(500, "internal_server_error", "state poisoned"))
}

fn fields_of(q: &Query) -> Option<Vec<String>> {
    q.get("_fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn parse_bool_param(q: &Query, key: &str) -> Result<bool, WpError> {
    match q.get(key) {
        None => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0" | "") => Ok(false),
        Some(_) => Err(WpError::invalid_param(
            key,
            "rest_invalid_type",
            &format!("{key} is not of type boolean."),
        )),
    }
}

struct Paging {
    page: u64,
    per_page: u64,
    offset: Option<u64>,
}

fn paging(q: &Query) -> Result<Paging, WpError> {
    let bounds = |key: &str, msg: String| {
        let mut e = WpError::new(
            400,
            "rest_invalid_param",
            &format!("Invalid parameter(s): {key}"),
        );
        e.extra
            .push(("params".into(), obj! { key => msg.as_str() }));
        e.extra.push((
            "details".into(),
            obj! { key => obj!{ "code" => "rest_out_of_bounds", "message" => msg.as_str(), "data" => J::Null } },
        ));
        e
    };
    let int = |key: &str| -> Result<Option<i64>, WpError> {
        match q.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                WpError::invalid_param(
                    key,
                    "rest_invalid_type",
                    &format!("{key} is not of type integer."),
                )
            }),
        }
    };
    let per_page = int("per_page")?.unwrap_or(10);
    if !(1..=100).contains(&per_page) {
        return Err(bounds(
            "per_page",
            "per_page must be between 1 (inclusive) and 100 (inclusive)".into(),
        ));
    }
    let page = int("page")?.unwrap_or(1);
    if page < 1 {
        return Err(bounds(
            "page",
            "page must be greater than or equal to 1".into(),
        ));
    }
    let offset = int("offset")?.map(|o| o.max(0) as u64);
    Ok(Paging {
        page: page as u64,
        per_page: per_page as u64,
        offset,
    })
}

/// A date filter in "column units": see the module notes in `store::parse_date`.
fn date_filter(q: &Query, key: &str, offset: i64, gmt: bool) -> Result<Option<i64>, WpError> {
    let Some(v) = q.get(key) else {
        return Ok(None);
    };
    let bad = || {
        let mut e = WpError::invalid_param(key, "rest_invalid_date", "Invalid date.");
        e.extra.retain(|(k, _)| k != "details");
        e.extra.push((
            "details".into(),
            obj! { key => obj!{ "code" => "rest_invalid_date", "message" => "Invalid date.", "data" => J::Null } },
        ));
        e
    };
    if v.trim().len() < 19 {
        return Err(bad());
    }
    let (t, had_offset) = parse_date(v, 0).ok_or_else(bad)?;
    // WordPress converts a value carrying an offset into site time before comparing, even
    // when dates_are_gmt points the comparison at the GMT column (7.9 behaviour).
    let wall = if had_offset { t + offset } else { t };
    Ok(Some(if gmt { wall } else { wall - offset }))
}

fn page_headers(mut resp: Resp, req: &Req, total: u64, paging: &Paging) -> Resp {
    let pages = total.div_ceil(paging.per_page);
    resp = resp
        .header("X-WP-Total", total.to_string())
        .header("X-WP-TotalPages", pages.to_string());
    let link_for = |page: u64| {
        let mut pairs: Vec<(String, String)> = req.query.pairs.clone();
        match pairs.iter_mut().find(|(k, _)| k == "page") {
            Some(p) => p.1 = page.to_string(),
            None => pairs.push(("page".into(), page.to_string())),
        }
        let qs: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", oauth::encode(k), oauth::encode(v)))
            .collect();
        format!(
            "{}/wp-json/wc/{}/{}?{}",
            req.ctx.home,
            req.ctx.version,
            req.rest.join("/"),
            qs.join("&")
        )
    };
    let mut links = Vec::new();
    if paging.page > 1 && pages > 0 {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            link_for((paging.page - 1).min(pages))
        ));
    }
    if paging.page < pages {
        links.push(format!("<{}>; rel=\"next\"", link_for(paging.page + 1)));
    }
    if !links.is_empty() {
        resp = resp.header("Link", links.join(", "));
    }
    resp
}

fn tie_key(id: u64, salt: u64) -> u64 {
    let mut h = DefaultHasher::new();
    (id, salt).hash(&mut h);
    h.finish()
}

#[allow(clippy::too_many_arguments)]
fn sort_rows<T>(
    rows: &mut [&T],
    orderby: &str,
    desc: bool,
    include: &[u64],
    id: impl Fn(&T) -> u64,
    date: impl Fn(&T) -> i64,
    modified: impl Fn(&T) -> i64,
    title: impl Fn(&T) -> String,
    tie_salt: Option<u64>,
) {
    rows.sort_by(|a, b| {
        let primary = match orderby {
            "id" => id(a).cmp(&id(b)),
            "modified" => modified(a).cmp(&modified(b)),
            "title" => title(a).cmp(&title(b)),
            "include" => {
                let pos = |x: u64| include.iter().position(|i| *i == x).unwrap_or(usize::MAX);
                return pos(id(a)).cmp(&pos(id(b)));
            }
            _ => date(a).cmp(&date(b)),
        };
        let primary = if desc { primary.reverse() } else { primary };
        primary.then_with(|| match tie_salt {
            // No id tie-break: rows sharing a timestamp come back in a per-page order.
            Some(salt) if orderby != "id" => tie_key(id(a), salt).cmp(&tie_key(id(b), salt)),
            _ => {
                let t = id(a).cmp(&id(b));
                if desc {
                    t.reverse()
                } else {
                    t
                }
            }
        })
    });
}

fn list_products(shared: &Shared, req: &Req, parent: Option<u64>) -> Result<Resp, WpError> {
    let q = &req.query;
    let paging = paging(q)?;
    let gmt = parse_bool_param(q, "dates_are_gmt")?;
    let off = req.ctx.offset;
    let modified_after = date_filter(q, "modified_after", off, gmt)?;
    let modified_before = date_filter(q, "modified_before", off, gmt)?;
    let after = date_filter(q, "after", off, gmt)?;
    let before = date_filter(q, "before", off, gmt)?;
    let col = |ts: i64| if gmt { ts } else { ts + off } - if gmt { 0 } else { off };
    let include: Vec<u64> = q
        .list("include")
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let exclude: Vec<u64> = q
        .list("exclude")
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let parents: Vec<u64> = q
        .list("parent")
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let skus: Option<Vec<String>> = q.get("sku").map(|s| {
        let mut v: Vec<String> = s.split(',').map(crate::store::normalise_sku).collect();
        v.push(crate::store::normalise_sku(s));
        v
    });
    let search_sku = q.get("search_sku").map(crate::store::normalise_sku);
    let status = q.get("status").unwrap_or("any").to_string();
    let kind = q.get("type").map(str::to_string);
    let stock_status = q.get("stock_status").map(str::to_string);
    let orderby = q.get("orderby").unwrap_or("date").to_string();
    let desc = q.get("order").unwrap_or("desc") != "asc";
    let state = lock(shared)?;
    let mut rows: Vec<&Product> = state
        .products
        .values()
        .filter(|p| match parent {
            Some(pid) => p.is_variation() && p.parent_id == pid,
            None => !p.is_variation() || skus.is_some() || search_sku.is_some(),
        })
        .filter(|p| match status.as_str() {
            "any" => !p.is_trashed(),
            s => p.status == s,
        })
        .filter(|p| include.is_empty() || include.contains(&p.id))
        .filter(|p| !exclude.contains(&p.id))
        .filter(|p| parents.is_empty() || parents.contains(&p.parent_id))
        .filter(|p| {
            skus.as_ref().is_none_or(|s| {
                !p.sku.is_empty() && s.contains(&crate::store::normalise_sku(&p.sku))
            })
        })
        .filter(|p| {
            search_sku
                .as_ref()
                .is_none_or(|s| crate::store::normalise_sku(&p.sku).contains(s.as_str()))
        })
        .filter(|p| kind.as_ref().is_none_or(|k| &p.kind == k))
        .filter(|p| stock_status.as_ref().is_none_or(|s| &p.stock_status == s))
        .filter(|p| modified_after.is_none_or(|t| col(p.modified) > t))
        .filter(|p| modified_before.is_none_or(|t| col(p.modified) < t))
        .filter(|p| after.is_none_or(|t| col(p.created) > t))
        .filter(|p| before.is_none_or(|t| col(p.created) < t))
        .collect();
    let salt = (shared.cfg.faithful_ordering && parent.is_none())
        .then(|| paging.page.wrapping_mul(0x9E37_79B9) ^ paging.per_page);
    sort_rows(
        &mut rows,
        &orderby,
        desc,
        &include,
        |p| p.id,
        |p| p.created,
        |p| p.modified,
        |p| p.name.clone(),
        salt,
    );
    let total = rows.len() as u64;
    let start = paging.offset.unwrap_or((paging.page - 1) * paging.per_page) as usize;
    let fields = fields_of(q);
    let items: Vec<J> = rows
        .iter()
        .skip(start)
        .take(paging.per_page as usize)
        .map(|p| {
            let j = if parent.is_some() {
                render_variation(&state, &req.ctx, p)
            } else {
                render_product(&state, &req.ctx, p)
            };
            match &fields {
                Some(f) => j.trim_fields(f, false, false),
                None => j,
            }
        })
        .collect();
    Ok(page_headers(
        Resp::json(200, &J::Arr(items)),
        req,
        total,
        &paging,
    ))
}

fn get_product(shared: &Shared, req: &Req, id: u64, parent: Option<u64>) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let p = state.products.get(&id).filter(|p| match parent {
        Some(_) => p.is_variation(),
        None => true,
    });
    let Some(p) = p else {
        let code = if parent.is_some() {
            "woocommerce_rest_product_variation_invalid_id"
        } else {
            "woocommerce_rest_product_invalid_id"
        };
        return Err(WpError::new(404, code, "Invalid ID."));
    };
    let j = if parent.is_some() {
        render_variation(&state, &req.ctx, p)
    } else {
        render_product(&state, &req.ctx, p)
    };
    let j = match fields_of(&req.query) {
        Some(f) => j.trim_fields(&f, false, true),
        None => j,
    };
    Ok(Resp::json(200, &j))
}

/// Downloads the `src` images of a write before the store lock is taken.
async fn prefetch_images(shared: &Shared, body: &Map<String, Value>) -> Vec<Option<Fetched>> {
    let entries: Vec<Value> = match (body.get("images"), body.get("image")) {
        (Some(Value::Array(a)), _) => a.clone(),
        (_, Some(v @ Value::Object(_))) => vec![v.clone()],
        _ => return Vec::new(),
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let id = e.get("id").and_then(Value::as_u64).unwrap_or(0);
        let src = e.get("src").and_then(Value::as_str).unwrap_or("");
        if id > 0 || src.is_empty() {
            out.push(None);
            continue;
        }
        out.push(Some(fetch_image(shared, src).await));
    }
    out
}

async fn fetch_image(shared: &Shared, src: &str) -> Fetched {
    if !shared.outgoing_allowed(src) {
        return Fetched::Err("A valid URL was not provided.".into());
    }
    let Ok(url) = url::Url::parse(src) else {
        return Fetched::Err("A valid URL was not provided.".into());
    };
    let file = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
        .to_string();
    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let allowed = [
        "jpg", "jpeg", "jpe", "gif", "png", "bmp", "tif", "tiff", "ico", "webp",
    ];
    if !ext.as_deref().is_some_and(|e| allowed.contains(&e)) {
        return Fetched::Err(
            "Invalid image: Sorry, you are not allowed to upload this file type.".into(),
        );
    }
    match shared
        .http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(_) => Fetched::Ok(file),
            Err(e) => Fetched::Err(format!("cURL error 56: {e}")),
        },
        Ok(r) => Fetched::Err(r.status().canonical_reason().unwrap_or("Error").to_string()),
        Err(_) => Fetched::Err("cURL error 7: Failed to connect".into()),
    }
}

async fn create_product(
    shared: &Arc<Shared>,
    req: &Req,
    parent: Option<u64>,
) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let fetched = prefetch_images(shared, &body).await;
    let (j, id) = {
        let mut state = lock(shared)?;
        let id =
            create_product_locked(&mut state, &body, Mode::Single, &fetched, &req.ctx, parent)?;
        let p = state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| WpError::new(500, "internal_server_error", "lost"))?;
        let mut ctx = req.ctx.clone();
        ctx.view = false;
        let j = if parent.is_some() {
            render_variation(&state, &ctx, &p)
        } else {
            render_product(&state, &ctx, &p)
        };
        (j, id)
    };
    webhooks::enqueue(shared, &[("product.created".into(), id)]);
    let location = match parent {
        Some(_) => format!(
            "{}/wp-json/wc/{}/products/(?P<product_id>[\\d]+)/variations/{id}",
            req.ctx.home, req.ctx.version
        ),
        None => format!(
            "{}/wp-json/wc/{}/products/{id}",
            req.ctx.home, req.ctx.version
        ),
    };
    Ok(Resp::json(201, &j).header("Location", location))
}

fn create_product_locked(
    state: &mut State,
    body: &Map<String, Value>,
    mode: Mode,
    fetched: &[Option<Fetched>],
    ctx: &Ctx,
    parent: Option<u64>,
) -> Result<u64, WpError> {
    if body
        .get("id")
        .and_then(Value::as_u64)
        .is_some_and(|i| i > 0)
    {
        return Err(WpError::new(
            400,
            if parent.is_some() {
                "woocommerce_rest_product_variation_exists"
            } else {
                "woocommerce_rest_product_exists"
            },
            "Cannot create existing product.",
        ));
    }
    if let Some(pid) = parent {
        if state.products.get(&pid).is_none_or(|p| p.is_variation()) {
            return Err(WpError::new(
                404,
                "woocommerce_rest_product_invalid_id",
                "Invalid ID.",
            ));
        }
    }
    let mut p = Product::new(0, ctx.now);
    if let Some(pid) = parent {
        p.kind = "variation".into();
        p.parent_id = pid;
    }
    apply_write(
        state, &mut p, body, mode, fetched, &ctx.home, ctx.now, ctx.offset,
    )?;
    // Schema defaults of a create.
    if parent.is_none() {
        if p.categories.is_empty() {
            p.categories = vec![crate::store::UNCATEGORIZED];
        }
        if p.name.is_empty() && !body.contains_key("name") {
            p.name = "Product".into();
        }
    }
    p.recompute_price(ctx.now);
    let id = state.post_id();
    p.id = id;
    p.created = ctx.now;
    p.modified = ctx.now;
    if parent.is_none() {
        p.slug = state.unique_slug(&crate::store::slugify(&p.name), id);
    }
    if p.stock_quantity.is_some() {
        state.record_stock_change(&p);
    }
    state.put_product(p);
    if let Some(pid) = parent {
        products::sync_parent(state, pid);
    }
    Ok(id)
}

fn update_product_locked(
    state: &mut State,
    id: u64,
    body: &Map<String, Value>,
    mode: Mode,
    fetched: &[Option<Fetched>],
    ctx: &Ctx,
    parent: Option<u64>,
) -> Result<(), WpError> {
    let existing = state.products.get(&id).cloned();
    let mut p = match (existing, parent) {
        (Some(p), None) if p.is_variation() => {
            return Err(WpError::new(
                404,
                "woocommerce_rest_invalid_product_id",
                &format!("To manipulate product variations you should use the /products/{}/variations/{} endpoint.", p.parent_id, p.id),
            ))
        }
        (Some(p), Some(pid)) if p.is_variation() => {
            if p.parent_id != pid {
                return Err(WpError::new(403, "woocommerce_rest_cannot_edit", "Parent product does not match current variation."));
            }
            p
        }
        (Some(p), None) => p,
        _ => {
            let code = if parent.is_some() {
                "woocommerce_rest_product_variation_invalid_id"
            } else {
                "woocommerce_rest_product_invalid_id"
            };
            return Err(WpError::new(400, code, "Invalid ID."));
        }
    };
    let stock_before = p.stock_quantity;
    apply_write(
        state, &mut p, body, mode, fetched, &ctx.home, ctx.now, ctx.offset,
    )?;
    if p.slug.is_empty() && !p.is_variation() {
        p.slug = state.unique_slug(&crate::store::slugify(&p.name), id);
    }
    if p.stock_quantity != stock_before {
        state.record_stock_change(&p);
    }
    let pid = p.parent_id;
    let is_var = p.is_variation();
    state.put_product(p);
    if is_var {
        products::sync_parent(state, pid);
    }
    Ok(())
}

async fn update_product(
    shared: &Arc<Shared>,
    req: &Req,
    id: u64,
    parent: Option<u64>,
) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let fetched = prefetch_images(shared, &body).await;
    let j = {
        let mut state = lock(shared)?;
        update_product_locked(
            &mut state,
            id,
            &body,
            Mode::Single,
            &fetched,
            &req.ctx,
            parent,
        )?;
        let p = state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| WpError::new(500, "internal_server_error", "lost"))?;
        let mut ctx = req.ctx.clone();
        ctx.view = false;
        if parent.is_some() {
            render_variation(&state, &ctx, &p)
        } else {
            render_product(&state, &ctx, &p)
        }
    };
    webhooks::enqueue(shared, &[("product.updated".into(), id)]);
    Ok(Resp::json(200, &j))
}

fn delete_product(
    shared: &Arc<Shared>,
    req: &Req,
    id: u64,
    parent: Option<u64>,
) -> Result<Resp, WpError> {
    let force = parse_bool_param(&req.query, "force")?;
    let (j, event) = {
        let mut state = lock(shared)?;
        let Some(p) = state.products.get(&id).cloned() else {
            return Err(WpError::new(
                404,
                "woocommerce_rest_product_invalid_id",
                "Invalid ID.",
            ));
        };
        if parent.is_none() && p.is_variation() {
            return Err(WpError::new(
                404,
                "woocommerce_rest_invalid_product_id",
                "Invalid ID.",
            ));
        }
        let mut ctx = req.ctx.clone();
        ctx.view = false;
        let j = if parent.is_some() {
            render_variation(&state, &ctx, &p)
        } else {
            render_product(&state, &ctx, &p)
        };
        if force {
            state.products.remove(&id);
            let children: Vec<u64> = state
                .products
                .values()
                .filter(|c| c.parent_id == id && c.is_variation())
                .map(|c| c.id)
                .collect();
            for c in children {
                state.products.remove(&c);
            }
            (j, None)
        } else {
            if p.is_trashed() {
                return Err(WpError::new(
                    410,
                    "woocommerce_rest_already_trashed",
                    "The product has already been deleted.",
                ));
            }
            if let Some(stored) = state.products.get_mut(&id) {
                stored.trashed_from = Some(stored.status.clone());
                stored.status = "trash".into();
            }
            (j, Some(("product.deleted".to_string(), id)))
        }
    };
    if let Some(e) = event {
        webhooks::enqueue(shared, &[e]);
    }
    Ok(Resp::json(200, &j))
}

/// Runs a batch to its end whatever happens to the connection: PHP keeps executing a request
/// after the client timed out or went away (a real batch create of 100 products takes ~20 s),
/// so a client that gave up cannot know how much of its batch was applied.
async fn detached_batch(
    shared: &Arc<Shared>,
    req: &Req,
    parent: Option<u64>,
) -> Result<Resp, WpError> {
    let shared = shared.clone();
    let req = req.clone();
    tokio::spawn(async move { batch_products(&shared, &req, parent).await })
        .await
        .unwrap_or_else(|e| {
            Err(WpError::new(
                500,
                "internal_server_error",
                &format!("batch failed: {e}"),
            ))
        })
}

async fn batch_products(
    shared: &Arc<Shared>,
    req: &Req,
    parent: Option<u64>,
) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let list = |k: &str| match body.get(k) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let (creates, updates, deletes) = (list("create"), list("update"), list("delete"));
    if creates.len() + updates.len() + deletes.len() > 100 {
        return Err(WpError::new(
            413,
            "woocommerce_rest_request_entity_too_large",
            "Unable to accept more than 100 items for this request.",
        ));
    }
    if creates.is_empty() && updates.is_empty() && deletes.is_empty() {
        return Ok(Resp::json(200, &J::Arr(vec![])));
    }
    let mut ctx = req.ctx.clone();
    ctx.view = false;
    let render = |state: &State, id: u64| -> J {
        match state.products.get(&id) {
            Some(p) if parent.is_some() => render_variation(state, &ctx, p),
            Some(p) => render_product(state, &ctx, p),
            None => J::Null,
        }
    };
    let mut events = Vec::new();
    let mut out: Vec<(String, J)> = Vec::new();
    // No transaction: each item is handled on its own, in order (create, update, delete).
    if body.contains_key("create") {
        let mut results = Vec::new();
        for item in &creates {
            let mut obj = item.as_object().cloned().unwrap_or_default();
            let fetched = prefetch_images(shared, &obj).await;
            let item_time = shared.cfg.batch_item_time;
            // WooCommerce checks a new SKU's uniqueness when it reads the request, then downloads
            // images and saves: with `racy_sku_check`, two creates of one SKU that overlap in
            // that time both pass the check, as on a real store.
            let racy_sku = if shared.cfg.racy_sku_check && !item_time.is_zero() {
                match obj
                    .get("sku")
                    .and_then(Value::as_str)
                    .map(crate::store::wc_clean)
                {
                    Some(sku) if !sku.is_empty() => {
                        let taken = lock(shared)?.sku_owner(&sku, None).is_some();
                        if taken {
                            None
                        } else {
                            obj.remove("sku");
                            Some(sku)
                        }
                    }
                    _ => None,
                }
            } else {
                None
            };
            if !item_time.is_zero() {
                tokio::time::sleep(item_time).await;
            }
            let mut state = lock(shared)?;
            match create_product_locked(&mut state, &obj, Mode::Batch, &fetched, &req.ctx, parent) {
                Ok(id) => {
                    if let Some(sku) = racy_sku {
                        if let Some(mut p) = state.products.get(&id).cloned() {
                            p.sku = sku;
                            state.put_product(p);
                        }
                    }
                    results.push(render(&state, id));
                    events.push(("product.created".to_string(), id));
                }
                Err(e) => results.push(obj! { "id" => 0i64, "error" => e.to_j() }),
            }
        }
        out.push(("create".into(), J::Arr(results)));
    }
    if body.contains_key("update") {
        let mut results = Vec::new();
        for item in &updates {
            let obj = item.as_object().cloned().unwrap_or_default();
            let id = obj.get("id").and_then(Value::as_u64);
            let Some(id) = id else {
                let code = if parent.is_some() {
                    "woocommerce_rest_product_variation_invalid_id"
                } else {
                    "woocommerce_rest_product_invalid_id"
                };
                results.push(obj! { "id" => J::Null, "error" => WpError::new(400, code, "Invalid ID.").to_j() });
                continue;
            };
            let fetched = prefetch_images(shared, &obj).await;
            if !shared.cfg.batch_item_time.is_zero() {
                tokio::time::sleep(shared.cfg.batch_item_time).await;
            }
            let mut state = lock(shared)?;
            match update_product_locked(
                &mut state,
                id,
                &obj,
                Mode::Batch,
                &fetched,
                &req.ctx,
                parent,
            ) {
                Ok(()) => {
                    results.push(render(&state, id));
                    events.push(("product.updated".to_string(), id));
                }
                Err(e) => results.push(obj! { "id" => id, "error" => e.to_j() }),
            }
        }
        out.push(("update".into(), J::Arr(results)));
    }
    if body.contains_key("delete") {
        let mut results = Vec::new();
        let mut state = lock(shared)?;
        for item in &deletes {
            let id = match item {
                Value::Number(n) => n.as_u64().unwrap_or(0),
                Value::String(s) => s.parse().unwrap_or(0),
                Value::Object(o) => o.get("id").and_then(Value::as_u64).unwrap_or(0),
                _ => 0,
            };
            if id == 0 {
                continue;
            }
            match state.products.get(&id) {
                Some(p) if parent.is_none() || p.is_variation() => {
                    let j = render(&state, id);
                    state.products.remove(&id);
                    results.push(j);
                }
                _ => {
                    let code = if parent.is_some() {
                        "woocommerce_rest_product_variation_invalid_id"
                    } else {
                        "woocommerce_rest_product_invalid_id"
                    };
                    results.push(obj! { "id" => id, "error" => WpError::new(404, code, "Invalid ID.").to_j() });
                }
            }
        }
        out.push(("delete".into(), J::Arr(results)));
    }
    webhooks::enqueue(shared, &events);
    Ok(Resp::json(200, &J::Obj(out)))
}

fn list_categories(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let q = &req.query;
    let paging = paging(q)?;
    let state = lock(shared)?;
    let search = q.get("search").map(|s| s.to_lowercase());
    let parent: Option<u64> = q.get("parent").and_then(|p| p.parse().ok());
    let slug = q.get("slug");
    let mut rows: Vec<_> = state
        .categories
        .values()
        .filter(|c| {
            search.as_ref().is_none_or(|s| {
                crate::store::entity_decode(&c.name)
                    .to_lowercase()
                    .contains(s)
            })
        })
        .filter(|c| parent.is_none_or(|p| c.parent == p))
        .filter(|c| slug.is_none_or(|s| c.slug == s))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let total = rows.len() as u64;
    let items: Vec<J> = rows
        .iter()
        .skip(((paging.page - 1) * paging.per_page) as usize)
        .take(paging.per_page as usize)
        .map(|c| render_category(&state, &req.ctx, c))
        .collect();
    Ok(page_headers(
        Resp::json(200, &J::Arr(items)),
        req,
        total,
        &paging,
    ))
}

fn render_category(state: &State, ctx: &Ctx, c: &crate::store::Category) -> J {
    let count = state
        .products
        .values()
        .filter(|p| p.categories.contains(&c.id) && !p.is_trashed())
        .count() as i64;
    obj! {
        "id" => c.id, "name" => c.name.as_str(), "slug" => c.slug.as_str(), "parent" => c.parent,
        "description" => c.description.as_str(), "display" => "default", "image" => J::Null,
        "menu_order" => 0i64, "count" => count,
        "_links" => obj!{
            "self" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/products/categories/{}", ctx.home, ctx.version, c.id) }],
            "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/products/categories", ctx.home, ctx.version) }],
        },
    }
}

fn create_category(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    else {
        return Err(WpError::new(
            400,
            "rest_missing_callback_param",
            "Missing parameter(s): name",
        )
        .with("params", J::Arr(vec![J::from("name")])));
    };
    let parent = body.get("parent").and_then(Value::as_u64).unwrap_or(0);
    let mut state = lock(shared)?;
    let stored_name = crate::store::kses(name.trim());
    let decoded = crate::store::entity_decode(&stored_name).to_lowercase();
    if let Some(existing) = state.categories.values().find(|c| {
        c.parent == parent && crate::store::entity_decode(&c.name).to_lowercase() == decoded
    }) {
        return Err(WpError::new(
            400,
            "term_exists",
            "A term with the name provided already exists with this parent.",
        )
        .with("resource_id", J::from(existing.id)));
    }
    let base = body
        .get("slug")
        .and_then(Value::as_str)
        .map(crate::store::slugify)
        .unwrap_or_else(|| crate::store::slugify(name));
    let mut slug = base.clone();
    let mut n = 2;
    while state.categories.values().any(|c| c.slug == slug) {
        slug = format!("{base}-{n}");
        n += 1;
    }
    let id = state.next_term_id;
    state.next_term_id += 1;
    let c = crate::store::Category {
        id,
        name: stored_name,
        slug,
        parent,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
    };
    state.categories.insert(id, c.clone());
    let j = render_category(&state, &req.ctx, &c);
    Ok(Resp::json(201, &j).header(
        "Location",
        format!(
            "{}/wp-json/wc/{}/products/categories/{id}",
            req.ctx.home, req.ctx.version
        ),
    ))
}

fn get_category(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let c = state.categories.get(&req.id(2)).ok_or_else(|| {
        WpError::new(
            404,
            "woocommerce_rest_term_invalid",
            "Resource does not exist.",
        )
    })?;
    Ok(Resp::json(200, &render_category(&state, &req.ctx, c)))
}

fn delete_category(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    if !parse_bool_param(&req.query, "force")? {
        return Err(WpError::new(
            501,
            "woocommerce_rest_trash_not_supported",
            "Resource does not support trashing.",
        ));
    }
    let mut state = lock(shared)?;
    let id = req.id(2);
    if id == crate::store::UNCATEGORIZED {
        return Err(WpError::new(
            500,
            "woocommerce_rest_cannot_delete",
            "The resource cannot be deleted.",
        ));
    }
    let c = state.categories.get(&id).cloned().ok_or_else(|| {
        WpError::new(
            404,
            "woocommerce_rest_term_invalid",
            "Resource does not exist.",
        )
    })?;
    let j = render_category(&state, &req.ctx, &c);
    state.categories.remove(&id);
    for p in state.products.values_mut() {
        p.categories.retain(|x| *x != id);
        if p.categories.is_empty() && !p.is_variation() {
            p.categories.push(crate::store::UNCATEGORIZED);
        }
    }
    Ok(Resp::json(200, &j))
}

fn list_orders(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let q = &req.query;
    let paging = paging(q)?;
    let gmt = parse_bool_param(q, "dates_are_gmt")?;
    let off = req.ctx.offset;
    let modified_after = date_filter(q, "modified_after", off, gmt)?;
    let modified_before = date_filter(q, "modified_before", off, gmt)?;
    let after = date_filter(q, "after", off, gmt)?;
    let before = date_filter(q, "before", off, gmt)?;
    let col = |ts: i64| ts;
    let statuses: Vec<String> = match q.list("status") {
        Some(list) => {
            if req.ctx.version == "v2"
                && (list.len() > 1 || q.get("status").is_some_and(|s| s.contains(',')))
            {
                return Err(WpError::invalid_param("status", "rest_not_in_enum", "status is not one of any, trash, pending, processing, on-hold, completed, cancelled, refunded, failed and checkout-draft."));
            }
            for s in &list {
                if s != "any" && s != "trash" && !orders::STATUSES.contains(&s.as_str()) {
                    return Err(WpError::invalid_param(
                        "status",
                        "rest_not_in_enum",
                        &format!(
                            "status[0] is not one of any, trash, {}.",
                            orders::STATUSES.join(", ")
                        ),
                    ));
                }
            }
            list
        }
        None => vec!["any".into()],
    };
    let include: Vec<u64> = q
        .list("include")
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let orderby = q.get("orderby").unwrap_or("date").to_string();
    let desc = q.get("order").unwrap_or("desc") != "asc";
    let state = lock(shared)?;
    let shift = |ts: i64| if gmt { col(ts) } else { ts };
    let mut rows: Vec<&Order> = state
        .orders
        .values()
        .filter(|o| {
            statuses.iter().any(|s| match s.as_str() {
                "any" => o.status != "trash",
                s => o.status == s,
            })
        })
        .filter(|o| include.is_empty() || include.contains(&o.id))
        .filter(|o| modified_after.is_none_or(|t| shift(o.modified) > t))
        .filter(|o| modified_before.is_none_or(|t| shift(o.modified) < t))
        .filter(|o| after.is_none_or(|t| shift(o.created) > t))
        .filter(|o| before.is_none_or(|t| shift(o.created) < t))
        .collect();
    sort_rows(
        &mut rows,
        &orderby,
        desc,
        &include,
        |o| o.id,
        |o| o.created,
        |o| o.modified,
        |o| o.id.to_string(),
        None,
    );
    let total = rows.len() as u64;
    let start = paging.offset.unwrap_or((paging.page - 1) * paging.per_page) as usize;
    let fields = fields_of(q);
    let items: Vec<J> = rows
        .iter()
        .skip(start)
        .take(paging.per_page as usize)
        .map(|o| {
            let j = render_order(&state, &req.ctx, o);
            match &fields {
                Some(f) => j.trim_fields(f, true, false),
                None => j,
            }
        })
        .collect();
    Ok(page_headers(
        Resp::json(200, &J::Arr(items)),
        req,
        total,
        &paging,
    ))
}

fn get_order(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let o = state.orders.get(&req.id(1)).ok_or_else(|| {
        WpError::new(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
    })?;
    let j = render_order(&state, &req.ctx, o);
    let j = match fields_of(&req.query) {
        Some(f) => j.trim_fields(&f, true, true),
        None => j,
    };
    Ok(Resp::json(200, &j))
}

/// Creates an order from a REST body; returns its id and the products whose stock moved.
fn create_order_locked(
    state: &mut State,
    body: &Map<String, Value>,
    mode: Mode,
    now: i64,
    via: &str,
) -> Result<(u64, Vec<u64>), WpError> {
    if body
        .get("id")
        .and_then(Value::as_u64)
        .is_some_and(|i| i > 0)
    {
        return Err(WpError::new(
            400,
            "woocommerce_rest_shop_order_exists",
            "Cannot create existing order.",
        ));
    }
    let mut o = orders::new_order(state, now, via);
    let status = orders::apply_order_write(state, &mut o, body, mode, now)?;
    // save_object: a created order's totals (and taxes) are calculated before its status is set.
    tax::calculate_totals(state, &mut o);
    let mut touched = Vec::new();
    let set_paid = body
        .get("set_paid")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(s) = status {
        if s != "pending" {
            touched.extend(orders::set_status(state, &mut o, &s, now));
        }
    }
    if set_paid && matches!(o.status.as_str(), "pending" | "failed" | "on-hold") {
        touched.extend(orders::set_status(state, &mut o, "processing", now));
    }
    o.modified = now;
    let id = o.id;
    state.orders.insert(id, o);
    Ok((id, touched))
}

fn order_events(id: u64, touched: &[u64], created: bool) -> Vec<(String, u64)> {
    let mut ev = Vec::new();
    if created {
        ev.push(("order.created".to_string(), id));
    }
    ev.push(("order.updated".to_string(), id));
    ev.extend(touched.iter().map(|p| ("product.updated".to_string(), *p)));
    ev
}

fn create_order(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let (j, events, id) = {
        let mut state = lock(shared)?;
        let (id, touched) =
            create_order_locked(&mut state, &body, Mode::Single, req.ctx.now, "rest-api")?;
        let j = state
            .orders
            .get(&id)
            .map(|o| render_order(&state, &req.ctx, o))
            .unwrap_or(J::Null);
        (j, order_events(id, &touched, true), id)
    };
    webhooks::enqueue(shared, &events);
    Ok(Resp::json(201, &j).header(
        "Location",
        format!(
            "{}/wp-json/wc/{}/orders/{id}",
            req.ctx.home, req.ctx.version
        ),
    ))
}

fn update_order_locked(
    state: &mut State,
    id: u64,
    body: &Map<String, Value>,
    mode: Mode,
    now: i64,
) -> Result<Vec<u64>, WpError> {
    let Some(mut o) = state.orders.get(&id).cloned() else {
        return Err(WpError::new(
            400,
            "woocommerce_rest_shop_order_invalid_id",
            "Invalid ID.",
        ));
    };
    let status = orders::apply_order_write(state, &mut o, body, mode, now)?;
    // Totals are recalculated only when addresses or lines are sent (a status change keeps them).
    if [
        "billing",
        "shipping",
        "line_items",
        "shipping_lines",
        "fee_lines",
        "coupon_lines",
    ]
    .iter()
    .any(|k| body.contains_key(*k))
    {
        tax::calculate_totals(state, &mut o);
    }
    let mut touched = Vec::new();
    if let Some(s) = status {
        touched = orders::set_status(state, &mut o, &s, now);
    }
    if body
        .get("set_paid")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && matches!(o.status.as_str(), "pending" | "failed" | "on-hold")
    {
        touched.extend(orders::set_status(state, &mut o, "processing", now));
    }
    state.orders.insert(id, o);
    Ok(touched)
}

fn update_order(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let id = req.id(1);
    let body = req.body_obj();
    let (j, events) = {
        let mut state = lock(shared)?;
        let touched = update_order_locked(&mut state, id, &body, Mode::Single, req.ctx.now)?;
        let j = state
            .orders
            .get(&id)
            .map(|o| render_order(&state, &req.ctx, o))
            .unwrap_or(J::Null);
        (j, order_events(id, &touched, false))
    };
    // WordPress trims every REST answer to `_fields`, writes included.
    let j = match fields_of(&req.query) {
        Some(f) => j.trim_fields(&f, true, true),
        None => j,
    };
    // Every order PUT delivers order.updated, even `{}` or a repeated status.
    webhooks::enqueue(shared, &events);
    Ok(Resp::json(200, &j))
}

fn batch_orders(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let list = |k: &str| match body.get(k) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let (creates, updates, deletes) = (list("create"), list("update"), list("delete"));
    if creates.len() + updates.len() + deletes.len() > 100 {
        return Err(WpError::new(
            413,
            "woocommerce_rest_request_entity_too_large",
            "Unable to accept more than 100 items for this request.",
        ));
    }
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut state = lock(shared)?;
    let now = req.ctx.now;
    if body.contains_key("create") {
        let mut r = Vec::new();
        for item in &creates {
            let obj = item.as_object().cloned().unwrap_or_default();
            match create_order_locked(&mut state, &obj, Mode::Batch, now, "rest-api") {
                Ok((id, touched)) => {
                    r.push(
                        state
                            .orders
                            .get(&id)
                            .map(|o| render_order(&state, &req.ctx, o))
                            .unwrap_or(J::Null),
                    );
                    events.extend(order_events(id, &touched, true));
                }
                Err(e) => r.push(obj! { "id" => 0i64, "error" => e.to_j() }),
            }
        }
        out.push(("create".to_string(), J::Arr(r)));
    }
    if body.contains_key("update") {
        let mut r = Vec::new();
        for item in &updates {
            let obj = item.as_object().cloned().unwrap_or_default();
            let Some(id) = obj.get("id").and_then(Value::as_u64) else {
                r.push(obj! { "id" => J::Null, "error" => WpError::new(400, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.").to_j() });
                continue;
            };
            match update_order_locked(&mut state, id, &obj, Mode::Batch, now) {
                Ok(touched) => {
                    r.push(
                        state
                            .orders
                            .get(&id)
                            .map(|o| render_order(&state, &req.ctx, o))
                            .unwrap_or(J::Null),
                    );
                    events.extend(order_events(id, &touched, false));
                }
                Err(e) => r.push(obj! { "id" => id, "error" => e.to_j() }),
            }
        }
        out.push(("update".to_string(), J::Arr(r)));
    }
    if body.contains_key("delete") {
        let mut r = Vec::new();
        for item in &deletes {
            let id = item.as_u64().unwrap_or(0);
            if id == 0 {
                continue;
            }
            match state.orders.remove(&id) {
                Some(o) => r.push(render_order(&state, &req.ctx, &o)),
                None => r.push(obj! { "id" => id, "error" => WpError::new(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.").to_j() }),
            }
        }
        out.push(("delete".to_string(), J::Arr(r)));
    }
    drop(state);
    webhooks::enqueue(shared, &events);
    if out.is_empty() {
        return Ok(Resp::json(200, &J::Arr(vec![])));
    }
    Ok(Resp::json(200, &J::Obj(out)))
}

fn delete_order(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let force = parse_bool_param(&req.query, "force")?;
    let id = req.id(1);
    let (j, trashed) = {
        let mut state = lock(shared)?;
        let o = state.orders.get(&id).cloned().ok_or_else(|| {
            WpError::new(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        })?;
        let j = render_order(&state, &req.ctx, &o);
        if force {
            state.orders.remove(&id);
            state.notes.retain(|n| n.order_id != id);
            (j, false)
        } else {
            if o.status == "trash" {
                return Err(WpError::new(
                    410,
                    "woocommerce_rest_already_trashed",
                    "The order has already been deleted.",
                ));
            }
            if let Some(stored) = state.orders.get_mut(&id) {
                stored.trashed_from = Some(stored.status.clone());
                stored.status = "trash".into();
            }
            (j, true)
        }
    };
    if trashed {
        webhooks::enqueue(shared, &[("order.deleted".into(), id)]);
    }
    Ok(Resp::json(200, &j))
}

fn list_notes(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let id = req.id(1);
    if !state.orders.contains_key(&id) {
        return Err(WpError::new(
            404,
            "woocommerce_rest_shop_order_invalid_id",
            "Invalid order ID.",
        ));
    }
    let kind = req.query.get("type").unwrap_or("any");
    let mut notes: Vec<_> = state
        .notes
        .iter()
        .filter(|n| n.order_id == id)
        .filter(|n| match kind {
            "customer" => n.customer_note,
            "internal" => !n.customer_note,
            _ => true,
        })
        .collect();
    notes.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    Ok(Resp::json(
        200,
        &J::Arr(notes.iter().map(|n| render_note(&req.ctx, n)).collect()),
    ))
}

fn create_note(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let id = req.id(1);
    let Some(note) = body.get("note").and_then(Value::as_str) else {
        return Err(WpError::new(
            400,
            "rest_missing_callback_param",
            "Missing parameter(s): note",
        )
        .with("params", J::Arr(vec![J::from("note")])));
    };
    let mut state = lock(shared)?;
    if !state.orders.contains_key(&id) {
        return Err(WpError::new(
            404,
            "woocommerce_rest_shop_order_invalid_id",
            "Invalid order ID.",
        ));
    }
    let customer = body
        .get("customer_note")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut n = orders::add_note(&mut state, id, note, customer, req.ctx.now);
    if body
        .get("added_by_user")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        n.author = "admin".into();
        if let Some(stored) = state.notes.iter_mut().find(|x| x.id == n.id) {
            stored.author = "admin".into();
        }
    }
    // A note is a comment: no date_modified change, no order.updated.
    Ok(Resp::json(201, &render_note(&req.ctx, &n)).header(
        "Location",
        format!(
            "{}/wp-json/wc/{}/orders/{id}/notes/{}",
            req.ctx.home, req.ctx.version, n.id
        ),
    ))
}

fn note_item(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let mut state = lock(shared)?;
    let (oid, nid) = (req.id(1), req.id(3));
    let n = state
        .notes
        .iter()
        .find(|n| n.order_id == oid && n.id == nid)
        .cloned()
        .ok_or_else(|| {
            WpError::new(
                404,
                "woocommerce_rest_order_invalid_id",
                "Invalid resource ID.",
            )
        })?;
    if req.method == "DELETE" {
        if !parse_bool_param(&req.query, "force")? {
            return Err(WpError::new(
                501,
                "woocommerce_rest_trash_not_supported",
                "Webhooks do not support trashing.",
            ));
        }
        state.notes.retain(|x| x.id != nid);
    }
    Ok(Resp::json(200, &render_note(&req.ctx, &n)))
}

fn list_webhooks(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let paging = paging(&req.query)?;
    let status = req.query.get("status").unwrap_or("all");
    let state = lock(shared)?;
    let mut rows: Vec<_> = state
        .webhooks
        .values()
        .filter(|w| status == "all" || w.status == status)
        .collect();
    rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    let total = rows.len() as u64;
    let items: Vec<J> = rows
        .iter()
        .skip(((paging.page - 1) * paging.per_page) as usize)
        .take(paging.per_page as usize)
        .map(|w| render_webhook(&req.ctx, w))
        .collect();
    Ok(page_headers(
        Resp::json(200, &J::Arr(items)),
        req,
        total,
        &paging,
    ))
}

fn webhook_status(v: Option<&Value>) -> Result<Option<String>, WpError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ["active", "paused", "disabled"].contains(&s.as_str()) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(WpError::invalid_param(
            "status",
            "rest_not_in_enum",
            "status is not one of active, paused, and disabled.",
        )),
    }
}

fn valid_url(u: &str) -> bool {
    url::Url::parse(u)
        .is_ok_and(|x| matches!(x.scheme(), "http" | "https") && x.host_str().is_some())
}

async fn create_webhook(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let missing: Vec<&str> = ["topic", "delivery_url"]
        .into_iter()
        .filter(|k| !body.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(WpError::new(
            400,
            "rest_missing_callback_param",
            &format!("Missing parameter(s): {}", missing.join(", ")),
        )
        .with(
            "params",
            J::Arr(missing.iter().map(|m| J::from(*m)).collect()),
        ));
    }
    webhook_status(body.get("status"))?;
    let topic = body
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !webhooks::valid_topic(&topic) {
        return Err(WpError::new(
            400,
            "woocommerce_rest_shop_webhook_invalid_topic",
            "Webhook topic is required and must be valid.",
        ));
    }
    let url = body
        .get("delivery_url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !valid_url(&url) {
        return Err(WpError::new(
            400,
            "woocommerce_rest_shop_webhook_invalid_delivery_url",
            "Webhook delivery URL must be a valid URL starting with http:// or https://.",
        ));
    }
    let secret = match body.get("secret").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            let mut rng = shared
                .rng
                .lock()
                .map_err(|_| WpError::new(500, "internal_server_error", "rng"))?;
            (0..50)
                .map(|_| char::from(rng.random_range(33u8..127)))
                .collect()
        }
    };
    let (j, id) = {
        let mut state = lock(shared)?;
        let id = state.next_webhook_id;
        state.next_webhook_id += 1;
        let w = crate::store::Webhook {
            id,
            name: body
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "Webhook created on {}",
                        crate::store::fmt_date(req.ctx.now, req.ctx.offset)
                    )
                }),
            // The create path ignores the requested status.
            status: "active".into(),
            topic,
            delivery_url: url,
            secret: secret.clone(),
            api_version: if req.ctx.version == "v2" {
                "wp_api_v2".into()
            } else {
                "wp_api_v3".into()
            },
            failure_count: 0,
            pending_delivery: true,
            created: req.ctx.now,
            modified: None,
        };
        let j = render_webhook(&req.ctx, &w);
        state.webhooks.insert(id, w);
        (j, id)
    };
    webhooks::ping(shared, id).await;
    Ok(Resp::json(201, &j).header(
        "Location",
        format!(
            "{}/wp-json/wc/{}/webhooks/{id}",
            req.ctx.home, req.ctx.version
        ),
    ))
}

fn get_webhook(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let w = state.webhooks.get(&req.id(1)).ok_or_else(|| {
        WpError::new(
            400,
            "woocommerce_rest_shop_webhook_invalid_id",
            "ID is invalid.",
        )
    })?;
    Ok(Resp::json(200, &render_webhook(&req.ctx, w)))
}

async fn update_webhook(shared: &Arc<Shared>, req: &Req) -> Result<Resp, WpError> {
    let body = req.body_obj();
    let id = req.id(1);
    let status = webhook_status(body.get("status"))?;
    let needs_ping = {
        let mut state = lock(shared)?;
        let Some(w) = state.webhooks.get_mut(&id) else {
            return Err(WpError::new(
                400,
                "woocommerce_rest_shop_webhook_invalid_id",
                "ID is invalid.",
            ));
        };
        if let Some(t) = body.get("topic").and_then(Value::as_str) {
            if !webhooks::valid_topic(t) {
                return Err(WpError::new(
                    400,
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic is required and must be valid.",
                ));
            }
            w.topic = t.into();
        }
        if let Some(u) = body.get("delivery_url").and_then(Value::as_str) {
            if !valid_url(u) {
                return Err(WpError::new(
                    400,
                    "woocommerce_rest_shop_webhook_invalid_delivery_url",
                    "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                ));
            }
            if u != w.delivery_url {
                w.pending_delivery = true;
            }
            w.delivery_url = u.into();
        }
        if let Some(n) = body.get("name").and_then(Value::as_str) {
            w.name = n.into();
        }
        if let Some(s) = body.get("secret").and_then(Value::as_str) {
            w.secret = s.into();
        }
        if let Some(s) = status {
            if s == "active" && w.status != "active" {
                // Re-activation pings again; the failure count is kept.
                w.pending_delivery = true;
            }
            w.status = s;
        }
        w.modified = Some(req.ctx.now);
        w.pending_delivery && w.status == "active"
    };
    if needs_ping {
        webhooks::ping(shared, id).await;
    }
    let state = lock(shared)?;
    let w = state.webhooks.get(&id).ok_or_else(|| {
        WpError::new(
            400,
            "woocommerce_rest_shop_webhook_invalid_id",
            "ID is invalid.",
        )
    })?;
    Ok(Resp::json(200, &render_webhook(&req.ctx, w)))
}

fn delete_webhook(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    if !parse_bool_param(&req.query, "force")? {
        return Err(WpError::new(
            501,
            "woocommerce_rest_trash_not_supported",
            "Webhooks do not support trashing.",
        ));
    }
    let mut state = lock(shared)?;
    let w = state.webhooks.remove(&req.id(1)).ok_or_else(|| {
        WpError::new(
            404,
            "woocommerce_rest_shop_webhook_invalid_id",
            "Invalid ID.",
        )
    })?;
    Ok(Resp::json(200, &render_webhook(&req.ctx, &w)))
}

fn get_setting(shared: &Shared, req: &Req, group: &str, id: &str) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let s = &state.settings;
    let links = |g: &str, i: &str| {
        obj! {
            "self" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/settings/{g}/{i}", req.ctx.home, req.ctx.version) }],
            "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/settings/{g}", req.ctx.home, req.ctx.version) }],
        }
    };
    let j = match (group, id) {
        ("tax", "woocommerce_prices_include_tax") => obj! {
            "id" => id, "label" => "Prices entered with tax", "description" => "", "type" => "radio", "default" => "no",
            "options" => obj!{ "yes" => "Yes, I will enter prices inclusive of tax", "no" => "No, I will enter prices exclusive of tax" },
            "tip" => "This option is important as it will affect how you input prices. Changing it will not update existing products.",
            "value" => if s.prices_include_tax { "yes" } else { "no" }, "group_id" => "tax", "_links" => links(group, id),
        },
        ("general", "woocommerce_price_num_decimals") => obj! {
            "id" => id, "label" => "Number of decimals", "description" => "This sets the number of decimal points shown in displayed prices.",
            "type" => "number", "default" => "2", "tip" => "This sets the number of decimal points shown in displayed prices.",
            "value" => s.price_num_decimals.to_string(), "group_id" => "general", "_links" => links(group, id),
        },
        ("general", "woocommerce_currency") => obj! {
            "id" => id, "label" => "Currency", "type" => "select", "default" => "USD", "value" => s.currency.as_str(), "group_id" => "general", "_links" => links(group, id),
        },
        ("general", "woocommerce_calc_taxes") => obj! {
            "id" => id, "label" => "Enable taxes", "description" => "Enable tax rates and calculations", "type" => "checkbox", "default" => "no",
            "tip" => "Rates will be configurable and taxes will be calculated during checkout.",
            "value" => yes_no(s.calc_taxes), "group_id" => "general", "_links" => links(group, id),
        },
        ("general", "woocommerce_default_country") => obj! {
            "id" => id, "label" => "Country / State", "description" => "The country and state or province, if any, in which your business is located.",
            "type" => "select", "default" => "US:CA", "tip" => "The country and state or province, if any, in which your business is located.",
            "value" => s.default_country.as_str(), "group_id" => "general", "_links" => links(group, id),
        },
        ("tax", "woocommerce_tax_round_at_subtotal") => obj! {
            "id" => id, "label" => "Rounding", "description" => "Round tax at subtotal level, instead of rounding per line", "type" => "checkbox", "default" => "no",
            "value" => yes_no(s.tax_round_at_subtotal), "group_id" => "tax", "_links" => links(group, id),
        },
        ("tax", "woocommerce_shipping_tax_class") => {
            let mut options = vec![
                (
                    "inherit".to_string(),
                    J::from("Shipping tax class based on cart items"),
                ),
                (String::new(), J::from("Standard")),
            ];
            for (name, slug) in s.tax_classes.iter().zip(s.tax_class_slugs()) {
                options.push((slug, J::from(name.as_str())));
            }
            obj! {
                "id" => id, "label" => "Shipping tax class", "description" => "Optionally control which tax class shipping gets, or leave it so shipping tax is based on the cart items themselves.",
                "type" => "select", "default" => "inherit", "options" => J::Obj(options),
                "tip" => "Optionally control which tax class shipping gets, or leave it so shipping tax is based on the cart items themselves.",
                "value" => s.shipping_tax_class.as_str(), "group_id" => "tax", "_links" => links(group, id),
            }
        }
        ("tax", "woocommerce_tax_based_on") => obj! {
            "id" => id, "label" => "Calculate tax based on", "description" => "", "type" => "select", "default" => "shipping",
            "options" => obj!{ "shipping" => "Customer shipping address", "billing" => "Customer billing address", "base" => "Shop base address" },
            "tip" => "This option determines which address is used to calculate tax.",
            "value" => s.tax_based_on.as_str(), "group_id" => "tax", "_links" => links(group, id),
        },
        ("products", "woocommerce_manage_stock") => obj! {
            "id" => id, "label" => "Manage stock", "type" => "checkbox", "default" => "yes", "value" => if s.manage_stock { "yes" } else { "no" }, "group_id" => "products", "_links" => links(group, id),
        },
        _ => {
            return Err(WpError::new(
                404,
                "rest_setting_setting_invalid",
                "Invalid setting.",
            ))
        }
    };
    Ok(Resp::json(200, &j))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn render_tax_rate(req: &Req, order: usize, r: &crate::store::TaxRate) -> J {
    let mut rate = r.rate.round_dp(4);
    rate.rescale(4);
    obj! {
        "id" => r.id,
        "country" => r.country.as_str(),
        "state" => r.state.as_str(),
        "postcode" => "",
        "city" => "",
        "postcodes" => J::Arr(vec![]),
        "cities" => J::Arr(vec![]),
        "rate" => rate.to_string(),
        "name" => r.name.as_str(),
        "priority" => r.priority,
        "compound" => r.compound,
        "shipping" => r.shipping,
        "order" => order as u64,
        "class" => if r.class.is_empty() { "standard" } else { r.class.as_str() },
        "_links" => obj! {
            "self" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/taxes/{}", req.ctx.home, req.ctx.version, r.id) }],
            "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/taxes", req.ctx.home, req.ctx.version) }],
        },
    }
}

/// `GET /taxes`: the rate tables, `class=standard|<slug>` filters, paged like any list.
fn list_tax_rates(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let paging = paging(&req.query)?;
    let state = lock(shared)?;
    let class = req.query.get("class").map(|c| {
        if c == "standard" {
            String::new()
        } else {
            c.to_string()
        }
    });
    let rows: Vec<(usize, &crate::store::TaxRate)> = state
        .settings
        .tax_rates
        .iter()
        .enumerate()
        .filter(|(_, r)| class.as_ref().is_none_or(|c| *c == r.class))
        .collect();
    let total = rows.len() as u64;
    let start = paging.offset.unwrap_or((paging.page - 1) * paging.per_page) as usize;
    let items: Vec<J> = rows
        .iter()
        .skip(start)
        .take(paging.per_page as usize)
        .map(|(i, r)| render_tax_rate(req, *i, r))
        .collect();
    Ok(page_headers(
        Resp::json(200, &J::Arr(items)),
        req,
        total,
        &paging,
    ))
}

fn get_tax_rate(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let id = req.id(1);
    let found = state
        .settings
        .tax_rates
        .iter()
        .enumerate()
        .find(|(_, r)| r.id == id);
    match found {
        Some((i, r)) => Ok(Resp::json(200, &render_tax_rate(req, i, r))),
        None => Err(WpError::new(
            404,
            "woocommerce_rest_invalid_id",
            "Invalid resource ID.",
        )),
    }
}

/// `GET /taxes/classes`: the standard class and the store's additional ones.
fn list_tax_classes(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let collection = obj! {
        "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/taxes/classes", req.ctx.home, req.ctx.version) }],
    };
    let mut items = vec![
        obj! { "slug" => "standard", "name" => "Standard rate", "_links" => collection.clone() },
    ];
    for (name, slug) in state
        .settings
        .tax_classes
        .iter()
        .zip(state.settings.tax_class_slugs())
    {
        items
            .push(obj! { "slug" => slug, "name" => name.as_str(), "_links" => collection.clone() });
    }
    Ok(Resp::json(200, &J::Arr(items)))
}

fn system_status(shared: &Shared, req: &Req) -> Result<Resp, WpError> {
    let state = lock(shared)?;
    let tz = if shared.cfg.site_utc_offset_secs == 0 {
        "UTC".to_string()
    } else {
        format!("{:+}", shared.cfg.site_utc_offset_secs / 3600)
    };
    let j = obj! {
        "environment" => obj!{ "home_url" => req.ctx.home.as_str(), "site_url" => req.ctx.home.as_str(), "version" => "7.9.0", "wp_version" => "6.1.9", "php_version" => "8.2.36", "default_timezone" => tz },
        "database" => obj!{ "wc_database_version" => "7.9.0" },
        "settings" => obj!{ "api_enabled" => true, "currency" => state.settings.currency.as_str() },
    };
    let j = match fields_of(&req.query) {
        Some(f) => j.trim_fields(&f, true, false),
        None => j,
    };
    Ok(Resp::json(200, &j))
}

// ---- admin / customer actions (control API and in-process accessors) ----

fn admin_ctx(shared: &Shared) -> Ctx {
    Ctx {
        home: shared.home_http(),
        version: "v3".into(),
        view: false,
        offset: shared.cfg.site_utc_offset_secs,
        now: shared.now(),
    }
}

pub(crate) fn run_sale_cron(shared: &Shared) -> Vec<u64> {
    let now = shared.now();
    let changed = match shared.state.lock() {
        Ok(mut s) => products::run_sale_cron(&mut s, now),
        Err(_) => Vec::new(),
    };
    let events: Vec<(String, u64)> = changed
        .iter()
        .map(|id| ("product.updated".to_string(), *id))
        .collect();
    webhooks::enqueue(shared, &events);
    changed
}

pub(crate) fn admin_write_product(
    shared: &Shared,
    id: Option<u64>,
    body: Value,
) -> Result<u64, String> {
    let Value::Object(body) = body else {
        return Err("body must be a json object".into());
    };
    let ctx = admin_ctx(shared);
    let mut state = shared
        .state
        .lock()
        .map_err(|_| "state poisoned".to_string())?;
    let result = match id {
        None => create_product_locked(&mut state, &body, Mode::Single, &[], &ctx, None)
            .map(|id| (id, "product.created")),
        Some(id) => update_product_locked(&mut state, id, &body, Mode::Single, &[], &ctx, None)
            .map(|_| (id, "product.updated")),
    };
    drop(state);
    match result {
        Ok((id, topic)) => {
            webhooks::enqueue(shared, &[(topic.to_string(), id)]);
            Ok(id)
        }
        Err(e) => Err(format!("{}: {}", e.code, e.message)),
    }
}

pub(crate) fn seed_products(
    shared: &Shared,
    count: usize,
    prefix: &str,
    price: &str,
    stock: i64,
) -> Vec<u64> {
    let ctx = admin_ctx(shared);
    let Ok(mut state) = shared.state.lock() else {
        return Vec::new();
    };
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let mut body = Map::new();
        body.insert("name".into(), Value::String(format!("{prefix}{n}")));
        body.insert("sku".into(), Value::String(format!("{prefix}{n}")));
        body.insert("regular_price".into(), Value::String(price.to_string()));
        body.insert("manage_stock".into(), Value::Bool(true));
        body.insert("stock_quantity".into(), Value::from(stock));
        if let Ok(id) = create_product_locked(&mut state, &body, Mode::Single, &[], &ctx, None) {
            ids.push(id);
        }
    }
    ids
}

pub(crate) fn product_json(shared: &Shared, id: u64) -> Option<Value> {
    let ctx = admin_ctx(shared);
    let state = shared.state.lock().ok()?;
    let p = state.products.get(&id)?;
    let j = if p.is_variation() {
        render_variation(&state, &ctx, p)
    } else {
        render_product(&state, &ctx, p)
    };
    serde_json::from_str(&j.to_php()).ok()
}

pub(crate) fn order_json(shared: &Shared, id: u64) -> Option<Value> {
    let ctx = admin_ctx(shared);
    let state = shared.state.lock().ok()?;
    let o = state.orders.get(&id)?;
    serde_json::from_str(&render_order(&state, &ctx, o).to_php()).ok()
}

pub(crate) fn place_order(shared: &Shared, order: &PlaceOrder) -> Result<u64, String> {
    let now = shared.now();
    let mut lines = Vec::new();
    for l in &order.lines {
        let mut m = Map::new();
        if let Some(id) = l.product_id {
            m.insert("product_id".into(), Value::from(id));
        }
        if let Some(s) = &l.sku {
            m.insert("sku".into(), Value::String(s.clone()));
        }
        m.insert("quantity".into(), Value::from(l.quantity));
        lines.push(Value::Object(m));
    }
    let mut body = Map::new();
    body.insert("line_items".into(), Value::Array(lines));
    body.insert(
        "billing".into(),
        serde_json::to_value(&order.billing).map_err(|e| e.to_string())?,
    );
    body.insert(
        "shipping".into(),
        serde_json::to_value(&order.shipping).map_err(|e| e.to_string())?,
    );
    if let Some(s) = &order.shipping_line {
        body.insert("shipping_lines".into(), serde_json::json!([{ "method_id": s.method_id, "method_title": s.method_title, "total": s.total }]));
    }
    if let Some(f) = &order.fee {
        body.insert(
            "fee_lines".into(),
            serde_json::json!([{ "name": f.name, "total": f.total }]),
        );
    }
    let fees: Vec<tax::CheckoutFee> = order
        .fee
        .iter()
        .map(|f| tax::CheckoutFee {
            taxable: f.taxable,
            tax_class: f.tax_class.clone(),
        })
        .collect();
    let coupon = match &order.coupon {
        Some(c) => Some(tax::CheckoutCoupon {
            code: c.code.clone(),
            amount: dec(&c.amount).ok_or("coupon amount is not a number")?,
        }),
        None => None,
    };
    if let Some(pm) = &order.payment_method {
        body.insert("payment_method".into(), Value::String(pm.clone()));
        body.insert("payment_method_title".into(), Value::String(pm.clone()));
    }
    if let Some(n) = &order.customer_note {
        body.insert("customer_note".into(), Value::String(n.clone()));
    }
    let (id, touched) = {
        let mut state = shared
            .state
            .lock()
            .map_err(|_| "state poisoned".to_string())?;
        let mut o = orders::new_order(&mut state, now, "checkout");
        orders::apply_order_write(&mut state, &mut o, &body, Mode::Batch, now)
            .map_err(|e| format!("{}: {}", e.code, e.message))?;
        // The cart priced the order: its amounts, taxes and totals are the cart's.
        tax::checkout_totals(&mut state, &mut o, coupon.as_ref(), &fees);
        let status = order.status.clone().unwrap_or_else(|| "processing".into());
        if !orders::STATUSES.contains(&status.as_str()) {
            return Err(format!("unknown status {status}"));
        }
        let touched = if status != "pending" {
            orders::set_status(&mut state, &mut o, &status, now)
        } else {
            Vec::new()
        };
        o.modified = now;
        let id = o.id;
        state.orders.insert(id, o);
        (id, touched)
    };
    webhooks::enqueue(shared, &order_events(id, &touched, true));
    Ok(id)
}

pub(crate) fn admin_order_status(shared: &Shared, id: u64, status: &str) -> Result<(), String> {
    if !orders::STATUSES.contains(&status) {
        return Err(format!("unknown status {status}"));
    }
    let now = shared.now();
    let touched = {
        let mut state = shared
            .state
            .lock()
            .map_err(|_| "state poisoned".to_string())?;
        let mut o = state.orders.get(&id).cloned().ok_or("unknown order")?;
        let t = orders::set_status(&mut state, &mut o, status, now);
        state.orders.insert(id, o);
        t
    };
    webhooks::enqueue(shared, &order_events(id, &touched, false));
    Ok(())
}

/// Applies the keys of a `PUT /__sim/settings` body; unknown keys are refused so a typo does not
/// leave a test running on settings it did not mean.
pub(crate) fn apply_settings(s: &mut crate::store::Settings, v: &Value) -> Result<(), String> {
    let Value::Object(map) = v else {
        return Err("the body must be a JSON object of settings".into());
    };
    let mut next = s.clone();
    for (k, val) in map {
        let want_bool = || {
            val.as_bool()
                .ok_or_else(|| format!("{k} must be true or false, got {val}"))
        };
        let want_str = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{k} must be a string, got {val}"))
        };
        match k.as_str() {
            "prices_include_tax" => next.prices_include_tax = want_bool()?,
            "manage_stock" => next.manage_stock = want_bool()?,
            "calc_taxes" => next.calc_taxes = want_bool()?,
            "tax_round_at_subtotal" => next.tax_round_at_subtotal = want_bool()?,
            "price_num_decimals" => {
                next.price_num_decimals = val
                    .as_u64()
                    .filter(|n| *n <= 8)
                    .ok_or_else(|| format!("price_num_decimals must be 0..=8, got {val}"))?
                    as u32
            }
            "currency" => next.currency = want_str()?,
            "default_country" => next.default_country = want_str()?,
            "tax_based_on" => {
                let b = want_str()?;
                if !matches!(b.as_str(), "shipping" | "billing" | "base") {
                    return Err(format!(
                        "tax_based_on must be shipping, billing or base, got {b:?}"
                    ));
                }
                next.tax_based_on = b;
            }
            "shipping_tax_class" => next.shipping_tax_class = want_str()?,
            "tax_classes" => {
                next.tax_classes = serde_json::from_value(val.clone())
                    .map_err(|e| format!("tax_classes must be a list of names: {e}"))?
            }
            "tax_rates" => {
                next.tax_rates = serde_json::from_value(val.clone()).map_err(|e| {
                    format!("tax_rates must be a list of {{id, country, rate, name, priority, compound, shipping, class}}: {e}")
                })?
            }
            other => return Err(format!("unknown setting {other:?}")),
        }
    }
    if next.shipping_tax_class != "inherit" && !next.has_tax_class(&next.shipping_tax_class) {
        return Err(format!(
            "shipping_tax_class {:?} is not \"inherit\", \"\" or one of the tax classes",
            next.shipping_tax_class
        ));
    }
    if let Some(r) = next
        .tax_rates
        .iter()
        .find(|r| !next.has_tax_class(&r.class))
    {
        return Err(format!(
            "tax rate {} is in class {:?}, which is not one of the tax classes",
            r.id, r.class
        ));
    }
    *s = next;
    Ok(())
}

async fn control(shared: &Arc<Shared>, method: &Method, rest: &str, body: &Bytes) -> Resp {
    let ok = || Resp::json(200, &obj! { "ok" => true });
    let bad = |m: String| Resp::json(400, &obj! { "error" => m });
    let parsed = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => ok(),
        ("GET", ["requests"]) => {
            let counts = shared.counts.lock().map(|c| c.clone()).unwrap_or_default();
            Resp::json(
                200,
                &J::Obj(counts.into_iter().map(|(k, v)| (k, J::from(v))).collect()),
            )
        }
        ("DELETE", ["requests"]) => {
            if let Ok(mut c) = shared.counts.lock() {
                c.clear();
            }
            ok()
        }
        ("GET", ["faults"]) => {
            let f = shared.faults.lock().map(|f| f.clone()).unwrap_or_default();
            Resp::json(
                200,
                &J::from(&serde_json::to_value(f).unwrap_or(Value::Null)),
            )
        }
        ("POST", ["faults"]) => match serde_json::from_slice::<crate::FaultRule>(body) {
            Ok(rule) => {
                if let Ok(mut f) = shared.faults.lock() {
                    f.push(rule);
                }
                ok()
            }
            Err(e) => bad(e.to_string()),
        },
        ("DELETE", ["faults"]) => {
            if let Ok(mut f) = shared.faults.lock() {
                f.clear();
            }
            ok()
        }
        ("POST", ["products", "seed"]) => {
            let v = parsed();
            let count = v
                .get("count")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .min(1_000_000) as usize;
            let prefix = v.get("prefix").and_then(Value::as_str).unwrap_or("SIM-");
            let price = v.get("price").and_then(Value::as_str).unwrap_or("9.90");
            let stock = v.get("stock").and_then(Value::as_i64).unwrap_or(10);
            let ids = seed_products(shared, count, prefix, price, stock);
            Resp::json(
                200,
                &obj! { "ids" => J::Arr(ids.into_iter().map(J::from).collect()) },
            )
        }
        ("POST", ["products"]) => match admin_write_product(shared, None, parsed()) {
            Ok(id) => Resp::json(201, &obj! { "id" => id }),
            Err(e) => bad(e),
        },
        ("PUT", ["products", id]) => match id.parse::<u64>() {
            Ok(id) => match admin_write_product(shared, Some(id), parsed()) {
                Ok(id) => Resp::json(200, &obj! { "id" => id }),
                Err(e) => bad(e),
            },
            Err(_) => bad("bad id".into()),
        },
        ("POST", ["orders"]) => match serde_json::from_slice::<PlaceOrder>(body) {
            Ok(o) => match place_order(shared, &o) {
                Ok(id) => Resp::json(201, &obj! { "id" => id }),
                Err(e) => bad(e),
            },
            Err(e) => bad(e.to_string()),
        },
        ("PUT", ["orders", id, "status"]) => {
            let status = parsed()
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match id
                .parse::<u64>()
                .map_err(|e| e.to_string())
                .and_then(|id| admin_order_status(shared, id, &status))
            {
                Ok(()) => ok(),
                Err(e) => bad(e),
            }
        }
        ("POST", ["cron", "sales"]) => {
            let ids = run_sale_cron(shared);
            Resp::json(
                200,
                &obj! { "changed" => J::Arr(ids.into_iter().map(J::from).collect()) },
            )
        }
        ("POST", ["webhooks", "pause"]) => {
            shared.hooks.paused.store(true, Ordering::SeqCst);
            ok()
        }
        ("POST", ["webhooks", "resume"]) => {
            shared.hooks.paused.store(false, Ordering::SeqCst);
            ok()
        }
        ("POST", ["webhooks", "flush"]) => {
            webhooks::flush(shared).await;
            ok()
        }
        ("PUT", ["webhooks", "knobs"]) => {
            match serde_json::from_slice::<crate::DeliveryKnobs>(body) {
                Ok(k) => {
                    if let Ok(mut knobs) = shared.hooks.knobs.lock() {
                        *knobs = k;
                    }
                    ok()
                }
                Err(e) => bad(e.to_string()),
            }
        }
        ("GET", ["deliveries"]) => {
            let log = shared
                .hooks
                .log
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            Resp::json(
                200,
                &J::from(&serde_json::to_value(log).unwrap_or(Value::Null)),
            )
        }
        ("GET", ["captures"]) => {
            let caps = shared
                .state
                .lock()
                .map(|s| s.captures.clone())
                .unwrap_or_default();
            Resp::json(200, &J::Arr(caps.iter().map(|c| obj! { "order_id" => c.order_id, "status" => c.status.as_str(), "total" => c.total.to_string(), "at" => c.at }).collect()))
        }
        ("PUT", ["clock"]) => {
            let off = parsed()
                .get("offset_secs")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            shared.clock_offset.store(off, Ordering::SeqCst);
            ok()
        }
        ("PUT", ["settings"]) => {
            let v = parsed();
            let Ok(mut s) = shared.state.lock() else {
                return bad("state poisoned".into());
            };
            match apply_settings(&mut s.settings, &v) {
                Ok(()) => ok(),
                Err(e) => bad(e),
            }
        }
        ("PUT", ["settings", "preset"]) => {
            let preset = parsed()
                .get("preset")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let settings = match preset.as_str() {
                "norway" => crate::store::Settings::norway(),
                "default" => crate::store::Settings::default(),
                other => {
                    return bad(format!(
                        "unknown preset {other:?}: use \"norway\" or \"default\""
                    ))
                }
            };
            if let Ok(mut s) = shared.state.lock() {
                s.settings = settings;
            }
            ok()
        }
        ("GET", ["ca.pem"]) => match &shared.ca_pem {
            Some(pem) => Resp {
                status: 200,
                headers: Vec::new(),
                body: pem.clone(),
                content_type: "application/x-pem-file",
            },
            None => Resp::json(404, &obj! { "error" => "https is off" }),
        },
        _ => Resp::json(404, &obj! { "error" => "unknown control route" }),
    }
}
