//! The domain's sync lock: a run plans and applies a domain under it, so
//! two runs (processes or daemons) never sync one domain at once.

use super::{Backend, Store, StoreError};
use sqlx::{Any, Row};
use std::time::Duration;

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
pub(super) async fn lock_file_blocking(
    path: std::path::PathBuf,
) -> Result<std::fs::File, StoreError> {
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
    // SHA-256 has 32 bytes: the first 8 are always there.
    let first = h.first_chunk::<8>().copied().unwrap_or_default();
    i64::from_be_bytes(first)
}

impl Store {
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
}
