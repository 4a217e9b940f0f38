//! `admin add|list|remove|passwd`: accounts for the admin console.
//! Passwords follow the welcome page's rules and are stored as argon2id.

use super::args::{AdminAction, AdminRole, Format};
use super::Usage;
use crate::config::Config;
use crate::store::Store;
use crate::web::policy::{hash_secret, Owner, Policy};
use std::io::BufRead;

fn policy(cfg: &Config) -> anyhow::Result<Policy> {
    Policy::for_config(&cfg.web).map_err(|e| {
        let file = cfg.web.password_blocklist_file.clone().unwrap_or_default();
        anyhow::anyhow!(
            "cannot read web.password_blocklist_file {}: {e}",
            file.display()
        )
    })
}

/// The new password: the first line of stdin, or asked twice on the
/// terminal without echo. Checked against the policy, then hashed.
fn new_password(cfg: &Config, name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = rpassword::prompt_password(format!("New password for {name}: ")).map_err(|e| {
            Usage(format!(
                "cannot read a password from the terminal ({e}); use --password-stdin"
            ))
        })?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            return Err(Usage("the two passwords differ".into()).into());
        }
        a
    };
    let owner = Owner {
        first_name: name,
        last_name: None,
        extension: "",
    };
    let pw = policy(cfg)?
        .password(&pw, &owner)
        .map_err(|p| Usage(format!("password refused: {}", p.text("en"))))?;
    Ok(hash_secret(&pw)?)
}

fn valid_name(name: &str) -> Result<(), Usage> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    match ok {
        true => Ok(()),
        false => Err(Usage(format!(
            "account name `{}`: 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
            crate::model::excerpt(name)
        ))),
    }
}

pub async fn admin(cfg: &Config, store: &Store, action: AdminAction) -> anyhow::Result<i32> {
    let (actor, address) = super::held::decider();
    match action {
        AdminAction::Add {
            name,
            role,
            password_stdin,
        } => {
            valid_name(&name)?;
            let role = match role {
                AdminRole::Admin => "admin",
                AdminRole::Viewer => "viewer",
            };
            let hash = new_password(cfg, &name, password_stdin)?;
            if !store.admin_add(&name, role, &hash).await? {
                return Err(Usage(format!(
                    "account `{name}` exists (`admin passwd {name}` sets its password)"
                ))
                .into());
            }
            store
                .audit(&actor, &address, "admin.add", Some(&name), Some(role))
                .await?;
            println!("account {name} ({role}) added");
        }
        AdminAction::List { format } => {
            let rows = store.admin_list().await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&rows)?),
                Format::Table => {
                    if rows.is_empty() {
                        println!(
                            "no accounts (add one with `pbx-onboard admin add NAME --role admin`)"
                        );
                    }
                    for r in rows {
                        println!(
                            "{:<24} {:<7} since {}",
                            r.name,
                            r.role,
                            crate::time::format_rfc3339(r.created_at)
                        );
                    }
                }
            }
        }
        AdminAction::Remove { name } => {
            if !store.admin_remove(&name).await? {
                return Err(Usage(format!(
                    "there is no account `{}`",
                    crate::model::excerpt(&name)
                ))
                .into());
            }
            store
                .audit(&actor, &address, "admin.remove", Some(&name), None)
                .await?;
            println!("account {name} removed; its sessions ended");
        }
        AdminAction::Passwd {
            name,
            password_stdin,
        } => {
            if store.admin_get(&name).await?.is_none() {
                return Err(Usage(format!(
                    "there is no account `{}`",
                    crate::model::excerpt(&name)
                ))
                .into());
            }
            let hash = new_password(cfg, &name, password_stdin)?;
            store.admin_set_password(&name, &hash).await?;
            store
                .audit(&actor, &address, "admin.passwd", Some(&name), None)
                .await?;
            println!("password of {name} set; its sessions ended");
        }
    }
    Ok(0)
}
