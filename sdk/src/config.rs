//! Configuration: `owlclaw.yaml`, `OWLCLAW_*` environment variables, and defaults.
//!
//! A [`Config`] says how a program reaches the engine (embedded in the process — **lite** — or a
//! remote `owlclaw serve` — **server**) and how its workers behave. It is read from, in increasing
//! order of precedence:
//!
//! 1. the defaults below ([`Config::default`], the same as [`Config::lite`]);
//! 2. a YAML file ([`Config::from_file`], [`Config::from_yaml_str`]), see `owlclaw.yaml.example` at
//!    the root of the repository for a commented example;
//! 3. `OWLCLAW_*` environment variables, which win over the file ([`Config::from_env`] reads only
//!    defaults and the environment).
//!
//! Every value is checked when it is read ([`Config::validate`]); an error is an
//! [`Error::Config`] whose `field` is the YAML path of the setting (`worker.slots`) or the
//! environment variable it came from (`OWLCLAW_WORKER_SLOTS`), and whose message quotes the bad
//! value (except secrets):
//!
//! ```text
//! invalid configuration: worker.slots: invalid value "0": a worker needs at least 1 slot (1 to 10000)
//! invalid configuration: mode: unknown mode "sevrer"; expected lite or server
//! ```
//!
//! # Reference
//!
//! | YAML key | environment variable | default | meaning |
//! |---|---|---|---|
//! | `mode` | `OWLCLAW_MODE` | `lite` | `lite`: the engine runs inside the process on `database_url`. `server`: the program talks over HTTP to an `owlclaw serve` engine at `server_url`. |
//! | `server_url` | `OWLCLAW_SERVER_URL` | none | Base URL of the engine server, `http(s)://host[:port][/path]`, or several separated by commas (engine replicas on one database: the client fails over to the next when one can't be reached). Required when `mode` is `server`. No credentials, query or fragment: the token goes in `api_token`. |
//! | `api_token` | `OWLCLAW_API_TOKEN` | none | Bearer token sent to the engine server (server mode). Never printed: `Debug` and `Display` show `***`, errors never quote it. |
//! | `namespace` | `OWLCLAW_NAMESPACE` | none | Prefix of every task name, so that several applications can share one engine. Letters, digits, `-`, `_` and `.`, at most 64 characters. |
//! | `database_url` | `OWLCLAW_DATABASE_URL` | `sqlite://.owlclaw/owlclaw.db` | Store of the embedded engine (lite mode): `sqlite:PATH`, `sqlite://PATH`, `sqlite::memory:`; `postgres://` and `postgresql://` URLs are accepted here for the PostgreSQL store. Passwords are redacted when printed. |
//! | `retention` | `OWLCLAW_RETENTION` | `7d` | How long finished runs (succeeded, failed, cancelled) are kept before they are purged. Greater than zero. |
//! | `worker.slots` | `OWLCLAW_WORKER_SLOTS` | `10` | How many runs one worker executes at the same time. From 1 to 10000. |
//! | `worker.shutdown_grace` | `OWLCLAW_WORKER_SHUTDOWN_GRACE` | `30s` | On shutdown, how long a worker waits for in-flight runs to finish before it gives them up (they are retried elsewhere). `0s` gives them up at once. |
//! | `worker.heartbeat` | `OWLCLAW_WORKER_HEARTBEAT` | `1s` | How often a worker tells the engine it is alive. Greater than zero. |
//! | `worker.suspend_threshold` | `OWLCLAW_WORKER_SUSPEND_THRESHOLD` | `30s` | Durable sleeps (`ctx.sleep_for`) longer than this suspend their run and free the worker slot until the wake-up time; shorter ones sleep in place. |
//! | `tls.ca_file` | `OWLCLAW_TLS_CA_FILE` | none | A PEM file of CA certificates trusted, beside the system's and the bundled web roots, for `https://` server URLs (an engine with a private CA or a self-signed certificate). Must exist. |
//! | `worker.lease` | `OWLCLAW_WORKER_LEASE` | `15s` | How long the engine waits without a heartbeat before it declares a worker dead and hands its runs to another. Must be more than twice `worker.heartbeat`. |
//!
//! Durations are written as one or more `<number><unit>` parts with units `ms`, `s`, `m`, `h`,
//! `d`: `500ms`, `30s`, `1m30s`, `7d`. A number without a unit (`30`) is refused, quoted or not,
//! so that it is never silently read as seconds or as milliseconds.
//!
//! Other `OWLCLAW_*` variables are ignored (other tools may use the prefix). An environment
//! variable set to the empty string counts as unset, and so does an empty YAML value
//! (`namespace:`, `namespace: ""`): the setting keeps its default.
//!
//! Unknown YAML keys are errors naming the key (`worker.sloots: unknown field "sloots"; expected
//! one of slots, shutdown_grace, heartbeat, lease, suspend_threshold (did you mean "slots"?)`).
//!
//! # Substitution
//!
//! Before the YAML is parsed, `${VAR}` is replaced by the value of the environment variable
//! `VAR`, and `${VAR:-default}` by its value or, when it is unset or empty, by `default`.
//! `$${` writes a literal `${`. An unset `${VAR}` without a default is an error naming the
//! variable and the line. Substitution is not recursive: a substituted value is never scanned
//! again, and a default may not contain `${`.
//!
//! Substitution happens in the text, so a value substituted outside quotes is read as YAML
//! (`slots: ${SLOTS:-10}` is a number). Inside a quoted scalar (`"${VAR}"`, `'${VAR}'`) the value is
//! escaped so that it is taken literally whatever characters it holds: quote references to
//! secrets and URLs. YAML comments are left alone, so a commented-out line may mention a variable
//! that is not set.
//!
//! ```
//! use owlclaw::{Config, Mode};
//! use std::collections::HashMap;
//! use std::time::Duration;
//!
//! let env = HashMap::from([("OWLCLAW_TOKEN", "s3cret"), ("OWLCLAW_WORKER_SLOTS", "32")]);
//! let config = Config::from_yaml_str_with_env(
//!     r#"
//! mode: server
//! server_url: "${OWLCLAW_URL:-http://localhost:7070}"
//! api_token: "${OWLCLAW_TOKEN}"
//! worker:
//!   slots: 8          # OWLCLAW_WORKER_SLOTS wins
//!   heartbeat: 2s
//!   lease: 10s
//! "#,
//!     &|name| env.get(name).map(|v| v.to_string()),
//! )?;
//! assert_eq!(config.mode, Mode::Server);
//! assert_eq!(config.server_url.as_deref(), Some("http://localhost:7070"));
//! assert_eq!(config.api_token.as_ref().unwrap().expose(), "s3cret");
//! assert_eq!(config.worker.slots, 32);
//! assert_eq!(config.worker.lease, Duration::from_secs(10));
//! assert!(!format!("{config:?}").contains("s3cret"));
//! # Ok::<(), owlclaw_core::Error>(())
//! ```

use owlclaw_core::duration::{format_duration, parse_duration};
use owlclaw_core::{Error, Result};
use serde_yaml_ng::Value;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Default of [`Config::database_url`].
const DEFAULT_DATABASE_URL: &str = "sqlite://.owlclaw/owlclaw.db";
/// Default of [`Config::retention`]: 7 days.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default of [`WorkerConfig::slots`].
const DEFAULT_SLOTS: u32 = 10;
/// Largest accepted [`WorkerConfig::slots`].
const MAX_SLOTS: u32 = 10_000;
/// Default of [`WorkerConfig::shutdown_grace`].
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default of [`WorkerConfig::heartbeat`].
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default of [`WorkerConfig::lease`].
const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// Default of [`WorkerConfig::suspend_threshold`].
const DEFAULT_SUSPEND_THRESHOLD: Duration = Duration::from_secs(30);
/// Longest accepted [`Config::namespace`].
const MAX_NAMESPACE_LEN: usize = 64;

/// How a program reaches the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The engine runs inside the process, on [`Config::database_url`]. The default: no
    /// infrastructure to run.
    #[default]
    Lite,
    /// The program talks over HTTP to an `owlclaw serve` engine at [`Config::server_url`],
    /// authenticated by [`Config::api_token`].
    Server,
}

impl Mode {
    /// The name used in YAML and in `OWLCLAW_MODE`: `"lite"` or `"server"`.
    ///
    /// ```
    /// assert_eq!(owlclaw::Mode::Server.as_str(), "server");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Lite => "lite",
            Mode::Server => "server",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;

    /// Reads `lite` or `server` (ASCII case and surrounding spaces are ignored). The error is an
    /// [`Error::Config`] on the field `mode` that quotes the value.
    ///
    /// ```
    /// use owlclaw::Mode;
    /// assert_eq!("server".parse::<Mode>().unwrap(), Mode::Server);
    /// assert!("sevrer".parse::<Mode>().unwrap_err().to_string().contains(r#""sevrer""#));
    /// ```
    fn from_str(s: &str) -> Result<Mode> {
        parse_mode(s).map_err(|message| Error::config("mode", message))
    }
}

/// A secret string, such as an API token: `Debug` and `Display` print `***`.
///
/// The value is only reachable through [`Secret::expose`], so that it does not end up in logs
/// by accident.
///
/// ```
/// use owlclaw::config::Secret;
/// let token = Secret::new("s3cret");
/// assert_eq!(token.expose(), "s3cret");
/// assert_eq!(format!("{token} {token:?}"), "*** ***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// Everything a program needs to reach the engine and run workers. See the
/// [module documentation](self) for every field's YAML key, environment variable and default.
///
/// `Debug` redacts secrets: the API token prints as `***` and a password in `database_url` as
/// `postgres://user:***@host/db`.
///
/// ```
/// use owlclaw::{Config, Mode};
/// let mut config = Config::lite();
/// config.namespace = Some("billing".into());
/// config.worker.slots = 4;
/// config.validate()?;
/// assert_eq!(config.mode, Mode::Lite);
/// # Ok::<(), owlclaw_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Lite (embedded engine) or server (HTTP). YAML `mode`, env `OWLCLAW_MODE`, default `lite`.
    pub mode: Mode,
    /// Base URL of the engine server, `http(s)://host[:port][/path]`; required in server mode.
    /// YAML `server_url`, env `OWLCLAW_SERVER_URL`, no default.
    pub server_url: Option<String>,
    /// Token sent to the engine server. YAML `api_token`, env `OWLCLAW_API_TOKEN`, no default.
    pub api_token: Option<Secret>,
    /// Prefix of task names: letters, digits, `-`, `_`, `.`, at most 64 characters.
    /// YAML `namespace`, env `OWLCLAW_NAMESPACE`, no default.
    pub namespace: Option<String>,
    /// Store of the embedded engine (lite mode): `sqlite:...`, `postgres://...` or
    /// `postgresql://...`. YAML `database_url`, env `OWLCLAW_DATABASE_URL`, default
    /// `sqlite://.owlclaw/owlclaw.db`.
    pub database_url: String,
    /// How workers run. YAML `worker:` map.
    pub worker: WorkerConfig,
    /// How long finished runs are kept. YAML `retention`, env `OWLCLAW_RETENTION`, default `7d`;
    /// greater than zero.
    pub retention: Duration,
    /// A PEM file of CA certificates to trust for `https://` server URLs, beside the system's and
    /// the bundled web roots. YAML `tls.ca_file`, env `OWLCLAW_TLS_CA_FILE`, no default.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// How workers run: concurrency, shutdown and liveness. The YAML `worker:` map.
///
/// ```
/// use owlclaw::WorkerConfig;
/// use std::time::Duration;
/// let worker = WorkerConfig::default();
/// assert_eq!(worker.slots, 10);
/// assert_eq!(worker.lease, Duration::from_secs(15));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Runs executed at the same time by one worker, 1 to 10000. YAML `worker.slots`, env
    /// `OWLCLAW_WORKER_SLOTS`, default 10.
    pub slots: u32,
    /// How long a shutting-down worker waits for in-flight runs. YAML `worker.shutdown_grace`,
    /// env `OWLCLAW_WORKER_SHUTDOWN_GRACE`, default 30 s.
    pub shutdown_grace: Duration,
    /// Interval of the worker's heartbeats, greater than zero. YAML `worker.heartbeat`, env
    /// `OWLCLAW_WORKER_HEARTBEAT`, default 1 s.
    pub heartbeat: Duration,
    /// Silence after which a worker is declared dead and its runs handed to another; more than
    /// twice `heartbeat`. YAML `worker.lease`, env `OWLCLAW_WORKER_LEASE`, default 15 s.
    pub lease: Duration,
    /// Durable sleeps longer than this suspend their run and free the worker slot; shorter ones
    /// sleep in place. YAML `worker.suspend_threshold`, env `OWLCLAW_WORKER_SUSPEND_THRESHOLD`,
    /// default 30 s.
    pub suspend_threshold: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            slots: DEFAULT_SLOTS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            heartbeat: DEFAULT_HEARTBEAT,
            lease: DEFAULT_LEASE,
            suspend_threshold: DEFAULT_SUSPEND_THRESHOLD,
        }
    }
}

impl Default for Config {
    /// Lite mode on `sqlite://.owlclaw/owlclaw.db`, every other setting at its default.
    fn default() -> Config {
        Config {
            mode: Mode::Lite,
            server_url: None,
            api_token: None,
            namespace: None,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            worker: WorkerConfig::default(),
            retention: DEFAULT_RETENTION,
            tls_ca_file: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("server_url", &self.server_url.as_deref().map(redact_url))
            .field("api_token", &self.api_token)
            .field("namespace", &self.namespace)
            .field("database_url", &redact_url(&self.database_url))
            .field("worker", &self.worker)
            .field("retention", &self.retention)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl Config {
    /// Lite mode with every default: the same as [`Config::default`].
    ///
    /// ```
    /// assert_eq!(owlclaw::Config::lite(), owlclaw::Config::default());
    /// ```
    pub fn lite() -> Config {
        Config::default()
    }

    /// Lite mode on an in-memory SQLite database (`sqlite::memory:`): nothing is written to disk
    /// and every run is lost when the process ends. Meant for tests.
    ///
    /// ```
    /// assert_eq!(owlclaw::Config::lite_in_memory().database_url, "sqlite::memory:");
    /// ```
    pub fn lite_in_memory() -> Config {
        Config {
            database_url: "sqlite::memory:".to_owned(),
            ..Config::default()
        }
    }

    /// Reads a YAML configuration file, then applies `${VAR}` substitution and `OWLCLAW_*`
    /// overrides from the process environment.
    ///
    /// An unreadable file is an [`Error::Config`] on the field `config_file` whose message has the
    /// path and the I/O error.
    ///
    /// ```no_run
    /// let config = owlclaw::Config::from_file("owlclaw.yaml")?;
    /// # Ok::<(), owlclaw_core::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::config(
                "config_file",
                format!("cannot read {:?}: {err}", path.display().to_string()),
            )
        })?;
        Config::from_yaml_str(&text)
    }

    /// Reads YAML text, then applies `${VAR}` substitution and `OWLCLAW_*` overrides from the
    /// process environment. See [`Config::from_yaml_str_with_env`].
    ///
    /// ```no_run
    /// let config = owlclaw::Config::from_yaml_str("mode: lite\nworker:\n  slots: 4\n")?;
    /// # Ok::<(), owlclaw_core::Error>(())
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Config> {
        Config::from_yaml_str_with_env(yaml, &process_env)
    }

    /// Defaults overridden by the `OWLCLAW_*` variables of the process environment; no file.
    ///
    /// ```no_run
    /// let config = owlclaw::Config::from_env()?;
    /// # Ok::<(), owlclaw_core::Error>(())
    /// ```
    pub fn from_env() -> Result<Config> {
        Config::from_env_with(&process_env)
    }

    /// Reads YAML text with the environment given as a function (`None` for an unset
    /// variable): `${VAR}` and `${VAR:-default}` are substituted from `env`, the YAML is parsed
    /// over the defaults, then the `OWLCLAW_*` variables of `env` override it, and the result is
    /// [validated](Config::validate).
    ///
    /// An empty or comment-only document gives the defaults.
    ///
    /// ```
    /// use owlclaw::Config;
    /// let env = |name: &str| (name == "SLOTS").then(|| "12".to_string());
    /// let config = Config::from_yaml_str_with_env("worker:\n  slots: ${SLOTS}\n", &env)?;
    /// assert_eq!(config.worker.slots, 12);
    ///
    /// let err = Config::from_yaml_str_with_env("worker:\n  sloots: 3\n", &|_| None).unwrap_err();
    /// assert!(err.to_string().contains("worker.sloots"));
    /// # Ok::<(), owlclaw_core::Error>(())
    /// ```
    pub fn from_yaml_str_with_env(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let text = substitute(yaml, env)?;
        let document: Value = serde_yaml_ng::from_str(&text)
            .map_err(|err| Error::config("yaml", format!("not valid YAML: {err}")))?;
        let mut settings = Settings::default();
        settings.read_yaml(&document)?;
        settings.read_env(env)?;
        settings.build()
    }

    /// Defaults overridden by the `OWLCLAW_*` variables of `env` (`None` for an unset variable).
    ///
    /// ```
    /// use owlclaw::{Config, Mode};
    /// let env = |name: &str| match name {
    ///     "OWLCLAW_MODE" => Some("server".to_string()),
    ///     "OWLCLAW_SERVER_URL" => Some("https://owlclaw.example.com".to_string()),
    ///     _ => None,
    /// };
    /// let config = Config::from_env_with(&env)?;
    /// assert_eq!(config.mode, Mode::Server);
    ///
    /// let err = Config::from_env_with(&|name| {
    ///     (name == "OWLCLAW_WORKER_SLOTS").then(|| "many".to_string())
    /// })
    /// .unwrap_err();
    /// assert!(err.to_string().contains(r#"OWLCLAW_WORKER_SLOTS: invalid value "many""#));
    /// # Ok::<(), owlclaw_core::Error>(())
    /// ```
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut settings = Settings::default();
        settings.read_env(env)?;
        settings.build()
    }

    /// Checks every field and their combinations: `server_url` is given in server mode and is an
    /// `http(s)://host[:port][/path]` URL, the namespace's characters and length, the
    /// `database_url` scheme, `worker.slots` from 1 to 10000, `worker.heartbeat` and `retention`
    /// greater than zero, `worker.lease` more than twice `worker.heartbeat`. The constructors
    /// call it; call it again after changing fields by hand.
    ///
    /// ```
    /// use owlclaw::{Config, Mode};
    /// let mut config = Config::lite();
    /// config.mode = Mode::Server;
    /// let err = config.validate().unwrap_err();
    /// assert!(err.to_string().contains("server_url"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.server_url {
            check_server_url(url).map_err(|m| Error::config("server_url", m))?;
        }
        if let Some(token) = &self.api_token {
            check_api_token(token.expose()).map_err(|m| Error::config("api_token", m))?;
        }
        if let Some(namespace) = &self.namespace {
            check_namespace(namespace).map_err(|m| Error::config("namespace", m))?;
        }
        check_database_url(&self.database_url).map_err(|m| Error::config("database_url", m))?;
        check_positive(self.retention).map_err(|m| Error::config("retention", m))?;
        check_slots(self.worker.slots).map_err(|m| Error::config("worker.slots", m))?;
        check_positive(self.worker.heartbeat).map_err(|m| Error::config("worker.heartbeat", m))?;
        if let Some(path) = &self.tls_ca_file {
            check_ca_file(path).map_err(|m| Error::config("tls.ca_file", m))?;
        }
        if self.mode == Mode::Server && self.server_url.is_none() {
            return Err(Error::config(
                "server_url",
                "missing: required when mode is \"server\" (set server_url or OWLCLAW_SERVER_URL)",
            ));
        }
        let heartbeat = self.worker.heartbeat;
        let lease = self.worker.lease;
        if lease <= heartbeat.saturating_mul(2) {
            return Err(Error::config(
                "worker.lease",
                format!(
                    "lease {:?} must be more than twice the heartbeat {:?}, i.e. more than {}, \
                     so that one late heartbeat does not declare a worker dead",
                    format_duration(lease),
                    format_duration(heartbeat),
                    format_duration(heartbeat.saturating_mul(2)),
                ),
            ));
        }
        Ok(())
    }
}

pub use owlclaw_core::redact_url;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

// ---------------------------------------------------------------------------------------------
// Reading: every setting, its YAML path and its environment variable.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Mode,
    ServerUrl,
    ApiToken,
    Namespace,
    DatabaseUrl,
    Retention,
    Slots,
    ShutdownGrace,
    Heartbeat,
    Lease,
    SuspendThreshold,
    TlsCaFile,
}

/// (key, YAML path, environment variable).
const KEYS: [(Key, &str, &str); 12] = [
    (Key::Mode, "mode", "OWLCLAW_MODE"),
    (Key::ServerUrl, "server_url", "OWLCLAW_SERVER_URL"),
    (Key::ApiToken, "api_token", "OWLCLAW_API_TOKEN"),
    (Key::Namespace, "namespace", "OWLCLAW_NAMESPACE"),
    (Key::DatabaseUrl, "database_url", "OWLCLAW_DATABASE_URL"),
    (Key::Retention, "retention", "OWLCLAW_RETENTION"),
    (Key::Slots, "worker.slots", "OWLCLAW_WORKER_SLOTS"),
    (
        Key::ShutdownGrace,
        "worker.shutdown_grace",
        "OWLCLAW_WORKER_SHUTDOWN_GRACE",
    ),
    (
        Key::Heartbeat,
        "worker.heartbeat",
        "OWLCLAW_WORKER_HEARTBEAT",
    ),
    (Key::Lease, "worker.lease", "OWLCLAW_WORKER_LEASE"),
    (
        Key::SuspendThreshold,
        "worker.suspend_threshold",
        "OWLCLAW_WORKER_SUSPEND_THRESHOLD",
    ),
    (Key::TlsCaFile, "tls.ca_file", "OWLCLAW_TLS_CA_FILE"),
];

const TOP_LEVEL_KEYS: &[&str] = &[
    "mode",
    "server_url",
    "api_token",
    "namespace",
    "database_url",
    "retention",
    "worker",
    "tls",
];
const WORKER_KEYS: &[&str] = &[
    "slots",
    "shutdown_grace",
    "heartbeat",
    "lease",
    "suspend_threshold",
];
const TLS_KEYS: &[&str] = &["ca_file"];

/// The settings read so far; `None` keeps the default. Each value is parsed and checked on its
/// own when it is read, so that an error names where it came from (YAML path or variable).
#[derive(Default)]
struct Settings {
    mode: Option<Mode>,
    server_url: Option<String>,
    api_token: Option<Secret>,
    namespace: Option<String>,
    database_url: Option<String>,
    retention: Option<Duration>,
    slots: Option<u32>,
    shutdown_grace: Option<Duration>,
    heartbeat: Option<Duration>,
    lease: Option<Duration>,
    suspend_threshold: Option<Duration>,
    tls_ca_file: Option<std::path::PathBuf>,
}

impl Settings {
    fn read_yaml(&mut self, document: &Value) -> Result<()> {
        let top = match document {
            Value::Null => return Ok(()),
            Value::Mapping(map) => map,
            other => {
                return Err(Error::config(
                    "yaml",
                    format!(
                        "invalid type: {}, expected a mapping of settings",
                        describe(other)
                    ),
                ))
            }
        };
        for (name, value) in top {
            let name = key_name(name);
            let section = match name.as_str() {
                "worker" => Some(WORKER_KEYS),
                "tls" => Some(TLS_KEYS),
                _ => None,
            };
            if let Some(keys) = section {
                match value {
                    Value::Null => {}
                    Value::Mapping(map) => {
                        for (key, value) in map {
                            let path = format!("{name}.{}", key_name(key));
                            self.read_yaml_value(&path, value, keys, &format!("{name}."))?;
                        }
                    }
                    other => {
                        return Err(Error::config(
                            name.as_str(),
                            format!(
                                "invalid type: {}, expected a mapping with {}",
                                describe(other),
                                keys.join(", ")
                            ),
                        ))
                    }
                }
            } else {
                self.read_yaml_value(&name, value, TOP_LEVEL_KEYS, "")?;
            }
        }
        Ok(())
    }

    fn read_yaml_value(
        &mut self,
        path: &str,
        value: &Value,
        siblings: &[&str],
        prefix: &str,
    ) -> Result<()> {
        let name = path.strip_prefix(prefix).unwrap_or(path);
        let known = siblings.contains(&name);
        let Some(&(key, _, _)) = KEYS.iter().find(|(_, p, _)| known && *p == path) else {
            return Err(unknown_key(path, siblings, prefix));
        };
        let text = match value {
            Value::Null => return Ok(()),
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                let expected = match key {
                    Key::Slots => "a whole number",
                    Key::Retention
                    | Key::ShutdownGrace
                    | Key::Heartbeat
                    | Key::Lease
                    | Key::SuspendThreshold => "a duration such as \"30s\"",
                    _ => "a string",
                };
                return Err(Error::config(
                    path,
                    format!("invalid type: {}, expected {expected}", describe(other)),
                ));
            }
        };
        self.set(key, path, &text)
    }

    fn read_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        for (key, _, var) in KEYS {
            if let Some(value) = env(var) {
                self.set(key, var, &value)?;
            }
        }
        Ok(())
    }

    /// Parses and checks one value; `field` is its YAML path or environment variable. An empty
    /// value leaves the setting as it was.
    fn set(&mut self, key: Key, field: &str, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let err = |message: String| Error::config(field, message);
        match key {
            Key::Mode => self.mode = Some(parse_mode(text).map_err(err)?),
            Key::ServerUrl => {
                check_server_url(text).map_err(err)?;
                self.server_url = Some(text.to_owned());
            }
            Key::ApiToken => {
                check_api_token(text).map_err(err)?;
                self.api_token = Some(Secret::new(text));
            }
            Key::Namespace => {
                check_namespace(text).map_err(err)?;
                self.namespace = Some(text.to_owned());
            }
            Key::DatabaseUrl => {
                check_database_url(text).map_err(err)?;
                self.database_url = Some(text.to_owned());
            }
            Key::Retention => {
                let d = parse_duration(text).map_err(err)?;
                check_positive(d).map_err(err)?;
                self.retention = Some(d);
            }
            Key::Slots => {
                let slots = text.trim().parse::<u32>().map_err(|_| {
                    err(format!(
                        "invalid value {text:?}: expected a whole number of slots from 1 to {MAX_SLOTS}"
                    ))
                })?;
                check_slots(slots).map_err(err)?;
                self.slots = Some(slots);
            }
            Key::ShutdownGrace => self.shutdown_grace = Some(parse_duration(text).map_err(err)?),
            Key::Heartbeat => {
                let d = parse_duration(text).map_err(err)?;
                check_positive(d).map_err(err)?;
                self.heartbeat = Some(d);
            }
            Key::Lease => self.lease = Some(parse_duration(text).map_err(err)?),
            Key::SuspendThreshold => {
                self.suspend_threshold = Some(parse_duration(text).map_err(err)?)
            }
            Key::TlsCaFile => {
                let path = std::path::PathBuf::from(text);
                check_ca_file(&path).map_err(err)?;
                self.tls_ca_file = Some(path);
            }
        }
        Ok(())
    }

    fn build(self) -> Result<Config> {
        let defaults = Config::default();
        let config = Config {
            mode: self.mode.unwrap_or(defaults.mode),
            server_url: self.server_url,
            api_token: self.api_token,
            namespace: self.namespace,
            database_url: self.database_url.unwrap_or(defaults.database_url),
            worker: WorkerConfig {
                slots: self.slots.unwrap_or(defaults.worker.slots),
                shutdown_grace: self
                    .shutdown_grace
                    .unwrap_or(defaults.worker.shutdown_grace),
                heartbeat: self.heartbeat.unwrap_or(defaults.worker.heartbeat),
                lease: self.lease.unwrap_or(defaults.worker.lease),
                suspend_threshold: self
                    .suspend_threshold
                    .unwrap_or(defaults.worker.suspend_threshold),
            },
            retention: self.retention.unwrap_or(defaults.retention),
            tls_ca_file: self.tls_ca_file,
        };
        config.validate()?;
        Ok(config)
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        other => describe(other),
    }
}

fn unknown_key(path: &str, siblings: &[&str], prefix: &str) -> Error {
    let name = path.strip_prefix(prefix).unwrap_or(path);
    let mut message = format!(
        "unknown field {name:?}; expected one of {}",
        siblings.join(", ")
    );
    let suggestion = siblings
        .iter()
        .map(|s| (*s, edit_distance(name, s)))
        .filter(|(_, d)| *d <= 2)
        .min_by_key(|(_, d)| *d)
        .map(|(s, _)| format!("{prefix}{s}"))
        .or_else(|| {
            // `slots:` written at the top level instead of under `worker:`.
            (prefix.is_empty() && WORKER_KEYS.contains(&name)).then(|| format!("worker.{name}"))
        });
    if let Some(suggestion) = suggestion {
        message.push_str(&format!(" (did you mean {suggestion:?}?)"));
    }
    Error::config(path, message)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "sequence".to_owned(),
        Value::Mapping(_) => "mapping".to_owned(),
        Value::Tagged(tagged) => format!("tagged value `{}`", tagged.tag),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of single values. Each returns the message of the error; the caller adds the field.

fn parse_mode(text: &str) -> std::result::Result<Mode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "lite" => Ok(Mode::Lite),
        "server" => Ok(Mode::Server),
        _ => Err(format!("unknown mode {text:?}; expected lite or server")),
    }
}

/// One URL, or several separated by commas (engine replicas the client fails over between).
fn check_server_url(urls: &str) -> std::result::Result<(), String> {
    if urls.split(',').all(|u| u.trim().is_empty()) {
        return check_one_server_url(urls);
    }
    for url in urls.split(',').map(str::trim) {
        check_one_server_url(url)?;
    }
    Ok(())
}

fn check_one_server_url(url: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid URL {:?}: {why}; expected http(s)://host[:port][/path]",
            redact_url(url)
        ))
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("it has no scheme");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return bad("the scheme must be http or https");
    }
    if rest.contains(['?', '#']) {
        return bad("it must not have a query or a fragment");
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return bad("it must not hold credentials (give the token in api_token)");
    }
    let port = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 address: [::1]:8080.
        let Some((host, after)) = bracketed.split_once(']') else {
            return bad("the IPv6 host has no closing ']'");
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return bad("the IPv6 host is malformed");
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return bad("unexpected characters after the IPv6 host"),
            },
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return bad("the host is missing");
        }
        if !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return bad("the host has characters that are not allowed");
        }
        port
    };
    if let Some(port) = port {
        if !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u16>(), Ok(p) if p > 0)
        {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    Ok(())
}

fn check_api_token(token: &str) -> std::result::Result<(), String> {
    // Never quote the token itself.
    if token.is_empty() {
        return Err("the token is empty".to_owned());
    }
    if token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(
            "the token (not shown) contains spaces, control or non-ASCII characters, which an \
             HTTP header cannot carry"
                .to_owned(),
        );
    }
    Ok(())
}

/// The CA file must exist and hold at least one PEM certificate.
fn check_ca_file(path: &std::path::Path) -> std::result::Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("can't read {:?}: {e}", path.display().to_string()))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "{:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display().to_string()
        ));
    }
    Ok(())
}

fn check_namespace(namespace: &str) -> std::result::Result<(), String> {
    const ALLOWED: &str = "letters, digits, '-', '_' and '.'";
    if namespace.is_empty() {
        return Err(format!(
            "invalid namespace {namespace:?}: it is empty; use {ALLOWED}"
        ));
    }
    if let Some(c) = namespace
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "invalid namespace {namespace:?}: {c:?} is not allowed; use {ALLOWED}, at most \
             {MAX_NAMESPACE_LEN} characters"
        ));
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return Err(format!(
            "invalid namespace {namespace:?}: it is {} characters long; at most {MAX_NAMESPACE_LEN}",
            namespace.len()
        ));
    }
    Ok(())
}

fn check_database_url(url: &str) -> std::result::Result<(), String> {
    let rest = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    if rest.is_some_and(|rest| !rest.is_empty()) && !url.chars().any(char::is_control) {
        return Ok(());
    }
    Err(format!(
        "unsupported database URL {:?}; expected sqlite:PATH (e.g. sqlite://.owlclaw/owlclaw.db, \
         sqlite::memory:) or postgres://user:password@host/database",
        redact_url(url)
    ))
}

fn check_slots(slots: u32) -> std::result::Result<(), String> {
    if slots == 0 {
        return Err(format!(
            "invalid value \"0\": a worker needs at least 1 slot (1 to {MAX_SLOTS})"
        ));
    }
    if slots > MAX_SLOTS {
        return Err(format!(
            "invalid value \"{slots}\": at most {MAX_SLOTS} slots"
        ));
    }
    Ok(())
}

fn check_positive(d: Duration) -> std::result::Result<(), String> {
    if d.is_zero() {
        return Err(format!(
            "invalid duration {:?}: must be greater than zero",
            format_duration(d)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `${VAR}` substitution.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Replaces `${VAR}`, `${VAR:-default}` and `$${` in the YAML text, outside comments. Values are
/// not scanned again. Inside a quoted scalar the value is escaped so that it is read literally.
///
/// Quotes and comments are recognised line by line (a quoted scalar spanning lines, or a `#` in a
/// block scalar, is not understood); this is enough for configuration files and keeps a stray
/// quote from affecting the rest of the file.
fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        substitute_line(line, index + 1, env, &mut out)?;
    }
    Ok(out)
}

fn substitute_line(
    line: &str,
    number: usize,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<()> {
    let bytes = line.as_bytes();
    let mut quote = Quote::None;
    let mut i = 0;
    // Start of the text not yet copied to `out`.
    let mut copied = 0;
    while i < bytes.len() {
        let previous = if i == 0 { None } else { Some(bytes[i - 1]) };
        match (quote, bytes[i]) {
            (Quote::None, b'#') if previous.is_none_or(|p| p == b' ' || p == b'\t') => break,
            (Quote::None, q @ (b'\'' | b'"'))
                if previous.is_none_or(|p| b" \t:[{,".contains(&p)) =>
            {
                quote = if q == b'"' {
                    Quote::Double
                } else {
                    Quote::Single
                };
            }
            (Quote::Double, b'\\') => i += 1,
            (Quote::Double, b'"') => quote = Quote::None,
            (Quote::Single, b'\'') => {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    quote = Quote::None;
                }
            }
            (_, b'$') if line[i..].starts_with("$${") => {
                out.push_str(&line[copied..i]);
                out.push_str("${");
                i += 3;
                copied = i;
                continue;
            }
            (_, b'$') if line[i..].starts_with("${") => {
                out.push_str(&line[copied..i]);
                let body_start = i + 2;
                let Some(len) = line[body_start..].find('}') else {
                    return Err(Error::config(
                        "yaml",
                        format!(
                            "line {number}: {:?} has no closing '}}'",
                            line[i..].trim_end()
                        ),
                    ));
                };
                let reference = &line[i..body_start + len + 1];
                let value = lookup(&line[body_start..body_start + len], reference, number, env)?;
                match quote {
                    Quote::None => out.push_str(&value),
                    Quote::Single => out.push_str(&value.replace('\'', "''")),
                    Quote::Double => escape_double_quoted(&value, out),
                }
                i = body_start + len + 1;
                copied = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&line[copied..]);
    Ok(())
}

/// The value of `${body}`: `body` is `VAR` or `VAR:-default`.
fn lookup(
    body: &str,
    reference: &str,
    line: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(Error::config(
            "yaml",
            format!(
                "line {line}: invalid substitution {reference:?}; write ${{VAR}} or \
                 ${{VAR:-default}} with VAR made of letters, digits and '_' (and $${{ for a \
                 literal ${{)"
            ),
        ));
    }
    if let Some(default) = default {
        if default.contains("${") {
            return Err(Error::config(
                name,
                format!(
                    "line {line}: the default of ${{{name}:-...}} contains \"${{\"; \
                     substitutions do not nest, a default is plain text"
                ),
            ));
        }
    }
    match (env(name), default) {
        (Some(value), Some(_)) if !value.is_empty() => Ok(value),
        (Some(value), None) => Ok(value),
        (_, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(Error::config(
            name,
            format!(
                "environment variable {name} is not set, and {reference:?} on line {line} has \
                 no default; set it or write ${{{name}:-default}}"
            ),
        )),
    }
}

fn escape_double_quoted(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn substitution_skips_comments_and_escapes_inside_quotes() {
        let env = |name: &str| match name {
            "QUOTE" => Some("a\"b\\c".to_owned()),
            "APOS" => Some("it's".to_owned()),
            _ => None,
        };
        let text = "a: \"${QUOTE}\" # ${UNSET}\n# ${UNSET}\nb: '${APOS}'\nc: $${X} $$ $x\n";
        let out = substitute(text, &env).unwrap();
        assert_eq!(
            out,
            "a: \"a\\\"b\\\\c\" # ${UNSET}\n# ${UNSET}\nb: 'it''s'\nc: ${X} $$ $x\n"
        );
        let value: Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(value["a"].as_str(), Some("a\"b\\c"));
        assert_eq!(value["b"].as_str(), Some("it's"));
    }

    #[test]
    fn substitution_is_not_recursive() {
        let env = |name: &str| (name == "A").then(|| "${B}".to_owned());
        assert_eq!(substitute("x: ${A}", &env).unwrap(), "x: ${B}");
        let err = substitute("x: ${A:-${B}}", &no_env).unwrap_err();
        assert!(err.to_string().contains("do not nest"), "{err}");
    }

    #[test]
    fn substitution_syntax_errors_name_the_line() {
        let err = substitute("a: 1\nb: ${OPEN\n", &no_env).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = substitute("a: ${1BAD}\n", &no_env).unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("1BAD"),
            "{err}"
        );
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u:p@ss/w?rd@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redact_url("postgresql://h/db?sslmode=require&PASSWORD=x#f"),
            "postgresql://h/db?sslmode=require&PASSWORD=***#f"
        );
    }

    #[test]
    fn server_url_checks() {
        for ok in [
            "http://localhost",
            "https://owlclaw.example.com:8443/api/",
            "http://127.0.0.1:7070",
            "http://[::1]:7070/x",
            "HTTPS://Example.COM",
            "http://10.0.0.1:7070,http://10.0.0.2:7070",
            "http://a:7070, http://b:7070",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
        assert!(check_server_url("http://a:7070,ftp://b").is_err());
        for bad in [
            "ftp://x",
            "http://",
            "http://:80",
            "localhost:7070",
            "http://h:port",
            "http://h:0",
            "http://h:70000",
            "http://h/a b",
            "http://h?x=1",
            "http://[::1",
            "http://h:1:2",
        ] {
            let message = check_server_url(bad).unwrap_err();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("sloots", "slots"), 1);
        assert_eq!(edit_distance("lease", "lease"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
