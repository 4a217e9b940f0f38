//! The mail outbox (migration 0005) and the welcome links it arms.
//!
//! Apply queues a welcome in the transaction that creates the user; the mail
//! worker claims due rows with a lease (so two workers never send the same
//! row at once), arms each link with its token hash before sending, and marks
//! rows sent, retried or failed afterwards.

use super::{Backend, Sql, Store, StoreError};
use crate::time::now;
use sqlx::{Any, Row, Transaction};

/// A welcome to render and send, with the user as they are now.
#[derive(Debug, Clone)]
pub struct WelcomeItem {
    pub link_id: i64,
    pub salt: String,
    /// The link was revoked (resend) or used: the message is cancelled.
    pub dead: bool,
    pub user_id: i64,
    pub domain: String,
    pub extension: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub emails: Vec<String>,
    pub language: Option<String>,
    pub voicemail: bool,
    pub device: Option<String>,
    pub active: bool,
    pub expires_at: Option<i64>,
}

/// An admin report, rendered when queued.
#[derive(Debug, Clone)]
pub struct ReportItem {
    pub recipients: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone)]
pub enum Payload {
    Welcome(WelcomeItem),
    Report(ReportItem),
}

#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub message_id: String,
    pub attempts: i64,
    pub created_at: i64,
    pub payload: Payload,
}

/// What `resend_welcome` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    Queued,
    Refused(NoResend),
}

/// Why a user gets no new welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoResend {
    NoUser,
    Disabled,
    NotPerson,
    NoEmail,
    SetUp,
}

impl std::fmt::Display for NoResend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoResend::NoUser => "there is no such user",
            NoResend::Disabled => "the user is disabled",
            NoResend::NotPerson => "the user is not a person (a queue, an attendant, …)",
            NoResend::NoEmail => "the user has no email address: add one in the source first",
            NoResend::SetUp => "the user has already set their password and PIN",
        })
    }
}

/// Outcome of a finished outbox row.
#[derive(Debug, Clone)]
pub enum Mark {
    Sent,
    Retry { at: i64, error: String },
    Failed(String),
    Cancelled(String),
}

/// Users who still have to set up and never had a welcome link; callers
/// append their own `AND u.id …` condition.
pub(super) const FIRST_WELCOME_DUE: &str = "SELECT u.id FROM users u \
     WHERE (u.portal_password_hash IS NULL OR u.voicemail_pin_hash IS NULL) \
       AND NOT EXISTS (SELECT 1 FROM welcome_links l WHERE l.user_id = u.id)";

/// A fresh Message-ID for a queued row.
pub fn message_id(domain: &str) -> String {
    let id = super::users::sortable_secret();
    let mut m = String::with_capacity(id.len() + domain.len() + 3);
    m.push('<');
    m.push_str(&id);
    m.push('@');
    m.push_str(domain);
    m.push('>');
    m
}

/// The first column of each row, as ids.
pub(super) fn id_column(rows: &[sqlx::any::AnyRow]) -> Result<Vec<i64>, StoreError> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

pub(super) fn split_lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// The engine's name as sqlx's `Any` driver reports it (see [`Sql::new`]).
    pub fn engine(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// Queues a welcome for each user: a new link and its outbox row. Runs
    /// inside the caller's transaction (the one that created the users).
    pub async fn queue_welcomes(
        tx: &mut Transaction<'static, Any>,
        user_ids: &[i64],
        mail_domain: &str,
    ) -> Result<(), StoreError> {
        let (link_ids, _) = super::allocate_ids(tx, "welcome_links", user_ids.len()).await?;
        let statements =
            Store::insert_welcomes(tx.backend_name(), user_ids, &link_ids, mail_domain);
        super::execute_all(tx, statements).await
    }

    /// The INSERTs that queue a welcome for each user: a link (ids from
    /// [`super::allocate_ids`], one per user) and its outbox row, 500 a
    /// statement, links first.
    pub fn insert_welcomes(
        backend: &str,
        user_ids: &[i64],
        link_ids: &[i64],
        mail_domain: &str,
    ) -> Vec<Sql> {
        let t = now();
        let mut out = Vec::new();
        for (users, links) in user_ids.chunks(500).zip(link_ids.chunks(500)) {
            let mut q = Sql::new(
                backend,
                "INSERT INTO welcome_links (id, user_id, salt, created_at) ",
            );
            q.values(links.iter().zip(users), |b, (link, user)| {
                b.bind(*link)
                    .bind(*user)
                    .bind(super::users::sortable_secret())
                    .bind(t);
            });
            out.push(q);
            let mut q = Sql::new(
                backend,
                "INSERT INTO outbox (kind, link_id, message_id, next_attempt_at, created_at) ",
            );
            q.values(links, |b, id| {
                b.bind("welcome")
                    .bind(*id)
                    .bind(message_id(mail_domain))
                    .bind(t)
                    .bind(t);
            });
            out.push(q);
        }
        out
    }

    /// Queues a welcome for those of `user_ids` who still have to set up and
    /// never had one (an update gave them their first email address).
    pub async fn queue_first_welcomes(
        tx: &mut Transaction<'static, Any>,
        user_ids: &[i64],
        mail_domain: &str,
    ) -> Result<(), StoreError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let mut q = Sql::new(tx.backend_name(), FIRST_WELCOME_DUE);
        q.push(" AND u.id IN ").list(user_ids.iter().copied());
        let ids = id_column(&q.build().fetch_all(&mut **tx).await?)?;
        Store::queue_welcomes(tx, &ids, mail_domain).await
    }

    /// Revokes the user's unused links, cancels their queued emails and
    /// queues a new welcome. Returns false for a user who cannot get one
    /// (disabled, no email, or already set up).
    pub async fn resend_welcome(
        &self,
        user_id: i64,
        mail_domain: &str,
    ) -> Result<Resend, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT status, emails,
                    CASE WHEN portal_password_hash IS NULL OR voicemail_pin_hash IS NULL THEN 1 ELSE 0 END, kind
               FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else {
            return Ok(Resend::Refused(NoResend::NoUser));
        };
        let (status, emails, pending, kind): (String, String, i64, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let why = if status != "active" {
            Some(NoResend::Disabled)
        } else if kind != "person" {
            Some(NoResend::NotPerson)
        } else if emails.trim().is_empty() {
            Some(NoResend::NoEmail)
        } else if pending == 0 {
            Some(NoResend::SetUp)
        } else {
            None
        };
        if let Some(why) = why {
            return Ok(Resend::Refused(why));
        }
        let t = now();
        sqlx::query(
            "UPDATE outbox SET status = 'cancelled', last_error = 'superseded by a resend'
              WHERE status = 'queued' AND link_id IN
                    (SELECT id FROM welcome_links WHERE user_id = $1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        Store::revoke_open_links(&mut tx, user_id, t).await?;
        Store::queue_welcomes(&mut tx, &[user_id], mail_domain).await?;
        tx.commit().await?;
        Ok(Resend::Queued)
    }

    /// Queues an admin report (already rendered).
    pub async fn queue_report(&self, r: &ReportItem, mail_domain: &str) -> Result<(), StoreError> {
        let t = now();
        sqlx::query(
            "INSERT INTO outbox (kind, message_id, recipients, subject, body_text, body_html,
                                 next_attempt_at, created_at)
             VALUES ('report', $1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(message_id(mail_domain))
        .bind(r.recipients.join("\n"))
        .bind(&r.subject)
        .bind(&r.text)
        .bind(&r.html)
        .bind(t)
        .bind(t)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due rows for `lease` seconds and loads them.
    pub async fn claim_due(&self, limit: i64, lease: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let t = now();
        let mut tx = self.begin_write().await?;
        let mut select = "SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1
                            AND (lease_until IS NULL OR lease_until < $1) ORDER BY id LIMIT $2"
            .to_string();
        if self.backend() == Backend::Postgres {
            select.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let ids = id_column(
            &sqlx::query(&select)
                .bind(t)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?,
        )?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Sql::new(self.engine(), "UPDATE outbox SET lease_until = ");
        q.bind(t + lease)
            .push(" WHERE id IN ")
            .list(ids.iter().copied());
        q.build().execute(&mut *tx).await?;
        let mut q = Sql::new(
            self.engine(),
            "SELECT o.id, o.message_id, o.attempts, o.created_at, o.kind, o.recipients, o.subject,
                    o.body_text, o.body_html, l.id, l.salt,
                    CASE WHEN l.used_at IS NULL AND l.revoked_at IS NULL THEN 0 ELSE 1 END,
                    u.id, d.name, u.extension, u.first_name, u.last_name, u.emails, u.language,
                    u.voicemail, u.status, l.expires_at,
                    (SELECT MIN(v.device_type) FROM devices v WHERE v.user_id = u.id AND v.enabled = 1)
               FROM outbox o
               LEFT JOIN welcome_links l ON l.id = o.link_id
               LEFT JOIN users u ON u.id = l.user_id
               LEFT JOIN domains d ON d.id = u.domain_id
              WHERE o.id IN ",
        );
        q.list(ids.iter().copied()).push(" ORDER BY o.id");
        let rows = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get(4)?;
            let payload = if kind == "report" {
                Payload::Report(ReportItem {
                    recipients: split_lines(
                        &r.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                    ),
                    subject: r.try_get::<Option<String>, _>(6)?.unwrap_or_default(),
                    text: r.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                    html: r.try_get::<Option<String>, _>(8)?.unwrap_or_default(),
                })
            } else {
                let user_id: Option<i64> = r.try_get(12)?;
                Payload::Welcome(WelcomeItem {
                    link_id: r.try_get(9)?,
                    salt: r.try_get(10)?,
                    dead: r.try_get::<i64, _>(11)? != 0 || user_id.is_none(),
                    user_id: user_id.unwrap_or(0),
                    domain: r.try_get::<Option<String>, _>(13)?.unwrap_or_default(),
                    extension: r.try_get::<Option<String>, _>(14)?.unwrap_or_default(),
                    first_name: r.try_get::<Option<String>, _>(15)?.unwrap_or_default(),
                    last_name: r.try_get(16)?,
                    emails: split_lines(&r.try_get::<Option<String>, _>(17)?.unwrap_or_default()),
                    language: r.try_get(18)?,
                    voicemail: r.try_get::<Option<i64>, _>(19)?.unwrap_or(0) != 0,
                    active: r.try_get::<Option<String>, _>(20)?.as_deref() == Some("active"),
                    expires_at: r.try_get(21)?,
                    device: r.try_get(22)?,
                })
            };
            out.push(OutboxItem {
                id: r.try_get(0)?,
                message_id: r.try_get(1)?,
                attempts: r.try_get(2)?,
                created_at: r.try_get(3)?,
                payload,
            });
        }
        Ok(out)
    }

    /// Stores each link's token hash and, on its first send, its expiry:
    /// from here on the link works. Done before the message leaves.
    pub async fn arm_links(&self, links: &[(i64, String, i64)]) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, hash, expires_at) in links {
            sqlx::query(
                "UPDATE welcome_links SET token_hash = $1, expires_at = COALESCE(expires_at, $2)
                  WHERE id = $3",
            )
            .bind(hash)
            .bind(*expires_at)
            .bind(*id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records how each claimed row ended, in one transaction.
    pub async fn mark(&self, marks: &[(i64, Mark)]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let t = now();
        let mut tx = self.begin_write().await?;
        let sent: Vec<i64> = marks
            .iter()
            .filter(|(_, m)| matches!(m, Mark::Sent))
            .map(|(id, _)| *id)
            .collect();
        for chunk in sent.chunks(500) {
            let mut q = Sql::new(
                self.engine(),
                "UPDATE outbox SET status = 'sent', lease_until = NULL, attempts = attempts + 1, sent_at = ",
            );
            q.bind(t).push(" WHERE id IN ").list(chunk.iter().copied());
            q.build().execute(&mut *tx).await?;
        }
        for (id, m) in marks {
            let (status, next, error) = match m {
                Mark::Sent => continue,
                Mark::Retry { at, error } => ("queued", *at, error),
                Mark::Failed(e) => ("failed", t, e),
                Mark::Cancelled(e) => ("cancelled", t, e),
            };
            let bump = i64::from(!matches!(m, Mark::Cancelled(_)));
            sqlx::query(
                "UPDATE outbox SET status = $1, next_attempt_at = $2, last_error = $3,
                        lease_until = NULL, attempts = attempts + $4 WHERE id = $5",
            )
            .bind(status)
            .bind(next)
            .bind(error)
            .bind(bump)
            .bind(*id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rows still queued (due or not), for reporting.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Makes every queued row due now (`mail flush --retry-now`).
    /// When the longest-waiting email that is due now became due.
    pub async fn oldest_due_mail(&self) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1",
        )
        .bind(now())
        .fetch_one(self.pool())
        .await?;
        Ok(r.try_get::<Option<i64>, _>(0)?)
    }

    pub async fn retry_now(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE status = 'queued'")
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}
