//! Shared test helpers: a temp workspace with its own config and store
//! (SQLite file or a fresh database on the test PostgreSQL), and a runner for
//! the real `pbx-onboard` binary.

pub mod browser;
pub mod pg;
pub mod sip;
pub mod slapd;
pub mod smtp;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const LIMITS_OPEN: &str = "writes_per_second = 0\nburst = 10\nmax_disable = 1000\nmax_disable_percent = 100\nmax_billable = 1000000\n";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
}

impl Env {
    pub async fn new(backend: Backend, limits: &str) -> Env {
        Env::with_extra(backend, limits, "").await
    }

    /// `extra` is appended to the config (more rules, sources, ...).
    pub async fn with_extra(backend: Backend, limits: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            Backend::Sqlite => "sqlite://var/store.db".to_string(),
            Backend::Postgres => pg::fresh_database().await,
        };
        let config = dir.path().join("pbx-onboard.toml");
        let text = format!(
            r#"
[store]
url = "{url}"
[limits]
{limits}
[[domain]]
name = "acme.example"
numbering = ["1000-8999"]
reserved = ["0", "411", "611", "911", "933"]
numbers = ["+15550100100-+15550100199"]
[[domain.site]]
name = "HQ"
numbering = ["2000-2999"]
caller_id = "+15550100101"   # regression: a site default caller ID made every re-run an update
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
department = "Support"
[[source]]
name = "hr-drop"
kind = "csv"
domain = "acme.example"
inbox = "var/inbox"
mode = "full"
settle_seconds = 0.2
{extra}
"#
        );
        std::fs::write(&config, text).expect("write config");
        Env { dir, config, url }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pbx-onboard"));
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("PBX_ONBOARD_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run pbx-onboard")
    }

    /// Runs a command with `--format json`; returns the exit code and the
    /// parsed JSON (first line for reports).
    pub fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.run(&a);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): stdout={stdout} stderr={}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn import(&self, files: &[&Path]) -> (i32, Value) {
        let mut args = vec!["import"];
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        self.json(&args)
    }

    /// The store's URL with a SQLite path made absolute (for other programs).
    pub fn absolute_url(&self) -> String {
        match self.url.strip_prefix("sqlite://") {
            Some(rel) => format!("sqlite://{}", self.path(rel).display()),
            None => self.url.clone(),
        }
    }

    /// One text value read straight from the store.
    pub async fn scalar(&self, sql: &str) -> String {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&self.absolute_url())
            .await
            .expect("connect to the store");
        let v: String = sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.close().await.ok();
        v
    }

    pub fn users(&self) -> Vec<Value> {
        let (code, v) = self.json(&["users"]);
        assert_eq!(code, 0, "users failed: {v}");
        v.as_array().cloned().unwrap_or_default()
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/csv")
        .join(name)
}

/// A CSV of `n` people with ids E{start}.. and no extensions.
pub fn people_csv(start: usize, n: usize) -> String {
    let mut s = String::from("Employee ID,First Name,Last Name,Work Email,Department\n");
    for i in start..start + n {
        s.push_str(&format!(
            "E{i},First{i},Last{i},user{i}@acme.example,Dept{}\n",
            i % 7
        ));
    }
    s
}

pub fn by_source_id(users: &[Value], id: &str) -> Value {
    users
        .iter()
        .find(|u| u["source_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no user with source id {id}"))
}
