use super::*;

fn ranges(v: &[&str]) -> Vec<NumberRange> {
    v.iter().map(|s| NumberRange::parse(s).unwrap()).collect()
}

#[test]
fn parses_ranges() {
    assert_eq!(
        NumberRange::parse("1000-8999").unwrap(),
        NumberRange {
            start: 1000,
            end: 8999
        }
    );
    assert_eq!(
        NumberRange::parse(" 911 ").unwrap(),
        NumberRange {
            start: 911,
            end: 911
        }
    );
    for bad in ["", "9-1", "a-b", "10 00", "-5"] {
        assert!(NumberRange::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn allocates_lowest_free_skipping_reserved_and_taken() {
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [u64], &'a [u64]);
    let cases: &[Case] = &[
        // plan, reserved, taken, expected allocations (3)
        (&["1000-1005"], &[], &[], &[1000, 1001, 1002]),
        (&["1000-1005"], &["1001"], &[1000], &[1002, 1003, 1004]),
        (&["1000-1005"], &["1000-1003"], &[1004], &[1005]),
        (
            &["400-420"],
            &["411"],
            &[400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410],
            &[412, 413, 414],
        ),
        (&["2000-2001", "1000-1000"], &[], &[], &[1000, 2000, 2001]),
        (&["0-2"], &["0"], &[], &[1, 2]),
        // The store's numbers come unsorted, twice, around a reserved block.
        (
            &["1000-1010"],
            &["1003-1004"],
            &[1006, 1002, 1001, 1002, 1005],
            &[1000, 1007, 1008],
        ),
    ];
    for (plan, reserved, taken, expected) in cases {
        let mut a = Allocator::new(taken.iter().copied());
        let reserved = NumberSet::new(ranges(reserved));
        let got: Vec<u64> = (0..3)
            .filter_map(|_| a.allocate(&ranges(plan), &reserved))
            .collect();
        assert_eq!(
            &got, expected,
            "plan {plan:?} reserved {reserved:?} taken {taken:?}"
        );
    }
}

#[test]
fn requested_extension_checks() {
    let plan = ranges(&["1000-8999"]);
    let reserved = NumberSet::new(ranges(&["0", "911", "5000-5009"]));
    let ok = |s: &str| check_requested(&Extension::parse(s).unwrap(), &plan, &reserved);
    assert!(ok("1001").is_ok());
    assert!(ok("911").unwrap_err().contains("reserved"));
    assert!(ok("5005").unwrap_err().contains("reserved"));
    assert!(ok("9999").unwrap_err().contains("outside"));
    assert!(ok("jsmith").is_err());
}

#[test]
fn expands_inventory() {
    let v = expand_numbers("+15550100-+15550102").unwrap();
    let s: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
    assert_eq!(s, ["+15550100", "+15550101", "+15550102"]);
    assert_eq!(expand_numbers("+442071234567").unwrap().len(), 1);
    assert!(expand_numbers("+15550102-+15550100").is_err());
}

#[test]
fn requests_cannot_take_the_stores_numbers_and_release_only_their_own() {
    let mut a = Allocator::new([1001, 1000]);
    assert!(!a.take(1000) && a.is_taken(1000), "a stored user's number");
    assert!(a.take(1002) && !a.take(1002) && a.is_taken(1002));
    a.release(1002);
    a.release(1000);
    assert!(
        !a.is_taken(1002) && a.is_taken(1000),
        "release frees requests only"
    );
    let none = NumberSet::new(Vec::new());
    assert_eq!(a.allocate(&ranges(&["1000-1003"]), &none), Some(1002));
}
