//! Discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`. The PBX extension schema is published here so that Entra's
//! attribute mapping and Okta's profile editor can find its attributes.

use super::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, MAX_PAGE, PBX_SCHEMA, USER_SCHEMA};
use serde_json::{json, Value};

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "file:///usr/share/doc/pbx-onboard/README.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token from the source's token_file, as `Authorization: Bearer TOKEN`",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A PBX user: a person, with their extension and phone device",
            "schema": USER_SCHEMA,
            "schemaExtensions": [
                {"schema": ENTERPRISE_SCHEMA, "required": false},
                {"schema": PBX_SCHEMA, "required": false},
            ],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A group whose members the mapping rules see (group = \"…\")",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

fn attr(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": false, "description": description,
        "required": false, "caseExact": false, "mutability": "readWrite",
        "returned": "default", "uniqueness": "none",
    })
}

fn complex(name: &str, multi: bool, description: &str, subs: Vec<Value>) -> Value {
    json!({
        "name": name, "type": "complex", "multiValued": multi, "description": description,
        "required": false, "mutability": "readWrite", "returned": "default",
        "subAttributes": subs,
    })
}

fn schema(id: &str, name: &str, description: &str, attributes: Vec<Value>, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id, "name": name, "description": description, "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// Suggested values (RFC 7643 §7): clients offer them in pickers.
fn canonical(mut a: Value, values: &[&str]) -> Value {
    if let Some(o) = a.as_object_mut() {
        o.insert("canonicalValues".into(), json!(values));
    }
    a
}

/// The schemas this server reads, with the domain's site names as the
/// canonical values of `site`. Core attributes it does not use are still
/// accepted and returned as sent.
pub fn schemas(base: &str, sites: &[&str]) -> Vec<Value> {
    let scopes: Vec<&str> = crate::model::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let mut group_name = attr(
        "displayName",
        "string",
        "Mapping rules match it (group = \"…\")",
    );
    if let Some(o) = group_name.as_object_mut() {
        o.insert("required".into(), json!(true));
    }
    let mut user_name = attr(
        "userName",
        "string",
        "Unique, case-insensitively, per source",
    );
    if let Some(o) = user_name.as_object_mut() {
        o.insert("required".into(), json!(true));
        o.insert("uniqueness".into(), json!("server"));
    }
    // The PBX assigns the extension (readOnly); a value sent with the
    // create is taken as a request, as a CSV row's extension column is.
    let mut ext = attr(
        "extension",
        "string",
        "The PBX extension, from the numbering plan; a create may ask for one. Never changes",
    );
    if let Some(o) = ext.as_object_mut() {
        o.insert("mutability".into(), json!("readOnly"));
    }
    let typed = |name: &str, d: &str| {
        complex(
            name,
            true,
            d,
            vec![
                attr("value", "string", "The value"),
                attr("type", "string", "work, home, other"),
                attr("primary", "boolean", "The primary value"),
            ],
        )
    };
    vec![
        schema(
            USER_SCHEMA,
            "User",
            "User Account",
            vec![
                user_name,
                complex(
                    "name",
                    false,
                    "The person's name",
                    vec![
                        attr("givenName", "string", "First name"),
                        attr(
                            "familyName",
                            "string",
                            "Last name (needed unless require_last_name = false)",
                        ),
                        attr("formatted", "string", "Kept as sent"),
                    ],
                ),
                attr("displayName", "string", "Kept as sent"),
                attr("title", "string", "Job title; mapping rules may match it"),
                attr(
                    "active",
                    "boolean",
                    "false disables the PBX user and its devices",
                ),
                typed("emails", "Welcome emails go to the primary one"),
                typed(
                    "phoneNumbers",
                    "type work: the caller ID, when in the inventory",
                ),
                attr("externalId", "string", "The id the PBX user is kept under"),
            ],
            base,
        ),
        schema(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            vec![
                attr("employeeNumber", "string", "Kept as sent"),
                attr(
                    "department",
                    "string",
                    "The PBX department; mapping rules may match it",
                ),
                attr("organization", "string", "Kept as sent"),
            ],
            base,
        ),
        schema(
            PBX_SCHEMA,
            "PbxUser",
            "What the PBX needs beyond the core schema",
            vec![
                ext,
                canonical(
                    attr("site", "string", "A configured site of the domain"),
                    sites,
                ),
                canonical(
                    attr("scope", "string", "What the user may do in the portal"),
                    &scopes,
                ),
                attr("voicemail", "boolean", "Whether the user has voicemail"),
                canonical(
                    attr("device", "string", "The phone device"),
                    &["sip", "web", "none"],
                ),
                attr(
                    "forceLogin",
                    "boolean",
                    "A Web device rings only while its user is logged in to the portal",
                ),
            ],
            base,
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            "Group",
            vec![
                group_name,
                complex(
                    "members",
                    true,
                    "Users in the group",
                    vec![
                        attr("value", "string", "A User id"),
                        attr("display", "string", "Kept as sent"),
                    ],
                ),
            ],
            base,
        ),
    ]
}
