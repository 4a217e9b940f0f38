//! The pure half of the LDAP source: the filters a read sends (every value in
//! them escaped per RFC 4515), directory entries turned into `StaffRecord`s,
//! nested group expansion, and the change markers of incremental reads.

use crate::config::{LdapProfile, LdapSourceConfig};
use crate::dn::norm_dn;
use crate::model::{Field, Origin, RowError, SourceStatus, StaffRecord};
use ldap3::ldap_escape;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// AD's "in chain" matching rule: transitive group membership.
pub const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// How far back an OpenLDAP changed-only read looks before its marker, so an
/// entry modified while the previous read was paging is not missed.
pub const TIMESTAMP_OVERLAP_SECS: i64 = 600;

/// The attribute holding the change marker of each profile.
pub fn marker_attr(p: LdapProfile) -> &'static str {
    match p {
        LdapProfile::ActiveDirectory => "uSNChanged",
        LdapProfile::OpenLdap => "modifyTimestamp",
    }
}

/// Where a changed-only read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// AD: entries with `uSNChanged` above this. USNs are per domain
    /// controller: the second value is the server the counter came from.
    Usn(u64, String),
    /// OpenLDAP: entries modified at or after this generalized time.
    Timestamp(String),
}

/// The search filter of one read: the profile's people, the configured
/// group (AD: nested, by the in-chain rule) and filter, and for changed-only
/// reads the marker. Every configured or stored value is escaped.
pub fn person_filter(c: &LdapSourceConfig, since: Option<&Since>) -> String {
    let mut f = String::from("(&");
    let ad = c.profile == LdapProfile::ActiveDirectory;
    match &c.person_filter {
        Some(p) => f.push_str(p),
        None if ad => f.push_str("(objectCategory=person)(objectClass=user)"),
        None => f.push_str("(objectClass=person)"),
    }
    if let (true, Some(g)) = (ad, &c.group) {
        f.push_str(&format!("(memberOf:{IN_CHAIN}:={})", ldap_escape(g)));
    }
    if let Some(extra) = &c.filter {
        f.push_str(extra);
    }
    match since {
        Some(Since::Usn(n, _)) => f.push_str(&format!("(uSNChanged>={})", n.saturating_add(1))),
        Some(Since::Timestamp(t)) => f.push_str(&format!("(modifyTimestamp>={})", ldap_escape(t))),
        None => {}
    }
    f.push(')');
    f
}

/// OpenLDAP group entries, for nested expansion.
pub const GROUP_FILTER: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))";

/// The attributes a read asks for.
pub fn wanted_attrs(c: &LdapSourceConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in Field::ALL {
        for a in c.attributes.get(f) {
            if !out.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                out.push(a.clone());
            }
        }
    }
    out.push(marker_attr(c.profile).to_string());
    if c.profile == LdapProfile::ActiveDirectory {
        out.push("userAccountControl".into());
    }
    out
}

/// Group DN → member DNs (both as read), from `member` / `uniqueMember`.
#[derive(Debug, Default)]
pub struct GroupGraph {
    /// norm(group) → norm(members)
    members: HashMap<String, Vec<String>>,
    /// norm(member) → groups that list it directly
    parents: HashMap<String, Vec<Parent>>,
}

/// A group that lists a member: its DN as read and as `norm_dn` folds it.
#[derive(Debug, Clone)]
pub struct Parent {
    pub shown: Arc<str>,
    pub norm: Arc<str>,
}

impl GroupGraph {
    pub fn add(&mut self, group_dn: &str, members: impl IntoIterator<Item = String>) {
        let g = norm_dn(group_dn);
        let shown: Arc<str> = Arc::from(group_dn);
        let norm: Arc<str> = Arc::from(g.as_str());
        for m in members {
            // uniqueMember may carry an `#'0101'B` uid suffix.
            let m = m.split_once('#').map_or(m.as_str(), |(dn, _)| dn);
            let n = norm_dn(m);
            self.parents.entry(n.clone()).or_default().push(Parent {
                shown: shown.clone(),
                norm: norm.clone(),
            });
            self.members.entry(g.clone()).or_default().push(n);
        }
    }

    /// Every entry that is a member of `group`, directly or through groups
    /// (cycles are fine).
    pub fn members_of(&self, group: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut seen_groups = HashSet::new();
        let mut queue = VecDeque::from([norm_dn(group)]);
        while let Some(g) = queue.pop_front() {
            if !seen_groups.insert(g.clone()) {
                continue;
            }
            for m in self.members.get(&g).into_iter().flatten() {
                if self.members.contains_key(m) {
                    queue.push_back(m.clone());
                } else {
                    out.insert(m.clone());
                }
            }
        }
        out
    }

    /// The groups an entry belongs to, directly or through nesting, given
    /// its DN as `norm_dn` folds it.
    pub fn groups_of(&self, norm: &str) -> Vec<&Parent> {
        let mut out: Vec<&Parent> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([norm]);
        while let Some(m) = queue.pop_front() {
            for p in self.parents.get(m).into_iter().flatten() {
                if seen.insert(&p.norm) {
                    out.push(p);
                    queue.push_back(&p.norm);
                }
            }
        }
        out
    }
}

/// One entry as read. Attribute names keep the server's case and are
/// looked up ignoring it: an entry has a dozen, a scan beats hashing.
pub struct Entry {
    pub dn: String,
    /// The DN as `norm_dn` folds it.
    pub norm: String,
    pub attrs: Vec<(String, Vec<String>)>,
    pub bin: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    pub fn new(
        dn: String,
        attrs: HashMap<String, Vec<String>>,
        bin: HashMap<String, Vec<Vec<u8>>>,
    ) -> Entry {
        Entry {
            norm: norm_dn(&dn),
            dn,
            attrs: attrs.into_iter().collect(),
            bin: bin.into_iter().collect(),
        }
    }

    fn values(&self, attr: &str) -> &[String] {
        lookup(&self.attrs, attr).map_or(&[], |v| v.as_slice())
    }

    fn first(&self, attrs: &[String]) -> Option<String> {
        attrs.iter().find_map(|a| {
            self.values(a)
                .iter()
                .map(|v| v.trim())
                .find(|v| !v.is_empty())
                .map(str::to_string)
        })
    }

    /// The stable id: text as read, or a binary GUID rendered as a GUID
    /// string. `ldap3` files a value that happens to be valid UTF-8 as text,
    /// so a GUID attribute is rendered from its bytes wherever it landed.
    fn id(&self, attrs: &[String]) -> Option<String> {
        attrs.iter().find_map(|a| {
            if is_binary_id(a) {
                let text = self.values(a).first().map(String::as_bytes);
                let bytes = text.or_else(|| Some(lookup(&self.bin, a)?.first()?.as_slice()))?;
                return (!bytes.is_empty()).then(|| render_binary_id(bytes));
            }
            self.first(std::slice::from_ref(a)).or_else(|| {
                let v = lookup(&self.bin, a)?.first()?;
                Some(render_binary_id(v))
            })
        })
    }

    /// The change marker value, if the entry has one.
    pub fn marker(&self, profile: LdapProfile) -> Option<&str> {
        self.values(marker_attr(profile)).first().map(|s| s.trim())
    }
}

fn lookup<'e, V>(attrs: &'e [(String, V)], name: &str) -> Option<&'e V> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Attributes that hold a GUID as 16 raw bytes.
fn is_binary_id(attr: &str) -> bool {
    ["objectGUID", "mS-DS-ConsistencyGuid"]
        .iter()
        .any(|b| b.eq_ignore_ascii_case(attr))
}

/// `objectGUID` (16 bytes, first three groups little-endian) as AD shows it;
/// other binary ids in hex.
pub fn render_binary_id(b: &[u8]) -> String {
    let Ok(g) = <[u8; 16]>::try_from(b) else {
        return hex::encode(b);
    };
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
    )
}

/// Turns one entry into a record. `disabled`: the OpenLDAP disabled filter
/// matched it. `graph`: nested groups (OpenLDAP).
pub fn to_record(
    c: &LdapSourceConfig,
    origin: &Origin,
    e: &Entry,
    disabled: bool,
    graph: Option<&GroupGraph>,
) -> Result<StaffRecord, RowError> {
    let at = |f: Field| c.attributes.get(f);
    let err = |column: &[String], message: String| RowError {
        file: origin.location.to_string(),
        row: None,
        column: column.first().cloned(),
        message,
        source_id: None,
    };
    let source_id = e.id(at(Field::EmployeeId)).ok_or_else(|| {
        err(
            at(Field::EmployeeId),
            format!(
                "entry {} has no {}",
                crate::model::excerpt(&e.dn),
                at(Field::EmployeeId).join(" or ")
            ),
        )
    })?;
    let mut emails: Vec<String> = Vec::new();
    for a in at(Field::Email) {
        let proxy = a.eq_ignore_ascii_case("proxyAddresses");
        let mut vals: Vec<&str> = e.values(a).iter().map(|v| v.trim()).collect();
        if proxy {
            // The primary address is `SMTP:`; others `smtp:`; X500: etc. are not mail.
            vals.sort_by_key(|v| !v.starts_with("SMTP:"));
        }
        for v in vals {
            let v = if proxy {
                match v.split_once(':') {
                    Some((k, addr)) if k.eq_ignore_ascii_case("smtp") => addr,
                    _ => continue,
                }
            } else {
                v
            };
            if !v.is_empty() && !emails.iter().any(|x| x.eq_ignore_ascii_case(v)) {
                emails.push(v.to_string());
            }
        }
    }
    let mut groups: Vec<String> = at(Field::Groups)
        .iter()
        .flat_map(|a| e.values(a).iter().map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .collect();
    if let Some(g) = graph {
        let mut have: HashSet<String> = groups.iter().map(|x| norm_dn(x)).collect();
        for parent in g.groups_of(&e.norm) {
            if have.insert(parent.norm.to_string()) {
                groups.push(parent.shown.to_string());
            }
        }
    }
    let account_disabled = c.profile == LdapProfile::ActiveDirectory
        && e.first(&["userAccountControl".into()])
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|uac| uac & 2 != 0);
    let refused = |f: Field, v: &str, expected: &str| {
        let mut r = err(
            at(f),
            format!(
                "entry {}: `{}` is not {expected}",
                crate::model::excerpt(&e.dn),
                crate::model::excerpt(v)
            ),
        );
        r.source_id = Some(source_id.clone());
        r
    };
    let flag = |f: Field| -> Result<Option<bool>, RowError> {
        e.first(at(f))
            .map(|v| crate::model::parse_bool(&v).ok_or_else(|| refused(f, &v, "yes/no")))
            .transpose()
    };
    let device = e
        .first(at(Field::Device))
        .map(|v| {
            crate::model::DeviceChoice::parse(&v)
                .ok_or_else(|| refused(Field::Device, &v, "yes/no, sip, web or none"))
        })
        .transpose()?;
    Ok(StaffRecord {
        origin: origin.clone(),
        first_name: e.first(at(Field::FirstName)),
        last_name: e.first(at(Field::LastName)),
        emails,
        department: e.first(at(Field::Department)),
        site: e.first(at(Field::Site)),
        extension: e.first(at(Field::Extension)),
        scope: e.first(at(Field::Scope)),
        groups,
        title: e.first(at(Field::Title)),
        status: if disabled || account_disabled {
            SourceStatus::Left
        } else {
            SourceStatus::Active
        },
        caller_id: e.first(at(Field::CallerId)),
        voicemail: flag(Field::Voicemail)?,
        force_login: flag(Field::ForceLogin)?,
        device,
        source_id,
    })
}

/// How each field is named in this source, for messages.
pub fn columns(c: &LdapSourceConfig) -> HashMap<Field, String> {
    Field::ALL
        .iter()
        .filter_map(|f| c.attributes.get(*f).first().map(|a| (*f, a.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
