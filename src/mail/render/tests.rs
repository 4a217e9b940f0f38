use super::*;

fn view() -> WelcomeView {
    WelcomeView {
        first_name: "Ada <b>".into(),
        domain: "acme.example".into(),
        extension: "2001".into(),
        voicemail: true,
        device: "sip".into(),
        link: "https://pbx.acme.example/welcome/abc".into(),
        expires: "2026-11-30 09:00 UTC".into(),
        from_name: "PBX Onboarding".into(),
    }
}

#[test]
fn language_falls_back_to_english() {
    assert_eq!(language(Some("de-AT")), "de");
    assert_eq!(language(Some("DE_de.UTF-8")), "de");
    assert_eq!(language(Some("fr")), "en");
    assert_eq!(language(None), "en");
}

#[test]
fn welcome_says_what_the_user_has_and_escapes_html() {
    let en = welcome(&view(), "en").unwrap();
    assert!(en.subject.contains("2001"));
    assert!(en.text.contains("https://pbx.acme.example/welcome/abc"));
    assert!(en.text.contains("voicemail"));
    assert!(en.text.contains("SIP user 2001"));
    assert!(en.text.contains("Ada <b>"), "plain text is not escaped");
    assert!(en.html.contains("Ada &#60;b&#62;") || en.html.contains("Ada &lt;b&gt;"));
    let de = welcome(
        &WelcomeView {
            voicemail: false,
            device: String::new(),
            ..view()
        },
        "de",
    )
    .unwrap();
    assert!(de.subject.starts_with("Ihre neue Durchwahl"));
    assert!(!de.text.contains("Sprachbox"));
    assert!(!de.text.contains("SIP"));
}
