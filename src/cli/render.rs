//! What the CLI prints: run reports as text, listings as aligned tables,
//! JSON arrays, and CSV whose cells cannot run as spreadsheet formulas.

use super::args::{Format, ListFormat};
use crate::report::{Outcome, RunReport};
use crate::source::inbox::safe_field;
use crate::store::{DeviceView, Rotated, RunRow, UserView, WelcomeState};
use std::fmt::Write as _;
use std::io::Write;

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for r in rows {
        s += &line(r.iter().map(String::as_str).collect());
    }
    s
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

pub fn users(users: &[UserView], format: ListFormat) -> anyhow::Result<()> {
    let header = [
        "domain",
        "extension",
        "first_name",
        "last_name",
        "emails",
        "department",
        "site",
        "scope",
        "status",
        "tags",
        "source",
        "source_id",
        "devices",
    ];
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.domain.clone(),
                u.extension.clone(),
                u.first_name.clone(),
                opt(&u.last_name),
                u.emails.join("; "),
                opt(&u.department),
                opt(&u.site),
                u.scope.clone(),
                u.status.clone(),
                u.tags.join(", "),
                opt(&u.source),
                opt(&u.source_id),
                u.devices
                    .iter()
                    .map(|d| {
                        format!(
                            "{}:{}{}",
                            d.device_type,
                            d.sip_username,
                            if d.enabled { "" } else { " (off)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    list(users, &header, &rows, format)
}

/// Writes a listing as a table, JSON (the items) or formula-safe CSV.
fn list<T: serde::Serialize>(
    items: &[T],
    header: &[&str],
    rows: &[Vec<String>],
    format: ListFormat,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        ListFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&with_times(items)?)?
        )?,
        ListFormat::Table => write!(out, "{}", table(header, rows))?,
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for r in rows {
                w.write_record(r.iter().map(|c| safe_field(c)))?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// `welcome pending`: each person's latest welcome.
pub fn welcomes(states: &[WelcomeState], format: ListFormat) -> anyhow::Result<()> {
    let header = [
        "domain",
        "extension",
        "name",
        "emails",
        "state",
        "attempts",
        "sent_at",
        "expires_at",
        "last_error",
    ];
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|w| {
            vec![
                w.domain.clone(),
                w.extension.clone(),
                w.name.clone(),
                w.emails.join("; "),
                w.state.clone(),
                w.attempts.to_string(),
                w.sent_at.map(when).unwrap_or_default(),
                w.expires_at.map(when).unwrap_or_default(),
                opt(&w.last_error),
            ]
        })
        .collect();
    list(states, &header, &rows, format)
}

/// A time in tables and CSV: RFC 3339 in UTC, sortable and locale-free.
fn when(t: i64) -> String {
    crate::time::format_rfc3339(t)
}

/// JSON for listings: every `…_at` number (Unix seconds) gains an
/// `…_at_rfc3339` string beside it.
fn with_times<T: serde::Serialize>(items: &[T]) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(items)?;
    if let Some(list) = v.as_array_mut() {
        for item in list.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            let stamps: Vec<(String, i64)> = item
                .iter()
                .filter(|(k, _)| k.ends_with("_at"))
                .filter_map(|(k, v)| v.as_i64().map(|t| (format!("{k}_rfc3339"), t)))
                .collect();
            for (k, t) in stamps {
                item.insert(k, crate::time::format_rfc3339(t).into());
            }
        }
    }
    Ok(v)
}

pub fn runs(runs: &[RunRow], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&with_times(runs)?)?)?,
        Format::Table => {
            let header = [
                "run",
                "source",
                "domain",
                "started",
                "outcome",
                "created",
                "updated",
                "disabled",
                "reenabled",
                "unchanged",
                "conflicts",
                "errors",
            ];
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        r.run_id.to_string(),
                        r.source.clone(),
                        r.domain.clone(),
                        when(r.started_at),
                        r.outcome.clone(),
                        r.created.to_string(),
                        r.updated.to_string(),
                        r.disabled.to_string(),
                        r.reenabled.to_string(),
                        r.unchanged.to_string(),
                        r.conflicts.to_string(),
                        r.errors.to_string(),
                    ]
                })
                .collect();
            write!(out, "{}", table(&header, &rows))?;
        }
    }
    Ok(())
}

pub fn devices(devices: &[DeviceView], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(devices)?)?,
        Format::Table => {
            let header = [
                "domain",
                "extension",
                "sip_username",
                "type",
                "enabled",
                "registrable",
                "user_status",
                "name",
            ];
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    vec![
                        d.domain.clone(),
                        d.extension.clone(),
                        d.sip_username.clone(),
                        d.device_type.clone(),
                        yes(d.enabled),
                        yes(d.registrable),
                        d.user_status.clone(),
                        format!("{} {}", d.first_name, opt(&d.last_name))
                            .trim()
                            .to_string(),
                    ]
                })
                .collect();
            write!(out, "{}", table(&header, &rows))?;
        }
    }
    Ok(())
}

/// Prints a new device secret, the only time it is shown.
pub fn rotated(r: &Rotated, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Table => writeln!(
            out,
            "new secret for {}@{} (extension {}): {}\n\
             The old secret no longer registers. This is the only time the secret is shown here;\n\
             enter it in the phone or its provisioning profile, never in an email.",
            r.sip_username, r.domain, r.extension, r.secret
        )?,
    }
    Ok(())
}

/// A run report as the terminal shows it.
pub fn run_report(r: &RunReport) -> String {
    let mut s = String::new();
    let verb = if r.dry_run { "would be " } else { "" };
    let run = r
        .run_id
        .map_or_else(|| "dry run".to_string(), |id| format!("run {id}"));
    let _ = writeln!(
        s,
        "{run}: source {} → domain {}: {}",
        r.source,
        r.domain,
        r.outcome.as_str()
    );
    for (n, what) in [
        (r.created, "created"),
        (r.updated, "updated"),
        (r.reenabled, "re-enabled"),
        (r.disabled, "disabled"),
        (r.deleted, "deleted"),
        (r.unchanged, "unchanged"),
        (r.skipped, "skipped (not in the PBX)"),
    ] {
        let _ = writeln!(s, "  {n:>7} {verb}{what}");
    }
    let _ = writeln!(
        s,
        "  billable: {} new devices, {} new call-center seats",
        r.billable.devices, r.billable.call_center_seats
    );
    if let Some(why) = &r.refused {
        let _ = writeln!(s, "REFUSED: {why}");
        let _ = writeln!(s, "  nothing was applied; the plan is held for an admin (see the note below and `pbx-onboard held list`)");
    }
    for f in &r.files {
        let _ = write!(s, "  file {}: {}", f.file, f.status.as_str());
        if let Some(m) = &f.moved_to {
            let _ = write!(s, " → {m}");
        }
        if let Some(csv) = &f.result_csv {
            let _ = write!(s, " (results: {csv})");
        }
        s.push('\n');
    }
    if !r.conflicts.is_empty() {
        let _ = writeln!(s, "conflicts ({}):", r.conflicts.len());
        for c in &r.conflicts {
            let at = match (&c.file, c.row) {
                (Some(f), Some(r)) => format!("{f}, row {r}: "),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {at}{}: {}", c.source_id, c.reason);
        }
    }
    if r.outcome == Outcome::Failed {
        // The run failed as a whole: its errors are why, not refused rows.
        for e in &r.errors {
            let _ = writeln!(s, "FAILED: {e}");
        }
    } else {
        let (files, rows): (Vec<_>, Vec<_>) = r.errors.iter().partition(|e| e.row.is_none());
        if !files.is_empty() {
            let _ = writeln!(s, "refused files ({}):", files.len());
            for e in files {
                let _ = writeln!(s, "  {e}");
            }
        }
        if !rows.is_empty() {
            let _ = writeln!(s, "refused rows ({}):", rows.len());
            for e in rows {
                let _ = writeln!(s, "  {e}");
            }
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
