//! The welcome page: `GET /welcome/{token}` shows the form, `POST` sets the
//! portal password and voicemail PIN, `POST /welcome/{token}/renew` asks for
//! a new link (mailed only to the address on file).
//!
//! An unknown, expired, revoked or used link gets the same page, status
//! (404) and work (one indexed lookup), so the page reveals nothing about
//! any account. Forms carry a token bound to the link (HMAC with the link
//! key) that must match a SameSite=Strict cookie; a cross-site Origin is
//! refused. Requests are rate-limited per client address.

use super::policy::{hash_secret, HashError, Owner, Policy};
use super::texts::{browser_words, words, Words};
use crate::mail::token::{plausible_token, token_hash, LinkKey};
use crate::store::{LinkView, Store};
use crate::time::now;
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How long a form stays valid, in seconds.
const FORM_MAX_AGE: i64 = 3600;
/// A dead link may ask for a new one this often per user, in seconds (or
/// once per link lifetime, when that is shorter).
const RENEW_QUIET: i64 = 15 * 60;
const COOKIE: &str = "pbx_form";

pub struct WelcomeApp {
    pub store: Store,
    pub key: LinkKey,
    pub policy: Policy,
    /// For Message-IDs of renewed welcomes.
    pub mail_domain: String,
    /// `mail.link_base_url`: the only origin forms are accepted from.
    pub base_url: String,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    hashing: tokio::sync::Semaphore,
    /// Woken when a renewed welcome is queued.
    pub mail_wake: Arc<tokio::sync::Notify>,
    renew_quiet: i64,
}

impl WelcomeApp {
    pub fn new(
        store: Store,
        key: LinkKey,
        policy: Policy,
        mail: &crate::config::MailConfig,
        web: &crate::config::WebConfig,
        mail_wake: Arc<tokio::sync::Notify>,
    ) -> WelcomeApp {
        WelcomeApp {
            store,
            key,
            policy,
            mail_domain: mail.from.email.domain().to_string(),
            base_url: mail.link_base_url.clone(),
            limiter: RateLimiter::keyed(Quota::per_minute(web.requests_per_minute)),
            // argon2 takes 19 MiB per hash: a few at a time.
            hashing: tokio::sync::Semaphore::new(4),
            mail_wake,
            renew_quiet: RENEW_QUIET.min(mail.link_ttl.as_secs() as i64),
        }
    }

    fn secure(&self) -> bool {
        self.base_url.starts_with("https://")
    }

    fn origin(&self) -> &str {
        let rest = self.base_url.split_once("://").map_or("", |(_, r)| r);
        let host_len = rest.find('/').unwrap_or(rest.len());
        let scheme_len = self.base_url.len() - rest.len();
        &self.base_url[..scheme_len + host_len]
    }
}

pub fn router(app: Arc<WelcomeApp>) -> Router {
    Router::new()
        .route("/welcome/{token}", get(show).post(submit))
        .route("/welcome/{token}/renew", axum::routing::post(renew))
        .route("/assets/welcome.css", get(css))
        .layer(middleware::from_fn_with_state(app.clone(), rate_limit))
        .with_state(app)
}

async fn rate_limit(State(app): State<Arc<WelcomeApp>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if app.limiter.check_key(&ip).is_err() {
        let w = browser_words(req.headers());
        let page = message_page(w, w.too_many.0, &[w.too_many.1], None);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            page,
        )
            .into_response();
    }
    if app.limiter.len() > 10_000 {
        app.limiter.retain_recent();
    }
    next.run(req).await
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/web/welcome.css"),
    )
        .into_response()
}

/// What the form shows, in either language.
struct FormFields<'a> {
    name: String,
    domain: &'a str,
    extension: &'a str,
    voicemail: bool,
    form_token: &'a str,
    password_min: usize,
    pin_min: usize,
    password_error: String,
    confirm_error: String,
    pin_error: String,
    pin_confirm_error: String,
}

#[derive(Template)]
#[template(path = "web/form.en.html")]
struct FormEn<'a> {
    lang: &'a str,
    f: FormFields<'a>,
}

#[derive(Template)]
#[template(path = "web/form.de.html")]
struct FormDe<'a> {
    lang: &'a str,
    f: FormFields<'a>,
}

#[derive(Template)]
#[template(path = "web/message.html")]
struct MessagePage<'a> {
    lang: &'a str,
    title: &'a str,
    paragraphs: &'a [&'a str],
    renew: bool,
    renew_action: String,
    form_token: String,
    button: &'a str,
}

fn html(t: impl Template) -> Html<String> {
    Html(t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "page template failed");
        "<!DOCTYPE html><title>Error</title><p>Something went wrong.</p>".into()
    }))
}

fn message_page(
    w: &Words,
    title: &str,
    paragraphs: &[&str],
    renew: Option<(&str, String)>,
) -> Html<String> {
    html(MessagePage {
        lang: w.lang,
        button: w.renew_button,
        title,
        paragraphs,
        renew: renew.is_some(),
        renew_action: renew
            .as_ref()
            .map(|(t, _)| format!("/welcome/{t}/renew"))
            .unwrap_or_default(),
        form_token: renew.map(|(_, f)| f).unwrap_or_default(),
    })
}

fn cookie(app: &WelcomeApp, value: &str) -> HeaderValue {
    let secure = if app.secure() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/welcome; HttpOnly; SameSite=Strict; Max-Age={FORM_MAX_AGE}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The one page for every link that does not work.
fn dead_link(app: &WelcomeApp, w: &Words, token: &str, hash: &str) -> Response {
    let form = app.key.form_token(hash, now());
    let renew = plausible_token(token).then(|| (token, form.clone()));
    let page = message_page(w, w.dead.0, &w.dead.1, renew);
    (
        StatusCode::NOT_FOUND,
        [(header::SET_COOKIE, cookie(app, &form))],
        page,
    )
        .into_response()
}

fn forbidden(w: &Words) -> Response {
    let page = message_page(w, w.forbidden.0, &[w.forbidden.1], None);
    (StatusCode::FORBIDDEN, page).into_response()
}

fn server_error(w: &Words) -> Response {
    let page = message_page(w, w.error.0, &[w.error.1], None);
    (StatusCode::SERVICE_UNAVAILABLE, page).into_response()
}

async fn lookup(
    app: &WelcomeApp,
    w: &Words,
    token: &str,
) -> Result<(String, Option<LinkView>), Response> {
    let hash = token_hash(token);
    if !plausible_token(token) {
        return Ok((hash, None));
    }
    match app.store.live_link(&hash).await {
        Ok(v) => Ok((hash, v)),
        Err(e) => {
            tracing::error!(error = %e, "welcome link lookup failed");
            Err(server_error(w))
        }
    }
}

/// What the form says under each field.
#[derive(Default)]
struct FieldErrors {
    password: String,
    confirm: String,
    pin: String,
    pin_confirm: String,
}

fn form_page(
    app: &WelcomeApp,
    link: &LinkView,
    hash: &str,
    errors: FieldErrors,
    status: StatusCode,
) -> Response {
    let form = app.key.form_token(hash, now());
    let name = match &link.last_name {
        Some(l) => format!("{} {l}", link.first_name),
        None => link.first_name.clone(),
    };
    let f = FormFields {
        name,
        domain: &link.domain,
        extension: &link.extension,
        voicemail: link.voicemail,
        form_token: &form,
        password_min: app.policy.password_min,
        pin_min: app.policy.pin_min,
        password_error: errors.password,
        confirm_error: errors.confirm,
        pin_error: errors.pin,
        pin_confirm_error: errors.pin_confirm,
    };
    let lang = crate::model::language(link.language.as_deref());
    let page = match lang {
        "de" => html(FormDe { lang, f }),
        _ => html(FormEn { lang, f }),
    };
    (status, [(header::SET_COOKIE, cookie(app, &form))], page).into_response()
}

async fn show(
    State(app): State<Arc<WelcomeApp>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let w = browser_words(&headers);
    match lookup(&app, w, &token).await {
        Err(r) => r,
        Ok((hash, None)) => dead_link(&app, w, &token, &hash),
        Ok((hash, Some(link))) => {
            form_page(&app, &link, &hash, FieldErrors::default(), StatusCode::OK)
        }
    }
}

/// The form token must be in the form and in the cookie, match, be valid
/// for this link, and the request must not come from another origin.
fn form_ok(
    app: &WelcomeApp,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    hash: &str,
) -> bool {
    // With `Referrer-Policy: no-referrer` browsers send `Origin: null`;
    // Fetch Metadata still says whether the post came from this site.
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if site.is_some_and(|s| s != b"same-origin" && s != b"none") {
        tracing::warn!("welcome form refused: posted from another site");
        return false;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.as_bytes() != b"null" && origin.as_bytes() != app.origin().as_bytes() {
            tracing::warn!(origin = ?origin, "welcome form refused: posted from another origin");
            return false;
        }
    }
    let Some(field) = form.get("form_token") else {
        tracing::warn!("welcome form refused: no form token");
        return false;
    };
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v);
    if from_cookie != Some(field.as_str()) {
        tracing::warn!(
            cookie = from_cookie.is_some(),
            "welcome form refused: form token and cookie differ"
        );
        return false;
    }
    let ok = app.key.check_form_token(hash, field, now(), FORM_MAX_AGE);
    if !ok {
        tracing::warn!("welcome form refused: form token expired or not for this link");
    }
    ok
}

async fn submit(
    State(app): State<Arc<WelcomeApp>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let hash = token_hash(&token);
    let bw = browser_words(&headers);
    if !form_ok(&app, &headers, &form, &hash) {
        return forbidden(bw);
    }
    let link = match lookup(&app, bw, &token).await {
        Err(r) => return r,
        Ok((_, None)) => return dead_link(&app, bw, &token, &hash),
        Ok((_, Some(l))) => l,
    };
    let w = words(link.language.as_deref().unwrap_or("en"));
    let (password, pin) = match check_secrets(&app, &link, w, &form) {
        Ok(chosen) => chosen,
        Err(errors) => {
            return form_page(&app, &link, &hash, errors, StatusCode::UNPROCESSABLE_ENTITY)
        }
    };
    let Some((pw_hash, pin_hash)) = hash_secrets(&app, password, pin).await else {
        return server_error(w);
    };
    match app
        .store
        .complete_link(&hash, &pw_hash, pin_hash.as_deref())
        .await
    {
        Ok(true) => {
            tracing::info!(
                domain = %link.domain,
                extension = %link.extension,
                "welcome completed: password{} set",
                if link.voicemail { " and PIN" } else { "" }
            );
            let said = match link.voicemail {
                true => w.done_both,
                false => w.done_password,
            };
            (StatusCode::OK, message_page(w, w.done, &[said], None)).into_response()
        }
        // Another submission of this link won the race.
        Ok(false) => dead_link(&app, bw, &token, &hash),
        Err(e) => {
            tracing::error!(error = %e, "saving the new secrets failed");
            server_error(w)
        }
    }
}

/// The password (and, with voicemail, the PIN) the form chose, checked
/// against the policy and their confirmations; or what to say about each.
fn check_secrets(
    app: &WelcomeApp,
    link: &LinkView,
    w: &Words,
    form: &HashMap<String, String>,
) -> Result<(String, Option<String>), FieldErrors> {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let owner = Owner {
        first_name: &link.first_name,
        last_name: link.last_name.as_deref(),
        extension: &link.extension,
    };
    let mut errors = FieldErrors::default();
    let password = match app.policy.password(field("password"), &owner) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.password = e.text(w.lang);
            None
        }
    };
    if password.is_some() && field("password") != field("password_confirm") {
        errors.confirm = w.password_mismatch.into();
    }
    let pin = field("pin").trim().to_string();
    if link.voicemail {
        if let Err(e) = app.policy.pin(&pin, &link.extension) {
            errors.pin = e.text(w.lang);
        } else if pin != field("pin_confirm").trim() {
            errors.pin_confirm = w.pin_mismatch.into();
        }
    }
    let failed = !(errors.password.is_empty()
        && errors.confirm.is_empty()
        && errors.pin.is_empty()
        && errors.pin_confirm.is_empty());
    match password.filter(|_| !failed) {
        Some(password) => Ok((password, link.voicemail.then_some(pin))),
        None => Err(errors),
    }
}

/// argon2id hashes of the new secrets, a few at a time and off the async
/// threads; `None` (logged) if hashing failed.
async fn hash_secrets(
    app: &WelcomeApp,
    password: String,
    pin: Option<String>,
) -> Option<(String, Option<String>)> {
    let Ok(_permit) = app.hashing.acquire().await else {
        return None;
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let pw = hash_secret(&password)?;
        let pin = pin.map(|p| hash_secret(&p)).transpose()?;
        Ok::<_, HashError>((pw, pin))
    })
    .await;
    match hashed {
        Ok(Ok(h)) => Some(h),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "hashing the new secrets failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing the new secrets failed");
            None
        }
    }
}

async fn renew(
    State(app): State<Arc<WelcomeApp>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let hash = token_hash(&token);
    let w = browser_words(&headers);
    if !form_ok(&app, &headers, &form, &hash) {
        return forbidden(w);
    }
    // Answer the same way whatever the link was; the work happens after.
    if plausible_token(&token) {
        let app = app.clone();
        tokio::spawn(async move {
            let user = match app.store.renewable_user(&hash, app.renew_quiet).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "renew lookup failed");
                    return;
                }
            };
            if let Some(id) = user {
                match app.store.resend_welcome(id, &app.mail_domain).await {
                    Ok(crate::store::Resend::Queued) => {
                        tracing::info!(user_id = id, "new welcome link requested from the page");
                        app.mail_wake.notify_one();
                    }
                    Ok(crate::store::Resend::Refused(_)) => {}
                    Err(e) => tracing::error!(error = %e, "renew failed"),
                }
            }
        });
    }
    let page = message_page(w, w.check.0, &[w.check.1], None);
    (StatusCode::OK, page).into_response()
}
