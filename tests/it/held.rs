//! Held runs from the CLI, on both engines: a CSV that would disable 60 of
//! 100 users is held, not lost; a re-run adds no second hold; `held show`
//! names the 60; approve applies exactly that plan and is audited; a plan
//! whose domain changed since is refused.

use crate::common::{people_csv, Backend, Env};

crate::both_stores!(
    a_refused_run_is_held_and_approved_exactly,
    a_held_plan_is_refused_once_the_domain_changed
);

pub(crate) const LIMITS_TEN: &str = "writes_per_second = 0\nburst = 10\nmax_disable = 10\nmax_disable_percent = 100\nmax_billable = 1000000\n";

/// 100 people imported, then a file with the first 40 only.
pub(crate) fn hold_sixty(env: &Env) -> i64 {
    let all = env.write("all.csv", people_csv(0, 100).as_bytes());
    let (code, r) = env.import(&[&all]);
    assert_eq!(code, 0, "{r}");
    let forty = env.write("forty.csv", people_csv(0, 40).as_bytes());
    let (code, r) = env.import(&[&forty]);
    assert_eq!(code, 3, "refused: {r}");
    let note = r["notes"].to_string();
    assert!(note.contains("held as #"), "{r}");
    let (_, held) = env.json(&["held", "list"]);
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");
    assert_eq!(held[0]["disables"], 60, "{held}");
    held[0]["id"].as_i64().expect("id")
}

async fn a_refused_run_is_held_and_approved_exactly(b: Backend) {
    let env = Env::new(b, LIMITS_TEN).await;
    let id = hold_sixty(&env);
    // The same refusal again: planned and reported, no second hold.
    let forty = env.write(
        "forty-again.csv",
        crate::common::people_csv(0, 40).as_bytes(),
    );
    let (code, r) = env.import(&[&forty]);
    assert_eq!(code, 3);
    assert!(
        r["notes"]
            .to_string()
            .contains(&format!("already held as #{id}")),
        "{r}"
    );
    let (_, held) = env.json(&["held", "list", "--all"]);
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");

    let (code, shown) = env.json(&["held", "show", &id.to_string()]);
    assert_eq!(code, 0);
    let actions = shown["actions"].as_array().cloned().unwrap_or_default();
    assert_eq!(actions.len(), 60, "{shown}");
    assert!(actions.iter().all(|a| a["action"] == "disable"));
    assert!(
        actions
            .iter()
            .any(|a| a["name"] == "First99 Last99" && a["department"] == "Dept1"),
        "{shown}"
    );

    let out = env.run(&["held", "approve", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("60 disabled"));
    let users = env.users();
    let disabled = users.iter().filter(|u| u["status"] == "disabled").count();
    assert_eq!(disabled, 60);
    assert_eq!(
        env.scalar("SELECT actor || ' ' || action || ' ' || target FROM audit WHERE action = 'held.approve'").await,
        format!("{} (cli) held.approve held run {id}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
    );
    // Decided once.
    assert_eq!(
        env.run(&["held", "approve", &id.to_string()]).status.code(),
        Some(2)
    );
    assert_eq!(
        env.run(&["held", "discard", &id.to_string()]).status.code(),
        Some(2)
    );
    let (_, held) = env.json(&["held", "list"]);
    assert_eq!(held.as_array().map(Vec::len), Some(0), "{held}");
}

async fn a_held_plan_is_refused_once_the_domain_changed(b: Backend) {
    let env = Env::new(b, LIMITS_TEN).await;
    let id = hold_sixty(&env);
    // Something else wrote to the domain since the plan was made.
    env.scalar("UPDATE domains SET revision = revision + 1 RETURNING CAST(revision AS TEXT)")
        .await;
    let out = env.run(&["held", "approve", &id.to_string()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed since its plan was made"), "{err}");
    assert!(env.users().iter().all(|u| u["status"] == "active"));
    let out = env.run(&["held", "discard", &id.to_string()]);
    assert!(out.status.success());
    let (_, held) = env.json(&["held", "list", "--all"]);
    assert_eq!(held[0]["status"], "discarded", "{held}");
}
