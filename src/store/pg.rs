//! The PostgreSQL write path of apply, on a typed `PgPool` beside the `Any`
//! pool: sqlx's `Any` driver hides `PgConnection::copy_in_raw` and binds no
//! arrays, and both are what make a bulk write cheap on PostgreSQL.
//!
//! One chunk is one transaction: the domain revision bumped from the value
//! the plan was made against, ids drawn from the identity sequences up
//! front, new users, devices, welcome links, outbox rows and run records
//! sent with `COPY … FROM STDIN` (text format), updates, status changes and
//! deletes as one set-based statement each over `unnest` / `ANY` arrays.
//! The rows and values are those the SQLite path writes (same secrets,
//! digest hashes, Message-IDs and timestamps).
//!
//! COPY's text format is written here: its escaping is four characters and
//! `\N` (PostgreSQL's "COPY" page, "Text Format"); the `csv` crate cannot
//! write an unquoted NULL beside quoted text, which `FORMAT csv` needs.

use super::users::{flag, join_emails, new_secret, sortable_secret};
use super::{digest_hashes, ActionRecord, NewDevice, NewUser, Store, StoreError};
use crate::model::{Status, UserFields};
use crate::time::now;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use std::time::Duration;

/// Connections of the typed pool: apply writes one chunk at a time.
const PG_BULK_CONNECTIONS: u32 = 2;

/// Opens (lazily: no connection until the first chunk) the typed pool.
pub(super) fn bulk_pool(url: &str, timeout: Duration) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(PG_BULK_CONNECTIONS)
        .acquire_timeout(timeout)
        .connect_lazy(url)
}

/// An existing user's new values; `activate` also re-enables them.
#[derive(Debug)]
pub struct UserUpdate<'a> {
    pub id: i64,
    pub fields: &'a UserFields,
    pub activate: bool,
}

/// One chunk of an apply, as rows to write.
#[derive(Debug, Default)]
pub struct ChunkWrite<'a> {
    pub domain_id: i64,
    /// The domain revision the chunk expects (bumped by one).
    pub revision: i64,
    /// The domain's name: the SIP realm and the Message-ID domain.
    pub realm: &'a str,
    pub run_id: Option<i64>,
    /// New users, and whether each gets a welcome link and email.
    pub creates: Vec<(NewUser<'a>, bool)>,
    pub updates: Vec<UserUpdate<'a>>,
    /// Devices for existing users that had none.
    pub devices: Vec<NewDevice>,
    /// Existing users who got their first email address.
    pub first_emails: Vec<i64>,
    pub disable: Vec<i64>,
    pub delete: Vec<i64>,
    /// Run records of everything but the creates (those get theirs here,
    /// once their ids are known).
    pub records: Vec<ActionRecord<'a>>,
}

/// How a chunk ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The domain revision was not the expected one (found; -1: no domain).
    Changed(i64),
}

/// Rows in COPY's text format.
#[derive(Default)]
pub(super) struct CopyText {
    buf: Vec<u8>,
    started: bool,
}

impl CopyText {
    fn sep(&mut self) {
        if self.started {
            self.buf.push(b'\t');
        }
        self.started = true;
    }

    pub(super) fn text(&mut self, v: Option<&str>) -> &mut Self {
        self.sep();
        let Some(s) = v else {
            self.buf.extend_from_slice(b"\\N");
            return self;
        };
        for b in s.bytes() {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.push(b),
            }
        }
        self
    }

    pub(super) fn int(&mut self, v: Option<i64>) -> &mut Self {
        self.sep();
        match v {
            Some(i) => self.buf.extend_from_slice(i.to_string().as_bytes()),
            None => self.buf.extend_from_slice(b"\\N"),
        }
        self
    }

    pub(super) fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.started = false;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[cfg(test)]
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

const USER_COLUMNS: &str = "id, domain_id, extension, kind, first_name, last_name, emails, \
    department, site, scope, title, caller_id, emergency_caller_id, voicemail, timezone, \
    language, dial_permission, status, source, source_id, created_at, updated_at";
const DEVICE_COLUMNS: &str = "user_id, domain_id, device_type, sip_username, secret, ha1, ha1b, \
    force_login, enabled, created_at";

async fn copy(conn: &mut PgConnection, table: &str, rows: CopyText) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = conn
        .copy_in_raw(&format!("COPY {table} FROM STDIN"))
        .await?;
    match c.send(rows.buf).await {
        Ok(_) => {
            c.finish().await?;
            Ok(())
        }
        Err(e) => {
            let _ = c.abort("pbx-onboard: sending the rows failed").await;
            Err(e)
        }
    }
}

/// Ids for `users` and `links` new rows, drawn from the identity sequences.
async fn allocate(
    conn: &mut PgConnection,
    users: usize,
    links: usize,
) -> Result<(Vec<i64>, Vec<i64>), sqlx::Error> {
    if users == 0 && links == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    sqlx::query_as(
        "SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, $1)), \
                ARRAY(SELECT nextval(pg_get_serial_sequence('welcome_links', 'id')) FROM generate_series(1, $2))",
    )
    .bind(users as i64)
    .bind(links as i64)
    .fetch_one(conn)
    .await
}

fn device_rows(rows: &mut CopyText, domain_id: i64, realm: &str, devices: &[NewDevice], t: i64) {
    for d in devices {
        let secret = new_secret();
        let (ha1, ha1b) = digest_hashes(&d.sip_username, realm, &secret);
        rows.int(Some(d.user_id))
            .int(Some(domain_id))
            .text(Some(d.device_type.as_str()))
            .text(Some(&d.sip_username))
            .text(Some(&secret))
            .text(Some(&ha1))
            .text(Some(&ha1b))
            .int(Some(flag(d.force_login)))
            .int(Some(1))
            .int(Some(t))
            .end_row();
    }
}

/// A welcome link and its outbox row for each (user, link id).
fn welcome_rows(
    links: &mut CopyText,
    outbox: &mut CopyText,
    pairs: impl Iterator<Item = (i64, i64)>,
    realm: &str,
    t: i64,
) {
    for (user, link) in pairs {
        links
            .int(Some(link))
            .int(Some(user))
            .text(Some(&sortable_secret()))
            .int(Some(t))
            .end_row();
        outbox
            .text(Some("welcome"))
            .int(Some(link))
            .text(Some(&super::outbox::message_id(realm)))
            .int(Some(t))
            .int(Some(t))
            .end_row();
    }
}

const LINK_TABLE: &str = "welcome_links (id, user_id, salt, created_at)";
const OUTBOX_TABLE: &str = "outbox (kind, link_id, message_id, next_attempt_at, created_at)";
const ACTION_TABLE: &str = "run_actions (run_id, user_id, source_id, action, detail)";

fn action_row(rows: &mut CopyText, run: i64, a: &ActionRecord<'_>) {
    rows.int(Some(run))
        .int(a.user_id)
        .text(Some(a.source_id))
        .text(Some(a.action))
        .text(a.detail.as_deref())
        .end_row();
}

/// Apply's writer on a PostgreSQL store ([`Store::pg_writer`]).
#[derive(Debug, Clone, Copy)]
pub struct PgWriter<'a> {
    pool: &'a PgPool,
}

impl Store {
    /// The typed write path, on a PostgreSQL store; `None` on SQLite.
    pub fn pg_writer(&self) -> Option<PgWriter<'_>> {
        self.pg.as_ref().map(|pool| PgWriter { pool })
    }
}

impl PgWriter<'_> {
    /// Writes one chunk in one transaction.
    pub async fn write_chunk(&self, w: &ChunkWrite<'_>) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin().await?;
        let bumped = sqlx::query(
            "UPDATE domains SET revision = revision + 1 WHERE id = $1 AND revision = $2",
        )
        .bind(w.domain_id)
        .bind(w.revision)
        .execute(&mut *tx)
        .await?;
        if bumped.rows_affected() != 1 {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM domains WHERE id = $1")
                    .bind(w.domain_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(Written::Changed(found.unwrap_or(-1)));
        }
        let t = now();
        let welcomes = w.creates.iter().filter(|(_, welcome)| *welcome).count();
        let (user_ids, link_ids) = allocate(&mut tx, w.creates.len(), welcomes).await?;
        if user_ids.len() != w.creates.len() || link_ids.len() != welcomes {
            return Err(StoreError::Corrupt(
                "the identity sequences gave too few ids".into(),
            ));
        }

        // New users, their devices, links and outbox rows, and records.
        let mut users = CopyText::default();
        let mut new_devices = Vec::new();
        let mut actions = CopyText::default();
        for ((u, _), id) in w.creates.iter().zip(&user_ids) {
            let f = u.fields;
            let emails = join_emails(&f.emails);
            users
                .int(Some(*id))
                .int(Some(w.domain_id))
                .text(Some(u.extension))
                .text(Some(f.kind.as_str()))
                .text(Some(&f.first_name))
                .text(f.last_name.as_deref())
                .text(Some(&emails))
                .text(f.department.as_deref())
                .text(f.site.as_deref())
                .text(Some(f.scope.as_str()))
                .text(f.title.as_deref())
                .text(u.caller_id.as_deref())
                .text(u.emergency_caller_id.as_deref())
                .int(Some(flag(f.voicemail)))
                .text(u.timezone.as_deref())
                .text(u.language.as_deref())
                .text(u.dial_permission.as_deref())
                .text(Some("active"))
                .text(Some(u.source))
                .text(Some(u.source_id))
                .int(Some(t))
                .int(Some(t))
                .end_row();
            if let Some(device_type) = f.device {
                new_devices.push(NewDevice {
                    user_id: *id,
                    device_type,
                    sip_username: u.extension.to_string(),
                    force_login: f.force_login,
                });
            }
            if let Some(run) = w.run_id {
                action_row(
                    &mut actions,
                    run,
                    &ActionRecord {
                        user_id: Some(*id),
                        source_id: u.source_id,
                        action: "create",
                        detail: Some(u.extension.to_string()),
                    },
                );
            }
        }
        copy(&mut tx, &format!("users ({USER_COLUMNS})"), users).await?;
        let mut devices = CopyText::default();
        device_rows(&mut devices, w.domain_id, w.realm, &new_devices, t);
        device_rows(&mut devices, w.domain_id, w.realm, &w.devices, t);
        copy(&mut tx, &format!("devices ({DEVICE_COLUMNS})"), devices).await?;
        let welcomed = w
            .creates
            .iter()
            .zip(&user_ids)
            .filter(|((_, welcome), _)| *welcome)
            .map(|(_, id)| *id);
        let (mut links, mut outbox) = (CopyText::default(), CopyText::default());
        welcome_rows(
            &mut links,
            &mut outbox,
            welcomed.zip(link_ids.iter().copied()),
            w.realm,
            t,
        );
        copy(&mut tx, LINK_TABLE, links).await?;
        copy(&mut tx, OUTBOX_TABLE, outbox).await?;

        // Existing users: set-based statements.
        update_users(&mut tx, &w.updates, t).await?;
        let activate: Vec<i64> = w
            .updates
            .iter()
            .filter(|u| u.activate)
            .map(|u| u.id)
            .collect();
        set_status(&mut tx, &activate, Status::Active, t).await?;
        first_welcomes(&mut tx, &w.first_emails, w.realm, t).await?;
        set_status(&mut tx, &w.disable, Status::Disabled, t).await?;
        if !w.delete.is_empty() {
            sqlx::query("DELETE FROM users WHERE id = ANY($1)")
                .bind(&w.delete)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(run) = w.run_id {
            for a in &w.records {
                action_row(&mut actions, run, a);
            }
        }
        copy(&mut tx, ACTION_TABLE, actions).await?;
        tx.commit().await?;
        Ok(Written::Done)
    }
}

/// The source-controlled fields of existing users, one UPDATE over arrays,
/// and their devices' type and `force_login` where those changed.
async fn update_users(
    conn: &mut PgConnection,
    updates: &[UserUpdate<'_>],
    t: i64,
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let n = updates.len();
    let mut ids = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut emails = Vec::with_capacity(n);
    let mut dept = Vec::with_capacity(n);
    let mut site = Vec::with_capacity(n);
    let mut scope = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut title = Vec::with_capacity(n);
    let mut caller = Vec::with_capacity(n);
    let mut voicemail = Vec::with_capacity(n);
    let (mut dev_user, mut dev_type, mut dev_force) = (Vec::new(), Vec::new(), Vec::new());
    for u in updates {
        let f = u.fields;
        ids.push(u.id);
        first.push(f.first_name.as_str());
        last.push(f.last_name.as_deref());
        emails.push(join_emails(&f.emails));
        dept.push(f.department.as_deref());
        site.push(f.site.as_deref());
        scope.push(f.scope.as_str());
        kind.push(f.kind.as_str());
        title.push(f.title.as_deref());
        caller.push(f.caller_id.as_ref().map(|c| c.as_str()));
        voicemail.push(flag(f.voicemail));
        if let Some(d) = f.device {
            dev_user.push(u.id);
            dev_type.push(d.as_str());
            dev_force.push(flag(f.force_login));
        }
    }
    sqlx::query(
        "UPDATE users u SET first_name = s.first_name, last_name = s.last_name, emails = s.emails, \
           department = s.department, site = s.site, scope = s.scope, kind = s.kind, title = s.title, \
           caller_id = s.caller_id, voicemail = s.voicemail, updated_at = $12 \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[]) \
              AS s(id, first_name, last_name, emails, department, site, scope, kind, title, caller_id, voicemail) \
         WHERE u.id = s.id",
    )
    .bind(&ids)
    .bind(&first)
    .bind(&last)
    .bind(&emails)
    .bind(&dept)
    .bind(&site)
    .bind(&scope)
    .bind(&kind)
    .bind(&title)
    .bind(&caller)
    .bind(&voicemail)
    .bind(t)
    .execute(&mut *conn)
    .await?;
    if !dev_user.is_empty() {
        sqlx::query(
            "UPDATE devices d SET device_type = s.device_type, force_login = s.force_login \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS s(user_id, device_type, force_login) \
             WHERE d.user_id = s.user_id \
               AND (d.device_type <> s.device_type OR d.force_login <> s.force_login)",
        )
        .bind(&dev_user)
        .bind(&dev_type)
        .bind(&dev_force)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Re-enables or disables users and their devices.
async fn set_status(
    conn: &mut PgConnection,
    ids: &[i64],
    status: Status,
    t: i64,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let (disabled_at, enabled) = match status {
        Status::Active => (None, 1_i64),
        Status::Disabled => (Some(t), 0_i64),
    };
    sqlx::query(
        "UPDATE users SET status = $1, disabled_at = $2, updated_at = $3 WHERE id = ANY($4)",
    )
    .bind(status.as_str())
    .bind(disabled_at)
    .bind(t)
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE devices SET enabled = $1 WHERE user_id = ANY($2)")
        .bind(enabled)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A welcome for those of `user_ids` who still have to set up and never
/// had one (an update gave them their first email address).
async fn first_welcomes(
    conn: &mut PgConnection,
    user_ids: &[i64],
    realm: &str,
    t: i64,
) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{} AND u.id = ANY($1) ORDER BY u.id",
        super::outbox::FIRST_WELCOME_DUE
    );
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(user_ids)
        .fetch_all(&mut *conn)
        .await?;
    let (_, link_ids) = allocate(conn, 0, ids.len()).await?;
    let (mut links, mut outbox) = (CopyText::default(), CopyText::default());
    welcome_rows(
        &mut links,
        &mut outbox,
        ids.into_iter().zip(link_ids),
        realm,
        t,
    );
    copy(conn, LINK_TABLE, links).await?;
    copy(conn, OUTBOX_TABLE, outbox).await
}

#[cfg(test)]
mod tests {
    use super::CopyText;

    #[test]
    fn copy_text_escapes_what_the_format_treats_specially() {
        let mut r = CopyText::default();
        r.int(Some(-7))
            .text(None)
            .text(Some("a\tb\nc\rd\\e"))
            .text(Some(r"\N"))
            .text(Some(""))
            .int(None)
            .end_row();
        r.text(Some("Zoë")).end_row();
        assert_eq!(
            r.as_bytes(),
            "-7\t\\N\ta\\tb\\nc\\rd\\\\e\t\\\\N\t\t\\N\nZoë\n".as_bytes()
        );
    }
}
