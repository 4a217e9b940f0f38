//! Tests of the CSV reader: encodings, delimiters, row numbers, header
//! aliases, row errors and truncation.

use super::*;

/// Parses `bytes` in memory, and as a file streamed from disk: both give
/// the same file, records and errors, or refuse it alike.
fn parse(bytes: &[u8]) -> Result<CsvFile, CsvError> {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = d.path().join("t.csv");
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let name = path.display().to_string();
    let mut streamed = Vec::new();
    let from_disk = read_file_each(&path, &CsvOptions::default(), &mut streamed);
    let in_memory = parse_bytes(&name, bytes, &CsvOptions::default());
    assert_eq!(same_read(&from_disk, &streamed), same_read(&in_memory, &[]));
    if let Ok(f) = &from_disk {
        assert!(f.stamp.is_some(), "a file read whole is stamped");
        // UTF-8 is parsed as it streams, the rest decoded whole.
        let streams = scan_file(bytes).ok().flatten().is_some();
        assert_eq!(streams, f.encoding == "UTF-8", "{}", f.encoding);
    }
    parse_bytes("t.csv", bytes, &CsvOptions::default())
}

/// What a read gave, as text to compare (`records` streamed to a sink, or
/// collected in the file).
fn same_read(r: &Result<CsvFile, CsvError>, sunk: &[StaffRecord]) -> String {
    match r {
        Err(e) => format!("refused: {e}"),
        Ok(f) => {
            let records = if f.records.is_empty() {
                sunk
            } else {
                &f.records
            };
            // Column names in order: their map's order is the hasher's.
            let records: Vec<String> = records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    let columns: std::collections::BTreeMap<_, _> = r
                        .origin
                        .columns
                        .iter()
                        .map(|(f, c)| (f.key(), c.clone()))
                        .collect();
                    r.origin.columns = Arc::default();
                    format!("{columns:?} {r:?}")
                })
                .collect();
            format!(
                "{} {} {:?} {:?} {records:?} {:?}",
                f.encoding, f.delimiter, f.header, f.rows, f.errors
            )
        }
    }
}

fn ok(bytes: &[u8]) -> CsvFile {
    parse(bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn utf16(s: &str, le: bool) -> Vec<u8> {
    let mut v = if le {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for u in s.encode_utf16() {
        v.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
    }
    v
}

#[test]
fn encodings_and_delimiters() {
    let plain = "Employee ID,First Name,Last Name\nE1,José,Müller\n";
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(plain.as_bytes());
    let tab16 = utf16(&plain.replace(',', "\t"), true);
    let semi16be = utf16(&plain.replace(',', ";"), false);
    let win1252: Vec<u8> = b"Employee ID;First Name;Last Name\r\nE1;Jos\xe9;M\xfcller\r\n".to_vec();
    let cases: Vec<(&str, Vec<u8>, &str, u8)> = vec![
        ("utf-8", plain.as_bytes().to_vec(), "UTF-8", b','),
        ("utf-8 bom", bom, "UTF-8", b','),
        ("utf-16le tab", tab16, "UTF-16LE", b'\t'),
        ("utf-16be semicolon", semi16be, "UTF-16BE", b';'),
        ("windows-1252 crlf", win1252, "windows-1252", b';'),
    ];
    for (name, bytes, enc, delim) in cases {
        let f = ok(&bytes);
        assert_eq!((f.encoding, f.delimiter), (enc, delim), "{name}");
        assert_eq!(f.records.len(), 1, "{name}");
        let r = &f.records[0];
        assert_eq!(
            (r.first_name.as_deref(), r.last_name.as_deref()),
            (Some("José"), Some("Müller")),
            "{name}"
        );
        assert_eq!(f.header[0], "Employee ID", "{name}");
    }
}

#[test]
fn spreadsheet_row_numbers_survive_quoted_newlines_and_blank_lines() {
    let f = ok(b"Employee ID,First Name,Job Title\r\nE1,Ann,\"Head of\r\nSales, \"\"EMEA\"\"\"\r\nE2,Bob,x\r\n\r\nE3,Cat,y\r\n");
    let rows: Vec<u64> = f.records.iter().filter_map(|r| r.origin.row).collect();
    assert_eq!(rows, [2, 3, 5]);
    assert_eq!(
        f.records[0].title.as_deref(),
        Some("Head of\r\nSales, \"EMEA\"")
    );
}

#[test]
fn header_aliases_are_forgiving() {
    let f = ok(b"employee #, FIRST_NAME ,Surname,Work Email,Location,Work Phone Ext,Member Of,Employment Status,Phone Device,Unknown\n\
E1,Ann,A, a@x.example ; b@x.example ,HQ,1001,Sales|Support; Ops,Terminated,no,zzz\n");
    let r = &f.records[0];
    assert_eq!(r.emails, ["a@x.example", "b@x.example"]);
    assert_eq!(r.site.as_deref(), Some("HQ"));
    assert_eq!(r.extension.as_deref(), Some("1001"));
    assert_eq!(r.groups, ["Sales", "Support", "Ops"]);
    assert_eq!(r.status, SourceStatus::Left);
    assert_eq!(r.device, Some(crate::model::DeviceChoice::No));
    assert_eq!(r.origin.column(Field::FirstName), "FIRST_NAME");

    let mut opts = CsvOptions::default();
    opts.extra_aliases
        .insert(Field::EmployeeId, vec!["Staff No".into()]);
    let f = parse_bytes("t.csv", b"Staff No,First Name\nS1,Ann\n", &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.records[0].source_id, "S1");
}

#[test]
fn files_refused_whole() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (
            b"Name,Email\nAnn,a@x.example\n",
            "no column for employee_id, first_name",
        ),
        (
            b"Employee ID,Employee #,First Name\n1,2,Ann\n",
            "both mean employee_id",
        ),
        (
            b"Employee ID,First Name,Title\nE1,Ann,\"Head of\n",
            "quoted field",
        ),
        (
            b"Employee ID,First Name,Last Name\nE1,Ann,A\nE2,Bo",
            "no line end",
        ),
    ];
    for (bytes, want) in cases {
        match parse(bytes) {
            Ok(_) => panic!("{want}: accepted"),
            Err(e) => assert!(e.to_string().contains(want), "{want}: {e}"),
        }
    }
}

#[test]
fn header_only_file_has_no_rows() {
    let f = ok(b"Employee ID,First Name\r\n");
    assert!(f.records.is_empty() && f.errors.is_empty() && f.rows.is_empty());
}

#[test]
fn row_errors_name_row_and_column() {
    let f = ok(b"Employee ID,First Name,Voicemail,Status\n\
E1,Ann,yes,active\n\
,Bob,,\n\
E1,Cat,,\n\
E4,Dan,maybe,\n\
E5,Eve,,on strike\n\
E6,Fay,,,extra\n\
,,,\n\
E7,Gus\n");
    let got: Vec<(u64, Option<&str>)> = f
        .errors
        .iter()
        .map(|e| (e.row.unwrap_or(0), e.column.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (3, Some("Employee ID")),
            (4, Some("Employee ID")),
            (5, Some("Voicemail")),
            (6, Some("Status")),
            (7, None)
        ]
    );
    assert!(
        f.errors[1].message.contains("row 2"),
        "{}",
        f.errors[1].message
    );
    assert_eq!(f.errors[1].source_id.as_deref(), Some("E1"));
    let ids: Vec<&str> = f.records.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(
        ids,
        ["E1", "E7"],
        "blank rows skipped; a short row's missing cells are empty"
    );
    assert_eq!(f.rows.len(), 7);
}

#[test]
fn device_type_and_force_login_columns() {
    use crate::model::{DeviceChoice, DeviceType};
    let f = ok(
        b"Employee ID,First Name,Device,force_login\nE1,Ann,web,yes\nE2,Bob,none,\nE3,Cy,Yes,no\n",
    );
    let got: Vec<_> = f
        .records
        .iter()
        .map(|r| (r.device, r.force_login))
        .collect();
    assert_eq!(
        got,
        [
            (Some(DeviceChoice::Is(DeviceType::Web)), Some(true)),
            (Some(DeviceChoice::No), None),
            (Some(DeviceChoice::Yes), Some(false)),
        ]
    );
    let f = ok(b"Employee ID,First Name,Device,Force Login\nE1,Ann,fax,maybe\n");
    assert!(f.records.is_empty());
    let msgs: Vec<_> = f
        .errors
        .iter()
        .map(|e| (e.column.clone(), e.message.clone()))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].1.contains("not yes or no") || msgs[1].1.contains("not yes or no"),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.0.as_deref() == Some("Device") && m.1.contains("sip, web or none")),
        "{msgs:?}"
    );
}

/// The result CSV's second read gives back every data row as it was in the
/// file (unknown columns, quoted line breaks, the row it started on), and
/// refuses a file that changed since.
#[test]
fn reread_gives_back_the_rows_as_read_and_refuses_a_changed_file() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = d.path().join("hires.csv");
    let text = "\u{feff}Employee ID;First Name;Title;Unknown\r\n\
E1;Ann;\"Head of\r\nSales\";zzz\r\n\
\r\n\
;;;\r\n\
E2;Bob;;\r\n\
E2;Dup;;\r\n";
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    let mut records = Vec::new();
    let f = read_file_each(&path, &CsvOptions::default(), &mut records)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.rows.len(), 3);
    let rows: Vec<(u64, Vec<String>)> = reread(&path, &f)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|(row, rec)| (row, rec.iter().map(String::from).collect()))
        .collect();
    let want = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        [
            (2, want(&["E1", "Ann", "Head of\r\nSales", "zzz"])),
            (5, want(&["E2", "Bob", "", ""])),
            (6, want(&["E2", "Dup", "", ""])),
        ],
        "spreadsheet rows: a quoted line break stays in its row"
    );
    // Every row the read counted comes back, in order.
    assert_eq!(
        rows.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        f.rows.clone().into_iter().collect::<Vec<_>>()
    );
    // The read's own row numbers are the same.
    assert_eq!(records[1].origin.row, Some(5));
    assert_eq!(f.errors[0].row, Some(6));

    // Saved over with the same size and its old modification time kept
    // (`cp -p`, `rsync -t`): the bytes tell.
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, text.replace("Bob", "Rob")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_modified(mtime))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(reread(&path, &f), Err(RereadError::Changed)));
    std::fs::write(&path, text.replace("Bob", "Robert")).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(reread(&path, &f), Err(RereadError::Changed)));
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(reread(&path, &f), Err(RereadError::Io(_))));
}

/// Windows-1252 and UTF-16 files are read again through the same decoding.
#[test]
fn reread_decodes_as_the_read_did() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = "Employee ID\tFirst Name\nE1\tZoë\n";
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    for (name, bytes) in [("a.csv", cp1252.into_owned()), ("b.csv", utf16)] {
        let path = d.path().join(name);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let f = read_file_each(&path, &CsvOptions::default(), &mut Vec::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows: Vec<(u64, Vec<String>)> = reread(&path, &f)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .map(|(row, rec)| (row, rec.iter().map(String::from).collect()))
            .collect();
        assert_eq!(
            rows,
            [(2, vec!["E1".to_string(), "Zoë".to_string()])],
            "{name}"
        );
    }
}

/// Row numbers survive blank lines anywhere, the first data row included.
#[test]
fn row_numbers_follow_blank_lines() {
    let bytes = b"Employee ID,First Name\n\nE1,Ann\nE2,Bob\n\n\n,\nE3,Cy\nE4,Dan\n";
    let f = ok(bytes);
    let read: Vec<Option<u64>> = f.records.iter().map(|r| r.origin.row).collect();
    assert_eq!(read, [Some(3), Some(4), Some(8), Some(9)]);
    let again: Vec<u64> = rows_in(&f, bytes).map(|(row, _)| row).collect();
    assert_eq!(again, [3, 4, 8, 9]);
    assert_eq!(f.rows.clone().into_iter().collect::<Vec<_>>(), again);
}

/// A file of several 64 KiB pieces reads the same from disk as in memory:
/// characters, quoted line breaks, `""` escapes and blank lines cut by the
/// pieces' ends; a Windows-1252 byte past the first piece; a file that
/// ends inside quotes past it.
#[test]
fn streamed_and_in_memory_reads_agree_across_pieces() {
    let mut text = String::from("\u{feff}Employee ID;First Name;Job Title\r\n");
    let mut i = 0;
    while text.len() < 5 * PIECE {
        i += 1;
        match i % 7 {
            0 => text.push_str(&format!("E{i};Zoë €‰;\"Head of\r\n\"\"Sales\"\"\"\r\n")),
            1 => text.push_str("\r\n\r\n"),
            2 => text.push_str(&format!("E{i};Ann;{}\r\n", "é".repeat(i % 13))),
            3 => text.push_str(&format!("E{};Dup;x\r\n", i - 1)),
            _ => text.push_str(&format!("E{i};Bob;\"a;b\"\r\n")),
        }
    }
    let utf8 = ok(text.as_bytes());
    assert!(utf8.records.len() > 5000 && !utf8.errors.is_empty());
    assert_eq!(utf8.encoding, "UTF-8");
    // Every offset of a character's bytes against the pieces' ends.
    for shift in 1..4 {
        let pad = format!("Employee ID{}", " ".repeat(shift));
        let f = ok(text.replacen("Employee ID", &pad, 1).as_bytes());
        assert_eq!(f.records.len(), utf8.records.len(), "shift {shift}");
    }
    let plain = text.replace('\u{feff}', "");
    let (cp, _, _) = encoding_rs::WINDOWS_1252.encode(&plain);
    let f = ok(&cp);
    assert_eq!(
        (f.encoding, f.records.len()),
        ("windows-1252", utf8.records.len())
    );
    // Valid UTF-8 for three pieces, then one Windows-1252 byte.
    let mut late = plain.into_bytes();
    late.extend_from_slice(b"E999999;Jos\xe9;x\r\n");
    let f = ok(&late);
    assert_eq!(f.encoding, "windows-1252");
    let mut open = text.clone();
    open.push_str("E999999;Ann;\"never closed\r\n");
    assert!(matches!(
        parse(open.as_bytes()),
        Err(CsvError::Truncated { .. })
    ));
}
