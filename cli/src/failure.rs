//! A refused or failed command: its stable code, its message and its exit code.

use std::fmt::Write as _;

/// Exit code of a refused or failed command.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of bad usage (clap's own code for usage errors).
pub(crate) const EXIT_USAGE: u8 = 2;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// `owlclaw::Error::code()` for errors of the engine or the server (`connection` for an
    /// unreachable one, `unauthorized` for a refused token); `connection` for a missing database
    /// too; `listen` for an address `serve` can't bind; `interrupted` for a server stopped by a
    /// second signal; `unsupported` for what this version can't do yet; `usage` for bad usage.
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) exit: u8,
}

impl Failure {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            exit: EXIT_FAILURE,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: "usage",
            message: message.into(),
            exit: EXIT_USAGE,
        }
    }

    /// How it is printed on stderr: `{"error":{"code":..,"message":..}}` under `--json`,
    /// `error: <message>` otherwise.
    pub(crate) fn render(&self, json: bool) -> String {
        if json {
            let body = serde_json::json!({
                "error": { "code": self.code, "message": self.message }
            });
            format!("{body}\n")
        } else {
            let mut out = String::new();
            let _ = writeln!(out, "error: {}", self.message);
            out
        }
    }
}

impl From<owlclaw::Error> for Failure {
    fn from(error: owlclaw::Error) -> Failure {
        Failure::new(error.code(), error.to_string())
    }
}
