use super::*;

#[test]
fn tags_table() {
    // (email, password, pin) -> tags
    type Case = ((bool, bool, bool), &'static [&'static str]);
    let cases: &[Case] = &[
        ((true, false, false), &["New", "Password Required"]),
        (
            (false, false, false),
            &["Setup Required", "Password Required"],
        ),
        ((true, true, false), &[]),
        ((true, false, true), &["Password Required"]),
        ((false, true, true), &["Setup Required"]),
    ];
    for ((e, p, n), want) in cases {
        assert_eq!(tags(*e, *p, *n), *want, "{e} {p} {n}");
    }
}

#[test]
fn secrets_are_128_bits_and_differ() {
    let (a, b) = (new_secret(), new_secret());
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn hex_string_is_lower_case_hex() {
    assert_eq!(hex_string(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    assert_eq!(hex_string(&[]), "");
    let s = new_secret();
    assert!(s
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
}

/// 12 hex digits of microseconds (the low 48 bits), 6 of a counter, 32 random: values made
/// one after the other sort in the order they were made.
#[test]
fn sortable_secrets_sort_by_creation() {
    let made: Vec<String> = (0..1000).map(|_| sortable_secret()).collect();
    for s in &made {
        assert_eq!(s.len(), 50);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        & 0xffff_ffff_ffff;
    let first = u64::from_str_radix(&made[0][..12], 16).expect("hex");
    assert!(
        first <= micros && micros - first < 60_000_000,
        "{first} vs {micros}"
    );
    for w in made.windows(2) {
        assert!(w[0][..18] < w[1][..18], "{} then {}", w[0], w[1]);
    }
}
