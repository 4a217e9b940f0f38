//! Kamailio authenticates the devices pbx-onboard provisions, straight from
//! the store's `sip_subscriber` view, and stops the moment a user is disabled.

use crate::common::sip::{register, Expect, Kamailio};
use crate::common::{people_csv, Backend, Env, LIMITS_OPEN};
use serde_json::Value;

const DOMAIN: &str = "acme.example";

fn device<'a>(devices: &'a Value, ext: &str) -> &'a Value {
    devices
        .as_array()
        .and_then(|a| a.iter().find(|d| d["extension"] == ext))
        .unwrap_or_else(|| panic!("no device for extension {ext} in {devices}"))
}

#[track_caller]
fn assert_register(k: &Kamailio, user: &str, secret: &str, expect: Expect) {
    let (ok, out) = register(k, user, DOMAIN, secret, expect);
    assert!(
        ok,
        "REGISTER of {user} did not end {expect:?}\n{out}\n--- kamailio log ---\n{}",
        k.log()
    );
}

/// The registrar's database URL: the SQLite file itself, or a PostgreSQL
/// role that may read nothing but the view.
async fn registrar_url(env: &Env, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => env.absolute_url(),
        Backend::Postgres => {
            use sqlx::Connection;
            let url = env.absolute_url();
            let (base, db) = url.rsplit_once('/').expect("db url");
            let role = format!("kam_{db}");
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            for sql in [
                format!("CREATE ROLE {role} LOGIN PASSWORD 'registrar'"),
                format!("GRANT SELECT ON sip_subscriber TO {role}"),
            ] {
                sqlx::query(&sql).execute(&mut c).await.expect("grant");
            }
            // The role really can read nothing else.
            sqlx::query(&format!("SET ROLE {role}"))
                .execute(&mut c)
                .await
                .expect("set role");
            let view = sqlx::query("SELECT username, ha1 FROM sip_subscriber")
                .fetch_all(&mut c)
                .await;
            assert!(
                view.is_ok(),
                "the registrar role cannot read the view: {view:?}"
            );
            let denied = sqlx::query("SELECT secret FROM devices")
                .fetch_all(&mut c)
                .await;
            let msg = format!("{denied:?}");
            assert!(
                msg.contains("permission denied"),
                "the registrar role could read device secrets: {msg}"
            );
            c.close().await.ok();
            let host = base.trim_start_matches("postgres://postgres@");
            format!("postgres://{role}:registrar@{host}/{db}")
        }
    }
}

async fn registrar_follows_the_store(backend: Backend) {
    let env = Env::new(backend, LIMITS_OPEN).await;
    let staff = env.write("staff.csv", people_csv(0, 3).as_bytes());
    let (code, report) = env.import(&[&staff]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["created"], 3);

    let (code, devices) = env.json(&["devices", "--domain", DOMAIN]);
    assert_eq!(code, 0);
    assert_eq!(devices.as_array().map(Vec::len), Some(3), "{devices}");
    let first = device(&devices, "1000");
    assert_eq!(first["domain"], DOMAIN);
    assert_eq!(first["sip_username"], "1000");
    assert_eq!(first["type"], "sip");
    assert_eq!(first["enabled"], true);

    let secret = env
        .scalar("SELECT secret FROM devices WHERE sip_username = '1000'")
        .await;
    let url = registrar_url(&env, backend).await;
    let flavour = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let k = Kamailio::start(flavour, &url);

    // A freshly imported device registers; a wrong secret does not.
    assert_register(&k, "1000", &secret, Expect::Accepted);
    assert_register(
        &k,
        "1000",
        "0123456789abcdef0123456789abcdef",
        Expect::Refused,
    );

    // A full import without E0 disables the user: the device stops at once.
    let rest = env.write("rest.csv", people_csv(1, 2).as_bytes());
    let (code, report) = env.import(&[&rest]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["disabled"], 1);
    assert_register(&k, "1000", &secret, Expect::Refused);
    let (_, devices) = env.json(&["devices"]);
    assert_eq!(device(&devices, "1000")["enabled"], false);
    assert_eq!(device(&devices, "1000")["registrable"], false);

    // Rotating a secret: printed once, the old one stops, the new one works.
    let old = env
        .scalar("SELECT secret FROM devices WHERE sip_username = '1001'")
        .await;
    assert_register(&k, "1001", &old, Expect::Accepted);
    let (code, rotated) = env.json(&["devices", "rotate-secret", "--domain", DOMAIN, "1001"]);
    assert_eq!(code, 0, "{rotated}");
    assert_eq!(rotated["domain"], DOMAIN);
    assert_eq!(rotated["extension"], "1001");
    assert_eq!(rotated["sip_username"], "1001");
    let new = rotated["secret"].as_str().expect("secret").to_string();
    assert!(new.len() >= 32 && new != old);
    assert_register(&k, "1001", &old, Expect::Refused);
    assert_register(&k, "1001", &new, Expect::Accepted);

    // Re-enabling E0 restores the device with its secret.
    let (code, report) = env.import(&[&staff]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["reenabled"], 1);
    assert_register(&k, "1000", &secret, Expect::Accepted);

    // No such device: a usage error, nothing printed as a secret.
    let out = env.run(&["devices", "rotate-secret", "--domain", DOMAIN, "8999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

crate::both_stores!(registrar_follows_the_store);
