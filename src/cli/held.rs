//! `held list|show|approve|discard`: runs a safety limit refused (and a
//! scim source's held disables), kept until an admin decides.

use super::args::{Format, HeldAction};
use super::Usage;
use crate::config::Config;
use crate::store::{HeldRun, Store};
use crate::sync::held;

/// Who decided, for the record: the login (through sudo too), and the host
/// as the address.
pub(super) fn decider() -> (String, String) {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    (format!("{user} (cli)"), host)
}

fn line(h: &HeldRun) -> String {
    format!(
        "{:>5}  {:<10} {}  {} → {}: {} create, {} update, {} disable, {} billable — {}",
        h.id,
        h.status,
        crate::time::format_rfc3339(h.updated_at),
        h.source,
        h.domain,
        h.creates,
        h.updates,
        h.disables,
        h.billable,
        h.reason
    )
}

/// An unknown or decided id is a usage error (exit 2); the rest as is.
fn cli_error(e: held::HeldError) -> anyhow::Error {
    match e {
        held::HeldError::NotFound(_) | held::HeldError::Decided { .. } => {
            Usage(e.to_string()).into()
        }
        e => e.into(),
    }
}

pub async fn held(cfg: &Config, store: &Store, action: HeldAction) -> anyhow::Result<i32> {
    match action {
        HeldAction::List { all, format } => {
            let runs = store.held_runs(all).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&runs)?),
                Format::Table => {
                    if runs.is_empty() {
                        println!("no held runs");
                    }
                    for h in &runs {
                        println!("{}", line(h));
                    }
                }
            }
            Ok(0)
        }
        HeldAction::Show { id, format } => {
            let (h, plan) = held::show(store, id).await.map_err(cli_error)?;
            let actions = store.held_actions(&h, plan.as_ref()).await?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::json!({ "held": h, "actions": actions }))
                }
                Format::Table => {
                    println!("{}", line(&h));
                    if let Some(by) = &h.decided_by {
                        println!("       decided by {by}");
                    }
                    for a in &actions {
                        println!(
                            "  {:<9} {:<8} {:<30} {:<16} {:<12} {}",
                            a.action,
                            a.extension,
                            crate::model::excerpt(&a.name),
                            a.department.as_deref().unwrap_or("—"),
                            a.site.as_deref().unwrap_or("—"),
                            a.change
                        );
                    }
                }
            }
            Ok(0)
        }
        HeldAction::Approve { id, format } => {
            let (actor, address) = decider();
            let d = match held::approve(cfg, store, id, &actor, &address).await {
                Ok(d) => d,
                // Refused, as a run a limit refuses: exit 3.
                Err(e @ held::HeldError::Stale { .. }) => {
                    eprintln!("error: {e}");
                    return Ok(3);
                }
                Err(e) => return Err(cli_error(e)),
            };
            match (&d.report, format) {
                (Some(r), Format::Json) => println!("{}", serde_json::to_string(r)?),
                (Some(r), Format::Table) => println!(
                    "held run {id} applied as run {}: {} created, {} updated, {} disabled, {} errors",
                    r.run_id.unwrap_or(0),
                    r.created,
                    r.updated,
                    r.disabled,
                    r.errors.len()
                ),
                (None, _) => println!("held run {id} approved; nothing was left to apply"),
            }
            Ok(d.report.map_or(0, |r| r.exit_code()))
        }
        HeldAction::Discard { id } => {
            let (actor, address) = decider();
            let d = held::discard(store, id, &actor, &address)
                .await
                .map_err(cli_error)?;
            let users = match d.held.kind.as_str() {
                "scim" => {
                    "; those PBX users stay active (re-activate them in the identity provider)"
                }
                _ => "; nothing was applied",
            };
            println!("held run {id} discarded{users}");
            Ok(0)
        }
    }
}
