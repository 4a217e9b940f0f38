//! The command line as clap parses it: flags, subcommands and their value
//! types. Checking and resolving them (which source, which domain) is the
//! second stage, in `cli::mod`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pbx-onboard",
    version,
    about = "Onboard staff from CSV drops into a hosted PBX store"
)]
pub struct Cli {
    /// Config file (relative paths in it resolve against its folder).
    #[arg(
        long,
        global = true,
        default_value = "config/pbx-onboard.toml",
        env = "PBX_ONBOARD_CONFIG"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
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
    /// Run as a service: watch the drop folders, run the schedules, serve
    /// /healthz and /metrics. SIGTERM stops, SIGHUP reloads the config.
    Daemon,
    /// Load and check the config, open the store, and say what is configured.
    CheckConfig,
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
