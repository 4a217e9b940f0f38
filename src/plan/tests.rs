//! Table-driven tests of the planner (pure: no store needed).

use super::*;
use crate::config::Config;
use crate::model::{DeviceType, Email, Scope, UserKind};
use std::path::Path;

fn config(extra_limits: &str) -> Config {
    Config::from_str(
        &format!(
            r#"
[store]
url = "sqlite://x.db"
[limits]
max_disable = 2
max_disable_percent = 50
max_billable = 5
{extra_limits}
[[domain]]
name = "acme.example"
numbering = ["1000-1009"]
reserved = ["1003"]
[[domain.site]]
name = "HQ"
numbering = ["1005-1009"]
"#
        ),
        Path::new("/tmp/x.toml"),
    )
    .unwrap()
}

pub(super) fn fields(name: &str) -> UserFields {
    UserFields {
        first_name: name.into(),
        last_name: Some("Doe".into()),
        emails: vec![Email::parse(&format!("{}@acme.example", name.to_lowercase())).unwrap()],
        department: None,
        site: None,
        scope: Scope::BasicUser,
        kind: UserKind::Person,
        title: None,
        caller_id: None,
        voicemail: true,
        device: Some(DeviceType::Sip),
        force_login: false,
    }
}

fn spec(id: &str) -> UserSpec {
    UserSpec {
        source_id: id.into(),
        row: Some(2),
        file: "f.csv".into(),
        fields: Box::new(fields(id)),
        requested_extension: None,
        active: true,
    }
}

fn stored(id: i64, ext: &str, source: Option<&str>, sid: &str, status: Status) -> StoredUser {
    stored_with(id, ext, source, sid, status, &fields(sid))
}

fn stored_with(
    id: i64,
    ext: &str,
    source: Option<&str>,
    sid: &str,
    status: Status,
    f: &UserFields,
) -> StoredUser {
    StoredUser::new(id, ext, (source, source.map(|_| sid)), status, Some(0), f)
}

struct Case {
    name: &'static str,
    mode: SyncMode,
    complete: bool,
    changed_only: bool,
    specs: Vec<UserSpec>,
    stored: Vec<StoredUser>,
    errors: Vec<RowError>,
    /// (action name, source id, extension if relevant)
    want: Vec<(&'static str, &'static str, Option<&'static str>)>,
}

fn plan_for(c: &Case, cfg: &Config) -> Plan {
    make_plan(PlanInput {
        source: "hr",
        mode: c.mode,
        delete_after_days: Some(30),
        domain: &cfg.domains[0],
        limits: &cfg.limits,
        specs: c.specs.clone(),
        errors: c.errors.clone(),
        complete: c.complete,
        changed_only: c.changed_only,
        stored: &c.stored,
        base_revision: 7,
        now: 100 * 86_400,
        files: vec!["f.csv".into()],
    })
}

fn ext_of(a: &Action) -> Option<String> {
    match a {
        Action::Create { extension, .. } => Some(extension.to_string()),
        Action::Update { extension, .. }
        | Action::Reenable { extension, .. }
        | Action::Disable { extension, .. }
        | Action::Delete { extension, .. } => Some(extension.to_string()),
        Action::Unchanged { extension, .. } => extension.as_ref().map(ToString::to_string),
        Action::Conflict { .. } => None,
    }
}

fn with<F: FnOnce(&mut UserSpec)>(id: &str, f: F) -> UserSpec {
    let mut s = spec(id);
    f(&mut s);
    s
}

#[test]
fn plan_table() {
    use Status::{Active, Disabled};
    let hr = Some("hr");
    let cases = vec![
        Case {
            name: "new users get the lowest free numbers, skipping reserved and taken",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![spec("a"), spec("b"), spec("c")],
            stored: vec![stored(1, "1001", None, "-", Active)],
            errors: vec![],
            want: vec![
                ("create", "a", Some("1000")),
                ("create", "b", Some("1002")),
                ("create", "c", Some("1004")),
            ],
        },
        Case {
            name: "site ranges first; requested extension honoured",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![
                with("a", |s| s.fields.site = Some("HQ".into())),
                with("b", |s| {
                    s.requested_extension = Extension::parse("1008").ok()
                }),
            ],
            stored: vec![],
            errors: vec![],
            want: vec![("create", "a", Some("1005")), ("create", "b", Some("1008"))],
        },
        Case {
            name: "reserved or out-of-plan request falls back to allocation; letters allowed",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![
                with("a", |s| {
                    s.requested_extension = Extension::parse("1003").ok()
                }),
                with("b", |s| {
                    s.requested_extension = Extension::parse("5555").ok()
                }),
                with("c", |s| {
                    s.requested_extension = Extension::parse("jsmith").ok()
                }),
            ],
            stored: vec![],
            errors: vec![],
            want: vec![
                ("create", "a", Some("1000")),
                ("create", "b", Some("1001")),
                ("create", "c", Some("jsmith")),
            ],
        },
        Case {
            name: "requested extension held by a hand-made user is a conflict",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![with("a", |s| {
                s.requested_extension = Extension::parse("1001").ok()
            })],
            stored: vec![stored(1, "1001", None, "-", Active)],
            errors: vec![],
            want: vec![("conflict", "a", None)],
        },
        Case {
            name: "a user of another source with the same id is not taken over",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![spec("a")],
            stored: vec![stored(1, "1000", Some("ldap"), "a", Active)],
            errors: vec![],
            want: vec![("create", "a", Some("1001"))],
        },
        Case {
            name: "unchanged, update, extension change conflict",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![
                spec("a"),
                with("b", |s| s.fields.department = Some("Sales".into())),
                with("c", |s| {
                    s.requested_extension = Extension::parse("1009").ok()
                }),
            ],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Active),
                stored(3, "1002", hr, "c", Active),
            ],
            errors: vec![],
            want: vec![
                ("unchanged", "a", Some("1000")),
                ("update", "b", Some("1001")),
                ("conflict", "c", None),
            ],
        },
        Case {
            name: "full mode disables the absent; refused rows are not absent",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![spec("a")],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Active),
                stored(3, "1002", hr, "c", Active),
                stored(4, "1004", hr, "d", Active),
            ],
            errors: vec![RowError {
                file: "f.csv".into(),
                row: Some(3),
                column: None,
                message: "bad".into(),
                source_id: Some("c".into()),
            }],
            want: vec![
                ("unchanged", "a", Some("1000")),
                ("disable", "b", Some("1001")),
                ("disable", "d", Some("1004")),
            ],
        },
        Case {
            name: "delta mode disables no one by absence",
            mode: SyncMode::Delta,
            complete: true,
            changed_only: false,
            specs: vec![spec("a")],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Active),
            ],
            errors: vec![],
            want: vec![("unchanged", "a", Some("1000"))],
        },
        Case {
            name: "an incomplete read disables no one",
            mode: SyncMode::Full,
            complete: false,
            changed_only: false,
            specs: vec![spec("a")],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Active),
            ],
            errors: vec![],
            want: vec![("unchanged", "a", Some("1000"))],
        },
        Case {
            name: "an empty read disables no one",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![],
            stored: vec![stored(1, "1000", hr, "a", Active)],
            errors: vec![],
            want: vec![],
        },
        Case {
            name: "leavers: disable, stay disabled, re-enable, never created",
            mode: SyncMode::Delta,
            complete: true,
            changed_only: false,
            specs: vec![
                with("a", |s| s.active = false),
                with("b", |s| s.active = false),
                spec("c"),
                with("d", |s| s.active = false),
            ],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Disabled),
                stored(3, "1002", hr, "c", Disabled),
            ],
            errors: vec![],
            want: vec![
                ("disable", "a", Some("1000")),
                ("unchanged", "b", Some("1001")),
                ("reenable", "c", Some("1002")),
                ("unchanged", "d", None),
            ],
        },
        Case {
            name: "a changed-only read disables no one, but re-enables and updates",
            mode: SyncMode::Delta,
            complete: true,
            changed_only: true,
            specs: vec![
                with("a", |s| s.active = false),
                spec("c"),
                with("e", |s| s.fields.title = Some("Boss".into())),
            ],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(3, "1002", hr, "c", Disabled),
                stored(4, "1003", hr, "e", Active),
            ],
            errors: vec![],
            want: vec![
                ("unchanged", "a", Some("1000")),
                ("reenable", "c", Some("1002")),
                ("update", "e", Some("1003")),
            ],
        },
        Case {
            name: "disabled long enough and absent: deleted",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: vec![spec("a")],
            stored: vec![
                stored(1, "1000", hr, "a", Active),
                stored(2, "1001", hr, "b", Disabled),
            ],
            errors: vec![],
            want: vec![
                ("unchanged", "a", Some("1000")),
                ("delete", "b", Some("1001")),
            ],
        },
        Case {
            name: "numbering plan exhausted is a conflict",
            mode: SyncMode::Full,
            complete: true,
            changed_only: false,
            specs: (0..10)
                .map(|i| spec(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i]))
                .collect(),
            stored: vec![],
            errors: vec![],
            want: vec![
                ("create", "a", Some("1000")),
                ("create", "b", Some("1001")),
                ("create", "c", Some("1002")),
                ("create", "d", Some("1004")),
                ("create", "e", Some("1005")),
                ("create", "f", Some("1006")),
                ("create", "g", Some("1007")),
                ("create", "h", Some("1008")),
                ("create", "i", Some("1009")),
                ("conflict", "j", None),
            ],
        },
    ];
    let cfg = config("");
    for c in &cases {
        let p = plan_for(c, &cfg);
        let actions = p.actions.to_vec();
        let got: Vec<(&str, &str, Option<String>)> = actions
            .iter()
            .map(|a| (a.name(), a.source_id(), ext_of(a)))
            .collect();
        let want: Vec<(&str, &str, Option<String>)> = c
            .want
            .iter()
            .map(|(a, s, e)| (*a, *s, e.map(str::to_string)))
            .collect();
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn update_lists_field_changes() {
    let cfg = config("");
    let old = stored(1, "1000", Some("hr"), "a", Status::Active);
    let new = with("a", |s| {
        s.fields.department = Some("Sales".into());
        s.fields.scope = Scope::OfficeManager;
    });
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs: vec![new],
        stored: vec![old],
        errors: vec![],
        want: vec![],
    };
    let p = plan_for(&c, &cfg);
    let Action::Update { changes, .. } = &p.actions.to_vec()[0] else {
        panic!("{:?}", p.actions)
    };
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["department", "scope"]);
    assert_eq!(changes[1].from.as_deref(), Some("Basic User"));
    assert_eq!(changes[1].to.as_deref(), Some("Office Manager"));
}

#[test]
fn a_sync_never_removes_a_device() {
    let cfg = config("");
    let old = stored(1, "1000", Some("hr"), "a", Status::Active);
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs: vec![with("a", |s| s.fields.device = None)],
        stored: vec![old],
        errors: vec![],
        want: vec![],
    };
    assert_eq!(plan_for(&c, &cfg).actions.to_vec()[0].name(), "unchanged");
}

#[test]
fn safety_thresholds_and_billable_counts() {
    let cfg = config("");
    let hr = Some("hr");
    // 3 of 4 active users absent: over max_disable (2).
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs: vec![spec("a")],
        stored: vec![
            stored(1, "1000", hr, "a", Status::Active),
            stored(2, "1001", hr, "b", Status::Active),
            stored(3, "1002", hr, "c", Status::Active),
            stored(4, "1004", hr, "d", Status::Active),
        ],
        errors: vec![],
        want: vec![],
    };
    let p = plan_for(&c, &cfg);
    assert!(
        matches!(p.refused, Some(Refusal::MaxDisable { .. })),
        "{:?}",
        p.refused
    );

    // 2 of 3: under the count but 66% > 50%.
    let c = Case {
        stored: c.stored[..3].to_vec(),
        ..c
    };
    let p = plan_for(&c, &cfg);
    assert!(
        matches!(p.refused, Some(Refusal::MaxDisablePercent { .. })),
        "{:?}",
        p.refused
    );

    // Billable: 3 creates with devices, 2 of them call-center seats = 5: allowed; one more refused.
    let mk = |ids: &[&str]| -> Vec<UserSpec> {
        ids.iter()
            .map(|id| {
                with(id, |s| {
                    if *id != "x" {
                        s.fields.scope = Scope::CallCenterAgent
                    }
                })
            })
            .collect()
    };
    let c = Case {
        name: "",
        mode: SyncMode::Delta,
        complete: true,
        changed_only: false,
        specs: mk(&["x", "y", "z"]),
        stored: vec![],
        errors: vec![],
        want: vec![],
    };
    let p = plan_for(&c, &cfg);
    assert_eq!(
        p.billable,
        Billable {
            devices: 3,
            call_center_seats: 2
        }
    );
    assert!(p.refused.is_none());
    let c = Case {
        specs: mk(&["x", "y", "z", "w"]),
        ..c
    };
    let p = plan_for(&c, &cfg);
    assert!(
        matches!(p.refused, Some(Refusal::MaxBillable { .. })),
        "{:?}",
        p.refused
    );
}

#[test]
fn plans_round_trip_through_json() {
    let cfg = config("");
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs: vec![spec("a"), with("b", |s| s.active = false)],
        stored: vec![stored(1, "1001", Some("hr"), "b", Status::Active)],
        errors: vec![],
        want: vec![],
    };
    let p = plan_for(&c, &cfg);
    let json = serde_json::to_string_pretty(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn a_blank_caller_id_keeps_the_site_default() {
    // Regression: users given their site's caller ID were "updated" on every run.
    let cfg = config("");
    let mut f = fields("a");
    f.caller_id = crate::model::PhoneNumber::parse("+15550100101").ok();
    let old = stored_with(1, "1000", Some("hr"), "a", Status::Active, &f);
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs: vec![spec("a")],
        stored: vec![old],
        errors: vec![],
        want: vec![],
    };
    assert_eq!(plan_for(&c, &cfg).actions.to_vec()[0].name(), "unchanged");
}

#[test]
fn a_free_number_asked_by_a_later_row_is_not_handed_to_an_earlier_one() {
    let cfg = config("");
    let specs = vec![
        with("a", |s| {
            s.requested_extension = Extension::parse("911").ok()
        }),
        with("b", |s| {
            s.requested_extension = Extension::parse("1000").ok()
        }),
    ];
    let c = Case {
        name: "",
        mode: SyncMode::Full,
        complete: true,
        changed_only: false,
        specs,
        stored: vec![],
        errors: vec![],
        want: vec![],
    };
    let p = plan_for(&c, &cfg);
    let actions = p.actions.to_vec();
    let got: Vec<(String, Option<String>)> = actions
        .iter()
        .map(|a| (a.name().to_string(), ext_of(a)))
        .collect();
    assert_eq!(
        got,
        [
            ("create".to_string(), Some("1001".to_string())),
            ("create".to_string(), Some("1000".to_string()))
        ]
    );
}

/// Every field of a user, one at a time, on both sides: the packed
/// comparison agrees with `diff`, and unpacking gives back what was packed.
#[test]
fn packed_stored_users_compare_like_diff_and_unpack_as_packed() {
    use crate::model::PhoneNumber;
    let phone = |n: &str| PhoneNumber::parse(n).ok();
    let email = |e: &str| Email::parse(e).unwrap();
    type Edit = fn(&mut UserFields);
    let edits: Vec<Edit> = vec![
        |_| {},
        |f| f.first_name = "Other".into(),
        |f| f.first_name = String::new(),
        |f| f.last_name = None,
        |f| f.last_name = Some(String::new()),
        |f| f.emails.clear(),
        |f| f.emails.push(Email::parse("second@acme.example").unwrap()),
        |f| f.department = Some("Sales".into()),
        |f| f.site = Some("HQ".into()),
        |f| f.scope = Scope::CallCenterAgent,
        |f| f.kind = UserKind::CallQueue,
        |f| f.title = Some("Boss".into()),
        |f| f.caller_id = PhoneNumber::parse("+15550100101").ok(),
        |f| f.caller_id = PhoneNumber::parse("+15550100102").ok(),
        |f| f.voicemail = false,
        |f| f.device = None,
        |f| f.device = Some(DeviceType::Web),
        |f| {
            f.device = Some(DeviceType::Web);
            f.force_login = true
        },
        |f| {
            f.device = None;
            f.force_login = true
        },
    ];
    let mut olds = Vec::new();
    for edit in &edits {
        let mut f = fields("a");
        edit(&mut f);
        olds.push(f);
    }
    let mut with_extras = fields("a");
    with_extras.caller_id = phone("+15550100101");
    with_extras.emails = vec![email("a@acme.example"), email("b@acme.example")];
    olds.push(with_extras);
    for (i, old) in olds.iter().enumerate() {
        let stored = stored_with(7, "1001", Some("hr"), "a", Status::Active, old);
        assert_eq!(&stored.fields(), old, "old {i} unpacks as packed");
        assert_eq!(stored.extension(), "1001");
        assert_eq!(
            (stored.source(), stored.source_id()),
            (Some("hr"), Some("a"))
        );
        for (j, edit) in edits.iter().enumerate() {
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(
                same(&stored, &new),
                diff(old, &new).is_empty(),
                "old {i}, edit {j}"
            );
        }
    }
    let hand_made = StoredUser::new(
        8,
        "jsmith",
        (None, None),
        Status::Disabled,
        None,
        &fields("b"),
    );
    assert_eq!((hand_made.source(), hand_made.source_id()), (None, None));
    assert_eq!(hand_made.extension_number(), None);
    assert_eq!(hand_made.fields(), fields("b"));
}

/// A file refused whole after some of its rows were planned leaves no
/// trace: its actions are gone, the number and alpha extension it asked
/// for are free again, and the user it named is no longer seen.
#[test]
fn rollback_forgets_a_refused_files_rows() {
    let cfg = config("");
    let stored = vec![stored(1, "1009", Some("hr"), "known", Status::Active)];
    let ask = |id: &str, ext: &str| {
        with(id, |s| {
            s.requested_extension = Extension::parse(ext).ok();
        })
    };
    let mut p = Planner::new(full_read(&cfg, &stored));
    p.mark();
    p.add(spec("a"));
    p.mark();
    p.add(ask("b", "1000"));
    p.add(ask("c", "sales"));
    p.add(spec("known"));
    p.add(spec("d"));
    p.rollback();
    p.mark();
    p.add(ask("e", "1000"));
    p.add(ask("f", "sales"));
    let plan = p.finish(Vec::new(), true, Vec::new());
    let actions = plan.actions.to_vec();
    let got: Vec<(&str, &str, Option<String>)> = actions
        .iter()
        .map(|a| (a.name(), a.source_id(), ext_of(a)))
        .collect();
    assert_eq!(
        got,
        [
            ("create", "a", Some("1001".into())),
            ("create", "e", Some("1000".into())),
            ("create", "f", Some("sales".into())),
            ("disable", "known", Some("1009".into())),
        ],
        "the rolled-back rows left nothing; `known` is absent again"
    );

    // The same rows without the refused file, planned from held specs.
    let whole = make_plan(PlanInput {
        source: "hr",
        mode: SyncMode::Full,
        delete_after_days: None,
        domain: &cfg.domains[0],
        limits: &cfg.limits,
        specs: vec![spec("a"), ask("e", "1000"), ask("f", "sales")],
        errors: Vec::new(),
        complete: true,
        changed_only: false,
        stored: &stored,
        base_revision: 7,
        now: 1_000_000,
        files: Vec::new(),
    });
    assert_eq!(whole.actions, plan.actions);
}

/// A user an earlier file named stays named when a later file that named
/// them again is rolled back (a mapped id can repeat across files when the
/// raw ids differ only by a control character).
#[test]
fn rollback_keeps_users_named_before_the_mark() {
    let cfg = config("");
    let stored = vec![stored(1, "1009", Some("hr"), "known", Status::Active)];
    let mut p = Planner::new(full_read(&cfg, &stored));
    p.mark();
    p.add(spec("known"));
    p.mark();
    p.add(spec("known"));
    p.rollback();
    let plan = p.finish(Vec::new(), true, Vec::new());
    let got: Vec<&str> = plan.actions.iter().map(|a| a.name()).collect();
    assert_eq!(got, ["unchanged"], "not disabled as absent");
}

/// A full, complete read of source `hr` against `stored`.
fn full_read<'a>(cfg: &'a Config, stored: &'a [StoredUser]) -> PlanContext<'a> {
    PlanContext {
        source: "hr",
        mode: SyncMode::Full,
        delete_after_days: None,
        domain: &cfg.domains[0],
        limits: &cfg.limits,
        changed_only: false,
        stored,
        base_revision: 7,
        now: 1_000_000,
    }
}

fn row(file: &std::sync::Arc<str>, row: u64) -> RowRef {
    RowRef {
        file: file.clone(),
        row: Some(row),
    }
}

/// One action of each kind, rows from two files.
fn one_of_each() -> Vec<Action> {
    let (a, b): (std::sync::Arc<str>, std::sync::Arc<str>) = ("a.csv".into(), "b.csv".into());
    let ext = |e: &str| Extension::parse(e).unwrap();
    vec![
        Action::Create {
            source_id: "1".into(),
            at: row(&a, 2),
            extension: ext("1000"),
            fields: Box::new(fields("Ann")),
            note: Some("asked for 99".into()),
        },
        Action::Update {
            user_id: 7,
            source_id: "2".into(),
            at: row(&b, 3),
            extension: ext("1001"),
            changes: vec![Change {
                field: ChangedField::Title,
                from: None,
                to: Some("Boss".into()),
            }],
            fields: Box::new(fields("Bo")),
            add_device: true,
        },
        Action::Reenable {
            user_id: 8,
            source_id: "3".into(),
            at: row(&a, 4),
            extension: ext("sales"),
            changes: Vec::new(),
            fields: Box::new(fields("Cy")),
            add_device: false,
        },
        Action::Disable {
            user_id: 9,
            source_id: "4".into(),
            at: None,
            extension: ext("1003"),
            reason: DisableReason::Absent,
        },
        Action::Delete {
            user_id: 10,
            source_id: "5".into(),
            extension: ext("1004"),
        },
        Action::Unchanged {
            source_id: "6".into(),
            at: row(&b, 5),
            extension: None,
            note: Some("left".into()),
        },
        Action::Conflict {
            source_id: "7".into(),
            at: row(&a, 6),
            reason: "taken".into(),
        },
    ]
}

#[test]
fn packed_actions_read_back_as_pushed_and_plan_json_is_unchanged() {
    let want = one_of_each();
    let packed: Actions = want.iter().cloned().collect();
    assert_eq!(packed.len(), want.len());
    assert_eq!(packed.writes(), 5);
    assert_eq!(packed.to_vec(), want);
    let c = packed.counts();
    assert_eq!((c.create, c.update, c.reenable, c.disable), (1, 1, 1, 1));
    assert_eq!((c.delete, c.skipped, c.unchanged, c.conflict), (1, 1, 0, 1));
    let conflicts: Vec<Action> = packed.conflicts().collect();
    assert_eq!(conflicts, want[6..].to_vec());
    // A plan file lists its actions exactly as an unpacked list would.
    let json = serde_json::to_string(&packed).unwrap();
    assert_eq!(json, serde_json::to_string(&want).unwrap());
    let back: Actions = serde_json::from_str(&json).unwrap();
    assert_eq!(back, packed);
}

#[test]
fn packed_actions_span_buffers_and_truncate_to_a_mark() {
    let each = one_of_each();
    let note = "n".repeat(300);
    let mut packed = Actions::new();
    let mut want = Vec::new();
    // Enough for several 1 MiB buffers.
    for i in 0..12_000 {
        let mut a = each[i % each.len()].clone();
        if let Action::Conflict { reason, .. } = &mut a {
            *reason = format!("{note}{i}");
        }
        want.push(a.clone());
        packed.push(a);
    }
    let mark = packed.mark();
    let before = packed.counts();
    for a in each.iter().cycle().take(5_000) {
        packed.push(a.clone());
    }
    assert_eq!(packed.len(), 17_000);
    packed.truncate(mark);
    assert_eq!(packed.len(), 12_000);
    assert_eq!(packed.counts(), before);
    assert_eq!(packed.to_vec(), want);
    assert_eq!(packed.conflicts().count(), 12_000 / each.len());
    packed.push(each[0].clone());
    want.push(each[0].clone());
    assert_eq!(packed.to_vec(), want);
}

#[test]
fn new_users_waiting_for_a_number_read_as_creates_or_conflicts() {
    let mut packed = Actions::new();
    let a: std::sync::Arc<str> = "a.csv".into();
    packed.push_pending("1".into(), row(&a, 2), Box::new(fields("Ann")), None);
    packed.push_pending(
        "2".into(),
        row(&a, 3),
        Box::new(fields("Bo")),
        Some("99 is reserved".into()),
    );
    packed.push_pending("3".into(), row(&a, 4), Box::new(fields("Cy")), None);
    packed.assign(
        [
            Ok(1000),
            Ok(1001),
            Err("no free extension left in 1000-1001".into()),
        ]
        .into_iter(),
    );
    let got = packed.to_vec();
    assert!(
        matches!(&got[0], Action::Create { extension, note: None, .. } if extension.as_str() == "1000")
    );
    assert!(
        matches!(&got[1], Action::Create { extension, note: Some(n), .. } if extension.as_str() == "1001" && n == "99 is reserved (1001)")
    );
    assert!(matches!(&got[2], Action::Conflict { reason, .. } if reason.starts_with("no free")));
    assert_eq!(packed.writes(), 2);
    assert_eq!(packed.conflicts().count(), 1);
    assert_eq!((packed.counts().create, packed.counts().conflict), (2, 1));
}

fn in_dept(name: &str, dept: &str, site: &str) -> Box<UserFields> {
    Box::new(UserFields {
        department: Some(dept.into()),
        site: Some(site.into()),
        ..fields(name)
    })
}

#[test]
fn packed_actions_name_only_the_departments_and_sites_their_writes_keep() {
    let a: std::sync::Arc<str> = "a.csv".into();
    let mut packed = Actions::new();
    packed.push(Action::Create {
        source_id: "1".into(),
        at: row(&a, 2),
        extension: Extension::parse("1000").unwrap(),
        fields: in_dept("Ann", "Sales", "Berlin"),
        note: None,
    });
    packed.push_pending(
        "2".into(),
        row(&a, 3),
        in_dept("Bo", "Sales", "Paris"),
        None,
    );
    packed.push_pending("3".into(), row(&a, 4), in_dept("Cy", "Ops", "Rome"), None);
    let mark = packed.mark();
    packed.push_pending("4".into(), row(&a, 5), in_dept("Di", "Legal", "Oslo"), None);
    // A conflict or an unchanged row writes nothing: no names of its own.
    packed.push(Action::Unchanged {
        source_id: "5".into(),
        at: row(&a, 6),
        extension: None,
        note: None,
    });
    assert_eq!(packed.names().0, ["Legal", "Ops", "Sales"]);
    packed.truncate(mark);
    assert_eq!(packed.names().0, ["Ops", "Sales"]);
    // Cy gets no number: Ops and Rome go, Sales stays (Ann and Bo).
    packed.assign([Ok(1001), Err("no free extension left".into())].into_iter());
    assert_eq!(packed.names(), (vec!["Sales"], vec!["Berlin", "Paris"]));
    assert_eq!(packed.to_vec().len(), 3);
}

/// An action as `Actions::briefs` reads it: its user's fields skipped.
fn brief(a: Action) -> Action<Skipped> {
    match a {
        Action::Create {
            source_id,
            at,
            extension,
            note,
            ..
        } => Action::Create {
            source_id,
            at,
            extension,
            note,
            fields: Skipped,
        },
        Action::Update {
            user_id,
            source_id,
            at,
            extension,
            changes,
            add_device,
            ..
        } => Action::Update {
            user_id,
            source_id,
            at,
            extension,
            changes,
            add_device,
            fields: Skipped,
        },
        Action::Reenable {
            user_id,
            source_id,
            at,
            extension,
            changes,
            add_device,
            ..
        } => Action::Reenable {
            user_id,
            source_id,
            at,
            extension,
            changes,
            add_device,
            fields: Skipped,
        },
        Action::Disable {
            user_id,
            source_id,
            at,
            extension,
            reason,
        } => Action::Disable {
            user_id,
            source_id,
            at,
            extension,
            reason,
        },
        Action::Delete {
            user_id,
            source_id,
            extension,
        } => Action::Delete {
            user_id,
            source_id,
            extension,
        },
        Action::Unchanged {
            source_id,
            at,
            extension,
            note,
        } => Action::Unchanged {
            source_id,
            at,
            extension,
            note,
        },
        Action::Conflict {
            source_id,
            at,
            reason,
        } => Action::Conflict {
            source_id,
            at,
            reason,
        },
    }
}

/// Reading a plan without its users' fields gives every other part of
/// every action as reading it whole does: each kind, across buffers, and
/// new users given a number or refused one.
#[test]
fn brief_actions_are_the_actions_without_their_fields() {
    let each = one_of_each();
    let mut packed: Actions = each.iter().cycle().take(20_000).cloned().collect();
    let a: std::sync::Arc<str> = "a.csv".into();
    packed.push_pending(
        "p1".into(),
        row(&a, 9),
        Box::new(fields("Ann")),
        Some("99 is reserved".into()),
    );
    packed.push_pending("p2".into(), row(&a, 10), Box::new(fields("Bo")), None);
    packed.assign([Ok(1000), Err("no free extension left".into())].into_iter());
    let want: Vec<Action<Skipped>> = packed.iter().map(brief).collect();
    let got: Vec<Action<Skipped>> = packed.briefs().collect();
    assert_eq!(got.len(), 20_002);
    assert_eq!(got, want);
    assert!(
        matches!(&got[20_000], Action::Create { note: Some(n), .. } if n == "99 is reserved (1000)")
    );
    assert!(
        matches!(&got[20_001], Action::Conflict { reason, .. } if reason == "no free extension left")
    );
}
