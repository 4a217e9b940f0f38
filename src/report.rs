//! The run report: one value per run, built from the plan and what apply did.
//! The CLI renders it as a table or JSON and turns it into the exit code; the
//! store keeps it as JSON in `runs.report`.

use crate::model::{Failed, RowError};
use crate::plan::{Action, Billable, Counts, Plan, Refusal};
use serde::{Serialize, Serializer};
use std::collections::HashSet;

/// The longest message a report keeps (each quotes at most ~100
/// characters of input; this bounds whatever else a message holds).
pub const MESSAGE_MAX: usize = 500;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything applied (or would apply, in a dry run).
    #[default]
    Ok,
    /// Some rows were refused or conflicted; the others applied.
    Partial,
    /// A safety threshold refused the whole run; nothing was applied.
    Refused,
    /// The source could not be read (directory down, bind refused, a page
    /// failed); nothing was applied and nobody disabled.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConflictEntry {
    pub source_id: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
}

/// What became of a file a run read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// `import FILE`: read (the file stays where it is).
    Read,
    /// `import FILE`: refused whole.
    Refused,
    /// A drop-folder file, moved to `archive/`.
    Archived,
    /// A drop-folder file, moved to `failed/`.
    Failed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Read => "read",
            FileStatus::Refused => "refused",
            FileStatus::Archived => "archived",
            FileStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub status: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_csv: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub run_id: Option<i64>,
    pub source: String,
    pub domain: String,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub created: u64,
    pub updated: u64,
    pub disabled: u64,
    pub reenabled: u64,
    pub unchanged: u64,
    /// Rows about people not in the PBX and not to be (a leaver never
    /// created, an account disabled in the directory on a first read).
    pub skipped: u64,
    pub deleted: u64,
    pub conflicts: Vec<ConflictEntry>,
    pub errors: Vec<RowError>,
    pub billable: Billable,
    /// The safety threshold that refused the run (its sentence in JSON).
    #[serde(serialize_with = "as_sentence")]
    pub refused: Option<Refusal>,
    pub notes: Vec<String>,
    pub files: Vec<FileReport>,
    /// A shutdown stopped the apply between chunks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Time apply waited on the rate limiter (metrics only).
    #[serde(skip)]
    pub throttled: std::time::Duration,
}

impl RunReport {
    /// A run whose source read failed: no plan, nothing applied.
    pub fn failed(
        source: &str,
        domain: &str,
        run_id: Option<i64>,
        dry_run: bool,
        error: RowError,
        notes: Vec<String>,
    ) -> RunReport {
        RunReport {
            run_id,
            source: source.to_string(),
            domain: domain.to_string(),
            dry_run,
            outcome: Outcome::Failed,
            errors: vec![RowError {
                message: {
                    let mut m = error.message;
                    crate::model::bound(&mut m, MESSAGE_MAX);
                    m
                },
                ..error
            }],
            notes,
            ..Default::default()
        }
    }

    /// What the plan did (or would do), minus the writes that failed.
    pub fn new(
        plan: &Plan,
        run_id: Option<i64>,
        dry_run: bool,
        applied: bool,
        failed: &[Failed],
    ) -> RunReport {
        let failed_ids: HashSet<&str> = failed.iter().map(|f| f.source_id.as_str()).collect();
        let mut r = RunReport {
            run_id,
            source: plan.source.clone(),
            domain: plan.domain.clone(),
            dry_run,
            errors: plan.errors.clone(),
            billable: plan.billable,
            refused: plan.refused.clone(),
            notes: plan.notes.clone(),
            ..Default::default()
        };
        let c = if failed.is_empty() {
            // Counted as planned; only the conflicts are unpacked.
            for a in plan.actions.conflicts() {
                r.conflict(a);
            }
            plan.actions.counts()
        } else {
            let mut c = Counts::default();
            for a in plan.actions.iter() {
                if matches!(a, Action::Conflict { .. }) {
                    r.conflict(a);
                } else if !(a.writes() && failed_ids.contains(a.source_id())) {
                    c.add(&a);
                }
            }
            c
        };
        // A run neither applied nor dry shows no writes.
        if applied || dry_run {
            (r.created, r.updated, r.reenabled) = (c.create, c.update, c.reenable);
            (r.disabled, r.deleted) = (c.disable, c.delete);
        }
        (r.unchanged, r.skipped) = (c.unchanged, c.skipped);
        for f in failed {
            r.errors.push(RowError {
                file: f
                    .at
                    .as_ref()
                    .map_or_else(|| plan.source.clone(), |a| a.file.to_string()),
                row: f.at.as_ref().and_then(|a| a.row),
                column: None,
                message: f.message.clone(),
                source_id: Some(f.source_id.clone()),
            });
        }
        for e in &mut r.errors {
            crate::model::bound(&mut e.message, MESSAGE_MAX);
        }
        for c in &mut r.conflicts {
            crate::model::bound(&mut c.reason, MESSAGE_MAX);
        }
        r.outcome = if r.refused.is_some() && !applied {
            Outcome::Refused
        } else if r.errors.is_empty() && r.conflicts.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        r
    }

    fn conflict(&mut self, a: Action) {
        if let Action::Conflict {
            source_id,
            reason,
            at,
        } = a
        {
            self.conflicts.push(ConflictEntry {
                source_id,
                reason,
                file: Some(at.file.to_string()),
                row: at.row,
            });
        }
    }

    /// 0 all applied; 1 some rows refused (others applied); 3 refused by a safety threshold.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Ok => 0,
            Outcome::Partial => 1,
            Outcome::Refused => 3,
            Outcome::Failed => 4,
        }
    }
}

fn as_sentence<S: Serializer>(r: &Option<Refusal>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.collect_str(r),
        None => s.serialize_none(),
    }
}

/// The writes of a plan that took effect: none when the run did not apply,
/// and never one that failed.
pub fn applied_writes<'p>(
    plan: &'p Plan,
    applied: bool,
    failed: &'p [Failed],
) -> impl Iterator<Item = Action> + 'p {
    let failed: HashSet<&str> = failed.iter().map(|f| f.source_id.as_str()).collect();
    plan.actions
        .iter()
        .filter(move |a| applied && a.writes() && !failed.contains(a.source_id()))
}
