#[test]
fn redacts_passwords() {
    assert_eq!(
        super::redact_url("postgres://pbx:s3cret@db/pbx"),
        "postgres://pbx:***@db/pbx"
    );
    assert_eq!(
        super::redact_url("postgres://pbx@db/pbx"),
        "postgres://pbx@db/pbx"
    );
    assert_eq!(
        super::redact_url("sqlite:///var/x.db"),
        "sqlite:///var/x.db"
    );
}

/// Every SQLite connection keeps statement journals in memory: a
/// 1,000-row INSERT's journal outgrew SQLite's 64 KiB in-memory default, so
/// every chunk of an import created, wrote and deleted a file in /var/tmp
/// (`etilqs_…`, about forty per 100k import under strace).
#[tokio::test]
async fn sqlite_connections_keep_statement_journals_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = crate::config::StoreConfig {
        url: format!("sqlite://{}", dir.path().join("s.db").display()),
        max_connections: 2,
        timeout: std::time::Duration::from_secs(5),
    };
    let store = super::Store::connect(&cfg).await.expect("connect");
    for _ in 0..2 {
        let mut c = store.pool().acquire().await.expect("acquire");
        let mode: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(&mut *c)
            .await
            .expect("pragma");
        assert_eq!(mode, 2, "temp_store = MEMORY");
    }
    store.close().await;
}
