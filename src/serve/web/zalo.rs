//! The console's "Connect OA" page and Zalo's OAuth callback.
//!
//! The callback is open (no sign-in): Zalo sends the admin's browser back
//! from its own site, so the console's session cookie (SameSite) does not
//! come with it. What authorizes it is the `state`: random, known only to
//! whoever started the authorization, stored hashed and taken once.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use rust_i18n::t;

use super::lang::Viewer;
use super::pages;
use super::security::{CsrfForm, NoFields};
use super::ServeState;
use crate::campaign::{Action, CoreError, OaStatus, Role, REAUTHORIZE_HINT};
use crate::serve::auth::Caller;
use crate::serve::campaigns::WebError;

/// Behind the sign-in, with the console's pages.
pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/zalo", get(connect_page))
        .route("/ui/zalo/connect", post(connect_form))
}

/// Zalo's redirect back, authorized by its `state`.
pub fn callback_routes() -> Router<ServeState> {
    Router::new().route("/oauth/zalo/callback", get(callback))
}

/// Where Zalo sends the admin back: the public URL, else the address the
/// console was reached at (its Host is allow-listed by then).
fn redirect_uri(s: &ServeState, headers: &HeaderMap) -> String {
    let base = match &s.config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            format!("http://{host}")
        }
    };
    format!("{base}/oauth/zalo/callback")
}

fn status_block(v: &Viewer, st: &OaStatus) -> Markup {
    let l = v.lang.code();
    html! {
        @if st.connected {
            dl #oa-status {
                dt { "OA" } dd { (st.oa_id.clone().unwrap_or_else(|| "-".into())) }
                dt { (t!("zalo.connected", locale = l)) } dd { (st.connected_at.clone().unwrap_or_default()) }
                dt { (t!("zalo.access_expires", locale = l)) } dd { (st.access_expires_at.clone().unwrap_or_default()) }
                dt { (t!("zalo.refresh_age", locale = l)) } dd { (t!("zalo.refresh_age_value", locale = l, secs = st.refresh_token_age_secs.unwrap_or(0), renewals = st.refreshes)) }
            }
            @if let Some(why) = &st.needs_reauthorization {
                p.error { (t!("zalo.needs_reauth", locale = l)) " " (why) ". " (REAUTHORIZE_HINT) }
            }
        } @else {
            p #oa-status { (t!("zalo.none", locale = l)) }
        }
    }
}

/// The Connect OA page, as `caller` sees it.
fn page(
    s: &ServeState,
    v: &Viewer,
    caller: &Caller,
    st: &OaStatus,
    can_connect: bool,
    link: Option<&str>,
    error: Option<&str>,
) -> Html<String> {
    let l = v.lang.code();
    let who = super::signed_in_as(caller, v);
    let chrome = s.web.chrome_as(v, &who);
    let markup = pages::layout(
        &t!("zalo.title", locale = l),
        chrome,
        html! {
            h1 { (t!("zalo.heading", locale = l)) }
            p { (t!("zalo.lead", locale = l)) }
            (status_block(v, st))
            @if let Some(e) = error { p.error { (e) } }
            @if let Some(url) = link {
                p { a #oa-authorize href=(url) rel="noreferrer" { (t!("zalo.open_zalo", locale = l)) } }
                p.hint { (t!("zalo.link_once", locale = l)) }
            } @else if !can_connect {
                p.hint #oa-admin-only { (t!("zalo.admin_only", locale = l)) }
            } @else {
                form method="post" action="/ui/zalo/connect" {
                    input type="hidden" name="csrf" value=(chrome.csrf);
                    button #oa-connect type="submit" { @if st.connected { (t!("zalo.authorize_again", locale = l)) } @else { (t!("zalo.title", locale = l)) } }
                }
            }
        },
    );
    Html(markup.into_string())
}

async fn oa_status(s: &ServeState) -> OaStatus {
    let ws = s.web.campaigns.base_workspace();
    ws.zalo_status().unwrap_or_default()
}

/// A viewer may not see it; an operator sees the status; an admin
/// connects (the connection sends every campaign's messages).
async fn connect_page(State(s): State<ServeState>, caller: Caller, v: Viewer) -> Response {
    let actor = caller.actor();
    if actor.role < Role::Operator {
        let l = v.lang.code();
        let why = t!("zalo.viewer_refused", locale = l);
        return small_page(
            &s,
            &v,
            StatusCode::FORBIDDEN,
            &t!("problem.forbidden", locale = l),
            html! { h1 { (t!("problem.forbidden", locale = l)) } p.error role="alert" { (why) } },
        );
    }
    let st = oa_status(&s).await;
    let can_connect = actor.role >= Action::ZaloConnect.needs();
    page(&s, &v, &caller, &st, can_connect, None, None).into_response()
}

async fn connect_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    headers: HeaderMap,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Response {
    let actor = caller.actor();
    // Refused (and audited as such) before anything is stored.
    if let Err(e) = s
        .web
        .campaigns
        .permit(&actor, Action::ZaloConnect, None)
        .await
    {
        let l = v.lang.code();
        let title = match e {
            WebError::Forbidden(_) => t!("problem.forbidden", locale = l),
            _ => t!("problem.internal", locale = l),
        };
        return small_page(
            &s,
            &v,
            e.status(),
            &title,
            html! { h1 { (title) } p.error role="alert" { (e.public_message()) } },
        );
    }
    let uri = redirect_uri(&s, &headers);
    let started = s
        .web
        .campaigns
        .base_workspace()
        .zalo_connect_start(Some(&uri));
    let st = oa_status(&s).await;
    // One page either way: the link to follow, or why there is none.
    let (status, link, error) = match started {
        Ok(start) => {
            // The link itself (its state) is not logged: it finishes the connection.
            let ws = s.web.campaigns.base_workspace();
            let detail = format!("authorization link made, back to {uri}");
            if let Err(e) = ws.audit(&actor, Action::ZaloConnect, None, &detail) {
                tracing::error!("cannot write the audit log: {e}");
            }
            (StatusCode::OK, Some(start.authorization_url), None)
        }
        Err(e) => (StatusCode::BAD_REQUEST, None, Some(said(e, v.lang.code()))),
    };
    let html = page(
        &s,
        &v,
        &caller,
        &st,
        true,
        link.as_deref(),
        error.as_deref(),
    );
    (status, html).into_response()
}

/// A refusal in the reader's language; a provider's or the server's
/// failure as it is (what Zalo answered is worth reading).
fn said(e: CoreError, locale: &str) -> String {
    match e {
        CoreError::Usage(_) | CoreError::Refused(_) => WebError::from(e).message(locale),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    oa_id: Option<String>,
    error: Option<String>,
}

fn small_page(
    s: &ServeState,
    v: &Viewer,
    status: StatusCode,
    title: &str,
    body: Markup,
) -> Response {
    (
        status,
        Html(pages::layout(title, s.web.chrome(v), body).into_string()),
    )
        .into_response()
}

async fn callback(State(s): State<ServeState>, v: Viewer, Query(q): Query<Callback>) -> Response {
    let l = v.lang.code();
    let not_connected = t!("zalo.not_connected", locale = l);
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        let why = q
            .error
            .unwrap_or_else(|| t!("zalo.no_code", locale = l).into_owned());
        return small_page(
            &s,
            &v,
            StatusCode::BAD_REQUEST,
            &not_connected,
            html! { h1 { (not_connected) } p.error { (why) } p { a href="/zalo" { (t!("zalo.try_again", locale = l)) } } },
        );
    };
    if code.len() > 2048 || state.len() > 256 || q.oa_id.as_ref().is_some_and(|o| o.len() > 64) {
        return small_page(
            &s,
            &v,
            StatusCode::BAD_REQUEST,
            &not_connected,
            html! { h1 { (not_connected) } },
        );
    }
    let ws = s.web.campaigns.base_workspace();
    match ws
        .zalo_connect_finish(code, Some(state), q.oa_id.as_deref())
        .await
    {
        Ok(st) => small_page(
            &s,
            &v,
            StatusCode::OK,
            &t!("zalo.connected_title", locale = l),
            html! { h1 #oa-connected { (t!("zalo.connected_title", locale = l)) } (status_block(&v, &st)) p { a href="/" { (t!("nav.campaigns", locale = l)) } } },
        ),
        Err(e) => {
            let status = match e {
                CoreError::Usage(_) | CoreError::Refused(_) => StatusCode::BAD_REQUEST,
                CoreError::Fatal(_) => StatusCode::BAD_GATEWAY,
                CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            };
            tracing::warn!("Zalo OA callback refused: {e}");
            let why = said(e, l);
            small_page(
                &s,
                &v,
                status,
                &not_connected,
                html! { h1 { (not_connected) } p.error { (why) } p { a href="/zalo" { (t!("zalo.try_again", locale = l)) } } },
            )
        }
    }
}
