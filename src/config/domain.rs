//! A customer domain and its sites, as checked: numbering ranges parsed,
//! reserved numbers expanded, caller IDs validated.

use crate::model::{fold, PhoneNumber};
use crate::numbering::{NumberRange, NumberSet};

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
