//! Task definitions and the limits the `#[task]` macro, the API and the engine all check.

use crate::retry::Backoff;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Lowest priority.
pub const MIN_PRIORITY: u8 = 1;
/// Highest priority.
pub const MAX_PRIORITY: u8 = 10;
/// Priority when none is given.
pub const DEFAULT_PRIORITY: u8 = 5;
/// Most retries a task may ask for; more is almost always a mistake (use a cron or a longer backoff).
pub const MAX_RETRIES: u32 = 100;
/// Retries when none are given (as in Hatchet: a failed run is not retried unless asked).
pub const DEFAULT_RETRIES: u32 = 0;
/// Timeout of one attempt when none is given (as in Hatchet).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest timeout accepted: one week.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
/// Longest task name.
pub const MAX_TASK_NAME_LEN: usize = 128;

/// What the engine knows about a task: its name and policies. Workers register these.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    /// Unique name within a tenant (namespace prefix included).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub name: String,
    /// Retries after the first attempt: `max_attempts = retries + 1`; 0..=100.
    #[serde(deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub retries: u32,
    /// Timeout of one attempt.
    #[serde(with = "crate::duration::serde_human")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "30s"))]
    pub timeout: Duration,
    /// 1 (lowest) to 10 (highest).
    #[serde(deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub priority: u8,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Cron expression, when the task runs on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Time zone of the cron expression (UTC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Worker labels a worker needs to run this task: `key` (a label of that key, any value) or
    /// `key=value`. Only workers that have all of them claim its runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub requires: Vec<String>,
    /// The event key that starts a run of this task (`order.paid`): one run per pushed event,
    /// its input the event's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub on_event: Option<String>,
}

impl TaskDef {
    /// A definition with every default.
    pub fn new(name: impl Into<String>) -> TaskDef {
        TaskDef {
            name: name.into(),
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            priority: DEFAULT_PRIORITY,
            backoff: Backoff::default(),
            cron: None,
            timezone: None,
            requires: Vec::new(),
            on_event: None,
        }
    }

    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field: &str, msg: String| Err(crate::Error::invalid_input(field, msg));
        if let Err(e) = validate_task_name(&self.name) {
            return bad("task", e);
        }
        if let Err(e) = validate_retries(i128::from(self.retries)) {
            return bad("retries", e);
        }
        if let Err(e) = validate_timeout(self.timeout) {
            return bad("timeout", e);
        }
        if let Err(e) = validate_priority(i128::from(self.priority)) {
            return bad("priority", e);
        }
        if let Err(e) = self.backoff.validate() {
            return bad("backoff", e);
        }
        if let Some(expr) = &self.cron {
            if let Err(e) = crate::cron::CronExpr::parse_in(expr, self.timezone.as_deref()) {
                return bad(
                    if e.contains("time zone") {
                        "timezone"
                    } else {
                        "cron"
                    },
                    e,
                );
            }
        } else if self.timezone.is_some() {
            return bad("timezone", "a time zone needs a cron expression".into());
        }
        if let Err(e) = validate_requires(&self.requires) {
            return bad("requires", e);
        }
        if let Some(Err(e)) = self.on_event.as_deref().map(validate_event_key) {
            return bad("on_event", e);
        }
        Ok(())
    }

    /// The requirements that `labels` do not meet, in order; empty when a worker with these
    /// labels can run the task.
    pub fn unmet<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a str> {
        self.requires
            .iter()
            .map(String::as_str)
            .filter(|r| !requirement_met(r, labels))
            .collect()
    }

    /// `retries + 1`.
    pub fn max_attempts(&self) -> u32 {
        self.retries + 1
    }
}

/// Requirements a task may list at most.
pub const MAX_REQUIREMENTS: usize = 16;

/// Whether `labels` meet one requirement: `key` (any value) or `key=value`.
fn requirement_met(requirement: &str, labels: &BTreeMap<String, String>) -> bool {
    match requirement.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(requirement),
    }
}

/// Parses `requires` as written in `#[task(requires = "gpu, region=eu")]`: requirements
/// separated by commas, blanks around each and around `=` ignored.
pub fn parse_requires(text: &str) -> Result<Vec<String>, String> {
    let requires: Vec<String> = text
        .split(',')
        .map(|r| match r.split_once('=') {
            Some((key, value)) => format!("{}={}", key.trim(), value.trim()),
            None => r.trim().to_string(),
        })
        .collect();
    validate_requires(&requires)?;
    Ok(requires)
}

/// At most [`MAX_REQUIREMENTS`], each `key` or `key=value` with a key of 1 to 128 characters
/// and a value of at most 255, without control characters, none given twice.
pub fn validate_requires(requires: &[String]) -> Result<(), String> {
    if requires.len() > MAX_REQUIREMENTS {
        return Err(format!(
            "{} requirements; a task requires at most {MAX_REQUIREMENTS} labels",
            requires.len()
        ));
    }
    for (i, r) in requires.iter().enumerate() {
        let (key, value) = r.split_once('=').unwrap_or((r, ""));
        let key_ok = !key.is_empty() && key.len() <= 128 && key.trim() == key;
        let value_ok = value.len() <= 255 && value.trim() == value;
        if !key_ok || !value_ok || r.chars().any(char::is_control) {
            return Err(format!(
                "{r:?} is not a requirement: write a label's key (\"gpu\") or key=value \
                 (\"region=eu\"), a key of 1 to 128 characters and a value of at most 255"
            ));
        }
        if requires[..i].contains(r) {
            return Err(format!("{r:?} is required twice"));
        }
    }
    Ok(())
}

/// Task names: 1 to 128 characters among letters, digits and `_ - . : /`.
pub fn validate_task_name(name: &str) -> Result<(), String> {
    validate_identifier("task name", name)
}

/// Event keys (`order.paid`): the same characters as task names.
pub fn validate_event_key(key: &str) -> Result<(), String> {
    validate_identifier("event key", key)
}

/// 1 to 128 characters among letters, digits and `_ - . : /`; errors start with `what`.
fn validate_identifier(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_TASK_NAME_LEN {
        return Err(format!(
            "{what} {name:?} is longer than {MAX_TASK_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')))
    {
        return Err(format!(
            "{what} {name:?} contains {c:?}; use letters, digits and _ - . : /"
        ));
    }
    Ok(())
}

/// Priority must be 1..=10.
pub fn validate_priority(p: i128) -> Result<(), String> {
    if !(i128::from(MIN_PRIORITY)..=i128::from(MAX_PRIORITY)).contains(&p) {
        return Err(format!(
            "priority must be between {MIN_PRIORITY} and {MAX_PRIORITY} (higher runs first), got {p}"
        ));
    }
    Ok(())
}

/// Retries must be 0..=100.
pub fn validate_retries(r: i128) -> Result<(), String> {
    if !(0..=i128::from(MAX_RETRIES)).contains(&r) {
        return Err(format!(
            "retries must be between 0 and {MAX_RETRIES}, got {r}"
        ));
    }
    Ok(())
}

/// A timeout must be more than zero and at most a week.
pub fn validate_timeout(t: Duration) -> Result<(), String> {
    if t.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    if t > MAX_TIMEOUT {
        return Err(format!(
            "timeout must be at most 7d, got {}",
            crate::duration::format_duration(t)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field_and_value() {
        let mut d = TaskDef::new("send-email");
        assert!(d.validate().is_ok());
        d.priority = 11;
        let e = d.validate().unwrap_err().to_string();
        assert!(e.contains("priority") && e.contains("11"), "{e}");
        d.priority = 5;
        d.cron = Some("nope".into());
        assert!(d.validate().unwrap_err().to_string().contains("cron"));
        d.cron = None;
        d.timezone = Some("Europe/Paris".into());
        assert!(d.validate().unwrap_err().to_string().contains("timezone"));
        assert!(validate_task_name("a b").is_err());
        assert!(validate_task_name("billing.send-email").is_ok());
        assert!(validate_retries(-1).is_err());
        assert!(validate_retries(101).is_err());
        assert!(validate_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn requirements_parse_validate_and_match_labels() {
        assert_eq!(
            parse_requires(" gpu , region = eu ").unwrap(),
            vec!["gpu".to_string(), "region=eu".to_string()]
        );
        for bad in ["gpu,,eu", "=eu", "gpu, gpu", "a\u{7}b"] {
            let e = parse_requires(bad).unwrap_err();
            assert!(e.contains("require"), "{bad}: {e}");
        }
        let mut d = TaskDef::new("render");
        d.requires = vec!["gpu".into(), "region=eu".into()];
        assert!(d.validate().is_ok());
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(d
            .unmet(&labels(&[("gpu", "a100"), ("region", "eu")]))
            .is_empty());
        assert_eq!(
            d.unmet(&labels(&[("region", "us")])),
            vec!["gpu", "region=eu"]
        );
        assert_eq!(d.unmet(&labels(&[("gpu", "")])), vec!["region=eu"]);
        d.requires = vec![" gpu".into()];
        let e = d.validate().unwrap_err().to_string();
        assert!(e.contains("requires") && e.contains("\" gpu\""), "{e}");
        d.requires = (0..17).map(|i| format!("k{i}")).collect();
        assert!(d.validate().unwrap_err().to_string().contains("17"));
    }
}
