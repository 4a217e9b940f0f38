//! `mail flush`, `welcome resend`, `welcome pending`, and the delivery that
//! `import` and `sync` do after a run.

use super::args::{MailAction, WelcomeAction};
use super::Usage;
use crate::config::Config;
use crate::mail::{DeliveryReport, Mailer};
use crate::store::{Resend, Store};

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
            include_sent,
            no_mail,
        } => {
            // With one domain configured, --domain is that one.
            let domain = domain.or_else(|| match cfg.domains.as_slice() {
                [only] => Some(only.name.clone()),
                _ => None,
            });
            let ids = match (&extension, all_pending) {
                (Some(ext), false) => {
                    let Some(d) = &domain else {
                        return Err(Usage(
                            "welcome resend EXTENSION needs --domain (several domains are configured)"
                                .into(),
                        )
                        .into());
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
                _ => {
                    store
                        .resend_candidates(domain.as_deref(), include_sent)
                        .await?
                }
            };
            let mut queued = 0;
            let mail_domain = cfg.mail.from.email.domain().to_string();
            for id in &ids {
                match store.resend_welcome(*id, &mail_domain).await? {
                    Resend::Queued => queued += 1,
                    Resend::Refused(why) if extension.is_some() => {
                        return Err(Usage(format!("no welcome sent: {why}")).into());
                    }
                    Resend::Refused(_) => {}
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
