//! Domain types shared by every stage: the PBX user model of DESIGN §1 as
//! "parse, don't validate" newtypes, and the `StaffRecord` every source yields.
//!
//! Sources (CSV rows, LDAP entries) only produce `StaffRecord`s of raw strings;
//! `mapping` turns them into checked `UserSpec`s using the parsers here.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Why a raw value was not accepted; the caller adds file, row and column.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// An extension: unique in its domain and never changed after creation.
/// Usually digits; letters are allowed for users that must not be dialled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Extension(String);

impl Extension {
    pub const MAX_LEN: usize = 15;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(invalid("extension is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "extension `{}` is longer than {} characters",
                excerpt(s),
                Self::MAX_LEN
            )));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(format!(
                "extension `{}` may contain only digits or letters",
                excerpt(s)
            )));
        }
        if s.chars().all(|c| c.is_ascii_digit()) && s.len() > 1 && s.starts_with('0') {
            return Err(invalid(format!(
                "extension `{s}` starts with 0, which dials the operator"
            )));
        }
        Ok(Extension(s.to_ascii_lowercase()))
    }

    /// The numeric value for digit-only extensions (those in the numbering plan).
    pub fn number(&self) -> Option<u64> {
        digits_value(&self.0)
    }

    pub fn from_number(n: u64) -> Self {
        Extension(n.to_string())
    }

    /// An extension as the store holds it: checked when it was written, or
    /// set by hand in the PBX, and taken as it is either way.
    pub fn stored(s: String) -> Self {
        Extension(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Extension {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Extension::parse(&s)
    }
}
impl From<Extension> for String {
    fn from(e: Extension) -> String {
        e.0
    }
}
impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of a digit-only string.
fn digits_value(s: &str) -> Option<u64> {
    match s.chars().all(|c| c.is_ascii_digit()) {
        true => s.parse().ok(),
        false => None,
    }
}

/// Addresses one per line, as the store keeps them.
pub fn join_emails(emails: &[Email]) -> String {
    emails
        .iter()
        .map(Email::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The store's emails column (one address per line) checked, in the form
/// `join_emails` of its parsed addresses gives: borrowed when it is that
/// already, as it is when pbx-onboard wrote it.
pub fn normal_emails(stored: &str) -> Result<std::borrow::Cow<'_, str>, InvalidValue> {
    let mut normal = true;
    for line in stored.split('\n') {
        let t = line.trim();
        if t.is_empty() || t.len() != line.len() || Email::check(t)?.is_some() {
            normal = false;
            break;
        }
    }
    if normal {
        return Ok(std::borrow::Cow::Borrowed(stored));
    }
    let emails = stored
        .lines()
        .filter(|l| !l.is_empty())
        .map(Email::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(std::borrow::Cow::Owned(join_emails(&emails)))
}

/// An email address, checked for the shape mail servers accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        Ok(Email(Email::check(s)?.unwrap_or_else(|| s.to_string())))
    }

    /// Checks a trimmed address: its normal form if that differs from it
    /// (the domain lower-cased), `None` if it is already normal.
    fn check(s: &str) -> Result<Option<String>, InvalidValue> {
        let bad = || invalid(format!("`{}` is not an email address", excerpt(s)));
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') || local.contains(',') {
            return Err(bad());
        }
        let labels_ok = domain.split('.').count() >= 2
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !labels_ok {
            return Err(bad());
        }
        // And what the mail library will take as a recipient (a quote or
        // other special in the local part passes the checks above).
        if !plain_ascii(local, domain) && s.parse::<lettre::Address>().is_err() {
            return Err(bad());
        }
        Ok(domain
            .chars()
            .any(char::is_uppercase)
            .then(|| format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    /// Keeps the string when it is already in its normal form (as stored
    /// and packed addresses are).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let t = s.trim();
        Ok(Email(match Email::check(t)? {
            Some(normal) => normal,
            None if t.len() == s.len() => s,
            None => t.to_string(),
        }))
    }
}

/// Whether `local@domain` is plain ASCII of the form every mail reader
/// takes: a dot-atom local part (RFC 5322 atext between single dots) and
/// labels of letters, digits and hyphens, at most 63 long (the caller has
/// checked they are non-empty and neither start nor end with a hyphen).
/// The mail library takes every such address (its `email_address` checks
/// are a dot-atom of atext, and labels of atext that start and end with a
/// letter or digit, at most 63 long), so these skip its parse, which was a
/// few percent of a 100k-row import in each place an address is read: the
/// file, the store, the packed plan. Anything else is still handed to it.
/// Test: `plain_ascii_addresses_are_ones_the_mail_library_takes`.
fn plain_ascii(local: &str, domain: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    local.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
    }) && domain
        .split('.')
        .all(|l| l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number from the domain's inventory (caller ID), digits with an optional `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let cleaned: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let digits = cleaned.strip_prefix('+').unwrap_or(&cleaned);
        if digits.len() < 3 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!(
                "`{}` is not a phone number",
                excerpt(raw.trim())
            )));
        }
        Ok(PhoneNumber(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&s)
    }
}
impl From<PhoneNumber> for String {
    fn from(e: PhoneNumber) -> String {
        e.0
    }
}

/// Normalises a label for forgiving comparisons: lower case, no spaces, `-` or `_`.
pub fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($var:ident => $label:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name { $($var),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $label),+ }
            }
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                // Exact labels (what the store holds) need no folding.
                $(
                    if raw == $label {
                        return Ok($name::$var);
                    }
                )+
                let f = fold(raw);
                $(
                    if f == fold($label) $(|| f == fold($alias))* {
                        return Ok($name::$var);
                    }
                )+
                let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                Err(invalid(format!(
                    "unknown {} `{}` (expected one of: {})", $what, excerpt(raw.trim()), known.join(", ")
                )))
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> { $name::parse(&s) }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String { v.as_str().to_string() }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

label_enum!(
    /// What a user may do in the portal; call-center scopes are billable.
    Scope, "scope" {
        NoPortal => "No Portal",
        SimpleUser => "Simple User",
        BasicUser => "Basic User" | "Basic" | "User",
        CallCenterAgent => "Call Center Agent" | "Agent",
        CallCenterSupervisor => "Call Center Supervisor" | "Supervisor",
        SiteManager => "Site Manager",
        OfficeManager => "Office Manager",
    }
);

impl Scope {
    /// Call-center seats are billed per user.
    pub fn is_billable(self) -> bool {
        matches!(self, Scope::CallCenterAgent | Scope::CallCenterSupervisor)
    }
}

label_enum!(
    /// A person or a resource extension.
    UserKind, "user kind" {
        Person => "person",
        CallQueue => "call queue" | "queue",
        AutoAttendant => "auto attendant" | "ivr",
        RingGroup => "ring group",
        VoicemailBox => "voicemail box" | "voicemail",
        CallRouting => "call routing" | "routing",
    }
);

impl UserKind {
    pub fn is_person(self) -> bool {
        self == UserKind::Person
    }
}

label_enum!(
    /// A provisioned phone device: SIP (desk phone, softphone) or browser-only.
    DeviceType, "device type" {
        Sip => "sip",
        Web => "web",
    }
);

label_enum!(
    /// Whether the user may log in and their devices register.
    Status, "status" {
        Active => "active",
        Disabled => "disabled",
    }
);

/// The fields a source can carry, named once so errors can cite the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    EmployeeId,
    FirstName,
    LastName,
    Email,
    Department,
    Site,
    Extension,
    Scope,
    Groups,
    Title,
    Status,
    CallerId,
    Voicemail,
    Device,
    ForceLogin,
}

impl Field {
    pub const ALL: [Field; 15] = [
        Field::EmployeeId,
        Field::FirstName,
        Field::LastName,
        Field::Email,
        Field::Department,
        Field::Site,
        Field::Extension,
        Field::Scope,
        Field::Groups,
        Field::Title,
        Field::Status,
        Field::CallerId,
        Field::Voicemail,
        Field::Device,
        Field::ForceLogin,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Field::EmployeeId => "employee_id",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::Email => "email",
            Field::Department => "department",
            Field::Site => "site",
            Field::Extension => "extension",
            Field::Scope => "scope",
            Field::Groups => "groups",
            Field::Title => "title",
            Field::Status => "status",
            Field::CallerId => "caller_id",
            Field::Voicemail => "voicemail",
            Field::Device => "device",
            Field::ForceLogin => "force_login",
        }
    }

    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.key() == key)
    }
}

/// Where a record came from, so every error can name file, row and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path (CSV) or server/base DN (LDAP).
    pub location: Arc<str>,
    /// Row number as a spreadsheet shows it (header = row 1); `None` for LDAP.
    pub row: Option<u64>,
    /// How the source names each field (CSV header text, LDAP attribute).
    pub columns: Arc<HashMap<Field, String>>,
}

impl Origin {
    pub fn column(&self, field: Field) -> String {
        self.columns
            .get(&field)
            .cloned()
            .unwrap_or_else(|| field.key().to_string())
    }
}

/// Employment status as the source states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    Active,
    Left,
}

/// A yes/no cell or attribute: yes/y/true/1 or no/n/false/0, any case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match fold(v).as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// What a source says about a user's phone device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// `no` / `none`: no device.
    No,
    /// `yes`: a device of the type the rules decide (SIP if none does).
    Yes,
    /// `sip` / `web`: exactly this type.
    Is(DeviceType),
}

impl DeviceChoice {
    /// yes/no (as [`parse_bool`] reads them), `none`, `sip` or `web`.
    pub fn parse(v: &str) -> Option<DeviceChoice> {
        match fold(v).as_str() {
            "none" => Some(DeviceChoice::No),
            "sip" => Some(DeviceChoice::Is(DeviceType::Sip)),
            "web" => Some(DeviceChoice::Is(DeviceType::Web)),
            other => parse_bool(other).map(|b| match b {
                true => DeviceChoice::Yes,
                false => DeviceChoice::No,
            }),
        }
    }
}

/// One person (or resource) as a source describes it: raw strings, trimmed,
/// empty cells as `None`. Validation happens in `mapping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRecord {
    pub origin: Origin,
    /// Stable id within the source (CSV employee id, AD objectGUID, entryUUID).
    pub source_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub emails: Vec<String>,
    pub department: Option<String>,
    pub site: Option<String>,
    pub extension: Option<String>,
    pub scope: Option<String>,
    pub groups: Vec<String>,
    pub title: Option<String>,
    pub status: SourceStatus,
    pub caller_id: Option<String>,
    pub voicemail: Option<bool>,
    pub device: Option<DeviceChoice>,
    /// The Web device rings only while its user is logged in to the portal.
    pub force_login: Option<bool>,
}

/// A refused row (or a refused file, with `row: None`), as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub file: String,
    pub row: Option<u64>,
    pub column: Option<String>,
    pub message: String,
    /// Source id of the refused row when it could be read; such users are
    /// never disabled because their row was refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_id: Option<String>,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(col) = &self.column {
            write!(f, ", column `{col}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ------------------------------------------------------------ shared by the stages

/// Where a row came from, for the per-row result report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRef {
    /// Shared by every row of the file.
    pub file: std::sync::Arc<str>,
    pub row: Option<u64>,
}

/// The fields a source controls, compared field by field by the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFields {
    pub first_name: String,
    pub last_name: Option<String>,
    pub emails: Vec<Email>,
    pub department: Option<String>,
    pub site: Option<String>,
    pub scope: Scope,
    pub kind: UserKind,
    pub title: Option<String>,
    pub caller_id: Option<PhoneNumber>,
    pub voicemail: bool,
    pub device: Option<DeviceType>,
    /// Only ever true with a Web device. Absent from plans saved before it.
    #[serde(default)]
    pub force_login: bool,
}

/// The text fields of a [`StoredUser`], in the order they are packed:
/// extension, source, source id, first name, last name, emails (one per
/// line, as the store keeps them), department, site, title, caller ID.
/// Named here are those read on their own; [`StoredUser::texts`] reads all.
#[derive(Debug, Clone, Copy)]
enum Text {
    Extension = 0,
    Source = 1,
    SourceId = 2,
    CallerId = 9,
}
const TEXTS: usize = Text::CallerId as usize + 1;

/// A user as the planner sees it. A run holds every user of its domain at
/// once, so a stored user is 40 bytes and one exactly sized buffer of its
/// texts, each a postcard `str` (its length as a varint, then its bytes).
/// Ten `String`s and a `Vec` of emails cost a no-op run of 100,000 users
/// about 30 MB more; the texts' ends as ten `u32`s beside the buffer were
/// 48 MB more at 1,000,000. [`StoredUser::fields`] unpacks a user for the
/// few a run changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: i64,
    /// Seconds; [`NOT_DISABLED`] for none (see [`StoredUser::disabled_at`]).
    disabled_at: i64,
    /// The [`Text`]s present, in order.
    text: Box<[u8]>,
    /// Bit `i` set: [`Text`] `i` is absent.
    nulls: u16,
    pub status: Status,
    scope: Scope,
    kind: UserKind,
    voicemail: bool,
    device: Option<DeviceType>,
    force_login: bool,
}

const NOT_DISABLED: i64 = i64::MIN;

/// A stored user's texts, unpacked in one pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoredTexts<'a> {
    pub extension: &'a str,
    pub source: Option<&'a str>,
    pub source_id: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: Option<&'a str>,
    /// One address per line.
    pub emails: &'a str,
    pub department: Option<&'a str>,
    pub site: Option<&'a str>,
    pub title: Option<&'a str>,
    pub caller_id: Option<&'a str>,
}

impl StoredTexts<'_> {
    pub fn emails(&self) -> impl Iterator<Item = &str> + '_ {
        self.emails.split('\n').filter(|e| !e.is_empty())
    }
}

/// A stored user's fields besides its texts.
#[derive(Debug, Clone, Copy)]
pub struct StoredAttrs {
    pub status: Status,
    pub disabled_at: Option<i64>,
    pub scope: Scope,
    pub kind: UserKind,
    pub voicemail: bool,
    pub device: Option<DeviceType>,
    pub force_login: bool,
}

impl StoredUser {
    pub fn new(
        id: i64,
        extension: &str,
        (source, source_id): (Option<&str>, Option<&str>),
        status: Status,
        disabled_at: Option<i64>,
        fields: &UserFields,
    ) -> StoredUser {
        let emails = join_emails(&fields.emails);
        let texts = StoredTexts {
            extension,
            source,
            source_id,
            first_name: &fields.first_name,
            last_name: fields.last_name.as_deref(),
            emails: &emails,
            department: fields.department.as_deref(),
            site: fields.site.as_deref(),
            title: fields.title.as_deref(),
            caller_id: fields.caller_id.as_ref().map(PhoneNumber::as_str),
        };
        let attrs = StoredAttrs {
            status,
            disabled_at,
            scope: fields.scope,
            kind: fields.kind,
            voicemail: fields.voicemail,
            device: fields.device,
            force_login: fields.force_login,
        };
        StoredUser::from_texts(id, &texts, attrs)
    }

    /// A user from texts already checked: the store's load reads them
    /// without making a [`UserFields`] first. `texts.emails` must be as
    /// [`normal_emails`] returns them.
    pub fn from_texts(id: i64, texts: &StoredTexts<'_>, a: StoredAttrs) -> StoredUser {
        let t = texts;
        let texts: [Option<&str>; TEXTS] = [
            Some(t.extension),
            t.source,
            t.source_id,
            Some(t.first_name),
            t.last_name,
            Some(t.emails),
            t.department,
            t.site,
            t.title,
            t.caller_id,
        ];
        // A varint takes a byte per 7 bits of the length.
        let size =
            |t: &str| t.len() + (64 - (t.len() as u64 | 1).leading_zeros() as usize).div_ceil(7);
        let mut text = Vec::with_capacity(texts.iter().flatten().map(|t| size(t)).sum());
        let mut nulls = 0u16;
        for (i, t) in texts.iter().enumerate() {
            match t {
                // Writing to a Vec cannot fail.
                Some(t) => text = postcard::to_extend(t, text).unwrap_or_default(),
                None => nulls |= 1 << i,
            }
        }
        StoredUser {
            id,
            disabled_at: a.disabled_at.unwrap_or(NOT_DISABLED),
            text: text.into_boxed_slice(),
            nulls,
            status: a.status,
            scope: a.scope,
            kind: a.kind,
            voicemail: a.voicemail,
            device: a.device,
            force_login: a.force_login,
        }
    }

    pub fn disabled_at(&self) -> Option<i64> {
        (self.disabled_at != NOT_DISABLED).then_some(self.disabled_at)
    }

    /// The texts up to `upto` (all of them for the last), in order.
    fn texts_upto(&self, upto: Text) -> [Option<&str>; TEXTS] {
        let mut out = [None; TEXTS];
        let mut rest: &[u8] = &self.text;
        for (i, slot) in out.iter_mut().enumerate().take(upto as usize + 1) {
            if self.nulls & (1 << i) != 0 {
                continue;
            }
            // Packed by `new`: a text that does not read back reads empty.
            let (t, r) = postcard::take_from_bytes::<&str>(rest).unwrap_or_default();
            *slot = Some(t);
            rest = r;
        }
        out
    }

    fn text(&self, t: Text) -> Option<&str> {
        self.texts_upto(t).get(t as usize).copied().flatten()
    }

    /// Every text, read in one pass over the buffer.
    pub fn texts(&self) -> StoredTexts<'_> {
        let [extension, source, source_id, first_name, last_name, emails, department, site, title, caller_id] =
            self.texts_upto(Text::CallerId);
        StoredTexts {
            extension: extension.unwrap_or_default(),
            source,
            source_id,
            first_name: first_name.unwrap_or_default(),
            last_name,
            emails: emails.unwrap_or_default(),
            department,
            site,
            title,
            caller_id,
        }
    }

    pub fn extension(&self) -> &str {
        self.text(Text::Extension).unwrap_or_default()
    }

    /// The extension as a plan action carries it.
    pub fn extension_value(&self) -> Extension {
        Extension::stored(self.extension().to_string())
    }

    /// The numeric value of a digit-only extension.
    pub fn extension_number(&self) -> Option<u64> {
        digits_value(self.extension())
    }

    pub fn source(&self) -> Option<&str> {
        self.text(Text::Source)
    }

    pub fn source_id(&self) -> Option<&str> {
        self.text(Text::SourceId)
    }

    /// The source and the source id, read in one pass (the planner's
    /// lookups by source id read both for every user they probe).
    pub fn source_and_id(&self) -> (Option<&str>, Option<&str>) {
        let [_, source, source_id, ..] = self.texts_upto(Text::SourceId);
        (source, source_id)
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn kind(&self) -> UserKind {
        self.kind
    }

    pub fn voicemail(&self) -> bool {
        self.voicemail
    }

    pub fn device(&self) -> Option<DeviceType> {
        self.device
    }

    pub fn force_login(&self) -> bool {
        self.force_login
    }

    /// The fields as they were packed (checked when they were loaded).
    pub fn fields(&self) -> UserFields {
        let t = self.texts();
        UserFields {
            first_name: t.first_name.to_string(),
            last_name: t.last_name.map(str::to_string),
            emails: t.emails().map(|e| Email(e.to_string())).collect(),
            department: t.department.map(str::to_string),
            site: t.site.map(str::to_string),
            scope: self.scope,
            kind: self.kind,
            title: t.title.map(str::to_string),
            caller_id: t.caller_id.map(|c| PhoneNumber(c.to_string())),
            voicemail: self.voicemail,
            device: self.device,
            force_login: self.force_login,
        }
    }
}

/// A write that failed for good, after isolation.
#[derive(Debug, Clone)]
pub struct Failed {
    pub source_id: String,
    pub at: Option<RowRef>,
    pub message: String,
}

/// Set by a shutdown: apply stops before its next chunk (the one in flight
/// commits or rolls back whole).
pub type StopFlag = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// The languages with their own templates.
pub const LANGUAGES: &[&str] = &["en", "de"];

/// `de`, `de-AT`, `de_DE.UTF-8` → `de`; anything without templates → `en`.
pub fn language(tag: Option<&str>) -> &'static str {
    let primary = tag
        .unwrap_or("en")
        .split(['-', '_', '.'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|l| **l == primary)
        .copied()
        .unwrap_or("en")
}

/// At most this many characters of an input value are quoted in a message.
pub const QUOTE_MAX: usize = 100;

/// An input value as a message quotes it: at most [`QUOTE_MAX`] characters
/// (then `…`), control characters shown as `\u{..}` escapes, so that no
/// value, however long or strange, can flood a report, a log or a terminal.
pub fn excerpt(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(QUOTE_MAX + 8));
    for (n, c) in s.chars().enumerate() {
        if n == QUOTE_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message cut to at most `max` characters (then `…`): the last guard
/// before a message reaches a report, whatever it quotes.
pub fn bound(message: &mut String, max: usize) {
    if let Some((cut, _)) = message.char_indices().nth(max) {
        message.truncate(cut);
        message.push('…');
    }
}

/// Makes a value one line: each run of control characters (C0 including
/// tab, CR and LF, DEL, C1), with the spaces around it, becomes one space,
/// and the ends are trimmed. Values without control characters (nearly all)
/// are left as they are, without copying.
pub fn one_line(s: &mut String) {
    if !s.chars().any(char::is_control) {
        return;
    }
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.chars() {
        if c.is_control() || (gap && c.is_whitespace()) {
            gap = true;
            continue;
        }
        if gap {
            while out.ends_with(char::is_whitespace) {
                out.pop();
            }
            if !out.is_empty() {
                out.push(' ');
            }
            gap = false;
        }
        out.push(c);
    }
    *s = out.trim().to_string();
}

/// An error and its causes on one line, `outer: inner: innermost`: how
/// errors reach reports and logs.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
