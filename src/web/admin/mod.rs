//! The admin console at `/admin`: what ran, what was refused and why,
//! held runs with Approve / Discard, welcome status, users, the audit trail.
//! Server-rendered (askama), no JavaScript, the welcome pages' strict CSP.
//!
//! Sessions live in the store (`admin_sessions`, by the SHA-256 of the
//! cookie's token), so every daemon on it knows them; the cookie is
//! `HttpOnly; SameSite=Strict; Path=/admin` (and `Secure` behind https),
//! replaced at each login, and ends after `[admin] session_idle_minutes`
//! without a request or `session_max_hours` after login. Every POST carries
//! the session's CSRF token (the login form a cookie-bound one) and must come
//! from this origin. Failed logins slow the account down (a delay, never a
//! lock) and lock out the address that makes them, so an attacker cannot
//! lock every admin out. Applying a held run is the pipeline's work, above
//! this layer: the daemon hands it in as an [`Operator`].

pub mod chart;
mod pages;

use crate::store::Store;
use crate::time::now;
use argon2::{PasswordHash, PasswordVerifier};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the console asks of the layers above it.
pub trait Operator: Send + Sync {
    /// Applies a held run exactly; the sentence to show, or why not.
    fn approve<'a>(
        &'a self,
        id: i64,
        actor: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<String, String>>;
    /// Drops a held run.
    fn discard<'a>(
        &'a self,
        id: i64,
        actor: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<String, String>>;
    /// When the source runs next (Unix seconds), if it is scheduled.
    fn next_run<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Option<i64>>;
}

/// A configured source as the overview lists it.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub kind: &'static str,
    pub domain: String,
    /// The cron schedule, or how the source is run otherwise.
    pub schedule: String,
}

const SESSION_COOKIE: &str = "pbx_admin";
const LOGIN_COOKIE: &str = "pbx_admin_login";
/// Failures an address may make before it is locked out.
const ADDRESS_FREE_FAILURES: u32 = 5;
/// Failures an account may take before each attempt on it waits.
const ACCOUNT_FREE_FAILURES: u32 = 3;
/// Failures are forgotten this long after the last one.
const STRIKE_MEMORY: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Strikes {
    fails: u32,
    last: Instant,
}

#[derive(Default)]
struct Throttle {
    by_address: Mutex<HashMap<IpAddr, Strikes>>,
    by_account: Mutex<HashMap<String, Strikes>>,
}

impl Throttle {
    fn fails<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Strikes>>, k: &K) -> (u32, Instant) {
        map.lock()
            .ok()
            .and_then(|m| m.get(k).copied())
            .filter(|s| s.last.elapsed() < STRIKE_MEMORY)
            .map_or((0, Instant::now()), |s| (s.fails, s.last))
    }

    /// How long the address is still locked out.
    fn address_locked(&self, ip: IpAddr) -> Option<Duration> {
        let (fails, last) = Self::fails(&self.by_address, &ip);
        if fails < ADDRESS_FREE_FAILURES {
            return None;
        }
        // One minute after the fifth failure, doubling to 15 minutes.
        let exp = (fails - ADDRESS_FREE_FAILURES).min(4);
        let lock = Duration::from_secs(60 << exp).min(STRIKE_MEMORY);
        lock.checked_sub(last.elapsed())
    }

    /// How long an attempt on the account waits first: one second more per
    /// failure past the free ones, at most ten. Never a lock.
    fn account_delay(&self, name: &str) -> Duration {
        let (fails, _) = Self::fails(&self.by_account, &name.to_string());
        Duration::from_secs(u64::from(
            fails.saturating_sub(ACCOUNT_FREE_FAILURES).min(10),
        ))
    }

    fn strike(&self, ip: IpAddr, name: &str) {
        let bump = |s: Option<&Strikes>| Strikes {
            fails: s
                .filter(|s| s.last.elapsed() < STRIKE_MEMORY)
                .map_or(1, |s| s.fails.saturating_add(1)),
            last: Instant::now(),
        };
        if let Ok(mut m) = self.by_address.lock() {
            let s = bump(m.get(&ip));
            m.insert(ip, s);
            if m.len() > 10_000 {
                m.retain(|_, s| s.last.elapsed() < STRIKE_MEMORY);
            }
        }
        if let Ok(mut m) = self.by_account.lock() {
            let key: String = name.chars().take(64).collect();
            let s = bump(m.get(&key));
            m.insert(key, s);
            if m.len() > 10_000 {
                m.retain(|_, s| s.last.elapsed() < STRIKE_MEMORY);
            }
        }
    }

    fn clear(&self, ip: IpAddr, name: &str) {
        if let Ok(mut m) = self.by_address.lock() {
            m.remove(&ip);
        }
        if let Ok(mut m) = self.by_account.lock() {
            m.remove(name);
        }
    }
}

pub struct AdminApp {
    pub store: Store,
    pub operator: Arc<dyn Operator>,
    pub sources: Vec<SourceInfo>,
    /// For Message-IDs of resent welcomes.
    pub mail_domain: String,
    pub mail_wake: Arc<tokio::sync::Notify>,
    /// The console's origin (`scheme://host[:port]`), when known: POSTs
    /// from any other are refused. Unknown: the Host header must match.
    origin: Option<String>,
    secure: bool,
    idle: Duration,
    max: Duration,
    throttle: Throttle,
    hashing: tokio::sync::Semaphore,
    /// Verified when the account does not exist, so both cost the same.
    dummy_hash: String,
    /// Directory logins: the ldap source, and (group, role) in order.
    ldap: Option<(crate::config::LdapSourceConfig, Vec<(String, &'static str)>)>,
}

impl AdminApp {
    pub fn new(
        store: Store,
        operator: Arc<dyn Operator>,
        sources: Vec<SourceInfo>,
        cfg: &crate::config::Config,
        mail_wake: Arc<tokio::sync::Notify>,
    ) -> Result<AdminApp, super::policy::HashError> {
        let base = match (&cfg.admin.base_url, cfg.admin.listen) {
            (Some(b), _) => Some(b.clone()),
            (None, None) => Some(cfg.mail.link_base_url.clone()),
            (None, Some(_)) => None,
        };
        let origin = base.as_deref().map(origin_of);
        let ldap = cfg.admin.ldap.as_ref().and_then(|l| {
            let source = cfg.source(&l.source)?;
            let crate::config::SourceKind::Ldap(c) = &source.kind else {
                return None;
            };
            let groups = [(&l.admin_group, "admin"), (&l.viewer_group, "viewer")]
                .into_iter()
                .filter_map(|(g, role)| g.clone().map(|g| (g, role)))
                .collect();
            Some(((**c).clone(), groups))
        });
        let mut random = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut random);
        Ok(AdminApp {
            store,
            operator,
            sources,
            mail_domain: cfg.mail.from.email.domain().to_string(),
            mail_wake,
            secure: base.as_deref().is_some_and(|b| b.starts_with("https://")),
            origin,
            idle: cfg.admin.session_idle,
            max: cfg.admin.session_max,
            throttle: Throttle::default(),
            hashing: tokio::sync::Semaphore::new(4),
            dummy_hash: super::policy::hash_secret(&hex::encode(random))?,
            ldap,
        })
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host_len = rest.find('/').unwrap_or(rest.len());
    let scheme_len = url.len() - rest.len();
    url[..scheme_len + host_len].to_string()
}

pub fn router(app: Arc<AdminApp>) -> Router {
    Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/", get(pages::overview))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/runs/{id}", get(pages::run))
        .route("/admin/runs/{id}/result/{n}", get(pages::result_csv))
        .route("/admin/held", get(pages::held_list))
        .route("/admin/held/{id}", get(pages::held))
        .route("/admin/held/{id}/approve", post(pages::approve))
        .route("/admin/held/{id}/discard", post(pages::discard))
        .route("/admin/welcome", get(pages::welcome))
        .route("/admin/welcome/resend", post(pages::resend))
        .route("/admin/welcome/resend-all", post(pages::resend_all))
        .route("/admin/users", get(pages::users))
        .route("/admin/users/{domain}/{extension}", get(pages::user))
        .route("/admin/audit", get(pages::audit))
        .route("/admin/assets/admin.css", get(css))
        .route("/admin/{*rest}", get(pages::not_found))
        .with_state(app)
        .layer(axum::middleware::map_response(super::security_headers))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../templates/admin/admin.css"),
    )
        .into_response()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl AdminApp {
    /// Ends a session, and with it every idle or too old one.
    async fn end_session(&self, token_hash: &str) {
        let t = now();
        let _ = self
            .store
            .session_end(
                token_hash,
                t - self.idle.as_secs() as i64,
                t - self.max.as_secs() as i64,
            )
            .await;
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict{age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }

    /// A POST from this site: Fetch Metadata and Origin, when sent, say so.
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
        if site.is_some_and(|s| s != b"same-origin" && s != b"none") {
            return false;
        }
        let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return true;
        };
        if origin == "null" {
            return true;
        }
        match &self.origin {
            Some(o) => origin == o,
            None => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                host.is_some_and(|h| origin.split_once("://").is_some_and(|(_, r)| r == h))
            }
        }
    }
}

/// Who is logged in, for one request.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub admin: String,
    pub role: String,
    pub csrf: String,
    token_hash: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

pub(crate) fn address(peer: &ConnectInfo<SocketAddr>) -> String {
    peer.0.ip().to_string()
}

fn to_login(path: &str, expired: bool) -> Response {
    let next: String = path
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    let flag = if expired { "&expired=1" } else { "" };
    Redirect::to(&format!("/admin/login?next={next}{flag}")).into_response()
}

/// The request's session, or the answer to give instead (a redirect to
/// the login page; the session ended if it was idle or too old).
pub(crate) async fn session(
    app: &AdminApp,
    headers: &HeaderMap,
    path: &str,
) -> Result<Session, Response> {
    let Some(token) = cookie_value(headers, SESSION_COOKIE) else {
        return Err(to_login(path, false));
    };
    let hash = token_hash(token);
    let row = match app.store.session_get(&hash).await {
        Ok(r) => r,
        Err(e) => return Err(pages::store_down(&e)),
    };
    let Some(row) = row else {
        return Err(to_login(path, true));
    };
    let t = now();
    let idle = t - row.last_seen > app.idle.as_secs() as i64;
    let old = t - row.created_at > app.max.as_secs() as i64;
    if idle || old {
        app.end_session(&hash).await;
        tracing::info!(admin = %row.admin, idle, "admin session ended");
        return Err(to_login(path, true));
    }
    if let Err(e) = app.store.session_touch(&hash).await {
        return Err(pages::store_down(&e));
    }
    Ok(Session {
        admin: row.admin,
        role: row.role,
        csrf: row.csrf,
        token_hash: hash,
    })
}

/// A POST of the session: same origin, the session's CSRF token, and (for
/// changes) the admin role; else 403.
pub(crate) fn check_post(
    app: &AdminApp,
    headers: &HeaderMap,
    s: &Session,
    form: &HashMap<String, String>,
    needs_admin: bool,
) -> Option<Response> {
    let token_ok = form.get("csrf").is_some_and(|t| same(t, &s.csrf));
    if !app.same_origin(headers) || !token_ok {
        tracing::warn!(admin = %s.admin, "admin POST refused: cross-site or without its CSRF token");
        return Some(pages::forbidden(
            Some(s),
            "This form is not valid any more (or came from another site). Reload the page and try again.",
        ));
    }
    if needs_admin && !s.is_admin() {
        tracing::warn!(admin = %s.admin, "admin POST refused: a viewer");
        return Some(pages::forbidden(
            Some(s),
            "Your account is a viewer: it can see everything but change nothing.",
        ));
    }
    None
}

async fn login_form(
    axum::extract::State(app): axum::extract::State<Arc<AdminApp>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if cookie_value(&headers, SESSION_COOKIE).is_some()
        && session(&app, &headers, "/admin").await.is_ok()
    {
        return Redirect::to("/admin").into_response();
    }
    let notice = match q.get("expired") {
        Some(_) => "Your session has ended. Log in again.",
        None => "",
    };
    login_page(
        &app,
        StatusCode::OK,
        q.get("next").map_or("/admin", String::as_str),
        "",
        notice,
        "",
    )
}

fn login_page(
    app: &AdminApp,
    status: StatusCode,
    next: &str,
    username: &str,
    notice: &str,
    error: &str,
) -> Response {
    let token = random_token();
    let page = pages::LoginPage {
        csrf: &token,
        next: safe_next(next),
        username,
        notice,
        error,
    };
    (
        status,
        [(
            header::SET_COOKIE,
            app.cookie(LOGIN_COOKIE, &token, Some(3600)),
        )],
        pages::html(&page),
    )
        .into_response()
}

/// Only a path of the console, never another site.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/admin")
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        next
    } else {
        "/admin"
    }
}

async fn verify(app: &AdminApp, hash: String, password: String) -> bool {
    let Ok(_permit) = app.hashing.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

async fn login(
    axum::extract::State(app): axum::extract::State<Arc<AdminApp>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let (username, password, next) = (field("username").trim(), field("password"), field("next"));
    let shown_name: String = username.chars().take(64).collect();
    let cookie_ok = cookie_value(&headers, LOGIN_COOKIE).is_some_and(|c| same(c, field("csrf")));
    if !app.same_origin(&headers) || !cookie_ok {
        tracing::warn!("admin login refused: cross-site or without its form token");
        return pages::forbidden(
            None,
            "This login form is not valid any more (or came from another site). Reload the page and try again.",
        );
    }
    let ip = peer.0.ip();
    if let Some(left) = app.throttle.address_locked(ip) {
        tracing::warn!(address = %ip, "admin login refused: address locked out");
        let minutes = left.as_secs().div_ceil(60).max(1);
        let mut r = login_page(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            &shown_name,
            "",
            &format!("Too many failed logins from your address. Try again in {minutes} min."),
        );
        if let Ok(v) = HeaderValue::from_str(&left.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    tokio::time::sleep(app.throttle.account_delay(&shown_name)).await;
    let account = match app.store.admin_get(username).await {
        Ok(a) => a,
        Err(e) => return pages::store_down(&e),
    };
    let (role, hash) = match &account {
        Some((role, hash)) => (Some(role.clone()), hash.clone()),
        None => (None, app.dummy_hash.clone()),
    };
    let good = verify(&app, hash, password.to_string()).await && role.is_some();
    let mut role = role.filter(|_| good);
    // No console account of that name: the directory, if configured.
    if let (None, Some((c, groups))) = (&account, &app.ldap) {
        let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
        match crate::source::ldap::directory_login(c, username, password, &names).await {
            Ok(Some(i)) => role = groups.get(i).map(|(_, r)| r.to_string()),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %crate::model::chain(&e), "admin login: the directory failed");
                return pages::directory_down();
            }
        }
    }
    let Some(role) = role else {
        app.throttle.strike(ip, &shown_name);
        tracing::warn!(address = %ip, username = %crate::model::excerpt(&shown_name), "admin login failed");
        return login_page(
            &app,
            StatusCode::UNAUTHORIZED,
            next,
            &shown_name,
            "",
            "Wrong username or password.",
        );
    };
    app.throttle.clear(ip, &shown_name);
    // A new session at every login; the one the browser had ends.
    if let Some(old) = cookie_value(&headers, SESSION_COOKIE) {
        app.end_session(&token_hash(old)).await;
    }
    let token = random_token();
    if let Err(e) = app
        .store
        .session_create(&token_hash(&token), username, &role, &random_token())
        .await
    {
        return pages::store_down(&e);
    }
    let addr = ip.to_string();
    if let Err(e) = app
        .store
        .audit(username, &addr, "login", None, Some(&role))
        .await
    {
        tracing::warn!(error = %crate::model::chain(&e), "login not audited");
    }
    tracing::info!(admin = username, address = %ip, role, "admin logged in");
    let mut r = Redirect::to(safe_next(next)).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, app.cookie(SESSION_COOKIE, &token, None));
    h.append(header::SET_COOKIE, app.cookie(LOGIN_COOKIE, "", Some(0)));
    r
}

async fn logout(
    axum::extract::State(app): axum::extract::State<Arc<AdminApp>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let s = match session(&app, &headers, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = check_post(&app, &headers, &s, &form, false) {
        return r;
    }
    app.end_session(&s.token_hash).await;
    let _ = app
        .store
        .audit(&s.admin, &address(&peer), "logout", None, None)
        .await;
    let mut r = Redirect::to("/admin/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, app.cookie(SESSION_COOKIE, "", Some(0)));
    r
}
