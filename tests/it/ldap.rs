//! The LDAP source against a real `slapd` (see `common::slapd`).

use crate::common::slapd::{person, Slapd, SIZELIMIT, SUFFIX, SVC};
use crate::common::{Backend, Env};
use serde_json::Value;

const PEOPLE: usize = 120;

/// An ldap source on `slapd`; `conn` sets url/tls/ca_file, `more` adds keys.
fn source(conn: &str, more: &str) -> String {
    format!(
        r#"
[[source]]
name = "dir"
kind = "ldap"
domain = "acme.example"
profile = "openldap"
{conn}
bind_dn = "{SVC}"
bind_password_file = "ldap-password"
base_dn = "ou=people,{SUFFIX}"
disabled_filter = "(employeeType=inactive)"
page_size = 20
timeout_seconds = 3
{more}
[[mapping.rule]]
group = "Sales"
department = "Sales"
[mail]
messages_per_second = 0   # welcome mail at 10 a second only slows these down
"#
    )
}

fn plain(s: &Slapd) -> String {
    format!("url = \"{}\"\ntls = \"none\"", s.url())
}

async fn env_for(backend: Backend, conn: &str, more: &str) -> Env {
    let env = Env::with_extra(backend, "writes_per_second = 0", &source(conn, more)).await;
    env.write(
        "ldap-password",
        format!("{}\n", crate::common::slapd::SVC_PW).as_bytes(),
    );
    env
}

/// u0..u119; the group `pbx` holds `sales` (u0..u59) and u60..u99 directly.
fn populate(s: &Slapd) {
    let mut ldif = String::new();
    for i in 0..PEOPLE {
        ldif.push_str(&person(&format!("u{i}"), "User", &format!("N{i}"), ""));
        ldif.push('\n');
    }
    s.add(&ldif);
    let members = |r: std::ops::Range<usize>| {
        r.map(|i| format!("member: uid=u{i},ou=people,{SUFFIX}\n"))
            .collect::<String>()
    };
    s.add(&format!(
        "dn: cn=Sales,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: Sales\n{}\n\
         dn: cn=pbx,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: pbx\nmember: cn=Sales,ou=groups,{SUFFIX}\n{}",
        members(0..60),
        members(60..100)
    ));
}

fn sync(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["sync"];
    args.extend_from_slice(extra);
    env.json(&args)
}

fn by_last_name<'a>(users: &'a [Value], sn: &str) -> &'a Value {
    users
        .iter()
        .find(|u| u["last_name"] == sn)
        .unwrap_or_else(|| panic!("no user {sn}"))
}

async fn follows_the_directory(backend: Backend) {
    let s = Slapd::start();
    populate(&s);
    let env = env_for(
        backend,
        &plain(&s),
        &format!("group = \"cn=PBX,ou=Groups,{SUFFIX}\""),
    )
    .await;

    // check-config binds and counts the group's nested members.
    let out = env.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("100 entries match under ou=people")
            && text.contains(&format!(
                "(120 returned, 20 of them not in cn=PBX,ou=Groups,{SUFFIX})"
            )),
        "{text}"
    );

    // Full read: more entries than the server's size limit, nested members only.
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 0, "{r}");
    const { assert!(PEOPLE > SIZELIMIT) };
    assert_eq!(r["created"], 100, "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("full read"), "{notes}");
    let users = env.users();
    assert_eq!(users.len(), 100);
    assert_eq!(by_last_name(&users, "N5")["department"], "Sales"); // nested via pbx → Sales
    assert!(by_last_name(&users, "N70")["department"].is_null());
    assert!(!users.iter().any(|u| u["last_name"] == "N110"));

    // Changes: an attribute, a disabled account, a leaver, a joiner.
    s.modify(&format!(
        "dn: uid=u6,ou=people,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: Renamed\n\n\
         dn: uid=u5,ou=people,{SUFFIX}\nchangetype: modify\nadd: employeeType\nemployeeType: inactive\n\n\
         dn: cn=pbx,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=u110,ou=people,{SUFFIX}\n"
    ));
    s.delete(&format!("uid=u7,ou=people,{SUFFIX}"));

    // Changed-only read: applies the change, but disables no one: neither
    // the missing entry nor the account the directory marks disabled.
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 0, "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("changed-only read"), "{r}");
    assert!(
        notes.contains("1 accounts are disabled in the directory"),
        "{r}"
    );
    assert_eq!(r["disabled"], 0, "{r}");
    assert_eq!(r["updated"], 1, "{r}");
    let users = env.users();
    assert_eq!(by_last_name(&users, "Renamed")["status"], "active");
    assert_eq!(by_last_name(&users, "N5")["status"], "active");
    assert_eq!(by_last_name(&users, "N7")["status"], "active");

    // A forced full read disables both (and finds the new member, which the
    // changed-only read may have found already).
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 0, "{r}");
    assert!(r["notes"].to_string().contains("full read"), "{r}");
    assert_eq!(r["disabled"], 2, "{r}");
    let users = env.users();
    assert_eq!(by_last_name(&users, "N5")["status"], "disabled");
    assert_eq!(by_last_name(&users, "N7")["status"], "disabled");
    assert_eq!(by_last_name(&users, "N110")["status"], "active");

    // Nothing changed: a no-op.
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["created"].as_u64().unwrap_or(9) + r["updated"].as_u64().unwrap_or(9),
        0,
        "{r}"
    );
}

async fn a_failed_read_disables_no_one(backend: Backend) {
    let mut s = Slapd::start();
    populate(&s);
    let env = env_for(backend, &plain(&s), "").await;
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["created"], PEOPLE, "{r}");

    // A wrong bind password: refused, nothing applied.
    env.write("ldap-password", b"not-the-password\n");
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 4, "{r}");
    assert!(r["errors"].to_string().contains("bind as"), "{r}");
    assert_eq!(r["disabled"], 0, "{r}");
    env.write(
        "ldap-password",
        format!("{}\n", crate::common::slapd::SVC_PW).as_bytes(),
    );

    // Server frozen: the bind times out.
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &s.pid().to_string()])
            .status()
            .expect("kill");
    };
    stop("-STOP");
    let t = std::time::Instant::now();
    let (code, r) = sync(&env, &["--full"]);
    stop("-CONT");
    assert_eq!(code, 4, "{r}");
    assert_eq!(r["outcome"], "failed");
    assert!(
        t.elapsed().as_secs() < 20,
        "the timeout did not bound the read"
    );

    // Server gone: nothing disabled, the run is on record.
    s.kill();
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 4, "{r}");
    assert_eq!(r["disabled"], 0);
    assert!(
        r["errors"].to_string().contains("no directory server"),
        "{r}"
    );
    let (_, runs) = env.json(&["runs"]);
    assert_eq!(runs[0]["outcome"], "failed", "{runs}");
    assert!(env.users().iter().all(|u| u["status"] == "active"));

    // Killed mid-read: a proxy passes a few pages, then holds the rest
    // back while slapd is killed; the sync sees the connection drop.
    s.restart();
    let (proxy, stalled) = stalling_proxy(s.port, 12_000);
    let text = std::fs::read_to_string(&env.config).expect("read config");
    let via_proxy = text.replace(&s.url(), &format!("ldap://127.0.0.1:{proxy}"));
    assert_ne!(via_proxy, text);
    std::fs::write(&env.config, via_proxy).expect("write config");
    let child = env
        .cmd(&["sync", "--full", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sync");
    stalled
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the sync never got a few pages in");
    s.kill();
    // Bounded: the binary's own 3 s timeouts should end it long before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut child = child;
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sync did not end after slapd was killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait sync");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(out.status.code(), Some(4), "{r}");
    assert!(r["errors"].to_string().contains("the search failed"), "{r}");
    assert_eq!(r["disabled"], 0, "{r}");
    assert!(env.users().iter().all(|u| u["status"] == "active"));
    std::fs::write(&env.config, text).expect("write config");

    // Back up: the next run recovers and changes nothing.
    s.restart();
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["disabled"], 0, "{r}");
    assert_eq!(r["unchanged"], PEOPLE, "{r}");

    // A directory that suddenly returns nobody is a failed read.
    for i in 0..PEOPLE {
        s.delete(&format!("uid=u{i},ou=people,{SUFFIX}"));
    }
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 4, "{r}");
    assert!(
        r["errors"].to_string().contains("returned no entries"),
        "{r}"
    );
    assert!(env.users().iter().all(|u| u["status"] == "active"));
    // Taken once on purpose: still nobody disabled, and the next read is ok.
    let (code, r) = sync(&env, &["--full", "--override-limits"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["disabled"], 0, "{r}");
    let (code, r) = sync(&env, &["--full"]);
    assert_eq!(code, 0, "{r}");
    assert!(env.users().iter().all(|u| u["status"] == "active"));
}

/// A loopback TCP proxy to `port` for one connection. Once it has passed
/// `limit` bytes from the server it passes nothing more, says so on the
/// channel, and closes the client's side when the server's side closes.
fn stalling_proxy(port: u16, limit: usize) -> (u16, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let local = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Some(Ok(mut client)) = listener.incoming().next() else {
            return;
        };
        let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let (mut c2, mut s2) = match (client.try_clone(), server.try_clone()) {
            (Ok(c), Ok(s)) => (c, s),
            _ => return,
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut s2);
        });
        let mut passed = 0;
        let mut buf = [0u8; 4096];
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 {
                break;
            }
            if passed >= limit {
                let _ = tx.send(());
                continue; // held back until the server goes away
            }
            passed += n;
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
    (local, rx)
}

crate::both_stores!(
    follows_the_directory,
    a_failed_read_disables_no_one,
    daemon_syncs_on_schedule
);

async fn check(env: &Env) -> (i32, String) {
    let (code, r) = env.json(&["sync", "--dry-run"]);
    if code == 0 {
        assert_eq!(r["created"], PEOPLE, "{r}");
    }
    (code, r.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_fails_closed() {
    let s = Slapd::start();
    populate(&s);
    let b = Backend::Sqlite;
    let ca = s.ca().display().to_string();
    let other = s.other_ca().display().to_string();
    let ok = [
        format!("url = \"{}\"\nca_file = \"{ca}\"", s.ldaps_url()),
        format!(
            "url = \"{}\"\ntls = \"starttls\"\nca_file = \"{ca}\"",
            s.url()
        ),
    ];
    for conn in ok {
        let env = env_for(b, &conn, "").await;
        let (code, out) = check(&env).await;
        assert_eq!(code, 0, "{conn}: {out}");
    }
    let port = s.tls_port;
    let bad = [
        // A CA that did not sign the server's certificate.
        (
            format!("url = \"{}\"\nca_file = \"{other}\"", s.ldaps_url()),
            "certificate",
        ),
        (
            format!(
                "url = \"{}\"\ntls = \"starttls\"\nca_file = \"{other}\"",
                s.url()
            ),
            "certificate",
        ),
        // The certificate is for 127.0.0.1, not `localhost`.
        (
            format!("url = \"ldaps://localhost:{port}\"\nca_file = \"{ca}\""),
            "certificate",
        ),
    ];
    for (conn, why) in bad {
        let env = env_for(b, &conn, "").await;
        let (code, out) = check(&env).await;
        assert_eq!(code, 4, "{conn}: {out}");
        assert!(out.to_lowercase().contains(why), "{conn}: {out}");
    }
    // A server that refuses StartTLS: no fallback to plain text.
    let plain_only = Slapd::start_with(false);
    populate(&plain_only);
    let env = env_for(
        b,
        &format!(
            "url = \"{}\"\ntls = \"starttls\"\nca_file = \"{ca}\"",
            plain_only.url()
        ),
        "",
    )
    .await;
    let (code, out) = check(&env).await;
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("connect"), "{out}");
    // Failover: a dead first server, then a good one.
    let dead = crate::common::pg::free_port();
    let env = env_for(
        b,
        &format!(
            "url = [\"ldap://127.0.0.1:{dead}\", \"{}\"]\ntls = \"none\"",
            s.url()
        ),
        "",
    )
    .await;
    let (code, out) = check(&env).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_values_cannot_widen_the_search() {
    let s = Slapd::start();
    populate(&s);
    // A group whose name is a filter fragment: it exists, has one member,
    // and must select exactly that member.
    s.add(&format!(
        "dn: cn=x)(uid=*,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: x)(uid=*\nmember: uid=u1,ou=people,{SUFFIX}\n"
    ));
    let env = env_for(
        Backend::Sqlite,
        &plain(&s),
        &format!("group = \"cn=x)(uid=*,ou=groups,{SUFFIX}\""),
    )
    .await;
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["created"], 1, "{r}");
    // A group that does not exist is an error, not an empty (or full) read.
    let env = env_for(
        Backend::Sqlite,
        &plain(&s),
        &format!("group = \"cn=*,ou=groups,{SUFFIX}\""),
    )
    .await;
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 4, "{r}");
    assert!(r["errors"].to_string().contains("does not exist"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_profile() {
    use crate::common::slapd::ad_user;
    let s = Slapd::start_ad();
    // objectGUID bytes as AD stores them: the first three groups little-endian.
    let ann = [
        0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    let bob = [1u8; 16];
    let cy = [2u8; 16];
    s.add(&format!(
        "{}\n{}\n{}",
        ad_user(
            "Ann Lee",
            &ann,
            512,
            "givenName: Ann\nsn: Lee\nipPhone: 2001\ntelephoneNumber: +1 555 0100\ndepartment: Sales\n\
             physicalDeliveryOfficeName: HQ\nproxyAddresses: SMTP:ann@acme.example\n\
             proxyAddresses: smtp:a.lee@acme.example\nmemberOf: CN=Support Agents,OU=Groups,DC=acme\n"
        ),
        ad_user("Bob Disabled", &bob, 514, "givenName: Bob\nsn: Disabled\nmail: bob@acme.example\n"),
        ad_user("Cy Ng", &cy, 66048, "givenName: Cy\nsn: Ng\nmail: cy@acme.example\ntelephoneNumber: 4321\n"),
    ));
    let more = "person_filter = \"(objectClass=user)\"\nattributes = { email = [\"mail\", \"proxyAddresses\"] }";
    let env = Env::with_extra(
        Backend::Sqlite,
        "writes_per_second = 0",
        &source(&plain(&s), more)
            .replace("profile = \"openldap\"", "profile = \"active_directory\"")
            .replace("disabled_filter = \"(employeeType=inactive)\"\n", ""),
    )
    .await;
    env.write("ldap-password", crate::common::slapd::SVC_PW.as_bytes());
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["created"], 2, "{r}"); // Bob's account is disabled: not created
    let users = env.users();
    let a = by_last_name(&users, "Lee");
    assert_eq!(a["source_id"], "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(a["extension"], "2001"); // ipPhone before telephoneNumber
    assert_eq!(a["site"], "HQ");
    assert_eq!(a["department"], "Sales"); // the directory value wins over the rule
    assert_eq!(a["scope"], "Call Center Agent");
    assert_eq!(a["emails"][0], "ann@acme.example");
    assert_eq!(by_last_name(&users, "Ng")["extension"], "4321");
    // Cy's GUID bytes happen to be valid UTF-8: still rendered as a GUID.
    assert_eq!(
        by_last_name(&users, "Ng")["source_id"],
        "02020202-0202-0202-0202-020202020202"
    );

    // The disabled bit set on Cy: disabled on the PBX.
    s.modify(&format!(
        "dn: cn=Cy Ng,ou=people,{SUFFIX}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 66050\n"
    ));
    // Half of a two-user domain: the disable threshold holds it back.
    let (code, r) = sync(&env, &[]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(by_last_name(&env.users(), "Ng")["status"], "active");
    let (code, r) = sync(&env, &["--override-limits"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["disabled"], 1, "{r}");
    assert_eq!(by_last_name(&env.users(), "Ng")["status"], "disabled");
}

async fn daemon_syncs_on_schedule(backend: Backend) {
    use crate::daemon::{http_get, Daemon};
    use std::time::Duration;
    let mut s = Slapd::start();
    populate(&s);
    let port = crate::common::pg::free_port();
    let env = env_for(
        backend,
        &plain(&s),
        &format!("schedule = \"*/2 * * * * *\"\n[web]\nlisten = \"127.0.0.1:{port}\""),
    )
    .await;
    let d = Daemon::start(&env, port, "ldap");
    d.wait_until("the first sync", Duration::from_secs(30), || {
        env.users().len() == PEOPLE
    });
    s.modify(&format!(
        "dn: uid=u3,ou=people,{SUFFIX}\nchangetype: modify\nreplace: sn\nsn: Scheduled\n"
    ));
    d.wait_until(
        "a scheduled changed-only sync",
        Duration::from_secs(30),
        || env.users().iter().any(|u| u["last_name"] == "Scheduled"),
    );
    // The directory goes away: failed runs, nobody disabled.
    s.kill();
    d.wait_until("a failed run in /metrics", Duration::from_secs(30), || {
        http_get(port, "/metrics").is_some_and(|(_, m)| {
            m.contains("pbx_onboard_runs_total{source=\"dir\",outcome=\"failed\"}")
        })
    });
    assert!(env.users().iter().all(|u| u["status"] == "active"));
    let log = d.log();
    assert!(log.contains("directory read failed"), "{log}");
    assert!(
        !log.contains(crate::common::slapd::SVC_PW),
        "the bind password was logged"
    );
    let (status, _) = d.stop(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}");
}
