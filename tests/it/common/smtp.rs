//! Postfix's `smtp-sink` on a loopback port, dumping each message it
//! accepts into a folder, with the failure modes the mail tests need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sink {
    child: Child,
    pub dir: PathBuf,
}

/// How the sink behaves.
#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// Reject RCPT with a 5xx.
    pub hard_reject: bool,
    /// Close a connection idle for this many seconds.
    pub idle_timeout: Option<u32>,
}

impl Sink {
    pub fn start(port: u16, dir: &Path, b: Behaviour) -> Sink {
        std::fs::create_dir_all(dir).expect("sink dir");
        let mut cmd = Command::new("smtp-sink");
        // As root, smtp-sink must drop privileges; the dump folder stays writable.
        if is_root() {
            set_mode(dir, 0o777);
            cmd.args(["-u", "nobody"]);
        }
        let template = format!("{}/msg.", dir.display());
        cmd.args(["-d", &template, "-c"]);
        if b.hard_reject {
            cmd.args(["-f", "RCPT"]);
        }
        if let Some(t) = b.idle_timeout {
            cmd.args(["-t", &t.to_string()]);
        }
        cmd.arg(format!("127.0.0.1:{port}")).arg("64");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink (apt-get install postfix)");
        let s = Sink {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// An aiosmtpd server with STARTTLS (or implicit TLS) and required AUTH
    /// as `pbx` with the password in `<dir>/smtp-password`; certificates from
    /// `slapd::make_certs` in `<dir>/certs` (`ca.pem` trusted, `other-ca.pem` not).
    pub fn start_tls(port: u16, dir: &Path, implicit: bool) -> Sink {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        super::slapd::make_certs(&certs);
        let pw = dir.join("smtp-password");
        std::fs::write(&pw, "s3cret-smtp-pass\n").expect("password file");
        let dump = dir.join("dump");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/common/smtp_tls.py");
        // The system Python, where apt's python3-aiosmtpd lives.
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(certs.join("server.pem"))
            .arg(certs.join("server.key"))
            .arg(if implicit { "implicit" } else { "starttls" })
            .arg("pbx")
            .arg(&pw)
            .arg(&dump)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (apt-get install python3-aiosmtpd)");
        let s = Sink { child, dir: dump };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Every captured message (envelope lines, then headers and body), in
    /// the order they arrived; a file still being written is left out.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|(_, f)| std::fs::read_to_string(f).ok())
            .filter(|m| complete(m))
            .collect()
    }

    /// Waits until `n` messages were captured (or the limit passes).
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multipart message whose closing boundary has been written.
fn complete(m: &str) -> bool {
    let Some(b) = m
        .split("boundary=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    else {
        return false;
    };
    m.contains(&format!("--{b}--"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The welcome link in a captured message (quoted-printable undone).
pub fn link_in(message: &str) -> Option<String> {
    let text = message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find("http://127.0.0.1:")?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// A header's value in a captured message, folded lines joined.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\n\n").next().unwrap_or(message);
    let mut lines = head.lines().peekable();
    while let Some(l) = lines.next() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case(name) {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}
