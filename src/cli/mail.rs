//! `mail flush`, `welcome resend`, `welcome pending`, and the delivery that
//! `import` and `sync` do after a run.

use super::args::{MailAction, WelcomeAction};
use super::Usage;
use crate::config::Config;
use crate::mail::{DeliveryReport, Mailer};
use crate::store::Store;

/// Delivers what is due after a run; a mail problem never changes the
/// run's exit code (the emails stay queued for the daemon or `mail flush`).
pub async fn deliver_after_run(cfg: &Config, store: &Store) {
    match deliver(cfg, store).await {
        Ok(r) => summary(&r),
        Err(e) => eprintln!("mail: not delivered now, still queued: {e:#}"),
    }
}

async fn deliver(cfg: &Config, store: &Store) -> anyhow::Result<DeliveryReport> {
    let mailer = Mailer::new(&cfg.mail)?;
    let r = mailer.deliver(store, None).await;
    mailer.close().await;
    Ok(r?)
}

fn summary(r: &DeliveryReport) {
    if r.sent + r.retrying + r.failed + r.cancelled == 0 {
        return;
    }
    eprintln!(
        "mail: {} sent, {} will be retried, {} failed, {} cancelled",
        r.sent, r.retrying, r.failed, r.cancelled
    );
    for e in &r.errors {
        eprintln!("  {e}");
    }
}

pub async fn mail(cfg: &Config, store: &Store, action: MailAction) -> anyhow::Result<i32> {
    match action {
        MailAction::Flush { retry_now, format } => {
            if retry_now {
                store.retry_now().await?;
            }
            let r = deliver(cfg, store).await?;
            match format {
                super::Format::Json => println!("{}", serde_json::to_string(&r)?),
                super::Format::Table => {
                    println!(
                        "{} sent, {} will be retried, {} failed, {} cancelled",
                        r.sent, r.retrying, r.failed, r.cancelled
                    );
                    for e in &r.errors {
                        println!("  {e}");
                    }
                }
            }
            Ok(if r.failed + r.retrying > 0 { 1 } else { 0 })
        }
    }
}

pub async fn welcome(cfg: &Config, store: &Store, action: WelcomeAction) -> anyhow::Result<i32> {
    match action {
        WelcomeAction::Pending {
            domain,
            all,
            format,
        } => {
            let mut states = store.welcome_states(domain.as_deref()).await?;
            if !all {
                states.retain(|s| s.state != "completed");
            }
            super::render::welcomes(&states, format)?;
            Ok(0)
        }
        WelcomeAction::Resend {
            domain,
            extension,
            all_pending,
            no_mail,
        } => {
            let ids = match (&extension, all_pending) {
                (Some(ext), false) => {
                    let Some(d) = &domain else {
                        return Err(Usage("welcome resend EXTENSION needs --domain".into()).into());
                    };
                    match store.user_id(d, ext).await? {
                        Some(id) => vec![id],
                        None => {
                            return Err(Usage(format!(
                                "domain {d} has no user with extension {ext}"
                            ))
                            .into())
                        }
                    }
                }
                _ => store.resend_candidates(domain.as_deref()).await?,
            };
            let mut queued = 0;
            for id in &ids {
                let mail_domain = cfg.mail.from.email.domain().to_string();
                if store.resend_welcome(*id, &mail_domain).await? {
                    queued += 1;
                } else if extension.is_some() {
                    return Err(Usage(
                        "this user cannot get a welcome: disabled, no email address, not a person, or already set up".into(),
                    )
                    .into());
                }
            }
            println!("{queued} welcome(s) queued; earlier links of those users no longer work");
            if !no_mail {
                deliver_after_run(cfg, store).await;
            }
            Ok(0)
        }
    }
}
