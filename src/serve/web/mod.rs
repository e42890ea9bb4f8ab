//! The web console: server-rendered pages (see [`pages`]) over the same
//! core calls as `/api/v1`, plain HTML forms (each with its CSRF token)
//! that work without JavaScript, and a little script for drag-and-drop,
//! upload progress and live counts.

mod charts;
pub mod format;
pub mod lang;
mod pages;
mod pictures;
pub mod security;
mod zalo;

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
use lang::Viewer;
use pages::enc;
use rust_i18n::t;
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

    /// The frame every page is drawn in, in the viewer's language.
    pub fn chrome<'a>(&'a self, v: &'a Viewer) -> pages::Chrome<'a> {
        pages::Chrome {
            csrf: &self.csrf,
            sign_out: self.sign_out,
            who: None,
            lang: v.lang,
            here: &v.here,
        }
    }

    /// The frame, naming who is signed in (`who` from [`signed_in_as`]).
    pub fn chrome_as<'a>(&'a self, v: &'a Viewer, who: &'a Option<String>) -> pages::Chrome<'a> {
        pages::Chrome {
            sign_out: self.sign_out || who.is_some(),
            who: who.as_deref(),
            ..self.chrome(v)
        }
    }
}

/// Who the header says is signed in: nobody on an open loopback console.
pub(super) fn signed_in_as(caller: &Caller, v: &Viewer) -> Option<String> {
    let a = caller.actor();
    match caller {
        Caller::Open => None,
        Caller::Token | Caller::Session(_, _) if a.kind == ActorKind::AdminToken => {
            Some(t!("nav.admin_token", locale = v.lang.code()).into_owned())
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
        .route("/campaigns/{name}/rejects.csv", get(rejects_csv))
        .route("/ui/campaigns/{name}/start", post(start_form))
        .route("/ui/campaigns/{name}/send", post(send_form))
        .route("/ui/auto-resume", post(auto_resume_form))
        .route("/ui/campaigns/{name}/pause", post(pause_form))
        .route("/ui/campaigns/{name}/test", post(test_form))
        .merge(zalo::routes())
}

/// The upload form: its body cap and timing are the caller's.
pub fn upload_routes() -> Router<ServeState> {
    Router::new().route("/ui/upload", post(upload_form))
}

/// The sign-in page, sign-out (a stale cookie may still sign out) and
/// the assets they need.
pub fn open_routes() -> Router<ServeState> {
    Router::new()
        .merge(zalo::callback_routes())
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(lang::switch))
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
fn problem(s: &ServeState, v: &Viewer, e: WebError, back: &str) -> Response {
    if let WebError::Internal(err) = &e {
        tracing::error!("console request failed: {err:#}");
    }
    let l = v.lang.code();
    let title = match e.status() {
        StatusCode::NOT_FOUND => t!("problem.not_found", locale = l),
        StatusCode::CONFLICT => t!("problem.conflict", locale = l),
        StatusCode::PAYLOAD_TOO_LARGE => t!("problem.too_large", locale = l),
        StatusCode::FORBIDDEN => t!("problem.forbidden", locale = l),
        StatusCode::INTERNAL_SERVER_ERROR => t!("problem.internal", locale = l),
        _ => t!("problem.refused", locale = l),
    };
    let message = public_message(v, &e);
    (
        e.status(),
        Html(pages::problem(&title, &message, back, s.web.chrome(v)).into_string()),
    )
        .into_response()
}

/// A form's answer: done, on to `to`; refused, the problem page (back to
/// `back`).
fn redirect_or_problem<T>(
    s: &ServeState,
    v: &Viewer,
    done: Result<T, WebError>,
    to: &str,
    back: &str,
) -> Response {
    match done {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => problem(s, v, e, back),
    }
}

/// A page's reads on the reading connection; a failure is already the
/// problem page (back to the list), for the handler to return with `?`.
async fn page_read<T: Send + 'static>(
    s: &ServeState,
    v: &Viewer,
    read: impl FnOnce(&crate::campaign::Reader) -> Result<T, WebError> + Send + 'static,
) -> Result<T, Response> {
    s.with_reader_web(read)
        .await
        .map_err(|e| problem(s, v, e, "/"))
}

/// What a person may read of a failure, in their language.
fn public_message(v: &Viewer, e: &WebError) -> String {
    e.message(v.lang.code())
}

async fn campaigns_page(State(s): State<ServeState>, caller: Caller, v: Viewer) -> Response {
    let who = signed_in_as(&caller, &v);
    let read = s
        .with_reader(|st| Ok((campaigns::status_all(st)?, st.month_by_oa()?)))
        .await;
    match read {
        Ok((list, months)) => Html(
            pages::campaigns(
                &list,
                &months,
                s.web.campaigns.auto_resume(),
                s.web.chrome_as(&v, &who),
            )
            .into_string(),
        )
        .into_response(),
        Err(e) => problem(&s, &v, WebError::Internal(e), "/"),
    }
}

async fn new_page(State(s): State<ServeState>, caller: Caller, v: Viewer) -> Response {
    let who = signed_in_as(&caller, &v);
    Html(
        pages::new_campaign(
            &s.web.campaigns.profiles(),
            s.web.chrome_as(&v, &who),
            None,
            None,
        )
        .into_string(),
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
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, Response> {
    let page = q.page.unwrap_or(1).max(1);
    let n = name.clone();
    let (status, rejects, preview, keys) = page_read(&s, &v, move |st| {
        let status = campaigns::status_one(st, &n)?;
        let offset = (page - 1) * pages::PAGE_ROWS;
        let rejects = campaigns::rows_page(st, &n, RowState::Rejected, offset, pages::PAGE_ROWS)?;
        let preview = campaigns::rows_page(st, &n, RowState::Pending, 0, 3)?;
        let keys = st.template_keys(&n)?.unwrap_or_default();
        Ok((status, rejects, preview, keys))
    })
    .await?;
    let plan = s.web.campaigns.plan(&name).await;
    let why;
    let plan_arg = match &plan {
        Ok(p) => Ok(p),
        Err(e) => {
            why = public_message(&v, e);
            Err(why.as_str())
        }
    };
    let markup = pages::check(pages::CheckPage {
        status: &status,
        plan: plan_arg,
        rejects: &rejects,
        page,
        preview: &preview,
        keys: &keys,
        auto_resume: s.web.campaigns.auto_resume(),
        chrome: s.web.chrome_as(&v, &signed_in_as(&caller, &v)),
    });
    Ok(Html(markup.into_string()).into_response())
}

/// Audit entries a campaign's page lists (the API pages further back).
const PAGE_AUDIT: u64 = 20;

async fn campaign_page(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    Path(name): Path<String>,
) -> Result<Response, Response> {
    let n = name.clone();
    let (status, errors, in_doubt, tests, chart) = page_read(&s, &v, move |st| {
        let status = campaigns::status_one(st, &n)?;
        let errors = st
            .top_errors(&n, 5)?
            .ok_or_else(|| WebError::no_campaign(&n))?;
        let in_doubt = campaigns::rows_page(st, &n, RowState::InDoubt, 0, 20)?;
        let chart = st.delivery_chart(&n)?.unwrap_or_default();
        let tests = st.test_sends(&n, 20)?.unwrap_or_default();
        Ok((status, errors, in_doubt, tests, chart))
    })
    .await?;
    let audit = s
        .web
        .campaigns
        .audit_list(Some(name.clone()), None, PAGE_AUDIT)
        .await
        .map_err(|e| problem(&s, &v, e, "/"))?;
    let running_here = s.web.campaigns.live(&name).is_some_and(|l| l.running);
    let resumes_at = s
        .web
        .campaigns
        .resumes_at(&name, status.send_window.as_deref());
    let who = signed_in_as(&caller, &v);
    let markup = pages::campaign(pages::CampaignPage {
        status: &status,
        chart: &chart,
        resumes_at: resumes_at.as_deref(),
        running_here,
        top_errors: &errors,
        in_doubt: &in_doubt,
        audit: &audit,
        test_sends: &tests,
        chrome: s.web.chrome_as(&v, &who),
    });
    Ok(Html(markup.into_string()).into_response())
}

/// The rejected rows in the file's own columns plus `line` and `reason`,
/// to fix and upload again.
async fn rejects_csv(
    State(s): State<ServeState>,
    v: Viewer,
    Path(name): Path<String>,
) -> Result<Response, Response> {
    let n = name.clone();
    page_read(&s, &v, move |st| {
        st.exists(&n)?
            .then_some(())
            .ok_or_else(|| WebError::no_campaign(&n))
    })
    .await?;
    let file = crate::model::file_name::file_stem(&name, '_');
    let body = axum::body::Body::from_stream(s.web.campaigns.rejects_stream(name, v.lang.code()));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}-rejected.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The upload form without JavaScript: on success, to the Check page.
async fn upload_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    multipart: Multipart,
) -> Response {
    let web = s.web.clone();
    // Before the body is read: a refused upload stores nothing.
    let actor = caller.actor();
    if let Err(e) = web.campaigns.permit(&actor, Action::Upload, None).await {
        return problem(&s, &v, e, "/");
    }
    let up = match upload::read(multipart, web.campaigns.state(), web.upload_limit).await {
        Ok(up) => up,
        Err(e) => return upload_refused(&s, &v, e, None),
    };
    if !security::csrf_ok(&web.csrf, up.csrf.as_deref()) {
        let _ = std::fs::remove_file(&up.form.csv);
        return security::csrf_refused(&s, &v);
    }
    let name = up.form.name.clone();
    let (stored, file_name) = (up.form.csv.clone(), up.file_name.clone());
    let typed = up.form.clone();
    match web.campaigns.create(up.form, &actor, &file_name).await {
        Ok(_) => Redirect::to(&format!("/campaigns/{}/check", enc(&name))).into_response(),
        Err(e) => upload_refused(
            &s,
            &v,
            upload::by_upload_name(e, &stored, &file_name),
            Some(&typed),
        ),
    }
}

/// The form again with the reason above it and what was typed kept (the
/// file must be chosen again: a browser never refills a file input).
fn upload_refused(
    s: &ServeState,
    v: &Viewer,
    e: WebError,
    typed: Option<&campaigns::NewCampaign>,
) -> Response {
    if let WebError::Internal(err) = &e {
        tracing::error!("upload failed: {err:#}");
    }
    let page = pages::new_campaign(
        &s.web.campaigns.profiles(),
        s.web.chrome(v),
        Some(&public_message(v, &e)),
        typed,
    );
    (e.status(), Html(page.into_string())).into_response()
}

async fn start_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<StartQuery>,
    CsrfForm(f): CsrfForm<StartForm>,
) -> Response {
    let back = format!("/campaigns/{}", enc(&name));
    let start_at = f.start_at.or(q.start_at);
    let started = async {
        let policy = api::parse_in_doubt(q.in_doubt.as_deref())?;
        Ok((policy, api::parse_start_at(start_at.as_deref())?))
    }
    .await;
    let started = match started {
        // "Send at" confirms the count and the cost first, as Send does:
        // the confirm page posts to `send_form`, which schedules.
        Ok((_, Some(at))) => {
            return schedule_confirm(&s, &caller, &v, &name, start_at.as_deref(), at).await
        }
        Ok((policy, None)) => start_or_schedule(&s, &name, None, policy, &caller.actor()).await,
        Err(e) => Err(e),
    };
    redirect_or_problem(&s, &v, started, &back, &back)
}

/// A form's "Send at": blank starts now (with `in_doubt`), a time
/// schedules the start.
async fn start_or_schedule(
    s: &ServeState,
    name: &str,
    start_at: Option<&str>,
    in_doubt: Option<crate::campaign::InDoubtPolicy>,
    actor: &crate::campaign::Actor,
) -> Result<(), WebError> {
    match api::parse_start_at(start_at)? {
        Some(at) => s.web.campaigns.schedule(name, at, actor).await,
        None => s.web.campaigns.start(name, in_doubt, Some(actor)).await,
    }
}

/// The page between "Send at" and the schedule: the plan's count and
/// cost at that time, to confirm. Schedules nothing.
async fn schedule_confirm(
    s: &ServeState,
    caller: &Caller,
    v: &Viewer,
    name: &str,
    typed: Option<&str>,
    at_ms: i64,
) -> Response {
    let back = format!("/campaigns/{}", enc(name));
    if let Err(e) = s
        .web
        .campaigns
        .permit(&caller.actor(), Action::Schedule, Some(name))
        .await
    {
        return problem(s, v, e, &back);
    }
    let plan = match s.web.campaigns.plan(name).await {
        Ok(p) => p,
        Err(e) => return problem(s, v, e, &back),
    };
    let who = signed_in_as(caller, v);
    let page = pages::schedule_confirm(
        name,
        typed.unwrap_or_default(),
        at_ms,
        &plan,
        s.web.campaigns.auto_resume(),
        s.web.chrome_as(v, &who),
    );
    Html(page.into_string()).into_response()
}

#[derive(Debug, Deserialize, Default)]
struct SendFields {
    confirm: Option<String>,
    /// Text: the CSRF wrapper flattens the form, so numbers come as strings.
    messages: Option<String>,
    /// "Send at": blank sends now.
    start_at: Option<String>,
}

/// Send from the Check page: only with its box ticked, and only while the
/// plan still counts the messages the page showed (another upload or a
/// run elsewhere since would change what "send N" means).
async fn send_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    Path(name): Path<String>,
    CsrfForm(f): CsrfForm<SendFields>,
) -> Response {
    let check = format!("/campaigns/{}/check", enc(&name));
    if f.confirm.as_deref() != Some("yes") {
        return problem(
            &s,
            &v,
            WebError::bad("confirm_needed", crate::serve::words::NONE),
            &check,
        );
    }
    match s.web.campaigns.plan(&name).await {
        Ok(p)
            if Some(p.messages_to_send)
                != f.messages.as_deref().and_then(|m| m.trim().parse().ok()) =>
        {
            return problem(
                &s,
                &v,
                WebError::conflict(
                    "plan_changed",
                    [("n", format::num(v.lang, p.messages_to_send))],
                ),
                &check,
            )
        }
        Ok(_) => {}
        Err(e) => return problem(&s, &v, e, &check),
    }
    let started = start_or_schedule(&s, &name, f.start_at.as_deref(), None, &caller.actor()).await;
    let to = format!("/campaigns/{}", enc(&name));
    redirect_or_problem(&s, &v, started, &to, &check)
}

#[derive(Debug, Deserialize, Default)]
struct SwitchFields {
    on: Option<String>,
}

/// The console's switch for resuming quota and window pauses by itself.
async fn auto_resume_form(
    State(s): State<ServeState>,
    CsrfForm(f): CsrfForm<SwitchFields>,
) -> Response {
    let on = f.on.as_deref() == Some("1");
    s.web.campaigns.set_auto_resume(on);
    tracing::info!("auto-resume switched {}", if on { "on" } else { "off" });
    Redirect::to("/").into_response()
}

#[derive(Debug, Deserialize, Default)]
struct StartForm {
    /// "Send at": blank starts now.
    start_at: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct TestForm {
    phones: Option<String>,
}

/// "Send a test": then the campaign's page, which lists the outcome.
async fn test_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    Path(name): Path<String>,
    CsrfForm(f): CsrfForm<TestForm>,
) -> Response {
    let back = format!("/campaigns/{}", enc(&name));
    let phones = crate::campaign::parse_test_phones(f.phones.as_deref().unwrap_or(""))
        .map_err(WebError::from);
    let sent = match phones {
        Ok(p) => s.web.campaigns.send_test(&name, p, &caller.actor()).await,
        Err(e) => Err(e),
    };
    redirect_or_problem(&s, &v, sent, &format!("{back}#test-sends"), &back)
}

async fn pause_form(
    State(s): State<ServeState>,
    caller: Caller,
    v: Viewer,
    Path(name): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Response {
    let back = format!("/campaigns/{}", enc(&name));
    let paused = s.web.campaigns.pause(&name, &caller.actor()).await;
    redirect_or_problem(&s, &v, paused, &back, &back)
}

async fn login_page(
    State(s): State<ServeState>,
    v: Viewer,
    caller: Result<Caller, Unauthorized>,
) -> Response {
    // Open (no token, no users) or signed in already: nothing to do here.
    if caller.is_ok() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(&s, &v, &v.here, None).into_response()
}

/// The sign-in page at `here`, with `why` above the form.
fn sign_in_page(s: &ServeState, v: &Viewer, here: &str, why: Option<&str>) -> Html<String> {
    let page = pages::login(
        &s.web.csrf,
        v.lang,
        here,
        why,
        s.config.auth_token.is_some(),
    );
    Html(page.into_string())
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
    v: Viewer,
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
        let why = t!("login.too_many", locale = v.lang.code(), secs = secs);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            sign_in_page(&s, &v, "/login", Some(&why)),
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
            Err(e) => return problem(&s, &v, e, "/login"),
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
            t!("login.wrong", locale = v.lang.code())
        } else {
            t!("login.wrong_password", locale = v.lang.code())
        };
        return (
            StatusCode::UNAUTHORIZED,
            sign_in_page(&s, &v, "/login", Some(&why)),
        )
            .into_response();
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
