//! The domain of OwlClaw Tasks, free of I/O: run ids and statuses with their legal transitions,
//! task definitions, duration/cron/time-zone parsing, retry policy, the wire types shared by the
//! embedded and HTTP connections, the [`Orchestrator`] trait both implement, and the one error type.
//!
//! Application code does not depend on this crate directly: the `owlclaw` crate re-exports what
//! users need.

pub mod clock;
pub mod cron;
pub mod duration;
mod error;
pub mod event;
pub mod int;
pub mod lifecycle;
pub mod limits;
mod orchestrator;
pub mod ratelimit;
pub mod retry;
mod status;
pub mod task;
pub mod wire;
pub mod workflow;

pub use error::{Error, Result};
pub use orchestrator::Orchestrator;
pub use status::{RunId, RunStatus};

/// Redacts the password of a URL for printing: `postgres://user:pw@host/db` becomes
/// `postgres://user:***@host/db`, and the value of a `password=` query parameter becomes `***`.
/// URLs without credentials come back unchanged.
///
/// When unsure where the credentials end (an `@` in the path), it redacts too much rather than
/// too little.
///
/// ```
/// use owlclaw_core::redact_url;
/// assert_eq!(redact_url("postgres://app:hunter2@db:5432/owl"), "postgres://app:***@db:5432/owl");
/// assert_eq!(redact_url("postgres://db/owl?user=app&password=hunter2"), "postgres://db/owl?user=app&password=***");
/// assert_eq!(redact_url("sqlite://.owlclaw/owlclaw.db"), "sqlite://.owlclaw/owlclaw.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let start = scheme_end + 3;
    let mut out = url[..start].to_owned();
    let mut rest = &url[start..];
    // The last `@` ends the user information: a raw `@`, `/` or `?` inside a password is then
    // still inside the redacted part.
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        match userinfo.find(':') {
            Some(colon) => {
                out.push_str(&userinfo[..colon]);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        }
        rest = &rest[at..];
    }
    match rest.find('?') {
        None => out.push_str(rest),
        Some(q) => {
            out.push_str(&rest[..=q]);
            let query = &rest[q + 1..];
            let (query, fragment) = match query.find('#') {
                Some(h) => (&query[..h], &query[h..]),
                None => (query, ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                        format!("{key}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
            out.push_str(fragment);
        }
    }
    out
}
