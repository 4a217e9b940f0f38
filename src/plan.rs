//! Planning (pure): what the source wants (`UserSpec`s) against what the
//! store holds, keyed by source + source id, becomes a `Plan` of actions:
//! create, update (with field diffs), unchanged, disable, re-enable,
//! delete (after `delete_after_days`) and conflict, with billable impact and
//! the safety-threshold verdict. A plan serialises to JSON for review
//! (`import --dry-run --plan-out`) and is applied exactly (`apply`).

use crate::config::{DomainConfig, Limits, SyncMode};
use crate::mapping::{UserFields, UserSpec};
use crate::model::{Extension, RowError, Status};
use crate::numbering::{check_requested, Allocator};
use crate::store::StoredUser;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

pub const PLAN_FORMAT: u32 = 1;

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
    pub actions: Vec<Action>,
    pub errors: Vec<RowError>,
    pub billable: Billable,
    /// Set when a safety threshold refuses the run.
    pub refused: Option<String>,
    /// Notes for the operator (e.g. an extension that was replaced).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billable {
    pub devices: u64,
    pub call_center_seats: u64,
}

/// Where a row came from, for the per-row result report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRef {
    /// Shared by every row of the file.
    pub file: std::sync::Arc<str>,
    pub row: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Create {
        source_id: String,
        at: RowRef,
        extension: Extension,
        fields: Box<UserFields>,
    },
    Update {
        user_id: i64,
        source_id: String,
        at: RowRef,
        extension: String,
        changes: Vec<Change>,
        fields: Box<UserFields>,
        /// The user has no device yet and the spec wants one.
        add_device: bool,
    },
    Reenable {
        user_id: i64,
        source_id: String,
        at: RowRef,
        extension: String,
        changes: Vec<Change>,
        fields: Box<UserFields>,
        add_device: bool,
    },
    Disable {
        user_id: i64,
        source_id: String,
        at: Option<RowRef>,
        extension: String,
        reason: DisableReason,
    },
    Delete {
        user_id: i64,
        source_id: String,
        extension: String,
    },
    Unchanged {
        source_id: String,
        at: RowRef,
        extension: Option<String>,
        note: Option<String>,
    },
    Conflict {
        source_id: String,
        at: RowRef,
        reason: String,
    },
}

impl Action {
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

/// Field-by-field differences from `old` to `new`, as strings for reports.
/// Values are compared as they are and only rendered when they differ: a
/// no-op sync of 100,000 users compares a million fields.
pub fn diff(old: &UserFields, new: &UserFields) -> Vec<Change> {
    fn text<T: ToString>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(ToString::to_string)
    }
    let mut out = Vec::new();
    let mut push = |field: &str, from: Option<String>, to: Option<String>| {
        out.push(Change {
            field: field.to_string(),
            from,
            to,
        });
    };
    let emails = |f: &UserFields| {
        (!f.emails.is_empty()).then(|| {
            f.emails
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    if old.first_name != new.first_name {
        push(
            "first_name",
            Some(old.first_name.clone()),
            Some(new.first_name.clone()),
        );
    }
    if old.last_name != new.last_name {
        push("last_name", text(&old.last_name), text(&new.last_name));
    }
    if old.emails != new.emails {
        push("emails", emails(old), emails(new));
    }
    if old.department != new.department {
        push("department", text(&old.department), text(&new.department));
    }
    if old.site != new.site {
        push("site", text(&old.site), text(&new.site));
    }
    if old.scope != new.scope {
        push(
            "scope",
            Some(old.scope.to_string()),
            Some(new.scope.to_string()),
        );
    }
    if old.kind != new.kind {
        push(
            "kind",
            Some(old.kind.to_string()),
            Some(new.kind.to_string()),
        );
    }
    if old.title != new.title {
        push("title", text(&old.title), text(&new.title));
    }
    // A blank caller ID keeps the one the user has (often the site default).
    if new.caller_id.is_some() && old.caller_id != new.caller_id {
        let cid = |f: &UserFields| f.caller_id.as_ref().map(|c| c.as_str().to_string());
        push("caller_id", cid(old), cid(new));
    }
    if old.voicemail != new.voicemail {
        push(
            "voicemail",
            Some(old.voicemail.to_string()),
            Some(new.voicemail.to_string()),
        );
    }
    // Devices are only ever added or retyped by a sync, never removed.
    if new.device.is_some() && new.device != old.device {
        push("device", text(&old.device), text(&new.device));
    }
    out
}

/// The fields to write: the new ones, but a device and a caller ID the user
/// already has are kept when the source says nothing about them.
fn merged(old: &UserFields, new: &UserFields) -> UserFields {
    let mut f = new.clone();
    if f.device.is_none() {
        f.device = old.device;
    }
    if f.caller_id.is_none() {
        f.caller_id.clone_from(&old.caller_id);
    }
    f
}

pub fn make_plan(input: PlanInput<'_>) -> Plan {
    let d = input.domain;
    let mut notes = Vec::new();
    let mut by_ext: HashMap<&str, &StoredUser> = HashMap::new();
    let mut owned: HashMap<&str, &StoredUser> = HashMap::new();
    for u in input.stored {
        by_ext.insert(u.extension.as_str(), u);
        if u.source.as_deref() == Some(input.source) {
            if let Some(id) = u.source_id.as_deref() {
                owned.insert(id, u);
            }
        }
    }
    let mut alloc = Allocator::new(
        input
            .stored
            .iter()
            .filter_map(|u| u.extension.parse::<u64>().ok()),
    );
    let mut claimed_alpha: HashSet<String> = HashSet::new();
    // Ids of this source's users that the read names.
    let mut seen: HashSet<i64> = HashSet::new();
    let read_anyone = !input.specs.is_empty();
    let mut held = 0usize;
    let mut actions = Vec::with_capacity(input.specs.len());

    for spec in input.specs {
        let at = RowRef {
            file: spec.file.clone(),
            row: spec.row,
        };
        let sid = spec.source_id.clone();
        if let Some(user) = owned.get(spec.source_id.as_str()) {
            seen.insert(user.id);
            if let Some(req) = &spec.requested_extension {
                if req.as_str() != user.extension {
                    actions.push(Action::Conflict {
                        source_id: sid,
                        at,
                        reason: format!(
                            "extension can never be changed: the user has {}, the source asks for {req}",
                            user.extension
                        ),
                    });
                    continue;
                }
            }
            let changes = diff(&user.fields, &spec.fields);
            let add_device = user.fields.device.is_none() && spec.fields.device.is_some();
            let fields = || merged(&user.fields, &spec.fields);
            let ext = user.extension.clone();
            actions.push(match (spec.active, user.status) {
                (false, Status::Active) if input.changed_only => {
                    held += 1;
                    Action::Unchanged {
                        source_id: sid,
                        at,
                        extension: Some(ext),
                        note: Some(
                            "disabled in the directory; the next full read disables it".into(),
                        ),
                    }
                }
                (false, Status::Active) => Action::Disable {
                    user_id: user.id,
                    source_id: sid,
                    at: Some(at),
                    extension: ext,
                    reason: DisableReason::Left,
                },
                (false, Status::Disabled) => Action::Unchanged {
                    source_id: sid,
                    at,
                    extension: Some(ext),
                    note: None,
                },
                (true, Status::Disabled) => Action::Reenable {
                    user_id: user.id,
                    source_id: sid,
                    at,
                    extension: ext,
                    changes,
                    fields: Box::new(fields()),
                    add_device,
                },
                (true, Status::Active) if changes.is_empty() => Action::Unchanged {
                    source_id: sid,
                    at,
                    extension: Some(ext),
                    note: None,
                },
                (true, Status::Active) => Action::Update {
                    user_id: user.id,
                    source_id: sid,
                    at,
                    extension: ext,
                    changes,
                    fields: Box::new(fields()),
                    add_device,
                },
            });
            continue;
        }
        if !spec.active {
            actions.push(Action::Unchanged {
                source_id: sid,
                at,
                extension: None,
                note: Some("marked as left and not in the PBX: nothing to do".into()),
            });
            continue;
        }
        match pick_extension(&spec, d, &by_ext, &mut alloc, &mut claimed_alpha) {
            Ok((extension, note)) => {
                if let Some(n) = note {
                    notes.push(format!("{}: {n}", describe(&at, &sid)));
                }
                actions.push(Action::Create {
                    source_id: sid,
                    at,
                    extension,
                    fields: Box::new(spec.fields),
                });
            }
            Err(reason) => actions.push(Action::Conflict {
                source_id: sid,
                at,
                reason,
            }),
        }
    }

    // Absent users: only a complete, non-empty full read may disable anyone;
    // a refused row's user is not absent.
    let refused_ids: HashSet<&str> = input
        .errors
        .iter()
        .filter_map(|e| e.source_id.as_deref())
        .collect();
    let read_counts = input.mode == SyncMode::Full && input.complete && read_anyone;
    let mut owned_sorted: Vec<&&StoredUser> = owned.values().collect();
    owned_sorted.sort_by_key(|u| u.id);
    for u in owned_sorted {
        let sid = u.source_id.as_deref().unwrap_or_default();
        if seen.contains(&u.id) || refused_ids.contains(sid) {
            continue;
        }
        match u.status {
            Status::Active if read_counts => actions.push(Action::Disable {
                user_id: u.id,
                source_id: sid.to_string(),
                at: None,
                extension: u.extension.clone(),
                reason: DisableReason::Absent,
            }),
            Status::Disabled => {
                let expired = input
                    .delete_after_days
                    .zip(u.disabled_at)
                    .is_some_and(|(days, at)| input.now - at >= i64::from(days) * 86_400);
                if expired {
                    actions.push(Action::Delete {
                        user_id: u.id,
                        source_id: sid.to_string(),
                        extension: u.extension.clone(),
                    });
                }
            }
            Status::Active => {}
        }
    }

    if held > 0 {
        notes.push(format!(
            "{held} accounts are disabled in the directory: a changed-only read disables no one, the next full read will"
        ));
    }
    let billable = count_billable(&actions, &owned);
    let active_owned = owned
        .values()
        .filter(|u| u.status == Status::Active)
        .count() as u64;
    let refused = safety_verdict(&actions, active_owned, billable, input.limits);
    Plan {
        format: PLAN_FORMAT,
        source: input.source.to_string(),
        domain: d.name.clone(),
        mode: input.mode,
        complete: input.complete,
        base_revision: input.base_revision,
        created_at: input.now,
        files: input.files,
        actions,
        errors: input.errors,
        billable,
        refused,
        notes,
    }
}

fn describe(at: &RowRef, sid: &str) -> String {
    match at.row {
        Some(r) => format!("{}, row {r} ({sid})", at.file),
        None => format!("{} ({sid})", at.file),
    }
}

/// The row's own extension if valid, in the plan, not reserved and free;
/// otherwise the lowest free number in the site's (else the domain's) ranges.
/// A requested extension held by another user is a conflict.
fn pick_extension(
    spec: &UserSpec,
    d: &DomainConfig,
    by_ext: &HashMap<&str, &StoredUser>,
    alloc: &mut Allocator,
    claimed_alpha: &mut HashSet<String>,
) -> Result<(Extension, Option<String>), String> {
    let mut note = None;
    if let Some(req) = &spec.requested_extension {
        if let Some(holder) = by_ext.get(req.as_str()) {
            let owner = match (&holder.source, &holder.source_id) {
                (Some(s), Some(id)) => format!("{s} id {id}"),
                _ => "a user created by hand".to_string(),
            };
            return Err(format!("extension {req} is already used by {owner}"));
        }
        match req.number() {
            None => {
                if claimed_alpha.insert(req.as_str().to_string()) {
                    return Ok((req.clone(), None));
                }
                return Err(format!("extension {req} is already used in this run"));
            }
            Some(n) => match check_requested(req, &d.numbering, &d.reserved) {
                Ok(()) if alloc.is_taken(n) => {
                    return Err(format!("extension {req} is already used in this run"))
                }
                Ok(()) => {
                    alloc.take(n);
                    return Ok((req.clone(), None));
                }
                Err(why) => note = Some(format!("{why}; a free extension was assigned instead")),
            },
        }
    }
    let site_ranges = spec
        .fields
        .site
        .as_deref()
        .and_then(|s| d.site(s))
        .map(|s| s.numbering.as_slice());
    let ranges = match site_ranges {
        Some(r) if !r.is_empty() => r,
        _ => d.numbering.as_slice(),
    };
    match alloc.allocate(ranges, &d.reserved) {
        Some(n) => {
            let ext = Extension::from_number(n);
            Ok((ext.clone(), note.map(|n| format!("{n} ({ext})"))))
        }
        None => {
            let r: Vec<String> = ranges.iter().map(ToString::to_string).collect();
            Err(format!("no free extension left in {}", r.join(", ")))
        }
    }
}

fn count_billable(actions: &[Action], owned: &HashMap<&str, &StoredUser>) -> Billable {
    let mut b = Billable::default();
    for a in actions {
        match a {
            Action::Create { fields, .. } => {
                b.devices += u64::from(fields.device.is_some());
                b.call_center_seats += u64::from(fields.scope.is_billable());
            }
            Action::Update {
                fields,
                add_device,
                source_id,
                ..
            }
            | Action::Reenable {
                fields,
                add_device,
                source_id,
                ..
            } => {
                b.devices += u64::from(*add_device);
                let was_billed = owned
                    .get(source_id.as_str())
                    .is_some_and(|u| u.status == Status::Active && u.fields.scope.is_billable());
                b.call_center_seats += u64::from(fields.scope.is_billable() && !was_billed);
            }
            _ => {}
        }
    }
    b
}

fn safety_verdict(
    actions: &[Action],
    active_owned: u64,
    billable: Billable,
    limits: &Limits,
) -> Option<String> {
    let disables = actions
        .iter()
        .filter(|a| matches!(a, Action::Disable { .. }))
        .count() as u64;
    if disables > limits.max_disable {
        return Some(format!(
            "the run would disable {disables} users, more than limits.max_disable = {}",
            limits.max_disable
        ));
    }
    if disables > 0 && active_owned > 0 {
        let pct = disables as f64 * 100.0 / active_owned as f64;
        if pct > f64::from(limits.max_disable_percent) {
            return Some(format!(
                "the run would disable {disables} of {active_owned} active users ({pct:.1}%), more than limits.max_disable_percent = {}%",
                limits.max_disable_percent
            ));
        }
    }
    let total = billable.devices + billable.call_center_seats;
    if total > limits.max_billable {
        return Some(format!(
            "the run would add {} devices and {} call-center seats ({total} billable), more than limits.max_billable = {}",
            billable.devices, billable.call_center_seats, limits.max_billable
        ));
    }
    None
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
