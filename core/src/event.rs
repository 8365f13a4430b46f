//! Durable event waits: which pushed events a wait takes, and how its step is named.
//!
//! A run waiting with `ctx.wait_for_event(key, filter, timeout)` takes the first event of `key`
//! (in the order they were stored) that was pushed at or after the run was created, whose
//! payload matches `filter`, and that no earlier wait of the same run took. Events pushed before
//! the wait started are therefore not lost: the window opens when the run is created.

use serde_json::Value;

/// The highest step position a wait may report (as many steps as a run can have).
pub const MAX_POSITION: u32 = 100_000;

/// The name of the durable step of a wait for `key`.
pub fn wait_step_name(key: &str) -> String {
    format!("wait_for_event:{key}")
}

/// Checks a wait's filter: null, or a JSON object.
pub fn validate_filter(filter: &Value) -> Result<(), String> {
    match filter {
        Value::Null | Value::Object(_) => Ok(()),
        other => Err(format!(
            "{other} is not a JSON object: name the payload fields to match, as {{\"order_id\": 42}}"
        )),
    }
}

/// Whether `payload` matches `filter`: every field the filter names is in the payload with an
/// equal value; a nested object in the filter matches the fields it names of the payload's
/// object at that field. Null and `{}` match every payload.
pub fn matches(filter: &Value, payload: &Value) -> bool {
    match filter {
        Value::Null => true,
        Value::Object(fields) => fields.iter().all(|(name, want)| {
            let Some(got) = payload.get(name) else {
                return false;
            };
            match want {
                Value::Object(_) => got.is_object() && matches(want, got),
                _ => got == want,
            }
        }),
        _ => filter == payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filter_matches_the_fields_it_names_and_ignores_the_others() {
        let payload =
            json!({"order_id": 42, "amount": 10, "customer": {"id": "c1", "tier": "gold"}});
        assert!(matches(&Value::Null, &payload));
        assert!(matches(&json!({}), &payload));
        assert!(matches(&json!({"order_id": 42}), &payload));
        assert!(matches(&json!({"customer": {"id": "c1"}}), &payload));
        assert!(!matches(&json!({"order_id": 43}), &payload));
        assert!(!matches(&json!({"order_id": "42"}), &payload));
        assert!(!matches(&json!({"missing": null}), &payload));
        assert!(!matches(&json!({"customer": {"id": "c2"}}), &payload));
        assert!(!matches(&json!({"amount": {"gt": 5}}), &payload));
        assert!(!matches(&json!({"order_id": 42}), &json!([1, 2])));
        // Arrays compare whole.
        assert!(matches(&json!({"tags": [1, 2]}), &json!({"tags": [1, 2]})));
        assert!(!matches(&json!({"tags": [1]}), &json!({"tags": [1, 2]})));
    }

    #[test]
    fn a_filter_must_be_an_object_or_null() {
        assert!(validate_filter(&Value::Null).is_ok());
        assert!(validate_filter(&json!({"a": {"b": 1}})).is_ok());
        let e = validate_filter(&json!([1])).unwrap_err();
        assert!(e.contains("[1] is not a JSON object"), "{e}");
        let e = validate_filter(&json!("order")).unwrap_err();
        assert!(e.contains("\"order\" is not a JSON object"), "{e}");
    }
}
