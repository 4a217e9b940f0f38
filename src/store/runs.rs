//! Run history: one row per applied run with its counts and JSON report, and
//! one row per action taken, written in the same transaction as the action.

use super::{Sql, Store, StoreError};
use crate::report::RunReport;
use crate::time::now;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: i64,
    pub source: String,
    pub domain: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: String,
    pub created: i64,
    pub updated: i64,
    pub disabled: i64,
    pub reenabled: i64,
    pub unchanged: i64,
    pub conflicts: i64,
    pub errors: i64,
}

/// One action as recorded for a run.
#[derive(Debug, Clone)]
pub struct ActionRecord<'a> {
    pub user_id: Option<i64>,
    pub source_id: &'a str,
    pub action: &'static str,
    pub detail: Option<String>,
}

impl Store {
    pub async fn start_run(&self, source: &str, domain: &str) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO runs (source, domain, started_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(source)
        .bind(domain)
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.try_get(0)?)
    }

    /// Marks runs of `domain` still `running` as `interrupted`: called by a
    /// run that has just taken the domain's lock, which no live run of the
    /// domain can hold, so those were killed. Returns how many.
    pub async fn interrupt_stale_runs(&self, domain: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE runs SET outcome = 'interrupted', finished_at = $1
              WHERE domain = $2 AND outcome = 'running'",
        )
        .bind(now())
        .bind(domain)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub async fn finish_run(&self, run_id: i64, report: &RunReport) -> Result<(), StoreError> {
        let json = serde_json::to_string(report).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE runs SET finished_at = $1, outcome = $2, created = $3, updated = $4, disabled = $5,
               reenabled = $6, unchanged = $7, deleted = $8, conflicts = $9, errors = $10,
               billable_devices = $11, billable_seats = $12, report = $13
             WHERE id = $14",
        )
        .bind(now())
        .bind(report.outcome.as_str())
        .bind(report.created as i64)
        .bind(report.updated as i64)
        .bind(report.disabled as i64)
        .bind(report.reenabled as i64)
        .bind(report.unchanged as i64)
        .bind(report.deleted as i64)
        .bind(report.conflicts.len() as i64)
        .bind(report.errors.len() as i64)
        .bind(report.billable.devices as i64)
        .bind(report.billable.call_center_seats as i64)
        .bind(json)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The INSERTs that record a run's actions, 1,000 a statement.
    pub fn insert_actions(backend: &str, run_id: i64, actions: &[ActionRecord<'_>]) -> Vec<Sql> {
        actions
            .chunks(1000)
            .map(|chunk| {
                let mut q = Sql::new(
                    backend,
                    "INSERT INTO run_actions (run_id, user_id, source_id, action, detail) ",
                );
                q.values(chunk, |b, a| {
                    b.bind(run_id)
                        .bind(a.user_id)
                        .bind(a.source_id)
                        .bind(a.action)
                        .bind(a.detail.clone());
                });
                q
            })
            .collect()
    }

    pub async fn list_runs(&self, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        self.list_runs_where("id > $1", 0, limit).await
    }

    /// The newest `limit` runs matching `condition` (one bound value, `$1`).
    pub(super) async fn list_runs_where(
        &self,
        condition: &str,
        value: i64,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id, source, domain, started_at, finished_at, outcome, created, updated, disabled,
                    reenabled, unchanged, conflicts, errors
             FROM runs WHERE {condition} ORDER BY id DESC LIMIT $2"
        ))
        .bind(value)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    run_id: r.try_get(0)?,
                    source: r.try_get(1)?,
                    domain: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                    created: r.try_get(6)?,
                    updated: r.try_get(7)?,
                    disabled: r.try_get(8)?,
                    reenabled: r.try_get(9)?,
                    unchanged: r.try_get(10)?,
                    conflicts: r.try_get(11)?,
                    errors: r.try_get(12)?,
                })
            })
            .collect()
    }
}
