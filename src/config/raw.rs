//! The configuration file as users write it: serde shapes with unknown keys
//! refused and spans kept, so the checker can name the line of a bad value.

use super::mail::{RawMail, RawWeb};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) mail: Option<RawMail>,
    #[serde(default)]
    pub(super) state: Option<RawState>,
    #[serde(rename = "domain", default)]
    pub(super) domains: Vec<RawDomain>,
    #[serde(default)]
    pub(super) mapping: RawMapping,
    #[serde(rename = "source", default)]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) web: Option<RawWeb>,
    #[serde(default)]
    pub(super) daemon: Option<RawDaemon>,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default)]
    pub(super) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) base_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) session_idle_minutes: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) session_max_hours: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) ldap_source: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ldap_group: Option<String>,
    #[serde(default)]
    pub(super) ldap_viewer_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    #[serde(default)]
    pub(super) rescan_seconds: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) mail_overdue_minutes: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) max_connections: Option<u32>,
    #[serde(default)]
    pub(super) timeout_seconds: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) writes_per_second: u32,
    pub(super) burst: Spanned<u32>,
    pub(super) max_disable: u64,
    pub(super) max_disable_percent: Spanned<u32>,
    pub(super) max_billable: u64,
    pub(super) chunk_size: Spanned<u32>,
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
pub(super) struct RawDomain {
    pub(super) name: Spanned<String>,
    pub(super) numbering: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) reserved: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) numbers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) emergency_caller_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timezone: Option<String>,
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) dial_permission: Option<String>,
    #[serde(default = "yes")]
    pub(super) require_last_name: bool,
    #[serde(rename = "site", default)]
    pub(super) sites: Vec<RawSite>,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) numbering: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) timezone: Option<String>,
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) area_code: Option<String>,
    #[serde(default)]
    pub(super) caller_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) dial_permission: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(rename = "rule", default)]
    pub(super) rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) group: Option<String>,
    pub(super) department: Option<String>,
    pub(super) title: Option<String>,
    // what the rule sets
    pub(super) scope: Option<Spanned<String>>,
    pub(super) site: Option<String>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) voicemail: Option<bool>,
    pub(super) device: Option<Spanned<String>>,
    pub(super) force_login: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) domain: Spanned<String>,
    #[serde(default)]
    pub(super) inbox: Option<String>,
    #[serde(default)]
    pub(super) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) aliases: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    pub(super) settle_seconds: Option<f64>,
    #[serde(default)]
    pub(super) delete_after_days: Option<u32>,
    #[serde(default)]
    pub(super) schedule: Option<Spanned<String>>,
    // SCIM sources.
    #[serde(default)]
    pub(super) token_file: Option<Spanned<String>>,
    // LDAP sources (see `ldap.rs`).
    #[serde(default)]
    pub(super) profile: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) url: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bind_dn: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bind_password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bind_password_env: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) base_dn: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) group: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) group_base_dn: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) filter: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) disabled_filter: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) person_filter: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) page_size: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) full_sync_every: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timeout_seconds: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) attributes: Option<Spanned<BTreeMap<String, OneOrMany>>>,
}

/// A TOML value that may be one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
