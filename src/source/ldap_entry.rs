//! The pure half of the LDAP source: the filters a read sends (every value in
//! them escaped per RFC 4515), directory entries turned into `StaffRecord`s,
//! nested group expansion, and the change markers of incremental reads.

use crate::config::{LdapProfile, LdapSourceConfig};
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

/// A DN folded for comparison: escapes (`\,`, `\3D`) undone, lower case,
/// no spaces around `,` and `=`. `CN=a\2Cb, OU=X` and `cn=a\,b,ou=x` agree.
pub fn norm_dn(dn: &str) -> String {
    // Most DNs are printable ASCII with one `=` per RDN and nothing to
    // unescape, trim or escape again: folding them is lower-casing them.
    let plain = dn
        .bytes()
        .all(|c| c.is_ascii_graphic() && !matches!(c, b'\\' | b'+' | b'"' | b'<' | b'>' | b';'))
        && dn
            .split(',')
            .all(|rdn| rdn.bytes().filter(|&c| c == b'=').count() == 1);
    if plain {
        return dn.to_ascii_lowercase();
    }
    norm_dn_escaped(dn)
}

fn norm_dn_escaped(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut value: Vec<u8> = Vec::new();
    let mut in_value = false;
    let flush = |out: &mut String, value: &mut Vec<u8>| {
        let v = String::from_utf8_lossy(value);
        let v = v.trim();
        // A value that needs it is escaped again, the same way every time.
        for c in v.chars().flat_map(char::to_lowercase) {
            if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                out.push('\\');
            }
            out.push(c);
        }
        value.clear();
    };
    let b = dn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            if let Some((byte, len)) = dn_escape(b, i) {
                value.push(byte);
                i += len;
                continue;
            }
        }
        if !in_value && c == b'=' {
            let attr = String::from_utf8_lossy(&value).trim().to_ascii_lowercase();
            out.push_str(&attr);
            out.push('=');
            value.clear();
            in_value = true;
        } else if c == b',' && in_value {
            flush(&mut out, &mut value);
            out.push(',');
            in_value = false;
        } else {
            value.push(c);
        }
        i += 1;
    }
    if in_value {
        flush(&mut out, &mut value);
    } else {
        out.push_str(String::from_utf8_lossy(&value).trim());
    }
    out
}

/// What the DN escape starting at `b[i]` (a backslash) stands for, and how
/// many bytes it takes: `\2C` → (`,`, 3), `\,` → (`,`, 2); `None` for a
/// backslash at the end.
pub fn dn_escape(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let hex = b
        .get(i + 1..i + 3)
        // from_str_radix alone would take `\+D` as 0x0D.
        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u8::from_str_radix(h, 16).ok());
    match hex {
        Some(byte) => Some((byte, 3)),
        None => b.get(i + 1).map(|&c| (c, 2)),
    }
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
                e.dn,
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
    let flag = |f: Field| -> Result<Option<bool>, RowError> {
        match e.first(at(f)) {
            None => Ok(None),
            Some(v) => crate::model::parse_bool(&v).map(Some).ok_or_else(|| {
                let mut r = err(at(f), format!("entry {}: `{v}` is not yes/no", e.dn));
                r.source_id = Some(source_id.clone());
                r
            }),
        }
    };
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
        device: flag(Field::Device)?,
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

// ------------------------------------------------------------ generalized time

/// `YYYYMMDDHHMMSS[.fff]Z` → seconds since 1970.
pub fn parse_gentime(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let digits = s.split('.').next()?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, sec) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

pub fn format_gentime(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-30 09:15 UTC`, for people (emails, reports).
pub fn format_utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
#[path = "ldap_entry_tests.rs"]
mod tests;
