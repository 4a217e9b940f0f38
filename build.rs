//! Build-time outputs besides the binary:
//!
//! - `PBX_ONBOARD_BUILD`, what `--version` prints: the version and the git
//!   commit the build comes from (`PBX_ONBOARD_COMMIT` overrides it, for
//!   builds from a source tarball).
//! - Man pages from the clap definitions (`clap_mangen`): `pbx-onboard(1)`
//!   and one page per subcommand; `pbx-onboard.toml(5)` from the README's
//!   configuration tables (`build/config_man.rs`), so the README stays the
//!   one description of every key.
//! - Shell completions for bash, zsh and fish (`clap_complete`).
//!
//! They are written to `OUT_DIR` (the tests read them there) and copied to
//! `target/<profile>/dist/`, where `cargo deb` picks them up (Cargo.toml,
//! `[package.metadata.deb] assets`); the man pages there are compressed with
//! `gzip -9n` as Debian policy asks (cargo-deb compresses only the files it
//! did not see built).
//!
//! It also reruns when a migration is added: `sqlx::migrate!` embeds the
//! `migrations/` folders at compile time but does not track new files.

use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)]
#[path = "src/cli/args.rs"]
mod args;
#[path = "build/config_man.rs"]
mod config_man;

fn main() {
    if let Err(e) = run() {
        println!("cargo::error=pbx-onboard build script: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    for watched in ["migrations", "src/cli/args.rs", "build", "README.md"] {
        println!("cargo::rerun-if-changed={watched}");
    }
    println!("cargo::rerun-if-env-changed=PBX_ONBOARD_COMMIT");

    let version = format!(
        "{} ({})",
        env("CARGO_PKG_VERSION")?,
        match commit(&root) {
            Some(c) => format!("commit {c}"),
            None => "not built from a git checkout".to_string(),
        }
    );
    println!("cargo::rustc-env=PBX_ONBOARD_BUILD={version}");

    let out = PathBuf::from(env("OUT_DIR")?).join("dist");
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let version: &'static str = Box::leak(version.into_boxed_str());
    let cmd = args::Cli::command().version(version);
    clap_mangen::generate_to(cmd.clone(), &man).map_err(|e| format!("man pages: {e}"))?;
    let readme = std::fs::read_to_string(root.join("README.md"))
        .map_err(|e| format!("reading README.md: {e}"))?;
    let page = config_man::render(&readme, env("CARGO_PKG_VERSION")?.as_str())?;
    write(&man.join("pbx-onboard.toml.5"), &page)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "pbx-onboard", &completions)
            .map_err(|e| format!("{shell} completions: {e}"))?;
    }

    // OUT_DIR is target/<profile>/build/<package>-<hash>/out.
    if let Some(profile_dir) = Path::new(&env("OUT_DIR")?).ancestors().nth(3) {
        copy_dir(&out, &profile_dir.join("dist"))?;
    }
    Ok(())
}

fn env(key: &str) -> Result<String, String> {
    std::env::var(key).map_err(|_| format!("cargo did not set {key}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The commit HEAD names, short; also asks cargo to rerun when HEAD moves.
fn commit(root: &Path) -> Option<String> {
    if let Ok(c) = std::env::var("PBX_ONBOARD_COMMIT") {
        return Some(c);
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        let path = root.join(path);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    Some(hash)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if from.ends_with("man") {
            gzip(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("copying to {}: {e}", target.display()))?;
        }
    }
    Ok(())
}

/// `gzip -9n FROM > TO.gz`: no name or time stamp, so rebuilds are identical.
fn gzip(from: &Path, to: &Path) -> Result<(), String> {
    let mut name = to.as_os_str().to_owned();
    name.push(".gz");
    let out = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(from)
        .output()
        .map_err(|e| format!("gzip (needed for the man pages): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gzip {}: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(&name, out.stdout).map_err(|e| format!("writing {}: {e}", to.display()))
}
