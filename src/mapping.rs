//! Mapping (pure): a `StaffRecord` plus the configured rules and domain becomes
//! a checked `UserSpec`, or the list of row errors that refuse it.
//!
//! Precedence: a value the record states explicitly (e.g. the `scope` column)
//! wins; otherwise the first matching rule that names the field sets it;
//! otherwise the defaults for the user kind apply.

use crate::config::{DomainConfig, Rule};
use crate::model::{
    one_line, DeviceChoice, DeviceType, Email, Extension, Field, Origin, PhoneNumber, RowError,
    Scope, SourceStatus, StaffRecord, UserFields, UserKind,
};
use serde::{Deserialize, Serialize};

/// Folds control characters in every value of the record to single spaces.
fn fold_controls(r: &mut StaffRecord) {
    for v in [&mut r.source_id]
        .into_iter()
        .chain(r.first_name.as_mut())
        .chain(r.last_name.as_mut())
        .chain(r.department.as_mut())
        .chain(r.site.as_mut())
        .chain(r.extension.as_mut())
        .chain(r.scope.as_mut())
        .chain(r.title.as_mut())
        .chain(r.caller_id.as_mut())
        .chain(r.emails.iter_mut())
        .chain(r.groups.iter_mut())
    {
        one_line(v);
    }
}

/// The first value a matching rule sets for a field.
fn first<T>(rules: &[&Rule], f: impl Fn(&Rule) -> Option<T>) -> Option<T> {
    rules.iter().find_map(|r| f(r))
}

/// What the source wants a PBX user to look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    pub source_id: String,
    /// Spreadsheet row (CSV) for reports; `None` for directory entries.
    pub row: Option<u64>,
    pub file: std::sync::Arc<str>,
    /// Boxed: planning drops or moves each spec's fields as it goes, so
    /// they are freed one by one rather than with the whole array.
    pub fields: Box<UserFields>,
    pub requested_extension: Option<Extension>,
    pub active: bool,
}

struct Errors<'a> {
    origin: &'a Origin,
    source_id: &'a str,
    list: Vec<RowError>,
}

impl Errors<'_> {
    fn push(&mut self, field: Option<Field>, message: impl Into<String>) {
        self.list.push(RowError {
            file: self.origin.location.to_string(),
            row: self.origin.row,
            column: field.map(|f| self.origin.column(f)),
            message: message.into(),
            source_id: (!self.source_id.is_empty()).then(|| self.source_id.to_string()),
        });
    }
}

/// Maps one record. Pure: same inputs, same output. Takes the record by
/// value and moves its strings into the spec: copying them cost a 100k-row
/// import an allocation per field, and the copies were made on another
/// thread than the records, so the allocator could not reuse the freed
/// originals for them.
pub fn map_record(
    mut r: StaffRecord,
    domain: &DomainConfig,
    rules: &[Rule],
) -> Result<UserSpec, Vec<RowError>> {
    // Every value becomes one line of a PBX field, an email header or a
    // page: control characters (a line break typed with Alt+Enter in an
    // Excel cell, a stray NUL) are folded to a space before anything else.
    fold_controls(&mut r);
    let mut errs = Errors {
        origin: &r.origin,
        source_id: &r.source_id,
        list: Vec::new(),
    };
    let matching: Vec<&Rule> = rules.iter().filter(|rule| rule.matches(&r)).collect();

    let kind: UserKind = first(&matching, |rule| rule.kind).unwrap_or(UserKind::Person);
    let scope = match r.scope.as_deref() {
        Some(s) => Scope::parse(s).unwrap_or_else(|e| {
            errs.push(Some(Field::Scope), e.0);
            Scope::BasicUser
        }),
        None => first(&matching, |rule| rule.scope).unwrap_or(if kind.is_person() {
            Scope::BasicUser
        } else {
            Scope::NoPortal
        }),
    };

    if r.first_name.as_deref().is_none_or(str::is_empty) {
        errs.push(Some(Field::FirstName), "first name is required");
    }
    if kind.is_person() && domain.require_last_name && r.last_name.is_none() {
        errs.push(
            Some(Field::LastName),
            "last name is required for people in this domain (set require_last_name = false to allow none)",
        );
    }
    for (field, value) in [
        (Field::FirstName, &r.first_name),
        (Field::LastName, &r.last_name),
    ] {
        if value.as_deref().is_some_and(|v| v.chars().count() > 64) {
            errs.push(Some(field), "longer than 64 characters");
        }
    }

    let mut emails: Vec<Email> = Vec::new();
    for raw in &r.emails {
        match Email::parse(raw) {
            Ok(e) if !emails.contains(&e) => emails.push(e),
            Ok(_) => {}
            Err(e) => errs.push(Some(Field::Email), e.0),
        }
    }

    let requested_extension = match r.extension.as_deref() {
        Some(x) => match Extension::parse(x) {
            Ok(e) => Some(e),
            Err(e) => {
                errs.push(Some(Field::Extension), e.0);
                None
            }
        },
        None => None,
    };

    let caller_id = match r.caller_id.as_deref() {
        Some(c) => match PhoneNumber::parse(c) {
            Ok(n) if domain.numbers.contains(&n) => Some(n),
            Ok(n) => {
                errs.push(
                    Some(Field::CallerId),
                    format!(
                        "{} is not in the number inventory of {}",
                        n.as_str(),
                        domain.name
                    ),
                );
                None
            }
            Err(e) => {
                errs.push(Some(Field::CallerId), e.0);
                None
            }
        },
        None => None,
    };

    let department = r
        .department
        .take()
        .or_else(|| first(&matching, |rule| rule.set_department.clone()));
    let site_name = r
        .site
        .take()
        .or_else(|| first(&matching, |rule| rule.site.clone()));
    // A configured site is written with its configured spelling.
    let site = site_name.map(|s| domain.site(&s).map_or(s, |cfg| cfg.name.clone()));

    let voicemail = r
        .voicemail
        .or_else(|| first(&matching, |rule| rule.voicemail))
        .unwrap_or(kind.is_person());

    let rule_device = first(&matching, |rule| rule.device);
    let default_device = if kind.is_person() {
        Some(DeviceType::Sip)
    } else {
        None
    };
    let device = match r.device {
        Some(DeviceChoice::No) => None,
        Some(DeviceChoice::Yes) => rule_device.flatten().or(Some(DeviceType::Sip)),
        Some(DeviceChoice::Is(t)) => Some(t),
        None => rule_device.unwrap_or(default_device),
    };
    if device.is_some() && kind == UserKind::CallRouting {
        errs.push(
            Some(Field::Device),
            "call-routing users have no phone device",
        );
    }
    // force_login is about Web devices: the record's (or else a rule's)
    // applies when the user's device is `web` and means nothing otherwise.
    // Identity providers send it for whole groups (and compliance checkers
    // for anyone), so a SIP user with it set is not refused.
    let force_login = device == Some(DeviceType::Web)
        && r.force_login
            .or_else(|| first(&matching, |rule| rule.force_login))
            .unwrap_or(false);

    if !errs.list.is_empty() {
        return Err(errs.list);
    }
    Ok(UserSpec {
        source_id: r.source_id,
        row: r.origin.row,
        file: r.origin.location,
        fields: Box::new(UserFields {
            first_name: r.first_name.unwrap_or_default(),
            last_name: r.last_name,
            emails,
            department,
            site,
            scope,
            kind,
            title: r.title,
            caller_id,
            voicemail,
            device,
            force_login,
        }),
        requested_extension,
        active: r.status == SourceStatus::Active,
    })
}

/// What a streaming [`Mapper`] hands on as it maps (see
/// [`Mapper::stream_to`]).
#[derive(Debug)]
pub enum Mapped {
    /// Specs, in the order their records came.
    Specs(Vec<UserSpec>),
    /// A file starts: what follows may be rolled back to here.
    Mark,
    /// The file since the last mark was refused whole: forget its specs.
    Rollback,
}

/// Where a streaming [`Mapper`] sends what it maps.
pub struct MappedSink(Box<dyn FnMut(Mapped) + Send>);

impl MappedSink {
    pub fn new(f: impl FnMut(Mapped) + Send + 'static) -> Self {
        MappedSink(Box::new(f))
    }
}

impl std::fmt::Debug for MappedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MappedSink")
    }
}

/// Specs a streaming mapper sends at a time.
const BATCH: usize = 1024;

/// Maps the records of one read one at a time, as a source reads them, so
/// a read never holds all its records and all their specs at once. A
/// requested extension that an earlier record of the same read already
/// asked for refuses the later record. Shares the domain and owns a copy of
/// the rules, so a source can map on its reader thread. A streaming mapper
/// ([`Mapper::stream_to`]) sends its specs on in batches, so the run plans
/// them while the read goes on and never holds them all either.
#[derive(Debug)]
pub struct Mapper {
    domain: std::sync::Arc<DomainConfig>,
    rules: Vec<Rule>,
    /// Each requested extension: the row that asked first, and its spec's
    /// index in the read.
    first_row: foldhash::HashMap<Extension, (Option<u64>, usize)>,
    specs: Vec<UserSpec>,
    errors: Vec<RowError>,
    sink: Option<MappedSink>,
    /// Specs sent to the sink so far.
    sent: usize,
}

impl Mapper {
    pub fn new(domain: std::sync::Arc<DomainConfig>, rules: &[Rule]) -> Self {
        Mapper {
            domain,
            rules: rules.to_vec(),
            first_row: Default::default(),
            specs: Vec::new(),
            errors: Vec::new(),
            sink: None,
            sent: 0,
        }
    }

    /// Sends specs to `sink` as they are mapped instead of keeping them.
    pub fn stream_to(&mut self, sink: MappedSink) {
        self.sink = Some(sink);
    }

    /// Room for `n` more specs (a source that knows its size up front).
    pub fn reserve(&mut self, n: usize) {
        // Streamed specs are planned and packed as they come. Exact: a
        // second, small file must not double a large first one.
        if self.sink.is_none() {
            self.specs.reserve_exact(n);
        }
    }

    fn flush(&mut self) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        if !self.specs.is_empty() {
            let batch = std::mem::replace(&mut self.specs, Vec::with_capacity(BATCH));
            self.sent += batch.len();
            (sink.0)(Mapped::Specs(batch));
        }
    }

    /// Maps one record: its spec is kept, or its row errors are.
    pub fn push(&mut self, r: StaffRecord) {
        let origin = r.origin.clone();
        match map_record(r, &self.domain, &self.rules) {
            Ok(spec) => {
                if let Some(ext) = &spec.requested_extension {
                    if let Some((first, _)) = self.first_row.get(ext) {
                        let at = first.map_or(String::new(), |row| format!(" on row {row}"));
                        self.errors.push(RowError {
                            file: spec.file.to_string(),
                            row: spec.row,
                            column: Some(origin.column(Field::Extension)),
                            message: format!("extension {ext} is already requested{at}"),
                            source_id: Some(spec.source_id),
                        });
                        return;
                    }
                    let index = self.sent + self.specs.len();
                    self.first_row.insert(ext.clone(), (spec.row, index));
                }
                self.specs.push(spec);
                if self.sink.is_some() && self.specs.len() >= BATCH {
                    self.flush();
                }
            }
            Err(mut e) => self.errors.append(&mut e),
        }
    }

    /// Maps records a source already holds, dropping each once mapped.
    pub fn push_all(&mut self, records: Vec<StaffRecord>) {
        self.reserve(records.len());
        for r in records {
            self.push(r);
        }
    }

    /// Where the mapping stands, to [`Mapper::rollback`] to.
    pub fn mark(&mut self) -> MapMark {
        self.flush();
        if let Some(sink) = &mut self.sink {
            (sink.0)(Mapped::Mark);
        }
        MapMark {
            specs: self.sent + self.specs.len(),
            errors: self.errors.len(),
        }
    }

    /// Forgets what was mapped since `mark` (a file refused whole after
    /// some of its records were mapped): its specs, its refusals, and the
    /// extensions its specs requested.
    pub fn rollback(&mut self, mark: MapMark) {
        let from = mark.specs.saturating_sub(self.sent).min(self.specs.len());
        self.specs.truncate(from);
        self.first_row.retain(|_, (_, index)| *index < mark.specs);
        self.errors.truncate(mark.errors);
        if let Some(sink) = &mut self.sink {
            (sink.0)(Mapped::Rollback);
            self.sent = self.sent.min(mark.specs);
        }
    }

    /// The specs in the order their records came (none when streaming:
    /// the last are sent now), and the refusals.
    pub fn finish(mut self) -> (Vec<UserSpec>, Vec<RowError>) {
        self.flush();
        // Room reserved for blank, refused or rolled-back rows is returned.
        self.specs.shrink_to_fit();
        (self.specs, self.errors)
    }
}

/// A point in a [`Mapper`]'s work (see [`Mapper::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct MapMark {
    specs: usize,
    errors: usize,
}

/// Maps every record of one read (see [`Mapper`]; this copies the domain,
/// which a run shares instead). Takes the records by
/// value: each is dropped once mapped, so its strings are reused for the
/// specs instead of both living at once.
pub fn map_all(
    records: Vec<StaffRecord>,
    domain: &DomainConfig,
    rules: &[Rule],
) -> (Vec<UserSpec>, Vec<RowError>) {
    let mut m = Mapper::new(std::sync::Arc::new(domain.clone()), rules);
    m.push_all(records);
    m.finish()
}

#[cfg(test)]
mod tests;
