//! One run, end to end: read → map → plan → (dry run: stop) → apply → report.
//!
//! `run_sync` is the whole pipeline for records already read; `import_files`
//! and `process_inbox` read CSV files first (the drop folder also claims,
//! archives and reports each file); `apply_saved_plan` applies a reviewed plan.

use crate::apply::{apply_plan, ApplyError, ApplyOptions};
use crate::config::{Config, CsvSourceConfig, SourceConfig, SourceKind};
use crate::mapping::map_all;
use crate::model::{RowError, StaffRecord};
use crate::plan::{make_plan, Action, Plan, PlanInput, PLAN_FORMAT};
use crate::report::{FileReport, Outcome, RunReport};
use crate::source::csv::{self as csvsrc, CsvFile, CsvOptions};
use crate::source::inbox::{self, Inbox, ResultReport, ResultRow};
use crate::store::{now, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("source `{0}` is not configured")]
    UnknownSource(String),
    #[error("domain `{0}` is not configured")]
    UnknownDomain(String),
    #[error("source `{0}` is not a csv source (use `sync` for ldap sources)")]
    NotCsv(String),
    #[error("source `{0}` is not an ldap source (use `import` for csv sources)")]
    NotLdap(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the plan to {path}: {message}")]
    PlanOut { path: String, message: String },
    #[error("{path} is not a plan this version can apply: {message}")]
    BadPlan { path: String, message: String },
    #[error("the CSV reader stopped: {0}")]
    Reader(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Io {
        path: path.display().to_string(),
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
    pub stop: Option<crate::apply::StopFlag>,
}

/// What a source read produced.
pub struct Read {
    pub records: Vec<StaffRecord>,
    pub errors: Vec<RowError>,
    /// False when part of the source could not be read: nobody is disabled.
    pub complete: bool,
    /// A changed-only directory read (see `PlanInput::changed_only`).
    pub changed_only: bool,
    pub files: Vec<String>,
    /// Notes for the report (e.g. how an LDAP source was read).
    pub notes: Vec<String>,
}

/// The pipeline for one read of one source. Returns the report and the plan.
///
/// `read` runs while the store's users are loaded: a CSV file is parsed on
/// a blocking thread meanwhile (see `read_csv_blocking`); an LDAP read is
/// passed in done.
#[tracing::instrument(skip_all, fields(source = %source.name))]
pub async fn run_sync(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    read: impl std::future::Future<Output = Result<Read, SyncError>>,
    opts: &RunOptions,
) -> Result<(RunReport, Plan), SyncError> {
    let domain = cfg
        .domain(&source.domain)
        .ok_or_else(|| SyncError::UnknownDomain(source.domain.clone()))?;
    // Plan and apply under the domain's sync lock, so the plan's view of the
    // store is still true when it is applied. A dry run needs no lock.
    let lock = if opts.dry_run {
        None
    } else {
        Some(store.lock_domain(&domain.name, LOCK_WAIT).await?)
    };
    let result = plan_and_apply(cfg, store, source, domain, read, opts).await;
    if let Some(l) = lock {
        l.release().await;
    }
    result
}

/// How long a run waits for another run of the same domain to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

async fn plan_and_apply(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    domain: &crate::config::DomainConfig,
    read: impl std::future::Future<Output = Result<Read, SyncError>>,
    opts: &RunOptions,
) -> Result<(RunReport, Plan), SyncError> {
    let t = std::time::Instant::now();
    let dom = store.find_domain(&domain.name).await?;
    let load = async {
        match dom {
            Some(d) => store.load_users(d.id).await,
            None => Ok(Vec::new()),
        }
    };
    // The source is read and mapped while the store's users load; the
    // records are mapped (and dropped) before the plan needs the users.
    let read_and_map = async {
        let mut read = read.await?;
        let (specs, errors) = map_all(std::mem::take(&mut read.records), domain, &cfg.rules);
        read.errors.extend(errors);
        Ok::<_, SyncError>((read, specs))
    };
    let (mapped, stored) = tokio::join!(read_and_map, load);
    let ((read, specs), stored) = (mapped?, stored?);
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "phase read, map and load"
    );
    let plan = make_plan(PlanInput {
        source: &source.name,
        mode: source.mode,
        delete_after_days: source.delete_after_days,
        domain,
        limits: &cfg.limits,
        specs,
        errors: read.errors,
        complete: read.complete,
        changed_only: read.changed_only,
        stored: &stored,
        base_revision: dom.map_or(0, |d| d.revision),
        now: now(),
        files: read.files,
    });
    let mut plan = plan;
    plan.notes.splice(0..0, read.notes);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase plan");
    if let Some(path) = &opts.plan_out {
        write_plan(path, &plan)?;
    }
    if opts.dry_run {
        return Ok((RunReport::new(&plan, None, true, false, &[]), plan));
    }
    let report = execute(cfg, store, &plan, opts).await?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase apply");
    Ok((report, plan))
}

/// Applies a plan (fresh or reviewed) and records the run.
async fn execute(
    cfg: &Config,
    store: &Store,
    plan: &Plan,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let domain = cfg
        .domain(&plan.domain)
        .ok_or_else(|| SyncError::UnknownDomain(plan.domain.clone()))?;
    let run_id = store.start_run(&plan.source, &plan.domain).await?;
    if plan.refused.is_some() && !opts.override_limits {
        let report = RunReport::new(plan, Some(run_id), false, false, &[]);
        store.finish_run(run_id, &report).await?;
        crate::mail::queue_admin_report(&cfg.mail, store, &report, plan, &[]).await;
        tracing::warn!(
            reason = plan.refused.as_deref().unwrap_or_default(),
            "run refused by a safety threshold"
        );
        return Ok(report);
    }
    let applied = apply_plan(
        store,
        domain,
        plan,
        &cfg.limits,
        &ApplyOptions {
            run_id: Some(run_id),
            progress: opts.progress,
            stop: opts.stop.clone(),
        },
    )
    .await;
    let outcome = match applied {
        Ok(o) => o,
        Err(e) => {
            let mut report = RunReport::new(plan, Some(run_id), false, false, &[]);
            report.outcome = Outcome::Partial;
            report.errors.push(RowError {
                file: plan.files.join(", "),
                row: None,
                column: None,
                message: e.to_string(),
                source_id: None,
            });
            store.finish_run(run_id, &report).await?;
            return Err(e.into());
        }
    };
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
            plan.actions.iter().filter(|a| a.writes()).count()
        ));
    }
    store.finish_run(run_id, &report).await?;
    crate::mail::queue_admin_report(&cfg.mail, store, &report, plan, &outcome.failed).await;
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
    let err = |message: String| SyncError::PlanOut {
        path: path.display().to_string(),
        message,
    };
    let json = serde_json::to_vec_pretty(plan).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| err(e.to_string()))
}

/// Applies exactly the plan in `path`, refusing if the store changed since.
pub async fn apply_saved_plan(
    cfg: &Config,
    store: &Store,
    path: &Path,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let bad = |message: String| SyncError::BadPlan {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read(path).map_err(io(path))?;
    let plan: Plan = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if plan.format != PLAN_FORMAT {
        return Err(bad(format!(
            "plan format {} (this version reads {PLAN_FORMAT})",
            plan.format
        )));
    }
    if cfg.source(&plan.source).is_none() {
        return Err(SyncError::UnknownSource(plan.source.clone()));
    }
    let lock = store.lock_domain(&plan.domain, LOCK_WAIT).await?;
    let result = execute(cfg, store, &plan, opts).await;
    lock.release().await;
    result
}

fn csv_source(source: &SourceConfig) -> Result<&CsvSourceConfig, SyncError> {
    match &source.kind {
        SourceKind::Csv(c) => Ok(c),
        SourceKind::Ldap(_) => Err(SyncError::NotCsv(source.name.clone())),
    }
}

fn options(c: &CsvSourceConfig) -> CsvOptions {
    CsvOptions {
        extra_aliases: c.aliases.clone(),
    }
}

/// Reads CSV files as one source read. A file refused whole leaves the read
/// incomplete; an employee id repeated in a later file refuses that row.
pub fn read_csv_files(
    paths: &[PathBuf],
    opts: &CsvOptions,
) -> (Read, Vec<Result<CsvFile, RowError>>) {
    let mut read = Read {
        records: Vec::new(),
        errors: Vec::new(),
        complete: true,
        changed_only: false,
        files: Vec::new(),
        notes: Vec::new(),
    };
    let mut parsed = Vec::new();
    // Employee id -> (index of its file in read.files, row).
    let mut seen: HashMap<String, (usize, Option<u64>)> = HashMap::new();
    for p in paths {
        let name = p.display().to_string();
        read.files.push(name.clone());
        match csvsrc::read_file(p, opts) {
            Ok(mut f) => {
                read.errors.extend(f.errors.iter().cloned());
                // The records go to the run; the file keeps its raw rows
                // for the per-row result CSV.
                let mut records = std::mem::take(&mut f.records);
                let file_index = read.files.len() - 1;
                records.retain(|r| {
                    if let Some((file, row)) = seen.get(&r.source_id) {
                        let file = &read.files[*file];
                        let at = row.map_or(String::new(), |row| format!(", row {row}"));
                        read.errors.push(RowError {
                            file: name.clone(),
                            row: r.origin.row,
                            column: Some(r.origin.column(crate::model::Field::EmployeeId)),
                            message: format!(
                                "employee id {} already appears in {file}{at}",
                                r.source_id
                            ),
                            source_id: Some(r.source_id.clone()),
                        });
                        return false;
                    }
                    seen.insert(r.source_id.clone(), (file_index, r.origin.row));
                    true
                });
                // The first file's array is taken as is, not copied.
                if read.records.is_empty() {
                    read.records = records;
                } else {
                    read.records.append(&mut records);
                }
                parsed.push(Ok(f));
            }
            Err(e) => {
                read.complete = false;
                let err = RowError {
                    file: name.clone(),
                    row: None,
                    column: None,
                    message: format!("file refused, nothing in it was applied: {e}"),
                    source_id: None,
                };
                read.errors.push(err.clone());
                parsed.push(Err(err));
            }
        }
    }
    (read, parsed)
}

/// `read_csv_files` on a blocking thread, so the caller can load the store
/// meanwhile.
async fn read_csv_blocking(
    paths: Vec<PathBuf>,
    opts: CsvOptions,
) -> Result<(Read, Vec<Result<CsvFile, RowError>>), SyncError> {
    tokio::task::spawn_blocking(move || read_csv_files(&paths, &opts))
        .await
        .map_err(|e| SyncError::Reader(e.to_string()))
}

/// `import FILE…`: the same path as a folder drop, without moving the files.
/// Per-row results go to `<state>/reports/`.
pub async fn import_files(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    paths: &[PathBuf],
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let csv = csv_source(source)?;
    let t = std::time::Instant::now();
    let mut parsed = Vec::new();
    let read = async {
        let (read, files) = read_csv_blocking(paths.to_vec(), options(csv)).await?;
        parsed = files;
        Ok(read)
    };
    let (mut report, plan) = run_sync(cfg, store, source, read, opts).await?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase sync");
    if opts.dry_run {
        return Ok(report);
    }
    let dir = cfg.state_dir.join("reports");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (path, file) in paths.iter().zip(parsed) {
        let base = path
            .file_name()
            .map_or_else(|| "import".into(), |n| n.to_string_lossy().into_owned());
        let out = dir.join(format!(
            "run-{}-{base}.result.csv",
            report.run_id.unwrap_or(0)
        ));
        let read_ok = file.is_ok();
        let result = result_report(file, &plan, &report);
        inbox::write_result_csv(&out, &result).map_err(io(&out))?;
        report.files.push(FileReport {
            file: path.display().to_string(),
            status: if read_ok {
                "read".into()
            } else {
                "refused".into()
            },
            moved_to: None,
            result_csv: Some(out.display().to_string()),
        });
    }
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase report");
    Ok(report)
}

/// One pass over the drop folder: every settled file (and any left in
/// `processing/` by a crash) is claimed, imported as its own run, then moved
/// to `archive/` or `failed/` beside its per-row result CSV.
pub async fn process_inbox(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    opts: &RunOptions,
) -> Result<Vec<RunReport>, SyncError> {
    let csv = csv_source(source)?;
    let ib = Inbox::open(&csv.inbox).map_err(io(&csv.inbox))?;
    let mut claimed = Vec::new();
    for p in ib.processing_files().map_err(io(&csv.inbox))? {
        let original_name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        claimed.push(inbox::Claimed {
            path: p,
            original_name,
        });
    }
    if opts.dry_run {
        let files = ready_files(&ib, csv).await?;
        let mut reports = Vec::new();
        for f in files {
            reports.push(import_files(cfg, store, source, &[f], opts).await?);
        }
        return Ok(reports);
    }
    for f in ready_files(&ib, csv).await? {
        if let Some(c) = ib.claim(&f).map_err(io(&f))? {
            claimed.push(c);
        }
    }
    let mut reports = Vec::new();
    for c in claimed {
        let mut parsed = Vec::new();
        let read = async {
            let (read, files) = read_csv_blocking(vec![c.path.clone()], options(csv)).await?;
            parsed = files;
            Ok(read)
        };
        let (mut report, plan) = run_sync(cfg, store, source, read, opts).await?;
        let file = parsed.pop().unwrap_or_else(|| {
            Err(RowError {
                file: c.original_name.clone(),
                row: None,
                column: None,
                message: "not read".into(),
                source_id: None,
            })
        });
        if report.interrupted {
            // Left in processing/: the next pass (or start) imports it again
            // and plans only what is left.
            reports.push(report);
            break;
        }
        let ok = file.is_ok() && report.outcome != Outcome::Refused;
        let result = result_report(file, &plan, &report);
        let outcome = if ok {
            inbox::Outcome::Archived
        } else {
            inbox::Outcome::Failed
        };
        let original_name = c.original_name.clone();
        let (moved, result_csv) = c.finish(&ib, outcome, &result).map_err(io(&csv.inbox))?;
        report.files.push(FileReport {
            file: original_name,
            status: if ok {
                "archived".into()
            } else {
                "failed".into()
            },
            moved_to: Some(moved.display().to_string()),
            result_csv: Some(result_csv.display().to_string()),
        });
        reports.push(report);
    }
    Ok(reports)
}

/// Settled files of the drop folder, waiting `settle` without blocking.
async fn ready_files(ib: &Inbox, csv: &CsvSourceConfig) -> Result<Vec<PathBuf>, SyncError> {
    let snap = ib.snapshot().map_err(io(&csv.inbox))?;
    if !snap.is_empty() {
        tokio::time::sleep(csv.settle).await;
    }
    Ok(snap.settled())
}

/// Per-row results for one file: what happened to each row and why.
fn result_report(file: Result<CsvFile, RowError>, plan: &Plan, report: &RunReport) -> ResultReport {
    let f = match file {
        Ok(f) => f,
        Err(e) => {
            return ResultReport {
                header: Vec::new(),
                rows: Vec::new(),
                file_message: Some(e.message),
            }
        }
    };
    let applied = !report.dry_run && report.outcome != Outcome::Refused;
    let mut by_row: HashMap<u64, (String, Option<String>, Option<String>)> = HashMap::new();
    for a in &plan.actions {
        let (at, ext, msg) = match a {
            Action::Create { at, extension, .. } => (Some(at), Some(extension.to_string()), None),
            Action::Update {
                at,
                extension,
                changes,
                ..
            }
            | Action::Reenable {
                at,
                extension,
                changes,
                ..
            } => {
                let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
                (
                    Some(at),
                    Some(extension.clone()),
                    (!fields.is_empty()).then(|| format!("changed: {}", fields.join(", "))),
                )
            }
            Action::Disable { at, extension, .. } => (at.as_ref(), Some(extension.clone()), None),
            Action::Unchanged {
                at,
                extension,
                note,
                ..
            } => (Some(at), extension.clone(), note.clone()),
            Action::Conflict { at, reason, .. } => (Some(at), None, Some(reason.clone())),
            Action::Delete { .. } => (None, None, None),
        };
        if let Some(at) = at.filter(|at| *at.file == *f.path) {
            if let Some(row) = at.row {
                let result = if a.writes() && !applied {
                    format!("not applied ({})", a.name())
                } else {
                    a.name().to_string()
                };
                by_row.insert(row, (result, ext, msg));
            }
        }
    }
    let failed: HashSet<&str> = report
        .errors
        .iter()
        .filter(|e| e.row.is_some())
        .filter_map(|e| e.source_id.as_deref())
        .collect();
    let mut errors: HashMap<u64, Vec<String>> = HashMap::new();
    for e in report.errors.iter().filter(|e| e.file == f.path) {
        if let Some(row) = e.row {
            let msg = match &e.column {
                Some(c) => format!("{c}: {}", e.message),
                None => e.message.clone(),
            };
            errors.entry(row).or_default().push(msg);
        }
    }
    let rows = f
        .rows
        .into_iter()
        .map(|r| {
            let (result, extension, message) = match errors.remove(&r.row) {
                Some(msgs) => ("error".to_string(), None, Some(msgs.join("; "))),
                None => by_row
                    .remove(&r.row)
                    .unwrap_or_else(|| ("skipped".into(), None, None)),
            };
            let result = if r.source_id.as_deref().is_some_and(|id| failed.contains(id))
                && result != "error"
            {
                "error".into()
            } else {
                result
            };
            ResultRow {
                row: r.row,
                cells: r.cells,
                result,
                extension,
                message,
            }
        })
        .collect();
    let file_message = report
        .refused
        .as_ref()
        .filter(|_| !applied && !report.dry_run)
        .map(|why| format!("run refused, nothing applied: {why}"));
    ResultReport {
        header: f.header,
        rows,
        file_message,
    }
}
