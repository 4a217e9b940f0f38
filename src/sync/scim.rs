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
            ..Read::default()
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

/// What `held approve` did for one source.
#[derive(Debug)]
pub struct Released {
    pub source: String,
    pub ids: Vec<i64>,
    pub report: RunReport,
}

/// Applies held disables as one run per source (the limits were already
/// weighed: an admin released them), then marks them approved by `by`.
pub async fn approve_holds(
    cfg: &Config,
    store: &Store,
    holds: Vec<crate::store::HeldRow>,
    by: &str,
) -> Result<Vec<Released>, SyncError> {
    let mut by_source: std::collections::BTreeMap<String, Vec<crate::store::HeldRow>> =
        std::collections::BTreeMap::new();
    for h in holds {
        by_source.entry(h.source.clone()).or_default().push(h);
    }
    let mut out = Vec::new();
    for (name, holds) in by_source {
        let Some(crate::config::Resolved::Scim(source)) = cfg.source(&name).map(|s| s.resolve())
        else {
            return Err(SyncError::UnknownSource(name));
        };
        let mut records = Vec::new();
        let mut ids = Vec::new();
        for h in &holds {
            let mut body: serde_json::Value =
                serde_json::from_str(&h.body).unwrap_or_else(|_| serde_json::json!({}));
            if let Some(o) = body.as_object_mut() {
                o.insert("active".into(), serde_json::Value::Bool(false));
            }
            let location = format!("scim:{name}/held/{}", h.id);
            match crate::scim::user::record(&body, &h.resource_id, Vec::new(), location.into()) {
                Ok(mut r) => {
                    r.source_id.clone_from(&h.source_id);
                    records.push(r);
                    ids.push(h.id);
                }
                Err(e) => {
                    tracing::warn!(held = h.id, error = %e, "a held change cannot be read; left pending")
                }
            }
        }
        let opts = RunOptions {
            override_limits: true,
            no_hold: true,
            ..RunOptions::default()
        };
        let report = apply_records(
            cfg,
            store,
            source,
            records,
            format!("scim:{name}/held"),
            &opts,
        )
        .await?;
        store
            .decide_holds(&ids, "approved", by, crate::time::now())
            .await?;
        out.push(Released {
            source: name,
            ids,
            report,
        });
    }
    Ok(out)
}
