use super::digest_hashes;

#[test]
fn ha1_matches_rfc2617_definition() {
    // HA1 for user "Mufasa", realm "testrealm@host.com", password
    // "Circle Of Life" (RFC 2617 §3.5) is 939e7578ed9e3c518a452acee763bce9.
    let (ha1, _) = digest_hashes("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
    let (_, ha1b) = digest_hashes("2000", "acme.example", "s");
    let (expect, _) = digest_hashes("2000@acme.example", "acme.example", "s");
    assert_eq!(ha1b, expect);
}
