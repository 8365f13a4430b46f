//! From the merged providers to a checked [`Config`]: each value parsed and checked on its own,
//! its errors naming the YAML path or the environment variable it came from, then the
//! combinations ([`Config::validate`]).

use super::checks::{
    check_api_token, check_ca_file, check_database_url, check_namespace, check_positive,
    check_server_url, check_slots,
};
use super::mode::parse_mode;
use super::providers::SETTINGS;
use super::shape::FileConfig;
use super::{Config, Secret, WorkerConfig, MAX_SLOTS};
use figment::error::{Actual, Kind};
use figment::{Figment, Profile};
use owlclaw_core::duration::parse_duration;
use owlclaw_core::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Reads and checks the settings of `figment`, then their combinations.
pub(super) fn build(figment: &Figment) -> Result<Config> {
    let config = read(figment)?;
    config.validate()?;
    Ok(config)
}

/// Reads the settings of `figment`, defaults for what it lacks, and checks each value on its own
/// (not their combinations).
pub(super) fn read(figment: &Figment) -> Result<Config> {
    let file: FileConfig = figment.extract().map_err(extract_error)?;
    let values = Values(figment);
    let defaults = Config::default();
    let worker = file.worker;
    let worker_defaults = defaults.worker;
    Ok(Config {
        mode: values
            .parse("mode", file.mode, parse_mode)?
            .unwrap_or(defaults.mode),
        server_url: values.parse("server_url", file.server_url, checked(check_server_url))?,
        api_token: values
            .parse("api_token", file.api_token, checked(check_api_token))?
            .map(Secret::new),
        namespace: values.parse("namespace", file.namespace, checked(check_namespace))?,
        database_url: values
            .parse(
                "database_url",
                file.database_url,
                checked(check_database_url),
            )?
            .unwrap_or(defaults.database_url),
        retention: values
            .parse("retention", file.retention, positive_duration)?
            .unwrap_or(defaults.retention),
        worker: WorkerConfig {
            slots: values
                .parse("worker.slots", worker.slots, slots)?
                .unwrap_or(worker_defaults.slots),
            shutdown_grace: values
                .parse(
                    "worker.shutdown_grace",
                    worker.shutdown_grace,
                    parse_duration,
                )?
                .unwrap_or(worker_defaults.shutdown_grace),
            heartbeat: values
                .parse("worker.heartbeat", worker.heartbeat, positive_duration)?
                .unwrap_or(worker_defaults.heartbeat),
            lease: values
                .parse("worker.lease", worker.lease, parse_duration)?
                .unwrap_or(worker_defaults.lease),
            suspend_threshold: values
                .parse(
                    "worker.suspend_threshold",
                    worker.suspend_threshold,
                    parse_duration,
                )?
                .unwrap_or(worker_defaults.suspend_threshold),
        },
        tls_ca_file: values.parse("tls.ca_file", file.tls.ca_file, ca_file)?,
    })
}

/// The values of a figment, parsed with errors on the field they came from.
struct Values<'f>(&'f Figment);

impl Values<'_> {
    /// The field of the value at `path`: its YAML path or its environment variable.
    fn field(&self, path: &str) -> String {
        let keys: Vec<&str> = path.split('.').collect();
        self.0.find_metadata(path).map_or_else(
            || path.to_owned(),
            |metadata| metadata.interpolate(&Profile::Default, &keys),
        )
    }

    fn parse<T>(
        &self,
        path: &str,
        text: Option<String>,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        text.map(|text| parse(&text).map_err(|message| Error::config(self.field(path), message)))
            .transpose()
    }
}

/// A parser that keeps the text once `check` accepts it.
fn checked(
    check: fn(&str) -> std::result::Result<(), String>,
) -> impl FnOnce(&str) -> std::result::Result<String, String> {
    move |text| check(text).map(|()| text.to_owned())
}

fn positive_duration(text: &str) -> std::result::Result<Duration, String> {
    let duration = parse_duration(text)?;
    check_positive(duration)?;
    Ok(duration)
}

fn slots(text: &str) -> std::result::Result<u32, String> {
    let slots = text.trim().parse::<u32>().map_err(|_| {
        format!("invalid value {text:?}: expected a whole number of slots from 1 to {MAX_SLOTS}")
    })?;
    check_slots(slots)?;
    Ok(slots)
}

fn ca_file(text: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(text);
    check_ca_file(&path)?;
    Ok(path)
}

/// A figment error as an [`Error::Config`] on the field (YAML path or variable) of the value.
/// An error without a path is one of the whole file: its field is `yaml`.
fn extract_error(err: figment::Error) -> Error {
    let mut path = err.path.clone();
    let message = match &err.kind {
        Kind::UnknownField(name, expected) => {
            // The path ends with the unknown key.
            if path.last() != Some(name) {
                path.push(name.clone());
            }
            let mut message = format!(
                "unknown field {name:?}; expected one of {}",
                expected.join(", ")
            );
            if let Some(suggestion) = suggest(&path[..path.len() - 1], name, expected) {
                message.push_str(&format!(" (did you mean {suggestion:?}?)"));
            }
            message
        }
        Kind::InvalidType(actual, expected) => {
            format!("invalid type: {}, expected {expected}", describe(actual))
        }
        other => other.to_string(),
    };
    let field = match &err.metadata {
        _ if path.is_empty() => "yaml".to_owned(),
        Some(metadata) => metadata.interpolate(&Profile::Default, &path),
        None => path.join("."),
    };
    Error::config(field, message)
}

/// The setting meant by the unknown key `name` under `parent`: a sibling at most two edits away,
/// or, at the top level, a worker setting written outside `worker:`.
pub(super) fn suggest(parent: &[String], name: &str, siblings: &[&str]) -> Option<String> {
    let prefix: String = parent.iter().map(|p| format!("{p}.")).collect();
    siblings
        .iter()
        .map(|sibling| (sibling, strsim::levenshtein(name, sibling)))
        .filter(|(_, distance)| *distance <= 2)
        .min_by_key(|(_, distance)| *distance)
        .map(|(sibling, _)| format!("{prefix}{sibling}"))
        .or_else(|| {
            let nested = format!("worker.{name}");
            (parent.is_empty() && SETTINGS.contains(&nested.as_str())).then_some(nested)
        })
}

/// A value's type as the errors say it, in YAML's words.
pub(super) fn describe(actual: &Actual) -> String {
    match actual {
        Actual::Bool(b) => format!("boolean `{b}`"),
        Actual::Unsigned(n) => format!("number `{n}`"),
        Actual::Signed(n) => format!("number `{n}`"),
        Actual::Float(n) => format!("number `{n}`"),
        Actual::Str(s) => format!("string {s:?}"),
        Actual::Char(c) => format!("string {:?}", c.to_string()),
        Actual::Unit | Actual::Option => "null".to_owned(),
        Actual::Seq => "sequence".to_owned(),
        Actual::Map => "mapping".to_owned(),
        other => other.to_string(),
    }
}
