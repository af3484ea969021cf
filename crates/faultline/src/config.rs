//! Configuration: a TOML file overlaid by `FAULTLINE_SECTION__KEY` environment variables,
//! validated once at startup into [`Config`]. Nothing reads the environment after that.

use std::path::Path;

use anyhow::{Context, bail};
use faultline_core::Level;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The file and environment, as written by the user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` for PostgreSQL; `sqlite://PATH` or a plain path for SQLite.
    #[serde(default = "default_database_url")]
    pub url: String,
}

fn default_database_url() -> String {
    "data/faultline.db".to_owned()
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: default_database_url() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Lowest level stored: `ERROR` (default) or `WARNING`, `CRITICAL`. Lower lines are counted.
    #[serde(default = "default_min_level")]
    pub min_level: String,
    /// Events per database transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest line kept, in bytes; longer lines are cut and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Raw entries stored per pattern per minute; beyond it occurrences are only counted, so a
    /// loop logging 50,000 identical errors a second cannot fill the disk.
    #[serde(default = "default_max_stored")]
    pub max_stored_per_pattern_minute: u32,
}

fn default_min_level() -> String {
    "ERROR".to_owned()
}
fn default_batch_size() -> usize {
    10_000
}
fn default_max_line_bytes() -> usize {
    64 * 1024
}
fn default_max_stored() -> u32 {
    1000
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            min_level: default_min_level(),
            batch_size: default_batch_size(),
            max_line_bytes: default_max_line_bytes(),
            max_stored_per_pattern_minute: default_max_stored(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Entries older than this many days are deleted by `cleanup`.
    #[serde(default = "default_days")]
    pub days: u32,
}

fn default_days() -> u32 {
    90
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { days: default_days() }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub min_level: Level,
    pub batch_size: usize,
    pub max_line_bytes: usize,
    pub max_stored_per_pattern_minute: u32,
    pub retention_days: u32,
}

impl Config {
    /// Reads `file` (if given) and the environment, then validates.
    pub fn load(file: Option<&Path>, env: Env) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only SECTION__KEY variables are config keys; FAULTLINE_CONFIG and the like are not.
        figment = figment.merge(env.filter(|k| k.as_str().contains("__")).split("__"));
        let raw: RawConfig = figment.extract().map_err(|e| anyhow::anyhow!(describe(e)))?;
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> anyhow::Result<Config> {
        let min_level =
            Level::parse(&raw.ingest.min_level).filter(|l| *l >= Level::Warning).with_context(|| {
                format!("invalid ingest.min_level {:?}: use WARNING, ERROR or CRITICAL", raw.ingest.min_level)
            })?;
        if raw.ingest.batch_size == 0 {
            bail!("invalid ingest.batch_size 0: must be at least 1");
        }
        Ok(Config {
            database_url: raw.database.url,
            min_level,
            batch_size: raw.ingest.batch_size,
            max_line_bytes: raw.ingest.max_line_bytes.max(1024),
            max_stored_per_pattern_minute: raw.ingest.max_stored_per_pattern_minute,
            retention_days: raw.retention.days,
        })
    }
}

/// One line per problem, naming the key and where it came from.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            let what = e.kind.to_string();
            match (key.is_empty(), from.is_empty()) {
                (true, _) => format!("bad config: {what}"),
                (false, true) => format!("bad config key {key}: {what}"),
                (false, false) => format!("bad config key {key} ({from}): {what}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("faultline.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(Some(&path), Env::prefixed("FAULTLINE_TEST_NONE_"))
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, Env::prefixed("FAULTLINE_TEST_NONE_")).expect("defaults");
        assert_eq!(
            (c.database_url.as_str(), c.min_level, c.retention_days),
            ("data/faultline.db", Level::Error, 90)
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_toml("[ingest]\nbatch_sise = 10\n").unwrap_err().to_string();
        assert!(err.contains("ingest.batch_sise") || err.contains("batch_sise"), "{err}");
        let err = load_toml("[databse]\nurl = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("databse"), "{err}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let err = load_toml("[ingest]\nmin_level = \"INFO\"\n").unwrap_err().to_string();
        assert_eq!(err, "invalid ingest.min_level \"INFO\": use WARNING, ERROR or CRITICAL");
        let c = load_toml("[ingest]\nmin_level = \"warn\"\n[database]\nurl = \"x.db\"\n").expect("valid");
        assert_eq!((c.min_level, c.database_url.as_str()), (Level::Warning, "x.db"));
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail API fixes the closure's error type")]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("f.toml", "[retention]\ndays = 30\n")?;
            jail.set_env("FAULTLINE_RETENTION__DAYS", "7");
            let c = Config::load(Some(Path::new("f.toml")), Env::prefixed("FAULTLINE_"))
                .map_err(|e| e.to_string())?;
            assert_eq!(c.retention_days, 7);
            Ok(())
        });
    }
}
