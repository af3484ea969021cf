//! Rebuilds the crate when a migration file is added or changed: `sqlx::migrate!` embeds them at
//! compile time (as sqlx's documentation advises).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
