//! [`Mode`]: lite (embedded engine) or server (HTTP).

use owlclaw_core::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// How a program reaches the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The engine runs inside the process, on [`Config::database_url`](super::Config::database_url). The default: no
    /// infrastructure to run.
    #[default]
    Lite,
    /// The program talks over HTTP to an `owlclaw serve` engine at [`Config::server_url`](super::Config::server_url),
    /// authenticated by [`Config::api_token`](super::Config::api_token).
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

pub(super) fn parse_mode(text: &str) -> std::result::Result<Mode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "lite" => Ok(Mode::Lite),
        "server" => Ok(Mode::Server),
        _ => Err(format!("unknown mode {text:?}; expected lite or server")),
    }
}
