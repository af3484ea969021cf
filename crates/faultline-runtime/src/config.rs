//! Configuration: a TOML file overlaid by `FAULTLINE_SECTION__KEY` environment variables,
//! validated once at startup into [`Config`]. Nothing reads the environment after that.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use faultline_connectors::notify::{self, Notifier};
use faultline_core::Level;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The file and environment, as written by the user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub database: DatabaseConfig,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
    pub server: ServerConfig,
    pub files: FilesConfig,
    pub journald: JournaldConfig,
    pub schedule: ScheduleConfig,
    pub alerts: AlertsConfig,
    pub notify: NotifyConfig,
    pub railway: RailwayConfig,
    pub sentry: SentryConfig,
    pub scrub: ScrubConfig,
}

/// Sentry SDKs sending to `/api/<project>/envelope/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentryConfig {
    /// Project id (the DSN's last part) → the source name its events are stored under; a
    /// project not named here is the source `sentry:<project>`.
    pub projects: std::collections::BTreeMap<String, String>,
}

/// What is filtered before storage beyond the defaults (keys naming passwords, secrets,
/// tokens, cookies…; bearer credentials; card numbers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// More key names (parts of them, case-insensitive) whose values are filtered: `["iban"]`.
    pub keys: Vec<String>,
    /// Key names never filtered though they look secret: `["session_id"]`.
    pub safe_fields: Vec<String>,
    /// Regular expressions whose matches are filtered: `['\bACCT-\d{6}\b']`.
    pub patterns: Vec<String>,
    /// Filter IPv4 and IPv6 addresses (of users) too.
    pub ip_addresses: bool,
}

/// The Railway crawler. The token comes from `RAILWAY_API_TOKEN` (account or workspace token,
/// sent as a bearer token) or `RAILWAY_TOKEN` (a project token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RailwayConfig {
    /// Projects and environments to crawl; none means the crawler is off.
    pub targets: Vec<RailwayTarget>,
    pub api_url: String,
    /// Railway's log filter syntax; the default keeps errors (stderr counts as error there).
    pub filter: String,
    /// How often each target is crawled (at least 30 s against Railway's API).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Logs per request (the API allows up to 5000).
    pub page_size: u32,
    /// Requests per hour the crawler never exceeds (Railway plans: 100, 1000, 10000).
    pub requests_per_hour: u32,
    /// Requests per second the crawler never exceeds (Railway plans: Hobby 10, Pro 50): they
    /// are spaced evenly, `1 / requests_per_second` apart.
    pub requests_per_second: u32,
    /// How far back the first crawl of a target reads.
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// How far before its cursor each crawl starts again (lines Railway adds late).
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Live mode: also subscribe to each environment's errors over a WebSocket for errors within
    /// seconds; the polling crawl still runs and fills any gap.
    pub live: bool,
    /// The live endpoint; by default `api_url` with `wss://` (Railway serves both on one path).
    pub ws_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RailwayTarget {
    pub project_id: String,
    pub environment_id: String,
    /// Only these service ids (default: every service of the environment).
    #[serde(default)]
    pub services: Vec<String>,
}

impl Default for RailwayConfig {
    fn default() -> Self {
        RailwayConfig {
            targets: Vec::new(),
            api_url: faultline_connectors::railway::DEFAULT_API_URL.to_owned(),
            filter: "@level:error".to_owned(),
            poll_interval: Duration::from_secs(300),
            page_size: 1000,
            requests_per_hour: 1000,
            requests_per_second: 10,
            backfill: Duration::from_secs(3600),
            overlap: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
            live: false,
            ws_url: None,
        }
    }
}

/// The alert rules' defaults, written to the `alert_rules` table on first start (after that
/// the table is the truth: edits there are kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules at all.
    pub enabled: bool,
    /// How often rules are evaluated when nothing new is stored (error rate, recovery).
    #[serde(with = "humantime_serde")]
    pub evaluate_interval: Duration,
    /// No second alert about the same pattern (by any rule) within this time, except once to
    /// escalate to critical.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Spike: a pattern's count in one minute above this.
    pub spike_per_minute: u64,
    /// Sustained: a pattern seen over this many minutes, from its first occurrence to its
    /// latest…
    pub sustained_minutes: u32,
    /// …with no gap between occurrences longer than this many minutes.
    pub sustained_max_gap_minutes: u32,
    /// Error rate: errors per minute over `error_rate_window_minutes`; degraded from, fail above.
    pub error_rate_window_minutes: u32,
    pub error_rate_degraded: f64,
    pub error_rate_fail: f64,
    /// Ignored but growing: an ignored pattern seen more than this many times in
    /// `ignored_growing_minutes`.
    pub ignored_growing_count: u64,
    pub ignored_growing_minutes: u32,
    /// Flood limits: notified alerts per pattern per hour, and in all per hour, over every
    /// instance on the database. Alerts past them still get their tasks; their notifications
    /// are held back and sent as one digest per channel `digest_after` after the first.
    pub max_per_pattern_per_hour: u32,
    pub max_per_hour: u32,
    #[serde(with = "humantime_serde")]
    pub digest_after: Duration,
    /// Delivery attempts before a notification is given up (and reported).
    pub max_attempts: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluate_interval: Duration::from_secs(15),
            cooldown: Duration::from_secs(30 * 60),
            spike_per_minute: 10,
            sustained_minutes: 5,
            sustained_max_gap_minutes: 1,
            error_rate_window_minutes: 5,
            error_rate_degraded: 1.0,
            error_rate_fail: 5.0,
            ignored_growing_count: 100,
            ignored_growing_minutes: 60,
            max_per_pattern_per_hour: 6,
            max_per_hour: 60,
            digest_after: Duration::from_secs(10 * 60),
            max_attempts: 8,
        }
    }
}

/// Where alerts are sent. Secrets (tokens, hook URLs, passwords) are named by environment
/// variable, never written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub webhook: Option<WebhookConfig>,
    pub slack: Option<SlackConfig>,
    pub github: Option<GitHubConfig>,
    pub email: Option<EmailConfig>,
    /// Time allowed for one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook: None,
            slack: None,
            github: None,
            email: None,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Environment variable holding the HMAC secret (optional: unsigned without it).
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Environment variable holding the incoming-webhook URL.
    pub url_env: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// `owner/name`.
    pub repo: String,
    /// Environment variable holding a token allowed to write issues.
    pub token_env: String,
    #[serde(default = "default_github_api")]
    pub api_url: String,
}

fn default_github_api() -> String {
    "https://api.github.com".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` or `none` (a local relay only).
    #[serde(default = "default_smtp_tls")]
    pub tls: String,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// PEM file of CA certificates to trust besides the system's (a relay with a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_tls() -> String {
    "starttls".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address `faultline serve` listens on. Without tokens, only a loopback address is allowed.
    pub listen: String,
    /// Largest request body, in bytes, after gzip is undone.
    pub max_body_bytes: usize,
    /// Records per minute each token may send to the ingest endpoints; 0 = no quota.
    pub ingest_quota_per_minute: u32,
    /// API tokens. The secret is never written in the file: `env` names the variable holding it.
    pub tokens: Vec<TokenConfig>,
    /// A client that has not sent a whole request header within this time (counted from the
    /// connection's start or the end of the previous answer, so it closes idle kept-alive
    /// connections too) is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// The address people reach faultline's pages at (`https://faultline.example.com`), for
    /// links in notifications and tasks; without it they carry none.
    pub public_url: Option<String>,
    /// `GET /metrics` without a token even when tokens are configured (for a scraper on a
    /// private network); by default it needs the read scope then.
    pub metrics_public: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 10 << 20,
            ingest_quota_per_minute: 0,
            tokens: Vec::new(),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            public_url: None,
            metrics_public: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Environment variable that holds the token.
    pub env: String,
    /// Any of `read`, `write`, `ingest`.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Files or globs to follow, e.g. "/var/log/app/*.log". Rotated copies need not match.
    pub paths: Vec<String>,
    /// Globs of paths not to follow.
    pub exclude: Vec<String>,
    /// Where files found at startup without a saved position start: "end" or "beginning".
    /// Files that appear later are always read from their beginning.
    pub start_at: String,
    /// How often files are checked for new lines.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long an event waits for more traceback lines.
    #[serde(with = "humantime_serde")]
    pub multiline_wait: Duration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            paths: Vec::new(),
            exclude: Vec::new(),
            start_at: "end".to_owned(),
            poll_interval: Duration::from_millis(250),
            multiline_wait: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    pub enabled: bool,
    /// The journalctl to run.
    pub command: String,
    /// Only these units (all when empty).
    pub units: Vec<String>,
    /// Least severe priority read: emerg, alert, crit, err (default), warning, notice, info, debug.
    pub priority: String,
    /// With no saved cursor: "end" (new entries only) or "beginning".
    pub start_at: String,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            enabled: false,
            command: "journalctl".to_owned(),
            units: Vec::new(),
            priority: "err".to_owned(),
            start_at: "end".to_owned(),
        }
    }
}

/// How often the scheduled jobs of `faultline serve` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Records what the sources collected since the last run.
    #[serde(with = "humantime_serde")]
    pub collect: Duration,
    /// Errors per minute over the last 5 minutes: pass / degraded / fail.
    #[serde(with = "humantime_serde")]
    pub error_rate_check: Duration,
    /// New and trending patterns.
    #[serde(with = "humantime_serde")]
    pub pattern_detection: Duration,
    /// Deletes entries older than `retention.days`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            collect: Duration::from_secs(120),
            error_rate_check: Duration::from_secs(300),
            pattern_detection: Duration::from_secs(1800),
            retention: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` for PostgreSQL; `sqlite://PATH` or a plain path for SQLite.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "data/faultline.db".to_owned() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Lowest level stored: `ERROR` (default) or `WARNING`, `CRITICAL`. Lower lines are counted.
    pub min_level: String,
    /// Events per database transaction (`faultline ingest` commits the batches that wait for
    /// the store together, up to 30,000 events).
    pub batch_size: usize,
    /// Longest line kept, in bytes; longer lines are cut and counted.
    pub max_line_bytes: usize,
    /// Raw entries stored per pattern per minute; beyond it occurrences are only counted, so a
    /// loop logging 50,000 identical errors a second cannot fill the disk.
    pub max_stored_per_pattern_minute: u32,
    /// A record sent over HTTP dated further ahead of its arrival than this (or before 1970)
    /// is stored at its arrival time, its own time kept in metadata as `original_timestamp`.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            min_level: "ERROR".to_owned(),
            batch_size: 10_000,
            max_line_bytes: 64 * 1024,
            max_stored_per_pattern_minute: 1000,
            max_clock_skew: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Entries older than this many days are deleted by `cleanup`.
    pub days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { days: 90 }
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
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub ingest_quota_per_minute: Option<u32>,
    pub max_clock_skew: Duration,
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// `server.public_url` without a trailing slash.
    pub public_url: Option<String>,
    pub metrics_public: bool,
    pub tokens: Vec<Token>,
    pub files: FilesConfig,
    pub files_start_at_end: bool,
    pub journald: JournaldConfig,
    pub journald_max_priority: u8,
    pub journald_start_at_end: bool,
    pub schedule: ScheduleConfig,
    pub alerts: AlertsConfig,
    pub notifiers: Vec<Notifier>,
    /// Time allowed for one delivery attempt.
    pub notify_timeout: Duration,
    pub railway: RailwayConfig,
    /// Read from the environment only when targets are configured.
    pub railway_token: Option<faultline_connectors::railway::Token>,
    /// Why Railway cannot be crawled although targets are configured (no token in the
    /// environment): an error for the commands that crawl ([`Config::railway_ready`]), not for
    /// the others (`faultline ingest` run from cron without the service's token).
    pub railway_unready: Option<String>,
    /// Sentry project id → source name.
    pub sentry_projects: std::collections::BTreeMap<String, String>,
    /// What is scrubbed before storage, installed for the process by [`Config::install_scrub_rules`].
    pub scrub: faultline_core::scrub::Rules,
}

/// A configured API token, its secret read from the environment.
#[derive(Clone, Debug)]
pub struct Token {
    pub name: String,
    pub secret: SecretString,
    pub scopes: Vec<faultline_web::Scope>,
}

fn public_url(value: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let url = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host() && u.query().is_none())
        .with_context(|| {
            format!("invalid server.public_url {value:?}: use an http(s) address such as https://faultline.example.com")
        })?;
    Ok(Some(url.as_str().trim_end_matches('/').to_owned()))
}

fn start_at_end(key: &str, value: &str) -> anyhow::Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "end" => Ok(true),
        "beginning" | "start" => Ok(false),
        _ => bail!("invalid {key} {value:?}: use \"end\" or \"beginning\""),
    }
}

fn journal_priority(value: &str) -> anyhow::Result<u8> {
    let names = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
    let v = value.trim().to_ascii_lowercase();
    if let Ok(n) = v.parse::<u8>()
        && n <= 7
    {
        return Ok(n);
    }
    let v = match v.as_str() {
        "error" => "err",
        "critical" => "crit",
        "warn" => "warning",
        "emergency" => "emerg",
        other => other,
    };
    names.iter().position(|n| *n == v).map(|p| p as u8).with_context(|| {
        format!("invalid journald.priority {value:?}: use one of {} or 0-7", names.join(", "))
    })
}

fn read_tokens(
    tokens: &[TokenConfig],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Token>> {
    let mut out = Vec::new();
    for t in tokens {
        if t.name.trim().is_empty() {
            bail!("invalid server.tokens entry: name is empty");
        }
        let secret = lookup(&t.env).filter(|s| !s.trim().is_empty()).with_context(|| {
            format!("token {:?}: environment variable {} is not set or empty", t.name, t.env)
        })?;
        if secret.trim().len() < 16 {
            bail!("token {:?}: the secret in {} is shorter than 16 characters", t.name, t.env);
        }
        let scopes = t
            .scopes
            .iter()
            .map(|s| {
                faultline_web::Scope::parse(s).with_context(|| {
                    format!("token {:?}: unknown scope {s:?}: use read, write or ingest", t.name)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push(Token { name: t.name.clone(), secret: secret.trim().into(), scopes });
    }
    Ok(out)
}

impl Config {
    /// Whether the Railway targets can be crawled: the missing-token error otherwise (for the
    /// commands that use Railway: `serve`, `crawl`, `railway check`).
    pub fn railway_ready(&self) -> anyhow::Result<()> {
        match &self.railway_unready {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }

    /// Reads `file` (if given) and the environment, then validates.
    pub fn load(file: Option<&Path>, env: Env) -> anyhow::Result<Config> {
        Config::load_with_secrets(file, env, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the secrets (tokens, passwords named in the file) read through
    /// `secrets` instead of the process environment.
    pub fn load_with_secrets(
        file: Option<&Path>,
        env: Env,
        secrets: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
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
        Config::validate(raw, secrets)
    }

    fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let min_level =
            Level::parse(&raw.ingest.min_level).filter(|l| *l >= Level::Warning).with_context(|| {
                format!("invalid ingest.min_level {:?}: use WARNING, ERROR or CRITICAL", raw.ingest.min_level)
            })?;
        if raw.ingest.batch_size == 0 {
            bail!("invalid ingest.batch_size 0: must be at least 1");
        }
        let (railway_token, railway_unready) = match railway_token(&raw.railway, env)? {
            Ok(token) => (token, None),
            Err(missing) => (None, Some(missing)),
        };
        Ok(Config {
            database_url: raw.database.url,
            min_level,
            batch_size: raw.ingest.batch_size,
            max_line_bytes: raw.ingest.max_line_bytes.max(1024),
            max_stored_per_pattern_minute: raw.ingest.max_stored_per_pattern_minute,
            retention_days: raw.retention.days,
            listen: parse_listen(&raw.server.listen)?,
            max_body_bytes: raw.server.max_body_bytes.max(1024),
            ingest_quota_per_minute: Some(raw.server.ingest_quota_per_minute).filter(|q| *q > 0),
            max_clock_skew: raw.ingest.max_clock_skew,
            header_timeout: raw.server.header_timeout.max(Duration::from_millis(100)),
            max_connections: raw.server.max_connections.max(1),
            public_url: public_url(raw.server.public_url.as_deref())?,
            metrics_public: raw.server.metrics_public,
            tokens: read_tokens(&raw.server.tokens, env)?,
            files_start_at_end: start_at_end("files.start_at", &raw.files.start_at)?,
            files: raw.files,
            journald_max_priority: journal_priority(&raw.journald.priority)?,
            journald_start_at_end: start_at_end("journald.start_at", &raw.journald.start_at)?,
            journald: raw.journald,
            schedule: raw.schedule,
            notifiers: build_notifiers(&raw.notify, env)?,
            notify_timeout: raw.notify.timeout,
            railway_token,
            railway_unready,
            railway: raw.railway,
            alerts: raw.alerts,
            sentry_projects: sentry_projects(raw.sentry.projects)?,
            scrub: faultline_core::scrub::Rules::new(
                &raw.scrub.keys,
                &raw.scrub.safe_fields,
                &raw.scrub.patterns,
                raw.scrub.ip_addresses,
            )
            .map_err(|e| anyhow::anyhow!("scrub.patterns: {e}"))?,
        })
    }

    /// Makes this configuration's scrub rules the process's (once: the first call wins).
    pub fn install_scrub_rules(&self) {
        faultline_core::scrub::install(self.scrub.clone());
    }
}

fn sentry_projects(
    projects: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    for (id, name) in &projects {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("invalid sentry.projects key {id:?}: use the DSN's project id (letters, digits, -)");
        }
        if name.trim().is_empty() {
            bail!("invalid sentry.projects.{id}: the source name is empty");
        }
    }
    Ok(projects.into_iter().map(|(id, name)| (id, name.trim().to_owned())).collect())
}

/// Builds the configured notifiers, reading their secrets from the environment.
fn build_notifiers(n: &NotifyConfig, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Vec<Notifier>> {
    let secret = |what: &str, var: &str| {
        env(var)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("{what}: environment variable {var} is not set or empty"))
    };
    let client = notify::http_client(n.timeout);
    let mut out = Vec::new();
    if let Some(w) = &n.webhook {
        check_url("notify.webhook.url", &w.url)?;
        let secret = w.secret_env.as_deref().map(|v| secret("notify.webhook.secret_env", v)).transpose()?;
        out.push(Notifier::Webhook(notify::Webhook {
            url: w.url.clone(),
            secret: secret.map(SecretString::from),
            client: client.clone(),
        }));
    }
    if let Some(s) = &n.slack {
        let url = secret("notify.slack.url_env", &s.url_env)?;
        check_url("the Slack webhook URL", &url)?;
        out.push(Notifier::Slack(notify::Slack { url: url.into(), client: client.clone() }));
    }
    if let Some(g) = &n.github {
        if g.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
            bail!("invalid notify.github.repo {:?}: use owner/name", g.repo);
        }
        check_url("notify.github.api_url", &g.api_url)?;
        let token = secret("notify.github.token_env", &g.token_env)?;
        out.push(Notifier::GitHub(notify::GitHub {
            api_url: g.api_url.clone(),
            repo: g.repo.clone(),
            token: token.into(),
            client: client.clone(),
        }));
    }
    if let Some(e) = &n.email {
        let tls = match e.tls.to_ascii_lowercase().as_str() {
            "starttls" => notify::EmailTls::StartTls,
            "tls" => notify::EmailTls::Tls,
            "none" => notify::EmailTls::None,
            other => bail!("invalid notify.email.tls {other:?}: use starttls, tls or none"),
        };
        let mailbox = |key: &str, v: &str| {
            v.parse::<lettre::message::Mailbox>().with_context(|| format!("invalid {key} address {v:?}"))
        };
        let from = mailbox("notify.email.from", &e.from)?;
        let to = e.to.iter().map(|t| mailbox("notify.email.to", t)).collect::<anyhow::Result<Vec<_>>>()?;
        if to.is_empty() {
            bail!("notify.email.to is empty: name at least one recipient");
        }
        let credentials = match (&e.username, &e.password_env) {
            (Some(user), Some(var)) => Some((user.clone(), secret("notify.email.password_env", var)?)),
            (None, None) => None,
            _ => bail!("notify.email: give both username and password_env, or neither"),
        };
        let ca_pem = match &e.ca_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("notify.email.ca_file {}: cannot read it", path.display()))?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    bail!("notify.email.ca_file {}: no PEM certificate in it", path.display());
                }
                Some(pem)
            }
            None => None,
        };
        let email =
            notify::Email::new(&e.host, e.port, tls, ca_pem.as_deref(), credentials, from, to, n.timeout)
                .map_err(|e| anyhow::anyhow!("notify.email: {e}"))?;
        out.push(Notifier::Email(email));
    }
    Ok(out)
}

/// Checks the Railway settings and reads the token when there is something to crawl; a missing
/// token is reported apart (the inner error), for the commands that crawl.
fn railway_token(
    r: &RailwayConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Result<Option<faultline_connectors::railway::Token>, String>> {
    use faultline_connectors::railway::Token;
    if r.targets.is_empty() {
        return Ok(Ok(None));
    }
    check_url("railway.api_url", &r.api_url)?;
    if let Some(ws) = r.ws_url.as_ref().filter(|ws| !(ws.starts_with("ws://") || ws.starts_with("wss://"))) {
        bail!("invalid railway.ws_url {ws:?}: use a ws:// or wss:// address");
    }
    if !(1..=5000).contains(&r.page_size) {
        bail!("invalid railway.page_size {}: use 1 to 5000", r.page_size);
    }
    if r.api_url == faultline_connectors::railway::DEFAULT_API_URL
        && r.poll_interval < Duration::from_secs(30)
    {
        bail!("railway.poll_interval {:?} is below 30 s, too often for Railway's API", r.poll_interval);
    }
    for t in &r.targets {
        if t.project_id.trim().is_empty() || t.environment_id.trim().is_empty() {
            bail!("railway.targets: project_id and environment_id are required");
        }
    }
    let read = |name: &str| env(name).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(match (read("RAILWAY_API_TOKEN"), read("RAILWAY_TOKEN")) {
        (Some(t), _) => Ok(Some(Token::Account(t.into()))),
        (None, Some(t)) => Ok(Some(Token::Project(t.into()))),
        (None, None) => {
            Err("railway.targets are configured but neither RAILWAY_API_TOKEN (account or workspace \
             token) nor RAILWAY_TOKEN (project token) is set"
                .to_owned())
        }
    })
}

fn check_url(key: &str, url: &str) -> anyhow::Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
        _ => bail!("invalid {key}: expected an http(s) URL"),
    }
}

/// Reads a listen address such as `127.0.0.1:8080` or `[::1]:8080`.
pub fn parse_listen(value: &str) -> anyhow::Result<SocketAddr> {
    value.trim().parse().with_context(|| {
        format!("invalid listen address {value:?}: use IP:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    })
}

/// One line per problem, naming the key, what is wrong with it and where it came from: the
/// file and line for a config file, the variable for the environment.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let (problem, what) = match &e.kind {
                figment::error::Kind::UnknownField(_, expected) => {
                    ("unknown config key", format!("expected one of {}", expected.join(", ")))
                }
                other => ("bad config value for", other.to_string()),
            };
            let file = e.metadata.as_ref().and_then(|m| match &m.source {
                Some(figment::Source::File(path)) => Some(path.clone()),
                _ => None,
            });
            let from = match (&file, &e.metadata) {
                (Some(path), _) => {
                    let line = std::fs::read_to_string(path).ok().and_then(|text| line_of(&text, &e.path));
                    match line {
                        Some(n) => format!("{} line {n}", path.display()),
                        None => path.display().to_string(),
                    }
                }
                (None, Some(m)) => m.name.to_string(),
                (None, None) => String::new(),
            };
            match (key.is_empty(), from.is_empty()) {
                (true, true) => format!("bad config: {what}"),
                (true, false) => format!("bad config in {from}: {what}"),
                (false, true) => format!("{problem} {key}: {what}"),
                (false, false) => format!("{problem} {key} ({from}): {what}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The line of a TOML file where the key at `path` is (or the deepest table of it that is);
/// a number in the path picks a table of an array of tables (`[[railway.targets]]`).
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut span = None;
    let mut keys = path.iter();
    while let Some(key) = keys.next() {
        let Some((k, item)) = table.get_key_value(key) else { break };
        span = k.span().or_else(|| item.span()).or(span);
        if let Some(array) = item.as_array_of_tables() {
            let Some(element) = keys.next().and_then(|i| i.parse().ok()).and_then(|i: usize| array.get(i))
            else {
                break;
            };
            span = element.span().or(span);
            table = element;
            continue;
        }
        match item.as_table_like() {
            Some(inner) => table = inner,
            None => break,
        }
    }
    let at = span?.start;
    Some(text[..at].matches('\n').count() + 1)
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
    fn an_smtp_ca_file_is_read_and_a_missing_or_bad_one_named() {
        let base =
            "[notify.email]\nhost = \"localhost\"\nfrom = \"fl@example.com\"\nto = [\"ops@example.com\"]\n";
        let missing = load_toml(&format!("{base}ca_file = \"/no/such/ca.pem\"\n")).expect_err("missing file");
        assert!(format!("{missing:#}").contains("notify.email.ca_file /no/such/ca.pem"), "{missing:#}");
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not a certificate").expect("write");
        let refused = load_toml(&format!("{base}ca_file = \"{}\"\n", bad.display())).expect_err("bad PEM");
        assert!(format!("{refused:#}").contains("ca.pem: no PEM certificate in it"), "{refused:#}");
    }

    /// A config error names the key, says whether the key is unknown or its value wrong, and
    /// points at the file and line.
    #[test]
    fn config_errors_name_the_key_the_problem_and_the_line() {
        let cases = [
            (
                "# mine\n[ingest]\nbatch_size = 10\n\n[server]\nlisten = 5\n",
                "bad config value for server.listen (",
                " line 6): invalid type: found signed int `5`, expected a string",
            ),
            (
                "[server]\nlistn = \"127.0.0.1:1\"\n",
                "unknown config key server.listn (",
                " line 2): expected one of listen, ",
            ),
            (
                "[alerts]\n\ncooldown = \"soon\"\n",
                "bad config value for alerts.cooldown (",
                " line 3): invalid value string \"soon\", expected a duration",
            ),
            (
                "[[railway.targets]]\nenvironment_id = \"e\"\nproject = 7\n",
                "unknown config key railway.targets.0.project (",
                " line 3): expected one of project_id, ",
            ),
        ];
        for (text, starts, ends) in cases {
            let err = load_toml(text).expect_err(text).to_string();
            assert!(
                err.starts_with(starts) && err.contains("faultline.toml") && err.contains(ends),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn scrub_rules_and_sentry_projects_are_read_and_checked() {
        let c = load_toml(
            "[scrub]\nkeys = [\"iban\"]\nsafe_fields = [\"session_id\"]\npatterns = ['\\bACCT-\\d{6}\\b']\n\
             ip_addresses = true\n[sentry.projects]\n\"7\" = \" checkout \"\n",
        )
        .expect("valid");
        let clean = |t: &str| c.scrub.scrub_text(t).map_or_else(|| t.to_owned(), |(s, _)| s);
        assert_eq!(
            clean("iban=DE89 session_id=42 ACCT-123456 from 10.0.0.7"),
            "iban=[Filtered] session_id=42 [Filtered] from [Filtered]"
        );
        assert_eq!(c.sentry_projects.get("7").map(String::as_str), Some("checkout"));
        let err = load_toml("[scrub]\npatterns = [\"(\"]\n").unwrap_err().to_string();
        assert!(err.contains("scrub.patterns") && err.contains("\"(\""), "{err}");
        let err = load_toml("[sentry.projects]\n\"a/b\" = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("invalid sentry.projects key \"a/b\""), "{err}");
        let err = load_toml("[sentry.projects]\n\"7\" = \" \"\n").unwrap_err().to_string();
        assert!(err.contains("sentry.projects.7"), "{err}");
    }

    #[test]
    fn no_secret_shows_in_the_configs_debug_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("faultline.toml");
        let text = r#"
[[server.tokens]]
name = "ci"
env = "API_TOKEN"
scopes = ["ingest"]
[notify.webhook]
url = "https://hooks.example.com/x"
secret_env = "HOOK_SECRET"
[notify.slack]
url_env = "SLACK_URL"
[notify.github]
repo = "acme/shop"
token_env = "GITHUB_TOKEN"
[notify.email]
host = "smtp.example.com"
from = "faultline@example.com"
to = ["ops@example.com"]
username = "faultline"
password_env = "SMTP_PASSWORD"
[[railway.targets]]
project_id = "p-1"
environment_id = "env-1"
"#;
        std::fs::write(&path, text).expect("write");
        let secrets = [
            ("API_TOKEN", "api-token-secret-0001"),
            ("HOOK_SECRET", "hook-secret-0002"),
            ("SLACK_URL", "https://hooks.slack.com/services/T0/B0/slack-secret-0003"),
            ("GITHUB_TOKEN", "github-secret-0004"),
            ("SMTP_PASSWORD", "smtp-secret-0005"),
            ("RAILWAY_API_TOKEN", "railway-secret-0006"),
        ];
        let config = Config::load_with_secrets(Some(&path), Env::prefixed("FAULTLINE_TEST_NONE_"), &|name| {
            secrets.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        })
        .expect("valid config");
        assert_eq!(config.notifiers.len(), 4);
        let shown = format!("{config:?}");
        for (_, secret) in secrets {
            let part = secret.rsplit('/').next().unwrap_or(secret);
            assert!(!shown.contains(part), "{part} shows in {shown}");
        }
    }

    #[test]
    fn connection_limits_and_clock_skew_are_read_with_their_defaults() {
        let d = load_toml("").expect("defaults");
        assert_eq!(
            (d.header_timeout, d.max_connections, d.max_clock_skew),
            (Duration::from_secs(10), 512, Duration::from_secs(86_400))
        );
        let c = load_toml(
            "[server]\nheader_timeout = \"2s\"\nmax_connections = 16\n[ingest]\nmax_clock_skew = \"10m\"\n",
        )
        .expect("valid");
        assert_eq!(
            (c.header_timeout, c.max_connections, c.max_clock_skew),
            (Duration::from_secs(2), 16, Duration::from_secs(600))
        );
        let err = load_toml("[server]\nheader_timeout = \"soon\"\n").expect_err("not a duration");
        assert!(format!("{err:#}").contains("header_timeout"), "{err:#}");
    }

    #[test]
    fn alerting_across_instances_is_read_with_its_defaults() {
        let d = load_toml("").expect("defaults");
        assert_eq!(
            (
                &d.public_url,
                d.alerts.digest_after,
                d.alerts.sustained_max_gap_minutes,
                d.railway.requests_per_second
            ),
            (&None, Duration::from_secs(600), 1, 10)
        );
        let c = load_toml(
            "[server]\npublic_url = \"https://faultline.example.com/ops/\"\nmetrics_public = true\n[alerts]\ndigest_after = \"2m\"\n\
             sustained_max_gap_minutes = 3\n[railway]\nrequests_per_second = 50\n",
        )
        .expect("valid");
        assert_eq!(
            (c.public_url.as_deref(), c.alerts.digest_after, c.alerts.sustained_max_gap_minutes),
            (Some("https://faultline.example.com/ops"), Duration::from_secs(120), 3)
        );
        assert_eq!((c.railway.requests_per_second, c.metrics_public, d.metrics_public), (50, true, false));
        for bad in ["faultline.example.com", "ftp://x.example.com", "https://x.example.com/?a=1"] {
            let err = load_toml(&format!("[server]\npublic_url = \"{bad}\"\n")).expect_err(bad);
            assert!(format!("{err:#}").contains("invalid server.public_url"), "{err:#}");
        }
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
    fn tokens_come_from_the_environment_and_are_checked() {
        let tokens =
            vec![TokenConfig { name: "ci".into(), env: "CI_TOKEN".into(), scopes: vec!["ingest".into()] }];
        let env = |name: &str| (name == "CI_TOKEN").then(|| "0123456789abcdef-secret".to_owned());
        let read = read_tokens(&tokens, &env).expect("valid");
        assert_eq!(
            (read[0].name.as_str(), read[0].scopes.as_slice()),
            ("ci", &[faultline_web::Scope::Ingest][..])
        );
        assert!(!format!("{read:?}").contains("0123456789abcdef"), "Debug never shows the secret");
        let err = read_tokens(&tokens, &|_| None).unwrap_err().to_string();
        assert_eq!(err, "token \"ci\": environment variable CI_TOKEN is not set or empty");
        let short = read_tokens(&tokens, &|_| Some("short".into())).unwrap_err().to_string();
        assert_eq!(short, "token \"ci\": the secret in CI_TOKEN is shorter than 16 characters");
        let bad = vec![TokenConfig { scopes: vec!["admin".into()], ..tokens[0].clone() }];
        let err = read_tokens(&bad, &env).unwrap_err().to_string();
        assert_eq!(err, "token \"ci\": unknown scope \"admin\": use read, write or ingest");
    }

    #[test]
    fn serve_settings_are_validated() {
        let c = load_toml("[files]\npaths = [\"/var/log/*.log\"]\npoll_interval = \"250ms\"\n[schedule]\nretention = \"12h\"\n")
            .expect("valid");
        assert_eq!(c.files.poll_interval, Duration::from_millis(250));
        assert_eq!(c.schedule.retention, Duration::from_secs(43_200));
        assert_eq!((c.listen.to_string().as_str(), c.files_start_at_end), ("127.0.0.1:8080", true));
        let err = load_toml("[server]\nlisten = \"localhost\"\n").unwrap_err().to_string();
        assert!(err.starts_with("invalid listen address \"localhost\""), "{err}");
        let err = load_toml("[files]\nstart_at = \"middle\"\n").unwrap_err().to_string();
        assert_eq!(err, "invalid files.start_at \"middle\": use \"end\" or \"beginning\"");
        assert_eq!(
            load_toml("[journald]\npriority = \"warning\"\n").expect("valid").journald_max_priority,
            4
        );
        let err = load_toml("[schedule]\ncollect = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("schedule.collect"), "{err}");
    }

    #[test]
    fn notifiers_read_their_secrets_from_the_environment() {
        let c = load_toml("[notify.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n").expect("valid");
        assert_eq!((c.notifiers.len(), c.notify_timeout), (1, Duration::from_secs(10)));
        let err =
            load_toml("[notify.slack]\nurl_env = \"FAULTLINE_TEST_NO_SUCH_VAR\"\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "notify.slack.url_env: environment variable FAULTLINE_TEST_NO_SUCH_VAR is not set or empty"
        );
        let err = load_toml("[notify.github]\nrepo = \"shop\"\ntoken_env = \"X\"\n").unwrap_err().to_string();
        assert_eq!(err, "invalid notify.github.repo \"shop\": use owner/name");
        let err = load_toml("[notify.webhook]\nurl = \"ftp://x\"\n").unwrap_err().to_string();
        assert_eq!(err, "invalid notify.webhook.url: expected an http(s) URL");
        let email =
            "[notify.email]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"fl@example.com\"\nto = []\n";
        assert_eq!(
            load_toml(email).unwrap_err().to_string(),
            "notify.email.to is empty: name at least one recipient"
        );
        let c = load_toml("[alerts]\ncooldown = \"10m\"\nspike_per_minute = 50\n").expect("valid");
        assert_eq!(
            (c.alerts.cooldown, c.alerts.spike_per_minute, c.alerts.enabled),
            (Duration::from_secs(600), 50, true)
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
