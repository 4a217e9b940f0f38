//! Planning (pure): what the source wants (`UserSpec`s) against what the
//! store holds, keyed by source + source id, becomes a `Plan` of actions:
//! create, update (with field diffs), unchanged, disable, re-enable,
//! delete (after `delete_after_days`) and conflict, with billable impact and
//! the safety-threshold verdict. A plan serialises to JSON for review
//! (`import --dry-run --plan-out`) and is applied exactly (`apply`).

use crate::config::{DomainConfig, Limits, SyncMode};
use crate::mapping::UserSpec;
use crate::model::{Extension, RowError, RowRef, Status, StoredUser, UserFields};
use crate::numbering::{check_requested, Allocator};
use fixedbitset::FixedBitSet;
use foldhash::{HashSet, HashSetExt};
use serde::{Deserialize, Serialize};

/// 2: `refused` names the limit and its figures instead of a sentence.
pub const PLAN_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub source: String,
    pub domain: String,
    pub mode: SyncMode,
    /// False when a file was refused whole: such a run disables no one.
    pub complete: bool,
    /// The domain revision the plan was computed against.
    pub base_revision: i64,
    pub created_at: i64,
    pub files: Vec<String>,
    pub actions: Actions,
    pub errors: Vec<RowError>,
    pub billable: Billable,
    /// Set when a safety threshold refuses the run.
    pub refused: Option<Refusal>,
    /// Notes for the operator (e.g. an extension that was replaced).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billable {
    pub devices: u64,
    pub call_center_seats: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: ChangedField,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableReason {
    /// Full sync: the user is no longer in the source.
    Absent,
    /// The source marks the user as left (terminated, disabled account).
    Left,
}

/// In place of a user's fields that were not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    /// Reads nothing: only ever the last field of what it is decoded in,
    /// whose remaining bytes are left unread.
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Skipped, D::Error> {
        Ok(Skipped)
    }
}

/// A planned action. `F` is the new or changed user's fields: a report of
/// the plan needs none of them, and [`actions::Actions::briefs`] reads a
/// plan's actions with [`Skipped`] instead, without decoding them (most of
/// a create's bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action<F = Box<UserFields>> {
    Create {
        source_id: String,
        at: RowRef,
        extension: Extension,
        /// Why the row got another extension than it asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        fields: F,
    },
    Update {
        user_id: i64,
        source_id: String,
        at: RowRef,
        extension: Extension,
        changes: Vec<Change>,
        /// The user has no device yet and the spec wants one.
        add_device: bool,
        fields: F,
    },
    Reenable {
        user_id: i64,
        source_id: String,
        at: RowRef,
        extension: Extension,
        changes: Vec<Change>,
        add_device: bool,
        fields: F,
    },
    Disable {
        user_id: i64,
        source_id: String,
        at: Option<RowRef>,
        extension: Extension,
        reason: DisableReason,
    },
    Delete {
        user_id: i64,
        source_id: String,
        extension: Extension,
    },
    Unchanged {
        source_id: String,
        at: RowRef,
        extension: Option<Extension>,
        note: Option<String>,
    },
    Conflict {
        source_id: String,
        at: RowRef,
        reason: String,
    },
}

impl<F> Action<F> {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Update { .. } => "update",
            Action::Reenable { .. } => "reenable",
            Action::Disable { .. } => "disable",
            Action::Delete { .. } => "delete",
            Action::Unchanged { .. } => "unchanged",
            Action::Conflict { .. } => "conflict",
        }
    }

    pub fn source_id(&self) -> &str {
        match self {
            Action::Create { source_id, .. }
            | Action::Update { source_id, .. }
            | Action::Reenable { source_id, .. }
            | Action::Disable { source_id, .. }
            | Action::Delete { source_id, .. }
            | Action::Unchanged { source_id, .. }
            | Action::Conflict { source_id, .. } => source_id,
        }
    }

    /// The source row the action came from (none for a user the source no
    /// longer has).
    pub fn at(&self) -> Option<&RowRef> {
        match self {
            Action::Create { at, .. }
            | Action::Update { at, .. }
            | Action::Reenable { at, .. }
            | Action::Unchanged { at, .. }
            | Action::Conflict { at, .. } => Some(at),
            Action::Disable { at, .. } => at.as_ref(),
            Action::Delete { .. } => None,
        }
    }

    /// Whether applying the action writes to the store.
    pub fn writes(&self) -> bool {
        !matches!(self, Action::Unchanged { .. } | Action::Conflict { .. })
    }
}

/// Everything the planner looks at.
pub struct PlanInput<'a> {
    pub source: &'a str,
    pub mode: SyncMode,
    pub delete_after_days: Option<u32>,
    pub domain: &'a DomainConfig,
    pub limits: &'a Limits,
    pub specs: Vec<UserSpec>,
    pub errors: Vec<RowError>,
    pub complete: bool,
    /// A changed-only directory read: it disables no one, not even an
    /// account the directory marks disabled; the next full read does.
    pub changed_only: bool,
    pub stored: &'a [StoredUser],
    pub base_revision: i64,
    pub now: i64,
    pub files: Vec<String>,
}

/// The store's users as the planner looks them up.
struct Stored<'a> {
    /// Every user of the domain, by extension.
    by_ext: Index<'a>,
    /// This source's users, by source id.
    owned: Index<'a>,
}

impl<'a> Stored<'a> {
    fn index(stored: &'a [StoredUser], source: &'a str) -> Stored<'a> {
        Stored {
            by_ext: Index::new(stored, Key::Extension),
            owned: Index::new(stored, Key::SourceIdOf(source)),
        }
    }
}

/// A run's inputs other than its specs.
pub struct PlanContext<'a> {
    pub source: &'a str,
    pub mode: SyncMode,
    pub delete_after_days: Option<u32>,
    pub domain: &'a DomainConfig,
    pub limits: &'a Limits,
    /// See [`PlanInput::changed_only`].
    pub changed_only: bool,
    pub stored: &'a [StoredUser],
    pub base_revision: i64,
    pub now: i64,
}

/// Plans a read spec by spec, as its records are mapped, so that a run
/// never holds all its specs: an unchanged user's spec is dropped as soon
/// as it is planned. [`make_plan`] is the same over specs already held.
pub struct Planner<'a> {
    cx: PlanContext<'a>,
    stored: Stored<'a>,
    alloc: Allocator,
    claimed_alpha: HashSet<String>,
    /// This source's users that the read names, by position in the loaded
    /// slice: a bit each (a `HashSet<i64>` of ids was 19 MB at 1,000,000
    /// users, 28 MB while it grew).
    seen: FixedBitSet,
    /// `seen` at the mark: a rollback goes back to it.
    seen_at_mark: FixedBitSet,
    specs: usize,
    /// Accounts disabled in the directory that a changed-only read keeps.
    held: usize,
    /// Packed as they are planned. New users waiting for a free extension
    /// get it once the whole read is planned (see `extension`).
    actions: Actions,
    /// Those new users, in order.
    pending: Vec<Pending>,
    /// Those whose row asked for an extension it cannot have: (their place
    /// in `pending`, the row, why).
    noted: Vec<(usize, String, String)>,
    /// What the safety thresholds count, as actions are planned.
    tally: Tally,
    mark: PlanMark,
}

/// What a new user waiting for a free extension needs of its row.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The site whose ranges it comes from (`extension::site_ranges`).
    site: Option<u32>,
    device: bool,
    seat: bool,
}

/// Where [`Planner::rollback`] goes back to.
#[derive(Debug, Clone, Copy, Default)]
struct PlanMark {
    actions: ActionsMark,
    pending: usize,
    noted: usize,
    tally: Tally,
    specs: usize,
    held: usize,
}

impl<'a> Planner<'a> {
    pub fn new(cx: PlanContext<'a>) -> Planner<'a> {
        let stored = Stored::index(cx.stored, cx.source);
        let alloc = Allocator::new(cx.stored.iter().filter_map(StoredUser::extension_number));
        let seen = FixedBitSet::with_capacity(cx.stored.len());
        Planner {
            cx,
            stored,
            alloc,
            claimed_alpha: HashSet::new(),
            seen,
            seen_at_mark: FixedBitSet::new(),
            specs: 0,
            held: 0,
            actions: Actions::new(),
            pending: Vec::new(),
            noted: Vec::new(),
            tally: Tally::default(),
            mark: PlanMark::default(),
        }
    }

    /// Plans one spec (in the order the read gives them).
    pub fn add(&mut self, spec: UserSpec) {
        self.specs += 1;
        let d = self.cx.domain;
        let at = RowRef {
            file: spec.file.clone(),
            row: spec.row,
        };
        let owned = self.stored.owned.find(spec.source_id.as_str());
        if let Some((i, user)) = owned {
            self.seen.insert(i);
            let (action, kept) = known_user(user, spec, at, d, self.cx.changed_only);
            self.held += usize::from(kept);
            self.push(action);
            return;
        }
        if !spec.active {
            self.push(Action::Unchanged {
                source_id: spec.source_id,
                at,
                extension: None,
                note: Some("marked as left and not in the PBX: nothing to do".into()),
            });
            return;
        }
        let requested = requested_extension(
            &spec,
            d,
            &self.stored.by_ext,
            &mut self.alloc,
            &mut self.claimed_alpha,
        );
        let source_id = spec.source_id;
        let action = match requested {
            Requested::Granted(extension) => Action::Create {
                source_id,
                at,
                extension,
                fields: spec.fields,
                note: None,
            },
            Requested::Conflict(reason) => Action::Conflict {
                source_id,
                at,
                reason,
            },
            Requested::Free { note } => {
                let f = &spec.fields;
                if let Some(why) = &note {
                    let row = describe(&at, &source_id);
                    self.noted.push((self.pending.len(), row, why.clone()));
                }
                self.pending.push(Pending {
                    site: site_ranges(f.site.as_deref(), d),
                    device: f.device.is_some(),
                    seat: f.scope.is_billable(),
                });
                self.actions.push_pending(source_id, at, spec.fields, note);
                return;
            }
        };
        self.push(action);
    }

    fn push(&mut self, a: Action) {
        self.tally.add(&a, &self.stored.owned);
        self.actions.push(a);
    }

    /// Remembers where planning stands (the start of a file).
    pub fn mark(&mut self) {
        self.seen_at_mark.clone_from(&self.seen);
        self.mark = PlanMark {
            actions: self.actions.mark(),
            pending: self.pending.len(),
            noted: self.noted.len(),
            tally: self.tally,
            specs: self.specs,
            held: self.held,
        };
    }

    /// Forgets what was planned since [`Planner::mark`] (a file refused
    /// whole after some of its rows were planned): its actions, the users
    /// they named and the extensions they asked for.
    pub fn rollback(&mut self) {
        let m = self.mark;
        self.pending.truncate(m.pending);
        self.noted.truncate(m.noted);
        self.tally = m.tally;
        self.seen.clone_from(&self.seen_at_mark);
        for e in self.actions.entries_from(m.actions) {
            let Entry::Action(a) = e else {
                continue;
            };
            if self.stored.owned.get(a.source_id()).is_some() {
                continue;
            }
            if let Action::Create { extension, .. } = &a {
                match extension.number() {
                    Some(n) => self.alloc.release(n),
                    None => {
                        self.claimed_alpha.remove(extension.as_str());
                    }
                }
            }
        }
        self.actions.truncate(m.actions);
        self.specs = m.specs;
        self.held = m.held;
    }

    /// The plan: free extensions handed out, this source's users the read
    /// did not name, billable impact and the safety verdict.
    pub fn finish(mut self, errors: Vec<RowError>, complete: bool, files: Vec<String>) -> Plan {
        let d = self.cx.domain;
        let mut notes = Vec::new();
        // Free numbers in row order, once every request is known.
        let (alloc, tally) = (&mut self.alloc, &mut self.tally);
        let mut noted = self.noted.iter().peekable();
        let numbers = self.pending.iter().enumerate().map(|(i, p)| {
            let n = free_number(p.site, d, alloc);
            let asked = noted.next_if(|(j, _, _)| *j == i);
            if let Ok(n) = &n {
                tally.billable.devices += u64::from(p.device);
                tally.billable.call_center_seats += u64::from(p.seat);
                if let Some((_, row, why)) = asked {
                    let ext = Extension::from_number(*n);
                    notes.push(format!("{row}: {}", assigned_note(why, &ext)));
                }
            }
            n
        });
        self.actions.assign(numbers);
        let owned = &self.stored.owned;
        let (mut actions, mut tally) = (self.actions, self.tally);

        // Only a complete, non-empty full read may disable anyone for being absent.
        let cx = &self.cx;
        let read_counts = cx.mode == SyncMode::Full && complete && self.specs > 0;
        let absent = Absent {
            refused: &errors,
            delete_after_days: cx.delete_after_days,
            now: cx.now,
            read_counts,
        };
        absent.plan(&self.stored, &self.seen, |a| {
            tally.add(&a, owned);
            actions.push(a);
        });

        if self.held > 0 {
            notes.push(format!(
                "{} accounts are disabled in the directory: a changed-only read disables no one, the next full read will",
                self.held
            ));
        }
        let active_owned = owned
            .values()
            .filter(|u| u.status == Status::Active)
            .count() as u64;
        let refused = safety_verdict(&tally, active_owned, cx.limits);
        let billable = tally.billable;
        Plan {
            format: PLAN_FORMAT,
            source: cx.source.to_string(),
            domain: d.name.clone(),
            mode: cx.mode,
            complete,
            base_revision: cx.base_revision,
            created_at: cx.now,
            files,
            actions,
            errors,
            billable,
            refused,
            notes,
        }
    }
}

pub fn make_plan(mut input: PlanInput<'_>) -> Plan {
    let specs = std::mem::take(&mut input.specs);
    let cx = PlanContext {
        source: input.source,
        mode: input.mode,
        delete_after_days: input.delete_after_days,
        domain: input.domain,
        limits: input.limits,
        changed_only: input.changed_only,
        stored: input.stored,
        base_revision: input.base_revision,
        now: input.now,
    };
    let mut planner = Planner::new(cx);
    for spec in specs {
        planner.add(spec);
    }
    planner.finish(input.errors, input.complete, input.files)
}

/// What to do with a user this source already owns, and whether it is an
/// account disabled in the directory that a changed-only read keeps.
fn known_user(
    user: &StoredUser,
    spec: UserSpec,
    at: RowRef,
    d: &DomainConfig,
    changed_only: bool,
) -> (Action, bool) {
    let source_id = spec.source_id;
    // A request the numbering plan never allows (reserved, outside the
    // ranges) was answered with another extension at creation: asking
    // again is the same file, not a conflict.
    let mut kept_note = None;
    if let Some(req) = &spec.requested_extension {
        let never =
            req.number().is_some() && check_requested(req, &d.numbering, &d.reserved).is_err();
        if req.as_str() != user.extension() && never {
            kept_note = Some(format!(
                "asks for extension {req}, which the numbering plan does not allow; keeps {}",
                user.extension()
            ));
        } else if req.as_str() != user.extension() {
            let reason = format!(
                "extension can never be changed: the user has {}, the source asks for {req}",
                user.extension()
            );
            return (
                Action::Conflict {
                    source_id,
                    at,
                    reason,
                },
                false,
            );
        }
    }
    // Most users of a run are unchanged: compared packed, unpacked only
    // when something differs.
    let old = (!same(user, &spec.fields)).then(|| user.fields());
    let changes = old
        .as_ref()
        .map(|old| diff(old, &spec.fields))
        .unwrap_or_default();
    let add_device = user.device().is_none() && spec.fields.device.is_some();
    let fields = || {
        Box::new(match &old {
            Some(old) => merged(old, &spec.fields),
            None => merged(&user.fields(), &spec.fields),
        })
    };
    let extension = user.extension_value();
    let action = match (spec.active, user.status) {
        (false, Status::Active) if changed_only => {
            let note = "disabled in the directory; the next full read disables it";
            let kept = Action::Unchanged {
                source_id,
                at,
                extension: Some(extension),
                note: Some(note.into()),
            };
            return (kept, true);
        }
        (false, Status::Active) => Action::Disable {
            user_id: user.id,
            source_id,
            at: Some(at),
            extension,
            reason: DisableReason::Left,
        },
        (false, Status::Disabled) => Action::Unchanged {
            source_id,
            at,
            extension: Some(extension),
            note: None,
        },
        (true, Status::Disabled) => Action::Reenable {
            user_id: user.id,
            source_id,
            at,
            extension,
            changes,
            fields: fields(),
            add_device,
        },
        (true, Status::Active) if changes.is_empty() => Action::Unchanged {
            source_id,
            at,
            extension: Some(extension),
            note: kept_note,
        },
        (true, Status::Active) => Action::Update {
            user_id: user.id,
            source_id,
            at,
            extension,
            changes,
            fields: fields(),
            add_device,
        },
    };
    (action, false)
}

/// This source's users the read did not name, in id order: disabled when
/// the read counts, deleted once disabled for `delete_after_days`. A user
/// whose row was refused is not absent.
struct Absent<'a> {
    /// Rows refused: their users are not absent.
    refused: &'a [RowError],
    delete_after_days: Option<u32>,
    now: i64,
    /// Whether the read may disable the absent.
    read_counts: bool,
}

impl Absent<'_> {
    fn plan(&self, stored: &Stored<'_>, seen: &FixedBitSet, mut push: impl FnMut(Action)) {
        let (input, read_counts) = (self, self.read_counts);
        let refused_ids: HashSet<&str> = self
            .refused
            .iter()
            .filter_map(|e| e.source_id.as_deref())
            .collect();
        for (i, u) in stored.owned.by_id() {
            let sid = u.source_id().unwrap_or_default();
            if seen.contains(i) || refused_ids.contains(sid) {
                continue;
            }
            match u.status {
                Status::Active if read_counts => push(Action::Disable {
                    user_id: u.id,
                    source_id: sid.to_string(),
                    at: None,
                    extension: u.extension_value(),
                    reason: DisableReason::Absent,
                }),
                Status::Disabled => {
                    let expired = input
                        .delete_after_days
                        .zip(u.disabled_at())
                        .is_some_and(|(days, at)| input.now - at >= i64::from(days) * 86_400);
                    if expired {
                        push(Action::Delete {
                            user_id: u.id,
                            source_id: sid.to_string(),
                            extension: u.extension_value(),
                        });
                    }
                }
                Status::Active => {}
            }
        }
    }
}

fn describe(at: &RowRef, sid: &str) -> String {
    match at.row {
        Some(r) => format!("{}, row {r} ({sid})", at.file),
        None => format!("{} ({sid})", at.file),
    }
}

mod actions;
mod diff;
mod extension;
mod index;
mod safety;
#[cfg(test)]
mod tests;

pub use actions::{Actions, Counts};
use actions::{ActionsMark, Entry};
pub use diff::{diff, ChangedField};
use diff::{merged, same};
use extension::{assigned_note, free_number, requested_extension, site_ranges, Requested};
use index::{Index, Key};
pub use safety::Refusal;
use safety::{safety_verdict, Tally};
