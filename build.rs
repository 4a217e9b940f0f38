//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the
//! `migrations/` folders at compile time but does not track new files.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
