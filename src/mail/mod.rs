//! Mail: the outbox worker. It claims due rows, renders each welcome from the
//! user as they are now (`render`), arms the link (`token`), and delivers over
//! SMTP (`smtp`) or into a folder of `.eml` files, at `mail.messages_per_second`.
//!
//! Delivery guarantee: at least once. A row is marked sent after the server
//! accepted it; the marks of a batch are written together. If the process
//! dies between the two, the row's lease runs out and it is sent once more,
//! with the same Message-ID and the same link (the token is derived, not
//! drawn again), so a crash costs at most one duplicate per message.
//! Temporary failures (4xx, refused connection, timeout, TLS) retry with
//! exponential backoff until the message is `mail.max_age` old; permanent
//! failures (5xx) stop at once. Both are reported and kept in the outbox.

pub mod render;
pub mod smtp;
pub mod token;

use crate::config::{MailConfig, MailTransport};
use crate::model::StopFlag;
use crate::store::{Mark, OutboxItem, Payload, Store, StoreError, WelcomeItem};
use crate::time::now;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::{Mailbox, Message, MultiPart};
use render::{Rendered, WelcomeView};
use smtp::{SendError, SmtpPool};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use token::LinkKey;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] token::KeyError),
    #[error("mail")]
    Config(#[from] smtp::SmtpSetupError),
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DeliveryReport {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// One line per failed or retried message (first 50).
    pub errors: Vec<String>,
}

impl DeliveryReport {
    fn add(&mut self, id: i64, m: &Mark) {
        let line = |kind: &str, e: &str| format!("outbox #{id}: {kind}: {e}");
        let l = match m {
            Mark::Sent => {
                self.sent += 1;
                None
            }
            Mark::Retry { error, .. } => {
                self.retrying += 1;
                Some(line("will retry", error))
            }
            Mark::Failed(e) => {
                self.failed += 1;
                Some(line("failed", e))
            }
            Mark::Cancelled(_) => {
                self.cancelled += 1;
                None
            }
        };
        if let Some(l) = l {
            if self.errors.len() < 50 {
                self.errors.push(l);
            }
        }
    }
}

#[derive(Clone)]
enum Transport {
    Folder(PathBuf),
    Smtp(Arc<SmtpPool>),
}

/// A message ready to leave.
struct Outgoing {
    id: i64,
    created_at: i64,
    attempts: i64,
    message: Message,
}

pub struct Mailer {
    cfg: MailConfig,
    key: LinkKey,
    transport: Transport,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    workers: usize,
}

/// First retry after a minute, doubling, at most six hours apart.
fn backoff(attempts: i64) -> i64 {
    let n = attempts.clamp(1, 20) as u32;
    (60_i64 << (n - 1).min(9)).min(6 * 3600)
}

impl Mailer {
    pub fn new(cfg: &MailConfig) -> Result<Mailer, MailError> {
        let key = LinkKey::load_or_create(&cfg.link_key_file)?;
        let (transport, workers) = match &cfg.transport {
            MailTransport::Folder(dir) => (Transport::Folder(dir.clone()), 1),
            MailTransport::Smtp(s) => (
                Transport::Smtp(Arc::new(SmtpPool::new(s)?)),
                s.pool_size as usize,
            ),
        };
        let limiter = cfg
            .messages_per_second
            .map(|r| Arc::new(RateLimiter::direct(Quota::per_second(r))));
        Ok(Mailer {
            cfg: cfg.clone(),
            key,
            transport,
            limiter,
            workers,
        })
    }

    pub fn key(&self) -> &LinkKey {
        &self.key
    }

    /// The link a token opens, always from `mail.link_base_url`.
    pub fn link(&self, token: &str) -> String {
        format!("{}/welcome/{token}", self.cfg.link_base_url)
    }

    /// Closes pooled SMTP connections (QUIT). Idle ones are kept between
    /// passes otherwise, for up to a minute.
    pub async fn close(&self) {
        if let Transport::Smtp(pool) = &self.transport {
            pool.close().await;
        }
    }

    /// Rows claimed at once: a crash re-sends at most one batch, and a batch
    /// takes at most ~10 s at the configured rate.
    fn batch_size(&self) -> i64 {
        match self.cfg.messages_per_second {
            Some(r) => (i64::from(r.get()) * 10).clamp(10, 200),
            None => 200,
        }
    }

    /// Sends everything due now, batch by batch, until the outbox has
    /// nothing due or `stop` is set.
    pub async fn deliver(
        &self,
        store: &Store,
        stop: Option<&StopFlag>,
    ) -> Result<DeliveryReport, MailError> {
        let mut report = DeliveryReport::default();
        let batch = self.batch_size();
        let lease = self.cfg.lease.as_secs() as i64;
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            let items = store.claim_due(batch, lease).await?;
            if items.is_empty() {
                break;
            }
            let (outgoing, mut marks) = self.prepare(store, items).await?;
            marks.extend(self.send_all(outgoing).await);
            for (id, m) in &marks {
                report.add(*id, m);
            }
            store.mark(&marks).await?;
        }
        if report.sent + report.failed + report.retrying > 0 {
            tracing::info!(
                sent = report.sent,
                retrying = report.retrying,
                failed = report.failed,
                cancelled = report.cancelled,
                "outbox delivered"
            );
        }
        Ok(report)
    }

    /// Renders the batch and arms its links; rows that cannot be sent are
    /// marked at once.
    async fn prepare(
        &self,
        store: &Store,
        items: Vec<OutboxItem>,
    ) -> Result<(Vec<Outgoing>, Vec<(i64, Mark)>), MailError> {
        let t = now();
        let ttl = self.cfg.link_ttl.as_secs() as i64;
        let mut out = Vec::with_capacity(items.len());
        let mut marks = Vec::new();
        let mut arm = Vec::new();
        for item in items {
            if let Payload::Welcome(w) = &item.payload {
                if let Some(why) = welcome_blocked(w) {
                    marks.push((item.id, Mark::Cancelled(why.into())));
                    continue;
                }
            }
            // One message that cannot be built (even one that makes a
            // library panic) fails alone; the others of the batch go out.
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.build(&item, t + ttl)
            }))
            .unwrap_or_else(|_| {
                Err("the message could not be built (the builder panicked)".into())
            });
            let built = built.map(|(message, link)| {
                arm.extend(link);
                message
            });
            match built {
                Ok(message) => out.push(Outgoing {
                    id: item.id,
                    created_at: item.created_at,
                    attempts: item.attempts,
                    message,
                }),
                Err(e) => marks.push((item.id, Mark::Failed(e))),
            }
        }
        store.arm_links(&arm).await?;
        Ok((out, marks))
    }

    /// The message an outbox row would be sent as, formatted (RFC 5322
    /// bytes), without sending it or arming its link.
    pub fn preview(&self, item: &OutboxItem) -> Result<Vec<u8>, String> {
        self.build(item, now() + self.cfg.link_ttl.as_secs() as i64)
            .map(|(message, _)| message.formatted())
    }

    /// The message for an outbox row, and for a welcome the link to arm.
    fn build(
        &self,
        item: &OutboxItem,
        default_expiry: i64,
    ) -> Result<(Message, Option<ArmLink>), String> {
        match &item.payload {
            Payload::Welcome(w) => {
                let token = self.key.token(&w.salt);
                let expires = w.expires_at.unwrap_or(default_expiry);
                let message = self.welcome_message(item, w, &token, expires)?;
                Ok((
                    message,
                    Some((w.link_id, token::token_hash(&token), expires)),
                ))
            }
            Payload::Report(r) => {
                let to = r.recipients.iter().map(|a| (None, a.as_str()));
                let rendered = Rendered {
                    subject: r.subject.clone(),
                    text: r.text.clone(),
                    html: r.html.clone(),
                };
                Ok((self.message(&item.message_id, to, rendered)?, None))
            }
        }
    }

    fn welcome_message(
        &self,
        item: &OutboxItem,
        w: &WelcomeItem,
        token: &str,
        expires: i64,
    ) -> Result<Message, String> {
        let view = WelcomeView {
            first_name: w.first_name.clone(),
            domain: w.domain.clone(),
            extension: w.extension.clone(),
            voicemail: w.voicemail,
            device: w.device.clone().unwrap_or_default(),
            link: self.link(token),
            expires: crate::time::format_utc(expires),
            from_name: self
                .cfg
                .from
                .name
                .clone()
                .unwrap_or_else(|| "PBX Onboarding".into()),
        };
        let lang = crate::model::language(w.language.as_deref());
        let rendered = render::welcome(&view, lang).map_err(|e| format!("template: {e}"))?;
        let name = one_line(&match &w.last_name {
            Some(l) => format!("{} {l}", w.first_name),
            None => w.first_name.clone(),
        });
        let to = w.emails.iter().map(|e| (Some(name.clone()), e.as_str()));
        self.message(&item.message_id, to, rendered)
    }

    fn message<'a>(
        &self,
        message_id: &str,
        to: impl Iterator<Item = (Option<String>, &'a str)>,
        r: Rendered,
    ) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.cfg.from.clone())
            .subject(one_line(&r.subject))
            .message_id(Some(message_id.to_string()))
            .date_now();
        for (name, addr) in to {
            let addr = addr
                .parse()
                .map_err(|e| format!("recipient `{}`: {e}", crate::model::excerpt(addr)))?;
            b = b.to(Mailbox::new(name, addr));
        }
        b.multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| format!("message: {e}"))
    }

    /// Sends the prepared messages on up to `workers` connections.
    async fn send_all(&self, outgoing: Vec<Outgoing>) -> Vec<(i64, Mark)> {
        let queue = Arc::new(Mutex::new(VecDeque::from(outgoing)));
        let mut tasks = tokio::task::JoinSet::new();
        let max_age = self.cfg.max_age.as_secs() as i64;
        for _ in 0..self.workers {
            let queue = queue.clone();
            let limiter = self.limiter.clone();
            let sink = self.transport.clone();
            tasks.spawn(async move {
                let mut marks = Vec::new();
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(o) = next else { break };
                    if let Some(l) = &limiter {
                        l.until_ready().await;
                    }
                    // Each send on a task of its own: a panic in it fails
                    // this message, not the rest of the queue.
                    let (id, attempts, created_at) = (o.id, o.attempts, o.created_at);
                    let one = sink.clone();
                    let sent = tokio::spawn(async move { one.send(&o).await })
                        .await
                        .unwrap_or_else(|e| {
                            Err(SendError::Permanent(format!("sending panicked: {e}")))
                        });
                    let mark = match sent {
                        Ok(()) => Mark::Sent,
                        Err(SendError::Permanent(e)) => Mark::Failed(e),
                        Err(SendError::Temporary(e)) => {
                            let t = now();
                            let at = t + backoff(attempts + 1);
                            if at - created_at > max_age {
                                Mark::Failed(format!(
                                    "gave up after {} attempts: {e}",
                                    attempts + 1
                                ))
                            } else {
                                Mark::Retry { at, error: e }
                            }
                        }
                    };
                    marks.push((id, mark));
                }
                marks
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(m) => all.extend(m),
                Err(e) => tracing::error!(error = %e, "mail worker task failed"),
            }
        }
        all
    }
}

/// A welcome link to arm before its message leaves: link id, token hash,
/// expiry.
type ArmLink = (i64, String, i64);

/// A header value on one line (a line break in a name stored before
/// names were folded), the same folding mapping applies to input.
fn one_line(s: &str) -> String {
    let mut s = s.to_string();
    crate::model::one_line(&mut s);
    s
}

/// Why a queued welcome is no longer sent, if it is not.
fn welcome_blocked(w: &WelcomeItem) -> Option<&'static str> {
    if w.dead {
        Some("the link was used or replaced")
    } else if !w.active {
        Some("the user is disabled")
    } else if w.emails.is_empty() {
        Some("the user has no email address")
    } else {
        None
    }
}

impl Transport {
    async fn send(&self, o: &Outgoing) -> Result<(), SendError> {
        match self {
            Transport::Smtp(pool) => {
                pool.send(o.message.envelope(), &o.message.formatted())
                    .await
            }
            Transport::Folder(dir) => write_eml(dir, o.id, &o.message.formatted())
                .await
                .map_err(|e| SendError::Temporary(format!("mail folder {}: {e}", dir.display()))),
        }
    }
}

/// `<dir>/<outbox id>.eml`, written whole (temporary name, then rename), so
/// a re-send replaces the file instead of adding a second one.
async fn write_eml(dir: &Path, id: i64, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(format!("{id:08}.eml"));
    let tmp = dir.join(format!(".{id:08}.eml.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &path).await
}

/// Lines of the admin report: at most this many users per list.
const REPORT_LINES: usize = 200;

/// Queues the admin report of a run to `mail.admin_report_to`, when it is
/// set and the run changed or refused something; `applied` are the writes
/// that took effect (`report::applied_writes`). Never fails the run.
pub async fn queue_admin_report(
    cfg: &MailConfig,
    store: &Store,
    report: &crate::report::RunReport,
    applied: impl Iterator<Item = crate::plan::Action>,
) {
    use crate::plan::Action;
    if cfg.admin_report_to.is_empty() {
        return;
    }
    let quiet = report.created + report.disabled + report.reenabled + report.deleted == 0
        && report.errors.is_empty()
        && report.refused.is_none();
    if quiet {
        return;
    }
    // At most REPORT_LINES lines are kept per list, the rest counted.
    let (mut created, mut disabled) = (Vec::new(), Vec::new());
    let (mut more_created, mut more_disabled) = (0, 0);
    for a in applied {
        match a {
            Action::Create { .. } if created.len() == REPORT_LINES => more_created += 1,
            Action::Disable { .. } if disabled.len() == REPORT_LINES => more_disabled += 1,
            Action::Create {
                extension, fields, ..
            } => {
                created.push(format!(
                    "{} {} {}",
                    extension.as_str(),
                    fields.first_name,
                    fields.last_name.as_deref().unwrap_or("")
                ));
            }
            Action::Disable {
                source_id,
                extension,
                ..
            } => {
                disabled.push(format!("{extension} ({source_id})"));
            }
            _ => {}
        }
    }
    for (list, more) in [(&mut created, more_created), (&mut disabled, more_disabled)] {
        if more > 0 {
            list.push(format!("… and {more} more (see `pbx-onboard runs`)"));
        }
    }
    let rendered = match render::report(report, &created, &disabled) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "admin report not rendered");
            return;
        }
    };
    let item = crate::store::ReportItem {
        recipients: cfg
            .admin_report_to
            .iter()
            .map(|m| m.email.to_string())
            .collect(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
    };
    if let Err(e) = store.queue_report(&item, cfg.from.email.domain()).await {
        tracing::warn!(error = %e, "admin report not queued");
    }
}

#[cfg(test)]
mod tests;
