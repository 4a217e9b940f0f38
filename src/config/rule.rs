//! A mapping rule as checked: the conditions a record must meet (group,
//! department, title) and the values it then sets.

use crate::model::{fold, DeviceType, Scope, StaffRecord, UserKind};

/// One `[[mapping.rule]]`: conditions (all given ones must match) and the
/// values it sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub group: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
    pub scope: Option<Scope>,
    pub set_department: Option<String>,
    pub site: Option<String>,
    pub kind: Option<UserKind>,
    pub voicemail: Option<bool>,
    /// `Some(None)`: the rule says "no device".
    pub device: Option<Option<DeviceType>>,
    /// Web devices only: ring only while the user is logged in to the portal.
    pub force_login: Option<bool>,
}

impl Rule {
    /// Groups match by full name or by CN (`CN=Sales,OU=…` matches `Sales`),
    /// case- and space-insensitively.
    pub fn matches(&self, r: &StaffRecord) -> bool {
        let eq = |a: &str, b: &str| fold(a) == fold(b);
        let group_ok = self.group.as_deref().is_none_or(|g| {
            r.groups
                .iter()
                .any(|have| eq(have, g) || crate::dn::cn_of(have).is_some_and(|cn| eq(&cn, g)))
        });
        let dept_ok = self
            .department
            .as_deref()
            .is_none_or(|d| r.department.as_deref().is_some_and(|have| eq(have, d)));
        let title_ok = self
            .title
            .as_deref()
            .is_none_or(|t| r.title.as_deref().is_some_and(|have| eq(have, t)));
        group_ok && dept_ok && title_ok
    }
}
