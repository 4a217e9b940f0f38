//! A real SIP registrar and a real SIP client for the tests: Kamailio with
//! the shipped `config/kamailio-*.cfg` on a free loopback UDP port, reading
//! the store's `sip_subscriber` view, and `sipp` sending digest-authenticated
//! REGISTERs from `tests/fixtures/sipp/`.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback UDP port (bound, read, released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("no free loopback UDP port")
}

fn need(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` not found: install the Debian package {package} (.ci/test does)"
    );
}

/// A Kamailio process group, stopped when dropped.
pub struct Kamailio {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Starts Kamailio with `config/kamailio-{flavour}.cfg` on `db_url`.
    pub fn start(flavour: &str, db_url: &str) -> Kamailio {
        need("kamailio", "kamailio");
        let cfg = root().join(format!("config/kamailio-{flavour}.cfg"));
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kamailio.log");
        let port = free_udp_port();
        let logf = std::fs::File::create(&log).expect("log file");
        let errf = logf.try_clone().expect("log file");
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg)
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
            .arg("-A")
            .arg(format!("DBURL=\"{db_url}\""))
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(errf);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start kamailio");
        let mut k = Kamailio {
            child,
            port,
            log,
            _dir: dir,
        };
        if let Err(e) = k.wait_ready(Duration::from_secs(15)) {
            k.stop();
            Kamailio::fail(&e, &k.log);
        }
        k
    }

    fn fail(why: &str, log: &Path) -> ! {
        panic!(
            "kamailio did not start: {why}\n--- log ---\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    }

    /// Ready when it answers an OPTIONS on its port.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + limit;
        let mut n = 0;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("kamailio exited with {status}"));
            }
            n += 1;
            let msg = format!(
                "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@127.0.0.1>;tag=probe{n}\r\n\
                 To: <sip:ping@127.0.0.1>\r\n\
                 Call-ID: ready-{n}@127.0.0.1\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                port = self.port
            );
            let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", self.port));
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 ") {
                    return Ok(());
                }
            }
        }
        Err("no answer to OPTIONS".into())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a REGISTER attempt is expected to end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 401 challenge, then 200 for the credentials.
    Accepted,
    /// 401 challenge, then 401 again: the credentials were refused.
    Refused,
}

/// One bounded `sipp` REGISTER run (`-m 1`, `-timeout`). True when the
/// registrar answered as `expect` says; the output is returned for messages.
pub fn register(
    k: &Kamailio,
    user: &str,
    domain: &str,
    secret: &str,
    expect: Expect,
) -> (bool, String) {
    need("sipp", "sip-tester");
    let name = match expect {
        Expect::Accepted => "register-ok.xml",
        Expect::Refused => "register-refused.xml",
    };
    let text = std::fs::read_to_string(root().join("tests/fixtures/sipp").join(name))
        .expect("sipp scenario")
        .replace("@USER@", user)
        .replace("@DOMAIN@", domain);
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join(name);
    std::fs::write(&scenario, text).expect("write scenario");
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-l", "1", "-timeout", "10s", "-timeout_error"])
        .args(["-au", user, "-ap", secret, "-s", user])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .arg("-nostdin")
        .arg(format!("127.0.0.1:{}", k.port))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
    let text = format!(
        "sipp exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
