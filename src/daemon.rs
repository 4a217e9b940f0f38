//! `pbx-onboard daemon`: every source's schedule (`tokio-cron-scheduler`),
//! the drop-folder watch (`notify`, with a periodic rescan as fallback), and
//! the mail outbox worker, and the web server (welcome pages, `/healthz`,
//! `/metrics`), in one process.
//!
//! One worker task per source runs that source's passes one after another;
//! runs of one domain are serialised by the store's domain lock (a file lock
//! on SQLite, an advisory lock on PostgreSQL), so two sources of one domain,
//! or two daemons on one PostgreSQL, never sync a domain at once.
//!
//! Signals: SIGTERM / SIGINT stop taking work, let apply finish the chunk in
//! flight (it stops between chunks) and exit within [`SHUTDOWN_GRACE`].
//! SIGHUP re-reads the config; a bad new config is refused and logged, and
//! the old one keeps running. systemd `Type=notify` gets READY, RELOADING,
//! STOPPING and WATCHDOG pings when `$NOTIFY_SOCKET` is set.

use crate::config::{Config, Resolved, SourceConfig, SourceKind};
use crate::model::StopFlag;
use crate::store::{Store, StoreError};
use crate::sync::{self, RunOptions};
use crate::web::{self, AppState, Metrics};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// How long a shutdown waits for work in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the admin console")]
    AdminKey(#[source] crate::web::policy::HashError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the {0} signal handler: {1}")]
    Signal(&'static str, #[source] std::io::Error),
    #[error("the scheduler failed")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("web.password_blocklist_file {}", path.display())]
    Blocklist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Scim(#[from] sync::scim::http::ScimSetupError),
}

/// Why a config sent with SIGHUP is not taken.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("web.password_blocklist_file {}", path.display())]
    Blocklist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Scim(#[from] sync::scim::http::ScimSetupError),
}

/// How often the mail worker looks for due emails without being woken.
const MAIL_POLL: Duration = Duration::from_secs(5);

/// Delivers the outbox until the daemon stops; temporary failures wait for
/// their retry time in the store, so a restart loses nothing.
async fn mail_worker(
    mailer: Arc<crate::mail::Mailer>,
    store: Store,
    wake: Arc<tokio::sync::Notify>,
    mut quit: watch::Receiver<bool>,
    stop: StopFlag,
    metrics: Arc<Metrics>,
) {
    loop {
        match mailer.deliver(&store, Some(&stop)).await {
            Ok(r) => metrics.record_mail(&r),
            Err(e) => {
                tracing::error!(error = %crate::model::chain(&e), "mail delivery pass failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(MAIL_POLL) => {}
            _ = wake.notified() => {}
            _ = quit.wait_for(|q| *q) => break,
        }
    }
    mailer.close().await;
}

/// The new config, if it loads and its mail and web parts can start (CA
/// file, link key, blocklist): otherwise the running one is kept.
fn reloadable(path: &Path) -> Result<Config, ReloadError> {
    let cfg = Config::load(path)?;
    crate::mail::Mailer::new(&cfg.mail)?;
    for s in &cfg.sources {
        if let Resolved::Scim(scim) = s.resolve() {
            sync::scim::http::read_tokens(&s.name, &scim.scim.token_file)?;
        }
    }
    if let Some(p) = &cfg.web.password_blocklist_file {
        std::fs::metadata(p).map_err(|source| ReloadError::Blocklist {
            path: p.clone(),
            source,
        })?;
    }
    Ok(cfg)
}

fn welcome_app(
    cfg: &Config,
    store: &Store,
    mailer: &crate::mail::Mailer,
    wake: Arc<tokio::sync::Notify>,
) -> Result<Arc<web::welcome::WelcomeApp>, DaemonError> {
    let policy =
        web::policy::Policy::for_config(&cfg.web).map_err(|source| DaemonError::Blocklist {
            path: cfg.web.password_blocklist_file.clone().unwrap_or_default(),
            source,
        })?;
    Ok(Arc::new(web::welcome::WelcomeApp::new(
        store.clone(),
        mailer.key().clone(),
        policy,
        &cfg.mail,
        &cfg.web,
        wake,
    )))
}

/// Serves `app` (with each request's peer address) until `quit`.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut quit: watch::Receiver<bool>,
    what: &'static str,
) {
    let shutdown = async move {
        let _ = quit.wait_for(|q| *q).await;
    };
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, server = what, "web server failed");
    }
}

enum Next {
    Stop,
    Reload(Box<Config>),
}

/// When a scheduled source runs next (asked of the scheduler).
type NextRun = Arc<dyn Fn() -> web::admin::BoxFuture<'static, Option<i64>> + Send + Sync>;
type NextRuns = Arc<std::sync::Mutex<std::collections::HashMap<String, NextRun>>>;

/// What the console asks of the daemon: held runs decided through the
/// pipeline, and the scheduler's next tick per source.
struct Operator {
    cfg: Arc<Config>,
    store: Store,
    next_runs: NextRuns,
    wake: Arc<tokio::sync::Notify>,
}

impl web::admin::Operator for Operator {
    fn approve<'a>(
        &'a self,
        id: i64,
        actor: &'a str,
        address: &'a str,
    ) -> web::admin::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            match sync::held::approve(&self.cfg, &self.store, id, actor, address).await {
                Ok(d) => {
                    self.wake.notify_one();
                    Ok(match d.report {
                        Some(r) => format!(
                            "Held run #{id} is applied as run #{}: {} created, {} updated, {} disabled, {} refused rows.",
                            r.run_id.unwrap_or(0),
                            r.created,
                            r.updated,
                            r.disabled,
                            r.errors.len()
                        ),
                        None => format!("Held run #{id} is approved; nothing was left to apply."),
                    })
                }
                Err(e) => Err(crate::model::chain(&e)),
            }
        })
    }

    fn discard<'a>(
        &'a self,
        id: i64,
        actor: &'a str,
        address: &'a str,
    ) -> web::admin::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            match sync::held::discard(&self.store, id, actor, address).await {
                Ok(d) if d.held.kind == "scim" => Ok(format!(
                    "Held run #{id} is discarded: those PBX users stay active (re-activate them in the identity provider)."
                )),
                Ok(_) => Ok(format!("Held run #{id} is discarded: nothing of it was applied.")),
                Err(e) => Err(crate::model::chain(&e)),
            }
        })
    }

    fn next_run<'a>(&'a self, source: &'a str) -> web::admin::BoxFuture<'a, Option<i64>> {
        let f = self
            .next_runs
            .lock()
            .ok()
            .and_then(|m| m.get(source).cloned());
        Box::pin(async move {
            match f {
                Some(f) => f().await,
                None => None,
            }
        })
    }
}

fn admin_app(
    cfg: &Config,
    store: &Store,
    next_runs: NextRuns,
    wake: Arc<tokio::sync::Notify>,
) -> Result<Arc<web::admin::AdminApp>, DaemonError> {
    let sources = cfg
        .sources
        .iter()
        .map(|s| web::admin::SourceInfo {
            name: s.name.clone(),
            kind: match s.kind {
                SourceKind::Csv(_) => "csv",
                SourceKind::Ldap(_) => "ldap",
                SourceKind::Scim(_) => "scim",
            },
            domain: s.domain.name.clone(),
            schedule: match (&s.schedule, &s.kind) {
                (Some(c), SourceKind::Csv(_)) => {
                    format!("cron {}, and when files arrive", c.as_str())
                }
                (Some(c), _) => format!("cron {}", c.as_str()),
                (None, SourceKind::Scim(_)) => "pushed by the identity provider".into(),
                (None, _) => "when files arrive".into(),
            },
        })
        .collect();
    let operator = Arc::new(Operator {
        cfg: Arc::new(cfg.clone()),
        store: store.clone(),
        next_runs,
        wake: wake.clone(),
    });
    web::admin::AdminApp::new(store.clone(), operator, sources, cfg, wake)
        .map(Arc::new)
        .map_err(DaemonError::AdminKey)
}

/// Runs until SIGTERM / SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path, mut cfg: Config) -> Result<i32, DaemonError> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| DaemonError::Signal("TERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DaemonError::Signal("INT", e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| DaemonError::Signal("HUP", e))?;
    let metrics = Arc::new(Metrics::default());
    let _watchdog = spawn_watchdog();
    let mut first = true;
    loop {
        // A store that is down at start (or at a reload) is waited for, with
        // backoff, instead of ending the service; SIGTERM still stops it.
        let mut pause = Duration::from_secs(1);
        let store = loop {
            match Store::connect(&cfg.store).await {
                Ok(s) => break s,
                Err(e) if e.is_connection() => {
                    tracing::error!(error = %crate::model::chain(&e), ?pause, "the store is unreachable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = term.recv() => return Ok(0),
                        _ = int.recv() => return Ok(0),
                    }
                    pause = (pause * 2).min(Duration::from_secs(60));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let stop: StopFlag = Arc::new(AtomicBool::new(false));
        let (quit_tx, quit_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let listener = tokio::net::TcpListener::bind(cfg.web.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: cfg.web.listen,
                source,
            })?;
        let mailer = Arc::new(crate::mail::Mailer::new(&cfg.mail)?);
        let wake = Arc::new(tokio::sync::Notify::new());
        let welcome = welcome_app(&cfg, &store, &mailer, wake.clone())?;
        {
            let (store, quit, stop, m, wake) = (
                store.clone(),
                quit_rx.clone(),
                stop.clone(),
                metrics.clone(),
                wake.clone(),
            );
            tasks.spawn(supervise(
                "mail worker",
                metrics.clone(),
                quit_rx.clone(),
                move || {
                    mail_worker(
                        mailer.clone(),
                        store.clone(),
                        wake.clone(),
                        quit.clone(),
                        stop.clone(),
                        m.clone(),
                    )
                },
            ));
        }
        let scim = sync::scim::http::ScimApp::new(
            Arc::new(cfg.clone()),
            store.clone(),
            metrics.clone(),
            stop.clone(),
            wake.clone(),
        )?;
        let mut app = web::router(
            AppState {
                store: store.clone(),
                metrics: metrics.clone(),
                sources: cfg.sources.iter().map(|s| s.name.clone()).collect(),
                mail_overdue: cfg.daemon.mail_overdue,
            },
            Some(welcome),
        );
        if let Some(scim) = scim {
            app = app.merge(sync::scim::http::router(scim));
        }
        // The console: on web.listen, or on an address of its own.
        let next_runs: NextRuns = Arc::default();
        let console = web::admin::router(admin_app(&cfg, &store, next_runs.clone(), wake.clone())?);
        match cfg.admin.listen {
            None => app = app.merge(console),
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Listen { addr, source })?;
                tasks.spawn(serve(listener, console, quit_rx.clone(), "admin console"));
            }
        }
        tasks.spawn(serve(listener, app, quit_rx.clone(), "web"));

        let shared = Arc::new(cfg.clone());
        let mut scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
        let mut watchers = Vec::new();
        for source in &cfg.sources {
            // A scim source is served by the web server: no worker.
            if matches!(source.kind, SourceKind::Scim(_)) {
                continue;
            }
            let (tx, rx) = mpsc::channel::<()>(8);
            // A first pass at start picks up leftovers.
            let _ = tx.try_send(());
            if let Some(schedule) = &source.schedule {
                let t = tx.clone();
                let job = tokio_cron_scheduler::Job::new_async(schedule.as_str(), move |_, _| {
                    let t = t.clone();
                    Box::pin(async move {
                        let _ = t.try_send(());
                    })
                })?;
                let job = scheduler.add(job).await?;
                let sched = scheduler.clone();
                let next: NextRun = Arc::new(move || {
                    let mut s = sched.clone();
                    Box::pin(async move {
                        s.next_tick_for_job(job)
                            .await
                            .ok()
                            .flatten()
                            .map(|t| t.timestamp())
                    })
                });
                if let Ok(mut m) = next_runs.lock() {
                    m.insert(source.name.clone(), next);
                }
            }
            if let SourceKind::Csv(csv) = &source.kind {
                match watch_folder(&csv.inbox, tx.clone(), csv.settle) {
                    Ok(w) => watchers.push(w),
                    Err(e) => tracing::warn!(
                        source = %source.name, folder = %csv.inbox.display(), error = %e,
                        "cannot watch the drop folder; relying on the periodic rescan"
                    ),
                }
                tasks.spawn(rescan(tx, cfg.daemon.rescan, quit_rx.clone()));
            }
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let (cfg, store, name) = (shared.clone(), store.clone(), source.name.clone());
            let (quit, stop, m) = (quit_rx.clone(), stop.clone(), metrics.clone());
            let task = format!("source {}", source.name);
            tasks.spawn(supervise(
                task,
                metrics.clone(),
                quit_rx.clone(),
                move || {
                    worker(
                        cfg.clone(),
                        store.clone(),
                        name.clone(),
                        rx.clone(),
                        quit.clone(),
                        stop.clone(),
                        m.clone(),
                    )
                },
            ));
        }
        scheduler.start().await?;

        if first {
            tracing::info!(listen = %cfg.web.listen, sources = cfg.sources.len(), "daemon started");
            sd_notify("READY=1");
            first = false;
        } else {
            tracing::info!("config reloaded");
            sd_notify("READY=1");
        }

        let next = loop {
            tokio::select! {
                _ = term.recv() => break Next::Stop,
                _ = int.recv() => break Next::Stop,
                _ = hup.recv() => match reloadable(config_path) {
                    Ok(new) => break Next::Reload(Box::new(new)),
                    Err(e) => tracing::error!(
                        error = %crate::model::chain(&e),
                        "SIGHUP: the new config is invalid; keeping the one running"
                    ),
                },
            }
        };
        match &next {
            Next::Stop => sd_notify("STOPPING=1"),
            Next::Reload(_) => sd_notify("RELOADING=1"),
        }
        // Stop taking work; apply stops between chunks.
        stop.store(true, Ordering::SeqCst);
        let _ = quit_tx.send(true);
        drop(watchers);
        let _ = scheduler.shutdown().await;
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "work still running after {SHUTDOWN_GRACE:?}; leaving it to the next start"
            );
            tasks.abort_all();
        }
        store.close().await;
        match next {
            Next::Stop => {
                tracing::info!("daemon stopped");
                return Ok(0);
            }
            Next::Reload(new) => cfg = *new,
        }
    }
}

/// Periodic rescan: file events can be missed (network shares, overflow).
async fn rescan(tx: mpsc::Sender<()>, every: Duration, mut quit: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = tx.try_send(()); }
            _ = quit.wait_for(|q| *q) => return,
        }
    }
}

/// Watches a drop folder; each event asks for a pass now and another once
/// the file has had time to settle.
fn watch_folder(
    dir: &Path,
    tx: mpsc::Sender<()>,
    settle: Duration,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    std::fs::create_dir_all(dir).map_err(notify::Error::io)?;
    let handle = tokio::runtime::Handle::current();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok() {
            let _ = tx.try_send(());
            let later = tx.clone();
            handle.spawn(async move {
                tokio::time::sleep(settle + Duration::from_millis(100)).await;
                let _ = later.try_send(());
            });
        }
    })?;
    w.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(w)
}

/// Runs a task until it ends; a panic in it is caught, logged, counted in
/// `/metrics` and the task started again after a pause (1 s, doubling to
/// 30 s), unless the daemon is stopping. `/healthz` fails while it is down.
pub async fn supervise<F, Fut>(
    name: impl Into<String>,
    metrics: Arc<Metrics>,
    quit: watch::Receiver<bool>,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let name = name.into();
    let mut pause = Duration::from_secs(1);
    loop {
        metrics.task_running(&name, true);
        let ended = tokio::spawn(start()).await;
        let Err(e) = ended else {
            metrics.task_running(&name, false);
            return;
        };
        if !e.is_panic() {
            metrics.task_running(&name, false);
            return;
        }
        metrics.task_panicked(&name);
        let why = e
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|_| "(no message)".into());
        tracing::error!(task = %name, panic = %crate::model::excerpt(&why), ?pause, "daemon task panicked; restarting it");
        if *quit.borrow() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
        if *quit.borrow() {
            return;
        }
    }
}

/// One source's passes, one at a time, until the daemon stops.
async fn worker(
    cfg: Arc<Config>,
    store: Store,
    name: String,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<()>>>,
    mut quit: watch::Receiver<bool>,
    stop: StopFlag,
    metrics: Arc<Metrics>,
) {
    let Some(source) = cfg.source(&name) else {
        return;
    };
    let mut rx = rx.lock().await;
    loop {
        tokio::select! {
            got = rx.recv() => if got.is_none() { return },
            _ = quit.wait_for(|q| *q) => return,
        }
        while rx.try_recv().is_ok() {}
        if stop.load(Ordering::SeqCst) {
            return;
        }
        pass(&cfg, &store, source, &stop, &metrics).await;
    }
}

async fn pass(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    stop: &StopFlag,
    metrics: &Metrics,
) {
    let opts = RunOptions {
        dry_run: false,
        override_limits: false,
        progress: false,
        plan_out: None,
        lock_wait: None,
        no_hold: false,
        stop: Some(stop.clone()),
    };
    // A drop-folder pass imports each settled file as its own run; a
    // directory sync is one run.
    let (done, failed, result) = match source.resolve() {
        Resolved::Ldap(l) => (
            "directory sync finished",
            "directory sync failed",
            sync::ldap::sync_ldap(cfg, store, l, false, &opts)
                .await
                .map(|r| vec![r]),
        ),
        Resolved::Scim(_) => return,
        Resolved::Csv(c) => (
            "drop-folder file imported",
            "drop-folder pass failed",
            sync::csv::process_inbox(cfg, store, c, &opts).await,
        ),
    };
    match result {
        Ok(reports) => {
            for r in &reports {
                metrics.record(r);
                tracing::info!(
                    source = %source.name,
                    run_id = r.run_id,
                    outcome = ?r.outcome,
                    created = r.created,
                    updated = r.updated,
                    disabled = r.disabled,
                    errors = r.errors.len(),
                    interrupted = r.interrupted,
                    "{done}"
                );
            }
        }
        Err(e) => {
            metrics.record_failure(&source.name);
            tracing::error!(source = %source.name, error = %crate::model::chain(&e), "{failed}");
        }
    }
}

/// Sends a state line to systemd when run as `Type=notify`.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), PathBuf::from(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// WATCHDOG=1 at half the interval systemd asks for (`WatchdogSec=`).
fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            sd_notify("WATCHDOG=1");
        }
    }))
}

#[cfg(test)]
mod tests;
