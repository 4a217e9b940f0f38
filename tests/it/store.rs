//! The store on both engines: migrations apply (and re-apply as a no-op), the
//! domain setup is idempotent, and the sync lock excludes a second holder.

use crate::common::{people_csv, Backend, Env, LIMITS_OPEN};
use pbx_onboard::config::Config;
use pbx_onboard::store::Store;
use std::time::Duration;

crate::both_stores!(
    migrations_and_domain_setup_are_idempotent,
    sync_lock_is_exclusive_until_released,
    lean_outbox_migration_keeps_queued_welcomes,
    cascade_trigger_migration_keeps_every_row,
    deleting_users_runs_and_domains_removes_what_hangs_off_them,
    stored_users_load_with_escaped_text_and_hand_edited_emails,
    a_large_domain_loads_in_two_ranges_in_id_order
);

/// A plain connection to the store, with SQLite's foreign keys enforced as
/// pbx-onboard's own connections have them.
async fn connect_with_keys(env: &Env, b: Backend) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&env.absolute_url())
        .await
        .expect("connect");
    if b == Backend::Sqlite {
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut c)
            .await
            .expect("pragma");
    }
    c
}

/// A plain connection to the env's store, migrated up to (not including)
/// the migration whose file name starts with `before`.
async fn migrated_before(env: &Env, b: Backend, before: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    let engine = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let old = tempfile::tempdir().expect("tempdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    for e in std::fs::read_dir(&src).expect("migrations") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().to_string();
        if name.as_str() < before {
            std::fs::copy(e.path(), old.path().join(&name)).expect("copy migration");
        }
    }
    sqlx::any::install_default_drivers();
    if b == Backend::Sqlite {
        std::fs::create_dir_all(env.path("var")).expect("mkdir");
    }
    let url = match b {
        Backend::Sqlite => format!("{}?mode=rwc", env.absolute_url()),
        Backend::Postgres => env.absolute_url(),
    };
    let mut c = sqlx::AnyConnection::connect(&url).await.expect("connect");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("read the older migrations")
        .run(&mut c)
        .await
        .expect("migrate");
    c
}

async fn open(env: &Env) -> (Config, Store) {
    let cfg = Config::load(&env.config).expect("config");
    let store = Store::connect(&cfg.store).await.expect("connect");
    (cfg, store)
}

async fn migrations_and_domain_setup_are_idempotent(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let (cfg, store) = open(&env).await;
    let d1 = store
        .ensure_domain(&cfg.domains[0])
        .await
        .expect("ensure domain");
    store.close().await;
    let (cfg, store) = open(&env).await;
    let d2 = store
        .ensure_domain(&cfg.domains[0])
        .await
        .expect("ensure domain again");
    assert_eq!(d1, d2);
    assert_eq!(d2.revision, 0);
    let found = store.find_domain("acme.example").await.expect("find");
    assert_eq!(found, Some(d2));
    assert!(store.load_users(d2.id).await.expect("load").is_empty());
    store.close().await;
}

async fn sync_lock_is_exclusive_until_released(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let (_cfg, store) = open(&env).await;
    let (_cfg2, other) = open(&env).await;
    let lock = store
        .lock_domain("acme.example", Duration::from_secs(1))
        .await
        .expect("first lock");
    let second = other
        .lock_domain("acme.example", Duration::from_millis(300))
        .await;
    assert!(second.is_err(), "a second holder must wait");
    // Another domain is independent.
    let beta = other
        .lock_domain("beta.example", Duration::from_millis(300))
        .await
        .expect("other domain");
    beta.release().await;
    lock.release().await;
    let again = other
        .lock_domain("acme.example", Duration::from_secs(2))
        .await
        .expect("after release");
    again.release().await;
    store.close().await;
    other.close().await;
}

/// Migration 6 rebuilds (SQLite) or alters (PostgreSQL) the welcome link and
/// outbox tables: queued welcomes survive it, a token hash stays unique,
/// and deleting a user still cascades into its links and their emails.
async fn lean_outbox_migration_keeps_queued_welcomes(b: Backend) {
    use sqlx::Connection;
    let env = Env::new(b, LIMITS_OPEN).await;
    // The schema as migration 5 left it.
    let mut c = migrated_before(&env, b, "0006").await;
    for sql in [
        "INSERT INTO domains (id, name, created_at) VALUES (1, 'acme.example', 0)",
        "INSERT INTO users (id, domain_id, extension, first_name, emails, source, source_id, created_at, updated_at)
         VALUES (1, 1, '1000', 'Ada', 'ada@acme.example', 'hr-drop', 'E1', 0, 0)",
        "INSERT INTO welcome_links (id, user_id, salt, token_hash, created_at)
         VALUES (1, 1, 's1', 'h1', 0), (2, 1, 's2', NULL, 0)",
        "INSERT INTO outbox (kind, link_id, message_id, status, next_attempt_at, created_at)
         VALUES ('welcome', 1, '<m1@acme.example>', 'sent', 0, 0), ('welcome', 2, '<m2@acme.example>', 'queued', 0, 0)",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    c.close().await.ok();

    let (_cfg, store) = open(&env).await;
    store.close().await;
    let count = |sql: &'static str| {
        let env = &env;
        async move { env.scalar(&format!("SELECT CAST(({sql}) AS TEXT)")).await }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND link_id = 2").await,
        "1"
    );
    assert_eq!(
        count("SELECT token_hash FROM welcome_links WHERE id = 1").await,
        "h1"
    );
    let mut c = connect_with_keys(&env, b).await;
    let dup = sqlx::query(
        "INSERT INTO welcome_links (id, user_id, salt, token_hash, created_at) VALUES (10, 1, 's3', 'h1', 0)",
    )
    .execute(&mut c)
    .await;
    assert!(dup.is_err(), "a token hash must stay unique");
    sqlx::query(
        "INSERT INTO welcome_links (id, user_id, salt, created_at) VALUES (11, 1, 's4', 0)",
    )
    .execute(&mut c)
    .await
    .expect("links without a token hash do not collide");
    sqlx::query("DELETE FROM users WHERE id = 1")
        .execute(&mut c)
        .await
        .expect("delete user");
    c.close().await.ok();
    assert_eq!(count("SELECT COUNT(*) FROM welcome_links").await, "0");
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await, "0");
}

/// Migration 12 rebuilds SQLite's five bulk-written tables without foreign
/// keys (a no-op on PostgreSQL): every row and value survives it, the keys
/// are gone, the registrar view reads as before, and deleting a user still
/// takes its device, links and their emails.
async fn cascade_trigger_migration_keeps_every_row(b: Backend) {
    use sqlx::Connection;
    let env = Env::new(b, LIMITS_OPEN).await;
    let mut c = migrated_before(&env, b, "0012").await;
    for sql in [
        "INSERT INTO domains (id, name, created_at) VALUES (1, 'acme.example', 0)",
        "INSERT INTO departments (domain_id, name) VALUES (1, 'Sales')",
        "INSERT INTO sites (domain_id, name) VALUES (1, 'Leeds')",
        "INSERT INTO users (id, domain_id, extension, first_name, last_name, emails, department, site,
                            portal_password_hash, status, source, source_id, created_at, updated_at, disabled_at)
         VALUES (1, 1, '1000', 'Ada', 'Lovelace', 'ada@acme.example', 'Sales', 'Leeds', '$argon2id$x', 'active', 'hr', 'E1', 5, 6, NULL),
                (2, 1, '1001', 'Bob', NULL, '', NULL, NULL, NULL, 'disabled', 'hr', 'E2', 7, 8, 9)",
        "INSERT INTO devices (id, user_id, domain_id, device_type, sip_username, secret, ha1, ha1b, created_at)
         VALUES (1, 1, 1, 'sip', '1000', 's1', 'h1', 'h1b', 5), (2, 2, 1, 'web', '1001', 's2', 'h2', 'h2b', 7)",
        "INSERT INTO welcome_links (id, user_id, salt, token_hash, created_at, expires_at)
         VALUES (1, 1, 'salt1', 'hash1', 5, 50), (2, 1, 'salt2', NULL, 6, NULL)",
        "INSERT INTO outbox (id, kind, link_id, message_id, status, attempts, next_attempt_at, last_error, created_at)
         VALUES (1, 'welcome', 1, '<m1@acme.example>', 'sent', 1, 0, NULL, 5),
                (2, 'welcome', 2, '<m2@acme.example>', 'failed', 3, 9, 'refused', 6),
                (3, 'report', NULL, '<r@acme.example>', 'queued', 0, 0, NULL, 7)",
        "INSERT INTO runs (id, source, domain, started_at, outcome) VALUES (1, 'hr', 'acme.example', 5, 'ok')",
        "INSERT INTO run_actions (id, run_id, user_id, source_id, action, detail)
         VALUES (1, 1, 1, 'E1', 'create', '1000'), (2, 1, 2, 'E2', 'disable', '\"left\"')",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    c.close().await.ok();
    let tables: [(&str, &[&str]); 5] = [
        (
            "users",
            &[
                "id",
                "domain_id",
                "extension",
                "kind",
                "first_name",
                "last_name",
                "emails",
                "department",
                "site",
                "scope",
                "voicemail",
                "portal_password_hash",
                "voicemail_pin_hash",
                "status",
                "source",
                "source_id",
                "created_at",
                "updated_at",
                "disabled_at",
            ],
        ),
        (
            "devices",
            &[
                "id",
                "user_id",
                "domain_id",
                "device_type",
                "sip_username",
                "secret",
                "force_login",
                "enabled",
                "created_at",
                "ha1",
                "ha1b",
                "secret_rotated_at",
            ],
        ),
        (
            "welcome_links",
            &[
                "id",
                "user_id",
                "salt",
                "token_hash",
                "created_at",
                "expires_at",
                "used_at",
                "revoked_at",
            ],
        ),
        (
            "outbox",
            &[
                "id",
                "kind",
                "link_id",
                "message_id",
                "status",
                "attempts",
                "next_attempt_at",
                "last_error",
                "created_at",
                "sent_at",
            ],
        ),
        (
            "run_actions",
            &["id", "run_id", "user_id", "source_id", "action", "detail"],
        ),
    ];
    let dump = || async {
        let mut out = Vec::new();
        for (table, cols) in tables {
            let row = cols
                .iter()
                .map(|c| format!("COALESCE(CAST({c} AS TEXT), '-')"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let n: i64 = env
                .scalar(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
                .await
                .parse()
                .expect("count");
            for id in 1..=n {
                out.push(
                    env.scalar(&format!("SELECT {row} FROM {table} WHERE id = {id}"))
                        .await,
                );
            }
        }
        out
    };
    let before = dump().await;
    assert_eq!(before.len(), 2 + 2 + 2 + 3 + 2, "{before:?}");
    let (_cfg, store) = open(&env).await;
    store.close().await;
    assert_eq!(dump().await, before);
    assert_eq!(
        env.scalar("SELECT username || '@' || domain || ' ' || ha1 FROM sip_subscriber")
            .await,
        "1000@acme.example h1"
    );
    if b == Backend::Sqlite {
        for (table, _) in tables {
            let keys = env
                .scalar(&format!(
                    "SELECT CAST(COUNT(*) AS TEXT) FROM pragma_foreign_key_list('{table}')"
                ))
                .await;
            assert_eq!(keys, "0", "{table} keeps a foreign key");
        }
    }
    let mut c = connect_with_keys(&env, b).await;
    sqlx::query("DELETE FROM users WHERE id = 1")
        .execute(&mut c)
        .await
        .expect("delete user");
    c.close().await.ok();
    for (table, left) in [("devices", "1"), ("welcome_links", "0"), ("outbox", "1")] {
        let n = env
            .scalar(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
            .await;
        assert_eq!(n, left, "{table} after deleting Ada");
    }
}

/// Whoever deletes a user, a run or a domain, what hangs off it goes in the
/// same statement: by the triggers that replaced the bulk tables' foreign
/// keys, statement-level on PostgreSQL (migration 11), row-level on SQLite
/// (migration 12).
async fn deleting_users_runs_and_domains_removes_what_hangs_off_them(b: Backend) {
    use sqlx::Connection;
    let env = Env::new(b, LIMITS_OPEN).await;
    let csv = env.write("three.csv", people_csv(0, 3).as_bytes());
    let (code, report) = env.import(&[&csv]);
    assert_eq!(code, 0, "import: {report}");
    let count = |sql: String| {
        let env = &env;
        async move { env.scalar(&format!("SELECT CAST(({sql}) AS TEXT)")).await }
    };
    let of_e1 = |table: &str, key: &str| {
        format!(
            "SELECT COUNT(*) FROM {table} WHERE {key} IN (SELECT id FROM users WHERE source_id = 'E1')"
        )
    };
    for (table, key) in [("devices", "user_id"), ("welcome_links", "user_id")] {
        assert_eq!(count(of_e1(table, key)).await, "1", "{table} of E1");
    }
    let link = count(of_e1("welcome_links", "user_id").replace("COUNT(*)", "MIN(id)")).await;
    let e1 = count("SELECT MIN(id) FROM users WHERE source_id = 'E1'".into()).await;
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM outbox WHERE link_id = {link}"
        ))
        .await,
        "1"
    );
    assert_ne!(count("SELECT COUNT(*) FROM run_actions".into()).await, "0");

    let mut c = connect_with_keys(&env, b).await;
    async fn run(c: &mut sqlx::AnyConnection, sql: &str) {
        sqlx::query(sql)
            .execute(c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    run(&mut c, "DELETE FROM users WHERE source_id = 'E1'").await;
    for (table, key) in [("devices", "user_id"), ("welcome_links", "user_id")] {
        assert_eq!(
            count(format!("SELECT COUNT(*) FROM {table} WHERE {key} = {e1}")).await,
            "0",
            "{table} of the deleted user"
        );
    }
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM outbox WHERE link_id = {link}"
        ))
        .await,
        "0",
        "the deleted user's welcome email"
    );
    assert_eq!(count("SELECT COUNT(*) FROM devices".into()).await, "2");
    assert_eq!(
        count("SELECT COUNT(*) FROM welcome_links".into()).await,
        "2"
    );

    run(&mut c, "DELETE FROM runs").await;
    assert_eq!(count("SELECT COUNT(*) FROM run_actions".into()).await, "0");

    run(&mut c, "DELETE FROM domains").await;
    for table in ["users", "devices", "welcome_links", "departments", "sites"] {
        assert_eq!(
            count(format!("SELECT COUNT(*) FROM {table}")).await,
            "0",
            "{table} of the deleted domain"
        );
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE link_id IS NOT NULL".into()).await,
        "0"
    );
    c.close().await.ok();
}

/// The store's users are read as JSON pages built by the database: text
/// that JSON has to escape loads as it was written, and an emails column
/// edited by hand (upper-case domain, blank lines) loads as the addresses
/// pbx-onboard would have written.
async fn stored_users_load_with_escaped_text_and_hand_edited_emails(b: Backend) {
    use sqlx::Connection;
    let env = Env::new(b, LIMITS_OPEN).await;
    let csv = env.write(
        "odd.csv",
        "Employee ID,First Name,Last Name,Work Email,Department\n\
         E1,\"Zo\u{eb} \"\"Z\"\"\",O\\Brien\t,zoe@acme.example,Sales\n\
         E2,Ann,Lee,ann@acme.example,Sales\n"
            .as_bytes(),
    );
    let (code, report) = env.import(&[&csv]);
    assert_eq!(code, 0, "import: {report}");
    let mut c = connect_with_keys(&env, b).await;
    let nl = match b {
        Backend::Sqlite => "char(10)",
        _ => "chr(10)",
    };
    let sql = format!(
        "UPDATE users SET emails = 'Ann@ACME.Example' || {nl} || {nl} || 'ann.lee@acme.example' \
         WHERE source_id = 'E2'"
    );
    sqlx::query(&sql)
        .execute(&mut c)
        .await
        .expect("edit emails");
    c.close().await.ok();

    let (cfg, store) = open(&env).await;
    let d = store
        .find_domain(&cfg.domains[0].name)
        .await
        .expect("find")
        .expect("domain");
    let users = store.load_users(d.id).await.expect("load");
    let e1 = users
        .iter()
        .find(|u| u.source_id() == Some("E1"))
        .expect("E1");
    assert_eq!(e1.texts().first_name, "Zo\u{eb} \"Z\"");
    assert_eq!(e1.texts().last_name, Some("O\\Brien"));
    let e2 = users
        .iter()
        .find(|u| u.source_id() == Some("E2"))
        .expect("E2");
    assert_eq!(
        e2.texts().emails().collect::<Vec<_>>(),
        ["Ann@acme.example", "ann.lee@acme.example"]
    );
    assert_eq!(e2.fields().emails.len(), 2);
    store.close().await;
}

/// A domain of more than four pages loads as two id ranges on two
/// connections: every user of the domain comes back once, in id order,
/// with its first device, and the users of another domain whose ids are
/// interleaved with its own (and their devices) do not.
async fn a_large_domain_loads_in_two_ranges_in_id_order(b: Backend) {
    use sqlx::Connection;
    let env = Env::new(b, LIMITS_OPEN).await;
    let (cfg, store) = open(&env).await;
    let d = store.ensure_domain(&cfg.domains[0]).await.expect("domain");
    let mut c = connect_with_keys(&env, b).await;
    let other = d.id + 1;
    let n = 15_001;
    // Every third user is the other domain's; every fifth of the domain's
    // has no device, every seventh two (web first).
    let statements = [
        format!("INSERT INTO domains (id, name, created_at) VALUES ({other}, 'other.example', 0)"),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO users (id, domain_id, extension, first_name, emails, source, source_id, \
                                created_at, updated_at) \
             SELECT i, CASE WHEN i % 3 = 0 THEN {other} ELSE {dom} END, 'x' || i, 'F' || i, \
                    'u' || i || '@acme.example', 'hr', 'E' || i, 0, 0 FROM n",
            dom = d.id
        ),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO devices (user_id, domain_id, device_type, sip_username, secret, \
                                  created_at, ha1, ha1b) \
             SELECT i, CASE WHEN i % 3 = 0 THEN {other} ELSE {dom} END, \
                    CASE WHEN i % 7 = 0 THEN 'web' ELSE 'sip' END, 's' || i, 'k', 0, 'h', 'h' \
             FROM n WHERE i % 5 <> 0",
            dom = d.id
        ),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO devices (user_id, domain_id, device_type, sip_username, secret, \
                                  created_at, ha1, ha1b) \
             SELECT i, CASE WHEN i % 3 = 0 THEN {other} ELSE {dom} END, 'sip', 't' || i, 'k', \
                    0, 'h', 'h' FROM n WHERE i % 7 = 0",
            dom = d.id
        ),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&mut c).await.expect("fill");
    }
    c.close().await.ok();

    let users = store.load_users(d.id).await.expect("load");
    let want: Vec<i64> = (1..=n).filter(|i| i % 3 != 0).collect();
    let got: Vec<i64> = users.iter().map(|u| u.id).collect();
    assert_eq!(got, want);
    for u in &users {
        let i = u.id;
        assert_eq!(u.source_id(), Some(format!("E{i}").as_str()));
        assert_eq!(u.extension(), format!("x{i}"));
        let device = u.device().map(|t| t.as_str());
        let expected = match (i % 5, i % 7) {
            (0, 0) => Some("sip"),
            (0, _) => None,
            (_, 0) => Some("web"),
            _ => Some("sip"),
        };
        assert_eq!(device, expected, "user {i}");
    }
    store.close().await;
}
