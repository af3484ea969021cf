//! Test helpers shared by the workspace's integration tests.
//!
//! PostgreSQL comes from `FAULTLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it cannot be reached, tests that need it fail,
//! unless `FAULTLINE_SKIP_POSTGRES=1` says to skip them: CI never sets it, so a PostgreSQL test
//! that did not run fails CI loudly.

pub mod fake;

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The server tests create their databases on.
pub fn postgres_base_url() -> String {
    std::env::var("FAULTLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Drops, once per test process, the databases left by test processes that have ended (each is
/// named `faultline_t<pid>_…`; a test cannot drop its own when it ends, so the next run does).
async fn sweep_finished_runs(admin: &mut sqlx::PgConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'faultline\\_t%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let Some(pid) = name.strip_prefix("faultline_t").and_then(|r| r.split('_').next()) else { continue };
        let ours = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ours || pid.parse::<u32>().is_err() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // The name was checked to be ours and plain: [a-z0-9_].
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut *admin)
            .await;
    }
}

/// Creates a new, empty PostgreSQL database and returns its URL; `None` when skipping.
pub async fn fresh_postgres_url() -> Option<String> {
    if std::env::var("FAULTLINE_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("FAULTLINE_SKIP_POSTGRES=1: skipping the PostgreSQL variant");
        return None;
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let base = postgres_base_url();
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {base} unreachable ({e}); set FAULTLINE_SKIP_POSTGRES=1 to skip")
    });
    sweep_finished_runs(&mut admin).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("faultline_t{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("the PostgreSQL URL names a database");
    Some(format!("{prefix}/{name}"))
}
