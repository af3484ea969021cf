//! What the `faultline` and `faultline-bench` command lines share: the configuration and
//! database flags, and running a command with logging on the async runtime.

use std::future::Future;
use std::path::PathBuf;

use figment::providers::Env;

use crate::Config;

/// `--config` and `--database`, valid before or after the subcommand.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// TOML configuration file (see faultline.example.toml).
    #[arg(long, global = true, env = "FAULTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database: a SQLite path, sqlite://PATH or postgres://… (overrides the config file).
    #[arg(long, global = true, env = "FAULTLINE_DATABASE_URL")]
    pub database: Option<String>,
}

impl Globals {
    /// The configuration these flags name (the file, then `FAULTLINE_SECTION__KEY` variables),
    /// with `--database` over it; its scrub rules become the process's.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), Env::prefixed("FAULTLINE_"))?;
        if let Some(url) = &self.database {
            config.database_url.clone_from(url);
        }
        config.install_scrub_rules();
        Ok(config)
    }
}

/// Logs to stderr (`FAULTLINE_LOG`, else `default_filter`) and runs `command` on a
/// multi-threaded runtime.
pub fn run(default_filter: &str, command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    runtime.block_on(command)
}
