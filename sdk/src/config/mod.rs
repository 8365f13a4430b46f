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
//! The file's shape is checked by serde (an unknown key is an error), the file and the environment
//! are layered by `figment`, and every value is checked when it is read ([`Config::validate`]),
//! a value of the file even when a variable overrides it. An error is an [`Error::Config`] whose
//! `field` is the YAML path of the setting (`worker.slots`) or the environment variable it came
//! from (`OWLCLAW_WORKER_SLOTS`), and whose message quotes the bad value (except secrets):
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
//! one of slots, shutdown_grace, heartbeat, lease, suspend_threshold (did you mean "worker.slots"?)`),
//! and so is a key given twice.
//!
//! # Substitution
//!
//! In the string values of the YAML file, `${VAR}` is replaced by the value of the environment
//! variable `VAR`, and `${VAR:-default}` by its value or, when it is unset or empty, by
//! `default`. `$${` writes a literal `${`; any other `$` (`$name`, `$$`) stays as written. An
//! unset `${VAR}` without a default is an error naming the variable and the line. Substitution
//! is not recursive: a substituted value is never scanned again, and a default may not contain
//! `${`.
//!
//! Substitution happens after the YAML is parsed, on its string values: whatever characters a
//! variable holds (quotes, `#`, `: `), it is taken literally, quoted or not, and a substituted
//! number is read as the setting's text (`slots: ${SLOTS:-10}`). YAML comments are left alone, so
//! a commented-out line may mention a variable that is not set. Keys are never substituted.
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

mod checks;
mod load;
mod mode;
mod providers;
mod secret;
mod shape;
mod substitute;

pub use mode::Mode;
pub use owlclaw_core::redact_url;
pub use secret::Secret;

use figment::Figment;
use owlclaw_core::{Error, Result};
use providers::{EnvVars, YamlFile};
use std::fmt;
use std::path::Path;
use std::time::Duration;
/// Default of [`Config::database_url`].
const DEFAULT_DATABASE_URL: &str = "sqlite://.owlclaw/owlclaw.db";
/// Default of [`Config::retention`]: 7 days.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default of [`WorkerConfig::slots`].
const DEFAULT_SLOTS: u32 = 10;
/// Largest accepted [`WorkerConfig::slots`], and the most runs one exchange with the engine may
/// ask for (the engine's own limit): slots and runs claimed ahead together.
pub(crate) const MAX_SLOTS: u32 = 10_000;
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
        let file = YamlFile::parse(yaml, env)?;
        // Each value of the file is checked, even one that an environment variable overrides.
        load::read(&Figment::from(&file))?;
        load::build(&Figment::from(file).merge(EnvVars(env)))
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
        load::build(&Figment::from(EnvVars(env)))
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
