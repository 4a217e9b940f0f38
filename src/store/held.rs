//! Held disables of scim sources (migration 0009), and the counts that
//! decide when to hold.

use super::{Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldRow {
    pub id: i64,
    pub source: String,
    pub domain: String,
    pub source_id: String,
    pub resource_id: String,
    /// `deactivate` (active = false) or `delete` (DELETE).
    pub what: String,
    #[serde(skip)]
    pub body: String,
    pub created_at: i64,
    pub status: String,
}

/// A new hold.
#[derive(Debug, Clone, Copy)]
pub struct NewHold<'a> {
    pub source: &'a str,
    pub domain: &'a str,
    pub source_id: &'a str,
    pub resource_id: &'a str,
    pub what: &'a str,
    pub body: &'a str,
    pub now: i64,
}

const COLUMNS: &str = "id, source, domain, source_id, resource_id, what, body, created_at, status";

fn row(r: &sqlx::any::AnyRow) -> Result<HeldRow, StoreError> {
    Ok(HeldRow {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        domain: r.try_get(2)?,
        source_id: r.try_get(3)?,
        resource_id: r.try_get(4)?,
        what: r.try_get(5)?,
        body: r.try_get(6)?,
        created_at: r.try_get(7)?,
        status: r.try_get(8)?,
    })
}

impl Store {
    /// Users a source's runs disabled since `since` (Unix seconds).
    pub async fn disabled_since(&self, source: &str, since: i64) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(disabled), 0) AS BIGINT) FROM runs
              WHERE source = $1 AND started_at >= $2",
        )
        .bind(source)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get(0)?)
    }

    /// Active PBX users a source keeps.
    pub async fn active_users_of(&self, source: &str) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) FROM users WHERE source = $1 AND status = 'active'")
            .bind(source)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }

    /// Whether the PBX user a source keeps under `source_id` is active.
    pub async fn source_user_active(
        &self,
        source: &str,
        source_id: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FROM users WHERE source = $1 AND source_id = $2 AND status = 'active'",
        )
        .bind(source)
        .bind(source_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get::<i64, _>(0)? > 0)
    }

    pub async fn hold(&self, h: &NewHold<'_>) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO held_changes (source, domain, source_id, resource_id, what, body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(h.source)
        .bind(h.domain)
        .bind(h.source_id)
        .bind(h.resource_id)
        .bind(h.what)
        .bind(h.body)
        .bind(h.now)
        .fetch_one(&mut *tx)
        .await?;
        Store::sync_scim_hold(&mut tx, h.source, h.now).await?;
        tx.commit().await?;
        Ok(r.try_get(0)?)
    }

    /// How many holds of a source are pending.
    pub async fn pending_hold_count(&self, source: &str) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FROM held_changes WHERE source = $1 AND status = 'pending'",
        )
        .bind(source)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get(0)?)
    }

    /// Pending holds, oldest first (of one source, or all).
    pub async fn pending_holds(&self, source: Option<&str>) -> Result<Vec<HeldRow>, StoreError> {
        let rows = match source {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM held_changes
                      WHERE status = 'pending' AND source = $1 ORDER BY id"
                ))
                .bind(s)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM held_changes WHERE status = 'pending' ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(row).collect()
    }

    /// Marks pending holds decided; returns how many were still pending.
    pub async fn decide_holds(
        &self,
        ids: &[i64],
        status: &str,
        by: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        let mut sources = std::collections::BTreeSet::new();
        for id in ids {
            let r = sqlx::query(
                "UPDATE held_changes SET status = $1, decided_by = $2, decided_at = $3
                  WHERE id = $4 AND status = 'pending' RETURNING source",
            )
            .bind(status)
            .bind(by)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = r {
                n += 1;
                sources.insert(r.try_get::<String, _>(0)?);
            }
        }
        for source in &sources {
            Store::sync_scim_hold(&mut tx, source, now).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// A later request made the held change moot (the user is active
    /// again, or changed otherwise): its pending holds are dropped.
    pub async fn supersede_holds(
        &self,
        source: &str,
        source_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE held_changes SET status = 'superseded', decided_by = 'a later request', decided_at = $1
              WHERE source = $2 AND source_id = $3 AND status = 'pending'",
        )
        .bind(now)
        .bind(source)
        .bind(source_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            Store::sync_scim_hold(&mut tx, source, now).await?;
        }
        tx.commit().await?;
        Ok(n)
    }
}
