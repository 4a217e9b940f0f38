use super::*;

#[test]
fn dns_compare_after_unescaping() {
    assert_eq!(
        norm_dn("cn=x)(uid\\3D*, OU=Groups,dc=example"),
        norm_dn("CN=x)(uid=*,ou=groups,DC=example")
    );
    assert_eq!(norm_dn("cn=a\\,b,dc=x"), norm_dn("cn=a\\2Cb,dc=x"));
    // The plain-DN shortcut folds exactly as the full walk does.
    for dn in [
        "uid=Ann,OU=People,dc=example",
        "CN=x)(uid=*,ou=groups,DC=example",
        "a,b=c=d",
        "cn=a=b,dc=x",
        "=a",
        "cn=,dc=x",
        "cn=a,",
        "cn=a\tb,dc=x",
        "cn=Ann Lee , ou=x",
        "cn=a+sn=b,dc=x",
        "cn=Åsa,dc=x",
        "cn=#41,dc=x",
    ] {
        assert_eq!(norm_dn(dn), norm_dn_escaped(dn), "{dn}");
    }
    assert_ne!(norm_dn("cn=a\\,b,dc=x"), norm_dn("cn=a,cn=b,dc=x"));
}

#[test]
fn cn_of_undoes_escapes() {
    assert_eq!(
        cn_of("CN=Sales,OU=Groups,DC=acme").as_deref(),
        Some("Sales")
    );
    assert_eq!(
        cn_of("cn=Smith\\, J+uid=x,ou=g").as_deref(),
        Some("Smith, J")
    );
    assert_eq!(cn_of("CN=Caf\\c3\\a9,DC=x").as_deref(), Some("Café"));
    assert_eq!(cn_of("CN=R\\+D,OU=g").as_deref(), Some("R+D"));
    assert_eq!(cn_of("OU=Sales,DC=acme"), None);
    assert_eq!(cn_of("Sales"), None);
}
