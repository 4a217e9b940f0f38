//! The checker: turns the raw file into a checked `Config`, naming the key
//! and line of every value it refuses.

use super::raw::{RawConfig, RawDomain, RawLimits, RawRule, RawSource, RawStore};
use super::source::{Schedule, DEFAULT_LDAP_SCHEDULE};
use super::{
    Config, ConfigError, CsvSourceConfig, DaemonConfig, DomainConfig, Limits, Rule,
    ScimSourceConfig, SiteConfig, SourceConfig, SourceKind, StoreConfig, SyncMode,
};
use crate::model::{fold, DeviceType, Field, InvalidValue, PhoneNumber, Scope, UserKind};
use crate::numbering::{NumberRange, NumberSet};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Checks a cron expression the way the daemon's scheduler will read it.
fn croner_check(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(super) fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
        None => e.message().to_string(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) base: &'a Path,
}

impl Checker<'_> {
    pub(super) fn err(
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
    pub(super) fn resolve(&self, p: &str) -> PathBuf {
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

    pub(super) fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw.store)?;
        let limits = self.limits(&raw.limits)?;
        let state_dir = self.resolve(raw.state.as_ref().map_or("var", |s| s.dir.as_str()));
        let mail = self.mail(raw.mail.as_ref(), &state_dir)?;
        let mut domains = Vec::new();
        for d in &raw.domains {
            let dc = self.domain(d)?;
            if domains
                .iter()
                .any(|x: &Arc<DomainConfig>| x.name == dc.name)
            {
                return Err(self.err(d.name.span(), "domain.name", "domain listed twice"));
            }
            domains.push(Arc::new(dc));
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
        let mail_overdue = match raw
            .daemon
            .as_ref()
            .and_then(|d| d.mail_overdue_minutes.as_ref())
        {
            None => Duration::from_secs(15 * 60),
            Some(v) if (1.0..=10_080.0).contains(v.get_ref()) => {
                Duration::from_secs_f64(*v.get_ref() * 60.0)
            }
            Some(v) => {
                return Err(self.err(
                    v.span(),
                    "daemon.mail_overdue_minutes",
                    "between 1 and 10080 minutes (a week)",
                ))
            }
        };
        let admin = self.admin(raw.admin.as_ref(), &sources)?;
        Ok(Config {
            admin,
            path: self.path.to_path_buf(),
            store,
            limits,
            mail,
            state_dir,
            domains,
            rules,
            sources,
            web,
            daemon: DaemonConfig {
                rescan,
                mail_overdue,
            },
        })
    }

    pub(super) fn admin(
        &self,
        raw: Option<&super::raw::RawAdmin>,
        sources: &[SourceConfig],
    ) -> Result<super::AdminConfig, ConfigError> {
        let ldap = match raw.and_then(|a| a.ldap_source.as_ref().map(|s| (a, s))) {
            None => None,
            Some((a, s)) => {
                let name = s.get_ref().trim();
                let is_ldap = sources
                    .iter()
                    .any(|x| x.name == name && matches!(x.kind, super::SourceKind::Ldap(_)));
                if !is_ldap {
                    return Err(self.err(
                        s.span(),
                        "admin.ldap_source",
                        "the name of an ldap source",
                    ));
                }
                let group = |g: &Option<String>| {
                    g.as_deref()
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                };
                let (admin_group, viewer_group) =
                    (group(&a.ldap_group), group(&a.ldap_viewer_group));
                if admin_group.is_none() && viewer_group.is_none() {
                    return Err(self.err(
                        s.span(),
                        "admin.ldap_source",
                        "also set admin.ldap_group (members are admins) or admin.ldap_viewer_group",
                    ));
                }
                Some(super::AdminLdap {
                    source: name.to_string(),
                    admin_group,
                    viewer_group,
                })
            }
        };
        let listen = match raw.and_then(|a| a.listen.as_ref()) {
            None => None,
            Some(l) => Some(l.get_ref().trim().parse().map_err(|_| {
                self.err(
                    l.span(),
                    "admin.listen",
                    "expected an address and port, like \"127.0.0.1:8481\"",
                )
            })?),
        };
        let base_url = match raw.and_then(|a| a.base_url.as_ref()) {
            None => None,
            Some(u) => {
                let v = u.get_ref().trim().trim_end_matches('/');
                if !(v.starts_with("https://") || v.starts_with("http://")) || v.len() < 10 {
                    return Err(self.err(
                        u.span(),
                        "admin.base_url",
                        "expected the console's URL, like \"https://pbx-onboard.acme.example\"",
                    ));
                }
                Some(v.to_string())
            }
        };
        let minutes = |v: Option<&Spanned<f64>>, key: &str, default: f64, max: f64| match v {
            None => Ok(Duration::from_secs_f64(default * 60.0)),
            Some(v) if (0.05..=max).contains(v.get_ref()) => {
                Ok(Duration::from_secs_f64(*v.get_ref() * 60.0))
            }
            Some(v) => Err(self.err(v.span(), key, format!("between 0.05 and {max}"))),
        };
        let session_idle = minutes(
            raw.and_then(|a| a.session_idle_minutes.as_ref()),
            "admin.session_idle_minutes",
            30.0,
            24.0 * 60.0,
        )?;
        let session_max = minutes(
            raw.and_then(|a| a.session_max_hours.as_ref()),
            "admin.session_max_hours",
            12.0,
            7.0 * 24.0,
        )? * 60;
        Ok(super::AdminConfig {
            listen,
            base_url,
            session_idle,
            session_max,
            ldap,
        })
    }

    pub(super) fn store(&self, raw: &RawStore) -> Result<StoreConfig, ConfigError> {
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
        let timeout = match &raw.timeout_seconds {
            None => Duration::from_secs(10),
            Some(v) if (1.0..=300.0).contains(v.get_ref()) => Duration::from_secs_f64(*v.get_ref()),
            Some(v) => {
                return Err(self.err(
                    v.span(),
                    "store.timeout_seconds",
                    "between 1 and 300 seconds",
                ))
            }
        };
        Ok(StoreConfig {
            url,
            max_connections: raw.max_connections.unwrap_or(5).max(1),
            timeout,
        })
    }

    pub(super) fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
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

    pub(super) fn ranges(
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

    pub(super) fn phone(&self, v: &Spanned<String>, key: &str) -> Result<PhoneNumber, ConfigError> {
        PhoneNumber::parse(v.get_ref()).map_err(|InvalidValue(m)| self.err(v.span(), key, m))
    }

    pub(super) fn domain(&self, d: &RawDomain) -> Result<DomainConfig, ConfigError> {
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

    pub(super) fn rule(&self, r: &Spanned<RawRule>) -> Result<Rule, ConfigError> {
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
            force_login: raw.force_login,
        })
    }

    pub(super) fn source(
        &self,
        s: &RawSource,
        domains: &[Arc<DomainConfig>],
    ) -> Result<SourceConfig, ConfigError> {
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(self.err(
                s.name.span(),
                "source.name",
                "a source name is one word, e.g. hr-drop",
            ));
        }
        let wanted = s.domain.get_ref().trim().to_ascii_lowercase();
        let Some(domain) = domains.iter().find(|d| d.name == wanted).cloned() else {
            return Err(self.err(
                s.domain.span(),
                "source.domain",
                format!("no [[domain]] named `{wanted}`"),
            ));
        };
        let mut mode = match s.mode.as_ref().map(|m| m.get_ref().as_str()) {
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
            "scim" => {
                // A request changes the people it names: nobody is
                // disabled for being absent from it.
                if mode == SyncMode::Full && s.mode.is_some() {
                    return Err(self.err(
                        s.mode.as_ref().map_or(0..0, |m| m.span()),
                        "source.mode",
                        "a scim source changes only the people a request names: leave `mode` out (or \"delta\")",
                    ));
                }
                mode = SyncMode::Delta;
                let file = s.token_file.as_ref().ok_or_else(|| {
                    self.err(
                        s.name.span(),
                        "source.token_file",
                        "a scim source needs a token_file (bearer tokens, one per line)",
                    )
                })?;
                SourceKind::Scim(ScimSourceConfig {
                    token_file: self.resolve(file.get_ref()),
                })
            }
            other => {
                return Err(self.err(
                    s.kind.span(),
                    "source.kind",
                    format!("`{other}`: expected \"csv\", \"ldap\" or \"scim\""),
                ));
            }
        };
        if s.token_file.is_some() && !matches!(kind, SourceKind::Scim(_)) {
            return Err(self.err(
                s.name.span(),
                "source.token_file",
                "only scim sources have this key",
            ));
        }
        let schedule = match &s.schedule {
            // An ldap source without a schedule syncs every 15 minutes; a
            // drop folder is watched instead.
            None => match kind {
                SourceKind::Ldap(_) => Some(Schedule(DEFAULT_LDAP_SCHEDULE.to_string())),
                SourceKind::Csv(_) | SourceKind::Scim(_) => None,
            },
            Some(expr) => {
                let e = expr.get_ref().trim();
                if let Err(why) = croner_check(e) {
                    return Err(self.err(
                        expr.span(),
                        "source.schedule",
                        format!("`{e}` is not a cron expression with seconds, like \"0 */15 * * * *\": {why}"),
                    ));
                }
                Some(Schedule(e.to_string()))
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
