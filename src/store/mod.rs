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
//! run history.

mod devices;
mod outbox;
mod runs;
mod state;
pub use state::{ReadMark, SourceState};
mod sql;
mod users;

pub use sql::Sql;

pub use devices::{digest_hashes, DeviceView, Rotated};
pub use outbox::{LinkView, Mark, OutboxItem, Payload, ReportItem, WelcomeItem, WelcomeState};
pub use runs::{ActionRecord, RunRow};
pub use users::{NewDevice, NewUser, UserView};

use crate::config::{DomainConfig, StoreConfig};
use crate::time::now;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
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
    /// The SQLite database file (for the sync lock files beside it).
    sqlite_file: Option<std::path::PathBuf>,
}

/// Held while a run plans and applies a domain, so two runs (processes or
/// daemons) never sync the same domain at once. SQLite: an OS file lock
/// beside the database; PostgreSQL: a session advisory lock. Both vanish
/// with the process that held them, so a killed run never blocks the next.
#[derive(Debug)]
pub struct DomainLock {
    inner: LockInner,
}

#[derive(Debug)]
enum LockInner {
    File(std::fs::File),
    Advisory(sqlx::pool::PoolConnection<Any>, i64),
}

impl DomainLock {
    pub async fn release(self) {
        match self.inner {
            LockInner::File(f) => drop(f),
            LockInner::Advisory(mut conn, key) => {
                let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await;
                if unlocked.is_err() {
                    // Closing the session releases the lock for sure.
                    let _ = conn.close().await;
                }
            }
        }
    }
}

/// Opens (creating) and exclusively locks a file, waiting off the async threads.
async fn lock_file_blocking(path: std::path::PathBuf) -> Result<std::fs::File, StoreError> {
    let shown = path.display().to_string();
    let joined = tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await;
    match joined {
        Ok(r) => r.map_err(|source| StoreError::LockFile {
            path: shown,
            source,
        }),
        Err(e) => Err(StoreError::LockFile {
            path: shown,
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

fn lock_key(domain: &str) -> i64 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("pbx-onboard sync {domain}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

/// The domain row as a run needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainRow {
    pub id: i64,
    pub revision: i64,
}

/// Ids for `n` new rows of `table`, taken before the rows are built so that
/// statements referring to them (devices to users, outbox to links) need no
/// `RETURNING`: sqlx's SQLite worker hands each returned row to the async
/// side through a 50-slot channel, and that thread ping-pong cost a 100k-user
/// import about a second. Also returns, on SQLite, the id the next rows will
/// get unless another writer comes first: apply builds its next chunk with
/// those ids while this one is in the database, and rebuilds it if wrong.
///
/// SQLite: the ids after the current largest. Sound because every SQLite
/// write transaction begins `IMMEDIATE`, so no other writer can add rows
/// before this one commits. PostgreSQL: drawn from the table's identity
/// sequence, as a default id would be (no guess at the next ones).
pub async fn allocate_ids(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    n: usize,
) -> Result<(Vec<i64>, Option<i64>), StoreError> {
    if tx.backend_name() == "SQLite" {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
        let base: i64 = sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?;
        let ids: Vec<i64> = (base + 1..).take(n).collect();
        return Ok((ids, Some(base + 1 + n as i64)));
    }
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    let sql = format!(
        "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)"
    );
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await?;
    Ok((ids, None))
}

/// Polls `fut` once, which hands a statement to the database, then runs
/// `work` on this thread and finishes `fut`. On SQLite the engine runs on
/// sqlx's worker thread, so the two overlap.
async fn overlap<F: std::future::Future, T>(fut: F, work: impl FnOnce() -> T) -> (F::Output, T) {
    let mut fut = std::pin::pin!(fut);
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    let out = work();
    let done = match polled {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => fut.await,
    };
    (done, out)
}

/// Executes the statements in order, binding each while the database runs
/// the one before.
pub async fn execute_all(
    tx: &mut Transaction<'static, Any>,
    statements: &[Sql],
) -> Result<(), StoreError> {
    let mut queries = statements.iter().map(Sql::build);
    let mut next = queries.next();
    while let Some(q) = next {
        let (done, following) = overlap(q.execute(&mut **tx), || queries.next()).await;
        done?;
        next = following;
    }
    Ok(())
}

/// Executes the statements in order and runs `work` on this thread while
/// the database executes the first.
pub async fn execute_while<T>(
    tx: &mut Transaction<'static, Any>,
    statements: &[Sql],
    work: impl FnOnce() -> T,
) -> Result<T, StoreError> {
    let Some((first, rest)) = statements.split_first() else {
        return Ok(work());
    };
    let (done, out) = overlap(first.build().execute(&mut **tx), work).await;
    done?;
    execute_all(tx, rest).await?;
    Ok(out)
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
            .acquire_timeout(Duration::from_secs(30));
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
            Some(file) => Some(lock_file_blocking(file.with_extension("migrate.lock")).await?),
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
        let store = Store {
            pool,
            backend,
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

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Takes the domain's sync lock, waiting at most `wait` for a run that holds it.
    pub async fn lock_domain(
        &self,
        domain: &str,
        wait: Duration,
    ) -> Result<DomainLock, StoreError> {
        let started = std::time::Instant::now();
        let mut warned = false;
        let key = lock_key(domain);
        let mut pg_conn = None;
        let mut file = None;
        loop {
            let got = match self.backend {
                Backend::Postgres => {
                    let conn = match pg_conn.as_mut() {
                        Some(c) => c,
                        None => pg_conn.insert(self.pool.acquire().await?),
                    };
                    let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut **conn)
                        .await?;
                    row.try_get::<bool, _>(0)?
                }
                Backend::Sqlite => {
                    let f = match file.as_mut() {
                        Some(f) => f,
                        None => {
                            let db = self.sqlite_file.clone().unwrap_or_default();
                            let path = db.with_file_name(format!(
                                "{}.sync-{domain}.lock",
                                db.file_name().map_or_else(
                                    || "store".into(),
                                    |n| n.to_string_lossy().into_owned()
                                )
                            ));
                            let f = std::fs::OpenOptions::new()
                                .create(true)
                                .truncate(false)
                                .write(true)
                                .open(&path)
                                .map_err(|source| StoreError::LockFile {
                                    path: path.display().to_string(),
                                    source,
                                })?;
                            file.insert(f)
                        }
                    };
                    match f.try_lock() {
                        Ok(()) => true,
                        Err(std::fs::TryLockError::WouldBlock) => false,
                        Err(std::fs::TryLockError::Error(source)) => {
                            return Err(StoreError::LockFile {
                                path: domain.to_string(),
                                source,
                            })
                        }
                    }
                }
            };
            if got {
                let inner = match (pg_conn, file) {
                    (Some(c), _) => LockInner::Advisory(c, key),
                    (None, Some(f)) => LockInner::File(f),
                    (None, None) => return Err(StoreError::Corrupt("lock state".into())),
                };
                return Ok(DomainLock { inner });
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Err(StoreError::LockTimeout {
                    domain: domain.to_string(),
                    waited,
                });
            }
            if !warned {
                tracing::warn!(
                    domain,
                    "another sync of this domain is running; waiting for it"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// The domain's id and revision, if it was ever written.
    pub async fn find_domain(&self, name: &str) -> Result<Option<DomainRow>, StoreError> {
        let row: Option<AnyRow> = sqlx::query("SELECT id, revision FROM domains WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| -> Result<DomainRow, sqlx::Error> {
                Ok(DomainRow {
                    id: r.try_get(0)?,
                    revision: r.try_get(1)?,
                })
            })
            .transpose()?)
    }

    /// Creates or refreshes the domain row, its configured sites and number
    /// inventory from the config. Does not touch users or the revision.
    #[tracing::instrument(skip_all, fields(domain = %d.name))]
    pub async fn ensure_domain(&self, d: &DomainConfig) -> Result<DomainRow, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO domains (name, emergency_caller_id, timezone, language, dial_permission, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET emergency_caller_id = excluded.emergency_caller_id,
               timezone = excluded.timezone, language = excluded.language,
               dial_permission = excluded.dial_permission",
        )
        .bind(&d.name)
        .bind(d.emergency_caller_id.as_ref().map(|p| p.as_str().to_string()))
        .bind(d.timezone.clone())
        .bind(d.language.clone())
        .bind(d.dial_permission.clone())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT id, revision FROM domains WHERE name = $1")
            .bind(&d.name)
            .fetch_one(&mut *tx)
            .await?;
        let dom = DomainRow {
            id: row.try_get(0)?,
            revision: row.try_get(1)?,
        };
        for s in &d.sites {
            sqlx::query(
                "INSERT INTO sites (domain_id, name, timezone, language, area_code, caller_id, dial_permission)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (domain_id, name) DO UPDATE SET timezone = excluded.timezone,
                   language = excluded.language, area_code = excluded.area_code,
                   caller_id = excluded.caller_id, dial_permission = excluded.dial_permission",
            )
            .bind(dom.id)
            .bind(&s.name)
            .bind(s.timezone.clone())
            .bind(s.language.clone())
            .bind(s.area_code.clone())
            .bind(s.caller_id.as_ref().map(|p| p.as_str().to_string()))
            .bind(s.dial_permission.clone())
            .execute(&mut *tx)
            .await?;
        }
        for chunk in d.numbers.chunks(500) {
            let mut q = Sql::new(
                tx.backend_name(),
                "INSERT INTO phone_numbers (domain_id, number) ",
            );
            q.values(chunk, |t, n| {
                t.bind(dom.id).bind(n.as_str().to_string());
            });
            q.push(" ON CONFLICT (domain_id, number) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(dom)
    }

    /// Makes sure every named department and site exists (naming a new one
    /// creates it), inside the caller's transaction.
    pub async fn ensure_names(
        tx: &mut Transaction<'static, Any>,
        domain_id: i64,
        table: NameTable,
        names: &[&str],
    ) -> Result<(), StoreError> {
        let sql = match table {
            NameTable::Departments => "INSERT INTO departments (domain_id, name) ",
            NameTable::Sites => "INSERT INTO sites (domain_id, name) ",
        };
        for chunk in names.chunks(500) {
            let mut q = Sql::new(tx.backend_name(), sql);
            q.values(chunk, |t, n| {
                t.bind(domain_id).bind(n.to_string());
            });
            q.push(" ON CONFLICT (domain_id, name) DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Optimistic lock on the domain: moves the revision from `expected` to
    /// `expected + 1`; false if someone else changed the domain meanwhile.
    pub async fn bump_revision(
        tx: &mut Transaction<'static, Any>,
        domain_id: i64,
        expected: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE domains SET revision = revision + 1 WHERE id = $1 AND revision = $2",
        )
        .bind(domain_id)
        .bind(expected)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum NameTable {
    Departments,
    Sites,
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
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://pbx:s3cret@db/pbx"),
            "postgres://pbx:***@db/pbx"
        );
        assert_eq!(
            super::redact_url("postgres://pbx@db/pbx"),
            "postgres://pbx@db/pbx"
        );
        assert_eq!(
            super::redact_url("sqlite:///var/x.db"),
            "sqlite:///var/x.db"
        );
    }
}
