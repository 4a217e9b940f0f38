//! `sync` for LDAP sources: choose a full or changed-only read, read the
//! directory, run the pipeline, and remember where the read left off.
//!
//! Only a full, complete read may disable anyone: changed-only reads run as
//! `delta` and hold back even accounts the directory marks disabled; a full
//! read with an entry that has no id disables no one for being absent. A
//! read that fails (no server, bind refused, a page or the group lookup
//! failed, a timeout) is recorded as a failed run and changes nothing.

use crate::config::{Config, LdapProfile, LdapSourceConfig, SourceConfig, SourceKind, SyncMode};
use crate::model::RowError;
use crate::report::RunReport;
use crate::source::ldap::{self, LdapError};
use crate::source::ldap_entry::{self as le, Since};
use crate::store::{now, ReadMark, SourceState, Store};
use crate::sync::{run_sync, Read, RunOptions, SyncError};

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
            let t = le::parse_gentime(marker)?;
            Some(Since::Timestamp(le::format_gentime(
                t - le::TIMESTAMP_OVERLAP_SECS,
            )))
        }
    }
}

/// One sync of an LDAP source. `force_full` is `sync --full`.
pub async fn sync_ldap(
    cfg: &Config,
    store: &Store,
    source: &SourceConfig,
    force_full: bool,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let SourceKind::Ldap(l) = &source.kind else {
        return Err(SyncError::NotLdap(source.name.clone()));
    };
    let state = store.source_state(&source.name).await?;
    let since = if force_full {
        None
    } else {
        next_read(l, &state, now())
    };
    let t = std::time::Instant::now();
    let read = ldap::read_directory(l, since.as_ref()).await;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "phase read");
    let r = match read {
        Ok(r) => r,
        Err(e) => return failed_read(store, source, l, e, opts).await,
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
        return failed_read(store, source, l, e, opts).await;
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
    let mut src = source.clone();
    if !r.full {
        src.mode = SyncMode::Delta;
    }
    let previous = if r.full {
        None
    } else {
        state.last_changed.as_ref().or(state.last_full.as_ref())
    };
    let mark = ReadMark {
        at: now(),
        // An empty changed-only read keeps the marker it started from.
        marker: r
            .marker
            .clone()
            .or_else(|| previous.and_then(|p| p.marker.clone())),
        server: Some(r.server.clone()),
    };
    let entries = r.entries as i64;
    let read = Read {
        records: r.records,
        errors: r.errors,
        complete: unidentified == 0,
        changed_only: !r.full,
        files: vec![r.location],
        notes,
    };
    let (report, _plan) = run_sync(cfg, store, &src, std::future::ready(Ok(read)), opts).await?;
    let applied = !report.dry_run
        && !report.interrupted
        && matches!(
            report.outcome,
            crate::report::Outcome::Ok | crate::report::Outcome::Partial
        );
    if applied {
        store
            .record_read(&source.name, r.full, &mark, r.full.then_some(entries))
            .await?;
    }
    Ok(report)
}

async fn failed_read(
    store: &Store,
    source: &SourceConfig,
    l: &LdapSourceConfig,
    e: LdapError,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    tracing::error!(source = %source.name, error = %e, "directory read failed; nothing applied");
    let error = RowError {
        file: l.urls.join(", "),
        row: None,
        column: None,
        message: e.to_string(),
        source_id: None,
    };
    let note = "the directory read failed: nothing was applied and nobody was disabled".to_string();
    let run_id = if opts.dry_run {
        None
    } else {
        Some(store.start_run(&source.name, &source.domain).await?)
    };
    let report = RunReport::failed(
        &source.name,
        &source.domain,
        run_id,
        opts.dry_run,
        error,
        vec![note],
    );
    if let Some(id) = run_id {
        store.finish_run(id, &report).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(profile: LdapProfile) -> LdapSourceConfig {
        LdapSourceConfig::for_tests(profile)
    }

    fn mark(at: i64, m: &str) -> Option<ReadMark> {
        Some(ReadMark {
            at,
            marker: Some(m.into()),
            server: Some("ldap://dc1".into()),
        })
    }

    #[test]
    fn full_when_never_read_or_too_old() {
        let c = cfg(LdapProfile::OpenLdap);
        assert_eq!(next_read(&c, &SourceState::default(), 1000), None);
        let st = SourceState {
            last_full: mark(0, "19700101000000Z"),
            ..Default::default()
        };
        assert_eq!(next_read(&c, &st, 6 * 3600), None);
        assert!(next_read(&c, &st, 6 * 3600 - 1).is_some());
    }

    #[test]
    fn continues_from_the_newer_marker_with_overlap() {
        let c = cfg(LdapProfile::OpenLdap);
        let st = SourceState {
            last_full: mark(100, "20261123100000Z"),
            last_full_entries: Some(5),
            last_changed: mark(200, "20261123110000Z"),
        };
        assert_eq!(
            next_read(&c, &st, 300),
            Some(Since::Timestamp("20261123105000Z".into()))
        );
        let ad = cfg(LdapProfile::ActiveDirectory);
        let st = SourceState {
            last_full: mark(100, "500"),
            last_full_entries: Some(5),
            last_changed: mark(50, "400"),
        };
        assert_eq!(
            next_read(&ad, &st, 300),
            Some(Since::Usn(500, "ldap://dc1".into()))
        );
    }
}
