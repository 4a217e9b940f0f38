//! One run of one source, end to end. [`run_sync`] is the whole flow:
//!
//! lock → read and map (while the store's users load) → plan → (dry run:
//! stop) → safety → apply → queue mail → report → the source's bookkeeping.
//! CSV and LDAP reads map each record as it is read (a `mapping::Mapper`
//! behind a `source::RecordSink`), so a run never holds all its records.
//!
//! A source kind is one file here ([`csv`], [`ldap`]) implementing
//! [`SourceRun`]: how to read it, and what to do once the run is reported
//! (write the per-row result CSV and move the file; remember where a
//! directory read left off). Adding a kind adds a file, not branches here.
//! [`apply_saved_plan`] applies a reviewed plan through the same safety,
//! apply and report steps.

pub mod csv;
pub mod held;
pub mod ldap;
pub mod scim;

use crate::apply::{apply_plan, ApplyError, ApplyOptions};
use crate::config::{Config, DomainConfig, SourceConfig, SyncMode};
use crate::mapping::{Mapped, MappedSink, Mapper, UserSpec};
use crate::model::{RowError, StaffRecord, StopFlag, StoredUser};
use crate::plan::{Plan, PlanContext, Planner, PLAN_FORMAT};
use crate::report::{applied_writes, Outcome, RunReport};
use crate::store::{DomainLock, Store, StoreError};
use crate::time::now;
use std::future::Future;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("source `{0}` is not configured")]
    UnknownSource(String),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the plan to {}", path.display())]
    PlanOut {
        path: PathBuf,
        #[source]
        source: PlanFileError,
    },
    #[error("{} is not a plan this version can apply", path.display())]
    BadPlan {
        path: PathBuf,
        #[source]
        source: PlanFileError,
    },
    #[error("the CSV reader stopped")]
    Reader(#[source] tokio::task::JoinError),
}

/// Why a plan file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("plan format {found} (this version reads {PLAN_FORMAT})")]
    Format { found: u32 },
    #[error("the plan is for domain {plan}, but source `{source_name}` feeds {configured}")]
    Domain {
        plan: String,
        source_name: String,
        configured: String,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Apply even when a safety threshold refuses the plan.
    pub override_limits: bool,
    pub progress: bool,
    pub plan_out: Option<PathBuf>,
    /// The daemon's shutdown flag: apply stops between chunks.
    pub stop: Option<StopFlag>,
    /// How long to wait for another run of the domain (default
    /// [`LOCK_WAIT`]); a SCIM request must answer within a minute.
    pub lock_wait: Option<std::time::Duration>,
    /// A refused plan is not saved as a held run (SCIM holds its own
    /// changes; a reviewed plan is already saved).
    pub no_hold: bool,
}

/// What a source read produced.
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<StaffRecord>,
    /// Records the source mapped itself as it read them (CSV, LDAP), so they were
    /// never all held at once; they come before any mapped from `records`.
    pub specs: Vec<UserSpec>,
    pub errors: Vec<RowError>,
    /// False when part of the source could not be read: nobody is disabled.
    pub complete: bool,
    /// A changed-only directory read: planned as `delta` (see
    /// `PlanInput::changed_only`).
    pub changed_only: bool,
    pub files: Vec<String>,
    /// Notes for the report (e.g. how an LDAP source was read).
    pub notes: Vec<String>,
}

/// A read that failed as a whole: the run is recorded as failed and
/// changes nothing.
#[derive(Debug)]
pub struct ReadFailure {
    /// Where the source was read from (the "file" of the report's error).
    pub location: String,
    pub message: String,
    pub note: String,
}

/// One source kind: how a run reads it, and its bookkeeping afterwards.
pub trait SourceRun {
    /// Hands the specs to `sink` as they are mapped, so the run plans them
    /// while the read goes on, instead of returning them in
    /// [`Read::specs`]; false (the default): the kind does not stream. A
    /// streaming kind's reads are never changed-only.
    fn stream_specs(&mut self, _sink: MappedSink) -> bool {
        false
    }

    /// Reads the source; runs while the store's users load.
    fn read(
        &mut self,
        store: &Store,
        opts: &RunOptions,
    ) -> impl Future<Output = Result<Result<Read, ReadFailure>, SyncError>> + Send;

    /// After the run is reported (also after a dry run or a failed read;
    /// `plan` is `None` then).
    fn finish(
        self,
        store: &Store,
        plan: Option<&Plan>,
        report: &mut RunReport,
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// How long a run waits for another run of the same domain to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The pipeline for one read of one source.
#[tracing::instrument(skip_all, fields(source = %source.name))]
pub async fn run_sync<K: SourceRun + Send>(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    mut kind: K,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let domain = &source.domain;
    let t = std::time::Instant::now();
    // Lock: plan and apply under the domain's lock, so the plan's view of the
    // store is still true when it is applied. A dry run needs no lock.
    let lock = match opts.dry_run {
        true => None,
        false => Some(lock(store, &domain.name, opts.lock_wait).await?),
    };
    let result = async {
        // Read, map and plan, while the store's users load.
        let plan = match read_and_plan(&mut kind, cfg, store, source, opts).await? {
            Ok(plan) => plan,
            Err(failure) => return Ok((failed_read(store, source, failure, opts).await?, None)),
        };
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "phase read, map, load and plan"
        );
        if let Some(path) = &opts.plan_out {
            write_plan(path, &plan)?;
        }
        if opts.dry_run {
            return Ok((RunReport::new(&plan, None, true, false, &[]), Some(plan)));
        }
        // Safety, apply, queue mail, record the run.
        let report = execute(cfg, store, domain, &plan, opts).await?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase apply");
        Ok::<_, SyncError>((report, Some(plan)))
    }
    .await;
    if let Some(l) = lock {
        l.release().await;
    }
    // Report: the kind's own bookkeeping.
    let (mut report, plan) = result?;
    kind.finish(store, plan.as_ref(), &mut report).await?;
    Ok(report)
}

/// Takes the domain's lock; runs of the domain left `running` by a killed
/// process are marked `interrupted` then.
async fn lock(
    store: &Store,
    domain: &str,
    wait: Option<std::time::Duration>,
) -> Result<DomainLock, SyncError> {
    let lock = store.lock_domain(domain, wait.unwrap_or(LOCK_WAIT)).await?;
    match store.interrupt_stale_runs(domain).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            domain,
            runs = n,
            "earlier runs were killed; marked interrupted"
        ),
        Err(e) => {
            lock.release().await;
            return Err(e.into());
        }
    }
    Ok(lock)
}

type ReadAndMapped = (Read, Vec<UserSpec>);

/// Batches of mapped specs a streaming read may send ahead of planning
/// (about 20 MB of specs). While the store's users load, the read maps
/// ahead by this much, then waits. Measured on a no-op re-import (SQLite,
/// medians): 16 batches cost 1M rows 7.3 s and 686 MiB, 48 cost 7.0 s and
/// 683 MiB, no bound 6.9 s and 1,006 MiB; at 100k, 16 batches made the
/// re-import right after a full one 17% slower than no bound.
const MAPPED_AHEAD: usize = 48;

/// The store's users of the domain and its revision.
async fn load(store: &Store, domain: &DomainConfig) -> Result<(Vec<StoredUser>, i64), StoreError> {
    Ok(match store.find_domain(&domain.name).await? {
        Some(d) => (store.load_users(d.id).await?, d.revision),
        None => (Vec::new(), 0),
    })
}

/// Reads, maps and plans. A kind that streams its specs has them planned
/// as they are mapped, once the store's users are loaded (the read goes on
/// meanwhile), so its specs are never all held; others are planned once
/// read. The store's users are dropped with the planner: apply works from
/// the plan alone.
async fn read_and_plan<K: SourceRun>(
    kind: &mut K,
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    opts: &RunOptions,
) -> Result<Result<Plan, ReadFailure>, SyncError> {
    // Bounded: while the store's users load, the reader maps ahead by at
    // most this many batches instead of queueing the whole read.
    let (tx, mut rx) = tokio::sync::mpsc::channel(MAPPED_AHEAD);
    let sink = MappedSink::new(move |m| {
        // The receiver goes only when the run stopped planning.
        let _ = tx.blocking_send(m);
    });
    if !kind.stream_specs(sink) {
        let (read, stored) = read_and_load(kind, cfg, store, &source.domain, opts).await?;
        return Ok(read.map(|(read, specs)| plan(cfg, source, read, specs, &stored)));
    }
    let read = kind.read(store, opts);
    let loading = load(store, &source.domain);
    tokio::pin!(read, loading);
    let mut read_out = None;
    let loaded = loop {
        tokio::select! {
            biased;
            l = &mut loading => break l,
            r = &mut read, if read_out.is_none() => read_out = Some(r),
        }
    };
    let (stored, revision) = loaded?;
    let mut planner = Planner::new(context(cfg, source, false, &stored, revision));
    let take = |planner: &mut Planner<'_>, m: Mapped| match m {
        Mapped::Specs(specs) => specs.into_iter().for_each(|s| planner.add(s)),
        Mapped::Mark => planner.mark(),
        Mapped::Rollback => planner.rollback(),
    };
    // Plan what the mapper sends until the read is over, then what it sent
    // last (it is gone by then: the read ended with it).
    let read_out = match read_out {
        Some(r) => r,
        None => loop {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(m) => take(&mut planner, m),
                    None => break (&mut read).await,
                },
                r = &mut read => break r,
            }
        },
    };
    while let Ok(m) = rx.try_recv() {
        take(&mut planner, m);
    }
    let mut read = match read_out? {
        Ok(read) => read,
        Err(failure) => return Ok(Err(failure)),
    };
    // Whatever the kind returned unstreamed is planned after.
    for spec in held_specs(&mut read, cfg, &source.domain) {
        planner.add(spec);
    }
    Ok(Ok(finish(planner, read)))
}

/// The specs a read returned, its own first, then its records mapped (their
/// refusals join the read's errors).
fn held_specs(
    read: &mut Read,
    cfg: &Config,
    domain: &std::sync::Arc<DomainConfig>,
) -> Vec<UserSpec> {
    let mut mapper = Mapper::new(domain.clone(), &cfg.rules);
    mapper.push_all(std::mem::take(&mut read.records));
    let (specs, errors) = mapper.finish();
    read.errors.extend(errors);
    // The source's own specs first, their array taken as is.
    match std::mem::take(&mut read.specs) {
        first if specs.is_empty() => first,
        first => first.into_iter().chain(specs).collect(),
    }
}

/// The plan of a read: its errors and completeness, its notes first.
fn finish(planner: Planner<'_>, read: Read) -> Plan {
    let mut plan = planner.finish(read.errors, read.complete, read.files);
    plan.notes.splice(0..0, read.notes);
    plan
}

/// The source read and mapped (records dropped as they map), joined with
/// the store's users of the domain.
async fn read_and_load<K: SourceRun>(
    kind: &mut K,
    cfg: &Config,
    store: &Store,
    domain: &std::sync::Arc<DomainConfig>,
    opts: &RunOptions,
) -> Result<(Result<ReadAndMapped, ReadFailure>, (Vec<StoredUser>, i64)), SyncError> {
    let read_and_map = async {
        let mut read = match kind.read(store, opts).await? {
            Ok(r) => r,
            Err(failure) => return Ok(Err(failure)),
        };
        let specs = held_specs(&mut read, cfg, domain);
        Ok::<_, SyncError>(Ok((read, specs)))
    };
    let (mapped, stored) = tokio::join!(read_and_map, load(store, domain));
    Ok((mapped?, stored?))
}

/// What the planner looks at besides the specs.
fn context<'a>(
    cfg: &'a Config,
    source: &'a SourceConfig,
    changed_only: bool,
    stored: &'a [StoredUser],
    revision: i64,
) -> PlanContext<'a> {
    PlanContext {
        source: &source.name,
        // A changed-only read lists changes, not everyone.
        mode: match changed_only {
            true => SyncMode::Delta,
            false => source.mode,
        },
        delete_after_days: source.delete_after_days,
        domain: &source.domain,
        limits: &cfg.limits,
        changed_only,
        stored,
        base_revision: revision,
        now: now(),
    }
}

fn plan(
    cfg: &Config,
    source: &SourceConfig,
    read: Read,
    specs: Vec<UserSpec>,
    (stored, revision): &(Vec<StoredUser>, i64),
) -> Plan {
    let cx = context(cfg, source, read.changed_only, stored, *revision);
    let mut planner = Planner::new(cx);
    for spec in specs {
        planner.add(spec);
    }
    finish(planner, read)
}

/// A read that failed whole, recorded as a failed run (none in a dry run).
async fn failed_read(
    store: &Store,
    source: &SourceConfig,
    f: ReadFailure,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let error = RowError {
        file: f.location,
        row: None,
        column: None,
        message: f.message,
        source_id: None,
    };
    let run_id = match opts.dry_run {
        true => None,
        false => Some(store.start_run(&source.name, &source.domain.name).await?),
    };
    let report = RunReport::failed(
        &source.name,
        &source.domain.name,
        run_id,
        opts.dry_run,
        error,
        vec![f.note],
    );
    if let Some(id) = run_id {
        store.finish_run(id, &report).await?;
    }
    Ok(report)
}

/// Safety, apply, queue the admin report, record the run: for a fresh plan
/// and a reviewed one alike. Welcome emails are queued by apply, in the
/// transaction that creates their user.
async fn execute(
    cfg: &Config,
    store: &Store,
    domain: &DomainConfig,
    plan: &Plan,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let run_id = store.start_run(&plan.source, &plan.domain).await?;
    // Safety: a refused plan is recorded and reported, not applied.
    if let Some(refusal) = plan.refused.as_ref().filter(|_| !opts.override_limits) {
        let mut report = RunReport::new(plan, Some(run_id), false, false, &[]);
        if !opts.no_hold {
            report
                .notes
                .push(held::hold(store, plan, run_id, &refusal.to_string()).await?);
        }
        store.finish_run(run_id, &report).await?;
        crate::mail::queue_admin_report(&cfg.mail, store, &report, std::iter::empty()).await;
        tracing::warn!(reason = %refusal, "run refused by a safety threshold");
        return Ok(report);
    }
    // Apply.
    let apply = ApplyOptions {
        run_id: Some(run_id),
        progress: opts.progress,
        stop: opts.stop.clone(),
    };
    let outcome = match apply_plan(store, domain, plan, &cfg.limits, &apply).await {
        Ok(o) => o,
        Err(e) => {
            let mut report = RunReport::new(plan, Some(run_id), false, false, &[]);
            report.outcome = Outcome::Partial;
            report.errors.push(RowError {
                file: plan.files.join(", "),
                row: None,
                column: None,
                message: crate::model::chain(&e),
                source_id: None,
            });
            // The store may be what failed: the apply error is the news.
            if let Err(fe) = store.finish_run(run_id, &report).await {
                tracing::warn!(error = %crate::model::chain(&fe), run_id, "the failed run was not recorded");
            }
            return Err(e.into());
        }
    };
    // Report.
    let mut report = RunReport::new(plan, Some(run_id), false, true, &outcome.failed);
    if plan.refused.is_some() {
        report
            .notes
            .push("safety threshold overridden with --override-limits".into());
    }
    report.throttled = outcome.throttled;
    if outcome.interrupted {
        report.outcome = Outcome::Partial;
        report.interrupted = true;
        report.notes.push(format!(
            "stopped by shutdown after {} of {} writes; the next run applies the rest",
            outcome.applied,
            plan.actions.writes()
        ));
    }
    store.finish_run(run_id, &report).await?;
    // A hold of this source held a plan against a store that has changed now.
    if !opts.no_hold && outcome.applied > 0 {
        store.supersede_held_plan(&plan.source).await?;
    }
    // Queue mail: the admin report of what took effect.
    let applied = applied_writes(plan, true, &outcome.failed);
    crate::mail::queue_admin_report(&cfg.mail, store, &report, applied).await;
    tracing::info!(
        run_id,
        created = report.created,
        updated = report.updated,
        disabled = report.disabled,
        errors = report.errors.len(),
        throttled_ms = outcome.throttled.as_millis() as u64,
        "run finished"
    );
    tracing::debug!(
        chunks = outcome.chunks,
        built_ahead = outcome.built_ahead,
        retries = outcome.retries,
        "apply chunks"
    );
    Ok(report)
}

fn write_plan(path: &Path, plan: &Plan) -> Result<(), SyncError> {
    let err = |source: PlanFileError| SyncError::PlanOut {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(plan).map_err(|e| err(e.into()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| err(e.into()))
}

/// Applies exactly the plan in `path`, refusing if the store changed since.
pub async fn apply_saved_plan(
    cfg: &Config,
    store: &Store,
    path: &Path,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let bad = |source: PlanFileError| SyncError::BadPlan {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read(path).map_err(io(path))?;
    let plan: Plan = serde_json::from_slice(&text).map_err(|e| bad(e.into()))?;
    if plan.format != PLAN_FORMAT {
        return Err(bad(PlanFileError::Format { found: plan.format }));
    }
    let Some(source) = cfg.source(&plan.source) else {
        return Err(SyncError::UnknownSource(plan.source.clone()));
    };
    if !source.domain.name.eq_ignore_ascii_case(&plan.domain) {
        return Err(bad(PlanFileError::Domain {
            plan: plan.domain.clone(),
            source_name: source.name.clone(),
            configured: source.domain.name.clone(),
        }));
    }
    let opts = RunOptions {
        no_hold: true,
        ..opts.clone()
    };
    let lock = lock(store, &source.domain.name, opts.lock_wait).await?;
    let result = execute(cfg, store, &source.domain, &plan, &opts).await;
    lock.release().await;
    result
}
