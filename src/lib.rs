//! pbx-onboard: bulk onboarding of staff into a hosted PBX store.
//!
//! The whole flow (see [`sync::run_sync`], which shows it in order):
//!
//! ```text
//!  source::csv (drop folder, import FILE)  ┐
//!  source::ldap (LDAP / AD, paged)         ┤
//!  scim (Users/Groups a SCIM client pushes)┴► StaffRecord ─► mapping ─► UserSpec
//!                                                      (config rules, numbering)
//!  store (users of the domain) ───────────────────────────────┐         │
//!                                                             ▼         ▼
//!                                        plan: create / update / disable / conflict,
//!                                        billable count, safety verdict (Refusal)
//!                                                             │
//!                        apply (governor rate, chunked transactions; each new user
//!                        with its device, welcome link and outbox row) ─► store
//!                                                             │
//!  report::RunReport ◄── every run; the CLI renders it, the daemon counts it
//!
//!  mail: outbox ─► askama templates ─► lettre (SMTP) or .eml files
//!  web:  /welcome/{token} (set password and PIN), /healthz, /metrics
//!  daemon: cron schedules + folder watch ─► sync; mail worker; web server;
//!          /scim/v2/{source}/ (sync::scim::http) ─► one run per write
//! ```
//!
//! Modules are listed by layer, bottom to top; a module never imports from
//! a layer above its own (`.ci/check-layers` fails CI when one does).
#![forbid(unsafe_code)]
// No panics on runtime data, by construction (tests may unwrap).
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// ---- Layer 0: pure, no I/O.
/// Domain types: newtypes parsed at the edge, records, shared values.
pub mod model;
/// The clock and date formats.
pub mod time;
/// Distinguished names: folding, escapes, the CN.
pub mod dn;
/// Numbering plans: ranges, reserved numbers, the extension allocator.
pub mod numbering;
/// The config file, checked into ready-to-use values.
pub mod config;
/// Records + rules → what each PBX user should look like.
pub mod mapping;
/// What the source wants vs what the store holds → actions.
pub mod plan;
/// The run report.
pub mod report;
/// SCIM 2.0 documents: filters, PATCH, User resources as records.
pub mod scim;

// ---- Layer 1: I/O.
/// TLS trust for the LDAP and SMTP clients.
pub mod tls;
/// Reading sources: CSV files and the drop folder, LDAP directories.
pub mod source;
/// The PBX store on SQLite or PostgreSQL.
pub mod store;
/// Executing a plan against the store at the PBX's rate.
pub mod apply;
/// The outbox worker, templates and SMTP.
pub mod mail;
/// The welcome page, /healthz and /metrics.
pub mod web;

// ---- Layer 2: drivers.
/// One run of one source, end to end.
pub mod sync;
/// The service: schedules, folder watch, mail worker, web server.
pub mod daemon;
/// The command line.
pub mod cli;
