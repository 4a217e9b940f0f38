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
        "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE id IN ($5, $6)"
    );
    assert_eq!(s.values.len(), 6);
    let mut s = Sql::new("SQLite", "DELETE FROM t WHERE id IN ");
    s.list([1_i64, 2]);
    assert_eq!(s.text, "DELETE FROM t WHERE id IN (?, ?)");
}
