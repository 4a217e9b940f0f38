use super::*;
use serde_json::json;

fn bjensen() -> serde_json::Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "2819c223",
        "externalId": "E1001",
        "userName": "BJensen@Example.com",
        "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "babs@home.example", "type": "home"},
            {"value": "bjensen@example.com", "type": "work", "primary": true}
        ],
        "active": true,
        ENTERPRISE_SCHEMA: {"department": "Support", "employeeNumber": "701984"},
        PBX_SCHEMA: {"extension": "2001", "site": "HQ"},
    })
}

#[test]
fn filters_match_as_rfc_7644_says() {
    let u = bjensen();
    let cases = [
        (r#"userName eq "bjensen@example.com""#, true), // userName is not caseExact
        (r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#, true),
        (r#"externalId eq "E1001""#, true),
        (r#"externalId eq "e1001""#, false), // externalId is caseExact
        (r#"id eq "2819c223""#, true),
        (r#"displayName sw "Babs""#, true),
        (r#"emails.value eq "bjensen@example.com""#, true),
        (r#"emails eq "babs@home.example""#, true),
        (
            r#"emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (r#"emails[type eq "other"]"#, false),
        ("title pr", false),
        ("name.familyName pr", true),
        (r#"userName eq "x" or externalId eq "E1001""#, true),
        (r#"userName eq "x" and externalId eq "E1001""#, false),
        (r#"not (userName eq "x")"#, true),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "support""#,
            true,
        ),
        ("active eq true", true),
        (r#"userName ne "bjensen@example.com""#, false),
        // Unquoted values, as some clients send them.
        ("userName eq bjensen@example.com", true),
        ("externalId eq E1001 and active eq true", true),
    ];
    for (text, want) in cases {
        let f = filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(filter::matches(&f, &u), want, "{text}");
    }
}

#[test]
fn bad_filters_are_invalid_filter_never_everyone() {
    for text in [
        "userName",
        "userName eq",
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"userName eq "unterminated"#,
        "",
    ] {
        let e = filter::parse(text).expect_err(text);
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some("invalidFilter")),
            "{text}"
        );
    }
    let long = format!(r#"userName eq "{}""#, "a".repeat(5000));
    let e = filter::parse(&long).expect_err("long");
    assert!(e.detail.len() < 200, "{}", e.detail);
}

fn patch(ops: serde_json::Value) -> serde_json::Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

#[test]
fn entra_patch_quirks_apply() {
    let mut u = bjensen();
    patch::apply(
        &mut u,
        &patch(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "value": {
                "name.givenName": "Babs",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
                "title": "Lead"
            }},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
            {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+15550100105"},
        ])),
    )
    .expect("patch");
    user::normalise(&mut u).expect("normalise");
    assert_eq!(u["active"], json!(false));
    assert_eq!(u["name"]["givenName"], "Babs");
    assert_eq!(u["name"]["familyName"], "Jensen");
    assert_eq!(u[ENTERPRISE_SCHEMA]["department"], "Sales");
    assert_eq!(u[ENTERPRISE_SCHEMA]["employeeNumber"], "701984");
    assert_eq!(u["emails"][1]["value"], "babs@example.com");
    assert_eq!(
        u["phoneNumbers"][0],
        json!({"type": "work", "value": "+15550100105"})
    );
    let r = user::record(&u, "2819c223", vec![], "scim:t".into()).expect("record");
    assert_eq!(r.status, crate::model::SourceStatus::Left);
    assert_eq!(r.caller_id.as_deref(), Some("+15550100105"));
    assert_eq!(
        r.emails.first().map(String::as_str),
        Some("babs@example.com")
    );
}

#[test]
fn okta_patch_quirks_apply() {
    let mut u = bjensen();
    patch::apply(
        &mut u,
        &patch(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .expect("patch");
    assert_eq!(u["active"], json!(false));
    let mut g = json!({"displayName": "Support Agents", "members": []});
    patch::apply(
        &mut g,
        &patch(json!([
            {"op": "replace", "value": {"id": "g1", "displayName": "Support Team"}},
            {"op": "add", "path": "members", "value": [{"value": "u1", "$ref": null}, {"value": "u2"}]},
            {"op": "add", "path": "members", "value": [{"value": "u1"}]},
        ])),
    )
    .expect("patch");
    assert_eq!(g["displayName"], "Support Team");
    assert_eq!(resource::member_ids(&g), ["u1", "u2"]);
}

#[test]
fn member_removal_both_ways() {
    let mut g = json!({"members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}]});
    patch::apply(
        &mut g,
        &patch(json!([
            {"op": "Remove", "path": "members[value eq \"u1\"]"},
            {"op": "remove", "path": "members", "value": [{"value": "u3"}]},
            {"op": "remove", "path": "members[value eq \"gone\"]"},
        ])),
    )
    .expect("patch");
    assert_eq!(resource::member_ids(&g), ["u2"]);
}

#[test]
fn bad_patches_name_the_problem() {
    let mut u = bjensen();
    let cases = [
        (json!({"Operations": []}), "invalidSyntax"),
        (
            patch(json!([{"op": "frobnicate", "path": "title", "value": "x"}])),
            "invalidSyntax",
        ),
        (patch(json!([{"op": "remove"}])), "noTarget"),
        (
            patch(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])),
            "invalidPath",
        ),
        (
            patch(json!([{"op": "replace", "value": "not an object"}])),
            "invalidValue",
        ),
    ];
    for (body, want) in cases {
        let e = patch::apply(&mut u, &body).expect_err(&body.to_string());
        assert_eq!(e.scim_type, Some(want), "{body}: {e}");
    }
}

#[test]
fn a_user_becomes_a_staff_record() {
    let u = bjensen();
    let r = user::record(
        &u,
        "2819c223",
        vec!["Support Agents".into()],
        "scim:t".into(),
    )
    .expect("record");
    assert_eq!(r.source_id, "E1001");
    assert_eq!(r.first_name.as_deref(), Some("Barbara"));
    assert_eq!(r.last_name.as_deref(), Some("Jensen"));
    assert_eq!(r.emails, ["bjensen@example.com", "babs@home.example"]);
    assert_eq!(r.department.as_deref(), Some("Support"));
    assert_eq!(r.extension.as_deref(), Some("2001"));
    assert_eq!(r.site.as_deref(), Some("HQ"));
    assert_eq!(r.groups, ["Support Agents"]);
    assert_eq!(r.status, crate::model::SourceStatus::Active);
    // Without externalId, the server's id is the source id.
    let mut no_ext = u.clone();
    no_ext.as_object_mut().map(|o| o.remove("externalId"));
    let r = user::record(&no_ext, "2819c223", vec![], "scim:t".into()).expect("record");
    assert_eq!(r.source_id, "2819c223");
    // A device that is not sip, web or none.
    let mut bad = u;
    bad[PBX_SCHEMA]["device"] = json!("fax");
    let e = user::record(&bad, "x", vec![], "scim:t".into()).expect_err("fax");
    assert_eq!(e.scim_type, Some("invalidValue"));
}

#[test]
fn active_strings_and_passwords_are_normalised() {
    let mut u = json!({"userName": "a", "active": "True", "password": "hunter2"});
    user::normalise(&mut u).expect("normalise");
    assert_eq!(u["active"], json!(true));
    assert!(u.get("password").is_none());
    let mut bad = json!({"userName": "a", "active": "maybe"});
    assert_eq!(
        user::normalise(&mut bad).expect_err("maybe").scim_type,
        Some("invalidValue")
    );
}

#[test]
fn paging_and_if_match() {
    assert_eq!(resource::paging(None, None, 1000).expect("p"), (1, 100));
    assert_eq!(
        resource::paging(Some("0"), Some("-5"), 1000).expect("p"),
        (1, 0)
    );
    assert_eq!(
        resource::paging(Some("3"), Some("5000"), 1000).expect("p"),
        (3, 1000)
    );
    assert!(resource::paging(Some("x"), None, 1000).is_err());
    assert!(resource::check_if_match(Some("W/\"3\""), 3).is_ok());
    assert!(resource::check_if_match(Some("*"), 3).is_ok());
    assert_eq!(
        resource::check_if_match(Some("W/\"2\""), 3)
            .expect_err("stale")
            .status,
        412
    );
    let p = resource::project(bjensen(), Some("userName"), None);
    assert_eq!(p.as_object().map(|o| o.len()), Some(3)); // id, schemas, userName
    let p = resource::project(
        json!({"id": "g", "displayName": "x", "members": []}),
        None,
        Some("members"),
    );
    assert!(p.get("members").is_none() && p.get("displayName").is_some());
}
