//! `kind = "ldap"` sources: checking the `[[source]]` keys that describe a
//! directory (servers, TLS, bind, what to read and how to read it).

use super::check::Checker;
use super::raw::RawSource;
use super::ConfigError;
use crate::model::Field;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Which directory dialect a source speaks: sets the default attribute map,
/// how group membership is resolved and how disabled accounts are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapProfile {
    ActiveDirectory,
    OpenLdap,
}

impl LdapProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            LdapProfile::ActiveDirectory => "active_directory",
            LdapProfile::OpenLdap => "openldap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTls {
    /// `ldap://` upgraded with StartTLS before the bind; refused = failure.
    StartTls,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// Plain text; only when the config says so.
    None,
}

/// Where a secret lives. Read when it is needed, so a rotated credentials
/// file is picked up by the next run; never kept in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// The secret, without one trailing newline. The error names where it
    /// was looked for, never the value.
    pub fn read(&self) -> Result<String, SecretError> {
        let mut s = match self {
            Secret::File(p) => std::fs::read_to_string(p).map_err(|source| SecretError::File {
                path: p.clone(),
                source,
            })?,
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::Unset { name: name.clone() })?
            }
        };
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        if s.is_empty() {
            return Err(SecretError::Empty {
                place: match self {
                    Secret::File(p) => format!("the secret file {}", p.display()),
                    Secret::Env(name) => format!("the environment variable {name}"),
                },
            });
        }
        Ok(s)
    }
}

/// Why a secret could not be read; never quotes the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the environment variable {name} is not set")]
    Unset { name: String },
    #[error("{place} is empty")]
    Empty { place: String },
}

/// Field → directory attributes, tried in order (the first with a value wins;
/// for `email` and `groups` all values of all attributes are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrMap(pub HashMap<Field, Vec<String>>);

impl AttrMap {
    pub fn defaults(profile: LdapProfile) -> AttrMap {
        let ad = profile == LdapProfile::ActiveDirectory;
        let pairs: &[(Field, &[&str])] = if ad {
            &[
                (Field::EmployeeId, &["objectGUID"]),
                (Field::FirstName, &["givenName"]),
                (Field::LastName, &["sn"]),
                (Field::Email, &["mail"]),
                (Field::Department, &["department"]),
                (Field::Site, &["physicalDeliveryOfficeName"]),
                (Field::Extension, &["ipPhone", "telephoneNumber"]),
                (Field::Title, &["title"]),
                (Field::Groups, &["memberOf"]),
            ]
        } else {
            &[
                (Field::EmployeeId, &["entryUUID"]),
                (Field::FirstName, &["givenName"]),
                (Field::LastName, &["sn"]),
                (Field::Email, &["mail"]),
                (Field::Department, &["departmentNumber"]),
                (Field::Site, &["l"]),
                (Field::Extension, &["telephoneNumber"]),
                (Field::Title, &["title"]),
                (Field::Groups, &["memberOf"]),
            ]
        };
        AttrMap(
            pairs
                .iter()
                .map(|(f, a)| (*f, a.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    pub fn get(&self, f: Field) -> &[String] {
        self.0.get(&f).map_or(&[], |v| v.as_slice())
    }
}

#[derive(Debug, Clone)]
pub struct LdapSourceConfig {
    pub profile: LdapProfile,
    /// Servers, tried in order until one binds.
    pub urls: Vec<String>,
    pub tls: LdapTls,
    /// Extra trust anchors (PEM); without it, the system's CA store.
    pub ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub base_dn: String,
    /// Only (nested) members of this group are read.
    pub group: Option<String>,
    /// Where group entries live (OpenLDAP nested expansion).
    pub group_base_dn: String,
    /// Extra filter, ANDed with the profile's person filter.
    pub filter: Option<String>,
    /// OpenLDAP: entries matching this filter are disabled on the PBX.
    pub disabled_filter: Option<String>,
    /// Replaces the profile's filter for people (AD:
    /// `(&(objectCategory=person)(objectClass=user))`, OpenLDAP:
    /// `(objectClass=person)`).
    pub person_filter: Option<String>,
    pub page_size: u32,
    pub full_sync_every: Duration,
    /// Bound on connect, bind and each search page.
    pub timeout: Duration,
    pub attributes: AttrMap,
}

#[cfg(test)]
impl LdapSourceConfig {
    /// A plain-text source on 127.0.0.1 with the profile's defaults, for tests.
    pub(crate) fn for_tests(profile: LdapProfile) -> LdapSourceConfig {
        LdapSourceConfig {
            profile,
            urls: vec!["ldap://127.0.0.1:389".into()],
            tls: LdapTls::None,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            base_dn: "ou=people,dc=example".into(),
            group: None,
            group_base_dn: "dc=example".into(),
            filter: None,
            disabled_filter: None,
            person_filter: None,
            page_size: 500,
            full_sync_every: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(5),
            attributes: AttrMap::defaults(profile),
        }
    }
}

/// `6h`, `90m`, `1d`, `45s`: a whole number and one unit.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The DC= components at the end of a DN (`OU=Staff,DC=acme,DC=example` →
/// `DC=acme,DC=example`), or the DN itself when it has none.
fn suffix_of(dn: &str) -> String {
    let parts: Vec<&str> = dn.split(',').map(str::trim).collect();
    let start = parts
        .iter()
        .position(|p| p.get(..3).is_some_and(|k| k.eq_ignore_ascii_case("dc=")) && p.len() > 3)
        .unwrap_or(0);
    parts.get(start..).unwrap_or(&parts).join(",")
}

type Sp<T> = Option<Spanned<T>>;

impl Checker<'_> {
    /// A secret named by `<key>_file` (path) or `<key>_env` (variable), not both.
    pub(super) fn secret(
        &self,
        file: Option<&Spanned<String>>,
        env: Option<&Spanned<String>>,
        key: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (file, env) {
            (Some(f), None) => Ok(Some(Secret::File(self.resolve(f.get_ref())))),
            (None, Some(e)) => Ok(Some(Secret::Env(e.get_ref().clone()))),
            (None, None) => Ok(None),
            (Some(f), Some(_)) => {
                let name = key.rsplit('.').next().unwrap_or(key);
                Err(self.err(
                    f.span(),
                    &format!("{key}_file"),
                    format!("give {name}_file or {name}_env, not both"),
                ))
            }
        }
    }

    fn need<'b, T>(
        &self,
        v: &'b Sp<T>,
        s: &RawSource,
        key: &str,
        hint: &str,
    ) -> Result<&'b Spanned<T>, ConfigError> {
        v.as_ref().ok_or_else(|| {
            self.err(
                s.name.span(),
                key,
                format!(
                    "an ldap source needs `{}`: {hint}",
                    key.trim_start_matches("source.")
                ),
            )
        })
    }

    fn filter_ok(&self, v: &Sp<String>, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(f) = v else { return Ok(None) };
        let text = f.get_ref().trim();
        if !text.starts_with('(') || ldap3::parse_filter(text).is_err() {
            return Err(self.err(
                f.span(),
                key,
                format!("`{text}` is not an LDAP filter (RFC 4515), e.g. \"(department=*)\""),
            ));
        }
        Ok(Some(text.to_string()))
    }

    pub(super) fn ldap_source(&self, s: &RawSource) -> Result<LdapSourceConfig, ConfigError> {
        for (present, key) in [
            (s.inbox.is_some(), "source.inbox"),
            (s.aliases.is_some(), "source.aliases"),
            (s.settle_seconds.is_some(), "source.settle_seconds"),
        ] {
            if present {
                return Err(self.err(s.name.span(), key, "only csv sources have this key"));
            }
        }
        let p = self.need(
            &s.profile,
            s,
            "source.profile",
            "\"active_directory\" or \"openldap\"",
        )?;
        let profile = match p.get_ref().as_str() {
            "active_directory" => LdapProfile::ActiveDirectory,
            "openldap" => LdapProfile::OpenLdap,
            other => {
                return Err(self.err(
                    p.span(),
                    "source.profile",
                    format!("`{other}`: expected \"active_directory\" or \"openldap\""),
                ))
            }
        };
        let u = self.need(
            &s.url,
            s,
            "source.url",
            "e.g. [\"ldaps://dc1.acme.example:636\"]",
        )?;
        let urls = u.get_ref().clone().into_vec();
        if urls.is_empty() {
            return Err(self.err(u.span(), "source.url", "give at least one server"));
        }
        let mut schemes = Vec::new();
        for url in &urls {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
            let host = rest.split(['/', '?']).next().unwrap_or("");
            if !matches!(scheme, "ldap" | "ldaps") || host.is_empty() {
                return Err(self.err(
                    u.span(),
                    "source.url",
                    format!("`{url}` is not an ldap:// or ldaps:// URL with a host"),
                ));
            }
            schemes.push(scheme);
        }
        let tls = match s.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
            None if schemes.iter().all(|s| *s == "ldaps") => LdapTls::Ldaps,
            None => LdapTls::StartTls,
            Some(("ldaps", _)) => LdapTls::Ldaps,
            Some(("starttls", _)) => LdapTls::StartTls,
            Some(("none", _)) => LdapTls::None,
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    "source.tls",
                    format!("`{other}`: expected \"starttls\", \"ldaps\" or \"none\""),
                ))
            }
        };
        let want = if tls == LdapTls::Ldaps {
            "ldaps"
        } else {
            "ldap"
        };
        if let Some(bad) = urls.iter().zip(&schemes).find(|(_, s)| **s != want) {
            let why = match tls {
                LdapTls::Ldaps => "tls = \"ldaps\" needs ldaps:// URLs",
                LdapTls::StartTls => {
                    "tls = \"starttls\" upgrades ldap:// URLs; for ldaps:// say tls = \"ldaps\""
                }
                LdapTls::None => "tls = \"none\" needs ldap:// URLs",
            };
            return Err(self.err(u.span(), "source.url", format!("`{}`: {why}", bad.0)));
        }
        let ca_file = s.ca_file.as_ref().map(|c| self.resolve(c.get_ref()));
        let bind_password = self.secret(
            s.bind_password_file.as_ref(),
            s.bind_password_env.as_ref(),
            "source.bind_password",
        )?;
        let bind_dn = s.bind_dn.as_ref().map(|d| d.get_ref().trim().to_string());
        if bind_dn.is_some() != bind_password.is_some() {
            return Err(self.err(
                s.name.span(),
                "source.bind_dn",
                "bind_dn and a bind password (bind_password_file or bind_password_env) go together; leave both out for an anonymous bind",
            ));
        }
        let base_dn = self
            .need(
                &s.base_dn,
                s,
                "source.base_dn",
                "where the staff entries live",
            )?
            .get_ref()
            .trim()
            .to_string();
        if base_dn.is_empty() || !base_dn.contains('=') {
            return Err(self.err(
                s.base_dn.as_ref().map_or(0..0, |b| b.span()),
                "source.base_dn",
                "a DN such as OU=Staff,DC=acme,DC=example",
            ));
        }
        let group = s.group.as_ref().map(|g| g.get_ref().trim().to_string());
        let group_base_dn = s
            .group_base_dn
            .as_ref()
            .map_or_else(|| suffix_of(&base_dn), |g| g.get_ref().trim().to_string());
        let filter = self.filter_ok(&s.filter, "source.filter")?;
        let disabled_filter = self.filter_ok(&s.disabled_filter, "source.disabled_filter")?;
        let person_filter = self.filter_ok(&s.person_filter, "source.person_filter")?;
        if profile == LdapProfile::ActiveDirectory && disabled_filter.is_some() {
            return Err(self.err(
                s.name.span(),
                "source.disabled_filter",
                "active_directory reads the disabled bit of userAccountControl; disabled_filter is for openldap",
            ));
        }
        let page_size = match &s.page_size {
            None => 500,
            Some(p) if (1..=10_000).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => return Err(self.err(p.span(), "source.page_size", "between 1 and 10000")),
        };
        let full_sync_every = match &s.full_sync_every {
            None => Duration::from_secs(6 * 3600),
            Some(v) => parse_duration(v.get_ref()).ok_or_else(|| {
                self.err(
                    v.span(),
                    "source.full_sync_every",
                    format!(
                        "`{}`: a duration such as \"6h\", \"90m\" or \"1d\"",
                        v.get_ref()
                    ),
                )
            })?,
        };
        let timeout = match &s.timeout_seconds {
            None => Duration::from_secs(30),
            Some(t) if (0.1..=3600.0).contains(t.get_ref()) => {
                Duration::from_secs_f64(*t.get_ref())
            }
            Some(t) => {
                return Err(self.err(
                    t.span(),
                    "source.timeout_seconds",
                    "between 0.1 and 3600 seconds",
                ))
            }
        };
        let mut attributes = AttrMap::defaults(profile);
        if let Some(a) = &s.attributes {
            for (k, v) in a.get_ref() {
                let field = Field::from_key(k)
                    .filter(|f| *f != Field::Status)
                    .ok_or_else(|| {
                        let keys: Vec<_> = Field::ALL
                            .iter()
                            .filter(|f| **f != Field::Status)
                            .map(|f| f.key())
                            .collect();
                        self.err(
                            a.span(),
                            "source.attributes",
                            format!("unknown field `{k}` (expected one of: {})", keys.join(", ")),
                        )
                    })?;
                let names = v.clone().into_vec();
                if names.iter().any(|n| !valid_attr(n)) || names.is_empty() {
                    return Err(self.err(
                        a.span(),
                        "source.attributes",
                        format!("`{k}`: give attribute names such as \"telephoneNumber\""),
                    ));
                }
                attributes.0.insert(field, names);
            }
        }
        Ok(LdapSourceConfig {
            profile,
            urls,
            tls,
            ca_file,
            bind_dn,
            bind_password,
            base_dn,
            group,
            group_base_dn,
            filter,
            disabled_filter,
            person_filter,
            page_size,
            full_sync_every,
            timeout,
            attributes,
        })
    }
}

/// An attribute description: a name or OID, letters, digits, `-`, `.`, `;`.
fn valid_attr(n: &str) -> bool {
    !n.is_empty()
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';'))
}

#[cfg(test)]
mod tests;
