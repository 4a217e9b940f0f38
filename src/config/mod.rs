//! Configuration: the TOML file as users write it (`Raw*`, unknown keys rejected
//! with their line), then validated into a checked `Config` whose values are
//! ready to use (resolved paths, parsed ranges, durations).
//!
//! Relative paths resolve against the folder holding the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod check;
mod domain;
mod ldap;
mod mail;
mod raw;
mod rule;
mod source;
#[cfg(test)]
mod tests;

use check::{describe_toml_error, Checker};
pub use domain::{DomainConfig, SiteConfig};
pub use ldap::{AttrMap, LdapProfile, LdapSourceConfig, LdapTls, Secret, SecretError};
pub use mail::{MailConfig, MailTransport, SmtpConfig, SmtpTls, WebConfig};
use raw::RawConfig;
pub use rule::Rule;
pub use source::{
    CsvSource, CsvSourceConfig, LdapSource, Resolved, Schedule, ScimSource, ScimSourceConfig,
    SourceConfig, SourceKind, SyncMode, DEFAULT_LDAP_SCHEDULE,
};

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

// The checked shape.

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub limits: Limits,
    pub mail: MailConfig,
    pub state_dir: PathBuf,
    pub domains: Vec<std::sync::Arc<DomainConfig>>,
    pub rules: Vec<Rule>,
    pub sources: Vec<SourceConfig>,
    pub web: WebConfig,
    pub daemon: DaemonConfig,
    pub admin: AdminConfig,
}

/// `[admin]`: the console at `/admin`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Its own address; `None`: served on `web.listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// The console's origin as browsers reach it (cookies are `Secure` when
    /// it is https); default `mail.link_base_url` on `web.listen`.
    pub base_url: Option<String>,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// Directory logins for the console.
    pub ldap: Option<AdminLdap>,
}

/// `[admin] ldap_source`: people log in to the console with their
/// directory password, if they are (nested) members of a group.
#[derive(Debug, Clone)]
pub struct AdminLdap {
    /// An ldap source (its servers, TLS, service bind and base DN).
    pub source: String,
    /// Members log in as admins.
    pub admin_group: Option<String>,
    /// Members log in as viewers.
    pub viewer_group: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Drop folders are rescanned this often even without a file event.
    pub rescan: Duration,
    /// `/healthz` answers 503 once the oldest due email has waited longer.
    pub mail_overdue: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Connection URL with relative SQLite paths already resolved.
    pub url: String,
    pub max_connections: u32,
    /// How long connecting, and waiting for a pooled connection, may take.
    pub timeout: Duration,
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
            .map(AsRef::as_ref)
            .find(|d: &&DomainConfig| d.name.eq_ignore_ascii_case(name))
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}
