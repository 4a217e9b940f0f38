//! The PBX store: one `sqlx` pool over SQLite (embedded default) or
//! PostgreSQL (production, several daemons), with migrations for both.
//!
//! Queries are written once in the SQL both engines accept (`$1` parameters,
//! `ON CONFLICT`, `RETURNING`) and run through sqlx's `Any` driver. Write
//! transactions on SQLite begin `IMMEDIATE`, so a writer never fails half-way
//! with "database is locked"; the busy timeout makes it wait instead.
//!
//! `users.rs` holds the user and device queries, `devices.rs` the registrar
//! side of devices (digest hashes, listing, secret rotation), `runs.rs` the
//! run history, `outbox.rs` the mail queue and `links.rs` the welcome links,
//! `lock.rs` the domain's sync lock, `domains.rs` domain rows and names,
//! `sql.rs` the statement builder and id allocation, `pg.rs` apply's
//! PostgreSQL write path (COPY and array statements on a typed pool).

mod admin;
mod devices;
mod domains;
mod links;
mod lock;
mod outbox;
mod pg;
pub use pg::{ChunkWrite, PgWriter, UserUpdate, Written};
mod held;
pub use held::{HeldRow, NewHold};
mod runs;
mod scim;
pub use scim::{ScimKind, ScimRow, ScimWrite, Taken};
mod state;
pub use state::{ReadMark, SourceState};
mod sql;
mod users;

pub use domains::{DomainRow, NameTable};
pub use lock::DomainLock;
pub use sql::{allocate_ids, execute_all, execute_bound, execute_bound_while, Bound, Sql};

pub use admin::{
    AdminRow, AuditRow, HeldAction, HeldRun, HoldSaved, NewHeldRun, SessionRow, UserBrief,
    UserEvent,
};
pub use devices::{digest_hashes, DeviceView, Rotated};
pub use links::{LinkView, WelcomeState};
pub use outbox::{Mark, NoResend, OutboxItem, Payload, ReportItem, Resend, WelcomeItem};
pub use runs::{ActionRecord, RunRow};
pub use users::{NewDevice, NewUser, UserView};

use crate::config::StoreConfig;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the folder for the SQLite store {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the store holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error("another sync of domain {domain} has been running for {waited:?}; try again when it is done")]
    LockTimeout { domain: String, waited: Duration },
    #[error("cannot take the sync lock {path}: {source}")]
    LockFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Errors worth retrying with backoff: lock contention, serialisation
    /// failures, dropped connections.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Query(e) => is_transient(e),
            _ => false,
        }
    }

    /// The store itself is unreachable (refused, reset, timed out, shut
    /// down), as opposed to a statement it refused: no reason to retry
    /// users one by one.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Query(e) | StoreError::Connect { source: e, .. } => is_connection(e),
            _ => false,
        }
    }
}

pub fn is_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL connection_exception (08…), admin_shutdown,
        // crash_shutdown, cannot_connect_now.
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// Creates the SQLite file readable by its owner only (it holds device
/// secrets) if it is not there yet; SQLite gives its `-wal` and `-shm`
/// files the same mode. An existing file keeps the mode it has.
fn create_private(file: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Folder {
            path: file.display().to_string(),
            source,
        }),
    }
}

pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite BUSY/LOCKED (5, 6 and extended codes); PostgreSQL
            // serialization_failure, deadlock_detected, lock_not_available.
            matches!(
                code.as_ref(),
                "5" | "6" | "517" | "261" | "262" | "40001" | "40P01" | "55P03"
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: a typed pool for apply's bulk writes (`pg.rs`).
    pg: Option<sqlx::PgPool>,
    /// The URL with any password replaced, for messages.
    shown: std::sync::Arc<str>,
    /// The SQLite database file (for the sync lock files beside it).
    sqlite_file: Option<std::path::PathBuf>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens the store, creating the SQLite file and its folder if needed,
    /// and brings the schema up to date.
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = cfg.url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(file).parent() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            create_private(std::path::Path::new(file))?;
            let url = if path.contains('?') {
                cfg.url.clone()
            } else {
                format!("{}?mode=rwc", cfg.url)
            };
            (Backend::Sqlite, url)
        } else {
            (Backend::Postgres, cfg.url.clone())
        };
        let sqlite_file = cfg
            .url
            .strip_prefix("sqlite://")
            .map(|p| std::path::PathBuf::from(p.split('?').next().unwrap_or(p)));
        tracing::Span::current().record("backend", tracing::field::debug(backend));
        let mut opts = AnyPoolOptions::new()
            .max_connections(cfg.max_connections)
            // Bounds connecting too: a dead store fails fast instead of
            // hanging a run (see apply's outage wait).
            .acquire_timeout(cfg.timeout);
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    // Only a new, empty database takes it (before WAL mode):
                    // half the pages, half the WAL frames and write calls of
                    // a bulk apply. Existing stores keep their page size.
                    conn.execute("PRAGMA page_size = 8192").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA temp_store = MEMORY").await?;
                    Ok(())
                })
            });
        }
        // One process at a time opens a SQLite store and brings it up to
        // date: turning a fresh file into WAL mode is a write, and two
        // processes doing it at once can deadlock, which SQLite reports as
        // "database is locked" without waiting. sqlx takes no lock for
        // SQLite migrations either. Once the file is in WAL mode, later
        // connections only read its header.
        let guard = match &sqlite_file {
            Some(file) => {
                Some(lock::lock_file_blocking(file.with_extension("migrate.lock")).await?)
            }
            None => None,
        };
        let pool = opts
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(&cfg.url),
                source,
            })?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        drop(guard);
        let pg =
            match backend {
                Backend::Postgres => Some(pg::bulk_pool(&url, cfg.timeout).map_err(|source| {
                    StoreError::Connect {
                        url: redact_url(&cfg.url),
                        source,
                    }
                })?),
                Backend::Sqlite => None,
            };
        let store = Store {
            pool,
            backend,
            pg,
            shown: redact_url(&cfg.url).into(),
            sqlite_file,
        };
        let filled = store.backfill_digests().await?;
        if filled > 0 {
            tracing::info!(devices = filled, "filled in SIP digest hashes");
        }
        Ok(store)
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    /// The store's URL without its password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Hides the password in a connection URL for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
