//! Where the runs are: which engine server, or which store, a command talks to.
//!
//! Layers, highest first:
//!
//! 1. options typed on the command line: `--server URL` (server mode; `--token T` goes with it) or
//!    `--database URL` (lite mode: the store itself); both at once is a usage error;
//! 2. `--config FILE`, read as a program reads it (`OWLCLAW_*` variables override the file's
//!    values, `${VAR}` is substituted): its `mode` decides;
//! 3. the environment alone: `OWLCLAW_MODE` decides when set, else a set `OWLCLAW_SERVER_URL`
//!    means server mode (with `OWLCLAW_API_TOKEN`), else lite mode on `OWLCLAW_DATABASE_URL`;
//! 4. the default: lite mode on `sqlite://.owlclaw/owlclaw.db`.
//!
//! Typed options are applied as the highest layer of the same configuration (as if they were
//! `OWLCLAW_*` variables that win over everything), so the result is validated as a whole and a
//! broken lower layer they replace does not get in the way.
//!
//! `serve`, `token` and `migrate` work on a store, never through a server: they take the
//! database URL of the same layers ([`store_target`]).

use crate::args::Global;
use crate::failure::Failure;
use owlclaw::config::Secret;
use owlclaw::{Config, Mode};
use std::path::{Path, PathBuf};

/// Which of the connection options were typed on the command line (as opposed to read from the
/// environment).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Explicit {
    pub(crate) database: bool,
    pub(crate) server: bool,
    pub(crate) token: bool,
}

/// Whether the command may create a database that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Read and change runs of an existing database only.
    Existing,
    /// `submit`: create the database if needed.
    MayCreate,
}

/// The configuration a run command connects with: server mode, or lite mode after checking that
/// the database exists when `need` says so.
pub(crate) fn resolve(global: &Global, explicit: Explicit, need: Need) -> Result<Config, Failure> {
    let typed = Typed::of(global, explicit)?;
    if typed.database.is_some() && (typed.server.is_some() || typed.token.is_some()) {
        let flag = if typed.server.is_some() {
            "--server"
        } else {
            "--token"
        };
        return Err(Failure::usage(format!(
            "{flag} and --database can't be used together: --server URL --token T talks to an \
             engine server, --database URL opens a store directly"
        )));
    }
    let config = load(global, &typed)?;
    if typed.token.is_some() && config.mode != Mode::Server {
        return Err(Failure::usage(
            "--token needs an engine server: give --server URL (or set OWLCLAW_SERVER_URL, or \
             mode: server and server_url in --config)",
        ));
    }
    if config.mode == Mode::Lite && need == Need::Existing {
        if let Some(path) = sqlite_file(&config.database_url) {
            if !path.exists() {
                return Err(Failure::new(
                    "connection",
                    format!(
                        "no OwlClaw database at {} (start a lite-mode program first, or pass \
                         --database)",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(config)
}

/// The store of `serve` and `token`, which open the store whatever the mode says (a server's
/// environment may well name itself as the server to reach): `--database`, else the
/// `database_url` of `--config` or of the environment, else the default. `--server` and
/// `--token` don't apply to them (usage error).
pub(crate) fn store_target(
    global: &Global,
    explicit: Explicit,
    command: &str,
) -> Result<Config, Failure> {
    reject_server_flags(explicit, command)?;
    let typed = Typed {
        store_only: true,
        ..Typed::of(global, explicit)?
    };
    load(global, &typed)
}

/// The store of `migrate`: like a run command's target, but a server is refused.
pub(crate) fn migrate_target(global: &Global, explicit: Explicit) -> Result<Config, Failure> {
    reject_server_flags(explicit, "migrate")?;
    let typed = Typed::of(global, explicit)?;
    let config = load(global, &typed)?;
    if config.mode == Mode::Server {
        let server = config.server_url.as_deref().unwrap_or_default();
        let why = if global.config.is_some() {
            "--config, or OWLCLAW_MODE over it, says mode: server"
        } else {
            "the environment names a server"
        };
        return Err(Failure::new(
            "config",
            format!(
                "`owlclaw migrate` works on a store, not through an engine server ({why}: \
                 {server}); give the store with --database URL (an engine server applies the \
                 migrations itself when it starts)"
            ),
        ));
    }
    Ok(config)
}

fn reject_server_flags(explicit: Explicit, command: &str) -> Result<(), Failure> {
    let flag = match (explicit.server, explicit.token) {
        (true, _) => "--server",
        (false, true) => "--token",
        (false, false) => return Ok(()),
    };
    Err(Failure::usage(format!(
        "`owlclaw {command}` works on a store directly, not through an engine server: {flag} \
         does not apply (give the store with --database URL)"
    )))
}

/// The connection options typed on the command line, each checked on its own so that a bad one
/// is reported as a usage error naming the flag.
#[derive(Debug, Default)]
struct Typed {
    database: Option<String>,
    server: Option<String>,
    token: Option<String>,
    /// `serve` and `token`: lite mode whatever the lower layers say.
    store_only: bool,
}

impl Typed {
    fn of(global: &Global, explicit: Explicit) -> Result<Typed, Failure> {
        let pick = |typed: bool, value: &Option<String>| value.clone().filter(|_| typed);
        let typed = Typed {
            database: pick(explicit.database, &global.database),
            server: pick(explicit.server, &global.server),
            token: pick(explicit.token, &global.token),
            store_only: false,
        };
        let check = |flag: &str, value: &Option<String>, apply: &dyn Fn(&mut Config, String)| {
            let Some(value) = value else {
                return Ok(());
            };
            let mut probe = Config::lite();
            apply(&mut probe, value.clone());
            probe.validate().map_err(|error| {
                let message = match error {
                    owlclaw::Error::Config { message, .. } => message,
                    other => other.to_string(),
                };
                Failure::usage(format!("invalid value for {flag}: {message}"))
            })
        };
        check("--database", &typed.database, &|c, v| c.database_url = v)?;
        check("--server", &typed.server, &|c, v| c.server_url = Some(v))?;
        check("--token", &typed.token, &|c, v| {
            c.api_token = Some(Secret::new(v))
        })?;
        Ok(typed)
    }

    /// The value of `OWLCLAW_*` variable `name` that a typed option stands for.
    fn variable(&self, name: &str) -> Option<String> {
        match name {
            "OWLCLAW_MODE" if self.database.is_some() || self.store_only => Some("lite".into()),
            "OWLCLAW_MODE" if self.server.is_some() => Some("server".into()),
            "OWLCLAW_DATABASE_URL" => self.database.clone(),
            "OWLCLAW_SERVER_URL" => self.server.clone(),
            "OWLCLAW_API_TOKEN" => self.token.clone(),
            _ => None,
        }
    }
}

/// The configuration of the layers: typed options over `--config` (itself under the
/// environment's `OWLCLAW_*` variables) or over the environment alone.
fn load(global: &Global, typed: &Typed) -> Result<Config, Failure> {
    let env = |name: &str| typed.variable(name).or_else(|| std::env::var(name).ok());
    match &global.config {
        Some(path) => Ok(Config::from_yaml_str_with_env(&read(path)?, &env)?),
        None => {
            let mut config = Config::from_env_with(&env)?;
            // Without a file, a server URL in the environment is a request for server mode,
            // unless OWLCLAW_MODE says otherwise.
            let mode_set = env("OWLCLAW_MODE").is_some_and(|m| !m.is_empty());
            if !mode_set && config.server_url.is_some() {
                config.mode = Mode::Server;
            }
            Ok(config)
        }
    }
}

/// The text of the configuration file, with the error of `Config::from_file`.
fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|err| {
        owlclaw::Error::config(
            "config_file",
            format!("cannot read {:?}: {err}", path.display().to_string()),
        )
        .into()
    })
}

/// The file behind a SQLite URL, read the way the store reads it (`sqlite://path`,
/// `sqlite:path`, percent-decoded, without `?params`); `None` for in-memory databases and other
/// schemes.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = match rest.split_once('?') {
        Some((database, params)) => (database, params),
        None => (rest, ""),
    };
    if database.is_empty()
        || database == ":memory:"
        || params.split('&').any(|p| p == "mode=memory")
    {
        return None;
    }
    Some(PathBuf::from(percent_decode(database)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_reads_urls_like_the_store() {
        let file = |url: &str| sqlite_file(url).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite://.owlclaw/owlclaw.db").as_deref(),
            Some(".owlclaw/owlclaw.db")
        );
        assert_eq!(file("sqlite:///tmp/a.db").as_deref(), Some("/tmp/a.db"));
        assert_eq!(file("sqlite:a.db?mode=rwc").as_deref(), Some("a.db"));
        assert_eq!(file("sqlite://my%20runs.db").as_deref(), Some("my runs.db"));
        assert_eq!(file("sqlite://100%.db").as_deref(), Some("100%.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
        assert_eq!(file("postgres://u@h/db"), None);
    }
}
