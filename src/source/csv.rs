//! CSV source: turns an HR export (from an HR system or from Excel) into
//! `StaffRecord`s, refusing bad rows with file, spreadsheet row and column.
//!
//! Decoding: UTF-8 with or without BOM, UTF-16 with BOM, otherwise
//! Windows-1252. The delimiter (`,` `;` or tab) is detected from the header
//! line. Columns are found by header through forgiving aliases. A file whose
//! header cannot be mapped, or that is truncated mid-record, is refused whole
//! (`CsvError`); other problems refuse only their row (`CsvFile::errors`).

use super::RecordSink;
use crate::model::{excerpt, fold, Field, Origin, RowError, SourceStatus, StaffRecord};
use foldhash::HashMapExt;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Extra header names per field (from the source's `aliases`).
    pub extra_aliases: HashMap<Field, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct CsvFile {
    pub path: String,
    pub encoding: &'static str,
    pub delimiter: u8,
    pub header: Vec<String>,
    /// The spreadsheet row of each data row (blank rows are not data
    /// rows). The rows themselves are not kept: the per-row result CSV reads
    /// the file again ([`reread`]), which took some 170 MB off the peak of a
    /// 1,000,000-row import.
    pub rows: RowNumbers,
    /// Size and modification time as read (`None`: not read from a file,
    /// or it changed while it was read): [`reread`] reads the file again
    /// only while they are the same.
    pub stamp: Option<Stamp>,
    pub records: Vec<StaffRecord>,
    pub errors: Vec<RowError>,
}

/// Spreadsheet row numbers of a file's data rows, in order, kept as the
/// places where a row is not the one after the previous (after a blank
/// row): nothing at all for a plain export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowNumbers {
    len: u64,
    last: u64,
    /// (index of the data row, its row number) where it jumps.
    jumps: Vec<(u64, u64)>,
}

impl RowNumbers {
    fn push(&mut self, row: u64) {
        // The header is row 1.
        if row != self.last.max(1) + 1 {
            self.jumps.push((self.len, row));
        }
        self.len += 1;
        self.last = row;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl IntoIterator for RowNumbers {
    type Item = u64;
    type IntoIter = RowNumbersIter;

    fn into_iter(self) -> RowNumbersIter {
        RowNumbersIter {
            numbers: self,
            index: 0,
            jump: 0,
            row: 1,
        }
    }
}

pub struct RowNumbersIter {
    numbers: RowNumbers,
    index: u64,
    jump: usize,
    row: u64,
}

impl Iterator for RowNumbersIter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.index >= self.numbers.len {
            return None;
        }
        self.row = match self.numbers.jumps.get(self.jump) {
            Some(&(at, row)) if at == self.index => {
                self.jump += 1;
                row
            }
            _ => self.row + 1,
        };
        self.index += 1;
        Some(self.row)
    }
}

/// A file as it was read: size, modification time and a digest of its
/// bytes (foldhash with a fixed seed: it tells this file's bytes from
/// others within one process, and is kept nowhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    digest: u64,
}

/// Size of the pieces a file is hashed and read in.
const PIECE: usize = 1 << 16;

/// The digest of a stream of bytes, hashed in fixed 64 KiB pieces so that
/// a file streamed from disk and the same bytes in memory agree however
/// they are cut.
struct Digest {
    hasher: foldhash::fast::FoldHasher<'static>,
    piece: Vec<u8>,
    len: u64,
}

impl Digest {
    fn new() -> Digest {
        use std::hash::BuildHasher;
        const SEED: foldhash::fast::FixedState =
            foldhash::fast::FixedState::with_seed(0x7062_785f_6373_7600);
        Digest {
            hasher: SEED.build_hasher(),
            piece: Vec::with_capacity(PIECE),
            len: 0,
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        use std::hash::Hasher;
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = PIECE - self.piece.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.piece.extend_from_slice(now);
            bytes = rest;
            if self.piece.len() == PIECE {
                self.hasher.write(&self.piece);
                self.piece.clear();
            }
        }
    }

    /// (bytes seen, digest).
    fn finish(mut self) -> (u64, u64) {
        use std::hash::Hasher;
        self.hasher.write(&self.piece);
        (self.len, self.hasher.finish())
    }
}

/// The digest of everything `r` gives.
fn digest_of(mut r: impl std::io::Read) -> std::io::Result<u64> {
    let mut d = Digest::new();
    let mut buf = vec![0u8; PIECE];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(d.finish().1),
            Ok(n) => d.update(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A reader that shows what it reads to `seen` (a [`Digest`], so that the
/// digest is of the bytes parsed; a [`Window`] for the line counter).
struct Tap<R, S> {
    inner: R,
    seen: S,
}

trait Seen {
    fn seen(&mut self, bytes: &[u8]);
}

impl Seen for Digest {
    fn seen(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl<R: std::io::Read, S: Seen> std::io::Read for Tap<R, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.seen(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: header: {message}")]
    Header { file: String, message: String },
    #[error("{file}, row {row}: the file is truncated ({message}); export it again")]
    Truncated {
        file: String,
        row: u64,
        message: String,
    },
    #[error("{file}: not a text CSV file ({why}); save it from the spreadsheet as CSV and drop it again")]
    NotText { file: String, why: &'static str },
    #[error("{file}, row {row}: {message}")]
    Malformed {
        file: String,
        row: u64,
        message: String,
    },
}

fn aliases(field: Field) -> &'static [&'static str] {
    match field {
        Field::EmployeeId => &[
            "Employee #",
            "Employee ID",
            "Employee Number",
            "Employee No",
            "EmpID",
        ],
        Field::FirstName => &["First Name", "Given Name", "firstname"],
        Field::LastName => &["Last Name", "Surname", "Family Name"],
        Field::Email => &["Email", "Work Email", "E-mail", "Email Address"],
        Field::Department => &["Department", "Dept"],
        Field::Site => &["Site", "Location", "Office"],
        Field::Extension => &["Extension", "Ext", "Work Phone Ext", "Ext."],
        Field::Scope => &["Scope", "User Scope"],
        Field::Groups => &["Groups", "Group", "Member Of"],
        Field::Title => &["Title", "Job Title"],
        Field::Status => &["Status", "Employment Status"],
        Field::CallerId => &["Caller ID"],
        Field::Voicemail => &["Voicemail"],
        Field::Device => &["Device", "Phone Device", "Device Type"],
        Field::ForceLogin => &["Force Login"],
    }
}

/// Reads a file, handing each record to `sink` as it is read (the
/// returned file's `records` stay empty): a run maps each record at once
/// instead of holding them all. A UTF-8 file is read twice from disk, 64
/// KiB at a time, and never held: once to check it is UTF-8 and to count
/// its lines, once to parse it. Holding it whole was 80 MB of a
/// 1,000,000-row import's peak. Other encodings are decoded whole.
pub fn read_file_each(
    path: &Path,
    opts: &CsvOptions,
    sink: &mut impl RecordSink,
) -> Result<CsvFile, CsvError> {
    use std::io::{Read, Seek};
    let name = path.display().to_string();
    let io = |source| CsvError::Io {
        file: name.clone(),
        source,
    };
    let before = std::fs::metadata(path).map_err(io)?;
    let mut file = std::fs::File::open(path).map_err(io)?;
    let scanned = scan_file(&mut file).map_err(io)?;
    file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    let Some(s) = scanned else {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut f = parse_bytes_each(&name, &bytes, opts, sink)?;
        f.stamp = stamp_of(&before, bytes.len() as u64, digest_of(&bytes[..]).ok());
        return Ok(f);
    };
    let mut hashed = Tap {
        inner: file,
        seen: Digest::new(),
    };
    // The BOM is hashed, not parsed.
    let mut bom = [0u8; 4];
    hashed
        .read_exact(bom.get_mut(..s.bom).unwrap_or_default())
        .map_err(io)?;
    let text = Text {
        encoding: "UTF-8",
        prefix: &s.prefix,
        scan: s.scan,
    };
    let mut f = parse_text(&name, &mut hashed, text, opts, sink)?;
    // Parsed what was checked: the file did not change between the passes.
    let (len, digest) = hashed.seen.finish();
    let same = (len, digest) == (s.len, s.digest);
    f.stamp = stamp_of(&before, len, Some(digest).filter(|_| same));
    Ok(f)
}

/// A file that grew or shrank while it was read has no stamp.
fn stamp_of(before: &std::fs::Metadata, len: u64, digest: Option<u64>) -> Option<Stamp> {
    digest.filter(|_| before.len() == len).map(|digest| Stamp {
        len,
        modified: before.modified().ok(),
        digest,
    })
}

/// Parses a whole file, its records collected in `records`.
pub fn parse_bytes(name: &str, bytes: &[u8], opts: &CsvOptions) -> Result<CsvFile, CsvError> {
    let mut records = Vec::new();
    let mut f = parse_bytes_each(name, bytes, opts, &mut records)?;
    f.records = records;
    Ok(f)
}

/// Decodes the bytes to text and names the encoding used. UTF-8 is
/// borrowed, not copied: a 100,000-row file is 8 MB held twice otherwise.
pub fn decode(bytes: &[u8]) -> (Cow<'_, str>, &'static str) {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let body = bytes.get(bom..).unwrap_or_default();
        if enc == encoding_rs::UTF_8 {
            if let Ok(s) = std::str::from_utf8(body) {
                return (Cow::Borrowed(s), "UTF-8");
            }
        } else {
            let (text, _) = enc.decode_without_bom_handling(body);
            return (text, enc.name());
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), "UTF-8"),
        Err(_) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (text, "windows-1252")
        }
    }
}

/// Why decoded text is not a CSV export at all, if it is not: NUL bytes
/// (a spreadsheet, PDF or image) or mostly control characters. Looks at the
/// first 64 KiB.
fn not_text(text: &str) -> Option<&'static str> {
    // A stray NUL or control in a cell is that row's error; binary data
    // (Windows-1252 decodes any byte) shows as many of them.
    let (mut n, mut nul, mut controls) = (0usize, 0usize, 0usize);
    for c in text.chars().take(65_536) {
        n += 1;
        nul += usize::from(c == '\0');
        controls += usize::from(c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    }
    if nul > 8 && nul * 1000 > n {
        return Some("it holds NUL bytes: is it an .xlsx workbook, a PDF or an image?");
    }
    if controls > 8 && controls * 100 > n {
        return Some("it is mostly control characters");
    }
    None
}

/// The most frequent of `,` `;` tab outside quotes on the first line.
fn detect_delimiter(text: &str) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => break,
            _ if !quoted => {
                for (d, n) in counts.iter_mut() {
                    if c == *d as char {
                        *n += 1;
                    }
                }
            }
            _ => {}
        }
    }
    counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n > 0)
        .map_or(b',', |(d, _)| *d)
}

/// What one pass over a file's text tells before it is parsed: its line
/// count (to size the run's buffers), whether it ends inside a quoted field
/// and how it ends. Fed in pieces; `"`, line ends and the delimiters are
/// ASCII, which no byte of a UTF-8 or Windows-1252 multi-byte character is,
/// so bytes are read as the characters they stand for.
#[derive(Debug, Clone, Copy)]
struct Scan {
    delimiter: u8,
    newlines: usize,
    last: Option<u8>,
    /// At the start of a field: a quote opens it.
    at_start: bool,
    quoted: bool,
    /// Inside quotes, just after a `"`: closed, unless another follows
    /// (`""` is an escaped quote).
    closing: bool,
}

impl Scan {
    fn new(delimiter: u8) -> Scan {
        Scan {
            delimiter,
            newlines: 0,
            last: None,
            at_start: true,
            quoted: false,
            closing: false,
        }
    }

    fn of(text: &str, delimiter: u8) -> Scan {
        let mut s = Scan::new(delimiter);
        s.feed(text.as_bytes());
        s
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.newlines += usize::from(b == b'\n');
            if self.quoted {
                if !self.closing {
                    self.closing = b == b'"';
                    continue;
                }
                self.closing = false;
                if b == b'"' {
                    continue;
                }
                self.quoted = false;
            }
            match b {
                b'"' if self.at_start => {
                    self.quoted = true;
                    self.at_start = false;
                }
                b'\n' | b'\r' => self.at_start = true,
                _ => self.at_start = b == self.delimiter,
            }
        }
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
    }

    fn ends_inside_quotes(&self) -> bool {
        self.quoted && !self.closing
    }

    fn ends_with_newline(&self) -> bool {
        matches!(self.last, Some(b'\n' | b'\r'))
    }
}

/// The first 64 KiB of a text (cut at a character), which the checks that
/// look at the start of a file read.
fn prefix_of(text: &str) -> &str {
    let mut end = text.len().min(PIECE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// What the parser is told of a text before it reads it.
struct Text<'a> {
    encoding: &'static str,
    /// The first 64 KiB (see [`prefix_of`]).
    prefix: &'a str,
    scan: Scan,
}

/// A file's first pass, for one that can be parsed as it streams from disk.
struct Scanned {
    /// Bytes of BOM to skip.
    bom: usize,
    /// The first 64 KiB of text (see [`prefix_of`]).
    prefix: String,
    scan: Scan,
    /// Bytes read and their digest.
    len: u64,
    digest: u64,
}

/// Fills `buf` unless the end comes first: the bytes read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The longest start of `bytes` that is UTF-8.
fn utf8_start(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())
            .unwrap_or_default(),
    }
}

/// Reads a file once, 64 KiB at a time: `None` unless it is UTF-8 (with or
/// without BOM), the only encoding parsed as it streams.
fn scan_file(mut file: impl std::io::Read) -> std::io::Result<Option<Scanned>> {
    // Room for a character cut by the end of a piece, carried to the next.
    let mut buf = vec![0u8; PIECE + 4];
    let mut digest = Digest::new();
    let mut n = read_full(&mut file, buf.get_mut(..PIECE).unwrap_or_default())?;
    let head = buf.get(..n).unwrap_or_default();
    let bom = match encoding_rs::Encoding::for_bom(head) {
        Some((enc, len)) if enc == encoding_rs::UTF_8 => len,
        Some(_) => return Ok(None),
        None => 0,
    };
    let prefix = prefix_of(utf8_start(head.get(bom..).unwrap_or_default())).to_string();
    let mut scan = Scan::new(detect_delimiter(&prefix));
    // The piece's new bytes are `carry..carry + n`; the first skips its BOM.
    let (mut carry, mut skip) = (0, bom);
    loop {
        digest.update(buf.get(carry..carry + n).unwrap_or_default());
        scan.feed(buf.get(carry + skip..carry + n).unwrap_or_default());
        match std::str::from_utf8(buf.get(skip..carry + n).unwrap_or_default()) {
            Ok(_) => carry = 0,
            Err(e) if e.error_len().is_none() && n == PIECE => {
                let tail = skip + e.valid_up_to();
                buf.copy_within(tail..carry + n, 0);
                carry = carry + n - tail;
            }
            Err(_) => return Ok(None),
        }
        if n < PIECE {
            break;
        }
        skip = 0;
        n = read_full(
            &mut file,
            buf.get_mut(carry..carry + PIECE).unwrap_or_default(),
        )?;
    }
    let (len, digest) = digest.finish();
    Ok(Some(Scanned {
        bom,
        prefix,
        scan,
        len,
        digest,
    }))
}

/// The bytes csv has read that the line counter has not passed yet: all
/// it needs of a file that is not held.
#[derive(Debug, Default)]
struct Window {
    /// Offset in the text of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
}

impl Window {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    fn at(&self, offset: u64) -> Option<u8> {
        let i = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        self.bytes.get(i).copied()
    }

    fn between(&self, from: u64, to: u64) -> &[u8] {
        let at = |o: u64| usize::try_from(o.saturating_sub(self.base)).unwrap_or(usize::MAX);
        self.bytes.get(at(from)..at(to)).unwrap_or_default()
    }

    /// Drops what lies before `offset`, a piece at a time.
    fn forget_before(&mut self, offset: u64) {
        let k = usize::try_from(offset.saturating_sub(self.base)).unwrap_or(usize::MAX);
        if k >= PIECE && k <= self.bytes.len() {
            self.bytes.drain(..k);
            self.base = offset;
        }
    }
}

impl Seen for Window {
    fn seen(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

/// Physical line numbers of record starts. csv's positions point at the end
/// of the previous record, before any blank lines; skip those and count `\n`.
/// Offsets only grow, so counting is incremental.
#[derive(Debug)]
struct LineCounter {
    offset: u64,
    line: u64,
}

impl LineCounter {
    fn new() -> Self {
        LineCounter { offset: 0, line: 1 }
    }

    fn start_line(&mut self, w: &mut Window, pos: u64) -> u64 {
        let mut start = pos.clamp(w.base, w.end());
        while matches!(w.at(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start > self.offset {
            let counted = w.between(self.offset, start);
            self.line += counted.iter().filter(|b| **b == b'\n').count() as u64;
            self.offset = start;
        }
        w.forget_before(self.offset);
        self.line
    }
}

fn newlines(rec: &csv::StringRecord) -> u64 {
    rec.iter().map(|f| f.matches('\n').count() as u64).sum()
}

/// A row with no text in any cell: skipped, as a spreadsheet's empty line.
fn is_blank(rec: &csv::StringRecord) -> bool {
    rec.iter().all(|c| c.trim().is_empty())
}

/// How every CSV of a run is parsed: the header is a record like the
/// others, and rows may be longer or shorter than it.
fn reader<R: std::io::Read>(delimiter: u8, from: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(PIECE)
        .from_reader(from)
}

/// The records after the header, each with the spreadsheet row it starts
/// on (header = row 1; blank rows included), as a spreadsheet numbers them:
/// a quoted line break stays in its row, a blank line is a row.
struct Numbered<R> {
    records: csv::StringRecordsIntoIter<Tap<R, Window>>,
    lines: LineCounter,
    prev_end: u64,
    prev_row: u64,
}

/// A record csv could not parse, and the row it would have been.
struct Unparsable {
    row: u64,
    error: csv::Error,
}

impl<R: std::io::Read> Numbered<R> {
    /// Reads the header of `text` (`None`: the file is empty).
    fn new(delimiter: u8, text: R) -> Result<Option<(csv::StringRecord, Self)>, csv::Error> {
        let tap = Tap {
            inner: text,
            seen: Window::default(),
        };
        let mut records = reader(delimiter, tap).into_records();
        let header = match records.next() {
            None => return Ok(None),
            Some(r) => r?,
        };
        let mut lines = LineCounter::new();
        let window = &mut records.reader_mut().get_mut().seen;
        let pos = header.position().map_or(0, |p| p.byte());
        let prev_end = lines.start_line(window, pos) + newlines(&header);
        let rows = Numbered {
            records,
            lines,
            prev_end,
            prev_row: 1,
        };
        Ok(Some((header, rows)))
    }
}

impl<R: std::io::Read> Iterator for Numbered<R> {
    type Item = Result<(u64, csv::StringRecord), Unparsable>;

    fn next(&mut self) -> Option<Self::Item> {
        let rec = match self.records.next()? {
            Ok(rec) => rec,
            Err(error) => {
                let row = self.prev_row + 1;
                return Some(Err(Unparsable { row, error }));
            }
        };
        let window = &mut self.records.reader_mut().get_mut().seen;
        let start = rec.position().map_or(self.prev_end + 1, |p| {
            self.lines.start_line(window, p.byte())
        });
        let row = self.prev_row + 1 + start.saturating_sub(self.prev_end + 1);
        self.prev_end = start + newlines(&rec);
        self.prev_row = row;
        Some(Ok((row, rec)))
    }
}

/// Parses a file, handing each record to `sink` as it is read. A record
/// handed over stays handed over if the file is then refused whole
/// (truncated): the caller drops what it got on `Err`.
pub fn parse_bytes_each(
    name: &str,
    bytes: &[u8],
    opts: &CsvOptions,
    sink: &mut impl RecordSink,
) -> Result<CsvFile, CsvError> {
    let (text, encoding) = decode(bytes);
    let prefix = prefix_of(&text);
    let scan = Scan::of(&text, detect_delimiter(prefix));
    let t = Text {
        encoding,
        prefix,
        scan,
    };
    parse_text(name, text.as_bytes(), t, opts, sink)
}

/// Parses a text read from `from` (UTF-8, without BOM), told what a first
/// pass over it found (`t`).
fn parse_text(
    name: &str,
    from: impl std::io::Read,
    t: Text<'_>,
    opts: &CsvOptions,
    sink: &mut impl RecordSink,
) -> Result<CsvFile, CsvError> {
    if let Some(why) = not_text(t.prefix) {
        return Err(CsvError::NotText {
            file: name.to_string(),
            why,
        });
    }
    let (delimiter, scan) = (t.scan.delimiter, t.scan);
    let header_err = |message: String| CsvError::Header {
        file: name.to_string(),
        message,
    };
    let (header_rec, rows) = match Numbered::new(delimiter, from) {
        Ok(Some(first)) => first,
        Ok(None) => {
            return Err(header_err(
                "the file is empty; the first row must name the columns".into(),
            ))
        }
        Err(e) => return Err(header_err(excerpt(&e.to_string()))),
    };
    let header: Vec<String> = header_rec.iter().map(|h| h.trim().to_string()).collect();
    let columns = map_header(&header, opts).map_err(header_err)?;
    let names: HashMap<Field, String> = columns
        .iter()
        .filter_map(|(f, i)| Some((*f, header.get(*i)?.clone())))
        .collect();
    let names = Arc::new(names);
    let location: Arc<str> = Arc::from(name);
    // Sized up front: growing by doubling would hold the old and new arrays
    // at once (tens of MB at 100k rows). Quoted newlines only overestimate.
    let lines_in_file = scan.newlines + 1;
    sink.expect(lines_in_file);

    let mut out = CsvFile {
        path: name.to_string(),
        encoding: t.encoding,
        delimiter,
        header: header.clone(),
        rows: RowNumbers::default(),
        stamp: None,
        records: Vec::new(),
        errors: Vec::new(),
    };
    let mut first_seen = FirstSeen::with_capacity(lines_in_file);
    let mut last_len = header.len();
    let mut last_row = 1;
    for rec in rows {
        let (row, cells) = rec.map_err(|e| CsvError::Malformed {
            file: name.to_string(),
            row: e.row,
            message: excerpt(&e.error.to_string()),
        })?;
        last_len = cells.len();
        last_row = row;
        if is_blank(&cells) {
            continue;
        }
        let origin = Origin {
            location: location.clone(),
            row: Some(row),
            columns: names.clone(),
        };
        out.rows.push(row);
        match row_record(&cells, &header, &columns, origin, &mut first_seen) {
            Ok(r) => sink.record(r),
            Err(mut e) => out.errors.append(&mut e),
        }
    }
    if scan.ends_inside_quotes() {
        return Err(CsvError::Truncated {
            file: name.to_string(),
            row: last_row,
            message: "it ends inside a quoted field".into(),
        });
    }
    if !scan.ends_with_newline() && last_row > 1 && last_len < header.len() {
        return Err(CsvError::Truncated {
            file: name.to_string(),
            row: last_row,
            message: format!(
                "the last row has {last_len} of {} cells and no line end",
                header.len()
            ),
        });
    }
    Ok(out)
}

/// A file's data rows as they are in it, read again for its per-row
/// result CSV instead of held through the run, with their row numbers:
/// every row the read counted, without cells if the file ends early or no
/// longer parses.
pub struct DataRows {
    records: Option<csv::StringRecordsIntoIter<Box<dyn std::io::Read + Send>>>,
    rows: RowNumbersIter,
}

impl Iterator for DataRows {
    type Item = (u64, csv::StringRecord);

    fn next(&mut self) -> Option<Self::Item> {
        let row = self.rows.next()?;
        while let Some(records) = &mut self.records {
            match records.next() {
                Some(Ok(rec)) if is_blank(&rec) => continue,
                Some(Ok(rec)) => return Some((row, rec)),
                // Not the text that was read after all.
                Some(Err(_)) | None => self.records = None,
            }
        }
        Some((row, csv::StringRecord::new()))
    }
}

/// Why a file's rows could not be read again.
#[derive(Debug, thiserror::Error)]
pub enum RereadError {
    #[error("cannot read it again: {0}")]
    Io(#[from] std::io::Error),
    #[error("it changed after it was imported")]
    Changed,
}

fn data_rows(f: &CsvFile, text: Box<dyn std::io::Read + Send>) -> DataRows {
    let mut records = reader(f.delimiter, text).into_records();
    // The header.
    records.next();
    DataRows {
        records: Some(records),
        rows: f.rows.clone().into_iter(),
    }
}

/// The data rows of a file read before (as `f`) from `path`, while its
/// size and modification time are those it was read with. A UTF-8 file is
/// streamed, not held: the result CSV of a large file was the peak of its
/// import when it read the whole file again.
pub fn reread(path: &Path, f: &CsvFile) -> Result<DataRows, RereadError> {
    use std::io::{BufRead, Read, Seek};
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let Some(stamp) = f.stamp else {
        return Err(RereadError::Changed);
    };
    if (stamp.len, stamp.modified) != (meta.len(), meta.modified().ok()) {
        return Err(RereadError::Changed);
    }
    // Size and time can be kept by a copy (`cp -p`, `rsync -t`): the
    // bytes are compared too, in a first pass that holds 64 KiB.
    if digest_of(&mut file)? != stamp.digest {
        return Err(RereadError::Changed);
    }
    file.seek(std::io::SeekFrom::Start(0))?;
    if f.encoding == "UTF-8" {
        let mut text = std::io::BufReader::with_capacity(1 << 16, file);
        if text.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
            text.consume(3);
        }
        return Ok(data_rows(f, Box::new(text)));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(rows_in(f, &bytes))
}

/// The data rows of `bytes`, read before as `f`.
pub fn rows_in(f: &CsvFile, bytes: &[u8]) -> DataRows {
    let text = decode(bytes).0.into_owned().into_bytes();
    data_rows(f, Box::new(std::io::Cursor::new(text)))
}

/// Which column holds each field.
fn map_header(
    header: &[String],
    opts: &CsvOptions,
) -> Result<foldhash::HashMap<Field, usize>, String> {
    let mut columns: foldhash::HashMap<Field, usize> = foldhash::HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let f = fold(h);
        if f.is_empty() {
            continue;
        }
        let field = Field::ALL.iter().copied().find(|field| {
            fold(field.key()) == f
                || aliases(*field).iter().any(|a| fold(a) == f)
                || opts
                    .extra_aliases
                    .get(field)
                    .is_some_and(|v| v.iter().any(|a| fold(a) == f))
        });
        if let Some(field) = field {
            if let Some(prev) = columns.insert(field, i) {
                return Err(format!(
                    "columns `{}` and `{}` both mean {}; remove or rename one",
                    excerpt(header.get(prev).map_or("", String::as_str)),
                    excerpt(h),
                    field.key()
                ));
            }
        }
    }
    let missing: Vec<&str> = [Field::EmployeeId, Field::FirstName]
        .iter()
        .filter(|f| !columns.contains_key(f))
        .map(|f| f.key())
        .collect();
    if !missing.is_empty() {
        let accepted: Vec<String> = [Field::EmployeeId, Field::FirstName]
            .iter()
            .map(|f| format!("{}: {}", f.key(), aliases(*f).join(", ")))
            .collect();
        return Err(format!(
            "no column for {} (found: {}; accepted names: {}; or add `aliases` to the source)",
            missing.join(", "),
            excerpt(&header.join(", ")),
            accepted.join("; ")
        ));
    }
    Ok(columns)
}

fn split(v: &str, seps: &[char]) -> Vec<String> {
    v.split(|c| seps.contains(&c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The row each employee id of a file first appears on. The ids sit in one
/// buffer (string-interner's `StringBackend`: one string, the end of each
/// id, and a table of 4-byte symbols) instead of a `String` each in a
/// `HashMap<String, u64>`, which was some 90 MB of a 1,000,000-row
/// import's peak.
struct FirstSeen {
    ids: string_interner::StringInterner<
        string_interner::backend::StringBackend<string_interner::symbol::SymbolU32>,
        foldhash::fast::RandomState,
    >,
    /// By symbol.
    rows: Vec<u64>,
}

impl FirstSeen {
    fn with_capacity(n: usize) -> FirstSeen {
        FirstSeen {
            ids: string_interner::StringInterner::with_capacity_and_hasher(n, Default::default()),
            rows: Vec::with_capacity(n),
        }
    }

    /// The row `id` appeared on before; `None`, noting that it is on
    /// `row`, if this is its first. One lookup: `StringBackend`'s symbols
    /// count up from 0, so a new id's is the number of rows noted so far.
    fn before(&mut self, id: &str, row: u64) -> Option<u64> {
        use string_interner::Symbol;
        let i = self.ids.get_or_intern(id).to_usize();
        if let Some(first) = self.rows.get(i) {
            return Some(*first);
        }
        self.rows.resize(i, 0);
        self.rows.push(row);
        None
    }
}

/// The longest employee id taken: ids are keys, not text.
const ID_MAX: usize = 128;

fn row_record(
    cells: &csv::StringRecord,
    header: &[String],
    columns: &foldhash::HashMap<Field, usize>,
    origin: Origin,
    first_seen: &mut FirstSeen,
) -> Result<StaffRecord, Vec<RowError>> {
    let get = |f: Field| -> Option<String> {
        columns
            .get(&f)
            .and_then(|i| cells.get(*i))
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
    };
    let row = origin.row.unwrap_or_default();
    let source_id = get(Field::EmployeeId);
    let mut errors = Vec::new();
    let mut err = |field: Option<Field>, message: String| {
        errors.push(RowError {
            file: origin.location.to_string(),
            row: origin.row,
            column: field.map(|f| origin.column(f)),
            message,
            source_id: source_id.clone(),
        });
    };
    if cells.len() > header.len()
        && cells
            .iter()
            .skip(header.len())
            .any(|c| !c.trim().is_empty())
    {
        err(
            None,
            format!(
                "row has {} cells but the header has {}",
                cells.len(),
                header.len()
            ),
        );
    }
    match &source_id {
        None => err(Some(Field::EmployeeId), "employee id is empty".into()),
        Some(id) if id.chars().count() > ID_MAX => err(
            Some(Field::EmployeeId),
            format!(
                "employee id `{}` is longer than {ID_MAX} characters",
                excerpt(id)
            ),
        ),
        Some(id) => {
            if let Some(first) = first_seen.before(id, row) {
                err(
                    Some(Field::EmployeeId),
                    format!("employee id {} already appears on row {first}", excerpt(id)),
                );
            }
        }
    }
    let status = match get(Field::Status).map(|s| fold(&s)).as_deref() {
        None | Some("active" | "current" | "employed") => SourceStatus::Active,
        Some("terminated" | "inactive" | "leaver" | "left" | "disabled") => SourceStatus::Left,
        Some(_) => {
            let v = get(Field::Status).unwrap_or_default();
            err(
                Some(Field::Status),
                format!(
                    "unknown status `{}` (expected active, or terminated/inactive/leaver)",
                    excerpt(&v)
                ),
            );
            SourceStatus::Active
        }
    };
    let mut flag = |f: Field| match get(f) {
        None => None,
        Some(v) => crate::model::parse_bool(&v).or_else(|| {
            err(Some(f), format!("`{}` is not yes or no", excerpt(&v)));
            None
        }),
    };
    let voicemail = flag(Field::Voicemail);
    let force_login = flag(Field::ForceLogin);
    let device = get(Field::Device).and_then(|v| {
        crate::model::DeviceChoice::parse(&v).or_else(|| {
            err(
                Some(Field::Device),
                format!("`{}` is not yes, no, sip, web or none", excerpt(&v)),
            );
            None
        })
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let record = StaffRecord {
        source_id: source_id.unwrap_or_default(),
        first_name: get(Field::FirstName),
        last_name: get(Field::LastName),
        emails: get(Field::Email).map_or_else(Vec::new, |v| split(&v, &[';', ','])),
        department: get(Field::Department),
        site: get(Field::Site),
        extension: get(Field::Extension),
        scope: get(Field::Scope),
        groups: get(Field::Groups).map_or_else(Vec::new, |v| split(&v, &[';', '|'])),
        title: get(Field::Title),
        status,
        caller_id: get(Field::CallerId),
        voicemail,
        device,
        force_login,
        origin,
    };
    Ok(record)
}

#[cfg(test)]
mod tests;
