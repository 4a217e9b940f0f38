//! A configured source, as checked: its kind (CSV drop folder or LDAP
//! directory) with ready-to-use settings, its domain and sync mode.

use super::{DomainConfig, LdapSourceConfig};
use crate::model::Field;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The source lists everyone: users it owns that are absent get disabled.
    Full,
    /// The source lists changes only: add and update, never disable by absence.
    Delta,
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Full => "full",
            SyncMode::Delta => "delta",
        })
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// The domain the source feeds (checked to exist at load).
    pub domain: Arc<DomainConfig>,
    pub mode: SyncMode,
    pub kind: SourceKind,
    pub delete_after_days: Option<u32>,
    /// When the daemon runs the source (ldap sources default to every 15
    /// minutes); `None`: only when its drop folder changes.
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Csv(CsvSourceConfig),
    Ldap(Box<LdapSourceConfig>),
    Scim(ScimSourceConfig),
}

/// A SCIM source: identity providers push to `/scim/v2/{name}/`.
#[derive(Debug, Clone)]
pub struct ScimSourceConfig {
    /// Bearer tokens, one per line (plain, or `sha256:HEX` of the token);
    /// the daemon refuses to start when it is missing, empty or readable by
    /// others.
    pub token_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CsvSourceConfig {
    pub inbox: PathBuf,
    pub aliases: HashMap<Field, Vec<String>>,
    pub settle: Duration,
}

/// When an ldap source has no `schedule`.
pub const DEFAULT_LDAP_SCHEDULE: &str = "0 */15 * * * *";

/// A cron expression with seconds, checked at load the way the daemon's
/// scheduler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub(super) String);

impl Schedule {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A csv source with its settings: what `import` and the drop-folder
/// watch run. Handed out by [`SourceConfig::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct CsvSource<'a> {
    pub source: &'a SourceConfig,
    pub csv: &'a CsvSourceConfig,
}

/// An ldap source with its settings: what `sync` and the schedule run.
#[derive(Debug, Clone, Copy)]
pub struct LdapSource<'a> {
    pub source: &'a SourceConfig,
    pub ldap: &'a LdapSourceConfig,
}

/// A scim source with its settings: what the daemon serves.
#[derive(Debug, Clone, Copy)]
pub struct ScimSource<'a> {
    pub source: &'a SourceConfig,
    pub scim: &'a ScimSourceConfig,
}

/// A source by kind, so a run gets exactly the settings it needs.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    Csv(CsvSource<'a>),
    Ldap(LdapSource<'a>),
    Scim(ScimSource<'a>),
}

impl SourceConfig {
    pub fn resolve(&self) -> Resolved<'_> {
        match &self.kind {
            SourceKind::Csv(csv) => Resolved::Csv(CsvSource { source: self, csv }),
            SourceKind::Ldap(ldap) => Resolved::Ldap(LdapSource { source: self, ldap }),
            SourceKind::Scim(scim) => Resolved::Scim(ScimSource { source: self, scim }),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SourceKind::Csv(_) => "csv",
            SourceKind::Ldap(_) => "ldap",
            SourceKind::Scim(_) => "scim",
        }
    }
}
