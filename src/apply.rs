//! Apply: executes a `Plan` against the store at the rate the PBX can take.
//!
//! Writes go in chunks: one transaction per chunk of users with set-based
//! statements (a user and its device always commit together), its size
//! following the `governor` limiter (never above the burst). Each chunk bumps
//! the domain revision from the value the plan was made against, so a plan
//! applies exactly or not at all once someone else changed the domain.
//! Transient errors are retried with backoff; a chunk that fails for good is
//! replayed one user at a time to isolate the row that broke it.
//!
//! Killing the process mid-apply loses at most the chunk in flight (rolled
//! back); re-running the import plans what is left.
//!
//! A new person with an email, or a person who gets their first email, gets
//! a welcome link and outbox row in the same transaction (see `mail`).

use crate::config::{DomainConfig, Limits};
use crate::model::{Failed, Status, StopFlag, UserFields, UserKind};
use crate::plan::{Action, ChangedField, Plan};
use crate::store::{
    self, ActionRecord, Bound, ChunkWrite, NameTable, NewDevice, NewUser, Store, StoreError,
    UserUpdate, Written,
};
use governor::{Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressStyle};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store changed since the plan was made (domain revision {found}, plan made at {expected}): make a new plan")]
    StoreChanged { expected: i64, found: i64 },
    #[error("the plan is for domain {plan}, which is not configured")]
    UnknownDomain { plan: String },
    #[error("the store {store} has not answered for {}s; stopped here (each committed chunk is kept; the next run applies the rest)", waited.as_secs())]
    StoreUnreachable {
        store: String,
        waited: Duration,
        #[source]
        source: StoreError,
    },
}

/// How long apply keeps retrying a store that does not answer before it
/// gives up on the run (each try also waits up to `store.timeout_seconds`).
pub const STORE_OUTAGE_WAIT: Duration = Duration::from_secs(40);

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub applied: u64,
    pub failed: Vec<Failed>,
    /// Time spent waiting on the rate limiter.
    pub throttled: Duration,
    pub chunks: u64,
    /// Chunks whose rows were built while the chunk before was written.
    pub built_ahead: u64,
    pub retries: u64,
    /// Stopped between chunks by a shutdown; the rest waits for the next run.
    pub interrupted: bool,
}

pub struct ApplyOptions {
    pub run_id: Option<i64>,
    pub progress: bool,
    pub stop: Option<StopFlag>,
}

const MAX_ATTEMPTS: u32 = 6;

#[tracing::instrument(skip_all, fields(domain = %plan.domain, source = %plan.source))]
pub async fn apply_plan(
    store: &Store,
    domain: &DomainConfig,
    plan: &Plan,
    limits: &Limits,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    if domain.name != plan.domain {
        return Err(ApplyError::UnknownDomain {
            plan: plan.domain.clone(),
        });
    }
    let dom = store.ensure_domain(domain).await?;
    if dom.revision != plan.base_revision {
        return Err(ApplyError::StoreChanged {
            expected: plan.base_revision,
            found: dom.revision,
        });
    }
    let total = plan.actions.writes() as u64;
    let mut out = ApplyOutcome::default();
    if total == 0 {
        return Ok(out);
    }
    create_names(store, dom.id, plan).await?;

    let limiter = limits
        .writes_per_second
        .map(|wps| RateLimiter::direct(Quota::per_second(wps).allow_burst(limits.burst)));
    let chunk_size = match &limiter {
        Some(_) => limits.burst.get().min(limits.chunk_size),
        None => limits.chunk_size,
    } as usize;
    let chunk_size = chunk_size.max(1);
    let bar = if opts.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} applying [{bar:30}] {pos}/{len} users  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let cx = Ctx {
        store,
        rows: Arc::new(RowCx {
            d: domain.clone(),
            source: plan.source.clone(),
            domain_id: dom.id,
            run_id: opts.run_id,
            backend: store.engine(),
        }),
    };
    // The plan is packed: its writes are unpacked a chunk at a time, the
    // chunk after next while this one is in the database.
    let ahead = Mutex::new(Ahead {
        writes: Box::new(plan.actions.iter().filter(Action::writes)),
        chunk_size,
        unpacked: None,
    });
    let unpack_ahead = || {
        if let Ok(mut a) = ahead.lock() {
            a.fill();
        }
    };
    let take = || Arc::new(ahead.lock().map(|mut a| a.take()).unwrap_or_default());
    let (mut chunk, mut next) = (take(), take());
    let mut prepared: Option<Prepared> = None;
    let mut revision = dom.revision;
    while !chunk.is_empty() {
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            tracing::info!(
                applied = out.applied,
                left = total - out.applied,
                "stopping between chunks for shutdown"
            );
            out.interrupted = true;
            break;
        }
        if let Some(l) = &limiter {
            let n = NonZeroU32::new(chunk.len() as u32).unwrap_or(NonZeroU32::MIN);
            let t = Instant::now();
            // Cannot fail: chunks never exceed the burst.
            let _ = l.until_n_ready(n).await;
            out.throttled += t.elapsed();
        }
        let this: Vec<&Action> = chunk.iter().collect();
        let after = (!next.is_empty()).then_some(&next);
        let mut built = prepared.take();
        match with_retry(&mut out, || {
            write_chunk(&cx, revision, &this, built.take(), after, &unpack_ahead)
        })
        .await
        {
            Ok((p, used_ahead)) => {
                out.built_ahead += u64::from(used_ahead);
                prepared = p;
                revision += 1;
                out.applied += this.len() as u64;
            }
            Err(ChunkError::Changed(found)) => {
                return Err(ApplyError::StoreChanged {
                    expected: revision,
                    found,
                });
            }
            Err(ChunkError::Unreachable(source, waited)) => {
                return Err(unreachable(store, source, waited));
            }
            Err(ChunkError::Store(e)) if this.len() > 1 => {
                tracing::warn!(error = %e, users = this.len(), "chunk failed; applying its users one by one");
                for one in &this {
                    match with_retry(&mut out, || {
                        write_chunk(&cx, revision, std::slice::from_ref(one), None, None, &|| {})
                    })
                    .await
                    {
                        Ok(_) => {
                            revision += 1;
                            out.applied += 1;
                        }
                        Err(ChunkError::Changed(found)) => {
                            return Err(ApplyError::StoreChanged {
                                expected: revision,
                                found,
                            });
                        }
                        Err(ChunkError::Unreachable(source, waited)) => {
                            return Err(unreachable(store, source, waited));
                        }
                        Err(ChunkError::Store(e)) => out.failed.push(failed(one, &e)),
                    }
                }
            }
            Err(ChunkError::Store(e)) => {
                if let Some(one) = this.first() {
                    out.failed.push(failed(one, &e));
                }
            }
        }
        out.chunks += 1;
        bar.inc(this.len() as u64);
        drop(this);
        chunk = std::mem::replace(&mut next, take());
    }
    bar.finish_and_clear();
    Ok(out)
}

/// A plan's writes as apply unpacks them, a chunk at a time.
struct Ahead<'p> {
    writes: Box<dyn Iterator<Item = Action> + Send + 'p>,
    chunk_size: usize,
    /// The chunk after next, once unpacked.
    unpacked: Option<Vec<Action>>,
}

impl Ahead<'_> {
    fn fill(&mut self) {
        if self.unpacked.is_none() {
            self.unpacked = Some(self.writes.by_ref().take(self.chunk_size).collect());
        }
    }

    /// The next chunk (empty at the end).
    fn take(&mut self) -> Vec<Action> {
        self.fill();
        self.unpacked.take().unwrap_or_default()
    }
}

fn unreachable(store: &Store, source: StoreError, waited: Duration) -> ApplyError {
    ApplyError::StoreUnreachable {
        store: store.shown().to_string(),
        waited,
        source,
    }
}

fn failed(a: &Action, e: &StoreError) -> Failed {
    let at = match a {
        Action::Create { at, .. } | Action::Update { at, .. } | Action::Reenable { at, .. } => {
            Some(at.clone())
        }
        Action::Disable { at, .. } => at.clone(),
        _ => None,
    };
    Failed {
        source_id: a.source_id().to_string(),
        at,
        message: format!("not applied: {e}"),
    }
}

enum ChunkError {
    Changed(i64),
    Store(StoreError),
    /// The store stayed unreachable for `STORE_OUTAGE_WAIT`.
    Unreachable(StoreError, Duration),
}

impl From<StoreError> for ChunkError {
    fn from(e: StoreError) -> Self {
        ChunkError::Store(e)
    }
}

impl From<sqlx::Error> for ChunkError {
    fn from(e: sqlx::Error) -> Self {
        ChunkError::Store(StoreError::Query(e))
    }
}

async fn with_retry<T, F, Fut>(out: &mut ApplyOutcome, mut f: F) -> Result<T, ChunkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ChunkError>>,
{
    let mut attempt = 0;
    let mut outage: Option<Instant> = None;
    loop {
        match f().await {
            // A store that does not answer is waited for (it may be back in
            // seconds), up to a bound; its chunk is never split for it.
            Err(ChunkError::Store(e)) if e.is_connection() => {
                let since = *outage.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if waited >= STORE_OUTAGE_WAIT {
                    return Err(ChunkError::Unreachable(e, waited));
                }
                out.retries += 1;
                let wait = Duration::from_millis(250 << attempt.min(4)).min(Duration::from_secs(4));
                attempt += 1;
                tracing::warn!(error = %e, ?waited, ?wait, "the store does not answer; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(ChunkError::Store(e)) if e.is_transient() && attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                out.retries += 1;
                let wait = Duration::from_millis(50 << attempt);
                tracing::warn!(error = %e, attempt, ?wait, "transient store error; retrying");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Departments and sites named by the plan exist before any user refers to them.
async fn create_names(store: &Store, domain_id: i64, plan: &Plan) -> Result<(), StoreError> {
    let (depts, sites) = plan.actions.names();
    let mut tx = store.begin_write().await?;
    Store::ensure_names(&mut tx, domain_id, NameTable::Departments, &depts).await?;
    Store::ensure_names(&mut tx, domain_id, NameTable::Sites, &sites).await?;
    tx.commit().await.map_err(StoreError::Query)
}

/// What every chunk of one apply shares.
struct Ctx<'a> {
    store: &'a Store,
    rows: Arc<RowCx>,
}

/// What building a chunk's rows needs, owned: the next chunk's new rows are
/// built on a blocking thread while this chunk is in the database.
struct RowCx {
    d: DomainConfig,
    source: String,
    domain_id: i64,
    run_id: Option<i64>,
    /// The store's engine, as `Sql` statements are built for it.
    backend: &'static str,
}

/// A person with an email gets a welcome, committed with the user.
fn wants_welcome(f: &UserFields) -> bool {
    !f.emails.is_empty() && f.kind == UserKind::Person
}

/// New users and welcome links in a chunk.
fn counts<'a>(chunk: impl Iterator<Item = &'a Action>) -> (usize, usize) {
    chunk.fold((0, 0), |(u, l), a| match a {
        Action::Create { fields, .. } => (u + 1, l + usize::from(wants_welcome(fields))),
        _ => (u, l),
    })
}

/// The rows a chunk's new users need, built for given ids: the users'
/// INSERTs, then their welcome links, outbox rows and devices, and the
/// chunk's "create" records. Apply builds the next chunk's while this one
/// is in the database, with the ids it expects the next chunk to get, and
/// uses it only if the transaction allocates exactly those.
struct Prepared {
    user_ids: Vec<i64>,
    link_ids: Vec<i64>,
    users: Vec<Bound>,
    rows: Vec<Bound>,
    /// The "create" records (none without a run).
    records: Vec<Bound>,
}

/// The chunk's new users, with the site's and domain's defaults resolved.
fn new_users<'a>(cx: &'a RowCx, chunk: &[&'a Action]) -> Vec<NewUser<'a>> {
    let d = &cx.d;
    let mut creates = Vec::new();
    for a in chunk {
        if let Action::Create {
            source_id,
            extension,
            fields,
            ..
        } = a
        {
            let site = fields.site.as_deref().and_then(|s| d.site(s));
            let pick = |site_v: Option<&String>, dom_v: &Option<String>| {
                site_v.or(dom_v.as_ref()).cloned()
            };
            creates.push(NewUser {
                extension: extension.as_str(),
                fields,
                source: &cx.source,
                source_id,
                caller_id: fields
                    .caller_id
                    .as_ref()
                    .or(site.and_then(|s| s.caller_id.as_ref()))
                    .map(|c| c.as_str().to_string()),
                emergency_caller_id: d
                    .emergency_caller_id
                    .as_ref()
                    .map(|c| c.as_str().to_string()),
                timezone: pick(site.and_then(|s| s.timezone.as_ref()), &d.timezone),
                language: pick(site.and_then(|s| s.language.as_ref()), &d.language),
                dial_permission: pick(
                    site.and_then(|s| s.dial_permission.as_ref()),
                    &d.dial_permission,
                ),
            });
        }
    }
    creates
}

/// The chunk's actions on existing users, as rows to write (both engines),
/// with the records of those actions; new users are filled in by the caller.
fn existing<'a>(cx: &'a RowCx, revision: i64, chunk: &[&'a Action]) -> ChunkWrite<'a> {
    let mut w = ChunkWrite {
        domain_id: cx.domain_id,
        revision,
        realm: &cx.d.name,
        run_id: cx.run_id,
        ..ChunkWrite::default()
    };
    for a in chunk {
        match a {
            Action::Update {
                user_id,
                fields,
                add_device,
                source_id,
                changes,
                extension,
                ..
            }
            | Action::Reenable {
                user_id,
                fields,
                add_device,
                source_id,
                changes,
                extension,
                ..
            } => {
                w.updates.push(UserUpdate {
                    id: *user_id,
                    fields,
                    activate: matches!(a, Action::Reenable { .. }),
                });
                let first_email = changes
                    .iter()
                    .any(|c| c.field == ChangedField::Emails && c.from.is_none() && c.to.is_some());
                if first_email && fields.kind == UserKind::Person {
                    w.first_emails.push(*user_id);
                }
                if let (true, Some(t)) = (*add_device, fields.device) {
                    w.devices.push(NewDevice {
                        user_id: *user_id,
                        device_type: t,
                        sip_username: extension.to_string(),
                        force_login: fields.force_login,
                    });
                }
                w.records.push(ActionRecord {
                    user_id: Some(*user_id),
                    source_id,
                    action: a.name(),
                    detail: serde_json::to_string(changes).ok(),
                });
            }
            Action::Disable {
                user_id,
                source_id,
                reason,
                ..
            } => {
                w.disable.push(*user_id);
                w.records.push(ActionRecord {
                    user_id: Some(*user_id),
                    source_id,
                    action: "disable",
                    detail: serde_json::to_string(reason).ok(),
                });
            }
            Action::Delete {
                user_id, source_id, ..
            } => {
                w.delete.push(*user_id);
                w.records.push(ActionRecord {
                    user_id: None,
                    source_id,
                    action: "delete",
                    detail: None,
                });
            }
            Action::Create { .. } | Action::Unchanged { .. } | Action::Conflict { .. } => {}
        }
    }
    w
}

fn prepare(cx: &RowCx, chunk: &[&Action], user_ids: Vec<i64>, link_ids: Vec<i64>) -> Prepared {
    let d = &cx.d;
    let backend = cx.backend;
    let creates = new_users(cx, chunk);
    let users = Store::insert_users(backend, cx.domain_id, &creates, &user_ids);
    let welcome: Vec<i64> = creates
        .iter()
        .zip(&user_ids)
        .filter(|(u, _)| wants_welcome(u.fields))
        .map(|(_, id)| *id)
        .collect();
    let mut devices = Vec::new();
    let mut records = Vec::with_capacity(creates.len());
    for (u, id) in creates.iter().zip(&user_ids) {
        records.push(ActionRecord {
            user_id: Some(*id),
            source_id: u.source_id,
            action: "create",
            detail: Some(u.extension.to_string()),
        });
        if let Some(t) = u.fields.device {
            devices.push(NewDevice {
                user_id: *id,
                device_type: t,
                sip_username: u.extension.to_string(),
                force_login: u.fields.force_login,
            });
        }
    }
    let mut rows = Store::insert_welcomes(backend, &welcome, &link_ids, &d.name);
    rows.extend(Store::insert_devices(
        backend,
        cx.domain_id,
        &d.name,
        &devices,
    ));
    let records = cx
        .run_id
        .map(|run| Store::insert_actions(backend, run, &records))
        .unwrap_or_default();
    let bound = |v: Vec<store::Sql>| v.into_iter().map(store::Sql::into_bound).collect();
    Prepared {
        user_ids,
        link_ids,
        users: bound(users),
        rows: bound(rows),
        records: bound(records),
    }
}

/// Writes one chunk in one transaction. `prepared` is this chunk's rows if
/// they were built ahead (executing them uses them up: a retry builds them
/// again); `next` is the chunk after, whose new rows are built (and
/// returned) on a blocking thread while this chunk is in the database.
/// PostgreSQL stores take the typed COPY path (`store::pg`), which builds
/// nothing ahead.
async fn write_chunk(
    cx: &Ctx<'_>,
    revision: i64,
    chunk: &[&Action],
    prepared: Option<Prepared>,
    next: Option<&Arc<Vec<Action>>>,
    unpack_ahead: &(dyn Fn() + Sync),
) -> Result<(Option<Prepared>, bool), ChunkError> {
    let (store, rx) = (cx.store, &*cx.rows);
    let (d, domain_id) = (&rx.d, rx.domain_id);
    let mut w = existing(rx, revision, chunk);
    if let Some(pg) = store.pg_writer() {
        w.creates = new_users(rx, chunk)
            .into_iter()
            .map(|u| {
                let welcome = wants_welcome(u.fields);
                (u, welcome)
            })
            .collect();
        unpack_ahead();
        return match pg.write_chunk(&w).await? {
            Written::Done => Ok((None, false)),
            Written::Changed(found) => Err(ChunkError::Changed(found)),
        };
    }
    let backend = rx.backend;
    let mut tx = store.begin_write().await?;
    if !Store::bump_revision(&mut tx, domain_id, revision).await? {
        let found = store.find_domain(&d.name).await?.map_or(-1, |r| r.revision);
        return Err(ChunkError::Changed(found));
    }
    for u in &w.updates {
        Store::update_user(&mut tx, u.id, u.fields, u.activate).await?;
    }
    let ChunkWrite {
        devices,
        records,
        first_emails,
        disable,
        delete,
        ..
    } = w;
    let (new_users, new_links) = counts(chunk.iter().copied());
    let (user_ids, next_user) = store::allocate_ids(&mut tx, "users", new_users).await?;
    let (link_ids, next_link) = store::allocate_ids(&mut tx, "welcome_links", new_links).await?;
    // The next chunk's rows, with the ids it should get, built on a
    // blocking thread through this whole transaction: on SQLite the engine
    // runs on sqlx's worker thread, so the two use both cores.
    let ahead = match (next, next_user, next_link) {
        (Some(c), Some(u), Some(l)) => {
            let (c, rx) = (Arc::clone(c), Arc::clone(&cx.rows));
            Some(tokio::task::spawn_blocking(move || {
                let (n_users, n_links) = counts(c.iter());
                let c: Vec<&Action> = c.iter().collect();
                prepare(
                    &rx,
                    &c,
                    (u..).take(n_users).collect(),
                    (l..).take(n_links).collect(),
                )
            }))
        }
        _ => None,
    };
    let (p, used_ahead) = match prepared {
        Some(p) if p.user_ids == user_ids && p.link_ids == link_ids => (p, true),
        _ => (prepare(rx, chunk, user_ids, link_ids), false),
    };
    // While the database inserts the users: this chunk's other statements,
    // and the chunk after next unpacked.
    let (more, actions) = store::execute_bound_while(&mut tx, p.users, || {
        let more = Store::insert_devices(backend, domain_id, &d.name, &devices);
        let actions = rx
            .run_id
            .map(|run| Store::insert_actions(backend, run, &records));
        unpack_ahead();
        (more, actions)
    })
    .await?;
    store::execute_bound(&mut tx, p.rows).await?;
    store::execute_all(&mut tx, more).await?;
    Store::queue_first_welcomes(&mut tx, &first_emails, &d.name).await?;
    Store::set_status(&mut tx, &disable, Status::Disabled).await?;
    Store::delete_users(&mut tx, &delete).await?;
    store::execute_bound(&mut tx, p.records).await?;
    if let Some(actions) = actions {
        store::execute_all(&mut tx, actions).await?;
    }
    tx.commit().await?;
    // A build that failed to finish is only a build to redo.
    let next = match ahead {
        Some(job) => job.await.ok(),
        None => None,
    };
    Ok((next, used_ahead))
}
