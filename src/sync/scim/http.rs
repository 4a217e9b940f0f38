//! The SCIM 2.0 endpoints (RFC 7644), mounted on the daemon's router at
//! `/scim/v2/{source}/`: `Users`, `Groups`, `ServiceProviderConfig`,
//! `ResourceTypes`, `Schemas`. Every request needs `Authorization: Bearer`
//! with a token from the source's `token_file`, compared as SHA-256 digests
//! in constant time; tokens are never logged.
//!
//! A write is one run of the pipeline for the people it touches (see the
//! parent module), serialised per source in this daemon and per domain by
//! the store's lock across daemons. Writes beyond `limits.writes_per_second`
//! are answered 429 with `Retry-After` instead of queueing.

use super::apply_records;
use crate::config::{Config, Resolved, ScimSource};
use crate::model::{StaffRecord, StopFlag};
use crate::report::{Outcome, RunReport};
use crate::scim::{filter, patch, resource, schema, user, ScimError, MAX_BODY, MAX_PAGE};
use crate::store::{ScimKind, ScimRow, ScimWrite, Store, Taken};
use crate::sync::RunOptions;
use crate::web::Metrics;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a request waits for the source's earlier requests.
const QUEUE_WAIT: Duration = Duration::from_secs(20);
/// How long a request's run waits for a run of the domain by another
/// source (a CSV import, a directory sync): with [`QUEUE_WAIT`], a request
/// is answered within Entra's 60 s (a 503 with Retry-After, nothing kept).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why the daemon refuses to serve a scim source.
#[derive(Debug, thiserror::Error)]
pub enum ScimSetupError {
    #[error("scim source `{name}`: cannot read token_file {}", path.display())]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scim source `{name}`: token_file {} holds no token (one per line)", path.display())]
    Empty { name: String, path: PathBuf },
    #[error("scim source `{name}`: token_file {} may be read by others (mode {mode:03o}); `chmod 600` it", path.display())]
    Open {
        name: String,
        path: PathBuf,
        mode: u32,
    },
    #[error("scim source `{name}`: token_file {} line {line}: `sha256:` needs 64 hex digits", path.display())]
    BadDigest {
        name: String,
        path: PathBuf,
        line: usize,
    },
}

/// Reads a token file: one token per line, or `sha256:HEX` of one; blank
/// lines and `#` comments skipped. Kept as digests only.
pub fn read_tokens(name: &str, path: &std::path::Path) -> Result<Vec<[u8; 32]>, ScimSetupError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| ScimSetupError::Read {
        name: name.into(),
        path: path.into(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ScimSetupError::Open {
            name: name.into(),
            path: path.into(),
            mode: mode & 0o777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let digest = match line.strip_prefix("sha256:") {
            Some(hex_digest) => hex::decode(hex_digest.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| ScimSetupError::BadDigest {
                    name: name.into(),
                    path: path.into(),
                    line: n + 1,
                })?,
            None => Sha256::digest(line.as_bytes()).into(),
        };
        tokens.push(digest);
    }
    match tokens.is_empty() {
        true => Err(ScimSetupError::Empty {
            name: name.into(),
            path: path.into(),
        }),
        false => Ok(tokens),
    }
}

struct SourceState {
    tokens: Vec<[u8; 32]>,
    queue: tokio::sync::Mutex<()>,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// What the SCIM endpoints share.
pub struct ScimApp {
    cfg: Arc<Config>,
    store: Store,
    sources: HashMap<String, SourceState>,
    metrics: Arc<Metrics>,
    stop: StopFlag,
    /// Wakes the mail worker once a run queued welcome emails.
    wake: Arc<tokio::sync::Notify>,
}

impl ScimApp {
    /// `None` when no scim source is configured.
    pub fn new(
        cfg: Arc<Config>,
        store: Store,
        metrics: Arc<Metrics>,
        stop: StopFlag,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Option<Arc<ScimApp>>, ScimSetupError> {
        let mut sources = HashMap::new();
        for s in &cfg.sources {
            if let Resolved::Scim(scim) = s.resolve() {
                let tokens = read_tokens(&s.name, &scim.scim.token_file)?;
                let limiter = cfg.limits.writes_per_second.map(|wps| {
                    RateLimiter::direct(Quota::per_second(wps).allow_burst(cfg.limits.burst))
                });
                sources.insert(
                    s.name.clone(),
                    SourceState {
                        tokens,
                        queue: tokio::sync::Mutex::new(()),
                        limiter,
                    },
                );
            }
        }
        if sources.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ScimApp {
            cfg,
            store,
            sources,
            metrics,
            stop,
            wake,
        })))
    }

    fn source(&self, name: &str) -> Result<(ScimSource<'_>, &SourceState), ScimError> {
        let state = self.sources.get(name).ok_or_else(|| no_source(name))?;
        match self.cfg.source(name).map(|s| s.resolve()) {
            Some(Resolved::Scim(s)) => Ok((s, state)),
            _ => Err(no_source(name)),
        }
    }

    /// Where the source's resources are, as clients reach them.
    fn base(&self, name: &str) -> String {
        format!(
            "{}/scim/v2/{name}",
            self.cfg.mail.link_base_url.trim_end_matches('/')
        )
    }
}

pub fn router(app: Arc<ScimApp>) -> Router {
    Router::new()
        .route(
            "/scim/v2/{source}/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/{source}/ResourceTypes", get(resource_types))
        .route("/scim/v2/{source}/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/{source}/Schemas", get(schemas))
        .route("/scim/v2/{source}/Schemas/{id}", get(schema_one))
        .route("/scim/v2/{source}/Users", get(list_users).post(create_user))
        .route("/scim/v2/{source}/.search", axum::routing::post(search_all))
        .route(
            "/scim/v2/{source}/Users/.search",
            axum::routing::post(search_users),
        )
        .route(
            "/scim/v2/{source}/Groups/.search",
            axum::routing::post(search_groups),
        )
        .route(
            "/scim/v2/{source}/{*rest}",
            axum::routing::any(no_such_endpoint),
        )
        .route(
            "/scim/v2/{source}/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/scim/v2/{source}/Groups",
            get(list_groups).post(create_group),
        )
        .route(
            "/scim/v2/{source}/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = scim_json(status, &self.body());
        if self.status == 429 || self.status == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pbx-onboard\""),
            );
        }
        r
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

/// Authentication, the write rate, and the request counter.
async fn guard(State(app): State<Arc<ScimApp>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let name = req
        .uri()
        .path()
        .strip_prefix("/scim/v2/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_string();
    let response = match check(&app, &name, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    app.metrics.record_scim(&method, response.status().as_u16());
    response
}

fn no_source(name: &str) -> ScimError {
    ScimError::new(
        404,
        None,
        format!("no scim source `{}`", crate::model::excerpt(name)),
    )
}

fn check(app: &ScimApp, name: &str, req: &Request) -> Result<(), ScimError> {
    let state = app.sources.get(name).ok_or_else(|| no_source(name))?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let unauthorized = || ScimError::new(401, None, "a valid bearer token is needed");
    let digest: [u8; 32] = Sha256::digest(presented.ok_or_else(unauthorized)?.as_bytes()).into();
    // Every token is compared, so the time taken says nothing about which.
    let ok = state
        .tokens
        .iter()
        .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&digest));
    if !bool::from(ok) {
        return Err(unauthorized());
    }
    let writes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if let (true, Some(limiter)) = (writes, &state.limiter) {
        if let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let mut e = ScimError::new(429, None, "the PBX write rate is used up; retry later");
            e.detail = format!("{} (in {} s)", e.detail, wait.as_secs().max(1));
            return Err(e);
        }
    }
    Ok(())
}

type Params = Query<HashMap<String, String>>;

/// A query parameter by name, case-insensitively.
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn finish(r: Result<Response, ScimError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

fn store_error(e: crate::store::StoreError) -> ScimError {
    tracing::error!(error = %crate::model::chain(&e), "scim: store error");
    ScimError::new(503, None, "the store is not answering; retry later")
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    // RFC 9562 version 4, variant 10.
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    )
}

fn kind_path(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => "Users",
        ScimKind::Group => "Groups",
    }
}

fn render(app: &ScimApp, name: &str, kind: ScimKind, row: &ScimRow) -> Result<Value, ScimError> {
    Ok(resource::with_meta(
        parse_row(row)?,
        &resource::Meta {
            resource_type: kind.as_str(),
            id: &row.id,
            created: row.created_at,
            modified: row.updated_at,
            version: row.version,
            location: format!("{}/{}/{}", app.base(name), kind_path(kind), row.id),
        },
    ))
}

fn one(status: StatusCode, body: &Value, version: i64, location: Option<&str>) -> Response {
    let mut r = scim_json(status, body);
    if let Ok(v) = HeaderValue::from_str(&resource::etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if let Some(Ok(l)) = location.map(HeaderValue::from_str) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

async fn load(app: &ScimApp, name: &str, kind: ScimKind, id: &str) -> Result<ScimRow, ScimError> {
    app.store
        .scim_get(name, kind, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ScimError::not_found(kind.as_str(), id))
}

/// The resource a write changes, if `If-Match` names its current version.
async fn load_current(
    app: &ScimApp,
    name: &str,
    kind: ScimKind,
    id: &str,
    headers: &HeaderMap,
) -> Result<ScimRow, ScimError> {
    let row = load(app, name, kind, id).await?;
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    resource::check_if_match(if_match, row.version)?;
    Ok(row)
}

fn parse_row(row: &ScimRow) -> Result<Value, ScimError> {
    serde_json::from_str(&row.body)
        .map_err(|e| ScimError::new(500, None, format!("a stored resource is not JSON: {e}")))
}

/// The source's Groups: (displayName, member ids).
async fn all_groups(app: &ScimApp, name: &str) -> Result<Vec<(String, Vec<String>)>, ScimError> {
    let rows = app
        .store
        .scim_list(name, ScimKind::Group)
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter_map(|g| Some((resource::display_name(&g)?, resource::member_ids(&g))))
        .collect())
}

/// The displayName of every Group that lists `user_id` as a member.
fn groups_of(groups: &[(String, Vec<String>)], user_id: &str) -> Vec<String> {
    groups
        .iter()
        .filter(|(_, members)| members.iter().any(|m| m == user_id))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Runs the pipeline for `records`; the first problem it reports, as the
/// SCIM error to answer.
async fn run(
    app: &ScimApp,
    source: ScimSource<'_>,
    records: Vec<StaffRecord>,
    location: String,
) -> Result<RunReport, ScimError> {
    run_with(app, source, records, location, false).await
}

/// `override_limits`: for a disable the rolling-hour check (see
/// [`must_hold`]) let through, so that the per-run percentage does not
/// refuse one person of a small source.
async fn run_with(
    app: &ScimApp,
    source: ScimSource<'_>,
    records: Vec<StaffRecord>,
    location: String,
    override_limits: bool,
) -> Result<RunReport, ScimError> {
    let opts = RunOptions {
        stop: Some(app.stop.clone()),
        override_limits,
        lock_wait: Some(LOCK_WAIT),
        no_hold: true,
        ..RunOptions::default()
    };
    let report = apply_records(&app.cfg, &app.store, source, records, location, &opts)
        .await
        .map_err(|e| {
            tracing::error!(source = %source.source.name, error = %crate::model::chain(&e), "scim run failed");
            ScimError::new(503, None, format!("the change was not applied: {}", crate::model::chain(&e)))
        })?;
    app.metrics.record(&report);
    if report.created > 0 || report.reenabled > 0 {
        app.wake.notify_one();
    }
    tracing::info!(
        source = %source.source.name, run_id = report.run_id, outcome = report.outcome.as_str(),
        created = report.created, updated = report.updated, disabled = report.disabled,
        errors = report.errors.len(), "scim run"
    );
    Ok(report)
}

/// Mass deprovisioning is held: a disable beyond `limits.max_disable` (or
/// `max_disable_percent` of the source's users) within a rolling hour,
/// counting the source's applied disables and its pending holds. The
/// threshold it would pass, or `None` when it may be applied now (also
/// when the PBX user is not active: nothing to disable).
async fn must_hold(
    app: &ScimApp,
    name: &str,
    source_id: &str,
) -> Result<Option<crate::plan::Refusal>, ScimError> {
    use crate::plan::Refusal;
    let store = &app.store;
    if !store
        .source_user_active(name, source_id)
        .await
        .map_err(store_error)?
    {
        return Ok(None);
    }
    let hour_ago = crate::time::now() - 3600;
    let applied = store
        .disabled_since(name, hour_ago)
        .await
        .map_err(store_error)?;
    let pending = store.pending_hold_count(name).await.map_err(store_error)?;
    let disables = u64::try_from(applied + pending + 1).unwrap_or(u64::MAX);
    let limits = &app.cfg.limits;
    if disables > limits.max_disable {
        return Ok(Some(Refusal::MaxDisable {
            disables,
            limit: limits.max_disable,
        }));
    }
    // The share of the people the source had an hour ago.
    let active = store.active_users_of(name).await.map_err(store_error)?;
    let base = u64::try_from(active + applied + pending)
        .unwrap_or(u64::MAX)
        .max(1);
    if disables.saturating_mul(100) > u64::from(limits.max_disable_percent).saturating_mul(base) {
        return Ok(Some(Refusal::MaxDisablePercent {
            disables,
            active: base,
            limit: limits.max_disable_percent,
        }));
    }
    Ok(None)
}

/// Stages a disable instead of applying it, and tells the admins when it
/// is the first of a batch.
async fn hold(
    app: &ScimApp,
    source: ScimSource<'_>,
    source_id: &str,
    resource_id: &str,
    what: &str,
    body: &Value,
    why: crate::plan::Refusal,
) -> Result<(), ScimError> {
    let name = source.source.name.as_str();
    let first = app
        .store
        .pending_hold_count(name)
        .await
        .map_err(store_error)?
        == 0;
    let text = body.to_string();
    let id = app
        .store
        .hold(&crate::store::NewHold {
            source: name,
            domain: &source.source.domain.name,
            source_id,
            resource_id,
            what,
            body: &text,
            now: crate::time::now(),
        })
        .await
        .map_err(store_error)?;
    tracing::warn!(source = name, held = id, reason = %why, "scim: a disable is held for an admin (`pbx-onboard held list`)");
    if first {
        let report = RunReport {
            source: name.to_string(),
            domain: source.source.domain.name.clone(),
            outcome: Outcome::Refused,
            refused: Some(why),
            notes: vec![format!(
                "SCIM source `{name}` asked for more disables than the limits allow within an hour; \
                 they are held, not applied: `pbx-onboard held list`, then `held approve` or `held discard`"
            )],
            ..RunReport::default()
        };
        crate::mail::queue_admin_report(&app.cfg.mail, &app.store, &report, std::iter::empty())
            .await;
        app.wake.notify_one();
    }
    Ok(())
}

/// The answer for a run of one person: its first error, or none.
fn problem(report: &RunReport) -> Option<ScimError> {
    if report.outcome == Outcome::Refused {
        let why = report
            .refused
            .as_ref()
            .map_or_else(|| "a safety limit".to_string(), ToString::to_string);
        return Some(ScimError::new(403, None, format!("refused: {why}")));
    }
    if let Some(e) = report.errors.first() {
        let status = match report.outcome {
            Outcome::Failed => 503,
            _ => 400,
        };
        let scim_type = (status == 400).then_some("invalidValue");
        return Some(ScimError::new(status, scim_type, e.to_string()));
    }
    report
        .conflicts
        .first()
        .map(|c| ScimError::uniqueness(c.reason.clone()))
}

async fn queue<'a>(state: &'a SourceState) -> Result<tokio::sync::MutexGuard<'a, ()>, ScimError> {
    tokio::time::timeout(QUEUE_WAIT, state.queue.lock())
        .await
        .map_err(|_| {
            ScimError::new(
                503,
                None,
                "earlier requests of this source are still running; retry later",
            )
        })
}

fn location(name: &str, kind: ScimKind, id: &str) -> String {
    format!("scim:{name}/{}/{id}", kind_path(kind))
}

/// The source id a User's PBX user is kept under: fixed when the resource
/// was created (its externalId then, else its id), so a later externalId
/// change does not orphan the PBX user.
fn record_id(res: &Value, id: &str) -> String {
    user::external_id(res).unwrap_or_else(|| id.to_string())
}

fn pbx_key(row: &ScimRow, res: &Value) -> String {
    row.pbx_key
        .clone()
        .unwrap_or_else(|| record_id(res, &row.id))
}

fn strip_server_fields(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("id") && !k.eq_ignore_ascii_case("meta"));
    }
}

// ---- Discovery.

async fn service_provider_config(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
) -> Response {
    scim_json(
        StatusCode::OK,
        &schema::service_provider_config(&app.base(&name)),
    )
}

async fn resource_types(State(app): State<Arc<ScimApp>>, Path(name): Path<String>) -> Response {
    let all = schema::resource_types(&app.base(&name));
    scim_json(StatusCode::OK, &resource::list_response(all.len(), 1, all))
}

async fn resource_type(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    match schema::resource_types(&app.base(&name))
        .into_iter()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(id.as_str()))
    {
        Some(t) => scim_json(StatusCode::OK, &t),
        None => ScimError::not_found("ResourceType", &id).into_response(),
    }
}

fn all_schemas(app: &ScimApp, name: &str) -> Vec<Value> {
    let sites: Vec<&str> = app
        .cfg
        .source(name)
        .map(|s| s.domain.sites.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    schema::schemas(&app.base(name), &sites)
}

async fn schemas(State(app): State<Arc<ScimApp>>, Path(name): Path<String>) -> Response {
    let all = all_schemas(&app, &name);
    scim_json(StatusCode::OK, &resource::list_response(all.len(), 1, all))
}

async fn schema_one(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    match all_schemas(&app, &name).into_iter().find(|s| {
        s.get("id")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case(&id))
    }) {
        Some(s) => scim_json(StatusCode::OK, &s),
        None => ScimError::not_found("Schema", &id).into_response(),
    }
}

// ---- Lists and reads.

async fn list(
    app: &ScimApp,
    name: &str,
    kind: ScimKind,
    q: &HashMap<String, String>,
) -> Result<Response, ScimError> {
    list_kinds(app, name, &[kind], q).await
}

/// A list of the resources of `kinds` (both for a root `.search`), in
/// creation order per kind.
async fn list_kinds(
    app: &ScimApp,
    name: &str,
    kinds: &[ScimKind],
    q: &HashMap<String, String>,
) -> Result<Response, ScimError> {
    app.source(name)?;
    let f = param(q, "filter").map(filter::parse).transpose()?;
    let (start, count) = resource::paging(param(q, "startIndex"), param(q, "count"), MAX_PAGE)?;
    let mut matched = Vec::new();
    for &kind in kinds {
        let rows = app.store.scim_list(name, kind).await.map_err(store_error)?;
        for row in &rows {
            let v = render(app, name, kind, row)?;
            if f.as_ref().is_none_or(|f| filter::matches(f, &v)) {
                matched.push(v);
            }
        }
    }
    let total = matched.len();
    let page: Vec<Value> = matched
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|v| resource::project(v, param(q, "attributes"), param(q, "excludedAttributes")))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &resource::list_response(total, start, page),
    ))
}

async fn read_one(
    app: &ScimApp,
    name: &str,
    kind: ScimKind,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ScimError> {
    app.source(name)?;
    let row = load(app, name, kind, id).await?;
    let v = resource::project(
        render(app, name, kind, &row)?,
        param(q, "attributes"),
        param(q, "excludedAttributes"),
    );
    Ok(one(StatusCode::OK, &v, row.version, None))
}

/// Anything else under a source's path: a SCIM 404, not a bare one.
async fn no_such_endpoint(Path((_, rest)): Path<(String, String)>) -> Response {
    ScimError::new(
        404,
        None,
        format!("no SCIM endpoint `/{}`", crate::model::excerpt(&rest)),
    )
    .into_response()
}

/// `POST …/.search` (RFC 7644 §3.4.3): the query in a SearchRequest body.
fn search_query(body: &[u8]) -> Result<HashMap<String, String>, ScimError> {
    let v = resource::object(body)?;
    let mut q = HashMap::new();
    for key in [
        "filter",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
    ] {
        let text = match filter::member(&v, key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        };
        q.insert(key.to_string(), text);
    }
    Ok(q)
}

async fn search_all(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    finish(
        async {
            let q = search_query(&body)?;
            list_kinds(&app, &name, &[ScimKind::User, ScimKind::Group], &q).await
        }
        .await,
    )
}

async fn search_users(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    finish(async { list(&app, &name, ScimKind::User, &search_query(&body)?).await }.await)
}

async fn search_groups(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    finish(async { list(&app, &name, ScimKind::Group, &search_query(&body)?).await }.await)
}

async fn list_users(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    finish(list(&app, &name, ScimKind::User, &q).await)
}

async fn list_groups(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    finish(list(&app, &name, ScimKind::Group, &q).await)
}

async fn get_user(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Params,
) -> Response {
    finish(read_one(&app, &name, ScimKind::User, &id, &q).await)
}

async fn get_group(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Params,
) -> Response {
    finish(read_one(&app, &name, ScimKind::Group, &id, &q).await)
}

// ---- Users.

async fn create_user(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    finish(create_user_inner(&app, &name, &body).await)
}

async fn create_user_inner(app: &ScimApp, name: &str, body: &[u8]) -> Result<Response, ScimError> {
    let (source, state) = app.source(name)?;
    let mut res = resource::object(body)?;
    resource::drop_nulls(&mut res);
    strip_server_fields(&mut res);
    user::normalise(&mut res)?;
    let user_name = user::user_name(&res)?;
    let external = user::external_id(&res);
    let id = new_id();
    // Checked before anything is stored: a refused resource leaves nothing.
    let record = user::record(
        &res,
        &id,
        Vec::new(),
        location(name, ScimKind::User, &id).into(),
    )?;
    let _queue = queue(state).await?;
    let key = user_name.to_lowercase();
    let text = res.to_string();
    let pbx_key = record.source_id.clone();
    let write = ScimWrite {
        source: name,
        kind: ScimKind::User,
        id: &id,
        external_id: external.as_deref(),
        pbx_key: Some(&pbx_key),
        name_key: Some(&key),
        body: &text,
        now: crate::time::now(),
    };
    // The unique userName decides, also between daemons: a retried POST
    // whose first answer was lost is told where the user is.
    if let Err(taken) = app.store.scim_insert(&write).await.map_err(store_error)? {
        let holder = match taken {
            Taken::By(h) => h,
            Taken::Stale => String::new(),
        };
        let at = format!("{}/Users/{holder}", app.base(name));
        let mut r = ScimError::uniqueness(format!(
            "userName `{}` or externalId is already taken by {at}",
            crate::model::excerpt(&user_name)
        ))
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&at) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(r);
    }
    let outcome = run(
        app,
        source,
        vec![record],
        location(name, ScimKind::User, &id),
    )
    .await;
    let failure = match &outcome {
        Err(e) => Some(e.clone()),
        Ok(report) => problem(report),
    };
    if let Some(e) = failure {
        if let Err(d) = app.store.scim_delete(name, ScimKind::User, &id).await {
            tracing::error!(error = %crate::model::chain(&d), id, "scim: a refused User stays stored");
        }
        return Err(e);
    }
    let row = load(app, name, ScimKind::User, &id).await?;
    let at = format!("{}/Users/{id}", app.base(name));
    Ok(one(
        StatusCode::CREATED,
        &render(app, name, ScimKind::User, &row)?,
        row.version,
        Some(&at),
    ))
}

async fn put_user(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(
        async {
            let mut res = resource::object(&body)?;
            resource::drop_nulls(&mut res);
            change_user(&app, &name, &id, &headers, |_old| Ok(res)).await
        }
        .await,
    )
}

async fn patch_user(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(
        async {
            let ops = resource::object(&body)?;
            change_user(&app, &name, &id, &headers, |old| {
                let mut res = old.clone();
                patch::apply(&mut res, &ops)?;
                resource::drop_nulls(&mut res);
                Ok(res)
            })
            .await
        }
        .await,
    )
}

/// PUT and PATCH: the new resource from the old one, checked, run, stored.
async fn change_user(
    app: &ScimApp,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    make: impl FnOnce(&Value) -> Result<Value, ScimError>,
) -> Result<Response, ScimError> {
    let (source, state) = app.source(name)?;
    let _queue = queue(state).await?;
    let row = load_current(app, name, ScimKind::User, id, headers).await?;
    let old = parse_row(&row)?;
    let mut res = make(&old)?;
    strip_server_fields(&mut res);
    user::normalise(&mut res)?;
    let user_name = user::user_name(&res)?;
    let external = user::external_id(&res);
    let key_of_user = pbx_key(&row, &old);
    // The extension never changes once the PBX user has one: a resource may
    // state it (or leave it out), not change it.
    if let Some(asked) = user::pbx_extension(&res) {
        let current = app
            .store
            .source_user_extension(name, &key_of_user)
            .await
            .map_err(store_error)?;
        if let Some(current) = current.filter(|c| *c != asked) {
            return Err(ScimError::bad(
                "mutability",
                format!(
                    "{}:extension is immutable: this user's is {current}",
                    crate::scim::PBX_SCHEMA
                ),
            ));
        }
    }
    let groups = groups_of(&all_groups(app, name).await?, id);
    let mut record = user::record(&res, id, groups, location(name, ScimKind::User, id).into())?;
    record.source_id.clone_from(&key_of_user);
    let disables = record.status == crate::model::SourceStatus::Left;
    if !disables {
        // Active again (or another change): a held disable is moot.
        app.store
            .supersede_holds(name, &key_of_user, crate::time::now())
            .await
            .map_err(store_error)?;
    }
    match disables {
        true => match must_hold(app, name, &key_of_user).await? {
            Some(why) => hold(app, source, &key_of_user, id, "deactivate", &res, why).await?,
            None => {
                let report = run_with(
                    app,
                    source,
                    vec![record],
                    location(name, ScimKind::User, id),
                    true,
                )
                .await?;
                if let Some(e) = problem(&report) {
                    return Err(e);
                }
            }
        },
        false => {
            let report = run(
                app,
                source,
                vec![record],
                location(name, ScimKind::User, id),
            )
            .await?;
            if let Some(e) = problem(&report) {
                return Err(e);
            }
        }
    }
    let key = user_name.to_lowercase();
    let text = res.to_string();
    let write = ScimWrite {
        source: name,
        kind: ScimKind::User,
        id,
        external_id: external.as_deref(),
        pbx_key: None,
        name_key: Some(&key),
        body: &text,
        now: crate::time::now(),
    };
    match app
        .store
        .scim_replace(&write, row.version)
        .await
        .map_err(store_error)?
    {
        Ok(_) => {}
        Err(Taken::Stale) => {
            return Err(ScimError::new(
                412,
                None,
                "the User changed meanwhile; read it again",
            ))
        }
        Err(Taken::By(other)) => {
            return Err(ScimError::uniqueness(format!(
                "userName `{}` is already taken by {}/Users/{other}",
                crate::model::excerpt(&user_name),
                app.base(name)
            )))
        }
    }
    let row = load(app, name, ScimKind::User, id).await?;
    Ok(one(
        StatusCode::OK,
        &render(app, name, ScimKind::User, &row)?,
        row.version,
        None,
    ))
}

async fn delete_user(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(
        async {
            let (source, state) = app.source(&name)?;
            let _queue = queue(state).await?;
            let row = load_current(&app, &name, ScimKind::User, &id, &headers).await?;
            // The PBX user is disabled (voicemail kept) and deleted after
            // `delete_after_days`; the resource is gone now.
            let mut res = parse_row(&row)?;
            if let Some(o) = res.as_object_mut() {
                o.insert("active".into(), Value::Bool(false));
            }
            let mut record = user::record(
                &res,
                &id,
                Vec::new(),
                location(&name, ScimKind::User, &id).into(),
            )?;
            record.source_id = pbx_key(&row, &res);
            let key = record.source_id.clone();
            match must_hold(&app, &name, &key).await? {
                Some(why) => hold(&app, source, &key, &id, "delete", &res, why).await?,
                None => {
                    let report = run_with(
                        &app,
                        source,
                        vec![record],
                        location(&name, ScimKind::User, &id),
                        true,
                    )
                    .await?;
                    if let Some(e) = problem(&report) {
                        return Err(e);
                    }
                }
            }
            app.store
                .scim_delete(&name, ScimKind::User, &id)
                .await
                .map_err(store_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

// ---- Groups: membership feeds the mapping rules' `group = "…"`.

/// Runs the pipeline again for users whose groups changed.
async fn rerun_members(
    app: &ScimApp,
    source: ScimSource<'_>,
    name: &str,
    users: BTreeSet<String>,
    group_id: &str,
) -> Result<(), ScimError> {
    let groups = all_groups(app, name).await?;
    let mut records = Vec::new();
    for uid in users {
        let Some(row) = app
            .store
            .scim_get(name, ScimKind::User, &uid)
            .await
            .map_err(store_error)?
        else {
            continue;
        };
        let res = parse_row(&row)?;
        let groups = groups_of(&groups, &uid);
        let mut record = user::record(
            &res,
            &uid,
            groups,
            location(name, ScimKind::User, &uid).into(),
        )?;
        record.source_id = pbx_key(&row, &res);
        records.push(record);
    }
    if records.is_empty() {
        return Ok(());
    }
    let report = run(
        app,
        source,
        records,
        location(name, ScimKind::Group, group_id),
    )
    .await?;
    if let Some(e) = problem(&report) {
        // The group is stored; the people it could not change are in the
        // run's report.
        tracing::warn!(source = %name, group = group_id, error = %e.detail, "scim: a group change was not applied to every member");
    }
    Ok(())
}

fn group_fields(res: &mut Value) -> Result<(), ScimError> {
    strip_server_fields(res);
    resource::drop_nulls(res);
    if resource::display_name(res).is_none() {
        return Err(ScimError::bad(
            "invalidValue",
            "a Group needs a displayName",
        ));
    }
    if let Some(o) = res.as_object_mut() {
        o.insert(
            "schemas".into(),
            serde_json::json!([crate::scim::GROUP_SCHEMA]),
        );
    }
    Ok(())
}

async fn create_group(
    State(app): State<Arc<ScimApp>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    finish(
        async {
            let (source, state) = app.source(&name)?;
            let mut res = resource::object(&body)?;
            group_fields(&mut res)?;
            let id = new_id();
            let _queue = queue(state).await?;
            let text = res.to_string();
            let external = user::external_id(&res);
            let write = ScimWrite {
                source: &name,
                kind: ScimKind::Group,
                id: &id,
                external_id: external.as_deref(),
                pbx_key: None,
                name_key: None,
                body: &text,
                now: crate::time::now(),
            };
            if let Err(Taken::By(h)) = app.store.scim_insert(&write).await.map_err(store_error)? {
                return Err(ScimError::uniqueness(format!(
                    "externalId is already taken by {}/Groups/{h}",
                    app.base(&name)
                )));
            }
            let members: BTreeSet<String> = resource::member_ids(&res).into_iter().collect();
            rerun_members(&app, source, &name, members, &id).await?;
            let row = load(&app, &name, ScimKind::Group, &id).await?;
            let at = format!("{}/Groups/{id}", app.base(&name));
            Ok(one(
                StatusCode::CREATED,
                &render(&app, &name, ScimKind::Group, &row)?,
                row.version,
                Some(&at),
            ))
        }
        .await,
    )
}

async fn put_group(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(
        async {
            let res = resource::object(&body)?;
            change_group(&app, &name, &id, &headers, |_| Ok(res)).await
        }
        .await,
    )
}

async fn patch_group(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(
        async {
            let ops = resource::object(&body)?;
            change_group(&app, &name, &id, &headers, |old| {
                let mut res = old.clone();
                patch::apply(&mut res, &ops)?;
                Ok(res)
            })
            .await
        }
        .await,
    )
}

async fn change_group(
    app: &ScimApp,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    make: impl FnOnce(&Value) -> Result<Value, ScimError>,
) -> Result<Response, ScimError> {
    let (source, state) = app.source(name)?;
    let _queue = queue(state).await?;
    let row = load_current(app, name, ScimKind::Group, id, headers).await?;
    let old = parse_row(&row)?;
    let mut res = make(&old)?;
    group_fields(&mut res)?;
    let before: BTreeSet<String> = resource::member_ids(&old).into_iter().collect();
    let after: BTreeSet<String> = resource::member_ids(&res).into_iter().collect();
    // A rename changes every member's groups; else only who came and went.
    let touched: BTreeSet<String> =
        match resource::display_name(&old) == resource::display_name(&res) {
            true => before.symmetric_difference(&after).cloned().collect(),
            false => before.union(&after).cloned().collect(),
        };
    let text = res.to_string();
    let external = user::external_id(&res);
    let write = ScimWrite {
        source: name,
        kind: ScimKind::Group,
        id,
        external_id: external.as_deref(),
        pbx_key: None,
        name_key: None,
        body: &text,
        now: crate::time::now(),
    };
    match app
        .store
        .scim_replace(&write, row.version)
        .await
        .map_err(store_error)?
    {
        Ok(_) => {}
        Err(Taken::Stale) => {
            return Err(ScimError::new(
                412,
                None,
                "the Group changed meanwhile; read it again",
            ))
        }
        Err(Taken::By(h)) => {
            return Err(ScimError::uniqueness(format!(
                "externalId is already taken by {}/Groups/{h}",
                app.base(name)
            )))
        }
    }
    rerun_members(app, source, name, touched, id).await?;
    let row = load(app, name, ScimKind::Group, id).await?;
    Ok(one(
        StatusCode::OK,
        &render(app, name, ScimKind::Group, &row)?,
        row.version,
        None,
    ))
}

async fn delete_group(
    State(app): State<Arc<ScimApp>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    finish(
        async {
            let (source, state) = app.source(&name)?;
            let _queue = queue(state).await?;
            let row = load(&app, &name, ScimKind::Group, &id).await?;
            let members: BTreeSet<String> = resource::member_ids(&parse_row(&row)?)
                .into_iter()
                .collect();
            app.store
                .scim_delete(&name, ScimKind::Group, &id)
                .await
                .map_err(store_error)?;
            rerun_members(&app, source, &name, members, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
