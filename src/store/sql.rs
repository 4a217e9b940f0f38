//! A small statement builder for the `Any` driver: sqlx's `QueryBuilder<Any>`
//! writes `?` placeholders, which PostgreSQL rejects, so multi-row statements
//! are built here with `$n` placeholders that both engines accept.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

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

#[cfg(test)]
mod tests {
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
}
