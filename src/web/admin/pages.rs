//! The console's pages. Every GET needs a session, every POST its CSRF
//! token; changes need the admin role and are written to the audit trail
//! and the log.

use super::chart::{run_history_svg, RunPoint};
use super::{address, check_post, session, AdminApp, Session};
use crate::store::{HeldAction, HeldRun, Resend, StoreError};
use crate::time::{format_rfc3339, now};
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

type App = State<Arc<AdminApp>>;
type Params = Query<HashMap<String, String>>;

/// At most this many rows on a list page (the filters narrow it down).
const LIST_MAX: usize = 500;
/// The chart's span.
const CHART_DAYS: i64 = 30;

pub(super) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an admin page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

fn when(t: i64) -> String {
    format_rfc3339(t).replace('T', " ").replace('Z', " UTC")
}

fn when_opt(t: Option<i64>) -> String {
    t.map_or_else(|| "—".to_string(), when)
}

/// What every page's frame shows: who is logged in, the logout form, and
/// a banner per pending held run.
pub(crate) struct Chrome {
    pub who: String,
    pub role: String,
    pub csrf: String,
    pub is_admin: bool,
    pub held: Vec<(i64, String)>,
}

async fn chrome(app: &AdminApp, s: &Session) -> Chrome {
    let held = app
        .store
        .held_runs(false)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            (
                h.id,
                format!(
                    "{} (domain {}) is held: {} — {} disables, {} creates, {} updates wait for an admin",
                    h.source, h.domain, h.reason, h.disables, h.creates, h.updates
                ),
            )
        })
        .collect();
    Chrome {
        who: s.admin.clone(),
        role: s.role.clone(),
        csrf: s.csrf.clone(),
        is_admin: s.is_admin(),
        held,
    }
}

#[derive(Template)]
#[template(path = "admin/login.html")]
pub(super) struct LoginPage<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    pub username: &'a str,
    pub notice: &'a str,
    pub error: &'a str,
}

#[derive(Template)]
#[template(path = "admin/message.html")]
struct MessagePage<'a> {
    c: Option<Chrome>,
    title: &'a str,
    text: &'a str,
}

fn message(status: StatusCode, c: Option<Chrome>, title: &str, text: &str) -> Response {
    (status, html(&MessagePage { c, title, text })).into_response()
}

pub(crate) fn forbidden(s: Option<&Session>, text: &str) -> Response {
    let c = s.map(|s| Chrome {
        who: s.admin.clone(),
        role: s.role.clone(),
        csrf: s.csrf.clone(),
        is_admin: s.is_admin(),
        held: Vec::new(),
    });
    message(StatusCode::FORBIDDEN, c, "Not allowed", text)
}

pub(crate) fn store_down(e: &StoreError) -> Response {
    tracing::error!(error = %crate::model::chain(e), "admin console: the store failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "The store is not answering",
        "The PBX store did not answer. Try again in a minute; /healthz says more.",
    )
}

pub(crate) fn directory_down() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "The directory is not answering",
        "Directory logins need the directory, which did not answer. Try again in a minute, or log in with a console account.",
    )
}

pub(super) async fn not_found(State(app): App, headers: HeaderMap) -> Response {
    let c = match session(&app, &headers, "/admin").await {
        Ok(s) => Some(chrome(&app, &s).await),
        Err(_) => None,
    };
    message(
        StatusCode::NOT_FOUND,
        c,
        "Not found",
        "There is no such page.",
    )
}

macro_rules! logged_in {
    ($app:expr, $headers:expr, $path:expr) => {
        match session(&$app, &$headers, $path).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

macro_rules! or_down {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return store_down(&e),
        }
    };
}

// ---------------------------------------------------------------- overview

struct SourceRow {
    name: String,
    kind: &'static str,
    domain: String,
    schedule: String,
    last_run: Option<(i64, String, String)>,
    next_run: String,
    chart: String,
}

struct RunLine {
    id: i64,
    source: String,
    started: String,
    outcome: String,
    created: i64,
    updated: i64,
    disabled: i64,
    errors: i64,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct Overview {
    c: Chrome,
    sources: Vec<SourceRow>,
    outbox: Vec<(String, i64)>,
    unfinished: usize,
    runs: Vec<RunLine>,
}

pub(super) async fn overview(State(app): App, headers: HeaderMap) -> Response {
    let s = logged_in!(app, headers, "/admin");
    let t = now();
    let runs = or_down!(app.store.runs_since(t - CHART_DAYS * 86_400).await);
    let recent = or_down!(app.store.list_runs(30).await);
    let outbox = or_down!(app.store.outbox_counts().await);
    let welcome = or_down!(app.store.welcome_states(None).await);
    let mut sources = Vec::new();
    for (i, src) in app.sources.iter().enumerate() {
        let mine: Vec<_> = runs.iter().filter(|r| r.source == src.name).collect();
        let points: Vec<RunPoint> = mine
            .iter()
            .map(|r| RunPoint {
                started_at: r.started_at,
                created: r.created,
                updated: r.updated,
                disabled: r.disabled,
                refused: r.outcome == "refused",
            })
            .collect();
        let last = recent
            .iter()
            .find(|r| r.source == src.name)
            .or_else(|| mine.last().copied())
            .map(|r| (r.run_id, when(r.started_at), r.outcome.clone()));
        sources.push(SourceRow {
            name: src.name.clone(),
            kind: src.kind,
            domain: src.domain.clone(),
            schedule: src.schedule.clone(),
            last_run: last,
            next_run: when_opt(app.operator.next_run(&src.name).await),
            chart: run_history_svg(
                &format!("chart{i}"),
                &format!("Runs of {} over the last {CHART_DAYS} days", src.name),
                &points,
                t,
                CHART_DAYS,
            ),
        });
    }
    let page = Overview {
        c: chrome(&app, &s).await,
        sources,
        outbox,
        unfinished: welcome.iter().filter(|w| w.state != "completed").count(),
        runs: recent
            .into_iter()
            .map(|r| RunLine {
                id: r.run_id,
                source: r.source,
                started: when(r.started_at),
                outcome: r.outcome,
                created: r.created,
                updated: r.updated,
                disabled: r.disabled,
                errors: r.errors,
            })
            .collect(),
    };
    html(&page)
}

// ---------------------------------------------------------------- a run

struct ErrorLine {
    file: String,
    row: String,
    column: String,
    message: String,
}

#[derive(Template)]
#[template(path = "admin/run.html")]
struct RunPage {
    c: Chrome,
    id: i64,
    source: String,
    domain: String,
    started: String,
    finished: String,
    outcome: String,
    counts: Vec<(&'static str, i64)>,
    refused: String,
    notes: Vec<String>,
    files: Vec<(usize, String, String, bool)>,
    errors: Vec<ErrorLine>,
    conflicts: Vec<ErrorLine>,
}

/// A member of a JSON object (Null when absent).
fn at<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

fn text(v: &Value, k: &str) -> String {
    match at(v, k) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

pub(super) async fn run(State(app): App, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let s = logged_in!(app, headers, &format!("/admin/runs/{id}"));
    let Some((r, report)) = or_down!(app.store.run(id).await) else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No such run",
            &format!("There is no run {id}."),
        );
    };
    let report: Value = report
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or(Value::Null);
    let lines = |k: &str, msg: &str| -> Vec<ErrorLine> {
        at(&report, k)
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| ErrorLine {
                        file: text(e, "file"),
                        row: text(e, "row"),
                        column: text(e, "column"),
                        message: match msg {
                            "reason" => format!("{}: {}", text(e, "source_id"), text(e, "reason")),
                            _ => text(e, msg),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let page = RunPage {
        c: chrome(&app, &s).await,
        id,
        source: r.source.clone(),
        domain: r.domain.clone(),
        started: when(r.started_at),
        finished: when_opt(r.finished_at),
        outcome: r.outcome.clone(),
        counts: vec![
            ("created", r.created),
            ("updated", r.updated),
            ("disabled", r.disabled),
            ("re-enabled", r.reenabled),
            ("unchanged", r.unchanged),
            ("conflicts", r.conflicts),
            ("refused rows", r.errors),
        ],
        refused: text(&report, "refused"),
        notes: at(&report, "notes")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        files: at(&report, "files")
            .as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, f)| {
                        (
                            i,
                            text(f, "file"),
                            text(f, "status"),
                            at(f, "result_csv").is_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        errors: lines("errors", "message"),
        conflicts: lines("conflicts", "reason"),
    };
    html(&page)
}

/// The per-row result CSV a run wrote, as a download.
pub(super) async fn result_csv(
    State(app): App,
    headers: HeaderMap,
    Path((id, n)): Path<(i64, usize)>,
) -> Response {
    let s = logged_in!(app, headers, &format!("/admin/runs/{id}"));
    let report = or_down!(app.store.run(id).await).and_then(|(_, r)| r);
    let path = report
        .and_then(|j| serde_json::from_str::<Value>(&j).ok())
        .and_then(|v| {
            v.get("files")
                .and_then(|f| f.get(n))
                .and_then(|f| f.get("result_csv"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let Some(path) = path else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No result file",
            "This run wrote no result CSV for that file.",
        );
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let name = std::path::Path::new(&path)
                .file_name()
                .map_or("result.csv".into(), |f| {
                    f.to_string_lossy().replace('"', "")
                });
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No result file",
            &format!("The result CSV is gone from this host ({e})."),
        ),
    }
}

// ---------------------------------------------------------------- held runs

struct HeldLine {
    id: i64,
    source: String,
    domain: String,
    status: String,
    reason: String,
    creates: i64,
    updates: i64,
    disables: i64,
    updated: String,
    decided: String,
}

fn held_line(h: &HeldRun) -> HeldLine {
    HeldLine {
        id: h.id,
        source: h.source.clone(),
        domain: h.domain.clone(),
        status: h.status.clone(),
        reason: h.reason.clone(),
        creates: h.creates,
        updates: h.updates,
        disables: h.disables,
        updated: when(h.updated_at),
        decided: match (&h.decided_by, h.decided_at) {
            (Some(by), Some(at)) => format!("{by}, {}", when(at)),
            _ => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "admin/held_list.html")]
struct HeldListPage {
    c: Chrome,
    held: Vec<HeldLine>,
}

pub(super) async fn held_list(State(app): App, headers: HeaderMap) -> Response {
    let s = logged_in!(app, headers, "/admin/held");
    let held = or_down!(app.store.held_runs(true).await);
    let page = HeldListPage {
        c: chrome(&app, &s).await,
        held: held.iter().map(held_line).collect(),
    };
    html(&page)
}

#[derive(Template)]
#[template(path = "admin/held.html")]
struct HeldPage {
    c: Chrome,
    h: HeldLine,
    pending: bool,
    applied_run: Option<i64>,
    q: String,
    action: String,
    kinds: Vec<&'static str>,
    total: usize,
    actions: Vec<HeldAction>,
}

async fn load_held(
    app: &AdminApp,
    id: i64,
) -> Result<Option<(HeldRun, Vec<HeldAction>)>, StoreError> {
    let Some((held, plan)) = app.store.held_run(id).await? else {
        return Ok(None);
    };
    let plan = plan.and_then(|p| serde_json::from_str::<crate::plan::Plan>(&p).ok());
    let actions = app.store.held_actions(&held, plan.as_ref()).await?;
    Ok(Some((held, actions)))
}

pub(super) async fn held(
    State(app): App,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(p): Params,
) -> Response {
    let s = logged_in!(app, headers, &format!("/admin/held/{id}"));
    let Some((h, actions)) = or_down!(load_held(&app, id).await) else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No such held run",
            &format!("There is no held run {id}."),
        );
    };
    let q = p.get("q").map_or("", |v| v.trim()).to_lowercase();
    let action = p.get("action").cloned().unwrap_or_default();
    let total = actions.len();
    let shown: Vec<HeldAction> = actions
        .into_iter()
        .filter(|a| action.is_empty() || a.action == action)
        .filter(|a| {
            q.is_empty()
                || [
                    a.name.as_str(),
                    a.extension.as_str(),
                    a.source_id.as_str(),
                    a.department.as_deref().unwrap_or(""),
                    a.site.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(&q))
        })
        .collect();
    let page = HeldPage {
        c: chrome(&app, &s).await,
        pending: h.status == "pending",
        applied_run: h.applied_run_id,
        h: held_line(&h),
        q,
        action,
        kinds: vec!["create", "update", "reenable", "disable", "delete"],
        total,
        actions: shown,
    };
    html(&page)
}

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage {
    c: Chrome,
    h: HeldLine,
    verb: &'static str,
    what: String,
}

async fn decide(
    app: Arc<AdminApp>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: i64,
    form: HashMap<String, String>,
    approve: bool,
) -> Response {
    let s = logged_in!(app, headers, &format!("/admin/held/{id}"));
    if let Some(r) = check_post(&app, &headers, &s, &form, true) {
        return r;
    }
    let Some((h, _)) = or_down!(app.store.held_run(id).await) else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No such held run",
            &format!("There is no held run {id}."),
        );
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let what = match approve {
            true => format!(
                "This applies exactly the held plan of {}: it disables {} users, creates {} and updates {}.",
                h.source, h.disables, h.creates, h.updates
            ),
            false => format!(
                "Nothing of held run {id} is applied: {} users stay as they are. A later run of {} may be refused and held again.",
                h.disables + h.creates + h.updates,
                h.source
            ),
        };
        let page = ConfirmPage {
            c: chrome(&app, &s).await,
            h: held_line(&h),
            verb: if approve { "approve" } else { "discard" },
            what,
        };
        return html(&page);
    }
    let addr = address(&peer);
    let result = match approve {
        true => app.operator.approve(id, &s.admin, &addr).await,
        false => app.operator.discard(id, &s.admin, &addr).await,
    };
    let c = chrome(&app, &s).await;
    match result {
        Ok(said) => message(
            StatusCode::OK,
            Some(c),
            if approve { "Approved" } else { "Discarded" },
            &said,
        ),
        Err(why) => message(StatusCode::CONFLICT, Some(c), "Not done", &why),
    }
}

pub(super) async fn approve(
    State(app): App,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    decide(app, peer, headers, id, form, true).await
}

pub(super) async fn discard(
    State(app): App,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    decide(app, peer, headers, id, form, false).await
}

// ---------------------------------------------------------------- welcome

struct WelcomeLine {
    domain: String,
    extension: String,
    name: String,
    email: String,
    state: String,
    attempts: i64,
    sent: String,
    expires: String,
    error: String,
}

#[derive(Template)]
#[template(path = "admin/welcome.html")]
struct WelcomePage {
    c: Chrome,
    state: String,
    states: Vec<(&'static str, usize)>,
    rows: Vec<WelcomeLine>,
    total: usize,
}

pub(super) async fn welcome(State(app): App, headers: HeaderMap, Query(p): Params) -> Response {
    let s = logged_in!(app, headers, "/admin/welcome");
    let all = or_down!(app.store.welcome_states(None).await);
    let state = p.get("state").cloned().unwrap_or_default();
    let states = [
        "queued",
        "sent",
        "failed",
        "expired",
        "cancelled",
        "none",
        "completed",
    ]
    .into_iter()
    .map(|st| (st, all.iter().filter(|w| w.state == st).count()))
    .collect();
    let filtered: Vec<_> = all
        .iter()
        .filter(|w| state.is_empty() || w.state == state)
        .collect();
    let page = WelcomePage {
        c: chrome(&app, &s).await,
        total: filtered.len(),
        rows: filtered
            .into_iter()
            .take(LIST_MAX)
            .map(|w| WelcomeLine {
                domain: w.domain.clone(),
                extension: w.extension.clone(),
                name: w.name.clone(),
                email: w.emails.first().cloned().unwrap_or_default(),
                state: w.state.clone(),
                attempts: w.attempts,
                sent: when_opt(w.sent_at),
                expires: when_opt(w.expires_at),
                error: w.last_error.clone().unwrap_or_default(),
            })
            .collect(),
        state,
        states,
    };
    html(&page)
}

pub(super) async fn resend(
    State(app): App,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let s = logged_in!(app, headers, "/admin/welcome");
    if let Some(r) = check_post(&app, &headers, &s, &form, true) {
        return r;
    }
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let (domain, ext) = (field("domain"), field("extension"));
    let target = format!("{ext}@{domain}");
    let Some(id) = or_down!(app.store.user_id(domain, ext).await) else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No such user",
            &format!("There is no user {}.", crate::model::excerpt(&target)),
        );
    };
    let said = match or_down!(app.store.resend_welcome(id, &app.mail_domain).await) {
        Resend::Queued => {
            app.mail_wake.notify_one();
            or_down!(
                app.store
                    .audit(
                        &s.admin,
                        &address(&peer),
                        "welcome.resend",
                        Some(&target),
                        None
                    )
                    .await
            );
            tracing::info!(admin = %s.admin, user = %target, "welcome resent from the console");
            format!("A new welcome email to {target} is queued; the old link no longer works.")
        }
        Resend::Refused(why) => format!("No welcome was sent to {target}: {why}."),
    };
    message(
        StatusCode::OK,
        Some(chrome(&app, &s).await),
        "Welcome",
        &said,
    )
}

pub(super) async fn resend_all(
    State(app): App,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let s = logged_in!(app, headers, "/admin/welcome");
    if let Some(r) = check_post(&app, &headers, &s, &form, true) {
        return r;
    }
    let ids = or_down!(app.store.resend_candidates(None, false).await);
    let mut queued = 0;
    for id in &ids {
        if matches!(
            or_down!(app.store.resend_welcome(*id, &app.mail_domain).await),
            Resend::Queued
        ) {
            queued += 1;
        }
    }
    if queued > 0 {
        app.mail_wake.notify_one();
    }
    let detail = format!("{queued} queued");
    or_down!(
        app.store
            .audit(
                &s.admin,
                &address(&peer),
                "welcome.resend_all",
                None,
                Some(&detail)
            )
            .await
    );
    tracing::info!(admin = %s.admin, queued, "pending welcomes resent from the console");
    message(
        StatusCode::OK,
        Some(chrome(&app, &s).await),
        "Welcome",
        &format!(
            "{queued} new welcome emails are queued (people who have not finished, have an email, and have no working link on its way)."
        ),
    )
}

// ---------------------------------------------------------------- users

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    c: Chrome,
    q: String,
    tag: String,
    status: String,
    source: String,
    sources: Vec<String>,
    total: usize,
    users: Vec<crate::store::UserView>,
}

pub(super) async fn users(State(app): App, headers: HeaderMap, Query(p): Params) -> Response {
    let s = logged_in!(app, headers, "/admin/users");
    let all = or_down!(app.store.list_users(None).await);
    let get = |k: &str| p.get(k).map_or(String::new(), |v| v.trim().to_string());
    let (q, tag, status, source) = (
        get("q").to_lowercase(),
        get("tag"),
        get("status"),
        get("source"),
    );
    let mut sources: Vec<String> = all.iter().filter_map(|u| u.source.clone()).collect();
    sources.sort();
    sources.dedup();
    let matching: Vec<_> = all
        .into_iter()
        .filter(|u| tag.is_empty() || u.tags.iter().any(|t| *t == tag))
        .filter(|u| status.is_empty() || u.status == status)
        .filter(|u| source.is_empty() || u.source.as_deref() == Some(source.as_str()))
        .filter(|u| {
            q.is_empty()
                || u.extension.contains(&q)
                || format!("{} {}", u.first_name, u.last_name.as_deref().unwrap_or(""))
                    .to_lowercase()
                    .contains(&q)
                || u.emails.iter().any(|e| e.to_lowercase().contains(&q))
        })
        .collect();
    let page = UsersPage {
        c: chrome(&app, &s).await,
        total: matching.len(),
        users: matching.into_iter().take(LIST_MAX).collect(),
        q,
        tag,
        status,
        source,
        sources,
    };
    html(&page)
}

struct EventLine {
    run_id: i64,
    at: String,
    source: String,
    action: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    c: Chrome,
    u: crate::store::UserView,
    welcome: String,
    history: Vec<EventLine>,
}

pub(super) async fn user(
    State(app): App,
    headers: HeaderMap,
    Path((domain, extension)): Path<(String, String)>,
) -> Response {
    let s = logged_in!(app, headers, "/admin/users");
    let all = or_down!(app.store.list_users(Some(&domain)).await);
    let Some(u) = all.into_iter().find(|u| u.extension == extension) else {
        return message(
            StatusCode::NOT_FOUND,
            Some(chrome(&app, &s).await),
            "No such user",
            "There is no user with that extension in that domain.",
        );
    };
    let welcome = or_down!(app.store.welcome_states(Some(&domain)).await)
        .into_iter()
        .find(|w| w.extension == extension)
        .map_or_else(|| "—".to_string(), |w| w.state);
    let id = or_down!(app.store.user_id(&domain, &extension).await);
    let history = match id {
        Some(id) => or_down!(app.store.user_history(id).await),
        None => Vec::new(),
    };
    let page = UserPage {
        c: chrome(&app, &s).await,
        u,
        welcome,
        history: history
            .into_iter()
            .map(|e| EventLine {
                run_id: e.run_id,
                at: when(e.at),
                source: e.source,
                action: e.action,
                detail: e.detail.map(|d| describe(&d)).unwrap_or_default(),
            })
            .collect(),
    };
    html(&page)
}

/// A run action's detail (an extension, or the JSON list of changes) as
/// one line.
fn describe(detail: &str) -> String {
    match serde_json::from_str::<Value>(detail) {
        Ok(Value::Array(changes)) => changes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} → {}",
                    text(c, "field"),
                    at(c, "from").as_str().unwrap_or("—"),
                    at(c, "to").as_str().unwrap_or("—")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => detail.to_string(),
    }
}

// ---------------------------------------------------------------- audit

struct AuditLine {
    at: String,
    actor: String,
    address: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    c: Chrome,
    rows: Vec<AuditLine>,
}

pub(super) async fn audit(State(app): App, headers: HeaderMap) -> Response {
    let s = logged_in!(app, headers, "/admin/audit");
    let rows = or_down!(app.store.audit_rows(LIST_MAX as i64).await);
    let page = AuditPage {
        c: chrome(&app, &s).await,
        rows: rows
            .into_iter()
            .map(|r| AuditLine {
                at: when(r.at),
                actor: r.actor,
                address: r.address,
                action: r.action,
                target: r.target.unwrap_or_default(),
                detail: r.detail.unwrap_or_default(),
            })
            .collect(),
    };
    html(&page)
}
