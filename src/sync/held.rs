//! Held runs: a plan refused by `max_disable`, `max_disable_percent` or
//! `max_billable` is saved ([`hold`]) instead of being lost; an admin then
//! approves it ([`approve`]: exactly that plan is applied, refused if the
//! domain changed since) or discards it ([`discard`]), from the CLI or the
//! console. A scim source's held disables are one held run too. Every
//! decision is recorded in the audit trail.

use super::{execute, lock, RunOptions, SyncError};
use crate::config::Config;
use crate::plan::Plan;
use crate::report::RunReport;
use crate::store::{HeldRun, HoldSaved, NewHeldRun, Store, StoreError};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("there is no held run {0} (see `pbx-onboard held list`)")]
    NotFound(i64),
    #[error("held run {id} is {status} already")]
    Decided { id: i64, status: String },
    #[error(
        "held run {id}: the domain {domain} changed since its plan was made (revision {found}, plan \
         made at {expected}); nothing was applied. Discard it: the next run of `{source_name}` plans afresh"
    )]
    Stale {
        id: i64,
        domain: String,
        source_name: String,
        expected: i64,
        found: i64,
    },
    #[error("held run {id}: its plan cannot be read")]
    BadPlan {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("held run {id}: source `{source_name}` is not configured any more")]
    UnknownSource { id: i64, source_name: String },
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What deciding a held run did.
#[derive(Debug)]
pub struct Decision {
    pub held: HeldRun,
    /// The run that applied it (approvals).
    pub report: Option<RunReport>,
}

/// What makes two refused plans the same hold: their actions, wherever
/// they were read from (the same people in a file dropped again, under
/// another name, are the same plan).
fn digest(plan: &Plan) -> String {
    let mut h = Sha256::new();
    for a in plan.actions.iter() {
        let mut v = serde_json::to_value(&a).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("at");
        }
        h.update(v.to_string());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Saves a refused plan as the source's held run; the sentence for the
/// run's report (and so the admin report email).
pub(super) async fn hold(
    store: &Store,
    plan: &Plan,
    run_id: i64,
    reason: &str,
) -> Result<String, SyncError> {
    let json = serde_json::to_string(plan).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let count = |name: &str| plan.actions.iter().filter(|a| a.name() == name).count() as i64;
    let saved = store
        .save_held_run(&NewHeldRun {
            source: &plan.source,
            domain: &plan.domain,
            run_id,
            reason,
            creates: count("create"),
            updates: count("update") + count("reenable"),
            disables: count("disable"),
            billable: (plan.billable.devices + plan.billable.call_center_seats) as i64,
            plan: &json,
            digest: &digest(plan),
        })
        .await?;
    let id = saved.id();
    let how = format!(
        "approve it with `pbx-onboard held approve {id}` (after `held show {id}`) or in the admin console, or `held discard {id}`"
    );
    let note = match saved {
        HoldSaved::New(_) => format!("the plan is held as #{id} for an admin: {how}"),
        HoldSaved::Replaced(_) => format!("held run #{id} now holds this newer plan: {how}"),
        HoldSaved::Unchanged(_) => format!("the same plan is already held as #{id}: {how}"),
    };
    tracing::warn!(held = id, source = %plan.source, "refused plan held for an admin");
    Ok(note)
}

async fn pending(store: &Store, id: i64) -> Result<(HeldRun, Option<String>), HeldError> {
    let (held, plan) = store.held_run(id).await?.ok_or(HeldError::NotFound(id))?;
    if held.status != "pending" {
        return Err(HeldError::Decided {
            id,
            status: held.status,
        });
    }
    Ok((held, plan))
}

/// The held run and its plan, parsed.
pub async fn show(store: &Store, id: i64) -> Result<(HeldRun, Option<Plan>), HeldError> {
    let (held, plan) = store.held_run(id).await?.ok_or(HeldError::NotFound(id))?;
    let plan = plan
        .map(|p| serde_json::from_str::<Plan>(&p))
        .transpose()
        .map_err(|source| HeldError::BadPlan { id, source })?;
    Ok((held, plan))
}

/// Applies exactly the held plan (the limits were weighed by the admin),
/// under the domain's lock; refused if the domain changed since.
pub async fn approve(
    cfg: &Config,
    store: &Store,
    id: i64,
    actor: &str,
    address: &str,
) -> Result<Decision, HeldError> {
    let (held, plan) = pending(store, id).await?;
    let report = match plan {
        None => approve_scim(cfg, store, &held, actor).await?,
        Some(text) => {
            let plan: Plan =
                serde_json::from_str(&text).map_err(|source| HeldError::BadPlan { id, source })?;
            let source = cfg
                .source(&plan.source)
                .ok_or_else(|| HeldError::UnknownSource {
                    id,
                    source_name: plan.source.clone(),
                })?;
            let lock = lock(store, &source.domain.name, None).await?;
            let result = async {
                let found = store
                    .find_domain(&plan.domain)
                    .await?
                    .map_or(0, |d| d.revision);
                if found != plan.base_revision {
                    return Err(HeldError::Stale {
                        id,
                        domain: plan.domain.clone(),
                        source_name: plan.source.clone(),
                        expected: plan.base_revision,
                        found,
                    });
                }
                let opts = RunOptions {
                    override_limits: true,
                    no_hold: true,
                    ..RunOptions::default()
                };
                Ok(execute(cfg, store, &source.domain, &plan, &opts).await?)
            }
            .await;
            lock.release().await;
            let mut report = result?;
            report
                .notes
                .push(format!("held run #{id} approved by {actor} from {address}"));
            Some(report)
        }
    };
    let run_id = report.as_ref().and_then(|r| r.run_id);
    store.decide_held_run(id, "approved", actor, run_id).await?;
    let detail = report.as_ref().map(|r| {
        format!(
            "run {}: {} created, {} updated, {} disabled",
            r.run_id.unwrap_or(0),
            r.created,
            r.updated,
            r.disabled
        )
    });
    store
        .audit(
            actor,
            address,
            "held.approve",
            Some(&format!("held run {id}")),
            detail.as_deref(),
        )
        .await?;
    tracing::info!(held = id, actor, address, "held run approved");
    let (held, _) = store.held_run(id).await?.ok_or(HeldError::NotFound(id))?;
    Ok(Decision { held, report })
}

/// A scim source's held disables, applied as one run.
async fn approve_scim(
    cfg: &Config,
    store: &Store,
    held: &HeldRun,
    actor: &str,
) -> Result<Option<RunReport>, HeldError> {
    // Decided first: releasing the changes would otherwise close it as moot.
    store
        .decide_held_run(held.id, "approved", actor, None)
        .await?;
    let holds = store.pending_holds(Some(&held.source)).await?;
    let released = super::scim::approve_holds(cfg, store, holds, actor).await?;
    Ok(released.into_iter().next().map(|r| r.report))
}

/// Drops a held run: nothing is applied (scim: the PBX users stay active).
pub async fn discard(
    store: &Store,
    id: i64,
    actor: &str,
    address: &str,
) -> Result<Decision, HeldError> {
    let (held, plan) = pending(store, id).await?;
    store.decide_held_run(id, "discarded", actor, None).await?;
    if plan.is_none() {
        let ids: Vec<i64> = store
            .pending_holds(Some(&held.source))
            .await?
            .iter()
            .map(|h| h.id)
            .collect();
        store
            .decide_holds(&ids, "discarded", actor, crate::time::now())
            .await?;
    }
    store
        .audit(
            actor,
            address,
            "held.discard",
            Some(&format!("held run {id}")),
            None,
        )
        .await?;
    tracing::info!(held = id, actor, address, "held run discarded");
    let (held, _) = store.held_run(id).await?.ok_or(HeldError::NotFound(id))?;
    Ok(Decision { held, report: None })
}
