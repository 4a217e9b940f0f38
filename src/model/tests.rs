use super::*;

#[test]
fn extensions() {
    assert_eq!(Extension::parse(" 1001 ").unwrap().number(), Some(1001));
    assert_eq!(Extension::parse("JSmith").unwrap().as_str(), "jsmith");
    assert_eq!(Extension::parse("jsmith").unwrap().number(), None);
    assert!(Extension::parse("").is_err());
    assert!(Extension::parse("10-01").is_err());
    assert!(Extension::parse("0123").is_err());
    assert!(Extension::parse("0").is_ok());
    assert!(Extension::parse("1234567890123456").is_err());
}

#[test]
fn emails() {
    assert_eq!(
        Email::parse(" Jane.Doe@ACME.Example ").unwrap().as_str(),
        "Jane.Doe@acme.example"
    );
    for bad in [
        "",
        "jane",
        "jane@",
        "@acme.example",
        "jane@acme",
        "ja ne@acme.example",
        "a@b@c.d",
        "jane@-acme.example",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn scopes_are_forgiving() {
    assert_eq!(
        Scope::parse("call center agent").unwrap(),
        Scope::CallCenterAgent
    );
    assert_eq!(
        Scope::parse("Call-Center_Supervisor").unwrap(),
        Scope::CallCenterSupervisor
    );
    assert_eq!(Scope::parse("BASIC USER").unwrap(), Scope::BasicUser);
    let err = Scope::parse("Wizard").unwrap_err();
    assert!(err.0.contains("Basic User"), "{err}");
    assert!(Scope::CallCenterAgent.is_billable());
    assert!(!Scope::OfficeManager.is_billable());
}

#[test]
fn phone_numbers() {
    assert_eq!(
        PhoneNumber::parse("+1 (555) 010-0100").unwrap().as_str(),
        "+15550100100"
    );
    assert!(PhoneNumber::parse("call me").is_err());
}

#[test]
fn control_characters_fold_to_one_space() {
    for (raw, want) in [
        ("Multi\nLine", "Multi Line"),
        ("Head of Sales,\r\nEMEA", "Head of Sales, EMEA"),
        ("Bo\u{0}b", "Bo b"),
        ("a \t\u{85} b", "a b"),
        ("\nlead and trail\r\n", "lead and trail"),
        ("plain  spaces kept", "plain  spaces kept"),
        ("\u{7f}", ""),
    ] {
        let mut s = raw.to_string();
        one_line(&mut s);
        assert_eq!(s, want, "{raw:?}");
    }
}

#[test]
fn excerpts_are_bounded_and_show_controls() {
    let long = "x".repeat(10_000);
    let e = excerpt(&long);
    assert_eq!(e.chars().count(), QUOTE_MAX + 1);
    assert!(e.ends_with('…'));
    assert_eq!(excerpt("a\nb"), "a\\u{a}b");
    let mut m = "é".repeat(600);
    bound(&mut m, 500);
    assert_eq!(m.chars().count(), 501);
}

#[test]
fn emails_the_mail_library_refuses_are_refused_here() {
    // Found by the fuzzer: a lone quote as the local part.
    for bad in ["\"@aba.ab", "a\"b@acme.example", "(x)@acme.example"] {
        assert!(Email::parse(bad).is_err(), "{bad}");
    }
    assert!(Email::parse("o'brien+pbx@acme.example").is_ok());
}

/// A stored user reads back every text as packed, present or absent,
/// short or long (a varint of one, two and three bytes), and is 40 bytes.
#[test]
fn stored_users_read_back_their_packed_texts() {
    let long = "x".repeat(70_000);
    let fields = UserFields {
        first_name: "Zoë".into(),
        last_name: None,
        emails: vec![
            Email::parse("a@example.com").unwrap_or_else(|e| panic!("{e:?}")),
            Email::parse("b@example.com").unwrap_or_else(|e| panic!("{e:?}")),
        ],
        department: Some("d".repeat(200)),
        site: Some(String::new()),
        scope: Scope::BasicUser,
        kind: UserKind::Person,
        title: Some(long.clone()),
        caller_id: None,
        voicemail: true,
        device: None,
        force_login: false,
    };
    let u = StoredUser::new(
        7,
        "1001",
        (Some("hr"), None),
        Status::Disabled,
        Some(5),
        &fields,
    );
    assert_eq!(std::mem::size_of::<StoredUser>(), 40);
    assert_eq!(
        (u.extension(), u.source(), u.source_id()),
        ("1001", Some("hr"), None)
    );
    assert_eq!(u.fields(), fields);
    let t = u.texts();
    assert_eq!((t.site, t.title.map(str::len)), (Some(""), Some(70_000)));
    assert_eq!(u.disabled_at(), Some(5));
    let none = StoredUser::new(8, "1002", (None, None), Status::Active, None, &fields);
    assert_eq!((none.disabled_at(), none.source()), (None, None));
}

/// The shortcut past the mail library's parse takes only addresses the
/// library takes too: random local parts and domains over an alphabet of
/// atext, specials, quotes, non-ASCII and label edge cases.
#[test]
fn plain_ascii_addresses_are_ones_the_mail_library_takes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Mostly characters a plain address may have, some it may not.
    let local_chars: Vec<char> = "aZ09.-_+'!#$%&*/=?^`{|}~".chars().collect();
    let label_chars: Vec<char> = "aZ9-".chars().collect();
    let odd_chars: Vec<char> = "\"(),;:<>[]\\ é_.@".chars().collect();
    let pick = |chars: &[char], max: usize, rng: &mut rand::rngs::StdRng| -> String {
        let n = rng.gen_range(0..=max);
        (0..n)
            .map(|_| match rng.gen_range(0..10) {
                0 => odd_chars[rng.gen_range(0..odd_chars.len())],
                _ => chars[rng.gen_range(0..chars.len())],
            })
            .collect()
    };
    let (mut plain, mut taken) = (0, 0);
    for i in 0..20_000 {
        let local = pick(&local_chars, 8, &mut rng);
        let labels = rng.gen_range(1..=3);
        let mut domain: Vec<String> = (0..labels)
            .map(|_| pick(&label_chars, 5, &mut rng))
            .collect();
        if i % 50 == 0 {
            domain.push("a".repeat(rng.gen_range(62..=65)));
        }
        let domain = domain.join(".");
        let labels_ok = domain.split('.').count() >= 2
            && domain
                .split('.')
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if !(labels_ok && !local.is_empty() && local.len() <= 64 && plain_ascii(&local, &domain)) {
            continue;
        }
        plain += 1;
        let s = format!("{local}@{domain}");
        assert!(
            s.parse::<lettre::Address>().is_ok(),
            "{s:?} skips a parse that refuses it"
        );
        taken += usize::from(Email::parse(&s).is_ok());
    }
    assert!(plain > 500, "only {plain} plain addresses generated");
    assert_eq!(taken, plain);
    // Stored and packed addresses keep their string when already normal.
    let e = Email::try_from("jane@acme.example".to_string()).unwrap();
    assert_eq!(e.as_str(), "jane@acme.example");
    let e = Email::try_from(" Jane@ACME.example".to_string()).unwrap();
    assert_eq!(e.as_str(), "Jane@acme.example");
}

/// The store's emails column as the load packs it: borrowed when it is
/// already what `join_emails` of its parsed lines gives, else exactly that.
#[test]
fn normal_emails_are_the_joined_parsed_addresses() {
    let cases = [
        "a@acme.example",
        "a@acme.example\nb.c@acme.example",
        "Ann@ACME.Example",
        "a@acme.example\n\nb@acme.example",
        "a@acme.example\n",
        "",
        " a@acme.example",
        "a@acme.example\r\nb@acme.example",
    ];
    for c in cases {
        let parsed: Vec<Email> = c
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| Email::parse(l).expect("valid"))
            .collect();
        let got = normal_emails(c).expect("valid");
        assert_eq!(got, join_emails(&parsed), "{c:?}");
        let borrowed = matches!(got, std::borrow::Cow::Borrowed(_));
        assert_eq!(borrowed, got == c && !c.is_empty(), "{c:?}");
    }
    for bad in ["not an address", "a@acme.example\n  \nb@acme.example"] {
        assert!(normal_emails(bad).is_err(), "{bad:?}");
    }
}
