//! Choosing a new user's extension: the one the row asks for when the
//! numbering plan allows it, else the lowest free one in the site's ranges.

use crate::config::DomainConfig;
use crate::mapping::UserSpec;
use crate::model::{Extension, StoredUser};
use crate::numbering::{check_requested, Allocator};
use foldhash::{HashMap, HashSet};

/// The row's own extension if valid, in the plan, not reserved and free;
/// otherwise the lowest free number in the site's (else the domain's) ranges.
/// A requested extension held by another user is a conflict.
pub(super) fn pick_extension(
    spec: &UserSpec,
    d: &DomainConfig,
    by_ext: &HashMap<&str, &StoredUser>,
    alloc: &mut Allocator,
    claimed_alpha: &mut HashSet<String>,
    asked: &mut HashSet<u64>,
) -> Result<(Extension, Option<String>), String> {
    let mut note = None;
    if let Some(req) = &spec.requested_extension {
        if let Some(holder) = by_ext.get(req.as_str()) {
            let owner = match (holder.source(), holder.source_id()) {
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
                // Held back for this row since planning began.
                Ok(()) if asked.remove(&n) => return Ok((req.clone(), None)),
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
