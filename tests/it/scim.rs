//! The SCIM source against the real daemon over HTTP: what Entra ID and
//! Okta send, and what RFC 7644 asks of the answers.

use crate::common::pg::free_port;
use crate::common::{by_source_id, Backend, Env, LIMITS_OPEN};
use crate::daemon::Daemon;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const TOKEN: &str = "s3cret-token-for-tests-0123456789";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PBX: &str = "urn:ietf:params:scim:schemas:extension:pbx:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub(crate) struct Scim {
    pub env: Env,
    pub port: u16,
    pub daemon: Daemon,
}

/// A daemon with one scim source `entra` (tokens: TOKEN and a second one
/// given as its SHA-256).
pub(crate) async fn start(backend: Backend, limits: &str) -> Scim {
    let port = free_port();
    let env = Env::with_extra(
        backend,
        limits,
        &format!(
            "[[source]]\nname = \"entra\"\nkind = \"scim\"\ndomain = \"acme.example\"\ntoken_file = \"scim-tokens\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\n[mail]\nlink_base_url = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .await;
    write_tokens(
        &env,
        &format!(
            "# Entra\n{TOKEN}\n\nsha256:{}\n",
            sha256_hex("second-token")
        ),
    );
    let daemon = Daemon::start(&env, port, "scim");
    Scim { env, port, daemon }
}

fn write_tokens(env: &Env, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = env.write("scim-tokens", text.as_bytes());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One bounded HTTP/1.1 request on 127.0.0.1.
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

impl Scim {
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        request(
            self.port,
            method,
            &format!("/scim/v2/entra{path}"),
            Some(TOKEN),
            &[],
            body,
        )
    }
}

fn entra_user(n: usize) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": format!("EXT{n:04}"),
        "userName": format!("User{n}@Acme.example"),
        "active": true,
        "displayName": format!("Test User {n}"),
        "nickName": "Testy",
        "name": {"givenName": format!("Test{n}"), "familyName": "User", "formatted": "kept as sent"},
        "emails": [{"primary": true, "type": "work", "value": format!("user{n}@acme.example")}],
        "title": "Engineer",
        ENTERPRISE: {"department": "Engineering", "employeeNumber": format!("{n}")},
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": ops})
}

fn scim_type(a: &Answer) -> &str {
    a.body["scimType"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_needs_a_valid_bearer_token() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    for token in [None, Some("wrong"), Some("")] {
        let a = request(s.port, "GET", "/scim/v2/entra/Users", token, &[], None);
        assert_eq!(a.status, 401, "{token:?}: {}", a.body);
        assert!(a
            .header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Bearer")));
        assert_eq!(
            a.body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(a.body["status"], "401");
    }
    // Both tokens of the file work: the plain one and the hashed one.
    for token in [TOKEN, "second-token"] {
        let a = request(
            s.port,
            "GET",
            "/scim/v2/entra/Users",
            Some(token),
            &[],
            None,
        );
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("Content-Type"), Some("application/scim+json"));
    }
    let a = request(
        s.port,
        "GET",
        "/scim/v2/nosuch/Users",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(a.status, 404);
    assert!(!s.daemon.log().contains(TOKEN), "the token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_unsafe_token_files() {
    use std::os::unix::fs::PermissionsExt;
    let port = free_port();
    let env = Env::with_extra(
        Backend::Sqlite,
        LIMITS_OPEN,
        &format!(
            "[[source]]\nname = \"entra\"\nkind = \"scim\"\ndomain = \"acme.example\"\ntoken_file = \"scim-tokens\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .await;
    let run = |what: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pbx-onboard"))
            .arg("--config")
            .arg(&env.config)
            .arg("daemon")
            .env_remove("PBX_ONBOARD_CONFIG")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{what}: started");
        err
    };
    assert!(run("missing").contains("cannot read token_file"));
    write_tokens(&env, "# nothing here\n\n");
    assert!(run("empty").contains("holds no token"));
    write_tokens(&env, "tok\n");
    let p = env.path("scim-tokens");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = run("open");
    assert!(
        err.contains("may be read by others") && !err.contains("tok\n"),
        "{err}"
    );
}

async fn user_lifecycle(backend: Backend) {
    let s = start(backend, LIMITS_OPEN).await;
    // Create, as Entra does.
    let a = s.call("POST", "/Users", Some(&entra_user(1)));
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().expect("id").to_string();
    let etag = a.header("ETag").expect("ETag").to_string();
    assert_eq!(a.body["meta"]["version"], etag.as_str());
    assert_eq!(a.body["meta"]["resourceType"], "User");
    assert!(a
        .header("Location")
        .is_some_and(|l| l.ends_with(&format!("/scim/v2/entra/Users/{id}"))));
    assert_eq!(
        a.body["nickName"], "Testy",
        "unused attributes come back as sent"
    );
    assert_eq!(a.body["name"]["formatted"], "kept as sent");
    let u = by_source_id(&s.env.users(), "EXT0001");
    assert_eq!(u["status"], "active");
    assert_eq!(u["department"], "Engineering");
    let extension = u["extension"].as_str().expect("extension").to_string();

    // Read back by id, and by filter: userName is case-insensitive, values
    // may come unquoted.
    let a = s.call("GET", &format!("/Users/{id}"), None);
    assert_eq!(
        (a.status, a.body["userName"].as_str()),
        (200, Some("User1@Acme.example"))
    );
    for f in [
        "userName%20eq%20%22user1%40acme.example%22",
        "userName%20eq%20user1%40acme.example",
        "externalId%20eq%20%22EXT0001%22",
        "emails.value%20eq%20%22user1%40acme.example%22",
    ] {
        let a = s.call("GET", &format!("/Users?filter={f}"), None);
        assert_eq!(a.status, 200, "{f}: {}", a.body);
        assert_eq!(a.body["totalResults"], 1, "{f}: {}", a.body);
        assert_eq!(a.body["Resources"][0]["id"], id.as_str());
    }
    let a = s.call("GET", "/Users?filter=userName%20eq%20%22nobody%22", None);
    assert_eq!((a.status, a.body["totalResults"].as_u64()), (200, Some(0)));

    // Entra's PATCH: capitalised ops, path-less dotted and URN keys.
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(json!([
            {"op": "Replace", "path": "displayName", "value": "Renamed"},
            {"op": "Add", "value": {"name.familyName": "Userson", format!("{ENTERPRISE}:department"): "Support"}},
        ]))),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["name"]["familyName"], "Userson");
    assert_ne!(a.header("ETag"), Some(etag.as_str()));
    let u = by_source_id(&s.env.users(), "EXT0001");
    assert_eq!(
        (u["last_name"].as_str(), u["department"].as_str()),
        (Some("Userson"), Some("Support"))
    );

    // A stale If-Match is a 412; a new extension a 400 mutability.
    let r = request(
        s.port,
        "PATCH",
        &format!("/scim/v2/entra/Users/{id}"),
        Some(TOKEN),
        &[("If-Match", &etag)],
        Some(&patch(
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )),
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let other = if extension == "1500" { "1501" } else { "1500" };
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(
            json!([{"op": "replace", "path": format!("{PBX}:extension"), "value": other}]),
        )),
    );
    assert_eq!((a.status, scim_type(&a)), (400, "mutability"), "{}", a.body);
    // Stating the extension it has is no change.
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(
            json!([{"op": "add", "path": format!("{PBX}:extension"), "value": extension}]),
        )),
    );
    assert_eq!(a.status, 200, "{}", a.body);

    // A Web device that rings only while its user is logged in.
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(json!([
            {"op": "replace", "path": format!("{PBX}:device"), "value": "web"},
            {"op": "replace", "path": format!("{PBX}:forceLogin"), "value": "True"},
        ]))),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let device = &by_source_id(&s.env.users(), "EXT0001")["devices"][0];
    assert_eq!(
        (device["type"].as_str(), device["force_login"].as_bool()),
        (Some("web"), Some(true)),
        "{device}"
    );
    // Back to SIP: it means nothing there (and is still returned as sent).
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(json!([
            {"op": "replace", "path": format!("{PBX}:device"), "value": "sip"},
        ]))),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body[PBX]["forceLogin"], "True", "{}", a.body);
    let device = &by_source_id(&s.env.users(), "EXT0001")["devices"][0];
    assert_eq!(
        (device["type"].as_str(), device["force_login"].as_bool()),
        (Some("sip"), Some(false)),
        "{device}"
    );

    // active "False" (a string, as Entra sends it) disables; true re-enables.
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )),
    );
    assert_eq!(
        (a.status, a.body["active"].as_bool()),
        (200, Some(false)),
        "{}",
        a.body
    );
    assert_eq!(
        by_source_id(&s.env.users(), "EXT0001")["status"],
        "disabled"
    );
    // Okta's path-less form.
    let a = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(
            json!([{"op": "replace", "value": {"active": true}}]),
        )),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(by_source_id(&s.env.users(), "EXT0001")["status"], "active");
    let kept = by_source_id(&s.env.users(), "EXT0001")["extension"].clone();

    // DELETE disables; the resource is gone; a new POST with the same
    // externalId brings the same PBX user back, same extension.
    let a = s.call("DELETE", &format!("/Users/{id}"), None);
    assert_eq!(a.status, 204);
    assert_eq!(s.call("GET", &format!("/Users/{id}"), None).status, 404);
    assert_eq!(
        by_source_id(&s.env.users(), "EXT0001")["status"],
        "disabled"
    );
    let a = s.call("POST", "/Users", Some(&entra_user(1)));
    assert_eq!(a.status, 201, "{}", a.body);
    assert_ne!(a.body["id"], id.as_str());
    let users = s.env.users();
    assert_eq!(users.len(), 1, "a second PBX user");
    assert_eq!(
        (users[0]["status"].clone(), users[0]["extension"].clone()),
        (json!("active"), kept)
    );

    let (_, metrics) = crate::daemon::http_get(s.port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("pbx_onboard_scim_requests_total{method=\"POST\",status=\"201\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_is_a_409_pointing_at_the_user() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    let first = s.call("POST", "/Users", Some(&entra_user(7)));
    assert_eq!(first.status, 201, "{}", first.body);
    let again = s.call("POST", "/Users", Some(&entra_user(7)));
    assert_eq!(
        (again.status, scim_type(&again)),
        (409, "uniqueness"),
        "{}",
        again.body
    );
    let id = first.body["id"].as_str().expect("id");
    assert!(
        again.header("Location").is_some_and(|l| l.ends_with(id)),
        "{:?}",
        again.headers
    );
    // Same userName in another case, other externalId: still taken.
    let mut other = entra_user(8);
    other["userName"] = json!("USER7@acme.example");
    assert_eq!(s.call("POST", "/Users", Some(&other)).status, 409);
    assert_eq!(s.env.users().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_scim_errors() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    let a = s.call("GET", "/Users?filter=userName%20xx%20%22a%22", None);
    assert_eq!(
        (a.status, scim_type(&a)),
        (400, "invalidFilter"),
        "{}",
        a.body
    );
    let mut no_name = entra_user(1);
    no_name.as_object_mut().map(|o| o.remove("userName"));
    let a = s.call("POST", "/Users", Some(&no_name));
    assert_eq!(
        (a.status, scim_type(&a)),
        (400, "invalidValue"),
        "{}",
        a.body
    );
    let a = request(
        s.port,
        "POST",
        "/scim/v2/entra/Users",
        Some(TOKEN),
        &[],
        Some(&json!("not an object")),
    );
    assert_eq!(
        (a.status, scim_type(&a)),
        (400, "invalidSyntax"),
        "{}",
        a.body
    );
    assert_eq!(s.call("GET", "/Users/no-such-id", None).status, 404);
    let a = s.call("PATCH", "/Users/no-such-id", Some(&patch(json!([]))));
    assert_eq!(a.status, 404);
    // A person the mapping refuses (no last name) is a 400 naming the
    // attribute, and leaves no resource behind.
    let mut no_last = entra_user(2);
    no_last["name"] = json!({"givenName": "Only"});
    let a = s.call("POST", "/Users", Some(&no_last));
    assert_eq!(
        (a.status, scim_type(&a)),
        (400, "invalidValue"),
        "{}",
        a.body
    );
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("name.familyName")),
        "{}",
        a.body
    );
    assert_eq!(s.call("GET", "/Users", None).body["totalResults"], 0);
    assert!(s.env.users().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_lists_everyone_once() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    for n in 0..23 {
        assert_eq!(s.call("POST", "/Users", Some(&entra_user(n))).status, 201);
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let a = s.call(
            "GET",
            &format!("/Users?startIndex={start}&count=10&attributes=userName"),
            None,
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.body["totalResults"], 23);
        assert_eq!(a.body["startIndex"], start);
        let page = a.body["Resources"].as_array().cloned().unwrap_or_default();
        assert!(
            page.iter().all(|r| r.get("emails").is_none()),
            "attributes= not applied"
        );
        if page.is_empty() {
            break;
        }
        seen.extend(
            page.iter()
                .map(|r| r["id"].as_str().unwrap_or_default().to_string()),
        );
        start += page.len();
        assert!(start < 100, "paging does not end");
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (23, 23));
}

async fn groups_drive_mapping_rules(backend: Backend) {
    let s = start(backend, LIMITS_OPEN).await;
    let a = s.call("POST", "/Users", Some(&entra_user(3)));
    let uid = a.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        by_source_id(&s.env.users(), "EXT0003")["scope"],
        "Basic User"
    );
    // Entra creates the group, then adds the member by PATCH ($ref null).
    let g = s.call(
        "POST",
        "/Groups",
        Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Support Agents", "externalId": "g-1", "members": []})),
    );
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.body["id"].as_str().expect("id").to_string();
    let a = s.call(
        "PATCH",
        &format!("/Groups/{gid}"),
        Some(&patch(
            json!([{"op": "Add", "path": "members", "value": [{"value": uid, "$ref": null}]}]),
        )),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        by_source_id(&s.env.users(), "EXT0003")["scope"],
        "Call Center Agent"
    );
    // Entra reads groups without members.
    let a = s.call(
        "GET",
        "/Groups?filter=displayName%20eq%20%22Support%20Agents%22&excludedAttributes=members",
        None,
    );
    assert_eq!(a.body["totalResults"], 1, "{}", a.body);
    assert!(a.body["Resources"][0].get("members").is_none());
    // Removal as Entra sends it.
    let a = s.call(
        "PATCH",
        &format!("/Groups/{gid}"),
        Some(&patch(
            json!([{"op": "Remove", "path": "members", "value": [{"value": uid}]}]),
        )),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        by_source_id(&s.env.users(), "EXT0003")["scope"],
        "Basic User"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_name_the_pbx_schema() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    let a = s.call("GET", "/ServiceProviderConfig", None);
    assert_eq!(
        (a.status, a.body["patch"]["supported"].as_bool()),
        (200, Some(true))
    );
    let a = s.call("GET", "/Schemas", None);
    let ids: Vec<&str> = a.body["Resources"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        ids.contains(&PBX) && ids.contains(&USER) && ids.contains(&ENTERPRISE),
        "{ids:?}"
    );
    let a = s.call("GET", &format!("/Schemas/{PBX}"), None);
    assert_eq!(a.status, 200);
    let a = s.call("GET", "/ResourceTypes", None);
    assert_eq!(a.body["totalResults"], 2);
}

crate::both_stores!(user_lifecycle, groups_drive_mapping_rules);

/// Two daemons on one PostgreSQL behind a load balancer: concurrent POSTs
/// of the same person, half to each, make exactly one PBX user; every other
/// answer is a 409 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_make_one_user_of_concurrent_posts() {
    let s = start(Backend::Postgres, LIMITS_OPEN).await;
    let port_b = free_port();
    let text = std::fs::read_to_string(&s.env.config).expect("config");
    let b_config = s.env.path("b.toml");
    std::fs::write(
        &b_config,
        text.replace(
            &format!("127.0.0.1:{}", s.port),
            &format!("127.0.0.1:{port_b}"),
        ),
    )
    .expect("write");
    let _b = Daemon::start_config(&s.env, &b_config, port_b, "b");
    for round in 0..3 {
        let mut body = entra_user(100 + round);
        // Same externalId, userNames differing in case only on one side.
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let port = if k % 2 == 0 { s.port } else { port_b };
                if k % 3 == 0 {
                    body["userName"] =
                        json!(body["userName"].as_str().unwrap_or_default().to_uppercase());
                }
                let body = body.clone();
                std::thread::spawn(move || {
                    request(
                        port,
                        "POST",
                        "/scim/v2/entra/Users",
                        Some(TOKEN),
                        &[],
                        Some(&body),
                    )
                    .status
                })
            })
            .collect();
        let mut codes: Vec<u16> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        codes.sort_unstable();
        assert_eq!(
            codes.iter().filter(|c| **c == 201).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert!(
            codes.iter().all(|c| *c == 201 || *c == 409),
            "round {round}: {codes:?}"
        );
    }
    let users = s.env.users();
    assert_eq!(users.len(), 3, "{users:?}");
}

/// Writes beyond `limits.writes_per_second` are a 429 with Retry-After,
/// not a queue without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_rate_are_429_with_retry_after() {
    let limits = "writes_per_second = 1\nburst = 2\nmax_disable = 1000\nmax_disable_percent = 100\nmax_billable = 1000000\n";
    let s = start(Backend::Sqlite, limits).await;
    let codes: Vec<Answer> = (0..6)
        .map(|n| s.call("POST", "/Users", Some(&entra_user(200 + n))))
        .collect();
    let limited: Vec<&Answer> = codes.iter().filter(|a| a.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "{:?}",
        codes.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(limited.iter().all(|a| a.header("Retry-After").is_some()));
    assert!(codes.iter().all(|a| a.status == 201 || a.status == 429));
    // Reads are not limited.
    assert_eq!(s.call("GET", "/Users", None).status, 200);
}

/// More disables within an hour than `limits.max_disable` are answered as
/// the client asked but held: the PBX users stay active until `held
/// approve`; re-activating a user drops its hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deprovisioning_is_held_until_approved() {
    let limits = "writes_per_second = 0\nburst = 10\nmax_disable = 2\nmax_disable_percent = 100\nmax_billable = 1000000\n";
    let s = start(Backend::Sqlite, limits).await;
    let ids: Vec<String> = (0..6)
        .map(|n| {
            let a = s.call("POST", "/Users", Some(&entra_user(300 + n)));
            assert_eq!(a.status, 201, "{}", a.body);
            a.body["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let off = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    for id in &ids[..4] {
        let a = s.call("PATCH", &format!("/Users/{id}"), Some(&off));
        assert_eq!(
            (a.status, a.body["active"].as_bool()),
            (200, Some(false)),
            "{}",
            a.body
        );
    }
    let a = s.call("DELETE", &format!("/Users/{}", ids[4]), None);
    assert_eq!(a.status, 204);
    let status =
        |n: usize| by_source_id(&s.env.users(), &format!("EXT{:04}", 300 + n))["status"].clone();
    assert_eq!(
        (status(0), status(1)),
        (json!("disabled"), json!("disabled"))
    );
    assert_eq!(
        (status(2), status(3), status(4)),
        (json!("active"), json!("active"), json!("active"))
    );
    let (code, held) = s.env.json(&["held", "list"]);
    assert_eq!(
        (
            code,
            held.as_array().map(Vec::len),
            held[0]["disables"].as_i64()
        ),
        (0, Some(1), Some(3)),
        "one held run for the source: {held}"
    );
    let held_id = held[0]["id"].as_i64().expect("id").to_string();
    // The client reads back what it asked for.
    assert_eq!(
        s.call("GET", &format!("/Users/{}", ids[2]), None).body["active"],
        false
    );
    assert_eq!(
        s.call("GET", &format!("/Users/{}", ids[4]), None).status,
        404
    );
    // Re-activated before anyone approved: that hold is moot.
    let on = patch(json!([{"op": "replace", "value": {"active": true}}]));
    assert_eq!(
        s.call("PATCH", &format!("/Users/{}", ids[3]), Some(&on))
            .status,
        200
    );
    let (_, shown) = s.env.json(&["held", "show", &held_id]);
    let names: Vec<&str> = shown["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["source_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["EXT0302", "EXT0304"], "{shown}");
    let out = s.env.run(&["held", "approve", &held_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 disabled"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        (status(2), status(3), status(4)),
        (json!("disabled"), json!("active"), json!("disabled"))
    );
    let (_, held) = s.env.json(&["held", "list"]);
    assert_eq!(held.as_array().map(Vec::len), Some(0), "{held}");
    assert_eq!(s.env.run(&["held", "approve", "99"]).status.code(), Some(2));
}

/// Entra gives up on a request after 60 s: one that waits for another
/// source's run of the domain is answered 503 with Retry-After before then,
/// keeps nothing, and succeeds when retried after that run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_a_long_run_is_answered_within_a_minute() {
    let s = start(Backend::Sqlite, LIMITS_OPEN).await;
    let cfg = pbx_onboard::config::Config::load(&s.env.config).expect("config");
    let store = pbx_onboard::store::Store::connect(&cfg.store)
        .await
        .expect("store");
    // Another run (a CSV import, say) holds the domain.
    let held = store
        .lock_domain("acme.example", Duration::from_secs(5))
        .await
        .expect("lock");
    let port = s.port;
    let started = std::time::Instant::now();
    let a = tokio::task::spawn_blocking(move || {
        request(
            port,
            "POST",
            "/scim/v2/entra/Users",
            Some(TOKEN),
            &[],
            Some(&entra_user(1)),
        )
    })
    .await
    .expect("request");
    let waited = started.elapsed();
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.header("Retry-After").is_some());
    assert!(
        waited < Duration::from_secs(55),
        "answered after {waited:?}"
    );
    assert!(s.env.users().is_empty());
    assert_eq!(
        s.call("GET", "/Users?filter=externalId%20eq%20%22EXT0001%22", None)
            .body["totalResults"],
        0,
        "the refused User is not kept"
    );
    held.release().await;
    let a = s.call("POST", "/Users", Some(&entra_user(1)));
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(s.env.users().len(), 1);
}
