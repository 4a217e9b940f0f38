//! The run report: one value per run, built from the plan and what apply did.
//! The CLI renders it as a table or JSON and turns it into the exit code; the
//! store keeps it as JSON in `runs.report`.

use crate::apply::Failed;
use crate::model::RowError;
use crate::plan::{Action, Billable, Plan};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything applied (or would apply, in a dry run).
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

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_csv: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
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
    pub deleted: u64,
    pub conflicts: Vec<ConflictEntry>,
    pub errors: Vec<RowError>,
    pub billable: Billable,
    pub refused: Option<String>,
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
            created: 0,
            updated: 0,
            disabled: 0,
            reenabled: 0,
            unchanged: 0,
            deleted: 0,
            conflicts: Vec::new(),
            errors: vec![error],
            billable: Billable::default(),
            refused: None,
            notes,
            files: Vec::new(),
            interrupted: false,
            throttled: std::time::Duration::ZERO,
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
            outcome: Outcome::Ok,
            created: 0,
            updated: 0,
            disabled: 0,
            reenabled: 0,
            unchanged: 0,
            deleted: 0,
            conflicts: Vec::new(),
            errors: plan.errors.clone(),
            billable: plan.billable,
            refused: plan.refused.clone(),
            notes: plan.notes.clone(),
            files: Vec::new(),
            interrupted: false,
            throttled: std::time::Duration::ZERO,
        };
        for a in &plan.actions {
            if let Action::Conflict {
                source_id,
                reason,
                at,
            } = a
            {
                r.conflicts.push(ConflictEntry {
                    source_id: source_id.clone(),
                    reason: reason.clone(),
                    file: Some(at.file.to_string()),
                    row: at.row,
                });
                continue;
            }
            if a.writes() && (failed_ids.contains(a.source_id()) || (!applied && !dry_run)) {
                continue;
            }
            match a {
                Action::Create { .. } => r.created += 1,
                Action::Update { .. } => r.updated += 1,
                Action::Reenable { .. } => r.reenabled += 1,
                Action::Disable { .. } => r.disabled += 1,
                Action::Delete { .. } => r.deleted += 1,
                Action::Unchanged { .. } => r.unchanged += 1,
                Action::Conflict { .. } => {}
            }
        }
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
        r.outcome = if r.refused.is_some() && !applied {
            Outcome::Refused
        } else if r.errors.is_empty() && r.conflicts.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        r
    }

    /// A report for a run where no file could be read at all.
    pub fn empty(source: &str, domain: &str, dry_run: bool, errors: Vec<RowError>) -> RunReport {
        RunReport {
            run_id: None,
            source: source.into(),
            domain: domain.into(),
            dry_run,
            outcome: if errors.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Partial
            },
            created: 0,
            updated: 0,
            disabled: 0,
            reenabled: 0,
            unchanged: 0,
            deleted: 0,
            conflicts: Vec::new(),
            errors,
            billable: Billable::default(),
            refused: None,
            notes: Vec::new(),
            files: Vec::new(),
            interrupted: false,
            throttled: std::time::Duration::ZERO,
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

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let verb = if self.dry_run { "would be " } else { "" };
        let run = self
            .run_id
            .map_or_else(|| "dry run".to_string(), |id| format!("run {id}"));
        let _ = writeln!(
            s,
            "{run}: source {} → domain {}: {}",
            self.source,
            self.domain,
            self.outcome.as_str()
        );
        for (n, what) in [
            (self.created, "created"),
            (self.updated, "updated"),
            (self.reenabled, "re-enabled"),
            (self.disabled, "disabled"),
            (self.deleted, "deleted"),
            (self.unchanged, "unchanged"),
        ] {
            let _ = writeln!(s, "  {n:>7} {verb}{what}");
        }
        let _ = writeln!(
            s,
            "  billable: {} new devices, {} new call-center seats",
            self.billable.devices, self.billable.call_center_seats
        );
        if let Some(why) = &self.refused {
            let _ = writeln!(s, "REFUSED: {why}");
            let _ = writeln!(s, "  nothing was applied; review the plan (--dry-run) and re-run with --override-limits to accept it");
        }
        for f in &self.files {
            let _ = write!(s, "  file {}: {}", f.file, f.status);
            if let Some(m) = &f.moved_to {
                let _ = write!(s, " → {m}");
            }
            if let Some(r) = &f.result_csv {
                let _ = write!(s, " (results: {r})");
            }
            s.push('\n');
        }
        if !self.conflicts.is_empty() {
            let _ = writeln!(s, "conflicts ({}):", self.conflicts.len());
            for c in &self.conflicts {
                let at = match (&c.file, c.row) {
                    (Some(f), Some(r)) => format!("{f}, row {r}: "),
                    _ => String::new(),
                };
                let _ = writeln!(s, "  {at}{}: {}", c.source_id, c.reason);
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "refused rows ({}):", self.errors.len());
            for e in &self.errors {
                let _ = writeln!(s, "  {e}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
