use super::*;

fn owner() -> Owner<'static> {
    Owner {
        first_name: "Ada",
        last_name: Some("Lovelace-Byron"),
        extension: "2001",
    }
}

#[test]
fn passwords() {
    let p = Policy::new(15, 6, Some("my company secret 2026"));
    let cases: &[(&str, Option<&str>)] = &[
        ("violet kettle under a paper moon", None),
        ("tr0ub4dor&3 was never enough", None),
        ("short one", Some("at least 15")),
        ("passwordpassword", Some("commonly used")),
        ("PasswordPassword123", Some("commonly used")),
        ("My Company Secret 2026", Some("commonly used")),
        ("aaaaaaaaaaaaaaaabbbb", Some("too few different")),
        ("my extension is 2001 ok", Some("extension")),
        ("i am lovelace the great", Some("name")),
        ("byron wrote poems all day", Some("name")),
        // Any part of a name of three letters or more counts ("Ada").
        ("adamant about long phrases", Some("name")),
        // NFKC: fullwidth letters count as their ASCII forms.
        ("ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ", Some("commonly used")),
        // Code points, not bytes: 15 emoji-free CJK characters pass.
        ("電話番号を設定する新しい社員の方へ", None),
    ];
    for (pw, want) in cases {
        let got = p.password(pw, &owner());
        match want {
            None => assert!(got.is_ok(), "{pw}: {got:?}"),
            Some(w) => {
                let e = got.expect_err(pw).text("en");
                assert!(e.contains(w), "{pw}: {e}");
            }
        }
    }
    let long = "x1y2z3".repeat(11);
    assert!(
        p.password(&long, &owner()).is_ok(),
        "64+ characters are allowed"
    );
    assert!(
        p.password(&"ab1cd2".repeat(50), &owner()).is_err(),
        "over 256 is refused"
    );
    assert_eq!(Policy::new(4, 2, None).password_min, 8, "never below 8");
    assert_eq!(Policy::new(4, 2, None).pin_min, 4, "never below 4");
}

#[test]
fn pins() {
    let p = Policy::new(15, 6, None);
    let cases: &[(&str, Option<&str>)] = &[
        ("730261", None),
        ("804617", None),
        ("73026", Some("at least 6")),
        ("73o261", Some("digits only")),
        ("", Some("digits only")),
        ("711103", Some("more than twice")),
        ("555123", Some("more than twice")),
        ("121221", Some("3 different")),
        ("123456", Some("runs")),
        ("981234", Some("runs")),
        ("987604", Some("runs")),
        ("789012", Some("runs")),
        ("408408", Some("repeated groups")),
        ("305305", Some("repeated groups")),
        ("258036", Some("keypad")),
        ("915973", Some("keypad")),
        ("470852", Some("keypad")),
        ("720019", Some("extension")),
        ("610024", Some("extension")),
    ];
    for (pin, want) in cases {
        let got = p.pin(pin, "2001");
        match want {
            None => assert!(got.is_ok(), "{pin}: {got:?}"),
            Some(w) => {
                let e = got.expect_err(pin).text("en");
                assert!(e.contains(w), "{pin}: {e}");
            }
        }
    }
}

#[test]
fn problems_speak_german_too() {
    let p = Policy::new(15, 6, None);
    let e = p.pin("123456", "2001").unwrap_err();
    assert_eq!(e, Problem::Run);
    assert!(e.text("de").contains("Ziffernfolgen"));
    let e = p.password("kurz", &owner()).unwrap_err();
    assert_eq!(e.text("de"), "Mindestens 15 Zeichen (dieses hat 4).");
}

#[test]
fn hashes_are_argon2id_phc() {
    let h = hash_secret("correct horse battery staple").unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert_ne!(
        h,
        hash_secret("correct horse battery staple").unwrap(),
        "salted"
    );
}

#[test]
fn an_owner_without_an_extension_is_not_refused_for_containing_it() {
    let p = Policy::new(15, 6, None);
    let admin = Owner {
        first_name: "alice",
        last_name: None,
        extension: "",
    };
    assert!(p.password("correct horse battery staple", &admin).is_ok());
    assert!(p.password("alice in the console room", &admin).is_err());
}
