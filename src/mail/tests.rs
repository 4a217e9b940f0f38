#[test]
fn backoff_doubles_and_caps() {
    assert_eq!(super::backoff(1), 60);
    assert_eq!(super::backoff(2), 120);
    assert_eq!(super::backoff(5), 960);
    assert_eq!(super::backoff(30), 6 * 3600);
}
