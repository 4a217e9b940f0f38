use super::*;
use crate::model::{Field, Scope};
use std::path::Path;

const GOOD: &str = r#"
[store]
url = "sqlite://var/pbx.db"
[limits]
writes_per_second = 0
burst = 5
[[domain]]
name = "acme.example"
numbering = ["1000-8999"]
reserved = ["0", "411", "611", "911", "933"]
numbers = ["+15550100100-+15550100199"]
[[domain.site]]
name = "HQ"
numbering = ["2000-2999"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
department = "Support"
[[source]]
name = "hr-drop"
kind = "csv"
domain = "acme.example"
inbox = "var/inbox"
aliases = { employee_id = ["Staff No"] }
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/etc/pbx/pbx.toml"))
}

#[test]
fn good_config_resolves_paths() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.store.url, "sqlite:///etc/pbx/var/pbx.db");
    assert!(c.limits.writes_per_second.is_none());
    let SourceKind::Csv(csv) = &c.sources[0].kind else {
        panic!("a csv source")
    };
    assert_eq!(csv.inbox, PathBuf::from("/etc/pbx/var/inbox"));
    assert_eq!(c.domains[0].numbers.len(), 100);
    assert_eq!(c.rules[0].scope, Some(Scope::CallCenterAgent));
    assert_eq!(
        c.mail.transport,
        MailTransport::Folder(PathBuf::from("/etc/pbx/var/mail"))
    );
}

const LDAP: &str = r#"
[[source]]
name = "corp-ad"
kind = "ldap"
domain = "acme.example"
profile = "active_directory"
url = ["ldaps://dc1.acme.example:636", "ldaps://dc2.acme.example:636"]
ca_file = "ad-ca.pem"
bind_dn = "svc-pbx@acme.example"
bind_password_env = "PBX_LDAP_PASSWORD"
base_dn = "OU=Staff,DC=acme,DC=example"
group = "CN=PBX Users,OU=Groups,DC=acme,DC=example"
filter = "(department=*)"
full_sync_every = "6h"
attributes = { extension = "ipPhone", email = ["mail", "proxyAddresses"] }
"#;

#[test]
fn ldap_source_is_checked() {
    let c = load(&format!("{GOOD}{LDAP}")).unwrap();
    let SourceKind::Ldap(l) = &c.sources[1].kind else {
        panic!("an ldap source")
    };
    assert_eq!(l.tls, LdapTls::Ldaps);
    assert_eq!(l.urls.len(), 2);
    assert_eq!(l.ca_file, Some(PathBuf::from("/etc/pbx/ad-ca.pem")));
    assert_eq!(l.group_base_dn, "DC=acme,DC=example");
    assert_eq!(l.page_size, 500);
    assert_eq!(l.attributes.get(Field::Extension), ["ipPhone"]);
    assert_eq!(
        l.attributes.get(Field::Site),
        ["physicalDeliveryOfficeName"]
    );
    assert_eq!(
        l.bind_password,
        Some(Secret::Env("PBX_LDAP_PASSWORD".into()))
    );
    let cases = [
        (
            "profile = \"active_directory\"",
            "profile = \"ad\"",
            "source.profile",
        ),
        (
            "ldaps://dc2.acme.example:636\"]",
            "ldap://dc2.acme.example:636\"]",
            "source.url",
        ),
        ("ca_file", "tls = \"starttls\"\nca_file", "source.url"),
        ("(department=*)", "department=*", "source.filter"),
        ("(department=*)", "(department=*", "source.filter"),
        ("\"6h\"", "\"6 hours\"", "source.full_sync_every"),
        (
            "bind_password_env = \"PBX_LDAP_PASSWORD\"\n",
            "",
            "source.bind_dn",
        ),
        (
            "extension = \"ipPhone\"",
            "extension = \"ip)(Phone\"",
            "source.attributes",
        ),
        (
            "extension = \"ipPhone\"",
            "status = \"x\"",
            "source.attributes",
        ),
        ("base_dn", "inbox = \"x\"\nbase_dn", "source.inbox"),
    ];
    for (from, to, key) in cases {
        let text = format!("{GOOD}{}", LDAP.replace(from, to));
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{from} -> {to}: {err}");
    }
    // Plain text needs saying so.
    let plain = LDAP
        .replace("ldaps://dc1.acme.example:636", "ldap://dc1.acme.example")
        .replace("ldaps://dc2.acme.example:636", "ldap://dc2.acme.example");
    let c = load(&format!("{GOOD}{plain}")).unwrap();
    let SourceKind::Ldap(l) = &c.sources[1].kind else {
        panic!("an ldap source")
    };
    assert_eq!(l.tls, LdapTls::StartTls);
    let c = load(&format!(
        "{GOOD}{}",
        plain.replace("ca_file", "tls = \"none\"\nca_file")
    ))
    .unwrap();
    let SourceKind::Ldap(l) = &c.sources[1].kind else {
        panic!("an ldap source")
    };
    assert_eq!(l.tls, LdapTls::None);
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = GOOD.replace("burst = 5", "burst = 5\nburts = 6");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("burts") && err.contains("line 7"), "{err}");
}

#[test]
fn bad_values_name_key_and_line() {
    let cases = [
        (
            "numbering = [\"1000-8999\"]",
            "numbering = [\"8999-1000\"]",
            "domain.numbering",
            9,
        ),
        ("burst = 5", "burst = 0", "limits.burst", 6),
        (
            "scope = \"Call Center Agent\"",
            "scope = \"Wizard\"",
            "mapping.rule.scope",
            17,
        ),
        (
            "domain = \"acme.example\"\ninbox",
            "domain = \"nope.example\"\ninbox",
            "source.domain",
            22,
        ),
        (
            "[\"2000-2999\"]",
            "[\"9000-9100\"]",
            "domain.site.numbering",
            14,
        ),
    ];
    for (from, to, key, line) in cases {
        let text = GOOD.replace(from, to);
        match load(&text) {
            Err(ConfigError::Invalid {
                key: k, line: l, ..
            }) => {
                assert_eq!((k.as_str(), l), (key, line), "{to}");
            }
            other => panic!("{to}: expected Invalid, got {other:?}"),
        }
    }
}

const SMTP: &str = r#"
[mail]
transport = "smtp"
host = "mail.acme.example"
from = "PBX <pbx@acme.example>"
link_base_url = "https://pbx.acme.example/"
admin_report_to = ["it@acme.example"]
username = "pbx"
password_env = "PBX_SMTP_PASSWORD"
[web]
password_min_length = 12
"#;

#[test]
fn mail_and_web_defaults_and_smtp() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.mail.link_base_url, "http://127.0.0.1:8480");
    assert_eq!(c.mail.link_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(c.mail.max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(c.mail.link_key_file, PathBuf::from("/etc/pbx/var/link.key"));
    assert_eq!(c.web.password_min_length, 15);
    assert_eq!(c.web.pin_min_length, 6);
    let c = load(&format!("{GOOD}{SMTP}")).unwrap();
    let MailTransport::Smtp(s) = &c.mail.transport else {
        panic!("smtp")
    };
    assert_eq!(
        (s.port, s.tls),
        (587, SmtpTls::StartTls),
        "STARTTLS by default"
    );
    assert_eq!(s.password, Some(Secret::Env("PBX_SMTP_PASSWORD".into())));
    assert_eq!(
        c.mail.link_base_url, "https://pbx.acme.example",
        "no trailing slash"
    );
    assert_eq!(c.mail.admin_report_to.len(), 1);
    assert_eq!(c.web.password_min_length, 12);
    let c = load(&format!(
        "{GOOD}{}",
        SMTP.replace("host =", "tls = \"tls\"\nhost =")
    ))
    .unwrap();
    let MailTransport::Smtp(s) = &c.mail.transport else {
        panic!("smtp")
    };
    assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
}

#[test]
fn bad_mail_and_web_values_name_the_key() {
    let cases = [
        ("host =", "tls = \"ssl\"\nhost =", "mail.tls"),
        (
            "https://pbx.acme.example/",
            "ftp://pbx",
            "mail.link_base_url",
        ),
        ("PBX <pbx@acme.example>", "not an address", "mail.from"),
        (
            "[\"it@acme.example\"]",
            "[\"it(at)acme\"]",
            "mail.admin_report_to",
        ),
        ("password_env = \"PBX_SMTP_PASSWORD\"", "", "mail.username"),
        (
            "password_env",
            "password_file = \"/run/credentials/pbx/smtp\"\npassword_env",
            "mail.password_file",
        ),
        ("host =", "pool_size = 0\nhost =", "mail.pool_size"),
        ("host =", "link_ttl = \"soon\"\nhost =", "mail.link_ttl"),
        ("host =", "lease_seconds = 1\nhost =", "mail.lease_seconds"),
        (
            "password_min_length = 12",
            "password_min_length = 6",
            "web.password_min_length",
        ),
        (
            "password_min_length = 12",
            "pin_min_length = 3",
            "web.pin_min_length",
        ),
    ];
    for (from, to, key) in cases {
        let text = format!("{GOOD}{}", SMTP.replace(from, to));
        match load(&text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{to}"),
            other => panic!("{to}: expected Invalid {key}, got {other:?}"),
        }
    }
    let no_host = format!(
        "{GOOD}{}",
        SMTP.replace("host = \"mail.acme.example\"\n", "")
    );
    assert!(load(&no_host).is_err(), "smtp needs a host");
}
