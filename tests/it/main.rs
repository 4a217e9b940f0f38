//! One integration-test binary: every test runs the real `pbx-onboard` binary
//! against a real store: a SQLite file and a fresh database on a PostgreSQL
//! server that the harness starts on loopback (see `common::pg`).

mod common;
mod admin;
mod daemon;
mod held;
mod import;
mod inbox;
mod ldap;
mod mail;
mod package;
mod resume;
mod robustness;
mod scim;
mod sip;
mod store;
mod welcome;

/// Declares one test per backend for an `async fn(Backend)` scenario.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )+
        }
    };
}
