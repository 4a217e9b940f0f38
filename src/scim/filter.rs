//! `filter=` (RFC 7644 §3.4.2.2): parsed by `scim_v2`, evaluated here
//! against a resource's JSON.
//!
//! In front of the strict grammar, one tolerance: a comparison value that
//! is not quoted (`userName eq bjensen@example.com`, as some clients and
//! hand-typed URLs send) is quoted before parsing. Anything the grammar then
//! refuses is a 400 `invalidFilter`, never "everyone".
//!
//! Matching follows RFC 7643's attribute characteristics where they matter:
//! attribute names are case-insensitive everywhere; string values compare
//! case-insensitively except `id` and `externalId` (caseExact); a
//! multi-valued attribute matches when any of its values does, and a complex
//! one without a sub-attribute compares its `value`.

use super::{ScimError, ENTERPRISE_SCHEMA, GROUP_SCHEMA, PBX_SCHEMA, USER_SCHEMA};
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;
use std::cmp::Ordering;

/// A filter longer than this is refused (Entra's longest are ~200 bytes).
const MAX_FILTER: usize = 4096;

const OPERATORS: [&str; 9] = ["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"];

/// Parses `filter=`.
pub fn parse(raw: &str) -> Result<Filter, ScimError> {
    if raw.len() > MAX_FILTER {
        return Err(ScimError::bad(
            "invalidFilter",
            format!("the filter is longer than {MAX_FILTER} bytes"),
        ));
    }
    let refuse = |e: &dyn std::fmt::Display| {
        ScimError::bad(
            "invalidFilter",
            format!(
                "`{}` is not a filter this server reads: {}",
                crate::model::excerpt(raw),
                crate::model::excerpt(&e.to_string())
            ),
        )
    };
    match raw.parse::<Filter>() {
        Ok(f) => Ok(f),
        Err(first) => match quote_bare_values(raw) {
            Some(quoted) if quoted != raw => quoted.parse::<Filter>().map_err(|_| refuse(&first)),
            _ => Err(refuse(&first)),
        },
    }
}

/// `userName eq bjensen` → `userName eq "bjensen"`: a bare word after a
/// comparison operator that is not `true`, `false`, `null` or a number.
/// `None` if the text has an unterminated quote.
fn quote_bare_values(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len() + 8);
    let mut tokens = Vec::new();
    let mut rest = raw;
    // Tokens: quoted strings whole, else runs of non-space.
    while !rest.is_empty() {
        let trimmed = rest.trim_start();
        let space = &rest[..rest.len() - trimmed.len()];
        if !space.is_empty() {
            tokens.push(space.to_string());
        }
        if trimmed.is_empty() {
            break;
        }
        let end = if trimmed.starts_with('"') {
            let mut escaped = false;
            let mut end = None;
            for (i, c) in trimmed.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end?
        } else {
            trimmed
                .find(|c: char| c.is_whitespace())
                .unwrap_or(trimmed.len())
        };
        tokens.push(trimmed[..end].to_string());
        rest = &trimmed[end..];
    }
    let mut after_operator = false;
    for t in tokens {
        if t.trim().is_empty() {
            out.push_str(&t);
            continue;
        }
        if after_operator {
            after_operator = false;
            // A closing bracket or parenthesis may be glued to the value.
            let core = t.trim_end_matches([')', ']']);
            let tail = &t[core.len()..];
            let literal = core.starts_with('"')
                || ["true", "false", "null"].contains(&core.to_ascii_lowercase().as_str())
                || core.parse::<f64>().is_ok();
            if literal || core.is_empty() {
                out.push_str(&t);
            } else {
                out.push('"');
                out.push_str(&core.replace('\\', "\\\\").replace('"', "\\\""));
                out.push('"');
                out.push_str(tail);
            }
            continue;
        }
        after_operator = OPERATORS.contains(&t.to_ascii_lowercase().as_str());
        out.push_str(&t);
    }
    Some(out)
}

/// Whether `resource` matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::Attr(e) => attr_matches(e, resource),
        Filter::ValuePath(vp) => elements(resource, &vp.attr)
            .iter()
            .any(|elem| val_matches(&vp.filter, elem)),
        Filter::Not(f) => !matches(f, resource),
        Filter::And(fs) => fs.iter().all(|f| matches(f, resource)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, resource)),
    }
}

/// A filter inside brackets: its paths are relative to one element.
pub fn val_matches(filter: &ValFilter, elem: &Value) -> bool {
    match filter {
        ValFilter::Attr(e) => attr_matches(e, elem),
        ValFilter::Not(f) => !val_matches(f, elem),
        ValFilter::And(fs) => fs.iter().all(|f| val_matches(f, elem)),
        ValFilter::Or(fs) => fs.iter().any(|f| val_matches(f, elem)),
    }
}

fn attr_matches(e: &AttrExp, resource: &Value) -> bool {
    match e {
        AttrExp::Present(path) => values(resource, path).iter().any(|v| present(v)),
        AttrExp::Comparison(path, op, value) => {
            let exact = case_exact(path);
            let found = values(resource, path);
            match op {
                // Not equal: no value of the attribute equals it.
                CompareOp::Ne => !found
                    .iter()
                    .any(|v| compare(v, &CompareOp::Eq, value, exact)),
                _ => found.iter().any(|v| compare(v, op, value, exact)),
            }
        }
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `id` and `externalId` are caseExact (RFC 7643 §3.1); the rest of what
/// filters name here is not.
fn case_exact(path: &AttrPath) -> bool {
    path.sub_attr.is_none()
        && (path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId"))
}

/// The object member named `name`, case-insensitively.
pub fn member<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The elements of the multi-valued attribute `path` names, as they are.
fn elements<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let container = match &path.uri {
        None => Some(resource),
        Some(uri) if is_core(uri) => Some(resource),
        Some(uri) => member(resource, uri),
    };
    match container.and_then(|c| member(c, &path.name)) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

/// The values `path` names in `resource`, flattened: each element of a
/// multi-valued attribute, and of a complex one its sub-attribute (or its
/// `value` when the filter names none).
pub fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let container = match &path.uri {
        None => Some(resource),
        Some(uri) if is_core(uri) => Some(resource),
        Some(uri) => member(resource, uri),
    };
    let Some(attr) = container.and_then(|c| member(c, &path.name)) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match attr {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|v| match (&path.sub_attr, v) {
            (Some(sub), Value::Object(_)) => member(v, sub),
            (Some(_), _) => None,
            (None, Value::Object(_)) => member(v, "value").or(Some(v)),
            (None, v) => Some(v),
        })
        .collect()
}

fn is_core(uri: &str) -> bool {
    uri.eq_ignore_ascii_case(USER_SCHEMA) || uri.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// An extension schema this server knows, case-insensitively, as spelled
/// here.
pub fn known_extension(uri: &str) -> Option<&'static str> {
    [ENTERPRISE_SCHEMA, PBX_SCHEMA]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(uri))
}

fn compare(v: &Value, op: &CompareOp, target: &CompValue, exact: bool) -> bool {
    let ordering = match (v, target) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = match exact {
                true => (a.clone(), b.clone()),
                false => (a.to_lowercase(), b.to_lowercase()),
            };
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        // Clients send booleans as strings ("True") and strings as numbers.
        (Value::Bool(a), CompValue::True) => Some(a.cmp(&true)),
        (Value::Bool(a), CompValue::False) => Some(a.cmp(&false)),
        (Value::String(a), CompValue::True) => Some(a.to_lowercase().as_str().cmp("true")),
        (Value::String(a), CompValue::False) => Some(a.to_lowercase().as_str().cmp("false")),
        (Value::Number(a), CompValue::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::Null, CompValue::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(o) = ordering else {
        return false;
    };
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
