//! User and device queries: the set-based writes apply uses (multi-row
//! INSERT, one UPDATE per changed user) and the reads the planner and the CLI use.

use super::{Backend, Sql, Store, StoreError};
use crate::model::{
    normal_emails, DeviceType, PhoneNumber, Scope, Status, StoredAttrs, StoredTexts, StoredUser,
    UserFields, UserKind,
};
use crate::time::now;
use foldhash::{HashMap, HashMapExt};
use rand::RngCore;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use std::borrow::Cow;
use std::sync::Mutex;

/// A user to insert; defaults (site, then domain) already resolved.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub extension: &'a str,
    pub fields: &'a UserFields,
    pub source: &'a str,
    pub source_id: &'a str,
    pub caller_id: Option<String>,
    pub emergency_caller_id: Option<String>,
    pub timezone: Option<String>,
    pub language: Option<String>,
    pub dial_permission: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub user_id: i64,
    pub device_type: DeviceType,
    pub sip_username: String,
    pub force_login: bool,
}

/// A user as `users` lists it. Never carries a secret.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub domain: String,
    pub extension: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub emails: Vec<String>,
    pub department: Option<String>,
    pub site: Option<String>,
    pub scope: String,
    pub kind: String,
    pub status: String,
    pub tags: Vec<&'static str>,
    pub source: Option<String>,
    pub source_id: Option<String>,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    #[serde(rename = "type")]
    pub device_type: String,
    pub sip_username: String,
    pub enabled: bool,
    /// A Web device that rings only while its user is logged in.
    pub force_login: bool,
}

/// System tags, computed from the row every time (never stored).
pub fn tags(has_email: bool, has_password: bool, has_pin: bool) -> Vec<&'static str> {
    let mut t = Vec::new();
    if has_email && !has_password && !has_pin {
        t.push("New");
    }
    if !has_email {
        t.push("Setup Required");
    }
    if !has_password {
        t.push("Password Required");
    }
    t
}

/// 128 random bits, hex encoded, from rand's thread-local CSPRNG (ChaCha,
/// seeded and periodically reseeded from the OS): a getrandom system call per
/// secret showed up in import profiles, three secrets per new user.
pub fn new_secret() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex_string(&b)
}

/// Lower-case hex of `bytes`. `hex::encode` goes through an iterator of
/// `char`s collected into a `String`: with five hex values per new user
/// (secret, two digest hashes, link salt, Message-ID) it was 3% of a 100k
/// import's samples; `encode_to_slice` writes from a table.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // Cannot fail: the buffer is exactly twice the input.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A unique value that sorts by creation time: microseconds since 1970 (48
/// bits) and a per-process counter (24 bits), then 128 random bits, in hex.
/// Rows keyed by it (welcome link salts, Message-IDs) land at the end of
/// their unique index instead of on a random page: with random keys, queueing
/// 100k welcomes dirtied most of both indexes in every chunk and took twice
/// as long as inserting the users themselves.
pub fn sortable_secret() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 12 hex digits of the time, 6 of the counter, 32 random.
    let mut b = [0u8; 25];
    let (time, rest) = b.split_at_mut(6);
    let (count, random) = rest.split_at_mut(3);
    time.copy_from_slice(&micros.to_be_bytes()[2..]);
    count.copy_from_slice(&n.to_be_bytes()[5..]);
    rand::thread_rng().fill_bytes(random);
    hex_string(&b)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) use crate::model::join_emails;

pub(super) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// One user as `load_users` reads it: a JSON array in column order. Texts
/// borrow from the page unless JSON escaped them.
#[derive(serde::Deserialize)]
struct UserRow<'a>(
    i64,                                   // id
    #[serde(borrow)] Cow<'a, str>,         // extension
    #[serde(borrow)] Option<Cow<'a, str>>, // source
    #[serde(borrow)] Option<Cow<'a, str>>, // source_id
    #[serde(borrow)] Cow<'a, str>,         // status
    Option<i64>,                           // disabled_at
    #[serde(borrow)] Cow<'a, str>,         // first_name
    #[serde(borrow)] Option<Cow<'a, str>>, // last_name
    #[serde(borrow)] Cow<'a, str>,         // emails, one per line
    #[serde(borrow)] Option<Cow<'a, str>>, // department
    #[serde(borrow)] Option<Cow<'a, str>>, // site
    #[serde(borrow)] Cow<'a, str>,         // scope
    #[serde(borrow)] Cow<'a, str>,         // kind
    #[serde(borrow)] Option<Cow<'a, str>>, // title
    #[serde(borrow)] Option<Cow<'a, str>>, // caller_id
    i64,                                   // voicemail
);

/// A user's device as `load_users` reads it: user id, type, force login.
#[derive(serde::Deserialize)]
struct DeviceRow<'a>(i64, #[serde(borrow)] Cow<'a, str>, i64);

/// The columns of [`UserRow`], as the arguments of a JSON array constructor.
const USER_ARRAY: &str = "u.id, u.extension, u.source, u.source_id, u.status, u.disabled_at, \
    u.first_name, u.last_name, u.emails, u.department, u.site, u.scope, u.kind, u.title, \
    u.caller_id, u.voicemail";

/// Users per page of `load_users`.
const LOAD_PAGE: i64 = 2000;

/// Users per INSERT: 21 values each stays under SQLite's limit of 32,766
/// bound values a statement (PostgreSQL's is 65,535). A chunk of up to 5,000
/// users (`limits.chunk_size`) is several statements in one transaction.
const USERS_PER_STATEMENT: usize = 1000;

fn stored_user(
    r: UserRow<'_>,
    device: Option<(DeviceType, bool)>,
) -> Result<StoredUser, StoreError> {
    let UserRow(
        id,
        extension,
        source,
        source_id,
        status,
        disabled_at,
        first_name,
        last_name,
        emails,
        department,
        site,
        scope,
        kind,
        title,
        caller_id,
        voicemail,
    ) = r;
    let emails = normal_emails(&emails).map_err(|e| corrupt("users.emails", e))?;
    let caller_id = caller_id
        .map(|c| PhoneNumber::parse(&c))
        .transpose()
        .map_err(|e| corrupt("users.caller_id", e))?;
    let texts = StoredTexts {
        extension: &extension,
        source: source.as_deref(),
        source_id: source_id.as_deref(),
        first_name: &first_name,
        last_name: last_name.as_deref(),
        emails: &emails,
        department: department.as_deref(),
        site: site.as_deref(),
        title: title.as_deref(),
        caller_id: caller_id.as_ref().map(PhoneNumber::as_str),
    };
    let attrs = StoredAttrs {
        status: Status::parse(&status).map_err(|e| corrupt("users.status", e))?,
        disabled_at,
        scope: Scope::parse(&scope).map_err(|e| corrupt("users.scope", e))?,
        kind: UserKind::parse(&kind).map_err(|e| corrupt("users.kind", e))?,
        voicemail: voicemail != 0,
        device: device.map(|d| d.0),
        force_login: device.is_some_and(|d| d.1),
    };
    Ok(StoredUser::from_texts(id, &texts, attrs))
}

/// Appends a page of `load_users` (users and their devices, both in user
/// order) to `users`.
fn parse_page(page: &str, devices: &str, users: &mut Vec<StoredUser>) -> Result<(), StoreError> {
    let page: Vec<UserRow> = serde_json::from_str(page).map_err(|e| corrupt("users", e))?;
    let devices: Vec<DeviceRow<'_>> =
        serde_json::from_str(devices).map_err(|e| corrupt("devices", e))?;
    let mut devices = devices.into_iter().peekable();
    for r in page {
        // Each user's first device, the rest of its devices skipped.
        let id = r.0;
        while devices.next_if(|d| d.0 < id).is_some() {}
        let device = match devices.next_if(|d| d.0 == id) {
            Some(DeviceRow(_, t, force_login)) => {
                let t = DeviceType::parse(&t).map_err(|e| corrupt("devices.device_type", e))?;
                Some((t, force_login != 0))
            }
            None => None,
        };
        users.push(stored_user(r, device)?);
    }
    Ok(())
}

impl Store {
    /// Every user of the domain (all sources and hand-made ones), with the
    /// type of each user's first device.
    ///
    /// Users come back in pages of [`LOAD_PAGE`], each page one JSON array
    /// built by the database: sqlx hands SQLite rows from its worker thread
    /// one at a time, which made a 100,000-user load take seconds; a page
    /// per row costs one hand-over per 2,000 users.
    /// Each page carries the devices of its users, in user order: loading
    /// every device of the domain first held a map of them through the
    /// load, and its JSON and rows besides (some 130 MB at 1,000,000).
    /// Devices are found by their users' ids alone (index `devices_user`):
    /// with `domain_id` in the condition SQLite and PostgreSQL both read
    /// the domain's devices through `(domain_id, sip_username)` for every
    /// page (PostgreSQL: 23 ms a page at 300,000 users). Another domain's
    /// users in the page's id range are not on the page, so their devices
    /// are skipped by the merge.
    #[tracing::instrument(skip(self))]
    pub async fn load_users(&self, domain_id: i64) -> Result<Vec<StoredUser>, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "WITH u AS (SELECT * FROM users WHERE +domain_id = $1 AND id > $2 AND id <= $4 \
                 ORDER BY id LIMIT $3), \
                 m AS (SELECT count(*) AS n, max(id) AS last FROM u) \
                 SELECT (SELECT json_group_array(json_array({USER_ARRAY})) FROM u), m.n, m.last, \
                 (SELECT json_group_array(json_array(user_id, device_type, force_login)) FROM \
                  (SELECT user_id, device_type, force_login FROM devices \
                   WHERE user_id > $2 AND user_id <= m.last ORDER BY user_id, id)) \
                 FROM m"
            ),
            Backend::Postgres => format!(
                "WITH u AS (SELECT * FROM users WHERE domain_id = $1 AND id > $2 AND id <= $4 \
                 ORDER BY id LIMIT $3), \
                 m AS (SELECT count(*) AS n, max(id) AS last FROM u) \
                 SELECT (SELECT coalesce(json_agg(json_build_array({USER_ARRAY}) ORDER BY u.id), '[]')::text FROM u), \
                 m.n, m.last, \
                 (SELECT coalesce(json_agg(json_build_array(user_id, device_type, force_login) \
                   ORDER BY user_id, id), '[]')::text FROM devices \
                  WHERE user_id > $2 AND user_id <= m.last) \
                 FROM m"
            ),
        };
        let (total, first, last): (i64, Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT count(*), min(id), max(id) FROM users WHERE domain_id = $1")
                .bind(domain_id)
                .fetch_one(self.pool())
                .await?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(Vec::new());
        };
        // Sized up front: doubling would hold two arrays of 100k users at once.
        let users = Mutex::new(Vec::with_capacity(usize::try_from(total).unwrap_or(0)));
        // Two halves of the id range on two connections: one database
        // thread building pages could not keep the parse busy (SQLite's
        // worker was busy about 60% of a 100k load, the parse 40%, taking
        // turns). A small domain is one range.
        let mid = first + (last - first) / 2;
        let (low, high) = match total >= 4 * LOAD_PAGE {
            true => ((first - 1, mid), Some((mid, last))),
            false => ((first - 1, last), None),
        };
        let load_range = |(after, upto): (i64, i64)| {
            let (sql, users) = (&sql, &users);
            async move {
                let page_after = |after: i64| {
                    sqlx::query(sql)
                        .bind(domain_id)
                        .bind(after)
                        .bind(LOAD_PAGE)
                        .bind(upto)
                        .fetch_one(self.pool())
                };
                let mut row = page_after(after).await?;
                loop {
                    let count: i64 = row.try_get(1)?;
                    if count == 0 {
                        return Ok(());
                    }
                    let page: String = row.try_get(0)?;
                    let after: i64 = row.try_get(2)?;
                    let devices: String = row.try_get(3)?;
                    let parse = || {
                        // Uncontended: the two ranges parse on this task.
                        let mut users = users.lock().unwrap_or_else(|p| p.into_inner());
                        parse_page(&page, &devices, &mut users)
                    };
                    if count < LOAD_PAGE || after >= upto {
                        return parse();
                    }
                    // The database builds the next page while this one is
                    // parsed: one after the other, the two threads took turns.
                    let (next, parsed) = super::sql::overlap(page_after(after), parse).await;
                    parsed?;
                    row = next?;
                }
            }
        };
        let high = async {
            match high {
                Some(r) => load_range(r).await,
                None => Ok::<(), StoreError>(()),
            }
        };
        tokio::try_join!(load_range(low), high)?;
        let mut users = users.into_inner().unwrap_or_else(|p| p.into_inner());
        users.sort_unstable_by_key(|u| u.id);
        Ok(users)
    }

    /// The INSERTs for new users, [`USERS_PER_STATEMENT`] a statement, with
    /// the ids from [`super::allocate_ids`] (one per user, in order).
    pub fn insert_users(
        backend: &str,
        domain_id: i64,
        users: &[NewUser<'_>],
        ids: &[i64],
    ) -> Vec<Sql> {
        let t = now();
        users
            .chunks(USERS_PER_STATEMENT)
            .zip(ids.chunks(USERS_PER_STATEMENT))
            .map(|(part, ids)| {
                let mut q = Sql::new(
                    backend,
                    "INSERT INTO users (id, domain_id, extension, kind, first_name, last_name, emails, \
                     department, site, scope, title, caller_id, emergency_caller_id, voicemail, timezone, \
                     language, dial_permission, status, source, source_id, created_at, updated_at) ",
                );
                q.values(part.iter().zip(ids), |b, (u, id)| {
                    let f = u.fields;
                    b.bind(*id)
                        .bind(domain_id)
                        .bind(u.extension)
                        .bind(f.kind.as_str())
                        .bind(f.first_name.as_str())
                        .bind(f.last_name.clone())
                        .bind(join_emails(&f.emails))
                        .bind(f.department.clone())
                        .bind(f.site.clone())
                        .bind(f.scope.as_str())
                        .bind(f.title.clone())
                        .bind(u.caller_id.clone())
                        .bind(u.emergency_caller_id.clone())
                        .bind(flag(f.voicemail))
                        .bind(u.timezone.clone())
                        .bind(u.language.clone())
                        .bind(u.dial_permission.clone())
                        .bind("active")
                        .bind(u.source)
                        .bind(u.source_id)
                        .bind(t)
                        .bind(t);
                });
                q
            })
            .collect()
    }

    /// The INSERTs for new devices, 1,000 a statement, each with a fresh
    /// 128-bit secret and its digest hashes.
    pub fn insert_devices(
        backend: &str,
        domain_id: i64,
        realm: &str,
        devices: &[NewDevice],
    ) -> Vec<Sql> {
        let t = now();
        devices
            .chunks(1000)
            .map(|chunk| {
                let mut q = Sql::new(
                    backend,
                    "INSERT INTO devices (user_id, domain_id, device_type, sip_username, secret, ha1, \
                     ha1b, force_login, enabled, created_at) ",
                );
                q.values(chunk, |b, d| {
                    let secret = new_secret();
                    let (ha1, ha1b) = super::digest_hashes(&d.sip_username, realm, &secret);
                    b.bind(d.user_id)
                        .bind(domain_id)
                        .bind(d.device_type.as_str())
                        .bind(d.sip_username.as_str())
                        .bind(secret)
                        .bind(ha1)
                        .bind(ha1b)
                        .bind(flag(d.force_login))
                        .bind(1_i64)
                        .bind(t);
                });
                q
            })
            .collect()
    }

    /// Writes the source-controlled fields of one user; `activate` also
    /// re-enables the user and their devices.
    pub async fn update_user(
        tx: &mut Transaction<'static, Any>,
        id: i64,
        f: &UserFields,
        activate: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET first_name = $1, last_name = $2, emails = $3, department = $4, site = $5,
               scope = $6, kind = $7, title = $8, caller_id = $9, voicemail = $10, updated_at = $11
             WHERE id = $12",
        )
        .bind(f.first_name.clone())
        .bind(f.last_name.clone())
        .bind(join_emails(&f.emails))
        .bind(f.department.clone())
        .bind(f.site.clone())
        .bind(f.scope.as_str())
        .bind(f.kind.as_str())
        .bind(f.title.clone())
        .bind(f.caller_id.as_ref().map(|c| c.as_str().to_string()))
        .bind(flag(f.voicemail))
        .bind(now())
        .bind(id)
        .execute(&mut **tx)
        .await?;
        if let Some(t) = f.device {
            sqlx::query(
                "UPDATE devices SET device_type = $1, force_login = $2 \
                 WHERE user_id = $3 AND (device_type <> $1 OR force_login <> $2)",
            )
            .bind(t.as_str())
            .bind(flag(f.force_login))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        if activate {
            Self::set_status(tx, &[id], Status::Active).await?;
        }
        Ok(())
    }

    /// Disables (portal login and devices off, voicemail kept) or re-enables users.
    pub async fn set_status(
        tx: &mut Transaction<'static, Any>,
        ids: &[i64],
        status: Status,
    ) -> Result<(), StoreError> {
        let t = now();
        let (disabled_at, enabled) = match status {
            Status::Active => (None, 1_i64),
            Status::Disabled => (Some(t), 0_i64),
        };
        for chunk in ids.chunks(500) {
            let mut q = Sql::new(tx.backend_name(), "UPDATE users SET status = ");
            q.bind(status.as_str())
                .push(", disabled_at = ")
                .bind(disabled_at)
                .push(", updated_at = ")
                .bind(t)
                .push(" WHERE id IN ")
                .list(chunk.iter().copied());
            q.build().execute(&mut **tx).await?;
            let mut q = Sql::new(tx.backend_name(), "UPDATE devices SET enabled = ");
            q.bind(enabled)
                .push(" WHERE user_id IN ")
                .list(chunk.iter().copied());
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Deletes users (and, by cascade, their devices).
    pub async fn delete_users(
        tx: &mut Transaction<'static, Any>,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let mut q = Sql::new(tx.backend_name(), "DELETE FROM users WHERE id IN ");
            q.list(chunk.iter().copied());
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Users for listing, optionally of one domain, ordered by domain and extension.
    pub async fn list_users(&self, domain: Option<&str>) -> Result<Vec<UserView>, StoreError> {
        let mut q = Sql::new(match self.backend() { super::Backend::Sqlite => "SQLite", super::Backend::Postgres => "PostgreSQL" },
            "SELECT u.id, d.name, u.extension, u.first_name, u.last_name, u.emails, u.department, u.site, \
             u.scope, u.kind, u.status, u.source, u.source_id, \
             CASE WHEN u.portal_password_hash IS NULL THEN 0 ELSE 1 END, \
             CASE WHEN u.voicemail_pin_hash IS NULL THEN 0 ELSE 1 END \
             FROM users u JOIN domains d ON d.id = u.domain_id",
        );
        if let Some(d) = domain {
            q.push(" WHERE d.name = ").bind(d.to_ascii_lowercase());
        }
        q.push(" ORDER BY d.name, u.extension");
        let rows = q.build().fetch_all(self.pool()).await?;
        let mut devices: HashMap<i64, Vec<DeviceView>> = HashMap::new();
        for r in sqlx::query(
            "SELECT user_id, device_type, sip_username, enabled, force_login FROM devices ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?
        {
            devices.entry(r.try_get(0)?).or_default().push(DeviceView {
                device_type: r.try_get(1)?,
                sip_username: r.try_get(2)?,
                enabled: r.try_get::<i64, _>(3)? != 0,
                force_login: r.try_get::<i64, _>(4)? != 0,
            });
        }
        rows.iter()
            .map(|r| {
                let emails: String = r.try_get(5)?;
                let emails: Vec<String> = emails
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                let has_pw = r.try_get::<i64, _>(13)? != 0;
                let has_pin = r.try_get::<i64, _>(14)? != 0;
                Ok(UserView {
                    tags: tags(!emails.is_empty(), has_pw, has_pin),
                    domain: r.try_get(1)?,
                    extension: r.try_get(2)?,
                    first_name: r.try_get(3)?,
                    last_name: r.try_get(4)?,
                    emails,
                    department: r.try_get(6)?,
                    site: r.try_get(7)?,
                    scope: r.try_get(8)?,
                    kind: r.try_get(9)?,
                    status: r.try_get(10)?,
                    source: r.try_get(11)?,
                    source_id: r.try_get(12)?,
                    devices: devices.remove(&r.try_get::<i64, _>(0)?).unwrap_or_default(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
