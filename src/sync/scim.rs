//! SCIM sources: an identity provider (Entra ID, Okta, …) pushes Users and
//! Groups to `/scim/v2/{source}/`, and each write request is one run of the
//! pipeline for the people it touches — the same mapping rules, numbering
//! plan, safety limits, apply and outbox as CSV and LDAP, in `delta` mode:
//! nobody is disabled for being absent from a request.
//!
//! The resources themselves are kept as sent (`store::scim`), beside the
//! PBX users they describe; the HTTP side is [`http`].

pub mod http;

use super::{run_sync, Read, ReadFailure, RunOptions, SourceRun, SyncError};
use crate::config::{Config, ScimSource};
use crate::model::StaffRecord;
use crate::plan::Plan;
use crate::report::RunReport;
use crate::store::Store;

/// One request's records.
struct ScimRun {
    records: Vec<StaffRecord>,
    location: String,
}

impl SourceRun for ScimRun {
    async fn read(
        &mut self,
        _store: &Store,
        _opts: &RunOptions,
    ) -> Result<Result<Read, ReadFailure>, SyncError> {
        Ok(Ok(Read {
            records: std::mem::take(&mut self.records),
            errors: Vec::new(),
            // Complete for the people named; the source's mode is delta, so
            // no one else is touched.
            complete: true,
            changed_only: false,
            files: vec![self.location.clone()],
            notes: Vec::new(),
        }))
    }

    async fn finish(
        self,
        _store: &Store,
        _plan: Option<&Plan>,
        _report: &mut RunReport,
    ) -> Result<(), SyncError> {
        Ok(())
    }
}

/// Runs the pipeline for `records` of a scim source: one run, recorded in
/// `runs` like any other.
pub async fn apply_records(
    cfg: &Config,
    store: &Store,
    source: ScimSource<'_>,
    records: Vec<StaffRecord>,
    location: String,
    opts: &RunOptions,
) -> Result<RunReport, SyncError> {
    let run = ScimRun { records, location };
    run_sync(cfg, store, source.source, run, opts).await
}
