//! Domain rows: the domain's id and revision (bumped by every applied
//! chunk, so a saved plan applies exactly or not at all), and the
//! department and site names a domain has.

use super::{Sql, Store, StoreError};
use crate::config::DomainConfig;
use crate::time::now;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// The domain row as a run needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainRow {
    pub id: i64,
    pub revision: i64,
}

impl Store {
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
