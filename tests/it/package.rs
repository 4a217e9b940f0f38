//! What the Debian package ships besides the binary (.ci/test-package
//! installs it): the version line, completions, the generated man pages and
//! the installed config.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pbx-onboard");
/// build.rs writes the man pages and completions here.
const DIST: &str = concat!(env!("OUT_DIR"), "/dist");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `--version` names the commit HEAD points at (the test runs in a checkout).
#[test]
fn version_names_the_git_commit() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(
        text.trim(),
        format!("pbx-onboard {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

/// Completions print without a config file anywhere.
#[test]
fn completions_print_without_a_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "complete -F _pbx__onboard"),
        ("zsh", "#compdef pbx-onboard"),
        ("fish", "complete -c pbx-onboard"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .env_remove("PBX_ONBOARD_CONFIG")
            .current_dir(dir.path())
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        assert!(text.contains("check-config"), "{shell}: no subcommands");
        let installed =
            std::fs::read_to_string(Path::new(DIST).join("completions").join(match shell {
                "bash" => "pbx-onboard.bash",
                "zsh" => "_pbx-onboard",
                _ => "pbx-onboard.fish",
            }))
            .expect("generated completion");
        assert_eq!(installed, text, "{shell}: packaged file differs");
    }
}

/// The keys in the first column of the README table under `heading`.
fn readme_keys(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let start = readme.find(heading).expect("heading");
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .flat_map(|row| {
            let key = row.split('|').nth(1).unwrap_or_default().to_string();
            key.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// pbx-onboard.toml(5) is rendered from the README's key tables: every key
/// the README documents is on the page, and man reads it without warnings.
#[test]
fn config_man_page_lists_every_readme_key() {
    let page =
        std::fs::read_to_string(Path::new(DIST).join("man/pbx-onboard.toml.5")).expect("page");
    let unescaped = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let mut keys = readme_keys("\n## Configuration\n");
    keys.extend(readme_keys("\n### Keys for both profiles\n"));
    assert!(keys.len() > 50, "only {} keys found", keys.len());
    for key in &keys {
        assert!(
            unescaped.contains(key.as_str()),
            "`{key}` is not on the man page"
        );
    }
    for section in ["KEYS", "MAPPING RULES", "LDAP SOURCE KEYS", "FILES"] {
        assert!(page.contains(&format!(".SH {section}\n")), "no {section}");
    }
    if let Ok(out) = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(Path::new(DIST).join("man/pbx-onboard.toml.5"))
        .env("MANPAGER", "cat")
        .output()
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "man: {err}");
    }
}

/// A man page per subcommand, the top one naming the config page.
#[test]
fn man_pages_cover_every_subcommand() {
    let man = Path::new(DIST).join("man");
    for page in [
        "pbx-onboard.1",
        "pbx-onboard-import.1",
        "pbx-onboard-sync.1",
        "pbx-onboard-daemon.1",
        "pbx-onboard-welcome-resend.1",
        "pbx-onboard-completions.1",
    ] {
        assert!(man.join(page).is_file(), "{page} missing");
    }
    let top = std::fs::read_to_string(man.join("pbx-onboard.1")).expect("page");
    assert!(top.contains("pbx\\-onboard.toml(5)") || top.contains("pbx-onboard.toml(5)"));
}

/// The installed config is the embedded default with production paths, and
/// loads as it is.
#[test]
fn packaged_config_is_the_default_with_production_paths() {
    let body = |path: &str| -> String {
        let text = std::fs::read_to_string(root().join(path)).expect("config");
        let start = text.find("[store]").expect("[store]");
        text[start..]
            .lines()
            .map(|l| {
                l.split('#')
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let default = body("config/pbx-onboard.toml")
        .replace("\"sqlite://../var/", "\"sqlite:///var/lib/pbx-onboard/")
        .replace("\"../var/", "\"/var/lib/pbx-onboard/")
        .replace("\"../var\"", "\"/var/lib/pbx-onboard\"");
    assert_eq!(body("debian/pbx-onboard.toml"), default);
    let cfg = pbx_onboard::config::Config::load(&root().join("debian/pbx-onboard.toml"))
        .expect("the packaged config loads");
    assert_eq!(cfg.state_dir, Path::new("/var/lib/pbx-onboard"));
    assert_eq!(
        cfg.store.url,
        "sqlite:///var/lib/pbx-onboard/pbx-onboard.db"
    );
}

/// `pbx-onboard completions bash | head -1`: the reader closes the pipe
/// early; the command ends quietly instead of panicking.
#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
