//! Where the runs are: which store (or, later, which server) a command talks to.
//!
//! Precedence, highest first: `--server`/`--token` or `--database` given on the command line;
//! then `--config FILE` (whose values `OWLCLAW_*` variables override, as for any program); then
//! the environment (`OWLCLAW_SERVER_URL`, `OWLCLAW_DATABASE_URL`, `OWLCLAW_MODE`); then the
//! default `sqlite://.owlclaw/owlclaw.db`. Server mode is not available in this version: asking
//! for it is refused (exit 1, code `unsupported`), never silently ignored.

use crate::args::Global;
use crate::failure::Failure;
use owlclaw::{Config, Mode};
use std::path::PathBuf;

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
    /// `submit` and `migrate`: create the database if needed.
    MayCreate,
}

/// The lite-mode configuration a command connects with, after checking that the database exists
/// when `need` says so.
pub(crate) fn resolve(global: &Global, explicit: Explicit, need: Need) -> Result<Config, Failure> {
    if explicit.server {
        return Err(server_mode_unavailable("--server was given"));
    }
    if explicit.token {
        return Err(server_mode_unavailable("--token was given"));
    }
    let mut config = match &global.config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_env()?,
    };
    match (&global.database, explicit.database) {
        (Some(url), true) => {
            config.database_url = url.clone();
            config.mode = Mode::Lite;
            config.validate()?;
        }
        _ if config.mode == Mode::Server => {
            return Err(server_mode_unavailable(if global.config.is_some() {
                "the configuration file says mode: server"
            } else {
                "OWLCLAW_MODE is server"
            }));
        }
        _ if global.config.is_none() && global.server.is_some() => {
            return Err(server_mode_unavailable("OWLCLAW_SERVER_URL is set"));
        }
        _ => {}
    }
    if need == Need::Existing {
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

fn server_mode_unavailable(why: &str) -> Failure {
    Failure::unsupported(format!(
        "server mode (--server, --token, OWLCLAW_SERVER_URL, mode: server) is not available in \
         this version of owlclaw yet ({why}); reach the runs through their store with \
         --database sqlite://PATH"
    ))
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
