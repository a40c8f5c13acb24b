//! Pages outside a store: first run, login, logout, language, invitations, the operator's view.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;

use crate::auth::{random_token, AuthError};
use crate::texts::t;
use crate::web::{internal, page, Viewer, FORM_COOKIE, LANG_COOKIE, SESSION_COOKIE};
use crate::AppState;

type F = Form<HashMap<String, String>>;

fn field<'a>(form: &'a HashMap<String, String>, k: &str) -> &'a str {
    form.get(k).map(String::as_str).unwrap_or("").trim()
}

/// An anonymous form page: sets the double-submit cookie and puts it in the form.
fn anonymous(
    v: &Viewer,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> maud::Markup,
) -> Response {
    let token = v.form_token.clone().unwrap_or_else(random_token);
    let markup = page(v, title, None, "", body(&token));
    let mut res = (status, markup).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, v.cookie(FORM_COOKIE, &token, 3600));
    res
}

pub async fn home(State(st): State<AppState>, v: Viewer) -> Response {
    match st.accounts.has_operator().await {
        Ok(false) => return Redirect::to("/setup").into_response(),
        Ok(true) => {}
        Err(e) => return internal(v.lang, e),
    }
    match &v.session {
        None => Redirect::to("/login").into_response(),
        Some(s) if s.is_operator() => Redirect::to("/operator").into_response(),
        Some(s) => Redirect::to(&format!(
            "/stores/{}/settings",
            s.store.as_deref().unwrap_or_default()
        ))
        .into_response(),
    }
}

fn login_form(v: &Viewer, status: StatusCode, error: Option<&str>) -> Response {
    anonymous(v, status, v.t("login"), |token| {
        html! {
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/login" class="card" {
                input type="hidden" name="csrf" value=(token);
                label for="username" { (v.t("username")) }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { (v.t("password")) }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { (v.t("login")) }
            }
        }
    })
}

pub async fn login_page(v: Viewer) -> Response {
    login_form(&v, StatusCode::OK, None)
}

fn with_session(v: &Viewer, id: &str, ttl_secs: i64, to: &str) -> Response {
    let mut res = Redirect::to(to).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, v.cookie(SESSION_COOKIE, id, ttl_secs));
    res
}

pub async fn login_submit(State(st): State<AppState>, v: Viewer, Form(form): F) -> Response {
    if let Err(r) = v.form_csrf(&form) {
        return r;
    }
    match st
        .accounts
        .login(
            field(&form, "username"),
            form.get("password").map(String::as_str).unwrap_or(""),
            v.client,
        )
        .await
    {
        Ok((id, _)) => with_session(&v, &id, st.cfg.session_ttl.as_secs() as i64, "/"),
        Err(AuthError::Wrong) => login_form(&v, StatusCode::UNAUTHORIZED, Some(v.t("wrong_login"))),
        Err(AuthError::Throttled(_)) => {
            login_form(&v, StatusCode::TOO_MANY_REQUESTS, Some(v.t("throttled")))
        }
        Err(e) => internal(v.lang, e),
    }
}

pub async fn logout(State(st): State<AppState>, v: Viewer, Form(form): F) -> Response {
    if let (Some(s), Some(id)) = (&v.session, &v.session_id) {
        if let Err(r) = v.csrf(s, &form) {
            return r;
        }
        st.accounts.logout(id).await;
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, v.cookie(SESSION_COOKIE, "", 0));
    res
}

pub async fn language(v: Viewer, Path(code): Path<String>) -> Response {
    let code = if code == "en" { "en" } else { "nb" };
    let mut res = Redirect::to("/").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, v.cookie(LANG_COOKIE, code, 365 * 86400));
    res
}

fn setup_form(v: &Viewer, status: StatusCode, error: Option<&str>) -> Response {
    anonymous(v, status, v.t("first_run"), |token| {
        html! {
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/setup" class="card" {
                input type="hidden" name="csrf" value=(token);
                label for="username" { (v.t("username")) }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { (v.t("password")) }
                input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required;
                label for="confirm" { (v.t("password_confirm")) }
                input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="12" required;
                button type="submit" { (v.t("first_run")) }
            }
        }
    })
}

pub async fn setup_page(State(st): State<AppState>, v: Viewer) -> Response {
    match st.accounts.has_operator().await {
        Ok(true) => Redirect::to("/login").into_response(),
        Ok(false) => setup_form(&v, StatusCode::OK, None),
        Err(e) => internal(v.lang, e),
    }
}

pub async fn setup_submit(State(st): State<AppState>, v: Viewer, Form(form): F) -> Response {
    if let Err(r) = v.form_csrf(&form) {
        return r;
    }
    let (user, pw, confirm) = (
        field(&form, "username"),
        form.get("password").map(String::as_str).unwrap_or(""),
        form.get("confirm").map(String::as_str).unwrap_or(""),
    );
    if let Err(AuthError::Invalid(k)) = crate::auth::check_new_password(pw, confirm) {
        return setup_form(&v, StatusCode::BAD_REQUEST, Some(t(v.lang, &k)));
    }
    match st.accounts.create_first_operator(user, pw).await {
        Ok(()) => match st.accounts.login(user, pw, v.client).await {
            Ok((id, _)) => with_session(&v, &id, st.cfg.session_ttl.as_secs() as i64, "/operator"),
            Err(e) => internal(v.lang, e),
        },
        Err(AuthError::Taken) => Redirect::to("/login").into_response(),
        Err(AuthError::Invalid(k)) => setup_form(&v, StatusCode::BAD_REQUEST, Some(t(v.lang, &k))),
        Err(e) => internal(v.lang, e),
    }
}

fn invite_form(
    v: &Viewer,
    token: &str,
    store: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let action = format!("/invite/{token}");
    anonymous(v, status, v.t("accept_invite"), |csrf| {
        html! {
            p { (v.t("stores")) ": " strong { (store) } }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action=(action) class="card" {
                input type="hidden" name="csrf" value=(csrf);
                label for="username" { (v.t("username")) }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { (v.t("password")) }
                input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required;
                label for="confirm" { (v.t("password_confirm")) }
                input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="12" required;
                button type="submit" { (v.t("accept_invite")) }
            }
        }
    })
}

pub async fn invite_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(token): Path<String>,
) -> Response {
    match st.accounts.invitation(&token).await {
        Ok(Some((inv, _))) => invite_form(&v, &token, &inv.store, StatusCode::OK, None),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            page(
                &v,
                v.t("accept_invite"),
                None,
                "",
                html! { p class="error" { (v.t("bad_invite")) } },
            ),
        )
            .into_response(),
        Err(e) => internal(v.lang, e),
    }
}

pub async fn invite_submit(
    State(st): State<AppState>,
    v: Viewer,
    Path(token): Path<String>,
    Form(form): F,
) -> Response {
    if let Err(r) = v.form_csrf(&form) {
        return r;
    }
    let store = match st.accounts.invitation(&token).await {
        Ok(Some((inv, _))) => inv.store,
        Ok(None) => return invite_page(State(st), v, Path(token)).await,
        Err(e) => return internal(v.lang, e),
    };
    let result = st
        .accounts
        .accept(
            &token,
            field(&form, "username"),
            form.get("password").map(String::as_str).unwrap_or(""),
            form.get("confirm").map(String::as_str).unwrap_or(""),
        )
        .await;
    match result {
        Ok((id, s)) => with_session(
            &v,
            &id,
            st.cfg.session_ttl.as_secs() as i64,
            &format!("/stores/{}/connection", s.store.unwrap_or_default()),
        ),
        Err(AuthError::Invalid(k)) => invite_form(
            &v,
            &token,
            &store,
            StatusCode::BAD_REQUEST,
            Some(t(v.lang, &k)),
        ),
        Err(AuthError::Taken) => {
            invite_form(&v, &token, &store, StatusCode::CONFLICT, Some(v.t("taken")))
        }
        Err(AuthError::BadInvitation) => invite_page(State(st), v, Path(token)).await,
        Err(e) => internal(v.lang, e),
    }
}

/// Lag and dead letters of every store, for the overview.
async fn health(st: &AppState) -> anyhow::Result<HashMap<String, (u64, u64)>> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for s in duellsync_events::ALL_STREAMS
        .iter()
        .filter(|s| s.name != "DLQ")
    {
        for c in st.bus.consumers(s.name).await? {
            if let Some(store) = c.store() {
                out.entry(store.to_owned()).or_default().0 += c.lag();
            }
        }
    }
    for (subject, n) in st.bus.subject_counts("DLQ", "dlq.>").await? {
        if let Some(store) = subject.split('.').nth(1) {
            out.entry(store.to_owned()).or_default().1 += n;
        }
    }
    Ok(out)
}

pub async fn operator(State(st): State<AppState>, v: Viewer) -> Response {
    let s = match v.operator() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let stores = match st.registry.list().await {
        Ok(l) => l,
        Err(e) => return internal(v.lang, e),
    };
    let health = health(&st).await.unwrap_or_default();
    page(&v, v.t("stores"), None, "", html! {
        div class="scroll" {
            table {
                thead { tr { th { (v.t("store_id")) } th { (v.t("shard")) } th { (v.t("lag")) } th { (v.t("dead_letters")) } th { (v.t("health")) } th {} } }
                tbody {
                    @for stored in &stores {
                        @let id = &stored.record.id;
                        @let (lag, dead) = health.get(id).copied().unwrap_or_default();
                        tr {
                            td { a href=(format!("/stores/{id}/status")) { (id) } }
                            td { (stored.record.shard()) }
                            td { (lag) }
                            td { (dead) }
                            td { @if dead == 0 && lag < 1000 { span class="ok" { "✔ OK" } } @else { span class="bad" { "✖" } } }
                            td {
                                form method="post" action=(format!("/operator/stores/{id}/invite")) class="inline" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button type="submit" { (v.t("invite")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (v.t("create_store")) }
        (crate::store_pages::new_store_form(&v, &s, &HashMap::new(), &[]))
    })
    .into_response()
}

pub async fn create_store(State(st): State<AppState>, v: Viewer, Form(form): F) -> Response {
    let s = match v.operator() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    if let Err(r) = v.csrf(&s, &form) {
        return r;
    }
    crate::store_pages::create_store(&st, &v, &s, form).await
}

pub async fn invite(
    State(st): State<AppState>,
    v: Viewer,
    Path(store): Path<String>,
    Form(form): F,
) -> Response {
    let s = match v.operator() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    if let Err(r) = v.csrf(&s, &form) {
        return r;
    }
    match st.registry.get(&store).await {
        Ok(Some(_)) => {}
        Ok(None) => return v.not_found(),
        Err(e) => return internal(v.lang, e),
    }
    let token = match st.accounts.invite(&store, &s.actor()).await {
        Ok(t) => t,
        Err(e) => return internal(v.lang, e),
    };
    let link = format!("{}/invite/{token}", st.cfg.public_url.trim_end_matches('/'));
    page(
        &v,
        v.t("invite"),
        None,
        "",
        html! {
            p { (v.t("invite_link")) }
            p { code id="invite-link" { (link) } }
            p { a href="/operator" { (v.t("stores")) } }
        },
    )
    .into_response()
}
