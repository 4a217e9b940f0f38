//! The command line as clap parses it: flags, subcommands and their value
//! types. Checking and resolving them (which source, which domain) is the
//! second stage, in `cli::mod`.
//!
//! `build.rs` includes this file too, to render the man pages and shell
//! completions from the very definitions the binary parses; so it depends on
//! nothing but `clap`, `clap_complete` and `std`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// What `--version` prints: the version and the git commit it was built
/// from (`build.rs` sets `PBX_ONBOARD_BUILD`; a build outside a git checkout
/// says so).
pub const VERSION: &str = match option_env!("PBX_ONBOARD_BUILD") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The config file of a checkout, used when it exists (relative to the
/// working directory).
pub const CHECKOUT_CONFIG: &str = "config/pbx-onboard.toml";
/// The config file of an installed package.
pub const SYSTEM_CONFIG: &str = "/etc/pbx-onboard/pbx-onboard.toml";

#[derive(Debug, Parser)]
#[command(
    name = "pbx-onboard",
    version = VERSION,
    about = "Onboard staff from CSV drops and LDAP/AD into a hosted PBX store",
    long_about = "Onboard staff from CSV drops and LDAP / Active Directory into a hosted PBX \
                  store: map directory groups to PBX scopes, departments and sites, pick \
                  extensions from the numbering plan, create, update and disable PBX users \
                  and their devices at a rate the PBX can take, and send each new user a \
                  welcome email. The configuration is described in pbx-onboard.toml(5).",
    after_help = "Exit codes: 0 all applied; 1 some rows refused (the others applied); \
                  2 config or usage error; 3 refused by a safety threshold; 4 the run failed."
)]
pub struct Cli {
    /// Config file; relative paths in it resolve against its folder.
    /// [default: ./config/pbx-onboard.toml if it exists, else
    /// /etc/pbx-onboard/pbx-onboard.toml]
    #[arg(long, global = true, env = "PBX_ONBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The config file to load: `--config` / `PBX_ONBOARD_CONFIG`, else the
    /// checkout's if present, else the installed package's.
    pub fn config_path(&self) -> PathBuf {
        match &self.config {
            Some(p) => p.clone(),
            None if Path::new(CHECKOUT_CONFIG).is_file() => PathBuf::from(CHECKOUT_CONFIG),
            None => PathBuf::from(SYSTEM_CONFIG),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tag {
    New,
    SetupRequired,
    PasswordRequired,
}

impl Tag {
    pub fn label(self) -> &'static str {
        match self {
            Tag::New => "New",
            Tag::SetupRequired => "Setup Required",
            Tag::PasswordRequired => "Password Required",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import CSV files (without FILE: process the source's drop folder once).
    Import {
        files: Vec<PathBuf>,
        /// The csv source to import as (default: the only csv source, or the one for --domain).
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        /// Plan and report, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the plan as JSON for review and `apply`.
        #[arg(long)]
        plan_out: Option<PathBuf>,
        /// Apply even if a safety threshold (disables, billable) refuses the run.
        #[arg(long)]
        override_limits: bool,
        /// Queue the welcome emails but do not deliver them now.
        #[arg(long)]
        no_mail: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read an LDAP / AD source once and apply it (changed-only between full reads).
    Sync {
        /// The ldap source (default: the only ldap source).
        #[arg(long)]
        source: Option<String>,
        /// Read everyone now, even if a changed-only read is due.
        #[arg(long)]
        full: bool,
        /// Read and plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply even if a safety threshold (disables, billable) refuses the run.
        #[arg(long)]
        override_limits: bool,
        /// Queue the welcome emails but do not deliver them now.
        #[arg(long)]
        no_mail: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Apply a plan written by `import --dry-run --plan-out`, exactly as reviewed.
    Apply {
        plan: PathBuf,
        #[arg(long)]
        override_limits: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List PBX users with their computed tags.
    Users {
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, value_enum)]
        tag: Option<Tag>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// List recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List devices with their state (`registrable`: a SIP registrar reading
    /// the `sip_subscriber` view accepts it now), or rotate a device secret.
    #[command(args_conflicts_with_subcommands = true)]
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The mail outbox.
    Mail {
        #[command(subcommand)]
        action: MailAction,
    },
    /// Welcome links: who still has to set up, and resending.
    Welcome {
        #[command(subcommand)]
        action: WelcomeAction,
    },
    /// Runs a safety limit refused (and a scim source's held disables),
    /// kept for an admin to approve or discard.
    Held {
        #[command(subcommand)]
        action: HeldAction,
    },
    /// Console accounts for the admin pages (`/admin`).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Run as a service: watch the drop folders, run the schedules, serve
    /// /healthz and /metrics. SIGTERM stops, SIGHUP reloads the config.
    Daemon,
    /// Load and check the config, open the store, and say what is configured.
    CheckConfig,
    /// Print the shell completion script for SHELL (the Debian package
    /// installs them for bash, zsh and fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum HeldAction {
    /// Held runs, newest first: pending ones (with --all, decided ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Every action a held run would take: name, extension, department,
    /// site and what changes.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Apply exactly the held plan (refused if the domain changed since;
    /// then discard it and let the next run plan afresh).
    Approve {
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drop a held run: nothing is applied (a scim source's users stay
    /// active; re-activate them in the identity provider).
    Discard { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a console account. The password is asked for on the
    /// terminal, or read from the first line of stdin with --password-stdin.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: AdminRole,
        #[arg(long)]
        password_stdin: bool,
    },
    /// The console accounts (never their passwords).
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete an account and end its sessions.
    Remove { name: String },
    /// Set an account's password (its sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// What a console account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminRole {
    /// Everything: approve, discard, resend.
    Admin,
    /// Sees everything, changes nothing.
    Viewer,
}

#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Give the SIP device of the user with EXTENSION a new secret and print
    /// it once; the old secret stops registering at once.
    RotateSecret {
        #[arg(long)]
        domain: String,
        extension: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailAction {
    /// Deliver every email that is due now, once (retries wait for their time).
    Flush {
        /// Also send now what waits for a retry (after fixing the mail server).
        #[arg(long)]
        retry_now: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum WelcomeAction {
    /// Send a new welcome link; earlier links of the user stop working.
    Resend {
        #[arg(long)]
        domain: Option<String>,
        /// The user's extension (needs --domain when several are configured).
        #[arg(
            required_unless_present = "all_pending",
            conflicts_with = "all_pending"
        )]
        extension: Option<String>,
        /// Everyone who has not set their password and PIN and has no
        /// welcome on its way (optionally of one --domain). Skips people
        /// whose sent link still works, unless --include-sent.
        #[arg(long)]
        all_pending: bool,
        /// With --all-pending: also resend links that were sent and have
        /// not expired (those links stop working).
        #[arg(long, requires = "all_pending")]
        include_sent: bool,
        /// Queue only; `mail flush` or the daemon sends.
        #[arg(long)]
        no_mail: bool,
    },
    /// Each person's welcome: queued, sent, failed, completed, expired.
    Pending {
        #[arg(long)]
        domain: Option<String>,
        /// Also list people who completed theirs.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}
