use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21_600)));
    assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5_400)));
    assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("0h"), None);
    assert_eq!(parse_duration("6 hours"), None);
    assert_eq!(parse_duration("h"), None);
}

#[test]
fn suffix() {
    assert_eq!(
        suffix_of("OU=Staff,DC=acme,DC=example"),
        "DC=acme,DC=example"
    );
    assert_eq!(suffix_of("ou=people,dc=x"), "dc=x");
    assert_eq!(suffix_of("o=corp"), "o=corp");
}

#[test]
fn attribute_names() {
    assert!(valid_attr("telephoneNumber"));
    assert!(valid_attr("2.5.4.20"));
    assert!(!valid_attr("mail)(uid=*"));
    assert!(!valid_attr(""));
}
