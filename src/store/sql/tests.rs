use super::Sql;

#[test]
fn numbers_placeholders_across_rows() {
    let mut s = Sql::new("PostgreSQL", "INSERT INTO t (a, b) ");
    s.values([(1_i64, "x"), (2, "y")], |t, (a, b)| {
        t.bind(a).bind(b.to_string());
    });
    s.push(" WHERE id IN ").list([7_i64, 8]);
    assert_eq!(
        s.text,
        "INSERT INTO t (a, b) SELECT * FROM unnest($1::text::bigint[], $2::text::text[]) WHERE id IN ($3, $4)"
    );
    assert_eq!(s.values.len(), 4);
    let mut s = Sql::new("SQLite", "INSERT INTO t (a, b) ");
    s.values([(1_i64, "x"), (2, "y")], |t, (a, b)| {
        t.bind(a).bind(b.to_string());
    });
    assert_eq!(s.text, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
    let mut s = Sql::new("SQLite", "DELETE FROM t WHERE id IN ");
    s.list([1_i64, 2]);
    assert_eq!(s.text, "DELETE FROM t WHERE id IN (?, ?)");
}

#[test]
fn unnest_literals_quote_what_array_in_reads() {
    use super::{unnest_literal, Value};
    let col = [
        Value::Text(Some("plain".into())),
        Value::Text(Some("say \"hi\", {x}\\".into())),
        Value::Text(None),
        Value::Text(Some("NULL".into())),
    ];
    assert_eq!(
        unnest_literal(&col),
        r#"{"plain","say \"hi\", {x}\\",NULL,"NULL"}"#
    );
    assert_eq!(
        unnest_literal(&[Value::Int(Some(-3)), Value::Int(None)]),
        "{-3,NULL}"
    );
}
