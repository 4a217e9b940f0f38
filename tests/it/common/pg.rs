//! A real PostgreSQL for the tests: `initdb` into a temp folder, started on a
//! free loopback port once per test run; every test gets its own database.
//!
//! PostgreSQL refuses to run as root, so as root (CI) the server runs as the
//! `postgres` system user (`setpriv`, which execs in place so signals reach it). A small watchdog shell stops the server and removes
//! its folder when the test process exits, so no server outlives the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PBX_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .ok_or_else(|| {
            "PostgreSQL binaries not found: install postgresql or set PBX_TEST_PG_BIN".to_string()
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run_as_pg(bin: &Path, args: &[&str], root: bool) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin)
        .args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn start() -> Result<Server, String> {
    let bin = pg_bin_dir()?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("pbx-onboard-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    let sock = dir.join("sock");
    std::fs::create_dir_all(&sock).map_err(|e| e.to_string())?;
    if root {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            return Err("chown of the PostgreSQL test folder to `postgres` failed".into());
        }
    }
    let out = run_as_pg(
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap_or_default(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        root,
    )
    .stdout(Stdio::null())
    .output()
    .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    let log = dir.join("postgres.log");
    let postgres = bin.join("postgres");
    let server_cmd = format!(
        "{} -D {} -p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        postgres.display(),
        data.display(),
        sock.display()
    );
    let server_cmd = if root {
        format!("setpriv --reuid=postgres --regid=postgres --init-groups -- {server_cmd}")
    } else {
        server_cmd
    };
    // Watchdog: start the server, stop it when the test process is gone.
    let script = format!(
        "{server_cmd} >{log} 2>&1 & pg=$!; while kill -0 {me} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
         kill -INT $pg 2>/dev/null; for i in $(seq 1 40); do kill -0 $pg 2>/dev/null || break; sleep 0.25; done; \
         kill -KILL $pg 2>/dev/null; rm -rf {dir}",
        log = log.display(),
        me = std::process::id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Accepting TCP is not yet accepting queries; pg_isready tells.
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(Server { port });
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "PostgreSQL did not start within 30 s; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    ))
}

pub fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("test PostgreSQL: {e}"),
    }
}

/// A fresh, empty database on the shared test server; returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let port = server().port;
    let name = format!("t_{}", uuid_like());
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
