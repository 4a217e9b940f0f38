//! Configuration: the TOML file as users write it (`Raw*`, unknown keys rejected
//! with their line), then validated into a checked `Config` whose values are
//! ready to use (resolved paths, parsed ranges, durations).
//!
//! Relative paths resolve against the folder holding the config file.

use crate::mapping::Rule;
use crate::model::{fold, DeviceType, Field, InvalidValue, PhoneNumber, Scope, UserKind};
use crate::numbering::{NumberRange, NumberSet};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod ldap;
mod mail;
pub use ldap::{AttrMap, LdapProfile, LdapSourceConfig, LdapTls, Secret};
pub use mail::{MailConfig, MailTransport, SmtpConfig, SmtpTls, WebConfig};
use mail::{RawMail, RawWeb};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}, line {line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

// ---------------------------------------------------------------- raw shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: RawStore,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    mail: Option<RawMail>,
    #[serde(default)]
    state: Option<RawState>,
    #[serde(rename = "domain", default)]
    domains: Vec<RawDomain>,
    #[serde(default)]
    mapping: RawMapping,
    #[serde(rename = "source", default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    web: Option<RawWeb>,
    #[serde(default)]
    daemon: Option<RawDaemon>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    #[serde(default)]
    rescan_seconds: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Spanned<String>,
    #[serde(default)]
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    writes_per_second: u32,
    burst: Spanned<u32>,
    max_disable: u64,
    max_disable_percent: Spanned<u32>,
    max_billable: u64,
    chunk_size: Spanned<u32>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            writes_per_second: 50,
            burst: Spanned::new(0..0, 10),
            max_disable: 25,
            max_disable_percent: Spanned::new(0..0, 10),
            max_billable: 500,
            chunk_size: Spanned::new(0..0, 1000),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Spanned<String>,
    numbering: Spanned<Vec<String>>,
    #[serde(default)]
    reserved: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    numbers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    emergency_caller_id: Option<Spanned<String>>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    dial_permission: Option<String>,
    #[serde(default = "yes")]
    require_last_name: bool,
    #[serde(rename = "site", default)]
    sites: Vec<RawSite>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: Spanned<String>,
    #[serde(default)]
    numbering: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    area_code: Option<String>,
    #[serde(default)]
    caller_id: Option<Spanned<String>>,
    #[serde(default)]
    dial_permission: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(rename = "rule", default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    group: Option<String>,
    department: Option<String>,
    title: Option<String>,
    // what the rule sets
    scope: Option<Spanned<String>>,
    site: Option<String>,
    kind: Option<Spanned<String>>,
    voicemail: Option<bool>,
    device: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: Spanned<String>,
    domain: Spanned<String>,
    #[serde(default)]
    inbox: Option<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    aliases: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    settle_seconds: Option<f64>,
    #[serde(default)]
    delete_after_days: Option<u32>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    // LDAP sources (see `ldap.rs`).
    #[serde(default)]
    profile: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    tls: Option<Spanned<String>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    bind_dn: Option<Spanned<String>>,
    #[serde(default)]
    bind_password_file: Option<Spanned<String>>,
    #[serde(default)]
    bind_password_env: Option<Spanned<String>>,
    #[serde(default)]
    base_dn: Option<Spanned<String>>,
    #[serde(default)]
    group: Option<Spanned<String>>,
    #[serde(default)]
    group_base_dn: Option<Spanned<String>>,
    #[serde(default)]
    filter: Option<Spanned<String>>,
    #[serde(default)]
    disabled_filter: Option<Spanned<String>>,
    #[serde(default)]
    person_filter: Option<Spanned<String>>,
    #[serde(default)]
    page_size: Option<Spanned<u32>>,
    #[serde(default)]
    full_sync_every: Option<Spanned<String>>,
    #[serde(default)]
    timeout_seconds: Option<Spanned<f64>>,
    #[serde(default)]
    attributes: Option<Spanned<BTreeMap<String, OneOrMany>>>,
}

/// A TOML value that may be one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

// ---------------------------------------------------------------- checked shape

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub limits: Limits,
    pub mail: MailConfig,
    pub state_dir: PathBuf,
    pub domains: Vec<DomainConfig>,
    pub rules: Vec<Rule>,
    pub sources: Vec<SourceConfig>,
    pub web: WebConfig,
    pub daemon: DaemonConfig,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Drop folders are rescanned this often even without a file event.
    pub rescan: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Connection URL with relative SQLite paths already resolved.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Store writes (users) per second; `None` = unlimited.
    pub writes_per_second: Option<std::num::NonZeroU32>,
    pub burst: std::num::NonZeroU32,
    pub max_disable: u64,
    pub max_disable_percent: u32,
    pub max_billable: u64,
    /// Users per transaction when unlimited (rate-limited runs use the burst).
    pub chunk_size: u32,
}

#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub name: String,
    pub numbering: Vec<NumberRange>,
    pub reserved: NumberSet,
    pub numbers: Vec<PhoneNumber>,
    pub emergency_caller_id: Option<PhoneNumber>,
    pub timezone: Option<String>,
    pub language: Option<String>,
    pub dial_permission: Option<String>,
    pub require_last_name: bool,
    pub sites: Vec<SiteConfig>,
}

impl DomainConfig {
    pub fn site(&self, name: &str) -> Option<&SiteConfig> {
        let f = fold(name);
        self.sites.iter().find(|s| fold(&s.name) == f)
    }
}

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    pub numbering: Vec<NumberRange>,
    pub timezone: Option<String>,
    pub language: Option<String>,
    pub area_code: Option<String>,
    pub caller_id: Option<PhoneNumber>,
    pub dial_permission: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The source lists everyone: users it owns that are absent get disabled.
    Full,
    /// The source lists changes only: add and update, never disable by absence.
    Delta,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub domain: String,
    pub mode: SyncMode,
    pub kind: SourceKind,
    pub delete_after_days: Option<u32>,
    /// Cron expression (with seconds) for scheduled runs in the daemon.
    pub schedule: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Csv(CsvSourceConfig),
    Ldap(Box<LdapSourceConfig>),
}

#[derive(Debug, Clone)]
pub struct CsvSourceConfig {
    pub inbox: PathBuf,
    pub aliases: HashMap<Field, Vec<String>>,
    pub settle: Duration,
}

// ---------------------------------------------------------------- loading

/// Checks a cron expression the way the daemon's scheduler will read it.
fn croner_check(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parses `text` as if it were the file at `path` (used for relative paths and messages).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Checker {
            path,
            text,
            base: &base,
        }
        .check(raw)
    }

    pub fn domain(&self, name: &str) -> Option<&DomainConfig> {
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
        None => e.message().to_string(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
}

impl Checker<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Resolves against the config's folder into an absolute path without
    /// `.` or `..` (SQLite URLs and messages want a clean path).
    fn resolve(&self, p: &str) -> PathBuf {
        let joined = self.base.join(p);
        let abs = std::path::absolute(&joined).unwrap_or(joined);
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw.store)?;
        let limits = self.limits(&raw.limits)?;
        let state_dir = self.resolve(raw.state.as_ref().map_or("var", |s| s.dir.as_str()));
        let mail = self.mail(raw.mail.as_ref(), &state_dir)?;
        let mut domains = Vec::new();
        for d in &raw.domains {
            let dc = self.domain(d)?;
            if domains.iter().any(|x: &DomainConfig| x.name == dc.name) {
                return Err(self.err(d.name.span(), "domain.name", "domain listed twice"));
            }
            domains.push(dc);
        }
        if domains.is_empty() {
            return Err(ConfigError::Parse {
                path: self.path.to_path_buf(),
                message: "no [[domain]] is configured: add one with `name` and `numbering`".into(),
            });
        }
        let rules = raw
            .mapping
            .rules
            .iter()
            .map(|r| self.rule(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sources: Vec<SourceConfig> = Vec::new();
        for s in &raw.sources {
            let sc = self.source(s, &domains)?;
            if sources.iter().any(|x| x.name == sc.name) {
                return Err(self.err(s.name.span(), "source.name", "source name used twice"));
            }
            sources.push(sc);
        }
        let web = self.web(raw.web.as_ref())?;
        let rescan = match raw.daemon.as_ref().and_then(|d| d.rescan_seconds.as_ref()) {
            None => Duration::from_secs(30),
            Some(v) if (0.1..=3600.0).contains(v.get_ref()) => {
                Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                return Err(self.err(
                    v.span(),
                    "daemon.rescan_seconds",
                    "between 0.1 and 3600 seconds",
                ))
            }
        };
        Ok(Config {
            path: self.path.to_path_buf(),
            store,
            limits,
            mail,
            state_dir,
            domains,
            rules,
            sources,
            web,
            daemon: DaemonConfig { rescan },
        })
    }

    fn store(&self, raw: &RawStore) -> Result<StoreConfig, ConfigError> {
        let url = raw.url.get_ref().trim();
        let url = if let Some(rest) = url.strip_prefix("sqlite://") {
            let (file, query) = rest
                .split_once('?')
                .map_or((rest, None), |(f, q)| (f, Some(q)));
            if file.is_empty() || file == ":memory:" {
                return Err(self.err(
                    raw.url.span(),
                    "store.url",
                    "give the SQLite database a file path, e.g. sqlite://var/pbx-onboard.db",
                ));
            }
            let resolved = self.resolve(file);
            let mut u = format!("sqlite://{}", resolved.display());
            if let Some(q) = query {
                u.push('?');
                u.push_str(q);
            }
            u
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.to_string()
        } else {
            return Err(self.err(
                raw.url.span(),
                "store.url",
                "expected sqlite://PATH or postgres://USER@HOST/DB",
            ));
        };
        Ok(StoreConfig {
            url,
            max_connections: raw.max_connections.unwrap_or(5).max(1),
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let burst = std::num::NonZeroU32::new(*raw.burst.get_ref())
            .ok_or_else(|| self.err(raw.burst.span(), "limits.burst", "must be at least 1"))?;
        if *raw.max_disable_percent.get_ref() > 100 {
            return Err(self.err(
                raw.max_disable_percent.span(),
                "limits.max_disable_percent",
                "a percentage from 0 to 100",
            ));
        }
        let chunk = *raw.chunk_size.get_ref();
        if !(1..=5000).contains(&chunk) {
            return Err(self.err(
                raw.chunk_size.span(),
                "limits.chunk_size",
                "between 1 and 5000 users per transaction",
            ));
        }
        Ok(Limits {
            writes_per_second: std::num::NonZeroU32::new(raw.writes_per_second),
            burst,
            max_disable: raw.max_disable,
            max_disable_percent: *raw.max_disable_percent.get_ref(),
            max_billable: raw.max_billable,
            chunk_size: chunk,
        })
    }

    fn ranges(
        &self,
        v: Option<&Spanned<Vec<String>>>,
        key: &str,
    ) -> Result<Vec<NumberRange>, ConfigError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        v.get_ref()
            .iter()
            .map(|s| NumberRange::parse(s).map_err(|InvalidValue(m)| self.err(v.span(), key, m)))
            .collect()
    }

    fn phone(&self, v: &Spanned<String>, key: &str) -> Result<PhoneNumber, ConfigError> {
        PhoneNumber::parse(v.get_ref()).map_err(|InvalidValue(m)| self.err(v.span(), key, m))
    }

    fn domain(&self, d: &RawDomain) -> Result<DomainConfig, ConfigError> {
        let name = d.name.get_ref().trim().to_ascii_lowercase();
        if name.is_empty()
            || !name.contains('.')
            || name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(self.err(
                d.name.span(),
                "domain.name",
                format!("`{name}` is not a domain name such as acme.example"),
            ));
        }
        let numbering = self.ranges(Some(&d.numbering), "domain.numbering")?;
        if numbering.is_empty() {
            return Err(self.err(
                d.numbering.span(),
                "domain.numbering",
                "give at least one range, e.g. [\"1000-8999\"]",
            ));
        }
        let reserved = NumberSet::new(self.ranges(d.reserved.as_ref(), "domain.reserved")?);
        let mut numbers = Vec::new();
        if let Some(list) = &d.numbers {
            for n in list.get_ref() {
                numbers.extend(
                    crate::numbering::expand_numbers(n)
                        .map_err(|InvalidValue(m)| self.err(list.span(), "domain.numbers", m))?,
                );
            }
        }
        let emergency_caller_id = d
            .emergency_caller_id
            .as_ref()
            .map(|e| self.phone(e, "domain.emergency_caller_id"))
            .transpose()?;
        let mut sites = Vec::new();
        for s in &d.sites {
            let site_numbering = self.ranges(s.numbering.as_ref(), "domain.site.numbering")?;
            for r in &site_numbering {
                if !numbering.iter().any(|dr| dr.contains_range(r)) {
                    let span = s.numbering.as_ref().map_or(0..0, |n| n.span());
                    return Err(self.err(
                        span,
                        "domain.site.numbering",
                        format!("range {r} is outside the domain's numbering plan"),
                    ));
                }
            }
            let caller_id = s
                .caller_id
                .as_ref()
                .map(|c| self.phone(c, "domain.site.caller_id"))
                .transpose()?;
            let sname = s.name.get_ref().trim().to_string();
            if sname.is_empty() {
                return Err(self.err(s.name.span(), "domain.site.name", "site name is empty"));
            }
            sites.push(SiteConfig {
                name: sname,
                numbering: site_numbering,
                timezone: s.timezone.clone(),
                language: s.language.clone(),
                area_code: s.area_code.clone(),
                caller_id,
                dial_permission: s.dial_permission.clone(),
            });
        }
        Ok(DomainConfig {
            name,
            numbering,
            reserved,
            numbers,
            emergency_caller_id,
            timezone: d.timezone.clone(),
            language: d.language.clone(),
            dial_permission: d.dial_permission.clone(),
            require_last_name: d.require_last_name,
            sites,
        })
    }

    fn rule(&self, r: &Spanned<RawRule>) -> Result<Rule, ConfigError> {
        let raw = r.get_ref();
        if raw.group.is_none() && raw.department.is_none() && raw.title.is_none() {
            return Err(self.err(
                r.span(),
                "mapping.rule",
                "a rule needs a condition: group, department or title",
            ));
        }
        let field =
            |v: &Option<Spanned<String>>, key: &str, parse: &dyn Fn(&str) -> Result<(), String>| {
                v.as_ref().map_or(Ok(()), |v| {
                    parse(v.get_ref()).map_err(|m| self.err(v.span(), key, m))
                })
            };
        field(&raw.scope, "mapping.rule.scope", &|s| {
            Scope::parse(s).map(|_| ()).map_err(|e| e.0)
        })?;
        field(&raw.kind, "mapping.rule.kind", &|s| {
            UserKind::parse(s).map(|_| ()).map_err(|e| e.0)
        })?;
        field(&raw.device, "mapping.rule.device", &|s| {
            if fold(s) == "none" {
                Ok(())
            } else {
                DeviceType::parse(s)
                    .map(|_| ())
                    .map_err(|e| format!("{e}, or \"none\""))
            }
        })?;
        let scope = raw
            .scope
            .as_ref()
            .and_then(|s| Scope::parse(s.get_ref()).ok());
        let kind = raw
            .kind
            .as_ref()
            .and_then(|s| UserKind::parse(s.get_ref()).ok());
        let device = raw
            .device
            .as_ref()
            .map(|d| DeviceType::parse(d.get_ref()).ok());
        // `department` is the condition only when the rule has no group or
        // title; next to one of those it is what the rule sets (see README).
        let (when_department, set_department) = if raw.group.is_none() && raw.title.is_none() {
            (raw.department.clone(), None)
        } else {
            (None, raw.department.clone())
        };
        Ok(Rule {
            group: raw.group.clone(),
            department: when_department,
            title: raw.title.clone(),
            scope,
            set_department,
            site: raw.site.clone(),
            kind,
            voicemail: raw.voicemail,
            device,
        })
    }

    fn source(&self, s: &RawSource, domains: &[DomainConfig]) -> Result<SourceConfig, ConfigError> {
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(self.err(
                s.name.span(),
                "source.name",
                "a source name is one word, e.g. hr-drop",
            ));
        }
        let domain = s.domain.get_ref().trim().to_ascii_lowercase();
        if !domains.iter().any(|d| d.name == domain) {
            return Err(self.err(
                s.domain.span(),
                "source.domain",
                format!("no [[domain]] named `{domain}`"),
            ));
        }
        let mode = match s.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("full") => SyncMode::Full,
            Some("delta") => SyncMode::Delta,
            Some(other) => {
                let span = s.mode.as_ref().map_or(0..0, |m| m.span());
                return Err(self.err(
                    span,
                    "source.mode",
                    format!("`{other}`: expected \"full\" or \"delta\""),
                ));
            }
        };
        let kind = match s.kind.get_ref().as_str() {
            "csv" => {
                let ldap_keys = [
                    ("profile", s.profile.is_some()),
                    ("url", s.url.is_some()),
                    ("tls", s.tls.is_some()),
                    ("bind_dn", s.bind_dn.is_some()),
                    ("base_dn", s.base_dn.is_some()),
                    ("filter", s.filter.is_some()),
                    ("person_filter", s.person_filter.is_some()),
                    ("group", s.group.is_some()),
                    ("attributes", s.attributes.is_some()),
                    ("full_sync_every", s.full_sync_every.is_some()),
                ];
                if let Some((k, _)) = ldap_keys.iter().find(|(_, present)| *present) {
                    return Err(self.err(
                        s.name.span(),
                        &format!("source.{k}"),
                        "only ldap sources have this key",
                    ));
                }
                let inbox = s.inbox.as_deref().ok_or_else(|| {
                    self.err(
                        s.name.span(),
                        "source.inbox",
                        "a csv source needs an inbox folder",
                    )
                })?;
                let mut aliases = HashMap::new();
                let empty = BTreeMap::new();
                let alias_span = s.aliases.as_ref().map_or(0..0, |a| a.span());
                for (k, v) in s.aliases.as_ref().map_or(&empty, |a| a.get_ref()) {
                    let field = Field::from_key(k).ok_or_else(|| {
                        let keys: Vec<_> = Field::ALL.iter().map(|f| f.key()).collect();
                        self.err(
                            alias_span.clone(),
                            "source.aliases",
                            format!(
                                "unknown column `{k}` (expected one of: {})",
                                keys.join(", ")
                            ),
                        )
                    })?;
                    aliases.insert(field, v.clone());
                }
                let settle = s.settle_seconds.unwrap_or(2.0);
                if !(0.0..=600.0).contains(&settle) {
                    return Err(self.err(
                        s.name.span(),
                        "source.settle_seconds",
                        "between 0 and 600 seconds",
                    ));
                }
                SourceKind::Csv(CsvSourceConfig {
                    inbox: self.resolve(inbox),
                    aliases,
                    settle: Duration::from_secs_f64(settle),
                })
            }
            "ldap" => SourceKind::Ldap(Box::new(self.ldap_source(s)?)),
            other => {
                return Err(self.err(
                    s.kind.span(),
                    "source.kind",
                    format!("`{other}`: expected \"csv\" or \"ldap\""),
                ));
            }
        };
        let schedule = match &s.schedule {
            None => None,
            Some(expr) => {
                let e = expr.get_ref().trim();
                if let Err(why) = croner_check(e) {
                    return Err(self.err(
                        expr.span(),
                        "source.schedule",
                        format!("`{e}` is not a cron expression with seconds, like \"0 */15 * * * *\": {why}"),
                    ));
                }
                Some(e.to_string())
            }
        };
        Ok(SourceConfig {
            name,
            domain,
            mode,
            kind,
            delete_after_days: s.delete_after_days,
            schedule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[store]
url = "sqlite://var/pbx.db"
[limits]
writes_per_second = 0
burst = 5
[[domain]]
name = "acme.example"
numbering = ["1000-8999"]
reserved = ["0", "411", "611", "911", "933"]
numbers = ["+15550100100-+15550100199"]
[[domain.site]]
name = "HQ"
numbering = ["2000-2999"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
department = "Support"
[[source]]
name = "hr-drop"
kind = "csv"
domain = "acme.example"
inbox = "var/inbox"
aliases = { employee_id = ["Staff No"] }
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new("/etc/pbx/pbx.toml"))
    }

    #[test]
    fn good_config_resolves_paths() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.store.url, "sqlite:///etc/pbx/var/pbx.db");
        assert!(c.limits.writes_per_second.is_none());
        let SourceKind::Csv(csv) = &c.sources[0].kind else {
            panic!("a csv source")
        };
        assert_eq!(csv.inbox, PathBuf::from("/etc/pbx/var/inbox"));
        assert_eq!(c.domains[0].numbers.len(), 100);
        assert_eq!(c.rules[0].scope, Some(Scope::CallCenterAgent));
        assert_eq!(
            c.mail.transport,
            MailTransport::Folder(PathBuf::from("/etc/pbx/var/mail"))
        );
    }

    const LDAP: &str = r#"
[[source]]
name = "corp-ad"
kind = "ldap"
domain = "acme.example"
profile = "active_directory"
url = ["ldaps://dc1.acme.example:636", "ldaps://dc2.acme.example:636"]
ca_file = "ad-ca.pem"
bind_dn = "svc-pbx@acme.example"
bind_password_env = "PBX_LDAP_PASSWORD"
base_dn = "OU=Staff,DC=acme,DC=example"
group = "CN=PBX Users,OU=Groups,DC=acme,DC=example"
filter = "(department=*)"
full_sync_every = "6h"
attributes = { extension = "ipPhone", email = ["mail", "proxyAddresses"] }
"#;

    #[test]
    fn ldap_source_is_checked() {
        let c = load(&format!("{GOOD}{LDAP}")).unwrap();
        let SourceKind::Ldap(l) = &c.sources[1].kind else {
            panic!("an ldap source")
        };
        assert_eq!(l.tls, LdapTls::Ldaps);
        assert_eq!(l.urls.len(), 2);
        assert_eq!(l.ca_file, Some(PathBuf::from("/etc/pbx/ad-ca.pem")));
        assert_eq!(l.group_base_dn, "DC=acme,DC=example");
        assert_eq!(l.page_size, 500);
        assert_eq!(l.attributes.get(Field::Extension), ["ipPhone"]);
        assert_eq!(
            l.attributes.get(Field::Site),
            ["physicalDeliveryOfficeName"]
        );
        assert_eq!(
            l.bind_password,
            Some(Secret::Env("PBX_LDAP_PASSWORD".into()))
        );
        let cases = [
            (
                "profile = \"active_directory\"",
                "profile = \"ad\"",
                "source.profile",
            ),
            (
                "ldaps://dc2.acme.example:636\"]",
                "ldap://dc2.acme.example:636\"]",
                "source.url",
            ),
            ("ca_file", "tls = \"starttls\"\nca_file", "source.url"),
            ("(department=*)", "department=*", "source.filter"),
            ("(department=*)", "(department=*", "source.filter"),
            ("\"6h\"", "\"6 hours\"", "source.full_sync_every"),
            (
                "bind_password_env = \"PBX_LDAP_PASSWORD\"\n",
                "",
                "source.bind_dn",
            ),
            (
                "extension = \"ipPhone\"",
                "extension = \"ip)(Phone\"",
                "source.attributes",
            ),
            (
                "extension = \"ipPhone\"",
                "status = \"x\"",
                "source.attributes",
            ),
            ("base_dn", "inbox = \"x\"\nbase_dn", "source.inbox"),
        ];
        for (from, to, key) in cases {
            let text = format!("{GOOD}{}", LDAP.replace(from, to));
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{from} -> {to}: {err}");
        }
        // Plain text needs saying so.
        let plain = LDAP
            .replace("ldaps://dc1.acme.example:636", "ldap://dc1.acme.example")
            .replace("ldaps://dc2.acme.example:636", "ldap://dc2.acme.example");
        let c = load(&format!("{GOOD}{plain}")).unwrap();
        let SourceKind::Ldap(l) = &c.sources[1].kind else {
            panic!("an ldap source")
        };
        assert_eq!(l.tls, LdapTls::StartTls);
        let c = load(&format!(
            "{GOOD}{}",
            plain.replace("ca_file", "tls = \"none\"\nca_file")
        ))
        .unwrap();
        let SourceKind::Ldap(l) = &c.sources[1].kind else {
            panic!("an ldap source")
        };
        assert_eq!(l.tls, LdapTls::None);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("burst = 5", "burst = 5\nburts = 6");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("burts") && err.contains("line 7"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let cases = [
            (
                "numbering = [\"1000-8999\"]",
                "numbering = [\"8999-1000\"]",
                "domain.numbering",
                9,
            ),
            ("burst = 5", "burst = 0", "limits.burst", 6),
            (
                "scope = \"Call Center Agent\"",
                "scope = \"Wizard\"",
                "mapping.rule.scope",
                17,
            ),
            (
                "domain = \"acme.example\"\ninbox",
                "domain = \"nope.example\"\ninbox",
                "source.domain",
                22,
            ),
            (
                "[\"2000-2999\"]",
                "[\"9000-9100\"]",
                "domain.site.numbering",
                14,
            ),
        ];
        for (from, to, key, line) in cases {
            let text = GOOD.replace(from, to);
            match load(&text) {
                Err(ConfigError::Invalid {
                    key: k, line: l, ..
                }) => {
                    assert_eq!((k.as_str(), l), (key, line), "{to}");
                }
                other => panic!("{to}: expected Invalid, got {other:?}"),
            }
        }
    }

    const SMTP: &str = r#"
[mail]
transport = "smtp"
host = "mail.acme.example"
from = "PBX <pbx@acme.example>"
link_base_url = "https://pbx.acme.example/"
admin_report_to = ["it@acme.example"]
username = "pbx"
password_env = "PBX_SMTP_PASSWORD"
[web]
password_min_length = 12
"#;

    #[test]
    fn mail_and_web_defaults_and_smtp() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.mail.link_base_url, "http://127.0.0.1:8480");
        assert_eq!(c.mail.link_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(c.mail.max_age, Duration::from_secs(3 * 86_400));
        assert_eq!(c.mail.link_key_file, PathBuf::from("/etc/pbx/var/link.key"));
        assert_eq!(c.web.password_min_length, 15);
        assert_eq!(c.web.pin_min_length, 6);
        let c = load(&format!("{GOOD}{SMTP}")).unwrap();
        let MailTransport::Smtp(s) = &c.mail.transport else {
            panic!("smtp")
        };
        assert_eq!(
            (s.port, s.tls),
            (587, SmtpTls::StartTls),
            "STARTTLS by default"
        );
        assert_eq!(s.password, Some(Secret::Env("PBX_SMTP_PASSWORD".into())));
        assert_eq!(
            c.mail.link_base_url, "https://pbx.acme.example",
            "no trailing slash"
        );
        assert_eq!(c.mail.admin_report_to.len(), 1);
        assert_eq!(c.web.password_min_length, 12);
        let c = load(&format!(
            "{GOOD}{}",
            SMTP.replace("host =", "tls = \"tls\"\nhost =")
        ))
        .unwrap();
        let MailTransport::Smtp(s) = &c.mail.transport else {
            panic!("smtp")
        };
        assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
    }

    #[test]
    fn bad_mail_and_web_values_name_the_key() {
        let cases = [
            ("host =", "tls = \"ssl\"\nhost =", "mail.tls"),
            (
                "https://pbx.acme.example/",
                "ftp://pbx",
                "mail.link_base_url",
            ),
            ("PBX <pbx@acme.example>", "not an address", "mail.from"),
            (
                "[\"it@acme.example\"]",
                "[\"it(at)acme\"]",
                "mail.admin_report_to",
            ),
            ("password_env = \"PBX_SMTP_PASSWORD\"", "", "mail.username"),
            (
                "password_env",
                "password_file = \"/run/credentials/pbx/smtp\"\npassword_env",
                "mail.password_file",
            ),
            ("host =", "pool_size = 0\nhost =", "mail.pool_size"),
            ("host =", "link_ttl = \"soon\"\nhost =", "mail.link_ttl"),
            ("host =", "lease_seconds = 1\nhost =", "mail.lease_seconds"),
            (
                "password_min_length = 12",
                "password_min_length = 6",
                "web.password_min_length",
            ),
            (
                "password_min_length = 12",
                "pin_min_length = 3",
                "web.pin_min_length",
            ),
        ];
        for (from, to, key) in cases {
            let text = format!("{GOOD}{}", SMTP.replace(from, to));
            match load(&text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{to}"),
                other => panic!("{to}: expected Invalid {key}, got {other:?}"),
            }
        }
        let no_host = format!(
            "{GOOD}{}",
            SMTP.replace("host = \"mail.acme.example\"\n", "")
        );
        assert!(load(&no_host).is_err(), "smtp needs a host");
    }
}
