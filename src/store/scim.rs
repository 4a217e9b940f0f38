//! SCIM resources as the identity provider sent them (migration 0008).

use super::{Store, StoreError};
use sqlx::Row;

/// `User` or `Group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimKind {
    User,
    Group,
}

impl ScimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimKind::User => "User",
            ScimKind::Group => "Group",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimRow {
    pub id: String,
    pub external_id: Option<String>,
    /// The `users.source_id` a User's PBX user is kept under: its
    /// externalId at create, else its id. Never changes.
    pub pbx_key: Option<String>,
    pub body: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a new or changed resource is stored as.
#[derive(Debug, Clone, Copy)]
pub struct ScimWrite<'a> {
    pub source: &'a str,
    pub kind: ScimKind,
    pub id: &'a str,
    pub external_id: Option<&'a str>,
    /// Set at insert only (see [`ScimRow::pbx_key`]).
    pub pbx_key: Option<&'a str>,
    /// The folded userName of a User; `None` for a Group.
    pub name_key: Option<&'a str>,
    pub body: &'a str,
    pub now: i64,
}

/// Which unique value a write collided with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Another resource has this userName (or externalId): its id.
    By(String),
    /// The version changed since it was read (a concurrent write).
    Stale,
}

const COLUMNS: &str = "id, external_id, body, version, created_at, updated_at, pbx_key";

fn row(r: &sqlx::any::AnyRow) -> Result<ScimRow, StoreError> {
    Ok(ScimRow {
        id: r.try_get(0)?,
        external_id: r.try_get(1)?,
        body: r.try_get(2)?,
        version: r.try_get(3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        pbx_key: r.try_get(6)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    pub async fn scim_get(
        &self,
        source: &str,
        kind: ScimKind,
        id: &str,
    ) -> Result<Option<ScimRow>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scim_resources WHERE source = $1 AND kind = $2 AND id = $3"
        ))
        .bind(source)
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// Every resource of a kind, in the order they were created.
    pub async fn scim_list(
        &self,
        source: &str,
        kind: ScimKind,
    ) -> Result<Vec<ScimRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scim_resources WHERE source = $1 AND kind = $2 ORDER BY seq"
        ))
        .bind(source)
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    /// The resource holding a userName or externalId, if any.
    async fn scim_holder(&self, w: &ScimWrite<'_>) -> Result<Option<String>, StoreError> {
        let r = sqlx::query(
            "SELECT id FROM scim_resources WHERE source = $1 AND kind = $2 AND id <> $3
               AND (name_key = $4 OR external_id = $5)",
        )
        .bind(w.source)
        .bind(w.kind.as_str())
        .bind(w.id)
        .bind(w.name_key)
        .bind(w.external_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| r.try_get(0)).transpose()?)
    }

    /// Stores a new resource at version 1; a userName or externalId that
    /// another resource holds is refused with that resource's id.
    pub async fn scim_insert(&self, w: &ScimWrite<'_>) -> Result<Result<(), Taken>, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO scim_resources
               (source, kind, id, external_id, name_key, body, version, created_at, updated_at, pbx_key)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8)",
        )
        .bind(w.source)
        .bind(w.kind.as_str())
        .bind(w.id)
        .bind(w.external_id)
        .bind(w.name_key)
        .bind(w.body)
        .bind(w.now)
        .bind(w.pbx_key)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {
                tx.commit().await?;
                Ok(Ok(()))
            }
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                let holder = self.scim_holder(w).await?.unwrap_or_default();
                Ok(Err(Taken::By(holder)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a resource if it is still at `version`; returns the new
    /// version.
    pub async fn scim_replace(
        &self,
        w: &ScimWrite<'_>,
        version: i64,
    ) -> Result<Result<i64, Taken>, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE scim_resources SET external_id = $1, name_key = $2, body = $3,
                    version = version + 1, updated_at = $4
              WHERE source = $5 AND kind = $6 AND id = $7 AND version = $8",
        )
        .bind(w.external_id)
        .bind(w.name_key)
        .bind(w.body)
        .bind(w.now)
        .bind(w.source)
        .bind(w.kind.as_str())
        .bind(w.id)
        .bind(version)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(done) if done.rows_affected() == 1 => {
                tx.commit().await?;
                Ok(Ok(version + 1))
            }
            Ok(_) => Ok(Err(Taken::Stale)),
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                let holder = self.scim_holder(w).await?.unwrap_or_default();
                Ok(Err(Taken::By(holder)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The extension of the PBX user a source keeps under `source_id`.
    pub async fn source_user_extension(
        &self,
        source: &str,
        source_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT extension FROM users WHERE source = $1 AND source_id = $2")
            .bind(source)
            .bind(source_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| r.try_get(0)).transpose()?)
    }

    /// Deletes a resource; false if it was not there.
    pub async fn scim_delete(
        &self,
        source: &str,
        kind: ScimKind,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("DELETE FROM scim_resources WHERE source = $1 AND kind = $2 AND id = $3")
                .bind(source)
                .bind(kind.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
