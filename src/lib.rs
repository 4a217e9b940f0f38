//! pbx-onboard: bulk onboarding of staff into a hosted PBX store.
//!
//! The pipeline, one module per stage (see `sync::run_sync` for the flow):
//!
//! ```text
//! source (CSV drop folder, LDAP / AD)  →  mapping (rules → UserSpec)  →  plan (vs store)
//!     →  apply (rate-limited, chunked transactions)  →  store (SQLite / PostgreSQL)
//! ```
//!
//! Every run returns a `report::RunReport`; the CLI only renders it.
#![forbid(unsafe_code)]

// Pure, no I/O.
pub mod config;
pub mod dn;
pub mod mapping;
pub mod model;
pub mod numbering;
pub mod plan;
pub mod report;
pub mod time;
// I/O.
pub mod apply;
pub mod mail;
pub mod source;
pub mod store;
pub mod tls;
pub mod web;
// Drivers.
pub mod cli;
pub mod daemon;
pub mod sync;
