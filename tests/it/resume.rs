//! Abrupt ends and concurrent writers: SIGKILL mid-apply then re-run finishes
//! the job with no duplicate and no lost user; two imports at once on SQLite
//! never fail with "database is locked"; two runs of one domain take turns.

use crate::common::{people_csv, Backend, Env};
use std::time::{Duration, Instant};

crate::both_stores!(
    sigkill_mid_apply_then_rerun_finishes_without_duplicates,
    two_runs_of_one_domain_take_turns,
);

async fn store_counts(env: &Env) -> (i64, i64, i64, i64) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let url = match env.url.strip_prefix("sqlite://") {
        Some(rel) => format!("sqlite://{}", env.path(rel).display()),
        None => env.url.clone(),
    };
    let Ok(mut c) = sqlx::AnyConnection::connect(&url).await else {
        return (0, 0, 0, 0);
    };
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(DISTINCT extension) FROM users), \
         (SELECT COUNT(DISTINCT source_id) FROM users), (SELECT COUNT(DISTINCT user_id) FROM devices)",
    )
    .fetch_one(&mut c)
    .await;
    c.close().await.ok();
    match row {
        Ok(r) => (
            r.try_get::<i64, _>(0).unwrap_or(0),
            r.try_get::<i64, _>(1).unwrap_or(0),
            r.try_get::<i64, _>(2).unwrap_or(0),
            r.try_get::<i64, _>(3).unwrap_or(0),
        ),
        Err(_) => (0, 0, 0, 0),
    }
}

async fn sigkill_mid_apply_then_rerun_finishes_without_duplicates(b: Backend) {
    const N: usize = 3000;
    // 1,000 users a second in chunks of 50: the run takes ~3 s, time to kill it.
    // Mail at the default 10 a second would add 300 s and test nothing here.
    let env = Env::with_extra(
        b,
        "writes_per_second = 1000\nburst = 50\nmax_disable = 0\nmax_disable_percent = 0\nmax_billable = 1000000\n",
        "[mail]\nmessages_per_second = 0\n",
    )
    .await;
    let f = env.write("big.csv", people_csv(1, N).as_bytes());
    let mut child = env
        .cmd(&["import", f.to_str().unwrap_or_default()])
        .spawn()
        .expect("spawn import");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (users, ..) = store_counts(&env).await;
        if users >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "import made no progress");
        if let Ok(Some(st)) = child.try_wait() {
            panic!("import finished before it could be killed: {st}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().ok();
    let (partial, ..) = store_counts(&env).await;
    assert!(
        partial > 0 && (partial as usize) < N,
        "killed mid-apply: {partial} users"
    );
    assert_eq!(
        partial % 50,
        0,
        "whole chunks only: a user and its device commit together"
    );

    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["created"].as_u64(),
        Some((N as u64) - partial as u64),
        "{r}"
    );
    assert_eq!(r["disabled"], 0);
    let (users, exts, ids, with_device) = store_counts(&env).await;
    assert_eq!(
        (users, exts, ids, with_device),
        (N as i64, N as i64, N as i64, N as i64)
    );

    let (code, r) = env.import(&[&f]);
    assert_eq!(
        (code, r["created"].as_u64(), r["unchanged"].as_u64()),
        (0, Some(0), Some(N as u64))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_at_once_on_sqlite_never_hit_database_is_locked() {
    // Two domains, so the runs do not wait on each other's sync lock and
    // really write to one SQLite file at the same time.
    let extra = r#"
[[domain]]
name = "beta.example"
numbering = ["1000-8999"]
[[source]]
name = "hr-b"
kind = "csv"
domain = "beta.example"
inbox = "var/inbox-b"
mode = "delta"
# Mail at the default 10 a second would add 150 s and test nothing here.
[mail]
messages_per_second = 0
"#;
    let env = Env::with_extra(Backend::Sqlite, "writes_per_second = 0\nburst = 10\nchunk_size = 25\nmax_disable = 0\nmax_disable_percent = 0\nmax_billable = 1000000\n", extra).await;
    let a = env.write("a.csv", people_csv(1, 1500).as_bytes());
    let bfile = env.write("b.csv", people_csv(5001, 1500).as_bytes());
    let spawn = |source: &str, file: &std::path::Path| {
        env.cmd(&[
            "import",
            "--source",
            source,
            file.to_str().unwrap_or_default(),
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn import")
    };
    let (ca, cb) = (spawn("hr-drop", &a), spawn("hr-b", &bfile));
    for child in [ca, cb] {
        let out = child.wait_with_output().expect("wait import");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(r["created"], 1500, "{r}");
    }
    let (users, ..) = store_counts(&env).await;
    assert_eq!(users, 3000);
}

async fn two_runs_of_one_domain_take_turns(b: Backend) {
    let extra = r#"
[[source]]
name = "hr-b"
kind = "csv"
domain = "acme.example"
inbox = "var/inbox-b"
mode = "delta"
# Mail at the default 10 a second would add 150 s and test nothing here.
[mail]
messages_per_second = 0
"#;
    let env = Env::with_extra(b, "writes_per_second = 2000\nburst = 100\nmax_disable = 0\nmax_disable_percent = 0\nmax_billable = 1000000\n", extra).await;
    let a = env.write("a.csv", people_csv(1, 1000).as_bytes());
    let bfile = env.write("b.csv", people_csv(5001, 1000).as_bytes());
    let spawn = |source: &str, file: &std::path::Path| {
        env.cmd(&[
            "import",
            "--source",
            source,
            file.to_str().unwrap_or_default(),
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn import")
    };
    let (ca, cb) = (spawn("hr-drop", &a), spawn("hr-b", &bfile));
    for child in [ca, cb] {
        let out = child.wait_with_output().expect("wait import");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (users, exts, ..) = store_counts(&env).await;
    assert_eq!((users, exts), (2000, 2000), "no extension handed out twice");
}
