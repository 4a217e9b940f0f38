use super::*;

#[test]
fn gentime_round_trip() {
    let t = parse_gentime("20261123101500Z").unwrap();
    assert_eq!(format_gentime(t), "20261123101500Z");
    assert_eq!(parse_gentime("19700101000000Z"), Some(0));
    assert_eq!(
        parse_gentime("20240229235959.5Z"),
        parse_gentime("20240229235959Z")
    );
    assert_eq!(format_gentime(t - 600), "20261123100500Z");
    assert_eq!(parse_gentime("2026112310Z"), None);
    assert_eq!(parse_gentime("20261323101500Z"), None);
}

#[test]
fn times_show_as_rfc3339_utc() {
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    let t = parse_gentime("20261130091502Z").unwrap();
    assert_eq!(format_rfc3339(t), "2026-11-30T09:15:02Z");
    assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
}
