//! Numbering plans: extension ranges, reserved numbers, the caller-ID number
//! inventory, and the allocator that hands out the lowest free extension.
//!
//! Pure: the planner feeds it the extensions already taken in the store.

use crate::model::{Extension, InvalidValue, PhoneNumber};
use foldhash::{HashSet, HashSetExt};
use std::fmt;

/// An inclusive range of numeric extensions, written `1000-8999` or `911`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRange {
    pub start: u64,
    pub end: u64,
}

impl NumberRange {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let num = |t: &str| {
            let t = t.trim();
            if t.is_empty() || t.len() > 15 || !t.chars().all(|c| c.is_ascii_digit()) {
                Err(InvalidValue(format!(
                    "`{}` is not a number or range such as 1000-8999",
                    crate::model::excerpt(s)
                )))
            } else {
                t.parse::<u64>().map_err(|_| {
                    InvalidValue(format!("`{}` is not a number", crate::model::excerpt(s)))
                })
            }
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        if start > end {
            return Err(InvalidValue(format!(
                "range `{}` runs backwards",
                crate::model::excerpt(s)
            )));
        }
        Ok(NumberRange { start, end })
    }

    pub fn contains(&self, n: u64) -> bool {
        self.start <= n && n <= self.end
    }

    pub fn contains_range(&self, other: &NumberRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl fmt::Display for NumberRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A set of numbers given as ranges (reserved numbers).
#[derive(Debug, Clone, Default)]
pub struct NumberSet(Vec<NumberRange>);

impl NumberSet {
    pub fn new(ranges: Vec<NumberRange>) -> Self {
        NumberSet(ranges)
    }
    pub fn contains(&self, n: u64) -> bool {
        self.0.iter().any(|r| r.contains(n))
    }
    /// The first reserved number at or above `n` inside the set's range holding `n`,
    /// i.e. the end of the reserved block to skip.
    fn block_end(&self, n: u64) -> Option<u64> {
        self.0.iter().filter(|r| r.contains(n)).map(|r| r.end).max()
    }
}

/// Expands an inventory entry: `+15550100` or a range `+15550100-+15550199`
/// (both ends the same length). At most 100,000 numbers per entry.
pub fn expand_numbers(raw: &str) -> Result<Vec<PhoneNumber>, InvalidValue> {
    let s = raw.trim();
    match s.split_once("-+").map(|(a, b)| (a, format!("+{b}"))) {
        None => Ok(vec![PhoneNumber::parse(s)?]),
        Some((a, b)) => {
            let a = PhoneNumber::parse(a)?;
            let b = PhoneNumber::parse(&b)?;
            let (da, db) = (&a.as_str()[1..], &b.as_str()[1..]);
            let bad = || {
                InvalidValue(format!(
                    "`{}` is not a number range such as +15550100-+15550199",
                    crate::model::excerpt(s)
                ))
            };
            if !a.as_str().starts_with('+') || da.len() != db.len() {
                return Err(bad());
            }
            let (x, y): (u64, u64) = (
                da.parse().map_err(|_| bad())?,
                db.parse().map_err(|_| bad())?,
            );
            if x > y || y - x >= 100_000 {
                return Err(bad());
            }
            (x..=y)
                .map(|n| PhoneNumber::parse(&format!("+{n:0width$}", width = da.len())))
                .collect()
        }
    }
}

/// Whether an explicitly requested extension may be used, and why not.
pub fn check_requested(
    ext: &Extension,
    plan: &[NumberRange],
    reserved: &NumberSet,
) -> Result<(), String> {
    match ext.number() {
        None => Err(format!(
            "extension `{ext}` is not a number in the numbering plan"
        )),
        Some(n) if reserved.contains(n) => Err(format!("extension {ext} is reserved")),
        Some(n) if !plan.iter().any(|r| r.contains(n)) => {
            let p: Vec<String> = plan.iter().map(ToString::to_string).collect();
            Err(format!(
                "extension {ext} is outside the numbering plan ({})",
                p.join(", ")
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Hands out the lowest free extension of a list of ranges, skipping reserved
/// numbers and numbers already taken. Amortised O(1) per allocation.
#[derive(Debug)]
pub struct Allocator {
    /// The numbers the store's users have, sorted: 8 bytes each, where a
    /// `HashSet<u64>` of them was 19 MB at 1,000,000 users.
    stored: Vec<u64>,
    /// Those taken since: requested or handed out.
    taken: HashSet<u64>,
    /// Per range (keyed by start,end), the lowest number not yet proven taken.
    cursors: Vec<((u64, u64), u64)>,
}

impl Allocator {
    pub fn new(stored: impl IntoIterator<Item = u64>) -> Self {
        // Sized for the most the iterator may give (the store's users,
        // filtered): collecting from a filter grows by doubling.
        let stored = stored.into_iter();
        let mut stored = {
            let mut v = Vec::with_capacity(stored.size_hint().1.unwrap_or(0));
            v.extend(stored);
            v
        };
        stored.sort_unstable();
        stored.dedup();
        stored.shrink_to_fit();
        Allocator {
            stored,
            taken: HashSet::new(),
            cursors: Vec::new(),
        }
    }

    /// Marks a number as used (an explicitly requested extension).
    pub fn take(&mut self, n: u64) -> bool {
        !self.is_stored(n) && self.taken.insert(n)
    }

    /// Frees a number taken with [`Allocator::take`] (a request planned,
    /// then rolled back with its file).
    pub fn release(&mut self, n: u64) {
        self.taken.remove(&n);
    }

    pub fn is_taken(&self, n: u64) -> bool {
        self.is_stored(n) || self.taken.contains(&n)
    }

    fn is_stored(&self, n: u64) -> bool {
        self.stored.binary_search(&n).is_ok()
    }

    /// Lowest free number across `ranges` (ranges searched lowest first).
    pub fn allocate(&mut self, ranges: &[NumberRange], reserved: &NumberSet) -> Option<u64> {
        let mut order: Vec<&NumberRange> = ranges.iter().collect();
        order.sort_by_key(|r| r.start);
        let found = order
            .into_iter()
            .find_map(|r| self.lowest_free(r, reserved));
        if let Some(n) = found {
            self.taken.insert(n);
        }
        found
    }

    fn lowest_free(&mut self, r: &NumberRange, reserved: &NumberSet) -> Option<u64> {
        let key = (r.start, r.end);
        let idx = match self.cursors.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.cursors.push((key, r.start));
                self.cursors.len() - 1
            }
        };
        let cursor = self.cursors.get_mut(idx)?;
        let mut n = cursor.1;
        // The stored numbers from `n` on, walked alongside.
        let mut stored = self.stored.partition_point(|s| *s < n);
        while n <= r.end {
            if let Some(end) = reserved.block_end(n) {
                n = end.saturating_add(1);
                stored = self.stored.partition_point(|s| *s < n);
                continue;
            }
            if self.stored.get(stored) == Some(&n) {
                stored += 1;
                n += 1;
                continue;
            }
            if self.taken.contains(&n) {
                n += 1;
                continue;
            }
            cursor.1 = n;
            return Some(n);
        }
        cursor.1 = n;
        None
    }
}

#[cfg(test)]
mod tests;
