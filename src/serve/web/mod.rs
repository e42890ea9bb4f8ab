//! The web console: server-rendered pages (see [`pages`]) over the same
//! core calls as `/api/v1`, plain HTML forms (each with its CSRF token)
//! that work without JavaScript, and a little script for drag-and-drop,
//! upload progress and live counts.

mod pages;
pub mod security;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::api::{self, upload, StartQuery};
use super::campaigns::{self, Campaigns, WebError};
use super::ServeState;
use crate::model::row_state::RowState;
use pages::enc;

/// What the console shares between requests.
pub struct WebState {
    pub campaigns: Arc<Campaigns>,
    pub csrf: String,
    /// Bytes an upload may have (env `ZNS_UPLOAD_LIMIT_MB` overrides).
    pub upload_limit: u64,
}

impl WebState {
    pub fn new(campaigns: Arc<Campaigns>) -> Self {
        let upload_limit = std::env::var("ZNS_UPLOAD_LIMIT_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|mb| mb * 1024 * 1024)
            .unwrap_or(upload::DEFAULT_UPLOAD_LIMIT);
        WebState {
            campaigns,
            csrf: security::new_csrf_token(),
            upload_limit,
        }
    }
}

/// Pages and forms that need the access token (when one is set).
pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/", get(campaigns_page))
        .route("/new", get(new_page))
        .route("/campaigns/{name}", get(campaign_page))
        .route("/campaigns/{name}/check", get(check_page))
        .route(
            "/ui/upload",
            post(upload_form).layer(DefaultBodyLimit::disable()),
        )
        .route("/ui/campaigns/{name}/start", post(start_form))
        .route("/ui/campaigns/{name}/pause", post(pause_form))
}

/// The login page and the assets it needs.
pub fn open_routes() -> Router<ServeState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::JS,
    )
        .into_response()
}

/// A page-level failure, shown as a page with the reason and its status.
fn problem(s: &ServeState, e: WebError, back: &str) -> Response {
    if let WebError::Internal(err) = &e {
        tracing::error!("console request failed: {err:#}");
    }
    let title = match e.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not now",
        StatusCode::PAYLOAD_TOO_LARGE => "File too large",
        StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
        _ => "Cannot do that",
    };
    (
        e.status(),
        Html(pages::problem(title, &e.to_string(), back, &s.web.csrf).into_string()),
    )
        .into_response()
}

async fn campaigns_page(State(s): State<ServeState>) -> Response {
    match s.with_reader(campaigns::status_all).await {
        Ok(list) => Html(pages::campaigns(&list, &s.web.csrf).into_string()).into_response(),
        Err(e) => problem(&s, WebError::Internal(e), "/"),
    }
}

async fn new_page(State(s): State<ServeState>) -> Response {
    Html(pages::new_campaign(&s.web.campaigns.profiles(), &s.web.csrf, None).into_string())
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
struct PageQuery {
    page: Option<u64>,
}

async fn check_page(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let n = name.clone();
    let data = s
        .with_reader_web(move |st| {
            let status = campaigns::status_one(st, &n)?;
            let offset = (page - 1) * pages::PAGE_ROWS;
            let rejects =
                campaigns::rows_page(st, &n, RowState::Rejected, offset, pages::PAGE_ROWS)?;
            let preview = campaigns::rows_page(st, &n, RowState::Pending, 0, 3)?;
            let keys = st.template_keys(&n)?.unwrap_or_default();
            Ok((status, rejects, preview, keys))
        })
        .await;
    let (status, rejects, preview, keys) = match data {
        Ok(d) => d,
        Err(e) => return problem(&s, e, "/"),
    };
    let plan = s.web.campaigns.plan(&name).await;
    let why;
    let plan_arg = match &plan {
        Ok(p) => Ok(p),
        Err(e) => {
            why = e.to_string();
            Err(why.as_str())
        }
    };
    let markup = pages::check(
        &status,
        plan_arg,
        &rejects,
        page,
        &preview,
        &keys,
        &s.web.csrf,
    );
    Html(markup.into_string()).into_response()
}

async fn campaign_page(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    let n = name.clone();
    let data = s
        .with_reader_web(move |st| {
            let status = campaigns::status_one(st, &n)?;
            let errors = st
                .top_errors(&n, 5)?
                .ok_or_else(|| WebError::NotFound(format!("no campaign `{n}`")))?;
            let in_doubt = campaigns::rows_page(st, &n, RowState::InDoubt, 0, 20)?;
            Ok((status, errors, in_doubt))
        })
        .await;
    let (status, errors, in_doubt) = match data {
        Ok(d) => d,
        Err(e) => return problem(&s, e, "/"),
    };
    let running_here = s.web.campaigns.live(&name).is_some_and(|l| l.running);
    let markup = pages::campaign(pages::CampaignPage {
        status: &status,
        running_here,
        top_errors: &errors,
        in_doubt: &in_doubt,
        csrf: &s.web.csrf,
    });
    Html(markup.into_string()).into_response()
}

fn csrf_refused(s: &ServeState) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            pages::problem(
                "Form expired",
                "This form is missing its security token (CSRF) or it is out of date: reload the page and try again.",
                "/",
                &s.web.csrf,
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// The upload form without JavaScript: on success, to the Check page.
async fn upload_form(State(s): State<ServeState>, multipart: Multipart) -> Response {
    let web = s.web.clone();
    let up = match upload::read(multipart, web.campaigns.state_path(), web.upload_limit).await {
        Ok(up) => up,
        Err(e) => return upload_refused(&s, e),
    };
    if !security::csrf_ok(&web.csrf, up.csrf.as_deref()) {
        let _ = std::fs::remove_file(&up.form.csv);
        return csrf_refused(&s);
    }
    let name = up.form.name.clone();
    match web.campaigns.create(up.form).await {
        Ok(_) => Redirect::to(&format!("/campaigns/{}/check", enc(&name))).into_response(),
        Err(e) => upload_refused(&s, e),
    }
}

fn upload_refused(s: &ServeState, e: WebError) -> Response {
    let page = pages::new_campaign(
        &s.web.campaigns.profiles(),
        &s.web.csrf,
        Some(&e.to_string()),
    );
    (e.status(), Html(page.into_string())).into_response()
}

#[derive(Debug, Deserialize, Default)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn start_form(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    Query(q): Query<StartQuery>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !security::csrf_ok(&s.web.csrf, f.csrf.as_deref()) {
        return csrf_refused(&s);
    }
    let back = format!("/campaigns/{}", enc(&name));
    let started = match api::parse_in_doubt(q.in_doubt.as_deref()) {
        Ok(policy) => s.web.campaigns.start(&name, policy).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => problem(&s, e, &back),
    }
}

async fn pause_form(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !security::csrf_ok(&s.web.csrf, f.csrf.as_deref()) {
        return csrf_refused(&s);
    }
    let back = format!("/campaigns/{}", enc(&name));
    match s.web.campaigns.pause(&name, "a person").await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => problem(&s, e, &back),
    }
}

async fn login_page(State(s): State<ServeState>, headers: HeaderMap) -> Response {
    if s.config.auth_token.is_none() || security::signed_in(&s, &headers) {
        return Redirect::to("/").into_response();
    }
    Html(pages::login(&s.web.csrf, None).into_string()).into_response()
}

#[derive(Debug, Deserialize, Default)]
struct LoginForm {
    csrf: Option<String>,
    token: Option<String>,
}

async fn login(State(s): State<ServeState>, Form(f): Form<LoginForm>) -> Response {
    if !security::csrf_ok(&s.web.csrf, f.csrf.as_deref()) {
        return csrf_refused(&s);
    }
    let Some(expected) = &s.config.auth_token else {
        return Redirect::to("/").into_response();
    };
    let given = f.token.unwrap_or_default();
    if !super::auth::same_secret(given.trim(), expected.expose()) {
        let page = pages::login(&s.web.csrf, Some("That is not the access token."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    let secure = s
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict{}",
        security::SESSION_COOKIE,
        security::session_value(expected.expose()),
        if secure { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}
