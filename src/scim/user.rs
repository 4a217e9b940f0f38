//! A SCIM User resource as a `StaffRecord`: the same mapping rules, plan
//! and apply as CSV rows and directory entries take it from there.
//!
//! | record | SCIM attribute |
//! |---|---|
//! | source id | `externalId`, else `id` |
//! | first / last name | `name.givenName` (else `displayName`, else `userName`), `name.familyName` |
//! | emails | `emails[].value`, the `primary` one first |
//! | title | `title` |
//! | status | `active` (`false`, or the string `"False"`: disabled) |
//! | department | enterprise `department` |
//! | extension, site, scope, voicemail, device, forceLogin | the PBX extension schema |
//! | caller ID | `phoneNumbers[type eq "work"].value` |
//! | groups | the `displayName` of each Group the user is a member of |

use super::filter::member;
use super::{ScimError, ENTERPRISE_SCHEMA, PBX_SCHEMA, USER_SCHEMA};
use crate::model::{DeviceChoice, DeviceType, Field, Origin, SourceStatus, StaffRecord};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// How errors name each field: by the SCIM attribute it came from.
pub fn columns() -> Arc<HashMap<Field, String>> {
    let pbx = |a: &str| format!("{PBX_SCHEMA}:{a}");
    Arc::new(HashMap::from([
        (Field::EmployeeId, "externalId".to_string()),
        (Field::FirstName, "name.givenName".into()),
        (Field::LastName, "name.familyName".into()),
        (Field::Email, "emails".into()),
        (Field::Department, format!("{ENTERPRISE_SCHEMA}:department")),
        (Field::Site, pbx("site")),
        (Field::Extension, pbx("extension")),
        (Field::Scope, pbx("scope")),
        (Field::Groups, "groups".into()),
        (Field::Title, "title".into()),
        (Field::Status, "active".into()),
        (
            Field::CallerId,
            "phoneNumbers[type eq \"work\"].value".into(),
        ),
        (Field::Voicemail, pbx("voicemail")),
        (Field::Device, pbx("device")),
        (Field::ForceLogin, pbx("forceLogin")),
    ]))
}

/// Server-side clean-up of what a client sent: `active` as a boolean
/// (Entra sends `"False"`), `schemas` listing the core schema and each
/// extension present.
pub fn normalise(resource: &mut Value) -> Result<(), ScimError> {
    let Some(obj) = resource.as_object_mut() else {
        return Err(ScimError::bad("invalidSyntax", "a User is a JSON object"));
    };
    if let Some((k, v)) = obj
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("active"))
    {
        match v {
            Value::Bool(_) | Value::Null => {}
            Value::String(s) if s.eq_ignore_ascii_case("true") => *v = Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => *v = Value::Bool(false),
            other => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "`{k}` is `{}`, expected true or false",
                        crate::model::excerpt(&other.to_string())
                    ),
                ))
            }
        }
    }
    // The password the client may send (Okta does) is not kept: people set
    // their own through the welcome email.
    obj.retain(|k, _| !k.eq_ignore_ascii_case("password"));
    let mut schemas = vec![Value::String(USER_SCHEMA.into())];
    for ext in [ENTERPRISE_SCHEMA, PBX_SCHEMA] {
        if obj.keys().any(|k| k.eq_ignore_ascii_case(ext)) {
            schemas.push(Value::String(ext.into()));
        }
    }
    obj.insert("schemas".into(), Value::Array(schemas));
    Ok(())
}

/// `userName`, which every User must have (RFC 7643 §4.1.1).
pub fn user_name(resource: &Value) -> Result<String, ScimError> {
    match member(resource, "userName")
        .and_then(Value::as_str)
        .map(str::trim)
    {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(ScimError::bad("invalidValue", "a User needs a userName")),
    }
}

pub fn external_id(resource: &Value) -> Option<String> {
    member(resource, "externalId")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Whether the user is active (absent means active, RFC 7643 §4.1.1).
pub fn active(resource: &Value) -> bool {
    !matches!(member(resource, "active"), Some(Value::Bool(false)))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => crate::model::parse_bool(s),
        _ => None,
    }
}

/// The PBX extension's `extension`, as the client wrote it.
pub fn pbx_extension(resource: &Value) -> Option<String> {
    text(member(resource, PBX_SCHEMA).and_then(|p| member(p, "extension")))
}

/// The record a User resource describes. `id` is the server's id,
/// `location` what errors name (`scim:SOURCE/Users/ID`).
pub fn record(
    resource: &Value,
    id: &str,
    groups: Vec<String>,
    location: Arc<str>,
) -> Result<StaffRecord, ScimError> {
    let name = member(resource, "name");
    let mut emails: Vec<(bool, String)> = member(resource, "emails")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    let value = text(member(e, "value"))?;
                    Some((flag(member(e, "primary")) == Some(true), value))
                })
                .collect()
        })
        .unwrap_or_default();
    // The primary address first, then the rest in the order sent.
    emails.sort_by_key(|(primary, _)| !primary);
    let work_phone = member(resource, "phoneNumbers")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|p| {
                    member(p, "type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case("work"))
                })
                .and_then(|p| text(member(p, "value")))
        });
    let enterprise = member(resource, ENTERPRISE_SCHEMA);
    let pbx = member(resource, PBX_SCHEMA);
    let pbx_field = |k: &str| pbx.and_then(|p| member(p, k));
    let device = match text(pbx_field("device")).map(|d| d.to_ascii_lowercase()) {
        None => None,
        Some(d) if d == "none" => Some(DeviceChoice::No),
        Some(d) if d == "sip" => Some(DeviceChoice::Is(DeviceType::Sip)),
        Some(d) if d == "web" => Some(DeviceChoice::Is(DeviceType::Web)),
        Some(d) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!(
                    "{PBX_SCHEMA}:device is `{}`, expected sip, web or none",
                    crate::model::excerpt(&d)
                ),
            ))
        }
    };
    let boolean = |k: &str| match pbx_field(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => flag(Some(v)).map(Some).ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                format!("{PBX_SCHEMA}:{k} is not true or false"),
            )
        }),
    };
    let voicemail = boolean("voicemail")?;
    let force_login = boolean("forceLogin")?;
    Ok(StaffRecord {
        origin: Origin {
            location,
            row: None,
            columns: columns(),
        },
        source_id: external_id(resource).unwrap_or_else(|| id.to_string()),
        // A user needs a name to show: without givenName, the displayName,
        // else the userName (the mapping then asks for a last name if the
        // domain requires one).
        first_name: text(name.and_then(|n| member(n, "givenName")))
            .or_else(|| text(member(resource, "displayName")))
            .or_else(|| text(member(resource, "userName"))),
        last_name: text(name.and_then(|n| member(n, "familyName"))),
        emails: emails.into_iter().map(|(_, e)| e).collect(),
        department: text(enterprise.and_then(|e| member(e, "department"))),
        site: text(pbx_field("site")),
        extension: text(pbx_field("extension")),
        scope: text(pbx_field("scope")),
        groups,
        title: text(member(resource, "title")),
        status: match active(resource) {
            true => SourceStatus::Active,
            false => SourceStatus::Left,
        },
        caller_id: work_phone,
        voicemail,
        device,
        force_login,
    })
}
