use super::*;

fn cfg(profile: LdapProfile) -> LdapSourceConfig {
    LdapSourceConfig::for_tests(profile)
}

fn origin() -> Origin {
    Origin {
        location: Arc::from("ldap://127.0.0.1:389/ou=people,dc=example"),
        row: None,
        columns: Arc::new(HashMap::new()),
    }
}

fn entry(pairs: &[(&str, &[&str])]) -> Entry {
    Entry::new(
        "uid=ann,ou=people,dc=example".into(),
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        HashMap::new(),
    )
}

#[test]
fn group_values_are_escaped_in_filters() {
    let mut c = cfg(LdapProfile::ActiveDirectory);
    c.group = Some("CN=x)(objectClass=*,OU=G\\,DC=y".into());
    let f = person_filter(&c, None);
    assert_eq!(
        f,
        "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=x\\29\\28objectClass=\\2a,OU=G\\5c,DC=y))"
    );
    assert!(ldap3::parse_filter(&f).is_ok());
    // A stored marker is escaped too.
    let f = person_filter(
        &cfg(LdapProfile::OpenLdap),
        Some(&Since::Timestamp("2026*)(uid=*".into())),
    );
    assert!(
        f.ends_with("(modifyTimestamp>=2026\\2a\\29\\28uid=\\2a))"),
        "{f}"
    );
}

#[test]
fn changed_only_filters() {
    let mut c = cfg(LdapProfile::OpenLdap);
    c.filter = Some("(departmentNumber=*)".into());
    assert_eq!(
        person_filter(&c, Some(&Since::Timestamp("20261101000000Z".into()))),
        "(&(objectClass=person)(departmentNumber=*)(modifyTimestamp>=20261101000000Z))"
    );
    let c = cfg(LdapProfile::ActiveDirectory);
    assert!(
        person_filter(&c, Some(&Since::Usn(41, "ldap://dc1".into())))
            .ends_with("(uSNChanged>=42))")
    );
}

#[test]
fn object_guid_renders_like_ad() {
    let b = [
        0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    assert_eq!(render_binary_id(&b), "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(render_binary_id(&[1, 2]), "0102");
}

#[test]
fn object_guid_that_is_valid_utf8_is_still_rendered_from_its_bytes() {
    // ldap3 files any value that decodes as UTF-8 under the text attributes;
    // a GUID with a space or tab byte must not be trimmed or kept as text.
    let c = cfg(LdapProfile::ActiveDirectory);
    let raw = [0x20u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x09];
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let e = Entry::new(
        "CN=Bob,OU=Staff,DC=acme".into(),
        HashMap::from([
            ("objectGUID".to_string(), vec![text]),
            ("mail".to_string(), vec!["bob@acme.example".to_string()]),
        ]),
        HashMap::new(),
    );
    let r = to_record(&c, &origin(), &e, false, None).unwrap();
    assert_eq!(r.source_id, render_binary_id(&raw));
    assert_eq!(r.source_id, "03020120-0504-0706-0809-0a0b0c0d0e09");
}

#[test]
fn nested_groups_expand_both_ways_and_survive_cycles() {
    let mut g = GroupGraph::default();
    g.add(
        "cn=PBX,ou=groups,dc=example",
        [
            "cn=Sales,ou=groups,dc=example".to_string(),
            "uid=bob,ou=people,dc=example".into(),
        ],
    );
    g.add(
        "cn=Sales,ou=groups,dc=example",
        [
            "uid=ann, ou=people, dc=example".to_string(),
            "cn=PBX,ou=groups,dc=example".into(),
        ],
    );
    let m = g.members_of("CN=pbx,OU=groups,DC=example");
    assert!(m.contains("uid=ann,ou=people,dc=example"));
    assert!(m.contains("uid=bob,ou=people,dc=example"));
    assert_eq!(m.len(), 2);
    let groups = g.groups_of(&norm_dn("uid=ann, ou=People,dc=example"));
    let names: Vec<&str> = groups.iter().map(|p| &*p.shown).collect();
    assert_eq!(
        names,
        [
            "cn=Sales,ou=groups,dc=example",
            "cn=PBX,ou=groups,dc=example"
        ]
    );
}

#[test]
fn ad_entry_maps_fields_disabled_bit_and_proxy_addresses() {
    let mut c = cfg(LdapProfile::ActiveDirectory);
    c.attributes
        .0
        .insert(Field::Email, vec!["mail".into(), "proxyAddresses".into()]);
    let mut e = entry(&[
        ("givenName", &["Ann"]),
        ("SN", &["Lee"]),
        (
            "proxyAddresses",
            &[
                "smtp:old@acme.example",
                "X500:/o=x",
                "SMTP:ann@acme.example",
            ],
        ),
        ("telephoneNumber", &["2001"]),
        ("userAccountControl", &["514"]),
        ("memberOf", &["CN=Sales,OU=Groups,DC=acme"]),
    ]);
    e.bin.push(("objectGUID".into(), vec![vec![0u8; 16]]));
    let r = to_record(&c, &origin(), &e, false, None).unwrap();
    assert_eq!(r.source_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(r.last_name.as_deref(), Some("Lee"));
    assert_eq!(r.emails, ["ann@acme.example", "old@acme.example"]);
    assert_eq!(r.extension.as_deref(), Some("2001"));
    assert_eq!(r.status, SourceStatus::Left);
    assert_eq!(r.groups, ["CN=Sales,OU=Groups,DC=acme"]);
}

#[test]
fn entry_without_id_is_refused_with_its_dn() {
    let c = cfg(LdapProfile::OpenLdap);
    let e = entry(&[("givenName", &["Ann"])]);
    let err = to_record(&c, &origin(), &e, false, None).unwrap_err();
    assert!(
        err.message.contains("uid=ann,ou=people,dc=example"),
        "{}",
        err.message
    );
    assert_eq!(err.column.as_deref(), Some("entryUUID"));
}
