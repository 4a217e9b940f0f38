#[test]
fn redacts_passwords() {
    assert_eq!(
        super::redact_url("postgres://pbx:s3cret@db/pbx"),
        "postgres://pbx:***@db/pbx"
    );
    assert_eq!(
        super::redact_url("postgres://pbx@db/pbx"),
        "postgres://pbx@db/pbx"
    );
    assert_eq!(
        super::redact_url("sqlite:///var/x.db"),
        "sqlite:///var/x.db"
    );
}
