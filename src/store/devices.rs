//! Devices as a SIP registrar sees them: the digest hashes behind the
//! `sip_subscriber` view, the `devices` listing and secret rotation.

use super::users::{hex_string, new_secret};
use super::{Store, StoreError};
use crate::time::now;
use md5::{Digest, Md5};
use serde::Serialize;
use sqlx::Row;

/// The two digest hashes a registrar checks instead of the secret:
/// `ha1` = MD5(user:realm:secret), `ha1b` = MD5(user@realm:realm:secret).
pub fn digest_hashes(user: &str, realm: &str, secret: &str) -> (String, String) {
    let ha1 = Md5::new()
        .chain_update(user)
        .chain_update(":")
        .chain_update(realm)
        .chain_update(":")
        .chain_update(secret)
        .finalize();
    let ha1b = Md5::new()
        .chain_update(user)
        .chain_update("@")
        .chain_update(realm)
        .chain_update(":")
        .chain_update(realm)
        .chain_update(":")
        .chain_update(secret)
        .finalize();
    (hex_string(&ha1), hex_string(&ha1b))
}

/// One device for `pbx-onboard devices`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub domain: String,
    pub extension: String,
    pub sip_username: String,
    #[serde(rename = "type")]
    pub device_type: String,
    /// The device flag; a disabled user's devices are disabled with them.
    pub enabled: bool,
    /// Whether a registrar reading `sip_subscriber` accepts this device now.
    pub registrable: bool,
    pub user_status: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub created_at: i64,
}

/// What `devices rotate-secret` prints, once.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    pub domain: String,
    pub extension: String,
    pub sip_username: String,
    pub secret: String,
}

impl Store {
    /// Fills the digest hashes of devices written before they existed.
    pub(super) async fn backfill_digests(&self) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.sip_username, m.name, d.secret FROM devices d
               JOIN domains m ON m.id = d.domain_id
              WHERE d.ha1 IS NULL OR d.ha1b IS NULL",
        )
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let user: String = r.try_get(1)?;
            let realm: String = r.try_get(2)?;
            let secret: String = r.try_get(3)?;
            let (ha1, ha1b) = digest_hashes(&user, &realm, &secret);
            sqlx::query("UPDATE devices SET ha1 = $1, ha1b = $2 WHERE id = $3")
                .bind(ha1)
                .bind(ha1b)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Every device (of one domain, or all), by domain and extension.
    pub async fn list_devices(&self, domain: Option<&str>) -> Result<Vec<DeviceView>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.name, u.extension, d.sip_username, d.device_type, d.enabled, u.status,
                    u.first_name, u.last_name, d.created_at,
                    (SELECT count(*) FROM sip_subscriber s WHERE s.device_id = d.id)
               FROM devices d
               JOIN users u   ON u.id = d.user_id
               JOIN domains m ON m.id = d.domain_id
              WHERE CAST($1 AS TEXT) IS NULL OR lower(m.name) = lower($1)
              ORDER BY m.name, u.extension, d.id",
        )
        .bind(domain.map(str::to_string))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceView {
                    domain: r.try_get(0)?,
                    extension: r.try_get(1)?,
                    sip_username: r.try_get(2)?,
                    device_type: r.try_get(3)?,
                    enabled: r.try_get::<i64, _>(4)? != 0,
                    user_status: r.try_get(5)?,
                    first_name: r.try_get(6)?,
                    last_name: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                    registrable: r.try_get::<i64, _>(9)? != 0,
                })
            })
            .collect()
    }

    /// Gives the SIP device of the user with `extension` a new secret; the
    /// old one stops working at the registrar's next lookup. `None` when the
    /// domain has no such user or the user has no SIP device.
    pub async fn rotate_secret(
        &self,
        domain: &str,
        extension: &str,
    ) -> Result<Option<Rotated>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT d.id, d.sip_username, m.name FROM devices d
               JOIN users u   ON u.id = d.user_id
               JOIN domains m ON m.id = d.domain_id
              WHERE lower(m.name) = lower($1) AND u.extension = $2 AND d.device_type = 'sip'
              ORDER BY d.id LIMIT 1",
        )
        .bind(domain.to_string())
        .bind(extension.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let sip_username: String = row.try_get(1)?;
        let realm: String = row.try_get(2)?;
        let secret = new_secret();
        let (ha1, ha1b) = digest_hashes(&sip_username, &realm, &secret);
        sqlx::query(
            "UPDATE devices SET secret = $1, ha1 = $2, ha1b = $3, secret_rotated_at = $4 WHERE id = $5",
        )
        .bind(secret.clone())
        .bind(ha1)
        .bind(ha1b)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Rotated {
            domain: realm,
            extension: extension.to_string(),
            sip_username,
            secret,
        }))
    }
}

#[cfg(test)]
mod tests;
