//! Per-source read state (LDAP incremental reads), see migration 0004.

use super::{Store, StoreError};
use sqlx::Row;

/// One read that applied: when, from which server, and its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    pub at: i64,
    pub marker: Option<String>,
    pub server: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    pub last_full: Option<ReadMark>,
    pub last_full_entries: Option<i64>,
    pub last_changed: Option<ReadMark>,
}

impl Store {
    pub async fn source_state(&self, source: &str) -> Result<SourceState, StoreError> {
        let row = sqlx::query(
            "SELECT last_full_at, last_full_marker, last_full_server, last_full_entries,
                    last_changed_at, last_changed_marker, last_changed_server
               FROM source_state WHERE source = $1",
        )
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(SourceState::default());
        };
        let mark = |at: Option<i64>, m: Option<String>, s: Option<String>| {
            at.map(|at| ReadMark {
                at,
                marker: m,
                server: s,
            })
        };
        Ok(SourceState {
            last_full: mark(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
            last_full_entries: r.try_get(3)?,
            last_changed: mark(r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
        })
    }

    /// Records a read that applied. `entries` is set for full reads only.
    pub async fn record_read(
        &self,
        source: &str,
        full: bool,
        mark: &ReadMark,
        entries: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO source_state (source) VALUES ($1) ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        let q = if full {
            sqlx::query(
                "UPDATE source_state SET last_full_at = $1, last_full_marker = $2,
                        last_full_server = $3, last_full_entries = $4 WHERE source = $5",
            )
            .bind(mark.at)
            .bind(mark.marker.as_deref())
            .bind(mark.server.as_deref())
            .bind(entries.unwrap_or(0))
            .bind(source)
        } else {
            sqlx::query(
                "UPDATE source_state SET last_changed_at = $1, last_changed_marker = $2,
                        last_changed_server = $3 WHERE source = $4",
            )
            .bind(mark.at)
            .bind(mark.marker.as_deref())
            .bind(mark.server.as_deref())
            .bind(source)
        };
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
