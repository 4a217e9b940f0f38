use super::*;

fn cfg(profile: LdapProfile) -> LdapSourceConfig {
    LdapSourceConfig::for_tests(profile)
}

fn mark(at: i64, m: &str) -> Option<ReadMark> {
    Some(ReadMark {
        at,
        marker: Some(m.into()),
        server: Some("ldap://dc1".into()),
    })
}

#[test]
fn full_when_never_read_or_too_old() {
    let c = cfg(LdapProfile::OpenLdap);
    assert_eq!(next_read(&c, &SourceState::default(), 1000), None);
    let st = SourceState {
        last_full: mark(0, "19700101000000Z"),
        ..Default::default()
    };
    assert_eq!(next_read(&c, &st, 6 * 3600), None);
    assert!(next_read(&c, &st, 6 * 3600 - 1).is_some());
}

#[test]
fn continues_from_the_newer_marker_with_overlap() {
    let c = cfg(LdapProfile::OpenLdap);
    let st = SourceState {
        last_full: mark(100, "20261123100000Z"),
        last_full_entries: Some(5),
        last_changed: mark(200, "20261123110000Z"),
    };
    assert_eq!(
        next_read(&c, &st, 300),
        Some(Since::Timestamp("20261123105000Z".into()))
    );
    let ad = cfg(LdapProfile::ActiveDirectory);
    let st = SourceState {
        last_full: mark(100, "500"),
        last_full_entries: Some(5),
        last_changed: mark(50, "400"),
    };
    assert_eq!(
        next_read(&ad, &st, 300),
        Some(Since::Usn(500, "ldap://dc1".into()))
    );
}
