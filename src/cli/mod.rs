//! The command line: argument parsing (clap), then the run, then rendering
//! and exit codes. The only place that uses `anyhow`.
//!
//! Exit codes: 0 all applied; 1 some rows refused (others applied);
//! 2 config or usage error; 3 refused by a safety threshold; 4 the run
//! failed (store unreachable, I/O error, store changed under a plan).

mod admin;
mod args;
mod held;
mod mail;
mod render;

use crate::config::{Config, CsvSource, LdapSource, Resolved, SourceConfig, SourceKind};
use crate::report::RunReport;
use crate::store::Store;
use crate::sync::{self, RunOptions};
use anyhow::Context;
pub use args::{
    Cli, Command, DevicesAction, Format, HeldAction, ListFormat, LogFormat, MailAction, Tag,
    WelcomeAction,
};
use std::io::{IsTerminal, Write};

/// Runs the CLI and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        // Into a buffer first: clap_complete panics when its writer fails,
        // and `pbx-onboard completions bash | head` closes the pipe early.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "pbx-onboard", &mut script);
        return match std::io::stdout().lock().write_all(&script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("error: writing the completions: {e}");
                4
            }
            _ => 0,
        };
    }
    let path = cli.config_path();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if let Command::Daemon = cli.command {
        return match crate::daemon::run(&path, config).await {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(error = %crate::model::chain(&e), "daemon failed");
                eprintln!("error: {}", crate::model::chain(&e));
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

/// The csv source `import` runs: the one named, else the only one (of
/// `--domain`).
fn csv_source<'a>(
    cfg: &'a Config,
    name: Option<&str>,
    domain: Option<&str>,
) -> anyhow::Result<CsvSource<'a>> {
    match pick_source(cfg, name, domain, "csv")?.resolve() {
        Resolved::Csv(c) => Ok(c),
        Resolved::Ldap(l) => Err(Usage(format!(
            "source `{}` is an ldap source: use `sync`",
            l.source.name
        ))
        .into()),
        Resolved::Scim(s) => Err(Usage(format!(
            "source `{}` is a scim source: identity providers push to it (`daemon`)",
            s.source.name
        ))
        .into()),
    }
}

/// The ldap source `sync` runs: the one named, else the only one.
fn ldap_source<'a>(cfg: &'a Config, name: Option<&str>) -> anyhow::Result<LdapSource<'a>> {
    match pick_source(cfg, name, None, "ldap")?.resolve() {
        Resolved::Ldap(l) => Ok(l),
        Resolved::Csv(c) => Err(Usage(format!(
            "source `{}` is a csv source: use `import`",
            c.source.name
        ))
        .into()),
        Resolved::Scim(s) => Err(Usage(format!(
            "source `{}` is a scim source: identity providers push to it (`daemon`)",
            s.source.name
        ))
        .into()),
    }
}

fn pick_source<'a>(
    cfg: &'a Config,
    name: Option<&str>,
    domain: Option<&str>,
    kind: &str,
) -> anyhow::Result<&'a SourceConfig> {
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
        .filter(|s| domain.is_none_or(|d| s.domain.name.eq_ignore_ascii_case(d)))
        .filter(|s| s.kind_name() == kind)
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
        Format::Table => write!(out, "{}", render::run_report(r))?,
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
            let src = csv_source(cfg, source.as_deref(), domain.as_deref())?;
            let store = open_store(cfg).await?;
            let opts = RunOptions {
                dry_run,
                override_limits,
                progress: progress && format == Format::Table,
                plan_out,
                stop: None,
                lock_wait: None,
                no_hold: false,
            };
            let reports = if files.is_empty() {
                if opts.plan_out.is_some() {
                    return Err(Usage("--plan-out needs the FILEs to plan".into()).into());
                }
                sync::csv::process_inbox(cfg, &store, src, &opts).await?
            } else {
                vec![sync::csv::import_files(cfg, &store, src, &files, &opts).await?]
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
            let src = ldap_source(cfg, source.as_deref())?;
            let store = open_store(cfg).await?;
            let opts = RunOptions {
                dry_run,
                override_limits,
                progress: progress && format == Format::Table,
                plan_out: None,
                lock_wait: None,
                no_hold: false,
                stop: None,
            };
            let r = sync::ldap::sync_ldap(cfg, &store, src, full, &opts).await?;
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
                lock_wait: None,
                no_hold: false,
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
            render::users(&users, format)?;
            Ok(0)
        }
        Command::Runs { limit, format } => {
            let store = open_store(cfg).await?;
            let runs = store.list_runs(limit.clamp(1, 10_000)).await?;
            store.close().await;
            render::runs(&runs, format)?;
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
            render::devices(&devices, format)?;
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
                    render::rotated(&r, format)?;
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
        Command::Held { action } => {
            let store = open_store(cfg).await?;
            let r = held::held(cfg, &store, action).await;
            store.close().await;
            r
        }
        Command::Admin { action } => {
            let store = open_store(cfg).await?;
            let r = admin::admin(cfg, &store, action).await;
            store.close().await;
            r
        }
        Command::Daemon | Command::Completions { .. } => {
            Err(Usage("started by `run`, not `dispatch`".into()).into())
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
                        "  source {} (csv, {} mode) → {}: inbox {}",
                        s.name,
                        s.mode,
                        s.domain.name,
                        c.inbox.display()
                    ),
                    SourceKind::Ldap(l) => {
                        let t = std::time::Instant::now();
                        match crate::source::ldap::read_directory(l, None, Count(0)).await {
                            Ok((r, Count(records))) => {
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
                                    s.domain.name,
                                    r.server,
                                    r.entries,
                                    l.base_dn,
                                    records,
                                    r.errors.len(),
                                    t.elapsed().as_secs_f64()
                                );
                            }
                            Err(e) => {
                                let e = crate::model::chain(&e);
                                println!(
                                    "  source {} (ldap) → {}: FAILED: {e}",
                                    s.name, s.domain.name
                                );
                                code = 4;
                            }
                        }
                    }
                    SourceKind::Scim(sc) => {
                        match crate::sync::scim::http::read_tokens(&s.name, &sc.token_file) {
                            Ok(t) => println!(
                                "  source {} (scim) → {}: served at {}/scim/v2/{}/ ({} tokens in {})",
                                s.name,
                                s.domain.name,
                                cfg.mail.link_base_url.trim_end_matches('/'),
                                s.name,
                                t.len(),
                                sc.token_file.display()
                            ),
                            Err(e) => {
                                println!("  source {}: FAILED: {e}", s.name);
                                code = 2;
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

/// Counts the records a check reads, holding none of them.
struct Count(usize);

impl crate::source::RecordSink for Count {
    fn record(&mut self, _: crate::model::StaffRecord) {
        self.0 += 1;
    }
}
