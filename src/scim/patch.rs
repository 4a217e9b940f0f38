//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON, with what Entra ID
//! and Okta actually send:
//!
//! - `op` in any case (`Replace`, `Add`, `remove`);
//! - a path-less `add`/`replace` whose value holds plain keys, dotted keys
//!   (`name.givenName`) and URN-qualified keys
//!   (`urn:…:enterprise:2.0:User:department`), or a whole extension object;
//! - value-filtered paths (`emails[type eq "work"].value`), creating the
//!   element when none matches (a first work email);
//! - member removal as `members[value eq "…"]` and as `path: "members"`
//!   with a value array; member adds with `"$ref": null`.
//!
//! Removing what is not there succeeds (retries stay idempotent).

use super::filter::{known_extension, val_matches};
use super::{ScimError, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA};
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a PatchOp request body to `resource`. `id`, `meta` and
/// `schemas` are the server's: changes to them are ignored by the caller.
pub fn apply(resource: &mut Value, body: &Value) -> Result<(), ScimError> {
    let schemas_ok = super::filter::member(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))
            })
        });
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body names the schema {PATCH_SCHEMA}"),
        ));
    }
    let ops = super::filter::member(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a PATCH body has an `Operations` array"))?;
    for (n, op) in ops.iter().enumerate() {
        let name = super::filter::member(op, "op")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = match name.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!(
                        "operation {}: `op` is `{}`, expected add, replace or remove",
                        n + 1,
                        crate::model::excerpt(name)
                    ),
                ))
            }
        };
        let value = super::filter::member(op, "value").cloned();
        match super::filter::member(op, "path").and_then(Value::as_str) {
            None | Some("") => path_less(resource, kind, value, n)?,
            Some(path) => with_path(resource, kind, path, value, n)?,
        }
    }
    Ok(())
}

fn path_less(
    resource: &mut Value,
    op: Op,
    value: Option<Value>,
    n: usize,
) -> Result<(), ScimError> {
    if op == Op::Remove {
        return Err(ScimError::bad(
            "noTarget",
            format!("operation {}: remove needs a path", n + 1),
        ));
    }
    let Some(Value::Object(map)) = value else {
        return Err(ScimError::bad(
            "invalidValue",
            format!(
                "operation {}: without a path, the value is an object of attributes",
                n + 1
            ),
        ));
    };
    for (key, v) in map {
        let path = key_path(&key).map_err(|e| at(n, e))?;
        set(resource, op, &path, v);
    }
    Ok(())
}

fn at(n: usize, e: ScimError) -> ScimError {
    ScimError {
        detail: format!("operation {}: {}", n + 1, e.detail),
        ..e
    }
}

/// A key of a path-less value: `title`, `name.givenName`,
/// `urn:…:enterprise:2.0:User:department`, or an extension URN itself.
fn key_path(key: &str) -> Result<AttrPath, ScimError> {
    if let Some(uri) = known_extension(key) {
        return Ok(AttrPath {
            uri: None,
            name: uri.to_string(),
            sub_attr: None,
        });
    }
    parse_attr(key)
}

fn parse_attr(text: &str) -> Result<AttrPath, ScimError> {
    match text.parse::<PatchPath>() {
        Ok(PatchPath::Attr(a)) => Ok(a),
        _ => Err(ScimError::bad(
            "invalidPath",
            format!("`{}` is not an attribute path", crate::model::excerpt(text)),
        )),
    }
}

fn with_path(
    resource: &mut Value,
    op: Op,
    path: &str,
    value: Option<Value>,
    n: usize,
) -> Result<(), ScimError> {
    // A whole extension: `path: "urn:…:enterprise:2.0:User"`.
    if let Some(ext) = known_extension(path.trim()) {
        let a = AttrPath {
            uri: None,
            name: ext.to_string(),
            sub_attr: None,
        };
        match (op, value) {
            (Op::Remove, _) => remove(resource, &a),
            (_, Some(v)) => set(resource, op, &a, v),
            (_, None) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("operation {}: {ext} needs a value", n + 1),
                ))
            }
        }
        return Ok(());
    }
    let parsed = path.parse::<PatchPath>().map_err(|_| {
        ScimError::bad(
            "invalidPath",
            format!(
                "operation {}: `{}` is not a PATCH path",
                n + 1,
                crate::model::excerpt(path)
            ),
        )
    })?;
    let attr = match &parsed {
        PatchPath::Attr(a) => a,
        PatchPath::Value(vp) => &vp.attr,
    };
    if let Some(uri) = attr.uri.as_deref() {
        let core = uri.eq_ignore_ascii_case(USER_SCHEMA) || uri.eq_ignore_ascii_case(GROUP_SCHEMA);
        if !core && known_extension(uri).is_none() {
            return Err(ScimError::bad(
                "invalidPath",
                format!(
                    "operation {}: `{}` is not a schema this server has",
                    n + 1,
                    crate::model::excerpt(uri)
                ),
            ));
        }
    }
    match parsed {
        PatchPath::Attr(a) => match (op, value) {
            (Op::Remove, Some(Value::Array(items))) => {
                // Entra: {"op":"remove","path":"members","value":[{"value":"…"}]}
                if let Some(Value::Array(list)) = target(resource, &a, false) {
                    list.retain(|e| !items.iter().any(|i| same_value(e, i)));
                }
                Ok(())
            }
            (Op::Remove, _) => {
                remove(resource, &a);
                Ok(())
            }
            (_, Some(v)) => {
                set(resource, op, &a, v);
                Ok(())
            }
            (_, None) => Err(ScimError::bad(
                "invalidValue",
                format!("operation {}: {path} needs a value", n + 1),
            )),
        },
        PatchPath::Value(vp) => {
            let list = match target(resource, &vp.attr, op != Op::Remove) {
                Some(Value::Array(list)) => list,
                Some(_) => {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("operation {}: {} is not multi-valued", n + 1, vp.attr.name),
                    ))
                }
                None => return Ok(()),
            };
            let hits: Vec<usize> = list
                .iter()
                .enumerate()
                .filter(|(_, e)| val_matches(&vp.filter, e))
                .map(|(i, _)| i)
                .collect();
            match (op, vp.sub_attr.as_deref(), value) {
                (Op::Remove, None, _) => {
                    let mut i = 0;
                    list.retain(|_| {
                        i += 1;
                        !hits.contains(&(i - 1))
                    });
                }
                (Op::Remove, Some(sub), _) => {
                    for i in hits {
                        if let Some(Value::Object(o)) = list.get_mut(i) {
                            o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                        }
                    }
                }
                (_, sub, Some(v)) => {
                    if hits.is_empty() {
                        // A first `emails[type eq "work"].value`: create it.
                        let mut elem = seed(&vp.filter);
                        match sub {
                            Some(sub) => {
                                elem.insert(sub.to_string(), v);
                            }
                            None => {
                                if let Value::Object(o) = v {
                                    elem.extend(o);
                                }
                            }
                        }
                        list.push(Value::Object(elem));
                        return Ok(());
                    }
                    for i in hits {
                        let Some(e) = list.get_mut(i) else { continue };
                        match sub {
                            Some(sub) => {
                                if let Value::Object(o) = e {
                                    put(o, sub, v.clone());
                                }
                            }
                            None => *e = v.clone(),
                        }
                    }
                }
                (_, _, None) => {
                    return Err(ScimError::bad(
                        "invalidValue",
                        format!("operation {}: {path} needs a value", n + 1),
                    ))
                }
            }
            Ok(())
        }
    }
}

/// The element a `type eq "work"` filter describes, to create it.
fn seed(f: &ValFilter) -> Map<String, Value> {
    let mut m = Map::new();
    let mut add = |f: &ValFilter| {
        if let ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) = f {
            let v = match v {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => Value::Null,
            };
            m.insert(p.name.clone(), v);
        }
    };
    match f {
        ValFilter::And(fs) => fs.iter().for_each(&mut add),
        f => add(f),
    }
    m
}

/// Same member, by `value` when both are complex.
fn same_value(a: &Value, b: &Value) -> bool {
    match (
        super::filter::member(a, "value"),
        super::filter::member(b, "value"),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Inserts or replaces `name` in `o`, matching an existing key's case.
fn put(o: &mut Map<String, Value>, name: &str, v: Value) {
    let key = o
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string());
    o.insert(key, v);
}

/// The object holding `path`'s attribute: the resource, or an extension
/// object in it (created when `create`).
fn container<'a>(
    resource: &'a mut Value,
    path: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let root = resource.as_object_mut()?;
    match path.uri.as_deref() {
        None => Some(root),
        Some(u) if u.eq_ignore_ascii_case(USER_SCHEMA) || u.eq_ignore_ascii_case(GROUP_SCHEMA) => {
            Some(root)
        }
        Some(u) => {
            let name = known_extension(u).unwrap_or(u).to_string();
            let key = root.keys().find(|k| k.eq_ignore_ascii_case(&name)).cloned();
            let key = match key {
                Some(k) => k,
                None if create => {
                    root.insert(name.clone(), Value::Object(Map::new()));
                    name
                }
                None => return None,
            };
            root.get_mut(&key)?.as_object_mut()
        }
    }
}

/// The attribute `path` names (its sub-attribute if it has one).
fn target<'a>(resource: &'a mut Value, path: &AttrPath, create: bool) -> Option<&'a mut Value> {
    let c = container(resource, path, create)?;
    let key = c
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&path.name))
        .cloned();
    let key = match key {
        Some(k) => k,
        None if create => {
            let fresh = match path.sub_attr {
                Some(_) => Value::Object(Map::new()),
                None => Value::Array(Vec::new()),
            };
            c.insert(path.name.clone(), fresh);
            path.name.clone()
        }
        None => return None,
    };
    let attr = c.get_mut(&key)?;
    match &path.sub_attr {
        None => Some(attr),
        Some(sub) => {
            let o = attr.as_object_mut()?;
            let k = o.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned();
            match k {
                Some(k) => o.get_mut(&k),
                None if create => {
                    o.insert(sub.clone(), Value::Null);
                    o.get_mut(sub)
                }
                None => None,
            }
        }
    }
}

fn set(resource: &mut Value, op: Op, path: &AttrPath, v: Value) {
    let Some(c) = container(resource, path, true) else {
        return;
    };
    let key = c
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&path.name))
        .cloned()
        .unwrap_or_else(|| path.name.clone());
    let slot = c.entry(key).or_insert(Value::Null);
    if let Some(sub) = &path.sub_attr {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Value::Object(o) = slot {
            put(o, sub, v);
        }
        return;
    }
    match (op, slot, v) {
        // add to a multi-valued attribute appends what is not there yet.
        (Op::Add, Value::Array(list), Value::Array(new)) => {
            for item in new {
                if !list.iter().any(|e| same_value(e, &item)) {
                    list.push(item);
                }
            }
        }
        // add or replace of a complex attribute merges its sub-attributes
        // (Entra replaces `name` with only the part that changed).
        (_, Value::Object(old), Value::Object(new)) => {
            for (k, val) in new {
                put(old, &k, val);
            }
        }
        (_, slot, v) => *slot = v,
    }
}

fn remove(resource: &mut Value, path: &AttrPath) {
    let Some(c) = container(resource, path, false) else {
        return;
    };
    match &path.sub_attr {
        None => c.retain(|k, _| !k.eq_ignore_ascii_case(&path.name)),
        Some(sub) => {
            let key = c
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&path.name))
                .cloned();
            if let Some(Value::Object(o)) = key.and_then(|k| c.get_mut(&k)) {
                o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
        }
    }
}
