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

pub mod apply;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod mail;
pub mod mapping;
pub mod model;
pub mod numbering;
pub mod plan;
pub mod render;
pub mod report;
pub mod source;
pub mod store;
pub mod sync;
pub mod sync_ldap;
pub mod tls;
pub mod web;
