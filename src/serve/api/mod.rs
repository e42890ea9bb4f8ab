//! `/api/v1`: the JSON API the console is built on (scripts use it too).
//! Shapes equal the command line's `--json` outputs: campaigns are
//! `status --json` objects, an upload answers the `run --dry-run --json`
//! plan, the report is `report`'s CSV.

pub mod upload;

use std::convert::Infallible;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Caller;
use super::campaigns::{self, WebError};
use super::words::{Msg, NONE};
use super::ServeState;
use crate::campaign::{Action, InDoubtPolicy};

pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/api/v1/campaigns", get(list))
        .route("/api/v1/campaigns/{name}", get(one))
        .route("/api/v1/campaigns/{name}/start", post(start))
        .route("/api/v1/campaigns/{name}/pause", post(pause))
        .route(
            "/api/v1/campaigns/{name}/test",
            post(test_send).get(test_list),
        )
        .route("/api/v1/campaigns/{name}/report.csv", get(report))
        .route("/api/v1/campaigns/{name}/events", get(events))
        .route("/api/v1/campaigns/{name}/import", get(import_status))
        .route("/api/v1/audit", get(audit))
}

/// The upload: its body cap and timing are the caller's (not the JSON
/// routes' small body limit and request timeout).
pub fn upload_routes() -> Router<ServeState> {
    Router::new().route("/api/v1/campaigns", post(create))
}

async fn list(State(s): State<ServeState>) -> Result<Response, WebError> {
    let lines = s.with_reader(campaigns::status_all).await?;
    Ok(Json(lines).into_response())
}

async fn one(State(s): State<ServeState>, Path(name): Path<String>) -> Result<Response, WebError> {
    let line = s
        .with_reader_web(move |st| campaigns::status_one(st, &name))
        .await?;
    Ok(Json(line).into_response())
}

/// Store the upload, import and check it: 201 with the dry-run plan.
async fn create(
    State(s): State<ServeState>,
    caller: Caller,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let web = s.web.clone();
    // Before the body is read: a refused upload stores nothing.
    let actor = caller.actor();
    web.campaigns.permit(&actor, Action::Upload, None).await?;
    let up = upload::read(multipart, web.campaigns.state(), web.upload_limit).await?;
    let (stored, file_name) = (up.form.csv.clone(), up.file_name.clone());
    let plan = web
        .campaigns
        .create(up.form, &actor, &file_name)
        .await
        .map_err(|e| upload::by_upload_name(e, &stored, &file_name))?;
    Ok((StatusCode::CREATED, Json(plan)).into_response())
}

/// The import of an upload under way: `{"rows": N, "rejected": M}`, or
/// 404 when none is (not started yet, or done).
async fn import_status(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    match s.web.campaigns.import_status(&name) {
        Some(st) => Json(st).into_response(),
        None => WebError::NotFound(Msg::new("no_import", [("name", &name)])).into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct StartQuery {
    /// What to do with rows whose reply was lost: resend | hold.
    pub in_doubt: Option<String>,
    /// Start at this OA-local time instead of now (`2026-12-07T08:00`).
    pub start_at: Option<String>,
}

pub fn parse_in_doubt(v: Option<&str>) -> Result<Option<InDoubtPolicy>, WebError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some("resend") => Ok(Some(InDoubtPolicy::Resend)),
        Some("hold") => Ok(Some(InDoubtPolicy::Hold)),
        Some(other) => Err(WebError::bad("in_doubt", [("value", other)])),
    }
}

async fn start(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<StartQuery>,
) -> Result<Response, WebError> {
    let policy = parse_in_doubt(q.in_doubt.as_deref())?;
    if let Some(at) = parse_start_at(q.start_at.as_deref())? {
        s.web.campaigns.schedule(&name, at, &caller.actor()).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "campaign": name,
                "started": false,
                "scheduled_for": crate::model::clock::fmt_rfc3339(crate::model::clock::from_ms(at)),
            })),
        )
            .into_response());
    }
    s.web
        .campaigns
        .start(&name, policy, Some(&caller.actor()))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "campaign": name, "started": true })),
    )
        .into_response())
}

/// A start time from a form or query: blank or `now` is none.
pub fn parse_start_at(v: Option<&str>) -> Result<Option<i64>, WebError> {
    match v {
        None => Ok(None),
        Some(t) => crate::campaign::parse_start_at(t).map_err(WebError::from),
    }
}

/// The test phones, as a list or one comma-separated string.
pub fn parse_phones(v: &serde_json::Value) -> Result<Vec<String>, WebError> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| WebError::bad("phones_strings", NONE))?
            .join(","),
        _ => return Err(WebError::bad("phones_shape", NONE)),
    };
    crate::campaign::parse_test_phones(&text).map_err(WebError::from)
}

#[derive(Debug, Deserialize)]
struct TestBody {
    phones: serde_json::Value,
}

/// `{"phones": [...]}`: the first accepted row's data to each; 200 with
/// each outcome (phones masked). Nothing is stored for a bad phone.
async fn test_send(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<TestBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, WebError> {
    let Json(body) = body.map_err(|e| WebError::bad("body", [("detail", e)]))?;
    let phones = parse_phones(&body.phones)?;
    let sent = s
        .web
        .campaigns
        .send_test(&name, phones, &caller.actor())
        .await?;
    let list: Vec<_> = sent
        .into_iter()
        .map(|mut t| {
            t.phone = crate::model::phone::mask(&t.phone);
            t
        })
        .collect();
    Ok(Json(serde_json::json!({ "campaign": name, "test_sends": list })).into_response())
}

/// The campaign's test sends, newest first (phones masked).
async fn test_list(
    State(s): State<ServeState>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let list = s
        .with_reader_web(move |st| {
            st.test_sends(&name, 100)?
                .ok_or_else(|| WebError::no_campaign(&name))
        })
        .await?;
    Ok(Json(list).into_response())
}

async fn pause(
    State(s): State<ServeState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    s.web.campaigns.pause(&name, &caller.actor()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "campaign": name, "pause_requested": true })),
    )
        .into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditQuery {
    /// Only this campaign's entries.
    pub campaign: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Entries older than this id (the last `id` of the page before).
    pub before: Option<i64>,
}

/// The audit log, newest first: `[{"id", "at", "actor", "action",
/// "campaign", "detail", "outcome"}]`. Any signed-in caller may read it.
async fn audit(
    State(s): State<ServeState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > crate::campaign::team::AUDIT_MAX_LIMIT {
        return Err(WebError::bad(
            "audit_limit",
            [
                ("limit", limit.to_string()),
                ("max", crate::campaign::team::AUDIT_MAX_LIMIT.to_string()),
            ],
        ));
    }
    let campaign = q.campaign.filter(|c| !c.is_empty());
    let list = s
        .web
        .campaigns
        .audit_list(campaign, q.before, limit)
        .await?;
    Ok(Json(list).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct ReportQuery {
    /// Any value: with a byte-order mark, so Excel reads the Vietnamese right.
    pub excel: Option<String>,
}

async fn report(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, WebError> {
    let excel = q.excel.is_some_and(|v| v != "0" && v != "false");
    let file = format!(
        "{}{}.csv",
        crate::model::file_name::file_stem(&name, '_'),
        if excel { "-excel" } else { "" }
    );
    // 404 before the stream starts.
    known_campaign(&s, &name).await?;
    let stream = s.web.campaigns.report_stream(name, excel);
    let body = axum::body::Body::from_stream(stream);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// 404 unless `name` is a campaign: checked before a stream starts, which
/// could no longer say so.
async fn known_campaign(s: &ServeState, name: &str) -> Result<(), WebError> {
    let n = name.to_string();
    s.with_reader_web(move |st| {
        st.exists(&n)?
            .then_some(())
            .ok_or_else(|| WebError::no_campaign(&n))
    })
    .await
}

/// One `progress` event a second: `{"status": <status object or null>,
/// "live": <this run's progress or null>}`, from the campaign's one poller
/// (see `serve::live`). Ends when serve stops; 503 past the stream cap.
async fn events(
    State(s): State<ServeState>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    // 404 now rather than an empty stream (a look-up, not a count).
    known_campaign(&s, &name).await?;
    let sub = match s.live.subscribe(&name) {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(campaign = %name, "live progress refused: {e}");
            let body = serde_json::json!({ "error": e.to_string() });
            return Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(body),
            )
                .into_response());
        }
    };
    let stream = futures::stream::unfold(sub, |mut sub| async move {
        let payload = sub.next().await?;
        let event = Event::default().event("progress").data(&*payload);
        Some((Ok::<_, Infallible>(event), sub))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
