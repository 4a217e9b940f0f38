//! Held runs, the audit trail, console accounts and their sessions
//! (migration 0010), and the reads the admin console shows.

use super::{Store, StoreError};
use crate::time::now;
use serde::Serialize;
use sqlx::Row;

/// A run a safety limit refused, kept for an admin to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRun {
    pub id: i64,
    pub source: String,
    pub domain: String,
    /// `plan`: the refused run's plan; `scim`: the source's held disables.
    pub kind: String,
    /// The refused run (the latest one, when a later plan replaced it).
    pub run_id: Option<i64>,
    pub reason: String,
    pub creates: i64,
    pub updates: i64,
    pub disables: i64,
    pub billable: i64,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub applied_run_id: Option<i64>,
}

/// A refused plan to hold.
#[derive(Debug, Clone)]
pub struct NewHeldRun<'a> {
    pub source: &'a str,
    pub domain: &'a str,
    pub run_id: i64,
    pub reason: &'a str,
    pub creates: i64,
    pub updates: i64,
    pub disables: i64,
    pub billable: i64,
    /// The plan as `--plan-out` writes it.
    pub plan: &'a str,
    /// What makes two plans the same (see [`crate::plan::Plan`]).
    pub digest: &'a str,
}

/// What saving a held run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldSaved {
    New(i64),
    /// The pending hold of the source now holds this plan.
    Replaced(i64),
    /// The pending hold already holds the same plan.
    Unchanged(i64),
}

impl HoldSaved {
    pub fn id(self) -> i64 {
        match self {
            HoldSaved::New(id) | HoldSaved::Replaced(id) | HoldSaved::Unchanged(id) => id,
        }
    }
}

const HELD: &str =
    "id, source, domain, kind, run_id, reason, creates, updates, disables, billable, \
    status, created_at, updated_at, decided_at, decided_by, applied_run_id";

fn held_row(r: &sqlx::any::AnyRow) -> Result<HeldRun, StoreError> {
    Ok(HeldRun {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        domain: r.try_get(2)?,
        kind: r.try_get(3)?,
        run_id: r.try_get(4)?,
        reason: r.try_get(5)?,
        creates: r.try_get(6)?,
        updates: r.try_get(7)?,
        disables: r.try_get(8)?,
        billable: r.try_get(9)?,
        status: r.try_get(10)?,
        created_at: r.try_get(11)?,
        updated_at: r.try_get(12)?,
        decided_at: r.try_get(13)?,
        decided_by: r.try_get(14)?,
        applied_run_id: r.try_get(15)?,
    })
}

/// One line of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub address: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// A console account (never its hash).
#[derive(Debug, Clone, Serialize)]
pub struct AdminRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A console session, found by its cookie's hash.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub admin: String,
    pub role: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// One thing a run did to a user, for the user's history.
#[derive(Debug, Clone, Serialize)]
pub struct UserEvent {
    pub run_id: i64,
    pub at: i64,
    pub source: String,
    pub action: String,
    pub detail: Option<String>,
}

/// What the console lists about a user whose id a plan names.
#[derive(Debug, Clone, Default)]
pub struct UserBrief {
    pub name: String,
    pub department: Option<String>,
    pub site: Option<String>,
    pub status: String,
}

impl Store {
    /// Holds a refused plan: the source's pending hold is created, or
    /// replaced when the plan differs from the one it holds.
    pub async fn save_held_run(&self, h: &NewHeldRun<'_>) -> Result<HoldSaved, StoreError> {
        let t = now();
        let mut tx = self.begin_write().await?;
        let pending = sqlx::query(
            "SELECT id, digest FROM held_runs WHERE source = $1 AND status = 'pending'",
        )
        .bind(h.source)
        .fetch_optional(&mut *tx)
        .await?;
        let saved = match pending {
            Some(r) => {
                let id: i64 = r.try_get(0)?;
                let digest: Option<String> = r.try_get(1)?;
                if digest.as_deref() == Some(h.digest) {
                    HoldSaved::Unchanged(id)
                } else {
                    sqlx::query(
                        "UPDATE held_runs SET kind = 'plan', run_id = $1, reason = $2, creates = $3,
                           updates = $4, disables = $5, billable = $6, plan = $7, digest = $8,
                           updated_at = $9, domain = $10
                         WHERE id = $11",
                    )
                    .bind(h.run_id)
                    .bind(h.reason)
                    .bind(h.creates)
                    .bind(h.updates)
                    .bind(h.disables)
                    .bind(h.billable)
                    .bind(h.plan)
                    .bind(h.digest)
                    .bind(t)
                    .bind(h.domain)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    HoldSaved::Replaced(id)
                }
            }
            None => {
                let r = sqlx::query(
                    "INSERT INTO held_runs (source, domain, kind, run_id, reason, creates, updates,
                       disables, billable, plan, digest, created_at, updated_at)
                     VALUES ($1, $2, 'plan', $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                )
                .bind(h.source)
                .bind(h.domain)
                .bind(h.run_id)
                .bind(h.reason)
                .bind(h.creates)
                .bind(h.updates)
                .bind(h.disables)
                .bind(h.billable)
                .bind(h.plan)
                .bind(h.digest)
                .bind(t)
                .fetch_one(&mut *tx)
                .await?;
                HoldSaved::New(r.try_get(0)?)
            }
        };
        tx.commit().await?;
        Ok(saved)
    }

    /// Brings a scim source's held run in line with its pending held
    /// disables: one pending held run counting them, or none when no
    /// disable is pending any more.
    pub(super) async fn sync_scim_hold(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        source: &str,
        t: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*), MAX(domain) FROM held_changes WHERE source = $1 AND status = 'pending'",
        )
        .bind(source)
        .fetch_one(&mut **tx)
        .await?;
        let pending: i64 = r.try_get(0)?;
        let domain: Option<String> = r.try_get(1)?;
        if pending == 0 {
            sqlx::query(
                "UPDATE held_runs SET status = 'superseded', decided_at = $1,
                   decided_by = 'the identity provider (no disable left pending)'
                 WHERE source = $2 AND kind = 'scim' AND status = 'pending'",
            )
            .bind(t)
            .bind(source)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        let updated = sqlx::query(
            "UPDATE held_runs SET disables = $1, updated_at = $2
              WHERE source = $3 AND kind = 'scim' AND status = 'pending'",
        )
        .bind(pending)
        .bind(t)
        .bind(source)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO held_runs (source, domain, kind, reason, disables, created_at, updated_at)
                 VALUES ($1, $2, 'scim', $3, $4, $5, $5)",
            )
            .bind(source)
            .bind(domain.unwrap_or_default())
            .bind("more disables within an hour than limits.max_disable or max_disable_percent allow")
            .bind(pending)
            .bind(t)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Held runs, newest first: the pending ones, or (with `all`) every one.
    pub async fn held_runs(&self, all: bool) -> Result<Vec<HeldRun>, StoreError> {
        let sql = match all {
            true => format!("SELECT {HELD} FROM held_runs ORDER BY id DESC LIMIT 500"),
            false => {
                format!("SELECT {HELD} FROM held_runs WHERE status = 'pending' ORDER BY id DESC")
            }
        };
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(held_row).collect()
    }

    /// One held run and its plan (none for a scim hold).
    pub async fn held_run(&self, id: i64) -> Result<Option<(HeldRun, Option<String>)>, StoreError> {
        let r = sqlx::query(&format!("SELECT {HELD}, plan FROM held_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match r {
            Some(r) => Ok(Some((held_row(&r)?, r.try_get(16)?))),
            None => Ok(None),
        }
    }

    /// Decides a pending held run; false when it was no longer pending.
    pub async fn decide_held_run(
        &self,
        id: i64,
        status: &str,
        by: &str,
        applied_run_id: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE held_runs SET status = $1, decided_by = $2, decided_at = $3, applied_run_id = $4
              WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(by)
        .bind(now())
        .bind(applied_run_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Records an admin action (also logged by the caller).
    pub async fn audit(
        &self,
        actor: &str,
        address: &str,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit (at, actor, address, action, target, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now())
        .bind(actor)
        .bind(address)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest audit rows.
    pub async fn audit_rows(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, address, action, target, detail FROM audit
              ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    address: r.try_get(3)?,
                    action: r.try_get(4)?,
                    target: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Adds an account; false when the name is taken.
    pub async fn admin_add(&self, name: &str, role: &str, hash: &str) -> Result<bool, StoreError> {
        let t = now();
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM admins WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !taken {
            sqlx::query(
                "INSERT INTO admins (name, role, password_hash, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(name)
            .bind(role)
            .bind(hash)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(!taken)
    }

    pub async fn admin_list(&self) -> Result<Vec<AdminRow>, StoreError> {
        let rows =
            sqlx::query("SELECT name, role, created_at, updated_at FROM admins ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminRow {
                    name: r.try_get(0)?,
                    role: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    updated_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The account's role and password hash.
    pub async fn admin_get(&self, name: &str) -> Result<Option<(String, String)>, StoreError> {
        let r = sqlx::query("SELECT role, password_hash FROM admins WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        match r {
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
            None => Ok(None),
        }
    }

    /// Removes an account and ends its sessions; false if there was none.
    pub async fn admin_remove(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM admins WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM admin_sessions WHERE admin = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Sets an account's password and ends its sessions; false if there is
    /// no such account.
    pub async fn admin_set_password(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n =
            sqlx::query("UPDATE admins SET password_hash = $1, updated_at = $2 WHERE name = $3")
                .bind(hash)
                .bind(now())
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM admin_sessions WHERE admin = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn session_create(
        &self,
        token_hash: &str,
        admin: &str,
        role: &str,
        csrf: &str,
    ) -> Result<(), StoreError> {
        let t = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, admin, role, csrf, created_at, last_seen)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(token_hash)
        .bind(admin)
        .bind(role)
        .bind(csrf)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn session_get(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let r = sqlx::query(
            "SELECT admin, role, csrf, created_at, last_seen FROM admin_sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        match r {
            Some(r) => Ok(Some(SessionRow {
                admin: r.try_get(0)?,
                role: r.try_get(1)?,
                csrf: r.try_get(2)?,
                created_at: r.try_get(3)?,
                last_seen: r.try_get(4)?,
            })),
            None => Ok(None),
        }
    }

    pub async fn session_touch(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE admin_sessions SET last_seen = $1 WHERE token_hash = $2")
            .bind(now())
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a session, and every session idle since `idle_before` or
    /// started before `started_before`.
    pub async fn session_end(
        &self,
        token_hash: &str,
        idle_before: i64,
        started_before: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM admin_sessions WHERE token_hash = $1 OR last_seen < $2 OR created_at < $3",
        )
        .bind(token_hash)
        .bind(idle_before)
        .bind(started_before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs started since `since`, oldest first (the console's chart).
    pub async fn runs_since(&self, since: i64) -> Result<Vec<super::RunRow>, StoreError> {
        let mut runs = self
            .list_runs_where("started_at >= $1", since, 100_000)
            .await?;
        runs.reverse();
        Ok(runs)
    }

    /// One run and its report JSON.
    pub async fn run(
        &self,
        id: i64,
    ) -> Result<Option<(super::RunRow, Option<String>)>, StoreError> {
        let runs = self.list_runs_where("id = $1", id, 1).await?;
        let Some(run) = runs.into_iter().next() else {
            return Ok(None);
        };
        let report: Option<String> = sqlx::query("SELECT report FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        Ok(Some((run, report)))
    }

    /// Names, departments and sites of users by id (for held plans).
    pub async fn user_briefs(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, UserBrief>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut q = super::Sql::new(
                self.engine(),
                "SELECT id, first_name, last_name, department, site, status FROM users WHERE id IN ",
            );
            q.list(chunk.iter().copied());
            for r in q.build().fetch_all(self.pool()).await? {
                let first: String = r.try_get(1)?;
                let last: Option<String> = r.try_get(2)?;
                out.insert(
                    r.try_get(0)?,
                    UserBrief {
                        name: match last {
                            Some(l) => format!("{first} {l}"),
                            None => first,
                        },
                        department: r.try_get(3)?,
                        site: r.try_get(4)?,
                        status: r.try_get(5)?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The ids of a source's users by source id (for scim holds).
    pub async fn user_ids_by_source_id(
        &self,
        source: &str,
        source_ids: &[String],
    ) -> Result<std::collections::HashMap<String, (i64, String)>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in source_ids.chunks(500) {
            let mut q = super::Sql::new(
                self.engine(),
                "SELECT source_id, id, extension FROM users WHERE source = ",
            );
            q.bind(source.to_string())
                .push(" AND source_id IN ")
                .list(chunk.iter().cloned());
            for r in q.build().fetch_all(self.pool()).await? {
                out.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// What runs did to one user, newest first.
    pub async fn user_history(&self, user_id: i64) -> Result<Vec<UserEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.started_at, r.source, a.action, a.detail
               FROM run_actions a JOIN runs r ON r.id = a.run_id
              WHERE a.user_id = $1 ORDER BY a.id DESC LIMIT 200",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserEvent {
                    run_id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    source: r.try_get(2)?,
                    action: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            })
            .collect()
    }
}

/// One thing a held run would do, as `held show` and the console list it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldAction {
    /// create, update, disable, re-enable, delete.
    pub action: String,
    pub source_id: String,
    pub name: String,
    pub extension: String,
    pub department: Option<String>,
    pub site: Option<String>,
    /// What changes, as one line (`department: Sales → Support`, or why a
    /// user is disabled).
    pub change: String,
}

impl Store {
    /// The writes a held run would make, with each user's name, department
    /// and site: from its plan, or (scim) from the pending held disables.
    pub async fn held_actions(
        &self,
        held: &HeldRun,
        plan: Option<&crate::plan::Plan>,
    ) -> Result<Vec<HeldAction>, StoreError> {
        use crate::plan::{Action, DisableReason};
        let Some(plan) = plan else {
            let holds = self.pending_holds(Some(&held.source)).await?;
            let ids: Vec<String> = holds.iter().map(|h| h.source_id.clone()).collect();
            let users = self.user_ids_by_source_id(&held.source, &ids).await?;
            let user_ids: Vec<i64> = users.values().map(|u| u.0).collect();
            let briefs = self.user_briefs(&user_ids).await?;
            return Ok(holds
                .iter()
                .map(|h| {
                    let (id, ext) = users.get(&h.source_id).cloned().unwrap_or_default();
                    let b = briefs.get(&id).cloned().unwrap_or_default();
                    HeldAction {
                        action: "disable".into(),
                        source_id: h.source_id.clone(),
                        name: b.name,
                        extension: ext,
                        department: b.department,
                        site: b.site,
                        change: match h.what.as_str() {
                            "delete" => "deleted in the identity provider".into(),
                            _ => "deactivated in the identity provider".into(),
                        },
                    }
                })
                .collect());
        };
        let ids: Vec<i64> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Update { user_id, .. }
                | Action::Reenable { user_id, .. }
                | Action::Disable { user_id, .. }
                | Action::Delete { user_id, .. } => Some(user_id),
                _ => None,
            })
            .collect();
        let briefs = self.user_briefs(&ids).await?;
        let brief = |id: &i64| briefs.get(id).cloned().unwrap_or_default();
        let changes = |c: &[crate::plan::Change]| {
            c.iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.field,
                        c.from.as_deref().unwrap_or("—"),
                        c.to.as_deref().unwrap_or("—")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut out = Vec::new();
        for a in plan.actions.iter() {
            let row = match &a {
                Action::Create {
                    source_id,
                    extension,
                    fields,
                    ..
                } => HeldAction {
                    action: "create".into(),
                    source_id: source_id.clone(),
                    name: match &fields.last_name {
                        Some(l) => format!("{} {l}", fields.first_name),
                        None => fields.first_name.clone(),
                    },
                    extension: extension.to_string(),
                    department: fields.department.clone(),
                    site: fields.site.clone(),
                    change: format!("new {} ({})", fields.kind, fields.scope),
                },
                Action::Update {
                    user_id,
                    source_id,
                    extension,
                    changes: c,
                    ..
                }
                | Action::Reenable {
                    user_id,
                    source_id,
                    extension,
                    changes: c,
                    ..
                } => {
                    let b = brief(user_id);
                    HeldAction {
                        action: a.name().to_string(),
                        source_id: source_id.clone(),
                        name: b.name,
                        extension: extension.to_string(),
                        department: b.department,
                        site: b.site,
                        change: changes(c),
                    }
                }
                Action::Disable {
                    user_id,
                    source_id,
                    extension,
                    reason,
                    ..
                } => {
                    let b = brief(user_id);
                    HeldAction {
                        action: "disable".into(),
                        source_id: source_id.clone(),
                        name: b.name,
                        extension: extension.to_string(),
                        department: b.department,
                        site: b.site,
                        change: match reason {
                            DisableReason::Absent => "no longer in the source".into(),
                            DisableReason::Left => "marked as left in the source".into(),
                        },
                    }
                }
                Action::Delete {
                    user_id,
                    source_id,
                    extension,
                } => {
                    let b = brief(user_id);
                    HeldAction {
                        action: "delete".into(),
                        source_id: source_id.clone(),
                        name: b.name,
                        extension: extension.to_string(),
                        department: b.department,
                        site: b.site,
                        change: "deleted after delete_after_days".into(),
                    }
                }
                Action::Unchanged { .. } | Action::Conflict { .. } => continue,
            };
            out.push(row);
        }
        Ok(out)
    }

    /// A run of the source applied: the plan its pending hold keeps is
    /// out of date (the domain changed), so the hold is closed.
    pub async fn supersede_held_plan(&self, source: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE held_runs SET status = 'superseded', decided_at = $1,
               decided_by = 'a later run of the source'
             WHERE source = $2 AND kind = 'plan' AND status = 'pending'",
        )
        .bind(now())
        .bind(source)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
