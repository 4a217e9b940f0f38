//! `[mail]` and `[web]`: how welcome emails and admin reports leave, and
//! the rules of the page where users set their password and PIN.

use super::check::Checker;
use super::ldap::{parse_duration, Secret};
use super::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    from: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    folder: Option<String>,
    link_base_url: Option<Spanned<String>>,
    link_ttl: Option<Spanned<String>>,
    link_key_file: Option<String>,
    admin_report_to: Option<Spanned<Vec<String>>>,
    messages_per_second: Option<u32>,
    max_age: Option<Spanned<String>>,
    lease_seconds: Option<Spanned<u64>>,
    // SMTP
    host: Option<Spanned<String>>,
    port: Option<u16>,
    tls: Option<Spanned<String>>,
    ca_file: Option<String>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    pool_size: Option<Spanned<u32>>,
    timeout_seconds: Option<Spanned<u64>>,
    hello_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    listen: Option<Spanned<String>>,
    password_min_length: Option<Spanned<u32>>,
    pin_min_length: Option<Spanned<u32>>,
    password_blocklist_file: Option<String>,
    requests_per_minute: Option<Spanned<u32>>,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: lettre::message::Mailbox,
    pub transport: MailTransport,
    /// Links in emails start with this, never with a request's Host header.
    pub link_base_url: String,
    pub link_ttl: Duration,
    /// Holds the key that turns a link's salt into its token.
    pub link_key_file: PathBuf,
    pub admin_report_to: Vec<lettre::message::Mailbox>,
    pub messages_per_second: Option<NonZeroU32>,
    /// Temporary failures are retried until the message is this old.
    pub max_age: Duration,
    /// A claimed batch is another worker's to take after this long (a
    /// daemon that died while sending).
    pub lease: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    Folder(PathBuf),
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refused STARTTLS = failure.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Clear text: only when the config says so.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub pool_size: u32,
    pub timeout: Duration,
    pub hello_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where the daemon serves the welcome pages, `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    pub password_min_length: usize,
    pub pin_min_length: usize,
    pub password_blocklist_file: Option<PathBuf>,
    /// Per client address, on the welcome routes.
    pub requests_per_minute: NonZeroU32,
}

impl Checker<'_> {
    pub(super) fn mail(
        &self,
        raw: Option<&RawMail>,
        state_dir: &Path,
    ) -> Result<MailConfig, ConfigError> {
        let default = RawMail::default();
        let m = raw.unwrap_or(&default);
        let mailbox = |v: &str, span: std::ops::Range<usize>, key: &str| {
            v.trim()
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| self.err(span, key, format!("`{v}` is not an email address ({e})")))
        };
        let from = match &m.from {
            Some(f) => mailbox(f.get_ref(), f.span(), "mail.from")?,
            None => mailbox("PBX Onboarding <no-reply@localhost>", 0..0, "mail.from")?,
        };
        let link_base_url = match &m.link_base_url {
            None => "http://127.0.0.1:8480".to_string(),
            Some(u) => {
                let v = u.get_ref().trim().trim_end_matches('/');
                let rest = v
                    .strip_prefix("https://")
                    .or_else(|| v.strip_prefix("http://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => {
                        v.to_string()
                    }
                    _ => {
                        return Err(self.err(
                            u.span(),
                            "mail.link_base_url",
                            "expected an http:// or https:// URL without query, like \"https://pbx.acme.example\"",
                        ))
                    }
                }
            }
        };
        let duration = |v: &Option<Spanned<String>>, key: &str, default: u64| match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) => parse_duration(s.get_ref()).ok_or_else(|| {
                self.err(
                    s.span(),
                    key,
                    format!(
                        "`{}`: expected a duration like \"7d\", \"12h\"",
                        s.get_ref()
                    ),
                )
            }),
        };
        let link_ttl = duration(&m.link_ttl, "mail.link_ttl", 7 * 86_400)?;
        let max_age = duration(&m.max_age, "mail.max_age", 3 * 86_400)?;
        let lease = match &m.lease_seconds {
            None => 120,
            Some(l) if (5..=3600).contains(l.get_ref()) => *l.get_ref(),
            Some(l) => {
                return Err(self.err(l.span(), "mail.lease_seconds", "between 5 and 3600 seconds"))
            }
        };
        let admin_report_to = match &m.admin_report_to {
            None => Vec::new(),
            Some(v) => v
                .get_ref()
                .iter()
                .map(|a| mailbox(a, v.span(), "mail.admin_report_to"))
                .collect::<Result<_, _>>()?,
        };
        let folder = m
            .folder
            .as_deref()
            .map(|f| self.resolve(f))
            .unwrap_or_else(|| state_dir.join("mail"));
        let transport = match m.transport.as_ref().map(|t| (t.get_ref().as_str(), t)) {
            None | Some(("folder", _)) => {
                if let Some(h) = &m.host {
                    return Err(self.err(
                        h.span(),
                        "mail.host",
                        "set transport = \"smtp\" to send through a mail server",
                    ));
                }
                MailTransport::Folder(folder)
            }
            Some(("smtp", _)) => MailTransport::Smtp(self.smtp(m)?),
            Some((other, t)) => {
                return Err(self.err(
                    t.span(),
                    "mail.transport",
                    format!("`{other}`: expected \"folder\" or \"smtp\""),
                ))
            }
        };
        Ok(MailConfig {
            from,
            transport,
            link_base_url,
            link_ttl,
            link_key_file: m
                .link_key_file
                .as_deref()
                .map(|f| self.resolve(f))
                .unwrap_or_else(|| state_dir.join("link.key")),
            admin_report_to,
            messages_per_second: NonZeroU32::new(m.messages_per_second.unwrap_or(10)),
            max_age,
            lease: Duration::from_secs(lease),
        })
    }

    fn smtp(&self, m: &RawMail) -> Result<SmtpConfig, ConfigError> {
        let Some(host) = &m.host else {
            return Err(ConfigError::Parse {
                path: self.path.to_path_buf(),
                message: "mail.transport = \"smtp\" needs mail.host".into(),
            });
        };
        let tls = match m.tls.as_ref().map(|t| (t.get_ref().as_str(), t)) {
            None | Some(("starttls", _)) => SmtpTls::StartTls,
            Some(("tls", _)) => SmtpTls::Implicit,
            Some(("none", _)) => SmtpTls::None,
            Some((other, t)) => {
                return Err(self.err(
                    t.span(),
                    "mail.tls",
                    format!("`{other}`: expected \"starttls\", \"tls\" or \"none\""),
                ))
            }
        };
        let password = self.secret(
            m.password_file.as_ref(),
            m.password_env.as_ref(),
            "mail.password",
        )?;
        if m.username.is_some() != password.is_some() {
            let span = m.username.as_ref().map_or(host.span(), |u| u.span());
            return Err(self.err(
                span,
                "mail.username",
                "username and password_file (or password_env) go together",
            ));
        }
        let pool_size = match &m.pool_size {
            None => 4,
            Some(p) if (1..=64).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => return Err(self.err(p.span(), "mail.pool_size", "between 1 and 64")),
        };
        let timeout = match &m.timeout_seconds {
            None => 30,
            Some(t) if (1..=600).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => {
                return Err(self.err(
                    t.span(),
                    "mail.timeout_seconds",
                    "between 1 and 600 seconds",
                ))
            }
        };
        Ok(SmtpConfig {
            host: host.get_ref().trim().to_string(),
            port: m.port.unwrap_or(match tls {
                SmtpTls::Implicit => 465,
                _ => 587,
            }),
            tls,
            ca_file: m.ca_file.as_deref().map(|c| self.resolve(c)),
            username: m.username.as_ref().map(|u| u.get_ref().clone()),
            password,
            pool_size,
            timeout: Duration::from_secs(timeout),
            hello_name: m.hello_name.clone(),
        })
    }

    pub(super) fn web(&self, raw: Option<&RawWeb>) -> Result<WebConfig, ConfigError> {
        let bounded =
            |v: Option<&Spanned<u32>>, key: &str, default: u32, min: u32, max: u32| match v {
                None => Ok(default),
                Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(self.err(v.span(), key, format!("between {min} and {max}"))),
            };
        let listen = match raw.and_then(|w| w.listen.as_ref()) {
            None => SocketAddr::from(([127, 0, 0, 1], 8480)),
            Some(l) => l.get_ref().trim().parse().map_err(|_| {
                self.err(
                    l.span(),
                    "web.listen",
                    "expected an address and port, like \"127.0.0.1:8480\" or \"[::1]:8480\"",
                )
            })?,
        };
        let password_min_length = bounded(
            raw.and_then(|w| w.password_min_length.as_ref()),
            "web.password_min_length",
            15,
            8,
            64,
        )?;
        let pin_min_length = bounded(
            raw.and_then(|w| w.pin_min_length.as_ref()),
            "web.pin_min_length",
            6,
            4,
            12,
        )?;
        let rpm = bounded(
            raw.and_then(|w| w.requests_per_minute.as_ref()),
            "web.requests_per_minute",
            30,
            1,
            10_000,
        )?;
        Ok(WebConfig {
            listen,
            password_min_length: password_min_length as usize,
            pin_min_length: pin_min_length as usize,
            password_blocklist_file: raw
                .and_then(|w| w.password_blocklist_file.as_deref())
                .map(|f| self.resolve(f)),
            requests_per_minute: NonZeroU32::new(rpm).unwrap_or(NonZeroU32::MIN),
        })
    }
}
