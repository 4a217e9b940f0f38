//! Welcome links as the welcome page and `welcome pending` see them: a live
//! link by its token hash, completing it (password and PIN set, link used),
//! renewing an expired one, and each person's latest welcome state.

use super::outbox::{id_column, split_lines};
use super::{Sql, Store, StoreError};
use crate::time::now;
use sqlx::Row;

/// One user's latest welcome, for `welcome pending`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WelcomeState {
    pub domain: String,
    pub extension: String,
    pub name: String,
    pub emails: Vec<String>,
    /// queued, sent, failed, completed, expired, or none.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// What the welcome page needs to know about a live link.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub link_id: i64,
    pub user_id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub extension: String,
    pub domain: String,
    pub language: Option<String>,
    pub voicemail: bool,
}

impl Store {
    /// A live link by its token hash: not used, not revoked, not expired,
    /// user active. Unknown, used, revoked and expired all give `None`.
    pub async fn live_link(&self, token_hash: &str) -> Result<Option<LinkView>, StoreError> {
        let r = sqlx::query(
            "SELECT l.id, u.id, u.first_name, u.last_name, u.extension, d.name, u.language,
                    u.voicemail, l.used_at, l.revoked_at, l.expires_at, u.status
               FROM welcome_links l
               JOIN users u ON u.id = l.user_id
               JOIN domains d ON d.id = u.domain_id
              WHERE l.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = r else { return Ok(None) };
        let used: Option<i64> = r.try_get(8)?;
        let revoked: Option<i64> = r.try_get(9)?;
        let expires: Option<i64> = r.try_get(10)?;
        let status: String = r.try_get(11)?;
        let live = used.is_none()
            && revoked.is_none()
            && expires.is_some_and(|e| e > now())
            && status == "active";
        if !live {
            return Ok(None);
        }
        Ok(Some(LinkView {
            link_id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            first_name: r.try_get(2)?,
            last_name: r.try_get(3)?,
            extension: r.try_get(4)?,
            domain: r.try_get(5)?,
            language: r.try_get(6)?,
            voicemail: r.try_get::<i64, _>(7)? != 0,
        }))
    }

    /// Uses a link: sets both secrets and marks the link used, in one
    /// transaction. Of two concurrent calls for one link exactly one returns
    /// true; the other changes nothing.
    pub async fn complete_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        pin_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let t = now();
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE welcome_links SET used_at = $1
              WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
                AND user_id IN (SELECT id FROM users WHERE status = 'active')
             RETURNING user_id",
        )
        .bind(t)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = r else {
            return Ok(false);
        };
        let user_id: i64 = r.try_get(0)?;
        sqlx::query(
            "UPDATE users SET portal_password_hash = $1,
                    voicemail_pin_hash = COALESCE($2, voicemail_pin_hash), updated_at = $3
              WHERE id = $4",
        )
        .bind(password_hash)
        .bind(pin_hash)
        .bind(t)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // Any other link of this user is now pointless.
        Store::revoke_open_links(&mut tx, user_id, t).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes every link of the user that is neither used nor revoked.
    pub(super) async fn revoke_open_links(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        user_id: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE welcome_links SET revoked_at = $1
              WHERE user_id = $2 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The user behind a dead link that may ask for a new one: the link
    /// expired or was revoked (not used), the user is active and still
    /// pending, and no link was queued for them in the last `quiet` seconds.
    pub async fn renewable_user(
        &self,
        token_hash: &str,
        quiet: i64,
    ) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query(
            "SELECT u.id FROM welcome_links l JOIN users u ON u.id = l.user_id
              WHERE l.token_hash = $1 AND l.used_at IS NULL AND u.status = 'active'
                AND (u.portal_password_hash IS NULL OR u.voicemail_pin_hash IS NULL)
                AND NOT EXISTS (SELECT 1 FROM welcome_links n
                                 WHERE n.user_id = u.id AND n.created_at > $2)",
        )
        .bind(token_hash)
        .bind(now() - quiet)
        .fetch_optional(self.pool())
        .await?;
        Ok(match r {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Each person's latest welcome (optionally one domain).
    pub async fn welcome_states(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<WelcomeState>, StoreError> {
        let mut q = Sql::new(
            self.engine(),
            "SELECT d.name, u.extension, u.first_name, u.last_name, u.emails,
                    l.id, l.used_at, l.revoked_at, l.expires_at,
                    o.status, o.attempts, o.last_error, o.sent_at
               FROM users u
               JOIN domains d ON d.id = u.domain_id
               LEFT JOIN welcome_links l ON l.id =
                    (SELECT MAX(x.id) FROM welcome_links x WHERE x.user_id = u.id)
               LEFT JOIN outbox o ON o.link_id = l.id
              WHERE u.kind = 'person' AND u.status = 'active'",
        );
        if let Some(d) = domain {
            q.push(" AND d.name = ").bind(d.to_ascii_lowercase());
        }
        q.push(" ORDER BY d.name, u.extension");
        let t = now();
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let first: String = r.try_get(2)?;
                let last: Option<String> = r.try_get(3)?;
                let link: Option<i64> = r.try_get(5)?;
                let used: Option<i64> = r.try_get(6)?;
                let expires: Option<i64> = r.try_get(8)?;
                let status: Option<String> = r.try_get(9)?;
                let state = if link.is_none() {
                    "none"
                } else if used.is_some() {
                    "completed"
                } else {
                    match status.as_deref() {
                        Some("sent") if expires.is_some_and(|e| e <= t) => "expired",
                        Some("sent") => "sent",
                        Some("failed") => "failed",
                        Some("cancelled") => "cancelled",
                        _ => "queued",
                    }
                };
                Ok(WelcomeState {
                    domain: r.try_get(0)?,
                    extension: r.try_get(1)?,
                    name: match last {
                        Some(l) => format!("{first} {l}"),
                        None => first,
                    },
                    emails: split_lines(&r.try_get::<String, _>(4)?),
                    state: state.to_string(),
                    attempts: r.try_get::<Option<i64>, _>(10)?.unwrap_or(0),
                    last_error: r.try_get(11)?,
                    sent_at: r.try_get(12)?,
                    expires_at: expires,
                })
            })
            .collect()
    }
}

impl Store {
    /// The user with this extension in this domain.
    pub async fn user_id(&self, domain: &str, extension: &str) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query(
            "SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id
              WHERE d.name = $1 AND u.extension = $2",
        )
        .bind(domain.to_ascii_lowercase())
        .bind(extension)
        .fetch_optional(self.pool())
        .await?;
        Ok(match r {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// People who still have to set their password or PIN, have an email,
    /// and have no welcome on its way.
    /// People who have not finished their welcome and have none on its
    /// way; unless `include_sent`, also not those whose sent link still
    /// works (sent a minute ago: a resend would only kill it).
    pub async fn resend_candidates(
        &self,
        domain: Option<&str>,
        include_sent: bool,
    ) -> Result<Vec<i64>, StoreError> {
        let mut q = Sql::new(
            self.engine(),
            "SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id
              WHERE u.kind = 'person' AND u.status = 'active' AND u.emails <> ''
                AND (u.portal_password_hash IS NULL OR u.voicemail_pin_hash IS NULL)
                AND NOT EXISTS (SELECT 1 FROM outbox o JOIN welcome_links l ON l.id = o.link_id
                                 WHERE l.user_id = u.id AND o.status = 'queued'
                                   AND l.revoked_at IS NULL)",
        );
        if !include_sent {
            q.push(
                " AND NOT EXISTS (SELECT 1 FROM welcome_links l
                                   WHERE l.user_id = u.id AND l.used_at IS NULL AND l.revoked_at IS NULL
                                     AND l.expires_at IS NOT NULL AND l.expires_at > ",
            )
            .bind(now())
            .push(")");
        }
        if let Some(d) = domain {
            q.push(" AND d.name = ").bind(d.to_ascii_lowercase());
        }
        q.push(" ORDER BY u.id");
        id_column(&q.build().fetch_all(self.pool()).await?)
    }
}
