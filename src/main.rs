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

use clap::Parser;
use pbx_onboard::cli::{self, Cli, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

// A 100,000-row import makes millions of small allocations (one String per
// cell, per field, per diff); mimalloc serves them markedly faster than glibc's
// allocator and returns memory more tightly (see benches/import_bench.py).
// Built without transparent huge pages (`no_thp`): with them, memory freed
// between phases was purged and faulted back in 2 MiB at a time, which cost
// an import up to a second of kernel time and 25 MiB more peak RSS.
// mimalloc's v2 line (feature `v2`): v3 holds freed pages for a second
// before giving them back (purge delay 1000 ms against v2's 10 ms), which
// kept a 100k-row no-op re-import's peak RSS at 152 MiB against v2's 141,
// in the same time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_env("PBX_ONBOARD_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour only for a person at a terminal: never into a file or the
    // journal, never with NO_COLOR (https://no-color.org), never in JSON.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && matches!(cli.log_format, LogFormat::Text);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // Exit codes are 0-4 (README "Exit codes"); anything else would be a bug.
    ExitCode::from(u8::try_from(cli::run(cli).await).unwrap_or(4))
}
