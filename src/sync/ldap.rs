//! `sync` for LDAP sources: choose a full or changed-only read, read the
//! directory, run the pipeline, and remember where the read left off.
//!
//! Only a full, complete read may disable anyone: changed-only reads run as
//! `delta` and hold back even accounts the directory marks disabled; a full
//! read with an entry that has no id disables no one for being absent. A
//! read that fails (no server, bind refused, a page or the group lookup
//! failed, a timeout) is recorded as a failed run and changes nothing.

use super::{run_sync, Read, ReadFailure, RunOptions, SourceRun, SyncError};
use crate::config::{Config, LdapProfile, LdapSource, LdapSourceConfig, Rule};
use crate::mapping::Mapper;
use crate::plan::Plan;
use crate::report::{Outcome, RunReport};
use crate::source::ldap::{self, LdapError};
use crate::source::ldap_entry::{self as le, Since};
use crate::store::{ReadMark, SourceState, Store};
use crate::time::now;

/// Where the next read starts: `None` means a full read.
pub fn next_read(c: &LdapSourceConfig, st: &SourceState, now: i64) -> Option<Since> {
    let full = st.last_full.as_ref()?;
    let age = now.saturating_sub(full.at);
    if age < 0 || age as u64 >= c.full_sync_every.as_secs() {
        return None;
    }
    // The newer of the two reads holds the marker to continue from.
    let last = match &st.last_changed {
        Some(ch) if ch.at >= full.at && ch.marker.is_some() => ch,
        _ => full,
    };
    let marker = last.marker.as_deref()?;
    match c.profile {
        LdapProfile::ActiveDirectory => {
            let usn = marker.parse::<u64>().ok()?;
            Some(Since::Usn(usn, last.server.clone()?))
        }
        LdapProfile::OpenLdap => {
            let t = crate::time::parse_gentime(marker)?;
            Some(Since::Timestamp(crate::time::format_gentime(
                t - le::TIMESTAMP_OVERLAP_SECS,
            )))
        }
    }
}

/// One sync of an LDAP source. `force_full` is `sync --full`.
pub async fn sync_ldap(
    cfg: &Config,
    store: &Store,
    src: LdapSource<'_>,
    force_full: bool,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let run = LdapRun {
        src,
        rules: cfg.rules.clone(),
        force_full,
        done: None,
    };
    run_sync(cfg, store, src.source, run, opts).await
}

struct LdapRun<'a> {
    src: LdapSource<'a>,
    /// Entries are mapped as they arrive, on the reader's thread.
    rules: Vec<Rule>,
    force_full: bool,
    /// What to remember once the run applied: full read?, where it left
    /// off, and the entry count of a full read.
    done: Option<(bool, ReadMark, i64)>,
}

impl SourceRun for LdapRun<'_> {
    async fn read(
        &mut self,
        store: &Store,
        opts: &RunOptions,
    ) -> Result<Result<Read, ReadFailure>, SyncError> {
        let l = self.src.ldap;
        let state = store.source_state(&self.src.source.name).await?;
        let since = match self.force_full {
            true => None,
            false => next_read(l, &state, now()),
        };
        let t = std::time::Instant::now();
        let mapper = Mapper::new(self.src.source.domain.clone(), &self.rules);
        let read = ldap::read_directory(l, since.as_ref(), mapper).await;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase read and map");
        let (r, mapper) = match read {
            Ok(r) => r,
            Err(e) => return Ok(Err(failure(l, &e))),
        };
        let last_entries = state.last_full_entries.unwrap_or(0);
        if r.full && r.entries == 0 && last_entries > 0 && !opts.override_limits {
            // A directory that suddenly shows nobody is broken or misconfigured,
            // not empty: the same as a failed read. `--override-limits` takes it
            // (it still disables no one) so that a source really emptied, or
            // moved to another base, can go on.
            let e = LdapError::Empty {
                server: r.server.clone(),
                base: l.base_dn.clone(),
                last: last_entries,
            };
            return Ok(Err(failure(l, &e)));
        }
        let kind = if r.full { "full" } else { "changed-only" };
        let mut notes = vec![format!(
            "{kind} read of {} from {}: {} entries",
            l.base_dn, r.server, r.entries
        )];
        if r.full && last_entries > 0 && (r.entries as i64) * 2 < last_entries {
            notes.push(format!(
                "this full read has {} entries, less than half of the last one ({last_entries}): the disable thresholds decide whether it applies",
                r.entries
            ));
        }
        if !r.full {
            notes.push(
                "a changed-only read disables no one; leavers and disabled accounts are handled by the next full read".into(),
            );
        }
        // An entry without an id cannot be matched to its user, who would look
        // absent: such a read disables no one.
        let unidentified = r.errors.iter().filter(|e| e.source_id.is_none()).count();
        if unidentified > 0 {
            notes.push(format!(
                "{unidentified} entries have no id: this read disables no one for being absent"
            ));
        }
        let previous = match r.full {
            true => None,
            false => state.last_changed.as_ref().or(state.last_full.as_ref()),
        };
        let mark = ReadMark {
            at: now(),
            // An empty changed-only read keeps the marker it started from.
            marker: r
                .marker
                .clone()
                .or_else(|| previous.and_then(|p| p.marker.clone())),
            // The controller's identity, not the URL that reached it.
            server: Some(r.identity.clone()),
        };
        self.done = Some((r.full, mark, r.entries as i64));
        // The entries' own refusals first, then the mapping's.
        let (specs, mapped_errors) = mapper.finish();
        let mut errors = r.errors;
        errors.extend(mapped_errors);
        Ok(Ok(Read {
            specs,
            errors,
            complete: unidentified == 0,
            changed_only: !r.full,
            files: vec![r.location],
            notes,
            ..Read::default()
        }))
    }

    async fn finish(
        self,
        store: &Store,
        _plan: Option<&Plan>,
        report: &mut RunReport,
    ) -> Result<(), SyncError> {
        let applied = !report.dry_run
            && !report.interrupted
            && matches!(report.outcome, Outcome::Ok | Outcome::Partial);
        if let Some((full, mark, entries)) = self.done.filter(|_| applied) {
            store
                .record_read(&self.src.source.name, full, &mark, full.then_some(entries))
                .await?;
        }
        Ok(())
    }
}

/// A failed read, logged, and for the report: the servers tried and why.
fn failure(l: &LdapSourceConfig, e: &LdapError) -> ReadFailure {
    tracing::error!(error = %crate::model::chain(e), "directory read failed; nothing applied");
    ReadFailure {
        location: l.urls.join(", "),
        message: crate::model::chain(e),
        note: "the directory read failed: nothing was applied and nobody was disabled".into(),
    }
}

#[cfg(test)]
mod tests;
