//! The web console: server-rendered pages (see [`pages`]) over the same
//! core calls as `/api/v1`, plain HTML forms (each with its CSRF token)
//! that work without JavaScript, and a little script for drag-and-drop,
//! upload progress and live counts.

mod pages;
pub mod security;

use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::api::{self, upload, StartQuery};
use super::auth::{self, Caller, ClientAddr, Unauthorized};
use super::campaigns::{self, Campaigns, WebError};
use super::ServeState;
use crate::campaign::team::ActorKind;
use crate::campaign::Action;
use crate::model::row_state::RowState;
use pages::enc;
use security::{CsrfForm, NoFields};

/// What the console shares between requests.
pub struct WebState {
    pub campaigns: Arc<Campaigns>,
    pub csrf: String,
    /// Pages offer "Sign out" (an access token is configured).
    pub sign_out: bool,
    /// Bytes an upload may have (env `ZNS_UPLOAD_LIMIT_MB` overrides).
    pub upload_limit: u64,
}

impl WebState {
    pub fn new(campaigns: Arc<Campaigns>, sign_out: bool) -> Self {
        let upload_limit = std::env::var("ZNS_UPLOAD_LIMIT_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|mb| mb * 1024 * 1024)
            .unwrap_or(upload::DEFAULT_UPLOAD_LIMIT);
        WebState {
            campaigns,
            csrf: security::new_csrf_token(),
            sign_out,
            upload_limit,
        }
    }

    /// The frame every page is drawn in.
    pub fn chrome(&self) -> pages::Chrome<'_> {
        pages::Chrome {
            csrf: &self.csrf,
            sign_out: self.sign_out,
            who: None,
        }
    }

    /// The frame, naming who is signed in (`who` from [`signed_in_as`]).
    pub fn chrome_as<'a>(&'a self, who: &'a Option<String>) -> pages::Chrome<'a> {
        pages::Chrome {
            csrf: &self.csrf,
            sign_out: self.sign_out || who.is_some(),
            who: who.as_deref(),
        }
    }
}

/// Who the header says is signed in: nobody on an open loopback console.
fn signed_in_as(caller: &Caller) -> Option<String> {
    let a = caller.actor();
    match caller {
        Caller::Open => None,
        Caller::Token | Caller::Session(_, _) if a.kind == ActorKind::AdminToken => {
            Some("access token (admin)".into())
        }
        _ => Some(format!("{} ({})", a.name, a.role)),
    }
}

/// Pages and forms that need the access token (when one is set).
pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/", get(campaigns_page))
        .route("/new", get(new_page))
        .route("/campaigns/{name}", get(campaign_page))
        .route("/campaigns/{name}/check", get(check_page))
        .route("/ui/campaigns/{name}/start", post(start_form))
        .route("/ui/campaigns/{name}/pause", post(pause_form))
}

/// The upload form: its body cap and timing are the caller's.
pub fn upload_routes() -> Router<ServeState> {
    Router::new().route("/ui/upload", post(upload_form))
}

/// The sign-in page, sign-out (a stale cookie may still sign out) and
/// the assets they need.
pub fn open_routes() -> Router<ServeState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
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
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
        _ => "Cannot do that",
    };
    (
        e.status(),
        Html(pages::problem(title, &e.public_message(), back, s.web.chrome()).into_string()),
    )
        .into_response()
}

async fn campaigns_page(State(s): State<ServeState>, caller: Caller) -> Response {
    let who = signed_in_as(&caller);
    match s.with_reader(campaigns::status_all).await {
        Ok(list) => {
            Html(pages::campaigns(&list, s.web.chrome_as(&who)).into_string()).into_response()
        }
        Err(e) => problem(&s, WebError::Internal(e), "/"),
    }
}

async fn new_page(State(s): State<ServeState>, caller: Caller) -> Response {
    let who = signed_in_as(&caller);
    Html(
        pages::new_campaign(&s.web.campaigns.profiles(), s.web.chrome_as(&who), None).into_string(),
    )
    .into_response()
}

#[derive(Debug, Deserialize, Default)]
struct PageQuery {
    page: Option<u64>,
}

async fn check_page(
    State(s): State<ServeState>,
    caller: Caller,
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
            why = e.public_message();
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
        s.web.chrome_as(&signed_in_as(&caller)),
    );
    Html(markup.into_string()).into_response()
}

/// Audit entries a campaign's page lists (the API pages further back).
const PAGE_AUDIT: u64 = 20;

async fn campaign_page(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
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
    let audit = match s
        .web
        .campaigns
        .audit_list(Some(name.clone()), None, PAGE_AUDIT)
        .await
    {
        Ok(a) => a,
        Err(e) => return problem(&s, e, "/"),
    };
    let running_here = s.web.campaigns.live(&name).is_some_and(|l| l.running);
    let who = signed_in_as(&caller);
    let markup = pages::campaign(pages::CampaignPage {
        status: &status,
        running_here,
        top_errors: &errors,
        in_doubt: &in_doubt,
        audit: &audit,
        chrome: s.web.chrome_as(&who),
    });
    Html(markup.into_string()).into_response()
}

/// The upload form without JavaScript: on success, to the Check page.
async fn upload_form(
    State(s): State<ServeState>,
    caller: Caller,
    multipart: Multipart,
) -> Response {
    let web = s.web.clone();
    // Before the body is read: a refused upload stores nothing.
    let actor = caller.actor();
    if let Err(e) = web.campaigns.permit(&actor, Action::Upload, None).await {
        return problem(&s, e, "/");
    }
    let up = match upload::read(multipart, web.campaigns.state_path(), web.upload_limit).await {
        Ok(up) => up,
        Err(e) => return upload_refused(&s, e),
    };
    if !security::csrf_ok(&web.csrf, up.csrf.as_deref()) {
        let _ = std::fs::remove_file(&up.form.csv);
        return security::csrf_refused(&s);
    }
    let name = up.form.name.clone();
    let (stored, file_name) = (up.form.csv.clone(), up.file_name.clone());
    match web.campaigns.create(up.form, &actor, &file_name).await {
        Ok(_) => Redirect::to(&format!("/campaigns/{}/check", enc(&name))).into_response(),
        Err(e) => upload_refused(&s, upload::by_upload_name(e, &stored, &file_name)),
    }
}

fn upload_refused(s: &ServeState, e: WebError) -> Response {
    if let WebError::Internal(err) = &e {
        tracing::error!("upload failed: {err:#}");
    }
    let page = pages::new_campaign(
        &s.web.campaigns.profiles(),
        s.web.chrome(),
        Some(&e.public_message()),
    );
    (e.status(), Html(page.into_string())).into_response()
}

async fn start_form(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<StartQuery>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Response {
    let back = format!("/campaigns/{}", enc(&name));
    let started = match api::parse_in_doubt(q.in_doubt.as_deref()) {
        Ok(policy) => {
            s.web
                .campaigns
                .start(&name, policy, Some(&caller.actor()))
                .await
        }
        Err(e) => Err(e),
    };
    match started {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => problem(&s, e, &back),
    }
}

async fn pause_form(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Response {
    let back = format!("/campaigns/{}", enc(&name));
    match s.web.campaigns.pause(&name, &caller.actor()).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => problem(&s, e, &back),
    }
}

async fn login_page(State(s): State<ServeState>, caller: Result<Caller, Unauthorized>) -> Response {
    // Open (no token, no users) or signed in already: nothing to do here.
    if caller.is_ok() {
        return Redirect::to("/").into_response();
    }
    Html(pages::login(&s.web.csrf, None, s.config.auth_token.is_some()).into_string())
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
struct LoginForm {
    /// A user's name and password, or else the access token.
    name: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

/// The sign-in form: limited per client address, then the token; a right
/// one opens a new session (a new id at every sign-in, the browser's old
/// one closed).
async fn login(
    State(s): State<ServeState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    CsrfForm(f): CsrfForm<LoginForm>,
) -> Response {
    let team = s.with_who_reader(|r| r.has_team()).await.unwrap_or(true);
    if s.config.auth_token.is_none() && !team {
        return Redirect::to("/").into_response();
    }
    let limits = &s.auth.sign_ins;
    if let Err(wait) = limits.attempt(addr) {
        let failures = limits.failed(addr);
        let secs = wait.as_secs().max(1);
        tracing::warn!(
            "sign-in refused: too many attempts from {} ({failures} failed or refused in a row); \
             it may try again in {secs}s",
            auth::masked(addr)
        );
        let page = pages::login(
            &s.web.csrf,
            Some(&format!(
                "Too many sign-in attempts from this address: try again in {secs} seconds."
            )),
            s.config.auth_token.is_some(),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            Html(page.into_string()),
        )
            .into_response();
    }
    let name = f.name.as_deref().map(str::trim).unwrap_or("").to_string();
    let who = if name.is_empty() {
        let given = f.token.unwrap_or_default();
        let right = s
            .config
            .auth_token
            .as_ref()
            .is_some_and(|e| auth::same_secret(given.trim(), e.expose()));
        right.then_some((auth::SessionWho::AdminToken, "the access token".to_string()))
    } else {
        let password = f.password.unwrap_or_default();
        match s
            .web
            .campaigns
            .verify_password(name.clone(), password)
            .await
        {
            Ok(Some((actor, generation))) => Some((
                auth::SessionWho::User {
                    name: actor.name.clone(),
                    generation,
                },
                actor.label(),
            )),
            Ok(None) => None,
            Err(e) => return problem(&s, e, "/login"),
        }
    };
    let Some((who, label)) = who else {
        let failures = limits.failed(addr);
        // Never the password or the token tried; a name may be a typo'd
        // password, so it is not logged either.
        tracing::info!(
            "sign-in with a wrong password or token from {} ({failures} in a row)",
            auth::masked(addr)
        );
        let why = if name.is_empty() {
            "That is not the access token."
        } else {
            "That name and password do not match."
        };
        let page = pages::login(&s.web.csrf, Some(why), s.config.auth_token.is_some());
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    };
    limits.succeeded(addr);
    tracing::info!("signed in as {label} from {}", auth::masked(addr));
    if let Some(old) = jar.get(auth::SESSION_COOKIE) {
        s.auth.sessions.close(old.value());
    }
    let secure = s
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let jar = jar.add(auth::session_cookie(s.auth.sessions.open(who), secure));
    (jar, Redirect::to("/")).into_response()
}

/// Sign out: the session ends on the server, the browser forgets it.
async fn logout(
    State(s): State<ServeState>,
    jar: CookieJar,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Response {
    if let Some(c) = jar.get(auth::SESSION_COOKIE) {
        s.auth.sessions.close(c.value());
        tracing::info!("signed out");
    }
    (jar.remove(auth::removal_cookie()), Redirect::to("/login")).into_response()
}
