//! `held list|approve|discard`: disables a scim source asked for beyond
//! the limits within an hour, staged until an admin decides.

use super::args::{Format, HeldAction};
use super::Usage;
use crate::config::Config;
use crate::store::{HeldRow, Store};

/// Who decided, for the record: the login (through sudo too) and the host.
fn decider() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host} (cli)")
}

async fn chosen(
    store: &Store,
    ids: &[i64],
    all: bool,
    source: Option<&str>,
) -> anyhow::Result<Vec<HeldRow>> {
    let pending = store.pending_holds(source).await?;
    if all {
        return Ok(pending);
    }
    let mut out = Vec::new();
    for id in ids {
        match pending.iter().find(|h| h.id == *id) {
            Some(h) => out.push(h.clone()),
            None => {
                return Err(Usage(format!(
                    "no pending hold {id} (see `pbx-onboard held list`)"
                ))
                .into())
            }
        }
    }
    Ok(out)
}

pub async fn held(cfg: &Config, store: &Store, action: HeldAction) -> anyhow::Result<i32> {
    match action {
        HeldAction::List { source, format } => {
            let holds = store.pending_holds(source.as_deref()).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&holds)?),
                Format::Table => {
                    if holds.is_empty() {
                        println!("no held changes");
                    }
                    for h in &holds {
                        println!(
                            "{:>6}  {}  {:<10} {} → {}: {} (resource {})",
                            h.id,
                            crate::time::format_rfc3339(h.created_at),
                            h.what,
                            h.source,
                            h.domain,
                            h.source_id,
                            h.resource_id
                        );
                    }
                }
            }
            Ok(0)
        }
        HeldAction::Approve { ids, all, source } => {
            let holds = chosen(store, &ids, all, source.as_deref()).await?;
            if holds.is_empty() {
                println!("nothing to approve");
                return Ok(0);
            }
            let released = crate::sync::scim::approve_holds(cfg, store, holds, &decider()).await?;
            let mut code = 0;
            for r in &released {
                println!(
                    "source {}: {} held changes applied as run {}: {} disabled, {} errors",
                    r.source,
                    r.ids.len(),
                    r.report.run_id.unwrap_or(0),
                    r.report.disabled,
                    r.report.errors.len()
                );
                code = code.max(r.report.exit_code());
            }
            Ok(code)
        }
        HeldAction::Discard { ids, all, source } => {
            let holds = chosen(store, &ids, all, source.as_deref()).await?;
            let ids: Vec<i64> = holds.iter().map(|h| h.id).collect();
            let n = store
                .decide_holds(&ids, "discarded", &decider(), crate::time::now())
                .await?;
            println!(
                "{n} held changes discarded; those PBX users stay active (re-activate them in the identity provider)"
            );
            Ok(0)
        }
    }
}
