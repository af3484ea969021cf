//! The `faultline` binary from the outside: real processes, real SQLite files and a real
//! PostgreSQL database.

pub(crate) mod alerts;
mod cli;
mod crash;
mod instances;
mod otlp;
mod railway;
mod repo;
mod sentry;
mod serve;
mod workload;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `args` against `database`, from `dir`, with a clean environment for
/// faultline's own variables.
pub fn faultline(dir: &Path, database: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.current_dir(dir).arg("--database").arg(database).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("FAULTLINE_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run faultline")
}

pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "faultline failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).expect("valid JSON")
}

/// Every database a CLI test runs against: a temp SQLite file and a fresh PostgreSQL database.
pub async fn databases(dir: &Path) -> Vec<String> {
    let mut urls = vec![dir.join("faultline.db").display().to_string()];
    if let Some(url) = faultline_testkit::fresh_postgres_url().await {
        urls.push(url);
    }
    urls
}

pub fn example_log() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/app.log")
}
