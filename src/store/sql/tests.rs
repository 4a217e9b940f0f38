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

/// A bound statement writes exactly what was bound: texts moved into the
/// driver's buffer (quotes, non-ASCII), integers, and NULLs of both types.
#[tokio::test]
async fn bound_statements_write_what_was_bound() {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER, d TEXT)")
        .execute(&pool)
        .await
        .expect("create");
    let mut s = Sql::new("SQLite", "INSERT INTO t (a, b, c, d) ");
    s.values(
        [
            (1_i64, "x'y", None, None),
            (2, "é\n\"", Some(3_i64), Some("z".to_string())),
        ],
        |t, (a, b, c, d)| {
            t.bind(a).bind(b).bind(c).bind(d);
        },
    );
    let mut tx = pool.begin().await.expect("begin");
    super::execute_bound(&mut tx, vec![s.into_bound()])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let rows: Vec<(i64, String, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT a, b, c, d FROM t ORDER BY a")
            .fetch_all(&pool)
            .await
            .expect("select");
    assert_eq!(
        rows,
        vec![
            (1, "x'y".to_string(), None, None),
            (2, "é\n\"".to_string(), Some(3), Some("z".to_string())),
        ]
    );
}
