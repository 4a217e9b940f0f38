//! CSV sources: `import FILE…` and the drop folder. Each file is decoded on
//! a blocking thread while the store's users load; once the run is
//! reported, every file gets its per-row result CSV, and a drop-folder file
//! moves from `processing/` to `archive/` or `failed/`.

use super::{io, run_sync, Read, ReadFailure, RunOptions, SourceRun, SyncError};
use crate::config::{Config, CsvSource, CsvSourceConfig, DomainConfig, Rule, SyncMode};
use crate::mapping::{MappedSink, Mapper};
use crate::model::{Field, RowError, StaffRecord};
use crate::plan::{Action, Plan};
use crate::report::{FileReport, FileStatus, Outcome, RunReport};
use crate::source::csv::{self as csvsrc, CsvFile, CsvOptions};
use crate::source::inbox::{self, Inbox, ResultReport, ResultRow};
use crate::source::RecordSink;
use crate::store::Store;
use foldhash::{HashMap, HashMapExt};
use std::path::{Path, PathBuf};

/// What happens to the files once their run is reported.
enum After<'a> {
    /// `import FILE…`: result CSVs go to `<state>/reports/`.
    Import { reports: PathBuf },
    /// A drop-folder file: moved beside its result CSV.
    Inbox {
        inbox: &'a Inbox,
        claimed: inbox::Claimed,
    },
}

/// One run over one or more CSV files.
struct CsvRun<'a> {
    mode: SyncMode,
    paths: Vec<PathBuf>,
    options: CsvOptions,
    /// Records are mapped as they are read, on the reader's thread.
    domain: std::sync::Arc<DomainConfig>,
    rules: Vec<Rule>,
    parsed: Vec<Result<CsvFile, RowError>>,
    after: After<'a>,
    /// Where the mapped specs go as they are mapped (set by the run).
    sink: Option<MappedSink>,
}

impl SourceRun for CsvRun<'_> {
    fn stream_specs(&mut self, sink: MappedSink) -> bool {
        self.sink = Some(sink);
        true
    }

    async fn read(
        &mut self,
        _store: &Store,
        _opts: &RunOptions,
    ) -> Result<Result<Read, ReadFailure>, SyncError> {
        let (paths, options) = (self.paths.clone(), self.options.clone());
        let mut mapper = Mapper::new(self.domain.clone(), &self.rules);
        if let Some(sink) = self.sink.take() {
            mapper.stream_to(sink);
        }
        let (mut read, parsed) =
            tokio::task::spawn_blocking(move || read_csv_files(&paths, &options, mapper))
                .await
                .map_err(SyncError::Reader)?;
        // Every file refused whole: the run failed, it is no partial success.
        if !parsed.is_empty() && parsed.iter().all(Result::is_err) {
            let message = parsed
                .iter()
                .filter_map(|f| f.as_ref().err())
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            self.parsed = parsed;
            return Ok(Err(ReadFailure {
                location: read.files.join(", "),
                message,
                note: "the file was refused whole: nothing was applied and nobody was disabled"
                    .into(),
            }));
        }
        for f in parsed.iter().flatten().filter(|f| f.rows.is_empty()) {
            let mut note = format!("{} has a header but no data rows", f.path);
            if self.mode == SyncMode::Full {
                note.push_str("; nobody was disabled because of it");
            }
            read.notes.push(note);
        }
        self.parsed = parsed;
        Ok(Ok(read))
    }

    async fn finish(
        self,
        _store: &Store,
        plan: Option<&Plan>,
        report: &mut RunReport,
    ) -> Result<(), SyncError> {
        // A dry run leaves the files as they are.
        if report.dry_run {
            return Ok(());
        }
        let read_failed = plan.is_none();
        match self.after {
            After::Import { reports } => {
                std::fs::create_dir_all(&reports).map_err(io(&reports))?;
                for (path, file) in self.paths.iter().zip(self.parsed) {
                    let base = path
                        .file_name()
                        .map_or_else(|| "import".into(), |n| n.to_string_lossy().into_owned());
                    let out = reports.join(format!(
                        "run-{}-{base}.result.csv",
                        report.run_id.unwrap_or(0)
                    ));
                    let status = match file.is_ok() {
                        true => FileStatus::Read,
                        false => FileStatus::Refused,
                    };
                    let result = result_report(path, file, plan, report);
                    inbox::write_result_csv(&out, result).map_err(io(&out))?;
                    report.files.push(FileReport {
                        file: path.display().to_string(),
                        status,
                        moved_to: None,
                        result_csv: Some(out.display().to_string()),
                    });
                }
            }
            // Left in processing/: the next pass imports it again.
            After::Inbox { .. } if report.interrupted => {}
            After::Inbox { inbox, claimed } => {
                let file = self.parsed.into_iter().next().unwrap_or_else(|| {
                    Err(RowError {
                        file: claimed.original_name.clone(),
                        row: None,
                        column: None,
                        message: "not read".into(),
                        source_id: None,
                    })
                });
                let ok = file.is_ok() && !read_failed && report.outcome != Outcome::Refused;
                let result = result_report(&claimed.path, file, plan, report);
                let (to, status) = match ok {
                    true => (inbox::Destination::Archive, FileStatus::Archived),
                    false => (inbox::Destination::Failed, FileStatus::Failed),
                };
                let processing = claimed.path.display().to_string();
                let original_name = claimed.original_name.clone();
                let (moved, result_csv) = claimed
                    .finish(inbox, to, result)
                    .map_err(io(&inbox.root_inbox))?;
                // Errors name the file where it is now, not where it was read.
                let now_at = moved.display().to_string();
                for e in report.errors.iter_mut().filter(|e| e.file == processing) {
                    e.file.clone_from(&now_at);
                }
                for m in report.errors.iter_mut() {
                    m.message = m.message.replace(&processing, &now_at);
                }
                report.files.push(FileReport {
                    file: original_name,
                    status,
                    moved_to: Some(now_at),
                    result_csv: Some(result_csv.display().to_string()),
                });
            }
        }
        Ok(())
    }
}

fn options(c: &CsvSourceConfig) -> CsvOptions {
    CsvOptions {
        extra_aliases: c.aliases.clone(),
    }
}

/// `import FILE…`: the same path as a folder drop, without moving the files.
/// Per-row results go to `<state>/reports/`.
pub async fn import_files(
    cfg: &Config,
    store: &Store,
    src: CsvSource<'_>,
    paths: &[PathBuf],
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let run = CsvRun {
        mode: src.source.mode,
        paths: paths.to_vec(),
        options: options(src.csv),
        domain: src.source.domain.clone(),
        rules: cfg.rules.clone(),
        parsed: Vec::new(),
        sink: None,
        after: After::Import {
            reports: cfg.state_dir.join("reports"),
        },
    };
    run_sync(cfg, store, src.source, run, opts).await
}

/// One pass over the drop folder: every settled file (and any left in
/// `processing/` by a crash) is claimed, imported as its own run, then moved
/// to `archive/` or `failed/` beside its per-row result CSV.
pub async fn process_inbox(
    cfg: &Config,
    store: &Store,
    src: CsvSource<'_>,
    opts: &RunOptions,
) -> Result<Vec<RunReport>, SyncError> {
    let csv = src.csv;
    let ib = Inbox::open(&csv.inbox).map_err(io(&csv.inbox))?;
    let settled = settled_files(&ib, csv).await?;
    if opts.dry_run {
        let mut reports = Vec::new();
        for f in settled {
            reports.push(import_files(cfg, store, src, &[f], opts).await?);
        }
        return Ok(reports);
    }
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
    for f in settled {
        if let Some(c) = ib.claim(&f).map_err(io(&f))? {
            claimed.push(c);
        }
    }
    let mut reports = Vec::new();
    for c in claimed {
        let run = CsvRun {
            mode: src.source.mode,
            paths: vec![c.path.clone()],
            options: options(csv),
            domain: src.source.domain.clone(),
            rules: cfg.rules.clone(),
            parsed: Vec::new(),
            sink: None,
            after: After::Inbox {
                inbox: &ib,
                claimed: c,
            },
        };
        let report = run_sync(cfg, store, src.source, run, opts).await?;
        let interrupted = report.interrupted;
        reports.push(report);
        if interrupted {
            break;
        }
    }
    Ok(reports)
}

/// Settled files of the drop folder, waiting `settle` without blocking.
async fn settled_files(ib: &Inbox, csv: &CsvSourceConfig) -> Result<Vec<PathBuf>, SyncError> {
    let snap = ib.snapshot().map_err(io(&csv.inbox))?;
    if !snap.is_empty() {
        tokio::time::sleep(csv.settle).await;
    }
    Ok(snap.settled())
}

/// One file's records on their way to the mapper: an employee id an
/// earlier file of the read already had refuses the row. Its ids and
/// repeats count only if the file is read whole.
struct FileSink<'a> {
    name: &'a str,
    files: &'a [String],
    /// Employee id -> (index of its file in `files`, row).
    seen: &'a HashMap<String, (usize, Option<u64>)>,
    /// `None` for the last file of the read: no later file asks about its
    /// ids (a 1,000,000-row file's ids came to 80 MB).
    ids: Option<Vec<(String, Option<u64>)>>,
    repeats: Vec<RowError>,
    mapper: &'a mut Mapper,
}

impl RecordSink for FileSink<'_> {
    fn expect(&mut self, rows: usize) {
        self.mapper.reserve(rows);
    }

    fn record(&mut self, r: StaffRecord) {
        if let Some((file, row)) = self.seen.get(&r.source_id) {
            let file = self.files.get(*file).map_or("", String::as_str);
            let at = row.map_or(String::new(), |row| format!(", row {row}"));
            self.repeats.push(RowError {
                file: self.name.to_string(),
                row: r.origin.row,
                column: Some(r.origin.column(Field::EmployeeId)),
                message: format!(
                    "employee id {} already appears in {file}{at}",
                    crate::model::excerpt(&r.source_id)
                ),
                source_id: Some(r.source_id.clone()),
            });
            return;
        }
        if let Some(ids) = &mut self.ids {
            ids.push((r.source_id.clone(), r.origin.row));
        }
        self.mapper.push(r);
    }
}

/// Reads CSV files as one source read, mapping each record as it is read
/// (into `read.specs`; the mapping's refusals follow the files' own in
/// `read.errors`). A file refused whole leaves the read incomplete and
/// nothing of it mapped; an employee id repeated in a later file refuses
/// that row.
pub fn read_csv_files(
    paths: &[PathBuf],
    opts: &CsvOptions,
    mut mapper: Mapper,
) -> (Read, Vec<Result<CsvFile, RowError>>) {
    let mut read = Read {
        complete: true,
        ..Read::default()
    };
    let mut parsed = Vec::new();
    let mut seen: HashMap<String, (usize, Option<u64>)> = HashMap::new();
    for p in paths {
        let name = p.display().to_string();
        read.files.push(name.clone());
        let file_index = read.files.len() - 1;
        let mark = mapper.mark();
        let mut sink = FileSink {
            name: &name,
            files: &read.files,
            seen: &seen,
            ids: (file_index + 1 < paths.len()).then(Vec::new),
            repeats: Vec::new(),
            mapper: &mut mapper,
        };
        let result = csvsrc::read_file_each(p, opts, &mut sink);
        let (ids, mut repeats) = (sink.ids, sink.repeats);
        match result {
            Ok(f) => {
                read.errors.extend(f.errors.iter().cloned());
                read.errors.append(&mut repeats);
                let ids = ids.into_iter().flatten();
                seen.extend(ids.map(|(id, row)| (id, (file_index, row))));
                parsed.push(Ok(f));
            }
            Err(e) => {
                mapper.rollback(mark);
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
    let (specs, errors) = mapper.finish();
    read.specs = specs;
    read.errors.extend(errors);
    (read, parsed)
}

/// What one row of the result CSV says: result, extension, message.
type RowResult = (String, Option<String>, Option<String>);

/// What the result CSV says of an action's row.
fn row_result<F>(a: &Action<F>, applied: bool) -> RowResult {
    let (ext, msg) = match a {
        Action::Create {
            extension, note, ..
        } => (Some(extension.to_string()), note.clone()),
        Action::Update {
            extension, changes, ..
        }
        | Action::Reenable {
            extension, changes, ..
        } => {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            (
                Some(extension.to_string()),
                (!fields.is_empty()).then(|| format!("changed: {}", fields.join(", "))),
            )
        }
        Action::Disable { extension, .. } => (Some(extension.to_string()), None),
        Action::Unchanged {
            extension, note, ..
        } => (extension.as_ref().map(ToString::to_string), note.clone()),
        Action::Conflict { reason, .. } => (None, Some(reason.clone())),
        Action::Delete { .. } => (None, None),
    };
    let result = if a.writes() && !applied {
        format!("not applied ({})", a.name())
    } else {
        a.name().to_string()
    };
    (result, ext, msg)
}

/// Per-row results for one file: what happened to each row and why. The
/// rows are made as the result CSV is written, from the plan's actions
/// found by row, so the results of a large file are never all held.
fn result_report<'p>(
    path: &Path,
    file: Result<CsvFile, RowError>,
    plan: Option<&'p Plan>,
    report: &RunReport,
) -> ResultReport<'p> {
    let (f, plan) = match (file, plan) {
        (Ok(f), Some(plan)) => (f, plan),
        (Err(e), _) => return ResultReport::whole_file(Some(e.message)),
        (Ok(_), None) => {
            return ResultReport::whole_file(report.errors.first().map(|e| e.message.clone()))
        }
    };
    let applied = !report.dry_run && report.outcome != Outcome::Refused;
    // A file's actions come in the order of its rows (the planner plans
    // them as they are read), so they are unpacked alongside the rows.
    let file_path = f.path.clone();
    let mut planned = plan
        .actions
        .briefs()
        .filter_map(move |a| {
            let row = a.at().filter(|at| *at.file == *file_path)?.row?;
            Some((row, a))
        })
        .peekable();
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
    let file_message = report
        .refused
        .as_ref()
        .filter(|_| !applied && !report.dry_run)
        .map(|why| format!("run refused, nothing applied: {why}"));
    // The rows are read again rather than kept through the run. A file
    // changed since (or gone) still gets every row's result, without its
    // cells.
    let again = csvsrc::reread(path, &f);
    let file_note = again
        .as_ref()
        .err()
        .map(|e| format!("{e}: the rows' cells are not repeated here"));
    let mut result_row = move |row: u64, cells: csv::StringRecord| {
        // A row's errors are its own (refused by the source, by mapping,
        // or its write failed): the kept row of a repeated employee id
        // is not one of them.
        let (result, extension, message) = match errors.remove(&row) {
            Some(msgs) => ("error".to_string(), None, Some(msgs.join("; "))),
            None => {
                while planned.next_if(|(r, _)| *r < row).is_some() {}
                planned.next_if(|(r, _)| *r == row).map_or_else(
                    || ("skipped".into(), None, None),
                    |(_, a)| row_result(&a, applied),
                )
            }
        };
        ResultRow {
            row,
            cells,
            result,
            extension,
            message,
        }
    };
    let rows: Box<dyn Iterator<Item = ResultRow> + Send + 'p> = match again {
        Ok(rows) => Box::new(rows.map(move |(row, cells)| result_row(row, cells))),
        Err(_) => Box::new(
            f.rows
                .clone()
                .into_iter()
                .map(move |row| result_row(row, csv::StringRecord::new())),
        ),
    };
    ResultReport {
        header: f.header,
        rows,
        file_message,
        file_note,
    }
}
