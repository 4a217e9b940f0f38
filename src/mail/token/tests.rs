use super::*;

#[test]
fn tokens_are_stable_urlsafe_and_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let k = LinkKey::load_or_create(&path).unwrap();
    let again = LinkKey::load_or_create(&path).unwrap();
    let t = k.token("00ff");
    assert_eq!(t, again.token("00ff"));
    assert!(plausible_token(&t), "{t}");
    assert_ne!(t, k.token("00fe"));
    let other = LinkKey::load_or_create(&dir.path().join("k2")).unwrap();
    assert_ne!(t, other.token("00ff"));
    assert_eq!(token_hash(&t).len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn form_tokens_bind_link_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let k = LinkKey::load_or_create(&dir.path().join("k")).unwrap();
    let f = k.form_token("h1", 1000);
    assert!(k.check_form_token("h1", &f, 1100, 3600));
    assert!(!k.check_form_token("h2", &f, 1100, 3600));
    assert!(!k.check_form_token("h1", &f, 1000 + 3601, 3600));
    assert!(!k.check_form_token("h1", "", 1100, 3600));
    assert!(!k.check_form_token("h1", "1000.AAAA", 1100, 3600));
}
