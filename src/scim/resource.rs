//! What a stored resource looks like on the wire: `id`, `meta` (with its
//! weak ETag `version`), `attributes` / `excludedAttributes` projection,
//! list responses and `If-Match`.

use super::filter::member;
use super::{ScimError, LIST_SCHEMA};
use serde_json::{json, Map, Value};

/// The weak ETag of a resource version (RFC 7644 §3.14).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match`: `*`, or one of the listed tags is the current one.
pub fn check_if_match(header: Option<&str>, version: i64) -> Result<(), ScimError> {
    let Some(h) = header else {
        return Ok(());
    };
    let current = etag(version);
    let strong = format!("\"{version}\"");
    let ok = h
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || t == strong);
    match ok {
        true => Ok(()),
        false => Err(ScimError::new(
            412,
            None,
            format!("If-Match does not name the current version {current}"),
        )),
    }
}

pub struct Meta<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub created: i64,
    pub modified: i64,
    pub version: i64,
    /// The resource's URL, e.g. `https://pbx.example/scim/v2/entra/Users/ID`.
    pub location: String,
}

/// The stored body with the server's `id` and `meta` set.
pub fn with_meta(mut body: Value, meta: &Meta<'_>) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("id") && !k.eq_ignore_ascii_case("meta"));
        o.insert("id".into(), Value::String(meta.id.into()));
        o.insert(
            "meta".into(),
            json!({
                "resourceType": meta.resource_type,
                "created": crate::time::format_rfc3339(meta.created),
                "lastModified": crate::time::format_rfc3339(meta.modified),
                "version": etag(meta.version),
                "location": meta.location,
            }),
        );
    }
    body
}

/// `attributes=` / `excludedAttributes=` (RFC 7644 §3.4.2.5): `id` and
/// `schemas` are always returned.
pub fn project(mut body: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let list = |s: Option<&str>| -> Vec<String> {
        s.map(|s| {
            s.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    let (wanted, dropped) = (list(attributes), list(excluded));
    let always = |k: &str| k.eq_ignore_ascii_case("id") || k.eq_ignore_ascii_case("schemas");
    let top = |a: &str| -> String {
        // `name.givenName` → `name`; `urn:…:User:department` → the extension.
        match super::filter::known_extension(a.rsplit_once(':').map_or("", |(u, _)| u)) {
            Some(ext) => ext.to_string(),
            None => a.split('.').next().unwrap_or(a).to_string(),
        }
    };
    if let Some(o) = body.as_object_mut() {
        if !wanted.is_empty() {
            o.retain(|k, _| always(k) || wanted.iter().any(|w| top(w).eq_ignore_ascii_case(k)));
        }
        if !dropped.is_empty() {
            o.retain(|k, _| always(k) || !dropped.iter().any(|d| d.eq_ignore_ascii_case(k)));
        }
    }
    body
}

/// A page of a list (RFC 7644 §3.4.2.4): `startIndex` is 1-based.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// `startIndex` and `count` as RFC 7644 §3.4.2.4 reads them: below 1 is 1,
/// a negative count is 0; `count` is capped at `max`.
pub fn paging(
    start: Option<&str>,
    count: Option<&str>,
    max: usize,
) -> Result<(usize, usize), ScimError> {
    let int = |name: &str, v: Option<&str>| -> Result<Option<i64>, ScimError> {
        v.map(|s| {
            s.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(
                    "invalidValue",
                    format!("{name} `{}` is not an integer", crate::model::excerpt(s)),
                )
            })
        })
        .transpose()
    };
    let start = int("startIndex", start)?.unwrap_or(1).max(1);
    let count = int("count", count)?.unwrap_or(100).clamp(0, max as i64);
    Ok((
        usize::try_from(start).unwrap_or(1),
        usize::try_from(count).unwrap_or(0),
    ))
}

/// A resource's `members` values (Group).
pub fn member_ids(group: &Value) -> Vec<String> {
    member(group, "members")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| {
                    member(m, "value")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `displayName` of a Group.
pub fn display_name(group: &Value) -> Option<String> {
    member(group, "displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Drops `members[].$ref: null` and other nulls a client sends, so stored
/// JSON holds only values.
pub fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// An object body, or a 400.
pub fn object(bytes: &[u8]) -> Result<Value, ScimError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ScimError::bad(
            "invalidSyntax",
            format!(
                "the body is not JSON: {}",
                crate::model::excerpt(&e.to_string())
            ),
        )
    })?;
    match v {
        Value::Object(_) => Ok(v),
        _ => Err(ScimError::bad(
            "invalidSyntax",
            "the body is not a JSON object",
        )),
    }
}

/// An empty object, for building documents.
pub fn empty() -> Value {
    Value::Object(Map::new())
}
