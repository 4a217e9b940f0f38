//! The daemon as IT runs it: a real process on a temp config, a file dropped
//! into its inbox, `/healthz` and `/metrics` scraped, SIGHUP with a bad
//! config, SIGTERM in the middle of a large import and a restart.

use crate::common::pg::free_port;
use crate::common::smtp::{header, Behaviour, Sink};
use crate::common::{people_csv, Backend, Env, LIMITS_OPEN};
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    pub(crate) fn start(env: &Env, port: u16, tag: &str) -> Daemon {
        Daemon::start_config(env, &env.config, port, tag)
    }

    /// A daemon on another config file (e.g. a second instance).
    pub(crate) fn start_config(
        env: &Env,
        config: &std::path::Path,
        port: u16,
        tag: &str,
    ) -> Daemon {
        let log = env.path(&format!("daemon-{tag}.log"));
        let f = std::fs::File::create(&log).expect("log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pbx-onboard"));
        cmd.arg("--config").arg(config).arg("daemon");
        cmd.env_remove("PBX_ONBOARD_CONFIG");
        let child = cmd
            .env("PBX_ONBOARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .expect("start daemon");
        let d = Daemon { child, log };
        d.wait_until("/healthz answers 200", Duration::from_secs(45), || {
            http_get(port, "/healthz").is_some_and(|(code, _)| code == 200)
        });
        d
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    #[track_caller]
    pub(crate) fn wait_until(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\n--- daemon log ---\n{}",
            self.log()
        );
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status within `limit`.
    pub(crate) fn stop(mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        self.signal("-TERM");
        while t.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("daemon did not exit within {limit:?}\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bounded HTTP/1.1 GET on 127.0.0.1: (status, body).
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Writes a file under a temporary name, then renames it into the inbox.
fn drop_file(env: &Env, name: &str, text: &str) {
    let tmp = env.write(&format!("var/inbox/{name}.part"), text.as_bytes());
    std::fs::rename(&tmp, env.path(&format!("var/inbox/{name}"))).expect("rename");
}

fn extra(port: u16) -> String {
    format!("[web]\nlisten = \"127.0.0.1:{port}\"\n[daemon]\nrescan_seconds = 1\n")
}

async fn daemon_imports_dropped_files(backend: Backend) {
    let (port, smtp) = (free_port(), free_port());
    let env = Env::with_extra(
        backend,
        LIMITS_OPEN,
        &crate::mail::mail_config(smtp, port, "none"),
    )
    .await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let d = Daemon::start(&env, port, "a");
    drop_file(&env, "new-hires.csv", &people_csv(0, 3));
    d.wait_until("3 users", Duration::from_secs(20), || {
        env.users().len() == 3
    });
    d.wait_until("3 welcome emails", Duration::from_secs(20), || {
        sink.messages().len() == 3
    });
    d.wait_until("the file archived", Duration::from_secs(10), || {
        std::fs::read_dir(env.path("var/archive"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".result.csv"))
            })
            .unwrap_or(false)
    });

    // The sink has the messages before the worker marks them sent.
    d.wait_until(
        "the sends marked in the store",
        Duration::from_secs(10),
        || {
            http_get(port, "/healthz").is_some_and(|(_, h)| {
                serde_json::from_str::<serde_json::Value>(&h)
                    .is_ok_and(|v| v["outbox"]["sent"] == 3)
            })
        },
    );
    let (code, health) = http_get(port, "/healthz").expect("healthz");
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["sources"][0]["name"], "hr-drop");
    assert_eq!(health["sources"][0]["last_run"]["outcome"], "ok");
    assert_eq!(health["outbox"]["sent"], 3, "{health}");

    // The mail worker counts a pass's sends when the pass ends, after it has
    // marked each message sent in the store (what /healthz just showed).
    d.wait_until("the sends counted", Duration::from_secs(10), || {
        http_get(port, "/metrics")
            .is_some_and(|(_, m)| m.contains("pbx_onboard_mail_total{result=\"sent\"} 3"))
    });
    let (code, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("pbx_onboard_runs_total{source=\"hr-drop\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pbx_onboard_users_total{action=\"created\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pbx_onboard_rows_refused_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pbx_onboard_outbox_messages{status=\"failed\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pbx_onboard_mail_total{result=\"sent\"} 3"),
        "{metrics}"
    );

    // A bad config on SIGHUP is refused; the daemon keeps working.
    let good = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, format!("{good}\n[limits]\nburst = 0\n")).expect("write");
    d.signal("-HUP");
    d.wait_until("the reload refusal logged", Duration::from_secs(10), || {
        d.log().contains("the new config is invalid")
    });
    std::fs::write(&env.config, &good).expect("write");
    drop_file(&env, "more.csv", &people_csv(0, 4));
    d.wait_until("4 users", Duration::from_secs(20), || {
        env.users().len() == 4
    });

    // A good config on SIGHUP is taken.
    d.signal("-HUP");
    d.wait_until("the reload", Duration::from_secs(10), || {
        d.log().contains("config reloaded")
    });
    d.wait_until("healthz after reload", Duration::from_secs(10), || {
        http_get(port, "/healthz").is_some_and(|(c, _)| c == 200)
    });

    let (status, took) = d.stop(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}");
    assert!(took < Duration::from_secs(10));
}

async fn sigterm_mid_import_then_restart_finishes(backend: Backend) {
    let port = free_port();
    // 1,000 writes a second in chunks of 50: 6,000 users take about 6 s.
    let limits = "writes_per_second = 1000\nburst = 50\nmax_disable = 1000\nmax_disable_percent = 100\nmax_billable = 1000000\n";
    let env = Env::with_extra(backend, limits, &extra(port)).await;
    let d = Daemon::start(&env, port, "b");
    drop_file(&env, "big.csv", &people_csv(0, 6000));
    d.wait_until("the apply under way", Duration::from_secs(30), || {
        let n = env.users().len();
        (500..6000).contains(&n)
    });
    let (status, took) = d.stop(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let users = env.users();
    assert!(users.len() < 6000, "the shutdown did not stop the apply");
    // No half-written user: each user committed with its device.
    assert!(
        users
            .iter()
            .all(|u| u["devices"].as_array().is_some_and(|d| d.len() == 1)),
        "a user without its device"
    );
    let processing: Vec<_> = std::fs::read_dir(env.path("var/processing"))
        .expect("processing")
        .flatten()
        .collect();
    assert_eq!(
        processing.len(),
        1,
        "the file waits in processing/ for the next start"
    );

    let d = Daemon::start(&env, port, "c");
    d.wait_until("all 6,000 users", Duration::from_secs(60), || {
        env.users().len() == 6000
    });
    let users = env.users();
    let mut ids: Vec<&str> = users
        .iter()
        .filter_map(|u| u["source_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6000, "duplicates after the restart");
    let (status, _) = d.stop(Duration::from_secs(10));
    assert!(status.success());
}

crate::both_stores!(
    daemon_imports_dropped_files,
    sigterm_mid_import_then_restart_finishes
);

/// The shipped unit passes `systemd-analyze verify` and scores "OK" (< 2.0)
/// in `systemd-analyze security`.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/pbx-onboard.service"),
    )
    .expect("unit")
    .replace("/usr/bin/pbx-onboard", env!("CARGO_BIN_EXE_pbx-onboard"))
    // verify opens each man: page in Documentation=; they are installed
    // only by the package, whose test (.ci/test-package) verifies the unit
    // as installed.
    .replace(
        "Documentation=man:pbx-onboard(1) man:pbx-onboard.toml(5) ",
        "Documentation=",
    );
    let path = dir.path().join("pbx-onboard.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd) not found");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "verify: {err}"
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for pbx-onboard.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(score < 2.0, "exposure {score}: {text}");
}

/// Two daemons on one PostgreSQL drain one large outbox: every email is
/// delivered exactly once (claims use FOR UPDATE SKIP LOCKED and a lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_send_each_email_once() {
    let (smtp, a, b) = (free_port(), free_port(), free_port());
    let env = Env::with_extra(
        Backend::Postgres,
        LIMITS_OPEN,
        &crate::mail::mail_config(smtp, a, "none"),
    )
    .await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let n = 1500;
    let csv = env.write("people.csv", people_csv(0, n).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap_or(""), "--no-mail"]);
    assert_eq!(out.status.code(), Some(0));
    // At 100 a second each, the outbox takes long enough for both to work on it.
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("messages_per_second = 0", "messages_per_second = 100");
    std::fs::write(&env.config, &text).expect("config");
    let second = env.path("second.toml");
    let other = text.replace(&format!("127.0.0.1:{a}\""), &format!("127.0.0.1:{b}\""));
    std::fs::write(&second, other).expect("second config");
    let da = Daemon::start(&env, a, "a");
    let db = Daemon::start_config(&env, &second, b, "b");
    da.wait_until("every email", Duration::from_secs(90), || {
        sink.messages().len() >= n
    });
    std::thread::sleep(Duration::from_secs(2));
    let msgs = sink.messages();
    assert_eq!(msgs.len(), n, "no email twice");
    let ids: std::collections::HashSet<_> = msgs.iter().map(|m| header(m, "Message-ID")).collect();
    assert_eq!(ids.len(), n);
    let sent = env
        .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE status = 'sent'")
        .await;
    assert_eq!(sent, n.to_string());
    for d in [&da, &db] {
        assert!(
            d.log().contains("outbox delivered"),
            "both daemons sent: {}",
            d.log()
        );
    }
    let (sa, _) = da.stop(Duration::from_secs(15));
    let (sb, _) = db.stop(Duration::from_secs(15));
    assert!(sa.success() && sb.success());
}

/// A daemon killed while sending: its claimed batch is taken over by
/// another daemon when the lease runs out; every email arrives, and only
/// that batch can arrive twice (same Message-ID, same link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_daemon_releases_its_claim() {
    let (smtp, a, b) = (free_port(), free_port(), free_port());
    let env = Env::with_extra(
        Backend::Postgres,
        LIMITS_OPEN,
        &crate::mail::mail_config_with(smtp, a, "none", "lease_seconds = 5", ""),
    )
    .await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let n = 300;
    let csv = env.write("people.csv", people_csv(0, n).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap_or(""), "--no-mail"]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("messages_per_second = 0", "messages_per_second = 50");
    std::fs::write(&env.config, &text).expect("config");
    let second = env.path("second.toml");
    let other = text.replace(&format!("127.0.0.1:{a}\""), &format!("127.0.0.1:{b}\""));
    std::fs::write(&second, other).expect("second config");
    let da = Daemon::start(&env, a, "a");
    da.wait_until("sending has begun", Duration::from_secs(30), || {
        sink.messages().len() >= 20
    });
    da.kill();
    let db = Daemon::start_config(&env, &second, b, "b");
    let unique = || {
        sink.messages()
            .iter()
            .map(|m| header(m, "Message-ID"))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    db.wait_until("every email", Duration::from_secs(60), || unique() >= n);
    let msgs = sink.messages();
    assert_eq!(unique(), n);
    assert!(
        msgs.len() - n <= 200,
        "only the dead daemon's batch twice: {}",
        msgs.len()
    );
    let mut links = std::collections::HashMap::new();
    for m in &msgs {
        // The token; the base URL is each daemon's own config.
        let link =
            crate::common::smtp::link_in(m).and_then(|l| l.rsplit('/').next().map(str::to_string));
        let prev = links.insert(header(m, "Message-ID"), link.clone());
        assert!(
            prev.is_none() || prev == Some(link),
            "a duplicate carries the same link"
        );
    }
    let (sb, _) = db.stop(Duration::from_secs(15));
    assert!(sb.success());
}
