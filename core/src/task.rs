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
    /// What its cron does when a tick comes while the last tick's run is unfinished (`allow`
    /// when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<crate::cron::Overlap>,
    /// What its cron does with ticks missed while no engine ran (`latest` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<crate::cron::CatchUp>,
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
    /// How many runs may run at once, per key taken from the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The rate limit each attempt spends units of (not together with `concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::ratelimit::RateLimitUse>,
    /// How long after it is due a run of this task may wait to start: past it, it ends
    /// `cancelled` with error `expired` (Celery's `expires`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::serde_human::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "1h"))]
    pub expires: Option<Duration>,
    /// Set for a workflow: its DAG of tasks. No worker claims a workflow's own runs; the engine
    /// runs its tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<crate::workflow::WorkflowShape>,
}

/// Why a task's rate limit may not have its own key beside a concurrency limit.
pub const BOTH_LIMITS_KEY: &str =
    "beside a concurrency limit, a rate limit's key must be absent (one bucket for the whole \
     task) or the concurrency key: a run is claimed under one key";

/// Checks that a task may have both limits: the rate limit's key, if it has one, is the
/// concurrency key's path (the same text).
pub fn check_both_limits(
    concurrency: &Concurrency,
    rate_limit: &crate::ratelimit::RateLimitUse,
) -> Result<(), String> {
    match (&rate_limit.key, &concurrency.key) {
        (None, _) => Ok(()),
        (Some(r), Some(c)) if r == c => Ok(()),
        (Some(r), c) => Err(format!(
            "rate limit key {r:?} with concurrency key {}: {BOTH_LIMITS_KEY}",
            c.as_deref()
                .map_or_else(|| "none".to_string(), |c| format!("{c:?}"))
        )),
    }
}

/// Most runs of one concurrency key that may run at once.
pub const MAX_CONCURRENCY: u32 = 10_000;

/// A concurrency limit: at most `max` runs of a task with the same key run at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Runs of one key that may run at once (claimed by workers and not finished): 1 to 10000.
    #[serde(deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub max: u32,
    /// Where the key is in the input: a field path (`customer_id`, `customer.id`) or a JSON
    /// pointer (`/customer/id`). Absent: every run of the task shares one key (a limit on the
    /// task). A run whose input lacks the field, or has null there, gets the empty key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub key: Option<String>,
    /// What a run over the limit does.
    #[serde(default)]
    pub strategy: ConcurrencyStrategy,
}

/// What happens to a run whose key is at its limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyStrategy {
    /// It waits in the queue; keys take turns (round-robin), so a key with many queued runs
    /// does not hold back one with few.
    #[default]
    Queue,
    /// It is started, and the oldest runs of its key that are queued or running are cancelled
    /// to make room (the newest work wins, as a debounce).
    CancelInProgress,
    /// It is cancelled at once when its key already has `max` runs queued or running.
    CancelNewest,
}

impl ConcurrencyStrategy {
    /// Parses the name written in `#[task(concurrency_strategy = "...")]`.
    pub fn parse(name: &str) -> Result<ConcurrencyStrategy, String> {
        match name {
            "queue" => Ok(ConcurrencyStrategy::Queue),
            "cancel_in_progress" => Ok(ConcurrencyStrategy::CancelInProgress),
            "cancel_newest" => Ok(ConcurrencyStrategy::CancelNewest),
            other => Err(format!(
                "{other:?} is not a concurrency strategy: use \"queue\", \"cancel_in_progress\" or \"cancel_newest\""
            )),
        }
    }

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyStrategy::Queue => "queue",
            ConcurrencyStrategy::CancelInProgress => "cancel_in_progress",
            ConcurrencyStrategy::CancelNewest => "cancel_newest",
        }
    }
}

impl Concurrency {
    /// Checks the limit and the key's path; errors name the value.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CONCURRENCY).contains(&self.max) {
            return Err(format!(
                "max {}: a concurrency limit is 1 to {MAX_CONCURRENCY} runs",
                self.max
            ));
        }
        if let Some(k) = &self.key {
            validate_key_path(k)?;
        }
        Ok(())
    }

    /// The key of a run with this input: the value at the key's path (a string as is, other
    /// values as JSON text), or the empty key when the path is absent, missing or null.
    pub fn key_of(&self, input: &serde_json::Value) -> String {
        key_at(self.key.as_deref(), input)
    }
}

/// The value at `path` in `input` as a limit's key: a string as is, other values as JSON text,
/// the empty key when there is no path or the value is missing or null.
pub fn key_at(path: Option<&str>, input: &serde_json::Value) -> String {
    let Some(path) = path else {
        return String::new();
    };
    let found = if path.starts_with('/') {
        input.pointer(path)
    } else {
        path.split('.').try_fold(input, |v, field| v.get(field))
    };
    match found {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A concurrency key's path: a JSON pointer (`/a/b`) or dotted field names (`a.b`), 1 to 255
/// characters, no empty field name.
pub fn validate_key_path(path: &str) -> Result<(), String> {
    let fields: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => path.split('.').collect(),
    };
    if path.is_empty()
        || path.len() > 255
        || path.chars().any(char::is_control)
        || fields.iter().any(|f| f.is_empty())
    {
        return Err(format!(
            "{path:?} is not a key path: name an input field (\"customer_id\", \"customer.id\") \
             or write a JSON pointer (\"/customer/id\"), 1 to 255 characters"
        ));
    }
    Ok(())
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
            overlap: None,
            catch_up: None,
            requires: Vec::new(),
            on_event: None,
            concurrency: None,
            rate_limit: None,
            expires: None,
            workflow: None,
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
        } else if self.overlap.is_some() {
            return bad(
                "overlap",
                "an overlap policy needs a cron expression".into(),
            );
        } else if self.catch_up.is_some() {
            return bad(
                "catch_up",
                "a catch-up policy needs a cron expression".into(),
            );
        }
        if let Err(e) = validate_requires(&self.requires) {
            return bad("requires", e);
        }
        if let Some(Err(e)) = self.on_event.as_deref().map(validate_event_key) {
            return bad("on_event", e);
        }
        if let Some(Err(e)) = self.concurrency.as_ref().map(Concurrency::validate) {
            return bad("concurrency", e);
        }
        if let Some(r) = &self.rate_limit {
            if let Err(e) = r.validate() {
                return bad("rate_limit", e);
            }
            if let Some(Err(e)) = self.concurrency.as_ref().map(|c| check_both_limits(c, r)) {
                return bad("rate_limit", e);
            }
        }
        if let Some(w) = &self.workflow {
            if let Err(e) = w.validate(&self.name) {
                return bad("workflow", e);
            }
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
pub(crate) fn validate_identifier(what: &str, name: &str) -> Result<(), String> {
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
    fn a_task_has_both_limits_when_its_rate_limit_is_unkeyed_or_keyed_alike() {
        let mut def = TaskDef::new("notify");
        def.concurrency = Some(Concurrency {
            max: 1,
            key: Some("customer".into()),
            strategy: ConcurrencyStrategy::Queue,
        });
        let rate = |key: Option<&str>| crate::ratelimit::RateLimitUse {
            name: "mailer".into(),
            units: 1,
            key: key.map(str::to_owned),
        };
        for ok in [None, Some("customer")] {
            def.rate_limit = Some(rate(ok));
            assert!(def.validate().is_ok(), "{ok:?}");
        }
        def.rate_limit = Some(rate(Some("region")));
        let err = def.validate().unwrap_err();
        assert!(
            matches!(&err, crate::Error::InvalidInput { field, message } if field == "rate_limit"
                && message.starts_with("rate limit key \"region\" with concurrency key \"customer\"")),
            "{err:?}"
        );
        def.concurrency.as_mut().unwrap().key = None;
        assert!(
            def.validate().is_err(),
            "a keyed rate limit beside an unkeyed concurrency limit"
        );
    }

    #[test]
    fn a_concurrency_key_is_read_from_a_field_path_or_a_pointer() {
        let input = serde_json::json!({"customer_id": "c-1", "order": {"shop": 7}, "n": null});
        let limit = |key: Option<&str>| Concurrency {
            max: 2,
            key: key.map(str::to_owned),
            strategy: ConcurrencyStrategy::Queue,
        };
        assert_eq!(limit(Some("customer_id")).key_of(&input), "c-1");
        assert_eq!(limit(Some("order.shop")).key_of(&input), "7");
        assert_eq!(limit(Some("/order/shop")).key_of(&input), "7");
        assert_eq!(limit(Some("order")).key_of(&input), r#"{"shop":7}"#);
        assert_eq!(limit(Some("n")).key_of(&input), "");
        assert_eq!(limit(Some("missing.field")).key_of(&input), "");
        assert_eq!(limit(None).key_of(&input), "");
        assert!(limit(Some("a..b"))
            .validate()
            .unwrap_err()
            .contains("\"a..b\" is not a key path"));
        assert!(limit(Some("/")).validate().is_err());
        let e = Concurrency {
            max: 0,
            ..limit(None)
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("max 0"), "{e}");
        assert_eq!(
            ConcurrencyStrategy::parse("cancel_newest"),
            Ok(ConcurrencyStrategy::CancelNewest)
        );
        assert!(ConcurrencyStrategy::parse("fifo")
            .unwrap_err()
            .contains("\"fifo\" is not a concurrency strategy"));
    }

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
