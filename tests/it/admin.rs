//! The admin console against the real daemon, in headless Chromium: log
//! in, see the chart, open a held run of a CSV that would disable 60 of 100
//! users, check the 60 names, approve, and find them disabled and the
//! approval audited. A viewer sees no button and gets 403; a POST without
//! its CSRF token is 403; sessions end when idle; failed logins lock out
//! the address that makes them, not the account.

use crate::common::browser::Browser;
use crate::common::pg::free_port;
use crate::common::{people_csv, Backend, Env};
use crate::daemon::Daemon;
use crate::held::{hold_sixty, LIMITS_TEN};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

const ALICE: &str = "correct horse battery staple";
const BOB: &str = "viewers see every single thing";

async fn console(extra: &str) -> (Env, u16) {
    let port = free_port();
    let env = Env::with_extra(
        Backend::Sqlite,
        LIMITS_TEN,
        &format!(
            "[web]\nlisten = \"127.0.0.1:{port}\"\n[mail]\nlink_base_url = \"http://127.0.0.1:{port}\"\n{extra}"
        ),
    )
    .await;
    for (name, role, pw) in [("alice", "admin", ALICE), ("bob", "viewer", BOB)] {
        let mut c = env.cmd(&["admin", "add", name, "--role", role, "--password-stdin"]);
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("admin add");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{pw}\n").as_bytes())
            .expect("password");
        let out = child.wait_with_output().expect("admin add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (env, port)
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request from `from` (a loopback address) to the daemon.
async fn http(
    port: u16,
    from: [u8; 4],
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> Reply {
    http_with(port, from, method, path, cookie, form, "").await
}

/// [`http`] with extra header lines (each ending in CRLF).
async fn http_with(
    port: u16,
    from: [u8; 4],
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
    extra: &str,
) -> Reply {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind");
    let stream = sock
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let mut s = stream.into_std().expect("std");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nCookie: {cookie}\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = HashMap::new();
    for (k, v) in lines.filter_map(|l| l.split_once(':')) {
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        headers
            .entry(k)
            .and_modify(|old: &mut String| {
                old.push('\n');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn hidden(body: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    body.split_once(&needle)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

fn set_cookie(r: &Reply, name: &str) -> String {
    r.headers
        .get("set-cookie")
        .into_iter()
        .flat_map(|v| v.lines())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// A login over plain HTTP from `from`: the answer, and the session cookie
/// when it worked.
async fn login(port: u16, from: [u8; 4], user: &str, password: &str) -> (Reply, String) {
    let form = http(port, from, "GET", "/admin/login", "", "").await;
    let csrf = hidden(&form.body, "csrf");
    let cookie = format!("pbx_admin_login={}", set_cookie(&form, "pbx_admin_login"));
    let body = format!(
        "csrf={csrf}&next=%2Fadmin&username={user}&password={}",
        password.replace(' ', "+")
    );
    let r = http(port, from, "POST", "/admin/login", &cookie, &body).await;
    let session = set_cookie(&r, "pbx_admin");
    (r, session)
}

fn screenshot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("PBX_ONBOARD_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        std::fs::write(format!("{dir}/{name}.png"), b.screenshot()).expect("screenshot");
    }
}

fn browser_login(b: &Browser, port: u16, user: &str, password: &str) {
    b.open(&format!("http://127.0.0.1:{port}/admin"));
    assert!(b.url().contains("/admin/login"), "{}", b.url());
    b.type_into("#username", user);
    b.type_into("#password", password);
    b.click("#login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_approves_a_held_run_in_the_browser() {
    let (env, port) = console("").await;
    let held = hold_sixty(&env);
    let daemon = Daemon::start(&env, port, "admin");
    let b = Browser::start();
    b.resize(1280, 1100);

    browser_login(&b, port, "alice", ALICE);
    let overview = b.wait_text("main", "Run history");
    assert!(overview.contains("hr-drop"), "{overview}");
    assert_eq!(b.count("svg.chart"), 1, "one chart per source");
    assert!(b.text(".banner").contains(&format!("Held run #{held}")));
    screenshot(&b, "overview");

    b.open(&format!("http://127.0.0.1:{port}/admin/held/{held}"));
    assert!(b.wait_text("#shown", "60 of 60").contains("60 of 60"));
    let names = b.text("#actions");
    for i in 40..100 {
        assert!(
            names.contains(&format!("First{i} Last{i}")),
            "First{i} missing"
        );
    }
    assert!(!names.contains("First39 Last39"), "a kept user is listed");
    screenshot(&b, "held-run");
    // Filterable.
    b.type_into("#q", "First77");
    b.click(".filters button");
    assert!(b.wait_text("#shown", "1 of 60").contains("1 of 60"));

    // Approve states the counts, then applies.
    b.click("#approve");
    let what = b.wait_text("#what", "disables 60");
    assert!(what.contains("disables 60 users"), "{what}");
    assert!(b.text("#confirm").contains("60 disables"));
    screenshot(&b, "confirm");
    b.click("#confirm");
    let done = b.wait_text("#message", "applied");
    assert!(done.contains("60 disabled"), "{done}");
    let users = env.users();
    assert_eq!(
        users.iter().filter(|u| u["status"] == "disabled").count(),
        60
    );
    assert_eq!(
        env.scalar("SELECT actor || ' from ' || address FROM audit WHERE action = 'held.approve'")
            .await,
        "alice from 127.0.0.1"
    );

    // The run page, a user page, the chart of the approved run.
    b.open(&format!(
        "http://127.0.0.1:{port}/admin/users/acme.example/{}",
        users[0]["extension"].as_str().unwrap_or("")
    ));
    assert!(b.wait_text("#history", "create").contains("create"));
    screenshot(&b, "user");
    b.open(&format!("http://127.0.0.1:{port}/admin"));
    assert!(b.find("svg.chart").is_some(), "the chart");
    let page = http(
        port,
        [127, 0, 0, 1],
        "GET",
        "/admin",
        &format!("pbx_admin={}", b.cookie("pbx_admin").unwrap_or_default()),
        "",
    )
    .await;
    assert!(
        page.body
            .contains("100 created, 0 updated, 60 disabled, 1 refused runs."),
        "the chart's description"
    );
    screenshot(&b, "chart");

    // A viewer: no button, and a POST is refused.
    let ten = env.write("ten.csv", people_csv(0, 10).as_bytes());
    let _ = env.import(&[&ten]); // 30 more disables: held again
    let (_, list) = env.json(&["held", "list"]);
    let second = list[0]["id"].as_i64().expect("a second hold");
    let viewer = Browser::start();
    browser_login(&viewer, port, "bob", BOB);
    viewer.wait_text("main", "Overview");
    viewer.open(&format!("http://127.0.0.1:{port}/admin/held/{second}"));
    assert!(viewer
        .wait_text("#viewer-note", "viewer")
        .contains("viewer"));
    assert!(
        viewer.find("#approve").is_none(),
        "a viewer sees an approve button"
    );
    screenshot(&viewer, "viewer-held");
    let bob_cookie = format!(
        "pbx_admin={}",
        viewer.cookie("pbx_admin").expect("bob's session")
    );
    let page = http(
        port,
        [127, 0, 0, 1],
        "GET",
        &format!("/admin/held/{second}"),
        &bob_cookie,
        "",
    )
    .await;
    let bob_csrf = hidden(&page.body, "csrf");
    let r = http(
        port,
        [127, 0, 0, 1],
        "POST",
        &format!("/admin/held/{second}/approve"),
        &bob_cookie,
        &format!("csrf={bob_csrf}&confirm=yes"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // An admin POST without its CSRF token (or with another's) is 403.
    let alice_cookie = format!(
        "pbx_admin={}",
        b.cookie("pbx_admin").expect("alice's session")
    );
    for form in [
        "confirm=yes".to_string(),
        format!("csrf={bob_csrf}&confirm=yes"),
    ] {
        let r = http(
            port,
            [127, 0, 0, 1],
            "POST",
            &format!("/admin/held/{second}/approve"),
            &alice_cookie,
            &form,
        )
        .await;
        assert_eq!(r.status, 403, "{form}: {}", r.body);
    }
    // From another site: 403 even with the token.
    let page = http(
        port,
        [127, 0, 0, 1],
        "GET",
        &format!("/admin/held/{second}"),
        &alice_cookie,
        "",
    )
    .await;
    let alice_csrf = hidden(&page.body, "csrf");
    let r = http_with(
        port,
        [127, 0, 0, 1],
        "POST",
        &format!("/admin/held/{second}/approve"),
        &alice_cookie,
        &format!("csrf={alice_csrf}&confirm=yes"),
        "Origin: http://evil.example\r\n",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let (_, list) = env.json(&["held", "list"]);
    assert_eq!(list[0]["status"], "pending", "nothing was decided: {list}");

    // Logging out ends the session: the old cookie gets the login page.
    b.open(&format!("http://127.0.0.1:{port}/admin"));
    b.click(".logout button");
    b.wait_text("h1", "console");
    assert!(b.url().contains("/admin/login"), "{}", b.url());
    let r = http(port, [127, 0, 0, 1], "GET", "/admin", &alice_cookie, "").await;
    assert_eq!(r.status, 303, "a logged-out session still works");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_and_logins_are_throttled_per_address() {
    let (env, port) = console("[admin]\nsession_idle_minutes = 0.05\n").await;
    let _daemon = Daemon::start(&env, port, "admin-sessions");

    // Unknown user and wrong password: the same answer.
    let (nobody, _) = login(port, [127, 0, 0, 2], "mallory", "whatever it is we try").await;
    let (wrong, _) = login(port, [127, 0, 0, 2], "alice", "whatever it is we try").await;
    assert_eq!((nobody.status, wrong.status), (401, 401));
    let msg = |r: &Reply| {
        r.body
            .split_once("id=\"login-error\">")
            .map(|(_, m)| m.split('<').next().unwrap_or("").to_string())
    };
    assert_eq!(msg(&nobody), msg(&wrong));

    // A session works, then ends after 3 s without a request.
    let (r, session) = login(port, [127, 0, 0, 2], "alice", ALICE).await;
    assert_eq!(
        (r.status, r.headers.get("location").map(String::as_str)),
        (303, Some("/admin"))
    );
    let cookie = format!("pbx_admin={session}");
    assert_eq!(
        http(port, [127, 0, 0, 2], "GET", "/admin", &cookie, "")
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = http(port, [127, 0, 0, 2], "GET", "/admin", &cookie, "").await;
    assert_eq!(r.status, 303);
    assert!(
        r.headers
            .get("location")
            .is_some_and(|l| l.contains("expired=1")),
        "{:?}",
        r.headers
    );

    // Five failures lock the address out, even for the right password ...
    for _ in 0..5 {
        let (r, _) = login(port, [127, 0, 0, 3], "alice", "not the password at all").await;
        assert_eq!(r.status, 401);
    }
    let (r, session) = login(port, [127, 0, 0, 3], "alice", ALICE).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(session.is_empty());
    assert!(r.headers.contains_key("retry-after"));
    // ... but not the account: alice still logs in from elsewhere (after
    // the per-account delay).
    let started = std::time::Instant::now();
    let (r, session) = login(port, [127, 0, 0, 4], "alice", ALICE).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(!session.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "no per-account delay"
    );
}

/// `[admin] ldap_source`: a (nested) member of the group logs in with the
/// directory password; a non-member with the right password, and a member
/// with a wrong one, cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_group_members_log_in_and_others_cannot() {
    use crate::common::slapd::{person, Slapd, SUFFIX, SVC, SVC_PW};
    let slapd = Slapd::start();
    let mut ldif = String::new();
    for (uid, pw) in [
        ("ops1", "ops one password here"),
        ("sales1", "sales one password here"),
    ] {
        ldif.push_str(&person(uid, "User", uid, &format!("userPassword: {pw}\n")));
        ldif.push('\n');
    }
    ldif.push_str(&format!(
        "dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\nmember: uid=ops1,ou=people,{SUFFIX}\n\n\
         dn: cn=pbx-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: pbx-admins\nmember: cn=ops,ou=groups,{SUFFIX}\n"
    ));
    slapd.add(&ldif);
    let extra = format!(
        "[[source]]\nname = \"dir\"\nkind = \"ldap\"\ndomain = \"acme.example\"\nprofile = \"openldap\"\n\
         url = \"{}\"\ntls = \"none\"\nbind_dn = \"{SVC}\"\nbind_password_file = \"ldap-password\"\n\
         base_dn = \"ou=people,{SUFFIX}\"\ngroup_base_dn = \"ou=groups,{SUFFIX}\"\ntimeout_seconds = 3\n\
         [admin]\nldap_source = \"dir\"\nldap_group = \"cn=pbx-admins,ou=groups,{SUFFIX}\"\n",
        slapd.url()
    );
    let (env, port) = console(&extra).await;
    env.write("ldap-password", format!("{SVC_PW}\n").as_bytes());
    let _daemon = Daemon::start(&env, port, "admin-ldap");

    let (r, session) = login(port, [127, 0, 0, 5], "ops1", "ops one password here").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = http(
        port,
        [127, 0, 0, 5],
        "GET",
        "/admin",
        &format!("pbx_admin={session}"),
        "",
    )
    .await;
    assert!(page.body.contains("ops1 · admin"), "{}", page.body);
    let (r, _) = login(port, [127, 0, 0, 6], "sales1", "sales one password here").await;
    assert_eq!(r.status, 401, "a non-member logged in");
    let (r, _) = login(port, [127, 0, 0, 7], "ops1", "not the directory password").await;
    assert_eq!(r.status, 401, "a wrong password logged in");
    // A console account of the same name as nobody in the directory still works.
    let (r, _) = login(port, [127, 0, 0, 8], "alice", ALICE).await;
    assert_eq!(r.status, 303);
}
