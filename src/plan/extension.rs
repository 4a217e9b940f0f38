//! Choosing a new user's extension: the one the row asks for when the
//! numbering plan allows it, else the lowest free one in the site's ranges.
//! Requests are answered as rows are planned; free numbers are handed out
//! once the whole read is planned, so an earlier row given "any free
//! number" never takes a later row's own (found by fuzzing: the same file
//! then conflicted on every import).

use super::index::Index;
use crate::config::DomainConfig;
use crate::mapping::UserSpec;
use crate::model::Extension;
use crate::numbering::{check_requested, Allocator};
use foldhash::HashSet;

/// What a new row's own extension request comes to.
pub(super) enum Requested {
    /// The row asks for this one and gets it.
    Granted(Extension),
    /// A requested extension held by another user (or row) is a conflict.
    Conflict(String),
    /// No request, or one the numbering plan does not allow (`note` says
    /// why): the row gets a free number once the read is planned.
    Free { note: Option<String> },
}

/// The row's own extension if valid, in the plan, not reserved and free.
pub(super) fn requested_extension(
    spec: &UserSpec,
    d: &DomainConfig,
    by_ext: &Index<'_>,
    alloc: &mut Allocator,
    claimed_alpha: &mut HashSet<String>,
) -> Requested {
    let Some(req) = &spec.requested_extension else {
        return Requested::Free { note: None };
    };
    if let Some(holder) = by_ext.get(req.as_str()) {
        let owner = match (holder.source(), holder.source_id()) {
            (Some(s), Some(id)) => format!("{s} id {id}"),
            _ => "a user created by hand".to_string(),
        };
        return Requested::Conflict(format!("extension {req} is already used by {owner}"));
    }
    let used = || Requested::Conflict(format!("extension {req} is already used in this run"));
    match req.number() {
        None if claimed_alpha.insert(req.as_str().to_string()) => Requested::Granted(req.clone()),
        None => used(),
        Some(n) => match check_requested(req, &d.numbering, &d.reserved) {
            Ok(()) if alloc.take(n) => Requested::Granted(req.clone()),
            Ok(()) => used(),
            Err(why) => Requested::Free {
                note: Some(format!("{why}; a free extension was assigned instead")),
            },
        },
    }
}

/// Which site's ranges a new user's free number comes from: an index
/// into the domain's sites, none for the domain's own ranges.
pub(super) fn site_ranges(site: Option<&str>, d: &DomainConfig) -> Option<u32> {
    let sc = site.and_then(|s| d.site(s))?;
    let i = d.sites.iter().position(|x| std::ptr::eq(x, sc))?;
    u32::try_from(i).ok()
}

/// The lowest free number in the site's (else the domain's) ranges.
pub(super) fn free_number(
    site: Option<u32>,
    d: &DomainConfig,
    alloc: &mut Allocator,
) -> Result<u64, String> {
    let site_ranges = site
        .and_then(|i| d.sites.get(i as usize))
        .map(|s| s.numbering.as_slice());
    let ranges = match site_ranges {
        Some(r) if !r.is_empty() => r,
        _ => d.numbering.as_slice(),
    };
    alloc.allocate(ranges, &d.reserved).ok_or_else(|| {
        let r: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        format!("no free extension left in {}", r.join(", "))
    })
}

/// The note of a row given a free number instead of the one it asked for.
pub(super) fn assigned_note(why: &str, ext: &Extension) -> String {
    format!("{why} ({ext})")
}
