//! SCIM error responses (RFC 7644 §3.12): an HTTP status, a `scimType` for
//! 400 and 409, and a detail that quotes input only in bounded length.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", scim_type.unwrap_or("error"))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        crate::model::bound(&mut detail, crate::report::MESSAGE_MAX);
        ScimError {
            status,
            scim_type,
            detail,
        }
    }
    /// 400 with a `scimType`: invalidFilter, invalidPath, invalidSyntax,
    /// invalidValue, mutability, noTarget, tooMany.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            404,
            None,
            format!("{what} `{}` not found", crate::model::excerpt(id)),
        )
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [super::ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, v.as_object_mut()) {
            obj.insert("scimType".into(), Value::String(t.into()));
        }
        v
    }
}
