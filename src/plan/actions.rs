//! A plan's actions, packed. Each action is encoded (postcard: fields in
//! order, lengths as varints, no names) into 1 MiB buffers as it is
//! planned, and decoded each time the plan is read. A new user's action
//! held as a `Vec<Action>` took about 440 bytes with its boxed fields and
//! strings; packed it takes about a quarter of that, and an unchanged
//! user's about 20 bytes instead of 160.
//!
//! Every entry carries its length, so an entry that cannot be decoded (a
//! bug, never input) is reported in its place as a conflict and the rest
//! still read.

use super::extension::assigned_note;
use super::{Action, Change, DisableReason, Skipped};
use crate::model::{Extension, RowRef, UserFields};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A buffer is closed once it holds this much.
const SEGMENT: usize = 1 << 20;
/// Room kept at a buffer's end for the entry that closes it.
const SLACK: usize = 64 << 10;
/// Each entry starts with its length, little-endian.
const LEN: usize = 4;

#[derive(Clone, Default)]
pub struct Actions {
    segments: Vec<Vec<u8>>,
    len: usize,
    /// Entries that write to the store.
    writes: usize,
    counts: Counts,
    /// The files rows come from; an entry names one by its index.
    files: Vec<Arc<str>>,
    /// New users pushed waiting for a free extension.
    pending: usize,
    /// Their numbers once handed out, in order ([`NO_NUMBER`] where none
    /// was left), and why none was left.
    numbers: Vec<u64>,
    no_number: Vec<(usize, String)>,
    /// Departments and sites the writes name, so that apply creates them
    /// without unpacking the plan first.
    names: Names,
}

/// Names with how many writes name each.
#[derive(Clone, Default)]
struct Names {
    departments: BTreeMap<Box<str>, u32>,
    sites: BTreeMap<Box<str>, u32>,
}

impl Names {
    fn add(&mut self, f: &UserFields) {
        for (map, name) in [
            (&mut self.departments, &f.department),
            (&mut self.sites, &f.site),
        ] {
            if let Some(n) = name {
                match map.get_mut(n.as_str()) {
                    Some(c) => *c += 1,
                    None => {
                        map.insert(n.as_str().into(), 1);
                    }
                }
            }
        }
    }

    /// Forgets the names `other` counted.
    fn subtract(&mut self, other: &Names) {
        for (map, gone) in [
            (&mut self.departments, &other.departments),
            (&mut self.sites, &other.sites),
        ] {
            for (name, n) in gone {
                if let Some(c) = map.get_mut(name) {
                    *c = c.saturating_sub(*n);
                    if *c == 0 {
                        map.remove(name);
                    }
                }
            }
        }
    }
}

/// The fields of a write that names a department and site.
fn named(a: &Action) -> Option<&UserFields> {
    match a {
        Action::Create { fields, .. }
        | Action::Update { fields, .. }
        | Action::Reenable { fields, .. } => Some(fields),
        _ => None,
    }
}

/// The names in `entries`' writes, waiting new users included.
fn names_in(entries: impl Iterator<Item = Entry>) -> Names {
    let mut names = Names::default();
    for e in entries {
        match &e {
            Entry::Action(a) => named(a).into_iter().for_each(|f| names.add(f)),
            Entry::Pending { fields, .. } => names.add(fields),
        }
    }
    names
}

/// Marks a new user no free number was left for.
const NO_NUMBER: u64 = u64::MAX;

/// Where [`Actions::truncate`] goes back to.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ActionsMark {
    segments: usize,
    last_len: usize,
    len: usize,
    writes: usize,
    counts: Counts,
    pending: usize,
}

/// How many actions of each kind a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: u64,
    pub update: u64,
    pub reenable: u64,
    pub disable: u64,
    pub delete: u64,
    /// Unchanged users (with an extension).
    pub unchanged: u64,
    /// Rows with nothing to do (unchanged without an extension).
    pub skipped: u64,
    pub conflict: u64,
}

impl Counts {
    pub fn add(&mut self, a: &Action) {
        let n = match a {
            Action::Create { .. } => &mut self.create,
            Action::Update { .. } => &mut self.update,
            Action::Reenable { .. } => &mut self.reenable,
            Action::Disable { .. } => &mut self.disable,
            Action::Delete { .. } => &mut self.delete,
            Action::Unchanged {
                extension: None, ..
            } => &mut self.skipped,
            Action::Unchanged { .. } => &mut self.unchanged,
            Action::Conflict { .. } => &mut self.conflict,
        };
        *n += 1;
    }
}

/// Postcard writes an enum's variant index first: [`Packed::Conflict`]'s
/// and [`Packed::Pending`]'s, to find them without decoding the rest.
const CONFLICT_TAG: u8 = 6;
const PENDING_TAG: u8 = 7;

/// A row as an entry names it.
#[derive(Serialize, Deserialize)]
struct At {
    file: u32,
    row: Option<u64>,
}

/// An action as it is encoded: [`Action`] with rows naming their file by
/// index, plus new users still waiting for a free extension.
#[derive(Serialize, Deserialize)]
enum Packed<F = Box<UserFields>> {
    Create {
        source_id: String,
        at: At,
        extension: Extension,
        note: Option<String>,
        fields: F,
    },
    Update {
        user_id: i64,
        source_id: String,
        at: At,
        extension: Extension,
        changes: Vec<Change>,
        add_device: bool,
        fields: F,
    },
    Reenable {
        user_id: i64,
        source_id: String,
        at: At,
        extension: Extension,
        changes: Vec<Change>,
        add_device: bool,
        fields: F,
    },
    Disable {
        user_id: i64,
        source_id: String,
        at: Option<At>,
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
        at: At,
        extension: Option<Extension>,
        note: Option<String>,
    },
    Conflict {
        source_id: String,
        at: At,
        reason: String,
    },
    Pending {
        source_id: String,
        at: At,
        note: Option<String>,
        fields: F,
    },
}

/// One entry as the planner reads it back.
pub(super) enum Entry<F = Box<UserFields>> {
    Action(Action<F>),
    /// A new user waiting for a free extension: `note` says why the one
    /// the row asked for is not used.
    Pending {
        source_id: String,
        at: RowRef,
        fields: F,
        note: Option<String>,
    },
}

impl Actions {
    pub fn new() -> Actions {
        Actions::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many actions write to the store.
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// How many actions of each kind.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Every action in order without its user's fields (read as
    /// [`Skipped`]): what a report of each row shows. A 100k-row result CSV
    /// spent 40% of its time decoding the fields of its creates.
    pub fn briefs(&self) -> impl Iterator<Item = Action<Skipped>> + '_ {
        self.entries_as::<Skipped>(ActionsMark::default())
            .map(Entry::into_action)
    }

    /// The conflicts alone, in order, the other actions left packed.
    pub fn conflicts(&self) -> impl Iterator<Item = Action> + '_ {
        Entries {
            only_conflicts: true,
            ..self.entries_from(ActionsMark::default())
        }
        .map(Entry::into_action)
    }

    /// The departments and sites the plan's writes name.
    pub fn names(&self) -> (Vec<&str>, Vec<&str>) {
        fn keys(m: &BTreeMap<Box<str>, u32>) -> Vec<&str> {
            m.keys().map(|k| &**k).collect()
        }
        (keys(&self.names.departments), keys(&self.names.sites))
    }

    pub fn push(&mut self, a: Action) {
        self.writes += usize::from(a.writes());
        self.counts.add(&a);
        if let Some(f) = named(&a) {
            self.names.add(f);
        }
        let packed = self.pack(a);
        self.put(&packed);
    }

    /// A new user whose extension is handed out when the plan is finished.
    pub(super) fn push_pending(
        &mut self,
        source_id: String,
        at: RowRef,
        fields: Box<UserFields>,
        note: Option<String>,
    ) {
        let at = self.at(at);
        self.pending += 1;
        self.names.add(&fields);
        self.put(&Packed::Pending {
            source_id,
            at,
            fields,
            note,
        });
    }

    /// Decodes the actions in order. A pending new user reads as a
    /// conflict with an empty reason (the planner never lets one out).
    pub fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.entries_from(ActionsMark::default())
            .map(Entry::into_action)
    }

    /// Every action unpacked (tests, small plans).
    pub fn to_vec(&self) -> Vec<Action> {
        self.iter().collect()
    }

    pub(super) fn mark(&self) -> ActionsMark {
        ActionsMark {
            segments: self.segments.len(),
            last_len: self.segments.last().map_or(0, Vec::len),
            len: self.len,
            writes: self.writes,
            counts: self.counts,
            pending: self.pending,
        }
    }

    /// Gives the waiting new users their numbers, in the order they were
    /// pushed: `Err` where none was left, with why. Each then reads as a
    /// create (or that conflict).
    pub(super) fn assign(&mut self, numbers: impl Iterator<Item = Result<u64, String>>) {
        self.numbers.clear();
        self.no_number.clear();
        for (i, n) in numbers.enumerate() {
            match n {
                Ok(n) => self.numbers.push(n),
                Err(why) => {
                    self.numbers.push(NO_NUMBER);
                    self.no_number.push((i, why));
                }
            }
        }
        if !self.no_number.is_empty() {
            // Those left without a number write nothing: their names go
            // (read with the numbers set aside, as they were waiting).
            let numbers = std::mem::take(&mut self.numbers);
            let mut place = 0;
            let unnumbered = self.entries_from(ActionsMark::default()).filter(|e| {
                let Entry::Pending { .. } = e else {
                    return false;
                };
                place += 1;
                numbers.get(place - 1) == Some(&NO_NUMBER)
            });
            let gone = names_in(unnumbered);
            self.names.subtract(&gone);
            self.numbers = numbers;
        }
        let created = self.numbers.len() - self.no_number.len();
        self.writes += created;
        self.counts.create += created as u64;
        self.counts.conflict += self.no_number.len() as u64;
    }

    /// The entries pushed since `m`.
    pub(super) fn entries_from(&self, m: ActionsMark) -> Entries<'_> {
        self.entries_as(m)
    }

    /// The entries pushed since `m`, their users' fields read as `F`.
    fn entries_as<F>(&self, m: ActionsMark) -> Entries<'_, F> {
        let (segment, pos) = match m.segments.checked_sub(1) {
            Some(last) => (last, m.last_len),
            None => (0, 0),
        };
        Entries {
            actions: self,
            segment,
            pos,
            pending: m.pending,
            only_conflicts: false,
            fields: std::marker::PhantomData,
        }
    }

    /// Forgets the entries pushed since `m`.
    pub(super) fn truncate(&mut self, m: ActionsMark) {
        let gone = names_in(self.entries_from(m));
        self.names.subtract(&gone);
        self.segments.truncate(m.segments);
        if let Some(last) = self.segments.last_mut() {
            last.truncate(m.last_len);
        }
        self.len = m.len;
        self.writes = m.writes;
        self.counts = m.counts;
        self.pending = m.pending;
    }

    fn put(&mut self, p: &Packed) {
        let open = self
            .segments
            .last()
            .is_some_and(|s| s.len() < SEGMENT - SLACK);
        if !open {
            // The first buffer grows as needed: most plans are small.
            let room = if self.segments.is_empty() { 0 } else { SEGMENT };
            self.segments.push(Vec::with_capacity(room));
        }
        let Some(seg) = self.segments.last_mut() else {
            return;
        };
        let start = seg.len();
        seg.extend_from_slice(&[0; LEN]);
        if let Err(e) = postcard::to_extend(p, Append(seg)) {
            // Unreachable with these types; recorded rather than lost.
            seg.truncate(start + LEN);
            let _ = postcard::to_extend(&unreadable::<Box<UserFields>>(&e), Append(seg));
        }
        let n = u32::try_from(seg.len() - start - LEN).unwrap_or(u32::MAX);
        if let Some(len) = seg.get_mut(start..start + LEN) {
            len.copy_from_slice(&n.to_le_bytes());
        }
        self.len += 1;
    }

    /// A waiting new user as a create once its number is handed out.
    fn resolve<F>(&self, i: usize, e: Entry<F>) -> Entry<F> {
        let Entry::Pending {
            source_id,
            at,
            fields,
            note,
        } = e
        else {
            return e;
        };
        match self.numbers.get(i) {
            Some(&NO_NUMBER) => {
                let reason = self
                    .no_number
                    .binary_search_by_key(&i, |(j, _)| *j)
                    .ok()
                    .and_then(|k| self.no_number.get(k))
                    .map_or_else(String::new, |(_, why)| why.clone());
                Entry::Action(Action::Conflict {
                    source_id,
                    at,
                    reason,
                })
            }
            Some(&n) => {
                let extension = Extension::from_number(n);
                let note = note.map(|why| assigned_note(&why, &extension));
                Entry::Action(Action::Create {
                    source_id,
                    at,
                    extension,
                    fields,
                    note,
                })
            }
            None => Entry::Pending {
                source_id,
                at,
                fields,
                note,
            },
        }
    }

    fn file(&mut self, f: Arc<str>) -> u32 {
        let found = self
            .files
            .iter()
            .rposition(|g| Arc::ptr_eq(g, &f) || **g == *f);
        let i = match found {
            Some(i) => i,
            None => {
                self.files.push(f);
                self.files.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    fn at(&mut self, at: RowRef) -> At {
        At {
            file: self.file(at.file),
            row: at.row,
        }
    }

    fn pack(&mut self, a: Action) -> Packed {
        match a {
            Action::Create {
                source_id,
                at,
                extension,
                fields,
                note,
            } => Packed::Create {
                source_id,
                at: self.at(at),
                extension,
                fields,
                note,
            },
            Action::Update {
                user_id,
                source_id,
                at,
                extension,
                changes,
                fields,
                add_device,
            } => Packed::Update {
                user_id,
                source_id,
                at: self.at(at),
                extension,
                changes,
                fields,
                add_device,
            },
            Action::Reenable {
                user_id,
                source_id,
                at,
                extension,
                changes,
                fields,
                add_device,
            } => Packed::Reenable {
                user_id,
                source_id,
                at: self.at(at),
                extension,
                changes,
                fields,
                add_device,
            },
            Action::Disable {
                user_id,
                source_id,
                at,
                extension,
                reason,
            } => Packed::Disable {
                user_id,
                source_id,
                at: at.map(|at| self.at(at)),
                extension,
                reason,
            },
            Action::Delete {
                user_id,
                source_id,
                extension,
            } => Packed::Delete {
                user_id,
                source_id,
                extension,
            },
            Action::Unchanged {
                source_id,
                at,
                extension,
                note,
            } => Packed::Unchanged {
                source_id,
                at: self.at(at),
                extension,
                note,
            },
            Action::Conflict {
                source_id,
                at,
                reason,
            } => Packed::Conflict {
                source_id,
                at: self.at(at),
                reason,
            },
        }
    }
}

/// Lets postcard append to a buffer it does not own.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Reads [`Actions`] entries in order from a mark.
pub(super) struct Entries<'a, F = Box<UserFields>> {
    actions: &'a Actions,
    fields: std::marker::PhantomData<F>,
    segment: usize,
    pos: usize,
    /// Waiting new users passed so far.
    pending: usize,
    /// Decodes only the conflicts (and waiting users no number was left
    /// for), passing over the rest by their variant byte.
    only_conflicts: bool,
}

impl<F: serde::de::DeserializeOwned> Iterator for Entries<'_, F> {
    type Item = Entry<F>;

    fn next(&mut self) -> Option<Entry<F>> {
        let a = self.actions;
        loop {
            let seg = a.segments.get(self.segment)?;
            let Some(body) = next_entry(seg, &mut self.pos) else {
                self.segment += 1;
                self.pos = 0;
                continue;
            };
            let tag = body.and_then(|b| b.first().copied());
            let waiting = tag == Some(PENDING_TAG);
            self.pending += usize::from(waiting);
            let place = self.pending.saturating_sub(1);
            if self.only_conflicts {
                let no_number = waiting && a.numbers.get(place) == Some(&NO_NUMBER);
                if tag != Some(CONFLICT_TAG) && !no_number {
                    continue;
                }
            }
            let packed = match body.map(postcard::from_bytes::<Packed<F>>) {
                Some(Ok(p)) => p,
                Some(Err(e)) => unreadable(&e),
                None => unreadable(&"the entry runs past its buffer"),
            };
            let e = unpack(packed, &a.files);
            return Some(if waiting { a.resolve(place, e) } else { e });
        }
    }
}

/// The bytes of the entry at `*pos` of `seg` (none if they run past it),
/// moving `*pos` past it; none at the end.
fn next_entry<'s>(seg: &'s [u8], pos: &mut usize) -> Option<Option<&'s [u8]>> {
    let head = seg.get(*pos..*pos + LEN)?;
    let mut n = [0; LEN];
    n.copy_from_slice(head);
    let start = *pos + LEN;
    let end = start.saturating_add(u32::from_le_bytes(n) as usize);
    *pos = end;
    Some(seg.get(start..end))
}

fn unreadable<F>(e: &dyn std::fmt::Display) -> Packed<F> {
    Packed::Conflict {
        source_id: String::new(),
        at: At {
            file: u32::MAX,
            row: None,
        },
        reason: format!("internal error: a planned action could not be read back ({e})"),
    }
}

fn unpack<F>(p: Packed<F>, files: &[Arc<str>]) -> Entry<F> {
    let at = |a: At| RowRef {
        file: files
            .get(a.file as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from("plan")),
        row: a.row,
    };
    Entry::Action(match p {
        Packed::Create {
            source_id,
            at: a,
            extension,
            fields,
            note,
        } => Action::Create {
            source_id,
            at: at(a),
            extension,
            fields,
            note,
        },
        Packed::Update {
            user_id,
            source_id,
            at: a,
            extension,
            changes,
            fields,
            add_device,
        } => Action::Update {
            user_id,
            source_id,
            at: at(a),
            extension,
            changes,
            fields,
            add_device,
        },
        Packed::Reenable {
            user_id,
            source_id,
            at: a,
            extension,
            changes,
            fields,
            add_device,
        } => Action::Reenable {
            user_id,
            source_id,
            at: at(a),
            extension,
            changes,
            fields,
            add_device,
        },
        Packed::Disable {
            user_id,
            source_id,
            at: a,
            extension,
            reason,
        } => Action::Disable {
            user_id,
            source_id,
            at: a.map(at),
            extension,
            reason,
        },
        Packed::Delete {
            user_id,
            source_id,
            extension,
        } => Action::Delete {
            user_id,
            source_id,
            extension,
        },
        Packed::Unchanged {
            source_id,
            at: a,
            extension,
            note,
        } => Action::Unchanged {
            source_id,
            at: at(a),
            extension,
            note,
        },
        Packed::Conflict {
            source_id,
            at: a,
            reason,
        } => Action::Conflict {
            source_id,
            at: at(a),
            reason,
        },
        Packed::Pending {
            source_id,
            at: a,
            fields,
            note,
        } => {
            return Entry::Pending {
                source_id,
                at: at(a),
                fields,
                note,
            }
        }
    })
}

impl<F> Entry<F> {
    fn into_action(self) -> Action<F> {
        match self {
            Entry::Action(a) => a,
            Entry::Pending { source_id, at, .. } => Action::Conflict {
                source_id,
                at,
                reason: String::new(),
            },
        }
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Actions {
        let mut out = Actions::new();
        out.extend(iter);
        out
    }
}

impl Extend<Action> for Actions {
    fn extend<I: IntoIterator<Item = Action>>(&mut self, iter: I) {
        for a in iter {
            self.push(a);
        }
    }
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Actions {
    fn eq(&self, other: &Actions) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Actions {}

/// A JSON plan lists its actions as before: the packing is in memory only.
impl Serialize for Actions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Actions, D::Error> {
        struct Seq;
        impl<'de> Visitor<'de> for Seq {
            type Value = Actions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of actions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Actions, A::Error> {
                let mut out = Actions::new();
                while let Some(a) = seq.next_element::<Action>()? {
                    out.push(a);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq)
    }
}
