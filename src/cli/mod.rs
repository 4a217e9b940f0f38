//! The command line: argument parsing (clap), then the run, then rendering
//! and exit codes. The only place that uses `anyhow`.
//!
//! Exit codes: 0 all applied; 1 some rows refused (others applied);
//! 2 config or usage error; 3 refused by a safety threshold; 4 the run
//! failed (store unreachable, I/O error, store changed under a plan).

mod mail;

use crate::config::{Config, SourceConfig, SourceKind};
use crate::report::RunReport;
use crate::store::Store;
use crate::sync::{self, RunOptions};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
pub use mail::{MailAction, WelcomeAction};
use std::io::{IsTerminal, Write};
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
    fn label(self) -> &'static str {
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

/// Runs the CLI and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if let Command::Daemon = cli.command {
        return match crate::daemon::run(&cli.config, config).await {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(error = %e, "daemon failed");
                eprintln!("error: {e}");
                4
            }
        };
    }
    match dispatch(cli.command, &config).await {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("error: {e:#}");
            2
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            4
        }
    }
}

/// A usage mistake the operator can fix on the command line (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn pick_source<'a>(
    cfg: &'a Config,
    name: Option<&str>,
    domain: Option<&str>,
    ldap: bool,
) -> anyhow::Result<&'a SourceConfig> {
    let kind = if ldap { "ldap" } else { "csv" };
    if let Some(n) = name {
        return cfg.source(n).ok_or_else(|| {
            Usage(format!(
                "no [[source]] named `{n}` in {}",
                cfg.path.display()
            ))
            .into()
        });
    }
    let csv: Vec<&SourceConfig> = cfg
        .sources
        .iter()
        .filter(|s| domain.is_none_or(|d| s.domain.eq_ignore_ascii_case(d)))
        .filter(|s| matches!(s.kind, SourceKind::Ldap(_)) == ldap)
        .collect();
    match csv.as_slice() {
        [one] => Ok(one),
        [] => Err(Usage(format!(
            "no {kind} [[source]] {}in {}",
            domain.map_or(String::new(), |d| format!("for domain {d} ")),
            cfg.path.display()
        ))
        .into()),
        many => Err(Usage(format!(
            "several sources match ({}): choose one with --source",
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Store::connect(&cfg.store)
        .await
        .context("opening the store")
}

fn print_report(r: &RunReport, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Table => write!(out, "{}", r.render_text())?,
    }
    Ok(())
}

async fn dispatch(cmd: Command, cfg: &Config) -> anyhow::Result<i32> {
    let progress = std::io::stderr().is_terminal();
    match cmd {
        Command::Import {
            files,
            source,
            domain,
            dry_run,
            plan_out,
            override_limits,
            no_mail,
            format,
        } => {
            let src = pick_source(cfg, source.as_deref(), domain.as_deref(), false)?;
            let store = open_store(cfg).await?;
            let opts = RunOptions {
                dry_run,
                override_limits,
                progress: progress && format == Format::Table,
                plan_out,
                stop: None,
            };
            let reports = if files.is_empty() {
                if opts.plan_out.is_some() {
                    return Err(Usage("--plan-out needs the FILEs to plan".into()).into());
                }
                sync::process_inbox(cfg, &store, src, &opts).await?
            } else {
                vec![sync::import_files(cfg, &store, src, &files, &opts).await?]
            };
            if !dry_run && !no_mail {
                mail::deliver_after_run(cfg, &store).await;
            }
            store.close().await;
            if reports.is_empty() && format == Format::Table {
                println!("nothing to import: the drop folder has no settled files");
            }
            let mut code = 0;
            for r in &reports {
                print_report(r, format)?;
                code = code.max(r.exit_code());
            }
            Ok(code)
        }
        Command::Sync {
            source,
            full,
            dry_run,
            override_limits,
            no_mail,
            format,
        } => {
            let src = pick_source(cfg, source.as_deref(), None, true)?;
            if !matches!(src.kind, SourceKind::Ldap(_)) {
                return Err(Usage(format!(
                    "source `{}` is a csv source: use `import`",
                    src.name
                ))
                .into());
            }
            let store = open_store(cfg).await?;
            let opts = RunOptions {
                dry_run,
                override_limits,
                progress: progress && format == Format::Table,
                plan_out: None,
                stop: None,
            };
            let r = crate::sync_ldap::sync_ldap(cfg, &store, src, full, &opts).await?;
            if !dry_run && !no_mail {
                mail::deliver_after_run(cfg, &store).await;
            }
            store.close().await;
            print_report(&r, format)?;
            Ok(r.exit_code())
        }
        Command::Apply {
            plan,
            override_limits,
            format,
        } => {
            let store = open_store(cfg).await?;
            let opts = RunOptions {
                dry_run: false,
                override_limits,
                progress: progress && format == Format::Table,
                plan_out: None,
                stop: None,
            };
            let r = sync::apply_saved_plan(cfg, &store, &plan, &opts).await?;
            mail::deliver_after_run(cfg, &store).await;
            store.close().await;
            print_report(&r, format)?;
            Ok(r.exit_code())
        }
        Command::Users {
            domain,
            tag,
            format,
        } => {
            let store = open_store(cfg).await?;
            let mut users = store.list_users(domain.as_deref()).await?;
            store.close().await;
            if let Some(t) = tag {
                users.retain(|u| u.tags.contains(&t.label()));
            }
            crate::render::users(&users, format)?;
            Ok(0)
        }
        Command::Runs { limit, format } => {
            let store = open_store(cfg).await?;
            let runs = store.list_runs(limit.clamp(1, 10_000)).await?;
            store.close().await;
            crate::render::runs(&runs, format)?;
            Ok(0)
        }
        Command::Devices {
            action: None,
            domain,
            format,
        } => {
            let store = open_store(cfg).await?;
            let devices = store.list_devices(domain.as_deref()).await?;
            store.close().await;
            crate::render::devices(&devices, format)?;
            Ok(0)
        }
        Command::Devices {
            action:
                Some(DevicesAction::RotateSecret {
                    domain,
                    extension,
                    format,
                }),
            ..
        } => {
            let store = open_store(cfg).await?;
            let rotated = store.rotate_secret(&domain, &extension).await?;
            store.close().await;
            match rotated {
                Some(r) => {
                    tracing::info!(
                        domain = %r.domain,
                        extension = %r.extension,
                        "device secret rotated"
                    );
                    crate::render::rotated(&r, format)?;
                    Ok(0)
                }
                None => Err(Usage(format!(
                    "domain {domain} has no user with extension {extension} and a SIP device"
                ))
                .into()),
            }
        }
        Command::Mail { action } => {
            let store = open_store(cfg).await?;
            let r = mail::mail(cfg, &store, action).await;
            store.close().await;
            r
        }
        Command::Welcome { action } => {
            let store = open_store(cfg).await?;
            let r = mail::welcome(cfg, &store, action).await;
            store.close().await;
            r
        }
        Command::Daemon => {
            Err(Usage("the daemon is started by `run`, not `dispatch`".into()).into())
        }
        Command::CheckConfig => {
            let store = open_store(cfg).await?;
            store.close().await;
            println!(
                "config {} is valid; store {} is reachable and migrated",
                cfg.path.display(),
                crate::store::redact_url(&cfg.store.url)
            );
            for d in &cfg.domains {
                let plan: Vec<String> = d.numbering.iter().map(ToString::to_string).collect();
                println!(
                    "  domain {}: numbering {}, {} sites, {} numbers in inventory",
                    d.name,
                    plan.join(", "),
                    d.sites.len(),
                    d.numbers.len()
                );
            }
            let mut code = 0;
            for s in &cfg.sources {
                match &s.kind {
                    SourceKind::Csv(c) => println!(
                        "  source {} (csv, {:?} mode) → {}: inbox {}",
                        s.name,
                        s.mode,
                        s.domain,
                        c.inbox.display()
                    ),
                    SourceKind::Ldap(l) => {
                        let t = std::time::Instant::now();
                        match crate::source::ldap::read_directory(l, None).await {
                            Ok(r) => {
                                let narrowed = match &l.group {
                                    Some(g) if r.returned != r.entries => format!(
                                        " ({} returned, {} of them not in {g})",
                                        r.returned,
                                        r.returned - r.entries
                                    ),
                                    _ => String::new(),
                                };
                                println!(
                                    "  source {} (ldap, {}) → {}: bound to {}; {} entries match under {}{narrowed} ({} records, {} refused) in {:.1} s",
                                    s.name,
                                    l.profile.as_str(),
                                    s.domain,
                                    r.server,
                                    r.entries,
                                    l.base_dn,
                                    r.records.len(),
                                    r.errors.len(),
                                    t.elapsed().as_secs_f64()
                                );
                            }
                            Err(e) => {
                                println!("  source {} (ldap) → {}: FAILED: {e}", s.name, s.domain);
                                code = 4;
                            }
                        }
                    }
                }
            }
            println!("  {} mapping rules", cfg.rules.len());
            Ok(code)
        }
    }
}
