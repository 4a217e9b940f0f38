use super::*;

#[test]
fn only_settled_csv_files_are_ready() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ib = Inbox::open(&d.path().join("inbox")).unwrap_or_else(|e| panic!("{e}"));
    for n in [
        "a.csv",
        "B.TSV",
        "c.txt",
        ".hidden.csv",
        "~$a.csv",
        "x.csv.part",
        "y.tmp",
        "z.xlsx",
        "growing.csv",
    ] {
        std::fs::write(ib.root_inbox.join(n), "x").unwrap_or_else(|e| panic!("{e}"));
    }
    let growing = ib.root_inbox.join("growing.csv");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::write(growing, "xxxxxxxx").ok();
    });
    let snap = ib.snapshot().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ready = snap.settled();
    writer.join().ok();
    let names: Vec<String> = ready
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["B.TSV", "a.csv", "c.txt"]);
}

#[test]
fn claim_then_finish_moves_the_file_beside_its_report() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ib = Inbox::open(&d.path().join("inbox")).unwrap_or_else(|e| panic!("{e}"));
    let f = ib.root_inbox.join("hires.csv");
    std::fs::write(&f, "Employee ID,First Name\nE1,=HYPERLINK(\"x\")\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let c = ib
        .claim(&f)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("claimed"));
    assert!(!f.exists() && c.path.exists());
    assert!(
        ib.claim(&f).unwrap_or_else(|e| panic!("{e}")).is_none(),
        "a vanished file is not claimed"
    );
    assert_eq!(
        ib.processing_files().unwrap_or_default(),
        std::slice::from_ref(&c.path)
    );
    let report = ResultReport {
        header: vec!["Employee ID".into(), "First Name".into()],
        rows: Box::new(std::iter::once(ResultRow {
            row: 2,
            cells: ["E1", "=HYPERLINK(\"x\")"].into_iter().collect(),
            result: "error".into(),
            extension: None,
            message: Some("-2 @SUM +1".into()),
        })),
        file_message: None,
        file_note: None,
    };
    let (moved, result) = c
        .finish(&ib, Destination::Archive, report)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(moved.starts_with(&ib.archive) && moved.exists());
    let bytes = std::fs::read(&result).unwrap_or_default();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("'=HYPERLINK"), "{text}");
    assert!(text.contains("'-2 @SUM +1"), "{text}");
    assert!(text.contains("\r\n"));
    assert!(ib.processing_files().unwrap_or_default().is_empty());
}

#[test]
fn safe_cells() {
    for (i, o) in [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("Ann", "Ann"),
        ("", ""),
    ] {
        assert_eq!(safe_cell(i), o);
    }
}
