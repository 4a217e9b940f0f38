//! The drop folder: `inbox/` is watched by HR; a settled file is claimed by
//! an atomic rename into `processing/`, imported, then moved to `archive/`
//! (or `failed/`) beside `<name>.result.csv`, the per-row result report.
//!
//! The four folders are siblings (`var/inbox` → `var/processing`, …), so the
//! renames stay on one filesystem and are atomic. Result cells that start
//! with `=`, `+`, `-`, `@`, tab or CR get a leading `'` so a spreadsheet never
//! runs them as formulas.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct Inbox {
    pub root_inbox: PathBuf,
    pub processing: PathBuf,
    pub archive: PathBuf,
    pub failed: PathBuf,
}

#[derive(Debug)]
pub struct Claimed {
    pub path: PathBuf,
    pub original_name: String,
}

/// Where a finished file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Archive,
    Failed,
}

/// A file's per-row report. The rows are produced as they are written, so
/// a large file's results are never all in memory at once.
pub struct ResultReport<'a> {
    pub header: Vec<String>,
    pub rows: Box<dyn Iterator<Item = ResultRow> + Send + 'a>,
    /// Set when the file (or its run) was refused whole.
    pub file_message: Option<String>,
    /// Said of the whole file without refusing it (its rows' cells could
    /// not be read again).
    pub file_note: Option<String>,
}

impl ResultReport<'_> {
    /// The report of a file refused whole: its message, no rows.
    pub fn whole_file(message: Option<String>) -> Self {
        ResultReport {
            header: Vec::new(),
            rows: Box::new(std::iter::empty()),
            file_message: message,
            file_note: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResultRow {
    pub row: u64,
    /// The row's cells as they are in the file.
    pub cells: csv::StringRecord,
    pub result: String,
    pub extension: Option<String>,
    pub message: Option<String>,
}

fn is_candidate(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let temp = [".tmp", ".part", ".partial", ".crdownload", ".swp"];
    !name.starts_with('.')
        && !name.starts_with("~$")
        && !temp.iter().any(|t| lower.ends_with(t))
        && [".csv", ".tsv", ".txt"].iter().any(|e| lower.ends_with(e))
}

/// Candidate files and their (size, mtime) at one moment.
#[derive(Debug)]
pub struct Snapshot(Vec<(PathBuf, (u64, SystemTime))>);

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The files whose size and modification time have not changed since.
    pub fn settled(self) -> Vec<PathBuf> {
        let mut ready: Vec<PathBuf> = self
            .0
            .into_iter()
            .filter(|(p, s)| stamp(p).as_ref() == Some(s))
            .map(|(p, _)| p)
            .collect();
        ready.sort();
        ready
    }
}

fn stamp(p: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    m.is_file()
        .then(|| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A name in `dir` that does not exist yet: `name`, else `name` with `-2`, `-3`…
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = name.rsplit_once('.').map_or((name, ""), |(s, e)| (s, e));
    (2..10_000)
        .map(|i| {
            dir.join(if ext.is_empty() {
                format!("{stem}-{i}")
            } else {
                format!("{stem}-{i}.{ext}")
            })
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

impl Inbox {
    pub fn open(inbox: &Path) -> std::io::Result<Inbox> {
        let parent = inbox.parent().unwrap_or(Path::new("."));
        let ib = Inbox {
            root_inbox: inbox.to_path_buf(),
            processing: parent.join("processing"),
            archive: parent.join("archive"),
            failed: parent.join("failed"),
        };
        for d in [&ib.root_inbox, &ib.processing, &ib.archive, &ib.failed] {
            std::fs::create_dir_all(d)?;
        }
        Ok(ib)
    }

    /// The candidate files now, with their size and modification time.
    pub fn snapshot(&self) -> std::io::Result<Snapshot> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&self.root_inbox)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_candidate(&name) {
                if let Some(s) = stamp(&e.path()) {
                    files.push((e.path(), s));
                }
            }
        }
        Ok(Snapshot(files))
    }

    /// Claims a file by renaming it into `processing/`; `None` if another
    /// process claimed it first.
    pub fn claim(&self, file: &Path) -> std::io::Result<Option<Claimed>> {
        let original_name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let target = free_name(
            &self.processing,
            &format!("{}-{original_name}", utc_stamp()),
        );
        match std::fs::rename(file, &target) {
            Ok(()) => Ok(Some(Claimed {
                path: target,
                original_name,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Files a crash left in `processing/`.
    pub fn processing_files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.processing)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        Ok(v)
    }
}

impl Claimed {
    /// Writes the result report, then moves the file beside it.
    pub fn finish(
        self,
        inbox: &Inbox,
        to: Destination,
        report: ResultReport<'_>,
    ) -> std::io::Result<(PathBuf, PathBuf)> {
        let dir = match to {
            Destination::Archive => &inbox.archive,
            Destination::Failed => &inbox.failed,
        };
        let name = self.path.file_name().map_or_else(
            || self.original_name.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        let moved = free_name(dir, &name);
        let moved_name = moved
            .file_name()
            .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
        let result = dir.join(format!("{moved_name}.result.csv"));
        write_result_csv(&result, report)?;
        std::fs::rename(&self.path, &moved)?;
        Ok((moved, result))
    }
}

/// A cell that cannot run as a spreadsheet formula; borrowed when it is
/// already safe (most are).
pub fn safe_cell(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`safe_cell`] as a field for `csv::Writer::write_record`.
pub struct SafeField<'a>(Cow<'a, str>);

impl AsRef<[u8]> for SafeField<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

pub fn safe_field(s: &str) -> SafeField<'_> {
    SafeField(safe_cell(s))
}

/// Writes the per-row report (UTF-8 with BOM, CRLF) via a temp file and rename.
/// A row's cells are written from where they are kept, with no copy per cell.
pub fn write_result_csv(path: &Path, report: ResultReport<'_>) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut file, b"\xEF\xBB\xBF")?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(file);
    let result_columns = ["pbx_result", "pbx_extension", "pbx_message"];
    let header = std::iter::once("row")
        .chain(report.header.iter().map(String::as_str))
        .chain(result_columns);
    w.write_record(header.map(safe_field))?;
    let pad = report.header.len();
    // Said of the whole file: a row of its own, under the header.
    let whole_file = [
        ("refused", &report.file_message),
        ("note", &report.file_note),
    ];
    for (result, msg) in whole_file {
        if let Some(msg) = msg {
            let blank = std::iter::repeat_n("", pad + 1);
            w.write_record(blank.chain([result, "", msg]).map(safe_field))?;
        }
    }
    for r in report.rows {
        let row = r.row.to_string();
        let blank = std::iter::repeat_n("", pad.saturating_sub(r.cells.len()));
        let cells = std::iter::once(row.as_str())
            .chain(r.cells.iter())
            .chain(blank)
            .chain([
                r.result.as_str(),
                r.extension.as_deref().unwrap_or_default(),
                r.message.as_deref().unwrap_or_default(),
            ]);
        w.write_record(cells.map(safe_field))?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
