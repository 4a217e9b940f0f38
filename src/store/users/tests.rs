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
