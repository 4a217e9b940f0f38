//! The daemon's HTTP side (`axum`, `[web] listen`): the welcome pages
//! (`welcome`), `GET /healthz` and `GET /metrics` in the Prometheus text
//! format. Every response carries strict security headers.

pub mod admin;
pub mod policy;
mod texts;
pub mod welcome;

use crate::report::RunReport;
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters since the daemon started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (source, outcome) -> runs.
    runs: Mutex<BTreeMap<(String, String), u64>>,
    created: AtomicU64,
    updated: AtomicU64,
    disabled: AtomicU64,
    reenabled: AtomicU64,
    rows_refused: AtomicU64,
    throttled_us: AtomicU64,
    mail_sent: AtomicU64,
    mail_failed: AtomicU64,
    mail_retried: AtomicU64,
    /// Daemon task -> (running now, panics so far).
    tasks: Mutex<BTreeMap<String, (bool, u64)>>,
    /// SCIM requests: (method, status) -> count.
    scim: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub fn record(&self, r: &RunReport) {
        let outcome = r.outcome.as_str();
        if let Ok(mut runs) = self.runs.lock() {
            *runs
                .entry((r.source.clone(), outcome.to_string()))
                .or_default() += 1;
        }
        self.created.fetch_add(r.created, Ordering::Relaxed);
        self.updated.fetch_add(r.updated, Ordering::Relaxed);
        self.disabled.fetch_add(r.disabled, Ordering::Relaxed);
        self.reenabled.fetch_add(r.reenabled, Ordering::Relaxed);
        self.rows_refused
            .fetch_add(r.errors.len() as u64, Ordering::Relaxed);
        self.throttled_us
            .fetch_add(r.throttled.as_micros() as u64, Ordering::Relaxed);
    }

    /// What a pass of the mail worker did.
    pub fn record_mail(&self, r: &crate::mail::DeliveryReport) {
        self.mail_sent.fetch_add(r.sent, Ordering::Relaxed);
        self.mail_failed.fetch_add(r.failed, Ordering::Relaxed);
        self.mail_retried.fetch_add(r.retrying, Ordering::Relaxed);
    }

    /// A SCIM request answered.
    pub fn record_scim(&self, method: &str, status: u16) {
        if let Ok(mut m) = self.scim.lock() {
            *m.entry((method.to_string(), status)).or_default() += 1;
        }
    }

    /// A supervised daemon task started (or restarted).
    pub fn task_running(&self, task: &str, running: bool) {
        if let Ok(mut t) = self.tasks.lock() {
            t.entry(task.to_string()).or_default().0 = running;
        }
    }

    /// A supervised daemon task panicked (it restarts after a pause).
    pub fn task_panicked(&self, task: &str) {
        if let Ok(mut t) = self.tasks.lock() {
            let e = t.entry(task.to_string()).or_default();
            e.0 = false;
            e.1 += 1;
        }
    }

    /// The tasks not running now.
    fn stopped_tasks(&self) -> Vec<String> {
        self.tasks.lock().map_or_else(
            |_| Vec::new(),
            |t| {
                t.iter()
                    .filter(|(_, (running, _))| !running)
                    .map(|(name, _)| name.clone())
                    .collect()
            },
        )
    }

    /// A failed run (store down, I/O error) still counts.
    pub fn record_failure(&self, source: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            *runs
                .entry((source.to_string(), "failed".to_string()))
                .or_default() += 1;
        }
    }

    /// The `/metrics` text, for tests of code that records into it.
    pub fn render_for_tests(&self) -> String {
        self.render()
    }

    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_runs_total Runs by source and outcome."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_runs_total counter");
        if let Ok(runs) = self.runs.lock() {
            for ((source, outcome), n) in runs.iter() {
                let _ = writeln!(
                    s,
                    "pbx_onboard_runs_total{{source=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(source)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_users_total Users changed by runs, by action."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_users_total counter");
        for (action, v) in [
            ("created", &self.created),
            ("updated", &self.updated),
            ("disabled", &self.disabled),
            ("reenabled", &self.reenabled),
        ] {
            let _ = writeln!(
                s,
                "pbx_onboard_users_total{{action=\"{action}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_rows_refused_total Input rows refused with an error."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_rows_refused_total counter");
        let _ = writeln!(
            s,
            "pbx_onboard_rows_refused_total {}",
            self.rows_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_rate_limit_wait_seconds_total Time applies spent waiting on the store write limiter."
        );
        let _ = writeln!(
            s,
            "# TYPE pbx_onboard_rate_limit_wait_seconds_total counter"
        );
        let _ = writeln!(
            s,
            "pbx_onboard_rate_limit_wait_seconds_total {:.6}",
            self.throttled_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_task_panics_total Panics caught in daemon tasks (each restarted)."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_task_panics_total counter");
        if let Ok(tasks) = self.tasks.lock() {
            for (task, (_, panics)) in tasks.iter() {
                let _ = writeln!(
                    s,
                    "pbx_onboard_task_panics_total{{task=\"{}\"}} {panics}",
                    label(task)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_scim_requests_total SCIM requests by method and status."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_scim_requests_total counter");
        if let Ok(scim) = self.scim.lock() {
            for ((method, status), n) in scim.iter() {
                let _ = writeln!(
                    s,
                    "pbx_onboard_scim_requests_total{{method=\"{}\",status=\"{status}\"}} {n}",
                    label(method)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP pbx_onboard_mail_total Emails by what happened to a send attempt."
        );
        let _ = writeln!(s, "# TYPE pbx_onboard_mail_total counter");
        for (result, v) in [
            ("sent", &self.mail_sent),
            ("failed", &self.mail_failed),
            ("retried", &self.mail_retried),
        ] {
            let _ = writeln!(
                s,
                "pbx_onboard_mail_total{{result=\"{result}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        s
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub sources: Vec<String>,
    /// `/healthz` fails once the oldest due email has waited this long.
    pub mail_overdue: Duration,
}

pub fn router(state: AppState, welcome: Option<Arc<welcome::WelcomeApp>>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Some(w) = welcome {
        r = r.merge(welcome::router(w));
    }
    r.layer(axum::middleware::map_response(security_headers))
}

/// No third-party resources, no framing, no referrer, no caching.
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, axum::http::HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// Why the daemon is not healthy (empty when it is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    store: String,
    sources: Vec<SourceHealth>,
    /// Outbox rows by status (empty when the store is down).
    outbox: BTreeMap<String, i64>,
}

#[derive(Serialize)]
struct SourceHealth {
    name: String,
    last_run: Option<LastRun>,
}

#[derive(Serialize)]
struct LastRun {
    run_id: i64,
    started_at: i64,
    finished_at: Option<i64>,
    outcome: String,
}

async fn healthz(State(st): State<AppState>) -> Response {
    let check = tokio::time::timeout(Duration::from_secs(5), st.store.ping()).await;
    let store = match check {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_string()),
    };
    let runs = match &store {
        Ok(()) => st.store.list_runs(1000).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let outbox: BTreeMap<String, i64> = match &store {
        Ok(()) => st
            .store
            .outbox_counts()
            .await
            .unwrap_or_default()
            .into_iter()
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let sources = st
        .sources
        .iter()
        .map(|name| SourceHealth {
            name: name.clone(),
            last_run: runs.iter().find(|r| &r.source == name).map(|r| LastRun {
                run_id: r.run_id,
                started_at: r.started_at,
                finished_at: r.finished_at,
                outcome: r.outcome.clone(),
            }),
        })
        .collect();
    let mut problems = Vec::new();
    let store = match store {
        Ok(()) => "reachable".to_string(),
        Err(e) => {
            problems.push(format!("the store is unreachable: {e}"));
            format!("unreachable: {e}")
        }
    };
    for task in st.metrics.stopped_tasks() {
        problems.push(format!("the {task} task is not running"));
    }
    if let Ok(Ok(Some(oldest))) =
        tokio::time::timeout(Duration::from_secs(5), st.store.oldest_due_mail()).await
    {
        let waited = crate::time::now().saturating_sub(oldest);
        if waited > st.mail_overdue.as_secs() as i64 {
            problems.push(format!(
                "the oldest due email has waited {} min (more than {} min)",
                waited / 60,
                st.mail_overdue.as_secs() / 60
            ));
        }
    }
    let code = match problems.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = Health {
        status: if problems.is_empty() {
            "ok"
        } else {
            "unavailable"
        },
        problems,
        store,
        sources,
        outbox,
    };
    (code, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut body = st.metrics.render();
    let outbox = tokio::time::timeout(Duration::from_secs(5), st.store.outbox_counts()).await;
    if let Ok(Ok(counts)) = outbox {
        let _ = writeln!(
            body,
            "# HELP pbx_onboard_outbox_messages Emails in the outbox by status."
        );
        let _ = writeln!(body, "# TYPE pbx_onboard_outbox_messages gauge");
        for status in ["queued", "sent", "failed", "cancelled"] {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(
                body,
                "pbx_onboard_outbox_messages{{status=\"{status}\"}} {n}"
            );
        }
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
