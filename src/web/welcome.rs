//! The welcome page: `GET /welcome/{token}` shows the form, `POST` sets the
//! portal password and voicemail PIN, `POST /welcome/{token}/renew` asks for
//! a new link (mailed only to the address on file).
//!
//! An unknown, expired, revoked or used link gets the same page, status
//! (404) and work (one indexed lookup), so the page reveals nothing about
//! any account. Forms carry a token bound to the link (HMAC with the link
//! key) that must match a SameSite=Strict cookie; a cross-site Origin is
//! refused. Requests are rate-limited per client address.

use super::policy::{hash_secret, Owner, Policy};
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

/// The pages' words in one language (the form has a template per language).
struct Words {
    lang: &'static str,
    too_many: (&'static str, &'static str),
    dead: (&'static str, [&'static str; 2]),
    renew_button: &'static str,
    forbidden: (&'static str, &'static str),
    error: (&'static str, &'static str),
    done: &'static str,
    done_both: &'static str,
    done_password: &'static str,
    check: (&'static str, &'static str),
    password_mismatch: &'static str,
    pin_mismatch: &'static str,
}

const EN: Words = Words {
    lang: "en",
    too_many: ("Too many requests", "Please wait a minute and try again."),
    dead: (
        "This link does not work",
        [
            "It may have expired, been used already, or been replaced by a newer email.",
            "If it was sent to you and you have not finished setting up, we can email you a new link. It goes only to the address we have on file.",
        ],
    ),
    renew_button: "Send me a new link",
    forbidden: (
        "Please start again",
        "This form expired or did not come from this page. Open the link from your email again.",
    ),
    error: (
        "Something went wrong",
        "Nothing was changed. Please try again in a few minutes.",
    ),
    done: "You are all set",
    done_both: "Your portal password and voicemail PIN are saved. You can close this page.",
    done_password: "Your portal password is saved. You can close this page.",
    check: (
        "Check your email",
        "If this link was sent to someone who has not finished setting up, a new link is on its way to the address on file. Earlier links no longer work.",
    ),
    password_mismatch: "The two passwords are not the same.",
    pin_mismatch: "The two PINs are not the same.",
};

const DE: Words = Words {
    lang: "de",
    too_many: ("Zu viele Anfragen", "Bitte warten Sie eine Minute und versuchen Sie es erneut."),
    dead: (
        "Dieser Link funktioniert nicht",
        [
            "Er ist vielleicht abgelaufen, wurde schon benutzt oder durch eine neuere E-Mail ersetzt.",
            "Wenn er an Sie ging und Sie die Einrichtung noch nicht abgeschlossen haben, schicken wir Ihnen einen neuen Link. Er geht nur an die Adresse, die wir von Ihnen haben.",
        ],
    ),
    renew_button: "Neuen Link schicken",
    forbidden: (
        "Bitte neu beginnen",
        "Dieses Formular ist abgelaufen oder kam nicht von dieser Seite. Öffnen Sie den Link aus Ihrer E-Mail erneut.",
    ),
    error: (
        "Etwas ist schiefgegangen",
        "Es wurde nichts geändert. Bitte versuchen Sie es in ein paar Minuten erneut.",
    ),
    done: "Alles erledigt",
    done_both: "Ihr Portal-Passwort und Ihre Sprachbox-PIN sind gespeichert. Sie können diese Seite schließen.",
    done_password: "Ihr Portal-Passwort ist gespeichert. Sie können diese Seite schließen.",
    check: (
        "Bitte sehen Sie in Ihre E-Mails",
        "Wenn dieser Link an jemanden ging, der die Einrichtung noch nicht abgeschlossen hat, ist ein neuer Link an die hinterlegte Adresse unterwegs. Frühere Links funktionieren nicht mehr.",
    ),
    password_mismatch: "Die beiden Passwörter sind nicht gleich.",
    pin_mismatch: "Die beiden PINs sind nicht gleich.",
};

fn words(lang: &str) -> &'static Words {
    match crate::model::language(Some(lang)) {
        "de" => &DE,
        _ => &EN,
    }
}

/// For pages without a user (dead links, errors): the browser's first
/// language with templates, English otherwise. Says nothing about accounts.
fn browser_words(headers: &HeaderMap) -> &'static Words {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .filter_map(|t| {
            let tag = t.split(';').next()?.trim();
            let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
            crate::model::LANGUAGES
                .iter()
                .find(|l| **l == primary)
                .copied()
        })
        .next()
        .map_or(&EN, words)
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

#[derive(Default)]
struct Errors {
    password: String,
    confirm: String,
    pin: String,
    pin_confirm: String,
}

fn form_page(
    app: &WelcomeApp,
    link: &LinkView,
    hash: &str,
    errors: Errors,
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
        Ok((hash, Some(link))) => form_page(&app, &link, &hash, Errors::default(), StatusCode::OK),
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
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let owner = Owner {
        first_name: &link.first_name,
        last_name: link.last_name.as_deref(),
        extension: &link.extension,
    };
    let mut errors = Errors::default();
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
    let Some(password) = password.filter(|_| !failed) else {
        return form_page(&app, &link, &hash, errors, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let hashed = {
        let Ok(_permit) = app.hashing.acquire().await else {
            return server_error(w);
        };
        let pin = link.voicemail.then_some(pin);
        tokio::task::spawn_blocking(move || {
            let pw = hash_secret(&password)?;
            let pin = pin.map(|p| hash_secret(&p)).transpose()?;
            Ok::<_, String>((pw, pin))
        })
        .await
    };
    let (pw_hash, pin_hash) = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "hashing the new secrets failed");
            return server_error(w);
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing the new secrets failed");
            return server_error(w);
        }
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
            let page = message_page(
                w,
                w.done,
                &[if link.voicemail {
                    w.done_both
                } else {
                    w.done_password
                }],
                None,
            );
            (StatusCode::OK, page).into_response()
        }
        // Another submission of this link won the race.
        Ok(false) => dead_link(&app, bw, &token, &hash),
        Err(e) => {
            tracing::error!(error = %e, "saving the new secrets failed");
            server_error(w)
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
                    Ok(true) => {
                        tracing::info!(user_id = id, "new welcome link requested from the page");
                        app.mail_wake.notify_one();
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "renew failed"),
                }
            }
        });
    }
    let page = message_page(w, w.check.0, &[w.check.1], None);
    (StatusCode::OK, page).into_response()
}
