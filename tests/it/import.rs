//! `import` end to end on both stores: creation, idempotence, refused rows,
//! leavers and thresholds, plan/apply, conflicts.

use crate::common::{by_source_id, people_csv, Backend, Env, LIMITS_OPEN};
use serde_json::Value;
use std::path::Path;

crate::both_stores!(
    sample_import_creates_users_and_rerun_changes_nothing,
    refused_rows_name_file_row_and_column_and_good_rows_land,
    truncated_file_is_refused_whole,
    truncated_file_beside_a_good_one_leaves_no_trace,
    truncated_file_planned_in_part_leaves_no_trace,
    ids_and_extensions_repeated_across_files_refuse_the_later_row,
    leavers_are_disabled_thresholds_refuse_and_empty_files_disable_no_one,
    reviewed_plan_applies_exactly_or_not_at_all,
    extension_changes_and_foreign_users_are_conflicts,
    excel_exports_in_other_encodings_import,
    the_largest_chunk_is_applied_set_based,
    text_that_array_literals_must_escape_round_trips,
);

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/new-hires.csv")
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

async fn sample_import_creates_users_and_rerun_changes_nothing(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let (code, r) = env.import(&[&sample()]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(count(&r, "created"), 6, "{r}");
    assert_eq!(
        (count(&r, "unchanged"), count(&r, "skipped")),
        (0, 1),
        "the terminated row creates nobody, and is counted apart: {r}"
    );
    assert_eq!(r["dry_run"], false);
    assert!(r["run_id"].as_i64().is_some());
    assert_eq!(r["billable"]["devices"], 6);
    assert_eq!(r["billable"]["call_center_seats"], 2);

    let users = env.users();
    assert_eq!(users.len(), 6);
    let ada = by_source_id(&users, "E1001");
    assert_eq!(ada["extension"], "2001", "the row's own extension");
    assert_eq!(ada["site"], "HQ");
    assert_eq!(ada["status"], "active");
    assert_eq!(ada["source"], "hr-drop");
    assert_eq!(ada["tags"], serde_json::json!(["New", "Password Required"]));
    assert_eq!(ada["devices"][0]["type"], "sip");
    assert_eq!(ada["devices"][0]["enabled"], true);
    let grace = by_source_id(&users, "E1002");
    assert_eq!(
        grace["extension"], "2000",
        "lowest free in the HQ site range"
    );
    let alan = by_source_id(&users, "E1003");
    assert_eq!(alan["scope"], "Call Center Agent", "group rule");
    assert_eq!(alan["extension"], "1000", "unconfigured site: domain range");
    assert_eq!(alan["site"], "Berlin", "naming a new site creates it");
    let kj = by_source_id(&users, "E1004");
    assert_eq!(kj["emails"].as_array().map(Vec::len), Some(2));
    let linus = by_source_id(&users, "E1006");
    assert_eq!(
        linus["tags"],
        serde_json::json!(["Setup Required", "Password Required"])
    );
    for u in &users {
        for k in [
            "domain",
            "extension",
            "first_name",
            "last_name",
            "emails",
            "department",
            "site",
            "scope",
            "status",
            "tags",
            "source",
            "source_id",
            "devices",
        ] {
            assert!(u.get(k).is_some(), "users json lacks {k}: {u}");
        }
    }

    // Same input again: nothing changes.
    let (code, r2) = env.import(&[&sample()]);
    assert_eq!(code, 0, "{r2}");
    assert_eq!(
        (
            count(&r2, "created"),
            count(&r2, "updated"),
            count(&r2, "unchanged"),
            count(&r2, "skipped")
        ),
        (0, 0, 6, 1),
        "{r2}"
    );
    assert_eq!(env.users(), users, "a re-run changes nothing");

    // Tag filter and run history.
    let (_, setup) = env.json(&["users", "--tag", "setup-required"]);
    assert_eq!(setup.as_array().map(Vec::len), Some(1));
    let (code, runs) = env.json(&["runs"]);
    assert_eq!(code, 0);
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
    assert_eq!(runs[0]["outcome"], "ok");
}

async fn refused_rows_name_file_row_and_column_and_good_rows_land(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let f = env.write(
        "bad.csv",
        b"Employee ID,First Name,Last Name,Email,Ext,Scope,Voicemail,Employment Status\n\
E1,Ann,A,ann@acme.example,1001,,,active\n\
,Bob,B,bob@acme.example,,,,active\n\
E3,Cat,C,cat(at)acme,,,,active\n\
E1,Dup,D,dup@acme.example,,,,active\n\
E5,Eve,E,eve@acme.example,,Wizard,,active\n\
E6,Fay,F,fay@acme.example,,,maybe,active\n\
E7,Gus,G,gus@acme.example,,,,on strike\n\
E8,Hal,H,hal@acme.example,1001,,,active\n\
E9,Ivy,I,ivy@acme.example,,,,active\n",
    );
    let (code, r) = env.import(&[&f]);
    assert_eq!(code, 1, "some rows refused: {r}");
    assert_eq!(count(&r, "created"), 2, "{r}");
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    let got: Vec<(u64, String)> = errors
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap_or(0),
                e["column"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = [
        (3, "Employee ID"),
        (4, "Email"),
        (5, "Employee ID"),
        (6, "Scope"),
        (7, "Voicemail"),
        (8, "Employment Status"),
        (9, "Ext"),
    ]
    .iter()
    .map(|(r, c)| (*r, c.to_string()))
    .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{errors:?}");
    for e in &errors {
        assert!(e["file"].as_str().unwrap_or("").ends_with("bad.csv"), "{e}");
        assert!(!e["message"].as_str().unwrap_or("").is_empty());
    }
    let users = env.users();
    let ids: Vec<&str> = users
        .iter()
        .filter_map(|u| u["source_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"E1") && ids.contains(&"E9"));
    assert_eq!(by_source_id(&users, "E1")["extension"], "1001");

    // The per-row result report names every row's fate.
    let result = r["files"][0]["result_csv"]
        .as_str()
        .expect("result csv path")
        .to_string();
    let text = std::fs::read_to_string(&result).expect("result csv");
    assert!(text.contains("pbx_result"), "{text}");
    assert!(text.contains("Wizard"), "{text}");
}

async fn truncated_file_is_refused_whole(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let f = env.write(
        "cut.csv",
        b"Employee ID,First Name,Last Name,Email,Job Title\nE1,Ann,A,ann@acme.example,Boss\nE2,Bob,B,bob@acme.example,\"Head of",
    );
    let (code, r) = env.import(&[&f]);
    // Refused whole: the run failed (exit 4), it is no partial success.
    assert_eq!((code, r["outcome"].as_str()), (4, Some("failed")), "{r}");
    assert_eq!(
        count(&r, "created"),
        0,
        "nothing in a truncated file is applied: {r}"
    );
    assert!(r["errors"][0]["row"].is_null() || r["errors"][0]["row"].as_u64().is_some());
    assert!(env.users().is_empty());
}

/// Records are mapped as they are read, before a file can turn out to be
/// truncated: what such a file's rows claimed (an employee id, a requested
/// extension) must be forgotten, or the good file beside it is refused.
async fn truncated_file_beside_a_good_one_leaves_no_trace(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let cut = env.write(
        "cut.csv",
        b"Employee ID,First Name,Last Name,Email,Extension,Job Title\nE1,Ann,A,ann@acme.example,2001,Boss\nE9,Bob,B,bob@acme.example,2002,\"Head of",
    );
    let good = env.write(
        "good.csv",
        b"Employee ID,First Name,Last Name,Email,Extension\nE1,Ann,A,ann@acme.example,2001\nE2,Cy,C,cy@acme.example,2002\n",
    );
    let (_, r) = env.import(&[&cut, &good]);
    assert_eq!(count(&r, "created"), 2, "{r}");
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "only the truncated file is refused: {r}");
    assert!(
        errors[0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("cut.csv")),
        "{r}"
    );
    let users = env.users();
    assert_eq!(users.len(), 2);
    assert_eq!(by_source_id(&users, "E1")["extension"], "2001");
    assert_eq!(by_source_id(&users, "E2")["extension"], "2002");
}

/// A large file is planned while it is still being read: rows of a file
/// that turns out truncated have been planned by then (a known user named,
/// an extension taken). The run forgets them with the file: the known user
/// is not counted as read, and the good file beside it gets the extension.
async fn truncated_file_planned_in_part_leaves_no_trace(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let first = env.write(
        "first.csv",
        b"Employee ID,First Name,Last Name,Email\nK1,Kim,K,kim@acme.example\n",
    );
    let (_, r) = env.import(&[&first]);
    assert_eq!(count(&r, "created"), 1, "{r}");
    let mut cut = String::from("Employee ID,First Name,Last Name,Email,Extension\n");
    cut.push_str("E1,Ann,A,ann@acme.example,2001\nK1,Kim,K,kim@acme.example,\n");
    for i in 0..3000 {
        cut.push_str(&format!("C{i},Cy,C,c{i}@acme.example,\n"));
    }
    cut.push_str("C9999,Bob,B,bob@acme.example,\"Head of");
    let cut = env.write("cut.csv", cut.as_bytes());
    let good = env.write(
        "good.csv",
        b"Employee ID,First Name,Last Name,Email,Extension\nE1,Ann,A,ann@acme.example,2001\n",
    );
    let (_, r) = env.import(&[&cut, &good]);
    assert_eq!(count(&r, "created"), 1, "{r}");
    assert_eq!(
        count(&r, "unchanged"),
        0,
        "K1 was named only by the refused file: {r}"
    );
    let users = env.users();
    assert_eq!(users.len(), 2, "nothing of the truncated file is applied");
    assert_eq!(by_source_id(&users, "E1")["extension"], "2001");
}

/// Two files of one import are one read: an employee id or a requested
/// extension that the first file already had refuses the second file's row,
/// in the report and in that file's result CSV.
async fn ids_and_extensions_repeated_across_files_refuse_the_later_row(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let one = env.write(
        "one.csv",
        b"Employee ID,First Name,Last Name,Email,Extension\nE1,Ann,A,ann@acme.example,2001\nE2,Bo,B,bo@acme.example,2002\n",
    );
    let two = env.write(
        "two.csv",
        b"Employee ID,First Name,Last Name,Email,Extension\nE1,Ann,A,ann2@acme.example,2005\nE3,Cy,C,cy@acme.example,2002\nE4,Di,D,di@acme.example,2004\n",
    );
    let (_, r) = env.import(&[&one, &two]);
    assert_eq!(count(&r, "created"), 3, "{r}");
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    let said = |row: u64, what: &str| {
        errors.iter().any(|e| {
            e["file"].as_str().is_some_and(|f| f.ends_with("two.csv"))
                && e["row"] == row
                && e["message"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    assert!(said(2, "employee id E1 already appears in"), "{r}");
    assert!(said(3, "extension 2002 is already requested"), "{r}");
    assert_eq!(errors.len(), 2, "{r}");
    let users = env.users();
    assert_eq!(by_source_id(&users, "E1")["extension"], "2001");
    assert_eq!(by_source_id(&users, "E2")["extension"], "2002");
    assert_eq!(by_source_id(&users, "E4")["extension"], "2004");
    let result = r["files"]
        .as_array()
        .and_then(|f| {
            f.iter()
                .find(|f| f["file"].as_str().is_some_and(|n| n.ends_with("two.csv")))
        })
        .and_then(|f| f["result_csv"].as_str())
        .map(std::fs::read_to_string)
        .unwrap_or_else(|| panic!("no result CSV for two.csv: {r}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines.len(), 4, "{result}");
    assert!(
        lines[1].starts_with("2,E1,") && lines[1].contains(",error,"),
        "{result}"
    );
    assert!(
        lines[2].starts_with("3,E3,") && lines[2].contains(",error,"),
        "{result}"
    );
    assert!(
        lines[3].starts_with("4,E4,") && lines[3].contains(",create,2004"),
        "{result}"
    );
}

async fn leavers_are_disabled_thresholds_refuse_and_empty_files_disable_no_one(b: Backend) {
    let env = Env::new(b, "writes_per_second = 0\nburst = 10\nmax_disable = 3\nmax_disable_percent = 50\nmax_billable = 1000\n").await;
    let all = env.write("all.csv", people_csv(1, 10).as_bytes());
    let (code, r) = env.import(&[&all]);
    assert_eq!((code, count(&r, "created")), (0, 10), "{r}");

    // E10 leaves (absent from a full export).
    let nine = env.write("nine.csv", people_csv(1, 9).as_bytes());
    let (code, r) = env.import(&[&nine]);
    assert_eq!((code, count(&r, "disabled")), (0, 1), "{r}");
    let e10 = by_source_id(&env.users(), "E10");
    assert_eq!(e10["status"], "disabled");
    assert_eq!(
        e10["devices"][0]["enabled"], false,
        "devices go off with the user"
    );

    // Four more would leave: over max_disable = 3, refused whole (exit 3).
    let five = env.write("five.csv", people_csv(1, 5).as_bytes());
    let (code, r) = env.import(&[&five]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["outcome"], "refused");
    assert_eq!(count(&r, "disabled"), 0);
    assert!(
        env.users()
            .iter()
            .filter(|u| u["status"] == "active")
            .count()
            == 9
    );

    // An empty export (header only) disables no one.
    let empty = env.write("empty.csv", b"Employee ID,First Name,Last Name\n");
    let (code, r) = env.import(&[&empty]);
    assert_eq!((code, count(&r, "disabled")), (0, 0), "{r}");

    // A status column saying "terminated" disables; coming back re-enables.
    let mut csv = people_csv(1, 9).replace(
        "Work Email,Department",
        "Work Email,Department,Employment Status",
    );
    csv = csv
        .lines()
        .map(|l| {
            if l.starts_with("Employee") {
                l.to_string()
            } else if l.starts_with("E2,") {
                format!("{l},Terminated")
            } else {
                format!("{l},Active")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    csv.push_str("\nE10,First10,Last10,user10@acme.example,Dept3,Active\n");
    let back = env.write("back.csv", csv.as_bytes());
    let (code, r) = env.import(&[&back]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (count(&r, "disabled"), count(&r, "reenabled")),
        (1, 1),
        "{r}"
    );
    let users = env.users();
    assert_eq!(by_source_id(&users, "E2")["status"], "disabled");
    let e10 = by_source_id(&users, "E10");
    assert_eq!(e10["status"], "active");
    assert_eq!(e10["devices"][0]["enabled"], true);
}

async fn reviewed_plan_applies_exactly_or_not_at_all(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let f = env.write("p.csv", people_csv(1, 5).as_bytes());
    let plan = env.path("plan.json");
    let (code, r) = env.json(&[
        "import",
        f.to_str().unwrap_or_default(),
        "--dry-run",
        "--plan-out",
        plan.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["dry_run"], true);
    assert_eq!(count(&r, "created"), 5, "a dry run says what would happen");
    assert!(env.users().is_empty(), "a dry run changes nothing");

    let (code, r) = env.json(&["apply", plan.to_str().unwrap_or_default()]);
    assert_eq!((code, count(&r, "created")), (0, 5), "{r}");
    let exts: Vec<String> = env
        .users()
        .iter()
        .map(|u| u["extension"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        exts,
        ["1000", "1001", "1002", "1003", "1004"],
        "the extensions of the plan"
    );

    // The same plan again: the store changed since it was made.
    let out = env.run(&["apply", plan.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed since the plan"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.users().len(), 5);
}

async fn extension_changes_and_foreign_users_are_conflicts(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let one = env.write(
        "one.csv",
        b"Employee ID,First Name,Last Name,Ext\nE1,Ann,A,1001\n",
    );
    assert_eq!(env.import(&[&one]).0, 0);
    let moved = env.write(
        "moved.csv",
        b"Employee ID,First Name,Last Name,Ext\nE1,Ann,A,1002\n",
    );
    let (code, r) = env.import(&[&moved]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["conflicts"][0]["source_id"], "E1");
    assert!(
        r["conflicts"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("never be changed"),
        "{r}"
    );
    assert_eq!(by_source_id(&env.users(), "E1")["extension"], "1001");

    // A user made by hand holds 1500: a row asking for it is a conflict, and
    // a second source's user with the same employee id is never taken over.
    hand_made_user(&env, "1500").await;
    let want = env.write(
        "want.csv",
        b"Employee ID,First Name,Last Name,Ext\nE1,Ann,A,1001\nE2,Bo,B,1500\n",
    );
    let (code, r) = env.import(&[&want]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["conflicts"][0]["source_id"], "E2");
    let users = env.users();
    let hand = users
        .iter()
        .find(|u| u["extension"] == "1500")
        .expect("hand-made user");
    assert!(hand["source"].is_null());
    assert_eq!(hand["first_name"], "Reception");
}

async fn hand_made_user(env: &Env, ext: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = if let Some(rel) = env.url.strip_prefix("sqlite://") {
        format!("sqlite://{}", env.path(rel).display())
    } else {
        env.url.clone()
    };
    let mut c = sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect store");
    sqlx::query(
        "INSERT INTO users (domain_id, extension, first_name, created_at, updated_at) \
         SELECT id, $1, 'Reception', 0, 0 FROM domains WHERE name = 'acme.example'",
    )
    .bind(ext)
    .execute(&mut c)
    .await
    .expect("insert hand-made user");
    c.close().await.ok();
}

async fn excel_exports_in_other_encodings_import(b: Backend) {
    let env = Env::with_extra(b, LIMITS_OPEN, "").await;
    for (name, min) in [
        ("excel-utf8-bom-crlf.csv", 4),
        ("semicolon-win1252.csv", 2),
        ("utf16le-tab.csv", 2),
    ] {
        let (code, r) = env.import(&[&crate::common::fixture(name)]);
        assert!(code == 0 || code == 1, "{name}: {r}");
        assert!(count(&r, "created") >= min, "{name}: {r}");
    }
    let users = env.users();
    let names: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["first_name"].as_str().unwrap_or(""),
                u["last_name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        names.iter().any(|n| n.contains('é') || n.contains('ü')),
        "Windows-1252 names decoded: {names:?}"
    );
}

/// `chunk_size = 5000` (the most allowed) must not exceed the engine's bound
/// values per statement: that failed every chunk, and the fallback applied
/// 100k users one by one, 40 times slower.
async fn the_largest_chunk_is_applied_set_based(b: Backend) {
    let limits = "writes_per_second = 0\nburst = 10\nchunk_size = 5000\nmax_disable = 0\nmax_disable_percent = 0\nmax_billable = 1000000\n";
    let env = Env::new(b, limits).await;
    let csv = env.write("big.csv", people_csv(0, 3000).as_bytes());
    let p = csv.display().to_string();
    let out = env.run(&["import", &p, "--no-mail", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{r} {stderr}");
    assert_eq!(count(&r, "created"), 3000, "{r}");
    assert!(
        !stderr.contains("one by one"),
        "a chunk fell back to per-user writes: {stderr}"
    );
    assert_eq!(
        env.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM devices")
            .await,
        "3000"
    );
}

/// PostgreSQL writes rows as one array literal per column (`unnest`):
/// quotes, backslashes, braces, commas, the word NULL and non-ASCII must come back exactly as the file had them, on both engines.
async fn text_that_array_literals_must_escape_round_trips(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let names = [
        ("T1", r#"Say "hi""#, r"Back\slash\"),
        ("T2", "{Brace}", "a,b,c"),
        ("T3", "NULL", "Null"),
        ("T4", "Zoë 😀", "O'Brien-Łukasz"),
        ("T5", "Semi;colon", r#"\"x\""#),
        // COPY's text format reads an unescaped \N as NULL.
        ("T6", r"\N", r"\\N"),
    ];
    let mut csv = String::from("Employee ID,First Name,Last Name,Job Title\n");
    for (id, first, last) in names {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        csv.push_str(&format!(
            "{id},{},{},{}\n",
            q(first),
            q(last),
            q(&format!("{first}/{last}"))
        ));
    }
    let file = env.write("tricky.csv", csv.as_bytes());
    let (code, r) = env.import(&[&file]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(count(&r, "created"), names.len() as u64, "{r}");
    let users = env.users();
    for (id, first, last) in names {
        let u = by_source_id(&users, id);
        assert_eq!(
            (u["first_name"].as_str(), u["last_name"].as_str()),
            (Some(first), Some(last)),
            "{u}"
        );
    }
    let (code, r) = env.import(&[&file]);
    assert_eq!(
        (code, count(&r, "unchanged")),
        (0, names.len() as u64),
        "a re-run changes nothing: {r}"
    );
}
