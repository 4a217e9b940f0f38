//! Field-by-field differences between what the store holds and what the
//! source wants, and the fields an update writes.

use super::Change;
use crate::model::{StoredUser, UserFields};
use serde::{Deserialize, Serialize};

/// A field a source controls, as a plan names it when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangedField {
    FirstName,
    LastName,
    Emails,
    Department,
    Site,
    Scope,
    Kind,
    Title,
    CallerId,
    Voicemail,
    Device,
    ForceLogin,
}

impl ChangedField {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangedField::FirstName => "first_name",
            ChangedField::LastName => "last_name",
            ChangedField::Emails => "emails",
            ChangedField::Department => "department",
            ChangedField::Site => "site",
            ChangedField::Scope => "scope",
            ChangedField::Kind => "kind",
            ChangedField::Title => "title",
            ChangedField::CallerId => "caller_id",
            ChangedField::Voicemail => "voicemail",
            ChangedField::Device => "device",
            ChangedField::ForceLogin => "force_login",
        }
    }
}

impl std::fmt::Display for ChangedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Field-by-field differences from `old` to `new`, as strings for reports.
/// Values are compared as they are and only rendered when they differ: a
/// no-op sync of 100,000 users compares a million fields.
pub fn diff(old: &UserFields, new: &UserFields) -> Vec<Change> {
    fn text<T: ToString>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(ToString::to_string)
    }
    let mut out = Vec::new();
    let mut push = |field: ChangedField, from: Option<String>, to: Option<String>| {
        out.push(Change { field, from, to });
    };
    let emails = |f: &UserFields| {
        (!f.emails.is_empty()).then(|| {
            f.emails
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    if old.first_name != new.first_name {
        push(
            ChangedField::FirstName,
            Some(old.first_name.clone()),
            Some(new.first_name.clone()),
        );
    }
    if old.last_name != new.last_name {
        push(
            ChangedField::LastName,
            text(&old.last_name),
            text(&new.last_name),
        );
    }
    if old.emails != new.emails {
        push(ChangedField::Emails, emails(old), emails(new));
    }
    if old.department != new.department {
        push(
            ChangedField::Department,
            text(&old.department),
            text(&new.department),
        );
    }
    if old.site != new.site {
        push(ChangedField::Site, text(&old.site), text(&new.site));
    }
    if old.scope != new.scope {
        push(
            ChangedField::Scope,
            Some(old.scope.to_string()),
            Some(new.scope.to_string()),
        );
    }
    if old.kind != new.kind {
        push(
            ChangedField::Kind,
            Some(old.kind.to_string()),
            Some(new.kind.to_string()),
        );
    }
    if old.title != new.title {
        push(ChangedField::Title, text(&old.title), text(&new.title));
    }
    // A blank caller ID keeps the one the user has (often the site default).
    if new.caller_id.is_some() && old.caller_id != new.caller_id {
        let cid = |f: &UserFields| f.caller_id.as_ref().map(|c| c.as_str().to_string());
        push(ChangedField::CallerId, cid(old), cid(new));
    }
    if old.voicemail != new.voicemail {
        push(
            ChangedField::Voicemail,
            Some(old.voicemail.to_string()),
            Some(new.voicemail.to_string()),
        );
    }
    // Devices are only ever added or retyped by a sync, never removed.
    if new.device.is_some() && new.device != old.device {
        push(ChangedField::Device, text(&old.device), text(&new.device));
    }
    // Without a device of its own the new record keeps the old one's setting.
    if new.device.is_some() && new.force_login != old.force_login {
        push(
            ChangedField::ForceLogin,
            Some(old.force_login.to_string()),
            Some(new.force_login.to_string()),
        );
    }
    out
}

/// Whether [`diff`] of the stored user's fields to `new` is empty, compared
/// on the packed text without unpacking it. Keep in step with `diff`.
pub(super) fn same(old: &StoredUser, new: &UserFields) -> bool {
    let t = old.texts();
    t.first_name == new.first_name
        && t.last_name == new.last_name.as_deref()
        && t.emails().eq(new.emails.iter().map(|e| e.as_str()))
        && t.department == new.department.as_deref()
        && t.site == new.site.as_deref()
        && old.scope() == new.scope
        && old.kind() == new.kind
        && t.title == new.title.as_deref()
        && new
            .caller_id
            .as_ref()
            .is_none_or(|c| t.caller_id == Some(c.as_str()))
        && old.voicemail() == new.voicemail
        && (new.device.is_none()
            || (new.device == old.device() && new.force_login == old.force_login()))
}

/// The fields to write: the new ones, but a device and a caller ID the user
/// already has are kept when the source says nothing about them.
pub(super) fn merged(old: &UserFields, new: &UserFields) -> UserFields {
    let mut f = new.clone();
    if f.device.is_none() {
        f.device = old.device;
        f.force_login = old.force_login;
    }
    if f.caller_id.is_none() {
        f.caller_id.clone_from(&old.caller_id);
    }
    f
}
