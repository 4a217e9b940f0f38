//! SCIM 2.0 (RFC 7643, RFC 7644), the pure part: filters, PATCH
//! documents, the mapping of a User resource to a `StaffRecord`, the
//! discovery documents, and SCIM error bodies. No I/O: the HTTP handlers and
//! the runs they start are in `sync::scim`, the resources' table in
//! `store::scim`.
//!
//! Filters and PATCH paths are parsed by the `scim_v2` crate (an RFC 7644
//! grammar with depth and size limits); [`filter`] puts a tolerant pass in
//! front of it for what real clients send (unquoted values) and evaluates the
//! parsed filter against stored JSON. Resources are kept as the JSON the
//! client sent, so attributes the PBX does not use come back on GET as sent.

pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod user;

#[cfg(test)]
mod tests;

pub use error::ScimError;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The PBX's own User extension: extension, site, scope, voicemail, device,
/// forceLogin.
pub const PBX_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:pbx:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The largest request body taken (a Group PATCH of 1,000 members is ~60 KB).
pub const MAX_BODY: usize = 1024 * 1024;
/// The largest page a list answers (RFC 7644 §3.4.2.4 lets the server cap it).
pub const MAX_PAGE: usize = 1000;
