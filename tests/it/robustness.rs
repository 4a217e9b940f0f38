//! Regression tests for what new users hit with ordinary-looking and hostile
//! input (the "bad input and faults never stop the pipeline" findings), each
//! named after the bug it pins down.

use crate::common::{by_source_id, Backend, Env, LIMITS_OPEN};
use serde_json::Value;
use std::time::{Duration, Instant};

crate::both_stores!(
    a_line_break_inside_a_name_is_folded_and_mail_still_flows,
    killed_runs_are_marked_interrupted_by_the_next_run,
);

fn result_rows(r: &Value) -> Vec<csv::StringRecord> {
    let path = r["files"][0]["result_csv"]
        .as_str()
        .unwrap_or_else(|| panic!("no result csv in {r}"));
    let mut rdr = csv::Reader::from_path(path).expect("result csv");
    rdr.records().map(|r| r.expect("result row")).collect()
}

/// (row, pbx_result, pbx_extension, pbx_message) of each result row.
fn results(r: &Value) -> Vec<(String, String, String, String)> {
    let rows = result_rows(r);
    rows.iter()
        .map(|rec| {
            let n = rec.len();
            let cell = |i: usize| rec.get(i).unwrap_or("").to_string();
            (cell(0), cell(n - 3), cell(n - 2), cell(n - 1))
        })
        .collect()
}

fn eml_count(env: &Env) -> usize {
    std::fs::read_dir(env.path("var/mail"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

async fn a_line_break_inside_a_name_is_folded_and_mail_still_flows(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let f = env.write(
        "multi.csv",
        b"employee_id,first_name,last_name,email\n1,\"Multi\nLine\",Name,multi@acme.example\n2,Ann,Lee,ann@acme.example\n3,Bo\x00b,Nul,bob@acme.example\n",
    );
    let out = env.run(&["import", f.to_str().unwrap_or_default(), "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["created"], 3, "{r}");
    let users = env.users();
    assert_eq!(by_source_id(&users, "1")["first_name"], "Multi Line");
    assert_eq!(by_source_id(&users, "3")["first_name"], "Bo b");
    // Every welcome went out; nothing stays queued.
    assert_eq!(eml_count(&env), 3);
    assert_eq!(
        env.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE status = 'queued'")
            .await,
        "0"
    );

    // A name with a line break that is already in the store (written before
    // names were checked) is sent with the break folded, and never stops
    // the others.
    let g = env.write(
        "more.csv",
        b"employee_id,first_name,last_name,email\n2,Ann,Lee,ann@acme.example\n4,Cy,Dee,cy@acme.example\n5,Di,Eve,di@acme.example\n",
    );
    let out = env.run(&[
        "import",
        g.to_str().unwrap_or_default(),
        "--no-mail",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&env.absolute_url())
            .await
            .expect("store");
        sqlx::query("UPDATE users SET first_name = 'Cy\nBroken\r' WHERE source_id = '4'")
            .execute(&mut c)
            .await
            .expect("update");
        c.close().await.ok();
    }
    let out = env.run(&["mail", "flush", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(eml_count(&env), 5, "both new welcomes sent");
    assert_eq!(
        env.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE status = 'queued'")
            .await,
        "0"
    );
}

async fn killed_runs_are_marked_interrupted_by_the_next_run(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let f = env.write("a.csv", b"employee_id,first_name,last_name\n1,Ann,Lee\n");
    assert_eq!(env.import(&[&f]).0, 0);
    // A run that was SIGKILLed leaves its row `running`.
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&env.absolute_url())
            .await
            .expect("store");
        sqlx::query(
            "INSERT INTO runs (source, domain, started_at) VALUES ('hr-drop', 'acme.example', 1)",
        )
        .execute(&mut c)
        .await
        .expect("insert");
        c.close().await.ok();
    }
    assert_eq!(env.import(&[&f]).0, 0);
    let (code, runs) = env.json(&["runs"]);
    assert_eq!(code, 0);
    let outcomes: Vec<&str> = runs
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["ok", "interrupted", "ok"], "{runs}");
    let killed = &runs[1];
    assert!(killed["finished_at"].as_i64().is_some(), "{killed}");
    assert!(
        killed["started_at_rfc3339"]
            .as_str()
            .is_some_and(|t| t.starts_with("1970-01-01T00:00:01")),
        "{killed}"
    );
}

#[tokio::test]
async fn error_text_is_bounded_and_binary_files_are_not_text() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    // One 10 MB line and no line end: a header that names no column.
    let long: Vec<u8> = std::iter::repeat_n(b'x', 10 * 1024 * 1024).collect();
    let f = env.write("long.csv", &long);
    let out = env.run(&["import", f.to_str().unwrap_or_default(), "--format", "json"]);
    assert!(
        out.stdout.len() < 16 * 1024,
        "{} bytes of report",
        out.stdout.len()
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let report_dir = env.path("var/reports");
    for e in std::fs::read_dir(report_dir).expect("reports").flatten() {
        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
        assert!(size < 16 * 1024, "result csv of {size} bytes");
    }
    let stored = env
        .scalar("SELECT CAST(MAX(LENGTH(report)) AS TEXT) FROM runs")
        .await;
    assert!(
        stored.parse::<usize>().unwrap_or(usize::MAX) < 16 * 1024,
        "{stored}"
    );
    assert!(r["errors"].to_string().contains('…'), "{r}");

    // A workbook saved as .csv by mistake (zip bytes with NULs).
    let mut bin = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00".to_vec();
    bin.extend((0u8..=255).cycle().take(4096));
    let f = env.write("book.csv", &bin);
    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 4, "{r}");
    assert!(
        r["errors"].to_string().contains("not a text CSV file"),
        "{r}"
    );
    assert!(!r["errors"].to_string().contains("found"), "{r}");
}

#[tokio::test]
async fn kept_row_of_a_duplicate_id_says_created() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let f = env.write(
        "dup.csv",
        b"employee_id,first_name,last_name\n2001,A,One\n2002,B,Two\n2003,C,Three\n2009,D,Four\n2009,E,Five\n",
    );
    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 1, "{r}");
    let res = results(&r);
    let row5 = res.iter().find(|x| x.0 == "5").expect("row 5");
    let row6 = res.iter().find(|x| x.0 == "6").expect("row 6");
    assert_eq!(row5.1, "create", "{res:?}");
    assert!(
        !row5.2.is_empty(),
        "the created row names its extension: {res:?}"
    );
    assert_eq!(row6.1, "error", "{res:?}");
    assert!(row6.3.contains("already appears on row 5"), "{res:?}");
}

#[tokio::test]
async fn a_reserved_extension_is_said_on_its_row_and_a_second_import_is_clean() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let f = env.write(
        "ext.csv",
        b"employee_id,first_name,last_name,extension\n1,Ann,Lee,911\n2,Bo,Ray,\n",
    );
    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 0, "{r}");
    let res = results(&r);
    let ann = res.iter().find(|x| x.0 == "2").expect("row 2");
    assert_eq!(ann.1, "create", "{res:?}");
    assert_ne!(ann.2, "911", "{res:?}");
    assert!(
        ann.3.contains("911 is reserved"),
        "the row says why: {res:?}"
    );

    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["conflicts"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(
        (r["created"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    let res = results(&r);
    let ann = res.iter().find(|x| x.0 == "2").expect("row 2");
    assert_eq!(ann.1, "unchanged", "{res:?}");
    assert!(ann.3.contains("keeps"), "{res:?}");
}

#[tokio::test]
async fn a_header_only_file_says_it_held_no_rows() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let all = env.write(
        "all.csv",
        b"employee_id,first_name,last_name\n1,Ann,Lee\n2,Bo,Ray\n",
    );
    assert_eq!(env.import(&[&all]).0, 0);
    let empty = env.write("empty.csv", b"employee_id,first_name,last_name\n");
    let (code, r) = env.import(&[&empty]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["disabled"], 0, "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("no data rows"), "{r}");
    assert!(notes.contains("nobody was disabled"), "{r}");
}

#[tokio::test]
async fn logs_carry_no_colour_codes_off_a_terminal() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let f = env.write("a.csv", b"employee_id,first_name,last_name\n1,Ann,Lee\n");
    for fmt in ["text", "json"] {
        let out = env
            .cmd(&[
                "--log-format",
                fmt,
                "import",
                f.to_str().unwrap_or_default(),
            ])
            .env("PBX_ONBOARD_LOG", "info")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("run finished"), "{stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "colour codes in a file: {stderr:?}"
        );
    }
}

#[tokio::test]
async fn the_sqlite_store_and_the_link_key_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let f = env.write(
        "a.csv",
        b"employee_id,first_name,last_name,email\n1,Ann,Lee,ann@acme.example\n",
    );
    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 0, "{r}");
    let mode = |rel: &str| {
        std::fs::metadata(env.path(rel))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    assert_eq!(mode("var/store.db"), 0o600);
    for side in ["var/store.db-wal", "var/store.db-shm"] {
        if env.path(side).exists() {
            assert_eq!(mode(side), 0o600, "{side}");
        }
    }
    assert_eq!(mode("var/link.key"), 0o600);
    // A key others can read is refused, with what to do.
    std::fs::set_permissions(
        env.path("var/link.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let out = env.run(&["mail", "flush"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[tokio::test]
async fn welcome_resend_defaults_the_domain_and_names_the_reason() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let f = env.write(
        "a.csv",
        b"employee_id,first_name,last_name,email,extension\n1,Ann,Lee,ann@acme.example,1000\n2,Bo,Ray,,1001\n",
    );
    assert_eq!(
        env.import(&[&f]).0,
        0,
        "Bo has no email: created, without a welcome"
    );
    let users = env.users();
    assert_eq!(by_source_id(&users, "1")["extension"], "1000");
    // One domain: no --domain needed.
    let out = env.run(&["welcome", "resend", "1000", "--no-mail"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The actual reason, not every possible one.
    let out = env.run(&["welcome", "resend", "1001", "--no-mail"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no email address"), "{err}");
    assert!(!err.contains("disabled"), "{err}");
    // Sent a moment ago and not expired: --all-pending leaves it alone.
    assert_eq!(env.run(&["mail", "flush"]).status.code(), Some(0));
    let out = env.run(&["welcome", "resend", "--all-pending", "--no-mail"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("0 welcome(s) queued"), "{said}");
    let out = env.run(&[
        "welcome",
        "resend",
        "--all-pending",
        "--include-sent",
        "--no-mail",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("1 welcome(s) queued"), "{said}");
}

#[tokio::test]
async fn a_dead_store_ends_the_cli_within_a_minute_naming_it() {
    let env = Env::new(Backend::Sqlite, LIMITS_OPEN).await;
    let port = crate::common::pg::free_port();
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = text.replace(
        "url = \"sqlite://var/store.db\"",
        &format!("url = \"postgres://pbx:secret@127.0.0.1:{port}/pbx\"\ntimeout_seconds = 2"),
    );
    std::fs::write(&env.config, text).expect("config");
    let f = env.write("a.csv", b"employee_id,first_name,last_name\n1,Ann,Lee\n");
    let t = Instant::now();
    let out = env.run(&["import", f.to_str().unwrap_or_default()]);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("secret"), "the password was printed: {err}");
}

#[tokio::test]
async fn healthz_fails_when_due_mail_is_overdue() {
    use crate::daemon::{http_get, Daemon};
    // An SMTP server that accepts connections and never answers: the
    // worker is stuck on the message, which stays due.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let smtp_port = hole.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().flatten() {
            held.push(c);
        }
    });
    let web = crate::common::pg::free_port();
    let extra = format!(
        "[mail]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout_seconds = 60\n[web]\nlisten = \"127.0.0.1:{web}\"\n[daemon]\nmail_overdue_minutes = 1\n"
    );
    let env = Env::with_extra(Backend::Sqlite, LIMITS_OPEN, &extra).await;
    let f = env.write(
        "a.csv",
        b"employee_id,first_name,last_name,email\n1,Ann,Lee,ann@acme.example\n",
    );
    assert_eq!(
        env.run(&["import", f.to_str().unwrap_or_default(), "--no-mail"])
            .status
            .code(),
        Some(0)
    );
    let d = Daemon::start(&env, web, "overdue");
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&env.absolute_url())
            .await
            .expect("store");
        sqlx::query("UPDATE outbox SET next_attempt_at = next_attempt_at - 3600")
            .execute(&mut c)
            .await
            .expect("update");
        c.close().await.ok();
    }
    d.wait_until(
        "/healthz 503 for overdue mail",
        Duration::from_secs(20),
        || {
            http_get(web, "/healthz").is_some_and(|(code, body)| {
                code == 503 && body.contains("the oldest due email has waited")
            })
        },
    );
    d.kill();
}
