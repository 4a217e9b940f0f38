//! A small statement builder for the `Any` driver: sqlx's `QueryBuilder<Any>`
//! writes `?` placeholders, which PostgreSQL rejects, so multi-row statements
//! are built here with `$n` placeholders that both engines accept.

use super::StoreError;
use sqlx::any::{AnyArguments, AnyTypeInfoKind};
use sqlx::query::Query;
use sqlx::Any;
use sqlx::Transaction;
use sqlx_core::any::{AnyArgumentBuffer, AnyValueKind};
use std::borrow::Cow;

/// A bound value: the column types the store uses.
#[derive(Debug, Clone)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}

#[derive(Debug)]
pub struct Sql {
    text: String,
    values: Vec<Value>,
    /// `$n` for PostgreSQL; plain `?` for SQLite, where sqlx resolves each
    /// `$n` by name and a 20,000-parameter INSERT took seconds instead of ms.
    numbered: bool,
}

impl Sql {
    /// A statement for the connection's engine (`backend_name()` of the `Any` connection).
    pub fn new(backend_name: &str, start: &str) -> Sql {
        Sql {
            text: start.to_string(),
            values: Vec::new(),
            numbered: backend_name != "SQLite",
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        if self.numbered {
            self.text.push('$');
            self.text.push_str(&self.values.len().to_string());
        } else {
            self.text.push('?');
        }
        self
    }

    /// Appends `VALUES (…), (…)`, one tuple per item; `row` binds its values.
    pub fn values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(&mut Tuple<'_>, I::Item),
    {
        self.text.push_str("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            let mut t = Tuple {
                sql: self,
                first: true,
            };
            row(&mut t, item);
            self.text.push(')');
        }
        self
    }

    /// Appends `(a, b, …)` of bound values.
    pub fn list<T: Into<Value>>(&mut self, items: impl IntoIterator<Item = T>) -> &mut Self {
        self.text.push('(');
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// The statement with its values bound. Text is bound by reference:
    /// binding an owned `String` makes sqlx's `Any` driver clone it once
    /// more before the engine's own copy.
    pub fn build(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for v in &self.values {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(t.as_deref()),
            };
        }
        q
    }
}

/// A statement whose values are already the driver's own, owned: building
/// one is the whole cost of binding and can happen on another thread, and
/// executing it hands the values to the engine without another copy.
/// (`Sql::build` binds by reference, and the SQLite driver then copies every
/// text before sending it to its worker thread, on the thread that awaits.)
/// sqlx has no by-value encoding of an owned `String` for `Any`, so the
/// buffer is filled directly.
pub struct Bound {
    text: String,
    args: AnyArguments<'static>,
}

impl Sql {
    pub fn into_bound(self) -> Bound {
        let values = self
            .values
            .into_iter()
            .map(|v| match v {
                Value::Int(Some(i)) => AnyValueKind::BigInt(i),
                Value::Int(None) => AnyValueKind::Null(AnyTypeInfoKind::BigInt),
                Value::Text(Some(t)) => AnyValueKind::Text(Cow::Owned(t)),
                Value::Text(None) => AnyValueKind::Null(AnyTypeInfoKind::Text),
            })
            .collect();
        Bound {
            text: self.text,
            args: AnyArguments {
                values: AnyArgumentBuffer(values),
            },
        }
    }
}

impl Bound {
    async fn execute(self, tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
        sqlx::query_with(&self.text, self.args)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Executes bound statements in order.
pub async fn execute_bound(
    tx: &mut Transaction<'static, Any>,
    statements: impl IntoIterator<Item = Bound>,
) -> Result<(), StoreError> {
    for s in statements {
        s.execute(tx).await?;
    }
    Ok(())
}

/// Executes bound statements in order and runs `work` on this thread while
/// the database executes the first.
pub async fn execute_bound_while<T>(
    tx: &mut Transaction<'static, Any>,
    statements: Vec<Bound>,
    work: impl FnOnce() -> T,
) -> Result<T, StoreError> {
    let mut statements = statements.into_iter();
    let Some(first) = statements.next() else {
        return Ok(work());
    };
    let (done, out) = overlap(first.execute(tx), work).await;
    done?;
    execute_bound(tx, statements).await?;
    Ok(out)
}

pub struct Tuple<'a> {
    sql: &'a mut Sql,
    first: bool,
}

impl Tuple<'_> {
    pub fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        if !self.first {
            self.sql.text.push_str(", ");
        }
        self.first = false;
        self.sql.bind(v);
        self
    }
}

/// Ids for `n` new rows of `table`, taken before the rows are built so that
/// statements referring to them (devices to users, outbox to links) need no
/// `RETURNING`: sqlx's SQLite worker hands each returned row to the async
/// side through a 50-slot channel, and that thread ping-pong cost a 100k-user
/// import about a second. Also returns, on SQLite, the id the next rows will
/// get unless another writer comes first: apply builds its next chunk with
/// those ids while this one is in the database, and rebuilds it if wrong.
///
/// SQLite: the ids after the current largest. Sound because every SQLite
/// write transaction begins `IMMEDIATE`, so no other writer can add rows
/// before this one commits. PostgreSQL: drawn from the table's identity
/// sequence, as a default id would be (no guess at the next ones).
pub async fn allocate_ids(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    n: usize,
) -> Result<(Vec<i64>, Option<i64>), StoreError> {
    if tx.backend_name() == "SQLite" {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
        let base: i64 = sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?;
        let ids: Vec<i64> = (base + 1..).take(n).collect();
        return Ok((ids, Some(base + 1 + n as i64)));
    }
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    let sql = format!(
        "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)"
    );
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await?;
    Ok((ids, None))
}

/// Polls `fut` once, which hands a statement to the database, then runs
/// `work` on this thread and finishes `fut`. On SQLite the engine runs on
/// sqlx's worker thread, so the two overlap.
pub(super) async fn overlap<F: std::future::Future, T>(
    fut: F,
    work: impl FnOnce() -> T,
) -> (F::Output, T) {
    let mut fut = std::pin::pin!(fut);
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    let out = work();
    let done = match polled {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => fut.await,
    };
    (done, out)
}

/// Executes the statements in order, each moved into the driver's buffer
/// as it comes ([`Bound`]: no text is copied).
pub async fn execute_all(
    tx: &mut Transaction<'static, Any>,
    statements: Vec<Sql>,
) -> Result<(), StoreError> {
    execute_bound(tx, statements.into_iter().map(Sql::into_bound)).await
}

#[cfg(test)]
mod tests;
