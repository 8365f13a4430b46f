//! The two layers of a configuration as figment providers: the YAML file and the `OWLCLAW_*`
//! environment variables. Each names a value by where it came from (its metadata's interpolater):
//! the YAML path (`worker.slots`) or the variable (`OWLCLAW_WORKER_SLOTS`).
//!
//! Why not figment's own `Yaml` and `Env` providers: `Yaml` parses with `serde_yaml`, deprecated
//! upstream (this crate reads YAML with its maintained fork `serde_yaml_ng`), and `${VAR}` must be
//! substituted in the parsed values anyway. `Env` reads only the process environment, while the
//! public API takes the environment as a function (`Config::from_env_with`), and it parses each
//! value as a figment value (`007` becomes the number 7, `[a]` a list), while settings are text
//! read by their own parsers; it also keeps a variable set to the empty string, which here counts
//! as unset. Two small providers keep figment's merging and its error paths without those.

use super::substitute::{line_of, substitute, Env, SubstError};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use owlclaw_core::{Error, Result};
use serde::Deserialize;

/// Every setting by its YAML path. Its environment variable is [`env_var`] of the path. A test
/// checks that this list and the serde structs of `shape.rs` agree.
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

/// The YAML file, parsed by `serde_yaml_ng`, with `${VAR}` substituted in its string values and
/// empty values (`namespace:`, `namespace: ""`) left out, so that they keep their default.
#[derive(Debug, Clone)]
pub(super) struct YamlFile(Dict);

impl YamlFile {
    /// Parses `text` and substitutes `${VAR}` from `env`.
    pub(super) fn parse(text: &str, env: Env<'_>) -> Result<YamlFile> {
        let not_valid =
            |err: serde_yaml_ng::Error| Error::config("yaml", format!("not valid YAML: {err}"));
        // Through `serde_yaml_ng`'s own tree, which refuses a key given twice.
        let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(not_valid)?;
        let document = <Value as Deserialize>::deserialize(document).map_err(not_valid)?;
        let mut dict = match document {
            Value::Dict(_, dict) => dict,
            Value::Empty(..) => Dict::new(),
            other => {
                return Err(Error::config(
                    "yaml",
                    format!(
                        "invalid type: {}, expected a mapping of settings",
                        super::load::describe(&other.to_actual())
                    ),
                ))
            }
        };
        substitute_dict(&mut dict, "", text, env)?;
        Ok(YamlFile(dict))
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

/// Substitutes every string under `dict` (at `prefix`, `""` or `"worker."`) and leaves out
/// empty values.
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
/// A malformed reference is an error of the file (`yaml`); a variable's, of the variable.
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

/// The `OWLCLAW_*` variable of every setting, read through `env`; a variable set to the empty
/// string counts as unset, other `OWLCLAW_*` variables are ignored. Values are kept as text,
/// neither parsed as YAML nor substituted.
pub(super) struct EnvVars<'a>(pub(super) Env<'a>);

impl Provider for EnvVars<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_var(&keys.join(".")))
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut top = Dict::new();
        let mut sections: Map<String, Dict> = Map::new();
        for path in SETTINGS {
            let Some(value) = (self.0)(&env_var(path)).filter(|v| !v.is_empty()) else {
                continue;
            };
            match path.split_once('.') {
                None => top.insert(path.to_owned(), value.into()),
                Some((section, key)) => sections
                    .entry(section.to_owned())
                    .or_default()
                    .insert(key.to_owned(), value.into()),
            };
        }
        top.extend(sections.into_iter().map(|(name, dict)| (name, dict.into())));
        Ok(Profile::Default.collect(top))
    }
}
