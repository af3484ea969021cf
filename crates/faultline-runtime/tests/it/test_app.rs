//! `TestApp`: the application `faultline serve` runs, booted in this process on a loopback port
//! with a fresh SQLite database, and stopped as SIGTERM stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_runtime::{Application, Config};
use faultline_store::Store;
use figment::providers::Env;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub url: String,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Boots the application with `config` (TOML; the database and the address are set here)
    /// and `secrets` as the environment it reads tokens from.
    pub async fn spawn(dir: tempfile::TempDir, config: &str, secrets: &[(&str, &str)]) -> TestApp {
        let path = dir.path().join("faultline.toml");
        let database = dir.path().join("faultline.db");
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n{config}",
                database.display()
            ),
        )
        .expect("config");
        let secrets: Vec<(String, String)> =
            secrets.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let config = Config::load_with_secrets(Some(&path), Env::prefixed("FAULTLINE_TEST_NONE_"), &|name| {
            secrets.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .expect("valid config");
        let store = faultline_store::open(&config.database_url).await.expect("open the database");
        let listen = config.listen;
        let app = Application::build(config, store.clone(), listen).await.expect("build");
        let url = format!("http://{}", app.addr());
        let stop = app.shutdown_token();
        let running = tokio::spawn(app.run_until_stopped());
        TestApp { url, store, _dir: dir, stop, running }
    }

    /// Stops the application as SIGTERM does; it must stop cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.running.await.expect("application task").expect("the application stopped cleanly");
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
