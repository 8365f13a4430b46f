//! Checks of a [`Config`]: each value on its own, then their combinations.
//!
//! Each `check_*` function returns the message of the error; the caller adds the field (the YAML
//! path or the environment variable the value came from).

use super::{redact_url, Config, Mode, MAX_NAMESPACE_LEN, MAX_SLOTS};
use owlclaw_core::duration::format_duration;
use owlclaw_core::{Error, Result};
use std::time::Duration;

impl Config {
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

/// One URL, or several separated by commas (engine replicas the client fails over between).
pub(super) fn check_server_url(urls: &str) -> std::result::Result<(), String> {
    if urls.split(',').all(|u| u.trim().is_empty()) {
        return check_one_server_url(urls);
    }
    for url in urls.split(',').map(str::trim) {
        check_one_server_url(url)?;
    }
    Ok(())
}

/// `http(s)://host[:port][/path]`, parsed by the `url` crate. The text is kept as written: the
/// parse only checks it.
fn check_one_server_url(text: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid URL {:?}: {why}; expected http(s)://host[:port][/path]",
            redact_url(text)
        ))
    };
    // The parser would percent-encode spaces and drop tabs and newlines: refuse them instead.
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    // Without `://`, `localhost:7070` would parse as the scheme `localhost`.
    if !text.contains("://") {
        return bad("it has no scheme");
    }
    let url = match url::Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::EmptyHost) => return bad("the host is missing"),
        Err(url::ParseError::InvalidPort) => return bad(PORT_RANGE),
        Err(url::ParseError::InvalidIpv6Address) => return bad("the IPv6 host is malformed"),
        Err(err) => return bad(&err.to_string()),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("the scheme must be http or https");
    }
    if !url.has_host() {
        return bad("the host is missing");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("it must not hold credentials (give the token in api_token)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("it must not have a query or a fragment");
    }
    if url.port() == Some(0) {
        return bad(PORT_RANGE);
    }
    Ok(())
}

const PORT_RANGE: &str = "the port must be a number from 1 to 65535";

pub(super) fn check_api_token(token: &str) -> std::result::Result<(), String> {
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
pub(super) fn check_ca_file(path: &std::path::Path) -> std::result::Result<(), String> {
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

pub(super) fn check_namespace(namespace: &str) -> std::result::Result<(), String> {
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

pub(super) fn check_database_url(url: &str) -> std::result::Result<(), String> {
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

pub(super) fn check_slots(slots: u32) -> std::result::Result<(), String> {
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

pub(super) fn check_positive(d: Duration) -> std::result::Result<(), String> {
    if d.is_zero() {
        return Err(format!(
            "invalid duration {:?}: must be greater than zero",
            format_duration(d)
        ));
    }
    Ok(())
}
