//! Reading a [`Config`]: the file's shape as serde structs, two figment providers (the YAML file
//! and the `OWLCLAW_*` variables) merged in order of precedence, and errors that name the YAML
//! path or the environment variable a bad value came from.

use super::checks::{
    check_api_token, check_ca_file, check_database_url, check_namespace, check_positive,
    check_server_url, check_slots,
};
use super::mode::parse_mode;
use super::substitute::{line_of, substitute, Env, SubstError};
use super::{Config, Secret, WorkerConfig, MAX_SLOTS};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use owlclaw_core::duration::parse_duration;
use owlclaw_core::{Error, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting by its YAML path. Its environment variable is [`env_var`] of the path. A test
/// checks that this list and the serde structs below agree.
pub(super) const SETTINGS: [&str; 12] = [
    "mode",
    "server_url",
    "api_token",
    "namespace",
    "database_url",
    "retention",
    "worker.slots",
    "worker.shutdown_grace",
    "worker.heartbeat",
    "worker.lease",
    "worker.suspend_threshold",
    "tls.ca_file",
];

/// The environment variable of a setting: `worker.slots` is `OWLCLAW_WORKER_SLOTS`.
pub(super) fn env_var(path: &str) -> String {
    format!("OWLCLAW_{}", path.replace('.', "_").to_ascii_uppercase())
}

// ---------------------------------------------------------------------------------------------
// The shape of the file. Every value is read as text (a YAML number is written back as text) and
// parsed afterwards, so that `"30"` and `30` get the same error.

/// The top level of `owlclaw.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
pub(super) struct FileConfig {
    mode: Option<Text>,
    server_url: Option<Text>,
    api_token: Option<Text>,
    namespace: Option<Text>,
    database_url: Option<Text>,
    retention: Option<DurationText>,
    worker: Option<WorkerFile>,
    tls: Option<TlsFile>,
}

/// The `worker:` map.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of worker settings")]
struct WorkerFile {
    slots: Option<WholeNumber>,
    shutdown_grace: Option<DurationText>,
    heartbeat: Option<DurationText>,
    lease: Option<DurationText>,
    suspend_threshold: Option<DurationText>,
}

/// The `tls:` map.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of TLS settings")]
struct TlsFile {
    ca_file: Option<Text>,
}

macro_rules! scalar {
    ($(#[$doc:meta])* $name:ident, $expecting:literal) => {
        $(#[$doc])*
        struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                d.deserialize_any(ScalarVisitor($expecting)).map($name)
            }
        }
    };
}

scalar!(
    /// A string setting.
    Text,
    "a string"
);
scalar!(
    /// A duration such as `30s`.
    DurationText,
    "a duration such as \"30s\""
);
scalar!(
    /// A count.
    WholeNumber,
    "a whole number"
);

/// Reads a string or a number as text.
struct ScalarVisitor(&'static str);

impl Visitor<'_> for ScalarVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> std::result::Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> std::result::Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<String, E> {
        Ok(v.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// The providers.

/// The YAML file, parsed by `serde_yaml_ng`, with `${VAR}` substituted in its string values and
/// empty values (`namespace:`, `namespace: ""`) left out, so that they keep their default.
pub(super) struct YamlFile(Dict);

impl YamlFile {
    pub(super) fn parse(text: &str, env: Env<'_>) -> Result<YamlFile> {
        let document: Value = serde_yaml_ng::from_str(text)
            .map_err(|err| Error::config("yaml", format!("not valid YAML: {err}")))?;
        let mut dict = match document {
            Value::Dict(_, dict) => dict,
            Value::Empty(..) => Dict::new(),
            other => {
                return Err(Error::config(
                    "yaml",
                    format!(
                        "invalid type: {}, expected a mapping of settings",
                        describe_value(&other)
                    ),
                ))
            }
        };
        substitute_dict(&mut dict, "", text, env)?;
        Ok(YamlFile(dict))
    }
}

/// Substitutes every string under `dict` (whose path is `prefix`) and removes empty values.
fn substitute_dict(dict: &mut Dict, prefix: &str, text: &str, env: Env<'_>) -> Result<()> {
    for (key, value) in dict.iter_mut() {
        substitute_value(value, &format!("{prefix}{key}"), text, env)?;
    }
    dict.retain(|_, value| match value {
        Value::String(_, s) => !s.is_empty(),
        Value::Empty(..) => false,
        _ => true,
    });
    Ok(())
}

fn substitute_value(value: &mut Value, path: &str, text: &str, env: Env<'_>) -> Result<()> {
    match value {
        Value::String(_, s) => *s = substitute(s, env).map_err(|e| subst_error(e, path, text))?,
        Value::Dict(_, dict) => substitute_dict(dict, &format!("{path}."), text, env)?,
        Value::Array(_, items) => {
            for item in items {
                substitute_value(item, path, text, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The error of a substitution in the value at `path`, with the line of the reference in `text`.
fn subst_error(err: SubstError, path: &str, text: &str) -> Error {
    let at = match line_of(text, err.reference()) {
        Some(line) => format!("line {line} ({path})"),
        None => path.to_owned(),
    };
    match err {
        SubstError::Unclosed { reference } => Error::config(
            "yaml",
            format!("{at}: {:?} has no closing '}}'", reference.trim_end()),
        ),
        SubstError::BadName { reference } => Error::config(
            "yaml",
            format!(
                "{at}: invalid substitution {reference:?}; write ${{VAR}} or ${{VAR:-default}} \
                 with VAR made of letters, digits and '_' (and $${{ for a literal ${{)"
            ),
        ),
        SubstError::NestedDefault { name, .. } => Error::config(
            name.as_str(),
            format!(
                "{at}: the default of ${{{name}:-...}} contains \"${{\"; substitutions do not \
                 nest, a default is plain text"
            ),
        ),
        SubstError::Unset { name, reference } => Error::config(
            name.as_str(),
            format!(
                "environment variable {name} is not set, and {reference:?} on {at} has no \
                 default; set it or write ${{{name}:-default}}"
            ),
        ),
    }
}

impl Provider for YamlFile {
    fn metadata(&self) -> Metadata {
        Metadata::named("YAML").interpolater(|_: &Profile, keys: &[&str]| keys.join("."))
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// The `OWLCLAW_*` variable of every setting, read through `env`; an empty variable counts as
/// unset. Values are kept as text, neither parsed as YAML nor substituted.
pub(super) struct EnvVars<'a>(pub(super) Env<'a>);

impl Provider for EnvVars<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_var(&keys.join(".")))
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut top = Dict::new();
        for path in SETTINGS {
            let Some(value) = (self.0)(&env_var(path)).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = Value::from(value);
            match path.split_once('.') {
                None => {
                    top.insert(path.to_owned(), value);
                }
                Some((section, key)) => {
                    let section = top
                        .entry(section.to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if let Value::Dict(_, dict) = section {
                        dict.insert(key.to_owned(), value);
                    }
                }
            }
        }
        Ok(Profile::Default.collect(top))
    }
}

// ---------------------------------------------------------------------------------------------
// From the merged providers to a checked `Config`.

/// Reads and checks the settings of `figment`, then their combinations ([`Config::validate`]).
pub(super) fn build(figment: &Figment) -> Result<Config> {
    let config = read(figment)?;
    config.validate()?;
    Ok(config)
}

/// Reads the settings of `figment`, defaults for what it lacks, and checks each value on its own
/// (not their combinations): an error names the YAML path or the variable of the value.
pub(super) fn read(figment: &Figment) -> Result<Config> {
    let file: FileConfig = figment.extract().map_err(extract_error)?;
    // The field of a value: its YAML path or its environment variable.
    let field = |path: &str| {
        let keys: Vec<&str> = path.split('.').collect();
        figment.find_metadata(path).map_or_else(
            || path.to_owned(),
            |m| m.interpolate(&Profile::Default, &keys),
        )
    };
    let check = |path: &str, text: &str, f: &dyn Fn(&str) -> std::result::Result<(), String>| {
        f(text).map_err(|m| Error::config(field(path), m))
    };
    let duration = |path: &str, text: Option<DurationText>, positive: bool| {
        text.map(|DurationText(t)| {
            let d = parse_duration(&t).map_err(|m| Error::config(field(path), m))?;
            if positive {
                check_positive(d).map_err(|m| Error::config(field(path), m))?;
            }
            Ok::<Duration, Error>(d)
        })
        .transpose()
    };
    let string =
        |path: &str, text: Option<Text>, f: &dyn Fn(&str) -> std::result::Result<(), String>| {
            text.map(|Text(t)| check(path, &t, f).map(|()| t))
                .transpose()
        };

    let defaults = Config::default();
    let mode = match file.mode {
        Some(Text(t)) => parse_mode(&t).map_err(|m| Error::config(field("mode"), m))?,
        None => defaults.mode,
    };
    let server_url = string("server_url", file.server_url, &check_server_url)?;
    let api_token = string("api_token", file.api_token, &check_api_token)?.map(Secret::new);
    let namespace = string("namespace", file.namespace, &check_namespace)?;
    let database_url = string("database_url", file.database_url, &check_database_url)?;
    let retention = duration("retention", file.retention, true)?;
    let worker = file.worker.unwrap_or(WorkerFile {
        slots: None,
        shutdown_grace: None,
        heartbeat: None,
        lease: None,
        suspend_threshold: None,
    });
    let slots = match worker.slots {
        Some(WholeNumber(t)) => {
            let slots = t.trim().parse::<u32>().map_err(|_| {
                Error::config(
                    field("worker.slots"),
                    format!(
                        "invalid value {t:?}: expected a whole number of slots from 1 to {MAX_SLOTS}"
                    ),
                )
            })?;
            check_slots(slots).map_err(|m| Error::config(field("worker.slots"), m))?;
            slots
        }
        None => defaults.worker.slots,
    };
    let tls_ca_file = file
        .tls
        .and_then(|tls| tls.ca_file)
        .map(|Text(t)| {
            let path = PathBuf::from(t);
            check_ca_file(&path)
                .map(|()| path)
                .map_err(|m| Error::config(field("tls.ca_file"), m))
        })
        .transpose()?;

    Ok(Config {
        mode,
        server_url,
        api_token,
        namespace,
        database_url: database_url.unwrap_or(defaults.database_url),
        worker: WorkerConfig {
            slots,
            shutdown_grace: duration("worker.shutdown_grace", worker.shutdown_grace, false)?
                .unwrap_or(defaults.worker.shutdown_grace),
            heartbeat: duration("worker.heartbeat", worker.heartbeat, true)?
                .unwrap_or(defaults.worker.heartbeat),
            lease: duration("worker.lease", worker.lease, false)?.unwrap_or(defaults.worker.lease),
            suspend_threshold: duration(
                "worker.suspend_threshold",
                worker.suspend_threshold,
                false,
            )?
            .unwrap_or(defaults.worker.suspend_threshold),
        },
        retention: retention.unwrap_or(defaults.retention),
        tls_ca_file,
    })
}

/// A figment error as an [`Error::Config`] on the field (YAML path or variable) of the value.
fn extract_error(err: figment::Error) -> Error {
    let mut path = err.path.clone();
    let message = match &err.kind {
        figment::error::Kind::UnknownField(name, expected) => {
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
        figment::error::Kind::InvalidType(actual, expected) => {
            format!(
                "invalid type: {}, expected {expected}",
                describe_actual(actual)
            )
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
fn suggest(parent: &[String], name: &str, siblings: &[&str]) -> Option<String> {
    let prefix: String = parent.iter().map(|p| format!("{p}.")).collect();
    siblings
        .iter()
        .map(|s| (s, strsim::levenshtein(name, s)))
        .filter(|(_, distance)| *distance <= 2)
        .min_by_key(|(_, distance)| *distance)
        .map(|(s, _)| format!("{prefix}{s}"))
        .or_else(|| {
            let nested = format!("worker.{name}");
            (parent.is_empty() && SETTINGS.contains(&nested.as_str())).then_some(nested)
        })
}

fn describe_actual(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
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

fn describe_value(value: &Value) -> String {
    describe_actual(&value.to_actual())
}
