//! The drop folder: claim, import, archive (or fail) beside a result report.

use crate::common::{people_csv, Backend, Env, LIMITS_OPEN};

crate::both_stores!(dropped_files_are_archived_with_results_and_bad_files_fail);

fn listing(env: &Env, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.path(dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn dropped_files_are_archived_with_results_and_bad_files_fail(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    env.write("var/inbox/new-hires.csv", people_csv(1, 3).as_bytes());
    // Still being written by Excel / a browser: never picked up.
    env.write("var/inbox/~$new-hires.csv", b"lock");
    env.write("var/inbox/export.csv.part", b"Employee ID,First");
    let out = env.run(&["import", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["created"], 3);

    assert_eq!(
        listing(&env, "var/inbox"),
        ["export.csv.part", "~$new-hires.csv"]
    );
    assert!(listing(&env, "var/processing").is_empty());
    let archived = listing(&env, "var/archive");
    assert_eq!(archived.len(), 2, "{archived:?}");
    let result = archived
        .iter()
        .find(|n| n.ends_with(".result.csv"))
        .expect("result report");
    let text = std::fs::read_to_string(env.path("var/archive").join(result)).expect("read result");
    assert!(
        text.contains("pbx_result") && text.contains("create"),
        "{text}"
    );

    // A truncated drop goes to failed/, with the reason in its report.
    env.write(
        "var/inbox/cut.csv",
        b"Employee ID,First Name,Last Name\nE9,Ann,\"A",
    );
    let out = env.run(&["import", "--format", "json"]);
    // Refused whole: the run failed (exit 4), naming where the file is now.
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let failed = listing(&env, "var/failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["outcome"], "failed", "{report}");
    let named = report["errors"][0]["file"].as_str().unwrap_or_default();
    assert!(named.contains("/failed/"), "{report}");
    assert!(!report.to_string().contains("/processing/"), "{report}");
    assert_eq!(env.users().len(), 3);

    // Nothing left: a second pass does nothing.
    let out = env.run(&["import"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to import"));
}
