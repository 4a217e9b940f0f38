use super::*;
use crate::config::Config;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn config() -> Config {
    Config::from_str(
        r#"
[store]
url = "sqlite://x.db"
[[domain]]
name = "acme.example"
numbering = ["1000-8999"]
numbers = ["+15550100100-+15550100109"]
[[domain.site]]
name = "HQ"
numbering = ["2000-2999"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
department = "Support"
[[mapping.rule]]
group = "Support Leads"
scope = "Call Center Supervisor"
[[mapping.rule]]
department = "Lobby"
kind = "call queue"
[[mapping.rule]]
title = "Kiosk"
device = "web"

[[mapping.rule]]
department = "Reception"
force_login = true
"#,
        Path::new("/tmp/x.toml"),
    )
    .unwrap()
}

fn record() -> StaffRecord {
    let mut cols = HashMap::new();
    cols.insert(Field::Scope, "User Scope".to_string());
    StaffRecord {
        origin: Origin {
            location: Arc::from("new-hires.csv"),
            row: Some(7),
            columns: Arc::new(cols),
        },
        source_id: "E1".into(),
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        emails: vec!["jane@acme.example".into()],
        department: None,
        site: None,
        extension: None,
        scope: None,
        groups: vec![],
        title: None,
        status: SourceStatus::Active,
        caller_id: None,
        voicemail: None,
        device: None,
        force_login: None,
    }
}

fn map(f: impl FnOnce(&mut StaffRecord)) -> Result<UserSpec, Vec<RowError>> {
    let c = config();
    let mut r = record();
    f(&mut r);
    map_record(r, &c.domains[0], &c.rules)
}

#[test]
fn defaults_for_a_person() {
    let s = map(|_| {}).unwrap();
    assert_eq!(s.fields.scope, Scope::BasicUser);
    assert_eq!(s.fields.kind, UserKind::Person);
    assert!(s.fields.voicemail);
    assert_eq!(s.fields.device, Some(DeviceType::Sip));
    assert!(s.active);
}

#[test]
fn rules_table() {
    type Case = (&'static str, fn(&mut StaffRecord), fn(&UserFields) -> bool);
    let cases: &[Case] = &[
        (
            "group sets scope and department",
            |r| r.groups = vec!["support agents".into()],
            |f| f.scope == Scope::CallCenterAgent && f.department.as_deref() == Some("Support"),
        ),
        (
            "group matched by CN of a DN",
            |r| r.groups = vec!["CN=Support Leads,OU=Groups,DC=acme".into()],
            |f| f.scope == Scope::CallCenterSupervisor,
        ),
        (
            "first matching rule wins",
            |r| r.groups = vec!["Support Leads".into(), "Support Agents".into()],
            |f| f.scope == Scope::CallCenterAgent,
        ),
        (
            "explicit scope column wins",
            |r| {
                r.groups = vec!["Support Agents".into()];
                r.scope = Some("office manager".into());
            },
            |f| f.scope == Scope::OfficeManager && f.department.as_deref() == Some("Support"),
        ),
        (
            "explicit department wins over rule",
            |r| {
                r.groups = vec!["Support Agents".into()];
                r.department = Some("Sales".into());
            },
            |f| f.department.as_deref() == Some("Sales"),
        ),
        (
            "department condition sets kind; resources default off",
            |r| r.department = Some("lobby".into()),
            |f| {
                f.kind == UserKind::CallQueue
                    && !f.voicemail
                    && f.device.is_none()
                    && f.scope == Scope::NoPortal
            },
        ),
        (
            "title rule picks device type",
            |r| r.title = Some("Kiosk".into()),
            |f| f.device == Some(DeviceType::Web),
        ),
        (
            "device column no wins",
            |r| {
                r.title = Some("Kiosk".into());
                r.device = Some(DeviceChoice::No);
            },
            |f| f.device.is_none(),
        ),
        (
            "device column web wins over the default",
            |r| r.device = Some(DeviceChoice::Is(DeviceType::Web)),
            |f| f.device == Some(DeviceType::Web) && !f.force_login,
        ),
        (
            "device column yes takes the rule's type",
            |r| {
                r.title = Some("Kiosk".into());
                r.device = Some(DeviceChoice::Yes);
            },
            |f| f.device == Some(DeviceType::Web),
        ),
        (
            "force_login column on a web device",
            |r| {
                r.device = Some(DeviceChoice::Is(DeviceType::Web));
                r.force_login = Some(true);
            },
            |f| f.device == Some(DeviceType::Web) && f.force_login,
        ),
        (
            "force_login rule applies to its web devices only",
            |r| r.department = Some("Reception".into()),
            |f| f.device == Some(DeviceType::Sip) && !f.force_login,
        ),
        (
            "force_login on a SIP device means nothing",
            |r| r.force_login = Some(true),
            |f| f.device == Some(DeviceType::Sip) && !f.force_login,
        ),
        (
            "force_login rule on a web device",
            |r| {
                r.department = Some("Reception".into());
                r.device = Some(DeviceChoice::Is(DeviceType::Web));
            },
            |f| f.force_login,
        ),
        (
            "site uses configured spelling",
            |r| r.site = Some("hq".into()),
            |f| f.site.as_deref() == Some("HQ"),
        ),
        (
            "new site kept as given",
            |r| r.site = Some("Remote".into()),
            |f| f.site.as_deref() == Some("Remote"),
        ),
        (
            "caller id from inventory",
            |r| r.caller_id = Some("+1 555 010 0105".into()),
            |f| f.caller_id.as_ref().map(|c| c.as_str()) == Some("+15550100105"),
        ),
    ];
    for (name, edit, check) in cases {
        let s = map(*edit).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(check(&s.fields), "{name}: {:?}", s.fields);
    }
}

#[test]
fn row_errors_name_the_column() {
    type Case = (fn(&mut StaffRecord), &'static str, &'static str);
    let cases: &[Case] = &[
        (
            |r| r.scope = Some("Wizard".into()),
            "User Scope",
            "unknown scope",
        ),
        (
            |r| r.emails = vec!["jane(at)acme".into()],
            "email",
            "not an email",
        ),
        (|r| r.first_name = None, "first_name", "required"),
        (|r| r.last_name = None, "last_name", "required"),
        (
            |r| r.extension = Some("10-01".into()),
            "extension",
            "digits or letters",
        ),
        (
            |r| r.caller_id = Some("+15559999999".into()),
            "caller_id",
            "inventory",
        ),
    ];
    for (edit, column, msg) in cases {
        let errs = map(*edit).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].column.as_deref(), Some(*column));
        assert_eq!(errs[0].row, Some(7));
        assert_eq!(errs[0].file, "new-hires.csv");
        assert!(errs[0].message.contains(msg), "{}", errs[0].message);
    }
}

#[test]
fn several_errors_in_one_row_are_all_reported() {
    let errs = map(|r| {
        r.scope = Some("Wizard".into());
        r.emails = vec!["nope".into()];
    })
    .unwrap_err();
    assert_eq!(errs.len(), 2);
}

#[test]
fn duplicate_requested_extensions_refuse_later_rows() {
    let c = config();
    let mut rows = Vec::new();
    for (i, ext) in ["1001", "1002", "1001", "1001"].iter().enumerate() {
        let mut r = record();
        r.source_id = format!("E{i}");
        r.origin.row = Some(i as u64 + 2);
        r.extension = Some(ext.to_string());
        rows.push(r);
    }
    let (specs, errs) = map_all(rows, &c.domains[0], &c.rules);
    assert_eq!(specs.len(), 2);
    let rows: Vec<_> = errs.iter().map(|e| e.row).collect();
    assert_eq!(rows, [Some(4), Some(5)]);
    assert!(errs[0].message.contains("row 2"), "{}", errs[0].message);
}
