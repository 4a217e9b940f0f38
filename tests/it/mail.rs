//! Welcome emails through a real SMTP server (Postfix's `smtp-sink` on
//! loopback): delivered once, retried after an outage, failed on 5xx,
//! at most one duplicate after a crash between send and mark, a pooled
//! connection the server closed while idle, and STARTTLS failing closed.

use crate::common::pg::free_port;
use crate::common::smtp::{header, link_in, Behaviour, Sink};
use crate::common::{people_csv, Backend, Env, LIMITS_OPEN};
use crate::daemon::Daemon;
use std::time::Duration;

pub(crate) fn mail_config(smtp_port: u16, web_port: u16, tls: &str) -> String {
    mail_config_with(smtp_port, web_port, tls, "", "")
}

/// `mail_extra` and `web_extra` are added to `[mail]` and `[web]`.
pub(crate) fn mail_config_with(
    smtp_port: u16,
    web_port: u16,
    tls: &str,
    mail_extra: &str,
    web_extra: &str,
) -> String {
    format!(
        r#"
[mail]
transport = "smtp"
host = "127.0.0.1"
port = {smtp_port}
tls = "{tls}"
from = "PBX Onboarding <onboarding@acme.example>"
link_base_url = "http://127.0.0.1:{web_port}"
messages_per_second = 0
timeout_seconds = 5
{mail_extra}
[web]
listen = "127.0.0.1:{web_port}"
{web_extra}
[daemon]
rescan_seconds = 1
"#
    )
}

async fn env_with_mail(backend: Backend, smtp_port: u16, web_port: u16) -> Env {
    Env::with_extra(
        backend,
        LIMITS_OPEN,
        &mail_config(smtp_port, web_port, "none"),
    )
    .await
}

fn pending(env: &Env) -> Vec<serde_json::Value> {
    let (code, v) = env.json(&["welcome", "pending", "--all"]);
    assert_eq!(code, 0);
    v.as_array().cloned().unwrap_or_default()
}

fn states(env: &Env) -> Vec<String> {
    pending(env)
        .iter()
        .map(|w| w["state"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn delivered_once(backend: Backend) {
    let smtp = free_port();
    let env = env_with_mail(backend, smtp, free_port()).await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let csv = env.write("people.csv", people_csv(1, 3).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(msgs.len(), 3, "one welcome per new person");
    let mut rcpts: Vec<String> = msgs
        .iter()
        .map(|m| header(m, "To").unwrap_or_default())
        .collect();
    rcpts.sort();
    assert!(rcpts[0].contains("user1@acme.example"), "{rcpts:?}");
    let ids: std::collections::HashSet<_> = msgs.iter().map(|m| header(m, "Message-ID")).collect();
    assert_eq!(ids.len(), 3, "distinct Message-IDs");
    for m in &msgs {
        assert!(m.contains("multipart/alternative"), "HTML and text parts");
        assert!(link_in(m).is_some_and(|l| l.contains("/welcome/")), "{m}");
    }
    assert_eq!(states(&env), ["sent", "sent", "sent"]);
    // Nothing is sent twice: a flush and a re-import add no email.
    let out = env.run(&["mail", "flush"]);
    assert_eq!(out.status.code(), Some(0));
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 3);
}

async fn outage_then_delivered_once(backend: Backend) {
    let smtp = free_port();
    let env = env_with_mail(backend, smtp, free_port()).await;
    let csv = env.write("people.csv", people_csv(1, 2).as_bytes());
    // No server yet: the run still applies, the emails wait.
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 will be retried"), "{err}");
    let p = pending(&env);
    assert!(p.iter().all(|w| w["state"] == "queued"), "{p:?}");
    assert!(
        p[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("connect"),
        "{p:?}"
    );
    // Not due yet: a plain flush waits for the backoff.
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let out = env.run(&["mail", "flush"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sink.messages().len(), 0, "retries wait for their time");
    let out = env.run(&["mail", "flush", "--retry-now"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).len(), 2);
    assert_eq!(states(&env), ["sent", "sent"]);
    let out = env.run(&["mail", "flush", "--retry-now"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sink.messages().len(), 2, "delivered once");
}

async fn permanent_failure_is_reported(backend: Backend) {
    let smtp = free_port();
    let env = env_with_mail(backend, smtp, free_port()).await;
    let sink = Sink::start(
        smtp,
        &env.path("sink"),
        Behaviour {
            hard_reject: true,
            ..Behaviour::default()
        },
    );
    let csv = env.write("people.csv", people_csv(1, 1).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap(), "--no-mail"]);
    assert_eq!(out.status.code(), Some(0));
    let (code, r) = env.json(&["mail", "flush"]);
    assert_eq!(code, 1, "a failed email is an error for `mail flush`");
    assert_eq!(r["failed"], 1, "{r}");
    assert!(r["errors"][0].as_str().unwrap_or("").contains("5"), "{r}");
    let p = pending(&env);
    assert_eq!(p[0]["state"], "failed", "{p:?}");
    assert_eq!(p[0]["attempts"], 1, "a 5xx is not retried");
    // Stays failed; `welcome resend` is the way out.
    let (_, r) = env.json(&["mail", "flush", "--retry-now"]);
    assert_eq!(r["sent"], 0);
    assert_eq!(sink.messages().len(), 0);
}

async fn crash_between_send_and_mark(backend: Backend) {
    let smtp = free_port();
    let env = env_with_mail(backend, smtp, free_port()).await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let csv = env.write("people.csv", people_csv(1, 1).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let first = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(first.len(), 1);
    // What a crash after the server accepted the message and before the row
    // was marked leaves behind: the row still queued, its lease run out.
    let n = env
        .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM outbox")
        .await;
    assert_eq!(n, "1");
    let url = env.absolute_url();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET status = 'queued', sent_at = NULL, lease_until = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = env.run(&["mail", "flush"]);
    assert_eq!(out.status.code(), Some(0));
    let all = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(all.len(), 2, "one duplicate");
    assert_eq!(header(&all[0], "Message-ID"), header(&all[1], "Message-ID"));
    assert_eq!(
        link_in(&all[0]),
        link_in(&all[1]),
        "the same link, so both work"
    );
    let out = env.run(&["mail", "flush", "--retry-now"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sink.messages().len(), 2, "and no more");
}

async fn idle_pooled_connection_recovers(backend: Backend) {
    let (smtp, web) = (free_port(), free_port());
    let env = env_with_mail(backend, smtp, web).await;
    let sink = Sink::start(
        smtp,
        &env.path("sink"),
        Behaviour {
            idle_timeout: Some(1),
            ..Behaviour::default()
        },
    );
    let daemon = Daemon::start(&env, web, "pool");
    let csv = env.write("a.csv", people_csv(1, 1).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap(), "--no-mail"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(15)).len(),
        1,
        "{}",
        daemon.log()
    );
    // The sink drops the pooled connection after a second of silence.
    std::thread::sleep(Duration::from_secs(3));
    let out = env.run(&[
        "welcome",
        "resend",
        "--domain",
        "acme.example",
        "1000",
        "--no-mail",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sink.wait_for(2, Duration::from_secs(15)).len(),
        2,
        "{}",
        daemon.log()
    );
    // The sink has the message once the SMTP transaction ends; the daemon
    // records it as sent just after. Wait (bounded) for that record.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let p = loop {
        let p = pending(&env);
        if p[0]["state"] == "sent" || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(p[0]["state"], "sent", "{p:?}");
    assert_eq!(
        p[0]["attempts"], 1,
        "sent on its first attempt, not after a retry"
    );
    let (st, _) = daemon.stop(Duration::from_secs(15));
    assert!(st.success());
}

async fn starttls_fails_closed(backend: Backend) {
    let smtp = free_port();
    let env = Env::with_extra(
        backend,
        LIMITS_OPEN,
        &mail_config(smtp, free_port(), "starttls"),
    )
    .await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let csv = env.write("people.csv", people_csv(1, 1).as_bytes());
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STARTTLS"), "{err}");
    assert_eq!(sink.messages().len(), 0, "nothing sent in clear");
    assert_eq!(states(&env), ["queued"]);
}

async fn admin_report_and_people_without_email(backend: Backend) {
    let smtp = free_port();
    let cfg = mail_config_with(
        smtp,
        free_port(),
        "none",
        "admin_report_to = [\"IT Desk <it@acme.example>\"]",
        "",
    );
    let env = Env::with_extra(backend, LIMITS_OPEN, &cfg).await;
    let sink = Sink::start(smtp, &env.path("sink"), Behaviour::default());
    let head = "Employee ID,First Name,Last Name,Work Email,Department\n";
    let csv = env.write(
        "people.csv",
        format!("{head}E1,Ann,Archer,ann@acme.example,Sales\nE2,Ben,Baker,,Sales\nE3,Cat,Cole,cat(at)acme,Sales\n")
            .as_bytes(),
    );
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a refused row");
    let msgs = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(
        msgs.len(),
        2,
        "one welcome (Ben has no email) and one report"
    );
    let report = msgs
        .iter()
        .find(|m| header(m, "To").is_some_and(|t| t.contains("it@acme.example")))
        .expect("the admin report");
    let subject = header(report, "Subject").unwrap_or_default();
    assert!(
        subject.contains("2 created") && subject.contains("1 refused"),
        "{subject}"
    );
    let body = report.replace("=\r\n", "").replace("=\n", "");
    assert!(
        body.contains("Refused rows") && body.contains("row 4"),
        "{body}"
    );
    assert!(
        body.contains("Ben Baker"),
        "created users are listed: {body}"
    );
    let (_, p) = env.json(&["welcome", "pending"]);
    let ben = p
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == "Ben Baker"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ben["state"], "none", "no link without an email: {p}");
    // HR adds Ben's email: his welcome goes out on the next run.
    let csv = env.write(
        "people.csv",
        format!(
            "{head}E1,Ann,Archer,ann@acme.example,Sales\nE2,Ben,Baker,ben@acme.example,Sales\n"
        )
        .as_bytes(),
    );
    let out = env.run(&["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let msgs = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(msgs.len(), 3, "Ben's welcome; no report for a quiet run");
    assert!(header(&msgs[2], "To").is_some_and(|t| t.contains("ben@acme.example")));
}

/// STARTTLS and implicit TLS with AUTH against aiosmtpd; an untrusted CA
/// and a wrong password send nothing.
async fn tls_and_auth(backend: Backend) {
    for (tls, implicit) in [("starttls", false), ("tls", true)] {
        let smtp = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Sink::start_tls(smtp, dir.path(), implicit);
        let certs = dir.path().join("certs");
        let keys = |ca: &str, pw: &str| {
            format!(
                "ca_file = \"{}\"\nusername = \"pbx\"\npassword_file = \"{}\"",
                certs.join(ca).display(),
                dir.path().join(pw).display()
            )
        };
        // An unrelated CA: refused before anything is said in clear.
        let cfg = mail_config_with(
            smtp,
            free_port(),
            tls,
            &keys("other-ca.pem", "smtp-password"),
            "",
        );
        let env = Env::with_extra(backend, LIMITS_OPEN, &cfg).await;
        let csv = env.write("people.csv", people_csv(1, 1).as_bytes());
        let out = env.run(&["import", csv.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("1 will be retried") && err.contains("certificate"),
            "{tls}: {err}"
        );
        // A wrong password: refused, retried later, never logged.
        std::fs::write(dir.path().join("wrong"), "not-the-password\n").expect("write");
        let cfg = mail_config_with(smtp, free_port(), tls, &keys("ca.pem", "wrong"), "");
        let base = std::fs::read_to_string(&env.config).expect("cfg");
        let cut = base.find("\n[mail]").expect("mail section");
        std::fs::write(&env.config, format!("{}{cfg}", &base[..cut])).expect("cfg");
        let out = env.run(&["mail", "flush", "--retry-now"]);
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("AUTH"), "{tls}: {text}");
        assert!(!text.contains("not-the-password"));
        assert_eq!(sink.messages().len(), 0);
        // The right CA and password: delivered, authenticated, encrypted.
        let cfg = mail_config_with(smtp, free_port(), tls, &keys("ca.pem", "smtp-password"), "");
        std::fs::write(&env.config, format!("{}{cfg}", &base[..cut])).expect("cfg");
        let out = env.run(&["mail", "flush", "--retry-now"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{tls}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let msgs = sink.wait_for(1, Duration::from_secs(10));
        assert_eq!(msgs.len(), 1, "{tls}");
        assert!(msgs[0].starts_with("X-Test-Auth: pbx"), "{tls}");
    }
}

crate::both_stores!(
    tls_and_auth,
    admin_report_and_people_without_email,
    delivered_once,
    outage_then_delivered_once,
    permanent_failure_is_reported,
    crash_between_send_and_mark,
    idle_pooled_connection_recovers,
    starttls_fails_closed
);
