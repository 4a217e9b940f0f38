//! Property-based fuzzing (stable Rust, `proptest`) of everything that reads
//! untrusted input: CSV bytes → decode → rows → mapping → plan → welcome
//! email, and LDAP entries → records, DNs, binary ids.
//!
//! Invariants: nothing panics; every data row becomes a record or a row
//! error naming file and row (and the column, for a value it refuses);
//! every mapped person with an email yields a message that lettre formats;
//! a plan never hands one extension out twice.
//!
//! CI runs the default number of cases (`PROPTEST_CASES`, 256 per property
//! here). The long run the README quotes:
//! `PROPTEST_CASES=1000000 cargo test --release --test fuzz`.

use pbx_onboard::config::{Config, LdapSourceConfig, Limits, SourceKind, SyncMode};
use pbx_onboard::mail::Mailer;
use pbx_onboard::mapping::map_all;
use pbx_onboard::model::{Origin, StoredUser};
use pbx_onboard::plan::{make_plan, Action, PlanInput};
use pbx_onboard::source::csv::{parse_bytes, read_file_each, rows_in, CsvOptions};
use pbx_onboard::source::ldap_entry::{render_binary_id, to_record, Entry};
use pbx_onboard::store::{OutboxItem, Payload, WelcomeItem};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

const CONFIG: &str = r#"
[store]
url = "sqlite://unused.db"
[[domain]]
name = "acme.example"
numbering = ["1000-1999"]
reserved = ["911"]
numbers = ["+15550100100-+15550100199"]
require_last_name = false
[[domain.site]]
name = "HQ"
numbering = ["1500-1599"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
[[source]]
name = "hr"
kind = "csv"
domain = "acme.example"
inbox = "inbox"
[[source]]
name = "dir"
kind = "ldap"
profile = "openldap"
domain = "acme.example"
url = "ldap://127.0.0.1:389"
tls = "none"
base_dn = "ou=people,dc=example"
[[source]]
name = "ad"
kind = "ldap"
profile = "active_directory"
domain = "acme.example"
url = "ldap://127.0.0.1:389"
tls = "none"
base_dn = "ou=people,dc=example"
"#;

struct World {
    cfg: Config,
    mailer: Mailer,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pbx.toml");
        let cfg = Config::from_str(CONFIG, &path).expect("config");
        let mailer = Mailer::new(&cfg.mail).expect("mailer");
        World {
            cfg,
            mailer,
            _dir: dir,
        }
    })
}

fn ldap(name: &str) -> &'static LdapSourceConfig {
    match world().cfg.source(name).map(|s| &s.kind) {
        Some(SourceKind::Ldap(l)) => l,
        _ => unreachable!("the config has ldap source {name}"),
    }
}

/// Text that real exports and hostile files hold: letters, digits, the
/// delimiters, quotes, line ends, controls, NUL, BOMs, RTL marks,
/// combining characters, emoji, and now and then a 64 KB run.
fn cell() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[A-Za-z0-9 .@+_-]{0,12}",
        1 => Just(",".to_string()),
        1 => Just(";".to_string()),
        1 => Just("\t".to_string()),
        1 => Just("\"".to_string()),
        1 => Just("\"\"".to_string()),
        1 => Just("\r\n".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\r".to_string()),
        1 => Just("\u{0}".to_string()),
        1 => Just("\u{feff}".to_string()),
        1 => Just("\u{200f}\u{202e}".to_string()),
        1 => Just("e\u{301}\u{308}".to_string()),
        1 => Just("\u{85}\u{9c}\u{1b}[31m".to_string()),
        1 => Just("😀👩‍💻".to_string()),
        1 => Just("=cmd|' /C calc'!A0".to_string()),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    prop_oneof![
        50 => prop::collection::vec(piece, 0..6).prop_map(|v| v.concat()),
        1 => Just("x".repeat(65_536)),
    ]
}

const HEADERS: &[&str] = &[
    "employee_id",
    "first_name",
    "last_name",
    "email",
    "department",
    "site",
    "extension",
    "scope",
    "groups",
    "title",
    "status",
    "caller_id",
    "voicemail",
    "device",
    "Employee #",
    "Work Email",
    "notes",
];

/// Columns besides the id, first name and email.
const OPTIONAL: &[&str] = &[
    "last_name",
    "department",
    "site",
    "extension",
    "scope",
    "groups",
    "title",
    "status",
    "caller_id",
    "voicemail",
    "device",
    "notes",
];

/// A value for a column: mostly what the column should hold (so rows map
/// and reach planning and email), often hostile text.
fn value_for(column: &'static str) -> BoxedStrategy<String> {
    let good: BoxedStrategy<String> = match column {
        "employee_id" | "Employee #" => "[A-Z]?[0-9]{1,6}".boxed(),
        "email" | "Work Email" => "[a-z]{1,8}(\\.[a-z]{1,5})?@acme\\.example".boxed(),
        "extension" => {
            prop_oneof![Just(String::new()), "1[0-9]{3}", Just("911".to_string())].boxed()
        }
        "site" => prop_oneof![Just("HQ".to_string()), Just(String::new())].boxed(),
        "groups" => prop_oneof![Just("Support Agents".to_string()), Just(String::new())].boxed(),
        "status" => prop_oneof![Just("active".to_string()), Just("terminated".to_string())].boxed(),
        _ => "[A-Za-z]{1,10}".boxed(),
    };
    prop_oneof![3 => good, 2 => cell()].boxed()
}

/// A CSV-shaped file: a header of known and unknown names, rows of
/// values for those columns (and sometimes a cell too many or too few), a
/// delimiter, quoting, and an encoding.
fn csv_file() -> impl Strategy<Value = Vec<u8>> {
    // Mostly the columns a person needs (so rows reach mapping, planning
    // and email), in any order and spelling; sometimes any columns at all.
    let usable = (
        prop::sample::select(vec!["employee_id", "Employee #"]),
        prop::sample::select(vec!["email", "Work Email"]),
        prop::sample::subsequence(OPTIONAL.to_vec(), 0..OPTIONAL.len()),
    )
        .prop_map(|(id, email, mut rest)| {
            rest.extend([id, "first_name", email]);
            rest
        })
        .prop_shuffle();
    let any_header = prop::sample::subsequence(HEADERS.to_vec(), 1..HEADERS.len());
    prop_oneof![4 => usable, 1 => any_header]
        .prop_flat_map(|header| {
            let row = header
                .iter()
                .map(|h| value_for(h))
                .collect::<Vec<_>>()
                .prop_flat_map(|cells| {
                    (
                        Just(cells),
                        prop::collection::vec(cell(), 0..2),
                        any::<u8>(),
                    )
                })
                .prop_map(|(mut cells, extra, cut)| {
                    match cut % 8 {
                        0 => cells.extend(extra),
                        1 => {
                            cells.pop();
                        }
                        _ => {}
                    }
                    cells
                });
            (
                Just(header),
                prop::collection::vec(row, 0..12),
                prop::sample::select(vec![",", ";", "\t"]),
                any::<bool>(),
                0u8..4,
            )
        })
        .prop_map(|(header, rows, delim, quote_all, encoding)| {
            let q = |s: &str| {
                if quote_all || s.contains(['"', ',', ';', '\t', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            let mut text = header.iter().map(|h| q(h)).collect::<Vec<_>>().join(delim);
            text.push_str("\r\n");
            for r in rows {
                text.push_str(&r.iter().map(|c| q(c)).collect::<Vec<_>>().join(delim));
                text.push_str("\r\n");
            }
            match encoding {
                0 => text.into_bytes(),
                1 => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
                2 => {
                    let mut b = vec![0xFF, 0xFE];
                    b.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
                    b
                }
                _ => {
                    let (b, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
                    b.into_owned()
                }
            }
        })
}

/// A file streamed from disk reads as the same bytes in memory: refused
/// alike, or the same rows, records and row errors.
fn streamed_read_agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut tmp = tempfile::NamedTempFile::new_in(world()._dir.path()).expect("temp file");
    std::io::Write::write_all(&mut tmp, bytes).expect("write");
    let name = tmp.path().display().to_string();
    let mut streamed = Vec::new();
    let from_disk = read_file_each(tmp.path(), &CsvOptions::default(), &mut streamed);
    let in_memory = parse_bytes(&name, bytes, &CsvOptions::default());
    match (from_disk, in_memory) {
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (Ok(a), Ok(b)) => {
            prop_assert_eq!((a.encoding, a.delimiter), (b.encoding, b.delimiter));
            prop_assert_eq!(&a.header, &b.header);
            prop_assert_eq!(&a.rows, &b.rows);
            prop_assert_eq!(format!("{:?}", a.errors), format!("{:?}", b.errors));
            let key = |r: &pbx_onboard::model::StaffRecord| {
                (
                    r.origin.row,
                    r.source_id.clone(),
                    r.first_name.clone(),
                    r.title.clone(),
                )
            };
            let a: Vec<_> = streamed.iter().map(key).collect();
            let b: Vec<_> = b.records.iter().map(key).collect();
            prop_assert_eq!(a, b);
        }
        (a, b) => prop_assert!(false, "from disk {:?}, in memory {:?}", a.err(), b.err()),
    }
    Ok(())
}

/// The pipeline over one file, checking every invariant.
fn pipeline(bytes: &[u8]) -> Result<(), TestCaseError> {
    let w = world();
    streamed_read_agrees(bytes)?;
    let Ok(file) = parse_bytes("fuzz.csv", bytes, &CsvOptions::default()) else {
        return Ok(()); // refused whole, with a CsvError: nothing else to check
    };
    let recorded: HashSet<u64> = file.records.iter().filter_map(|r| r.origin.row).collect();
    let mut data_rows = 0;
    for (row, _) in rows_in(&file, bytes) {
        data_rows += 1;
        let refused = file.errors.iter().any(|e| e.row == Some(row));
        prop_assert!(
            recorded.contains(&row) || refused,
            "row {} neither read nor refused",
            row
        );
    }
    prop_assert_eq!(
        data_rows,
        file.rows.len(),
        "the result CSV's rows are the read's"
    );
    for e in &file.errors {
        prop_assert_eq!(&e.file, "fuzz.csv");
        prop_assert!(e.row.is_some(), "a row error without its row: {:?}", e);
        prop_assert!(
            e.message.chars().count() <= 1_000,
            "unbounded: {} chars",
            e.message.len()
        );
    }
    let domain = &w.cfg.domains[0];
    let (specs, errors) = map_all(file.records, domain, &w.cfg.rules);
    for e in &errors {
        prop_assert!(e.row.is_some() && e.column.is_some(), "{:?}", e);
        prop_assert!(
            e.message.chars().count() <= 1_000,
            "unbounded: {} chars",
            e.message.len()
        );
    }
    // Every mapped person with an email gets a message lettre formats.
    for s in specs.iter().filter(|s| !s.fields.emails.is_empty()) {
        let item = OutboxItem {
            id: 1,
            message_id: "<fuzz@acme.example>".into(),
            attempts: 0,
            created_at: 0,
            payload: Payload::Welcome(WelcomeItem {
                link_id: 1,
                salt: "00".repeat(16),
                dead: false,
                user_id: 1,
                domain: domain.name.clone(),
                extension: "1000".into(),
                first_name: s.fields.first_name.clone(),
                last_name: s.fields.last_name.clone(),
                emails: s.fields.emails.iter().map(|e| e.to_string()).collect(),
                language: None,
                voicemail: s.fields.voicemail,
                device: s.fields.device.map(|d| d.to_string()),
                active: true,
                expires_at: Some(86_400),
            }),
        };
        let bytes = w.mailer.preview(&item);
        prop_assert!(
            bytes.is_ok(),
            "no message for {:?}: {:?}",
            s.fields,
            bytes.err()
        );
    }
    // Planned against an empty store and against its own users: no
    // extension twice.
    let limits: &Limits = &w.cfg.limits;
    let plan = make_plan(PlanInput {
        source: "hr",
        mode: SyncMode::Full,
        delete_after_days: None,
        domain,
        limits,
        specs: specs.clone(),
        errors: errors.clone(),
        complete: true,
        changed_only: false,
        stored: &[],
        base_revision: 0,
        now: 0,
        files: vec!["fuzz.csv".into()],
    });
    // The result CSV reads a file's actions alongside its rows: they come
    // in row order.
    let rows: Vec<u64> = plan
        .actions
        .iter()
        .filter_map(|a| a.at().and_then(|at| at.row))
        .collect();
    prop_assert!(
        rows.windows(2).all(|w| w[0] < w[1]),
        "actions out of row order: {rows:?}"
    );
    let mut seen = HashSet::new();
    let mut stored = Vec::new();
    for a in &plan.actions.to_vec() {
        if let Action::Create {
            extension,
            fields,
            source_id,
            ..
        } = a
        {
            prop_assert!(
                seen.insert(extension.clone()),
                "{} handed out twice",
                extension
            );
            stored.push(StoredUser::new(
                stored.len() as i64 + 1,
                extension.as_str(),
                (Some("hr"), Some(source_id)),
                pbx_onboard::model::Status::Active,
                None,
                fields,
            ));
        }
    }
    let again = make_plan(PlanInput {
        source: "hr",
        mode: SyncMode::Full,
        delete_after_days: None,
        domain,
        limits,
        specs,
        errors,
        complete: true,
        changed_only: false,
        stored: &stored,
        base_revision: 1,
        now: 0,
        files: vec!["fuzz.csv".into()],
    });
    // The same file again creates nobody and conflicts with nothing.
    prop_assert!(
        !again
            .actions
            .iter()
            .any(|a| matches!(a, Action::Create { .. } | Action::Conflict { .. })),
        "a second plan of the same file: {:?}",
        again.actions
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_stop_the_pipeline(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        pipeline(&bytes)?;
    }

    #[test]
    fn csv_shaped_files_map_or_refuse_every_row(bytes in csv_file()) {
        pipeline(&bytes)?;
    }

    #[test]
    fn ldap_entries_become_records_or_row_errors(
        dn in cell(),
        values in prop::collection::vec(("[a-zA-Z]{1,12}", prop::collection::vec(cell(), 0..3)), 0..10),
        guid in prop::collection::vec(any::<u8>(), 0..24),
        disabled in any::<bool>(),
        ad in any::<bool>(),
    ) {
        let c = ldap(if ad { "ad" } else { "dir" });
        let mut attrs: HashMap<String, Vec<String>> = values.into_iter().collect();
        // Sometimes the attributes the profile reads, with hostile values.
        for (k, v) in [("entryUUID", "u-1"), ("givenName", "Ann"), ("sn", "Lee"), ("mail", "ann@acme.example")] {
            attrs.entry(k.into()).or_insert_with(|| vec![v.into()]);
        }
        let mut bin = HashMap::new();
        bin.insert("objectGUID".to_string(), vec![guid.clone()]);
        let e = Entry::new(dn.clone(), attrs.into_iter().collect(), bin);
        let origin = Origin {
            location: Arc::from("ldap://127.0.0.1:389/ou=people,dc=example"),
            row: None,
            columns: Arc::new(HashMap::new()),
        };
        match to_record(c, &origin, &e, disabled, None) {
            Ok(r) => {
                let (specs, errors) = map_all(vec![r], &world().cfg.domains[0], &world().cfg.rules);
                prop_assert_eq!(specs.len() + usize::from(!errors.is_empty()), 1);
            }
            Err(err) => prop_assert!(err.message.chars().count() <= 2_000, "{}", err.message.len()),
        }
        let _ = render_binary_id(&guid);
        let _ = pbx_onboard::dn::norm_dn(&dn);
        let _ = pbx_onboard::dn::cn_of(&dn);
    }
}

/// The files new users actually hit, through the same invariants.
#[test]
fn the_files_users_hit_pass_the_pipeline() {
    for bytes in [
        b"employee_id,first_name,last_name,email\n1,\"Multi\nLine\",Name,multi@acme.example\n".as_slice(),
        b"employee_id,first_name,email\n1,Bo\x00b,bob@acme.example\n2,\"Tab\tbed\",t@acme.example\n",
        b"\xEF\xBB\xBFEmployee #;First Name;Work Email\r\n7;\"Head of\r\nSales\";x@acme.example\r\n",
        b"employee_id,first_name,email\n1,\xe2\x80\x8f\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9,ar@acme.example\n",
    ] {
        if let Err(e) = pipeline(bytes) {
            panic!("{e}");
        }
    }
}
