//! A real OpenLDAP `slapd` per test: its own folder, config, CA and server
//! certificate (made with `openssl`), LDAP and LDAPS on free loopback ports.
//! Non-root binds are capped at 50 entries per search (`sizelimit`), so only
//! a paged read gets everything. The `memberOf` overlay keeps `memberOf` on
//! the people of `groupOfNames` groups.

use super::pg::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin-secret";
pub const SVC: &str = "cn=svc,dc=example,dc=org";
pub const SVC_PW: &str = "svc-secret";
pub const SIZELIMIT: usize = 50;

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    child: Option<Child>,
    tls: bool,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a helper program");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for IP 127.0.0.1 only (so `localhost` is a
/// wrong host name for it), plus an unrelated CA.
pub(crate) fn make_certs(dir: &Path) {
    let p = |n: &str| dir.join(n);
    for ca in ["ca", "other-ca"] {
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(p(&format!("{ca}.key")))
            .arg("-out")
            .arg(p(&format!("{ca}.pem")))
            .args(["-subj", &format!("/CN=pbx-onboard test {ca}")]));
    }
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("write ext.cnf");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("server.pem"))
        .arg("-extfile")
        .arg(p("ext.cnf")));
}

impl Slapd {
    /// A server with TLS (StartTLS on the LDAP port, and LDAPS).
    pub fn start() -> Slapd {
        Slapd::start_with(true)
    }

    /// `tls = false`: no certificate at all, so StartTLS is refused.
    pub fn start_with(tls: bool) -> Slapd {
        Slapd::start_schema(tls, false)
    }

    /// An Active-Directory-like server: OpenLDAP's copy of Microsoft's user
    /// schema (`msuser.schema`: objectGUID, userAccountControl, ipPhone,
    /// uSNChanged, memberOf as a plain attribute) instead of the overlay.
    /// Those attributes have no matching rules there, so tests select people
    /// with `person_filter = "(objectClass=user)"`.
    pub fn start_ad() -> Slapd {
        Slapd::start_schema(false, true)
    }

    fn start_schema(tls: bool, ad: bool) -> Slapd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).expect("mkdir db");
        let tls_conf = if tls {
            make_certs(d);
            format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\nTLSCertificateKeyFile {0}/server.key\n",
                d.display()
            )
        } else {
            String::new()
        };
        let (schema, overlay) = if ad {
            (
                "include /etc/ldap/schema/nis.schema\ninclude /etc/ldap/schema/msuser.schema\n",
                "",
            )
        } else {
            (
                "moduleload memberof\n",
                "overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\n",
            )
        };
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
{schema}
pidfile {dir}/slapd.pid
{tls_conf}
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN}"
rootpw {ADMIN_PW}
directory {dir}/db
maxsize 1073741824
sizelimit size.soft={SIZELIMIT} size.hard={SIZELIMIT} size.prtotal=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
index objectClass eq
{overlay}
"#,
            dir = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("write slapd.conf");
        let mut s = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            child: None,
            tls,
        };
        s.launch();
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {SVC}\nobjectClass: person\ncn: svc\nsn: svc\nuserPassword: {SVC_PW}\n"
        ));
        s
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if self.tls {
            urls.push_str(&format!(" ldaps://127.0.0.1:{}/", self.tls_port));
        }
        let log = std::fs::File::create(d.join("slapd.log")).expect("slapd.log");
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd (apt-get install slapd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = Command::new("ldapsearch")
                .args([
                    "-x",
                    "-H",
                    &self.url(),
                    "-s",
                    "base",
                    "-b",
                    "",
                    "(objectClass=*)",
                    "1.1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not start: {}",
                std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    fn ldif(&self, tool: &str, text: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, text).expect("write ldif");
        run(Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PW, "-f"])
            .arg(&path)
            .stdout(Stdio::null()));
    }

    pub fn add(&self, ldif: &str) {
        self.ldif("ldapadd", ldif);
    }

    pub fn modify(&self, ldif: &str) {
        self.ldif("ldapmodify", ldif);
    }

    pub fn delete(&self, dn: &str) {
        run(Command::new("ldapdelete").args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ADMIN,
            "-w",
            ADMIN_PW,
            dn,
        ]));
    }

    /// SIGKILL: connections die without an LDAP goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One inetOrgPerson under ou=people.
pub fn person(uid: &str, given: &str, sn: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {given} {sn}\n\
         givenName: {given}\nsn: {sn}\nmail: {uid}@acme.example\n{extra}\n"
    )
}

/// One AD-like `user` under ou=people: `guid` as objectGUID (binary), `uac`
/// as userAccountControl.
pub fn ad_user(cn: &str, guid: &[u8; 16], uac: u32, extra: &str) -> String {
    let b64 = base64_encode(guid);
    format!(
        "dn: cn={cn},ou=people,{SUFFIX}\nobjectClass: user\nobjectClass: extensibleObject\ncn: {cn}\n\
         instanceType: 4\nnTSecurityDescriptor: AA==\n\
         objectCategory: CN=Person,CN=Schema,CN=Configuration,{SUFFIX}\n\
         objectGUID:: {b64}\nuserAccountControl: {uac}\n{extra}\n"
    )
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &x| acc << 8 | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
