//! Limits on what is stored, shared by the engine (which enforces them) and the worker (which
//! applies the same rule before sending, so an oversized report never reaches the server's body
//! limit). Documented in the README ("Limits").

use crate::{Error, Result};
use serde_json::{json, Value};

/// Largest run input, serialized: 1 MiB.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Largest stored output (run or step), serialized: 1 MiB. A larger one is replaced by a marker.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Longest stored error message: 16 KiB. A longer one is cut, with a marker.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Refuses an input larger than [`MAX_INPUT_BYTES`].
pub fn check_input(input: &Value) -> Result<()> {
    let len = serde_json::to_string(input).map(|s| s.len()).unwrap_or(0);
    if len > MAX_INPUT_BYTES {
        return Err(Error::invalid_input(
            "input",
            format!("{len} bytes of JSON; at most {MAX_INPUT_BYTES} (store large payloads elsewhere and pass a reference)"),
        ));
    }
    Ok(())
}

/// The key that marks a truncated output.
pub const TRUNCATED_MARKER: &str = "owlclaw_truncated";

/// An output larger than [`MAX_OUTPUT_BYTES`] becomes
/// `{"owlclaw_truncated": true, "bytes": N, "preview": "<first 1 KiB>"}`. NUL characters (which
/// PostgreSQL can't store in text) become U+FFFD on every store, so both stores keep the same.
pub fn bound_output(output: Value) -> Value {
    let output = without_nul(output);
    let text = serde_json::to_string(&output).unwrap_or_default();
    if text.len() <= MAX_OUTPUT_BYTES {
        return output;
    }
    json!({ TRUNCATED_MARKER: true, "bytes": text.len(), "preview": cut(&text, 1024) })
}

/// The size of the original output when `output` is the marker of a truncated one.
pub fn truncated_bytes(output: &Value) -> Option<u64> {
    let obj = output.as_object()?;
    if obj.get(TRUNCATED_MARKER)? != &Value::Bool(true) {
        return None;
    }
    obj.get("bytes")?.as_u64()
}

/// An error longer than [`MAX_ERROR_BYTES`] is cut and ends with `… [truncated, N bytes in all]`;
/// NUL characters become U+FFFD.
pub fn bound_error(error: &str) -> String {
    let replaced;
    let error = if error.contains('\0') {
        replaced = error.replace('\0', "\u{FFFD}");
        replaced.as_str()
    } else {
        error
    };
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_string();
    }
    format!(
        "{}… [truncated, {} bytes in all]",
        cut(error, MAX_ERROR_BYTES),
        error.len()
    )
}

/// Refuses text holding a NUL character: PostgreSQL can't store it, so neither store takes it.
pub fn check_text(field: &str, text: &str) -> Result<()> {
    match text.find('\0') {
        Some(at) => Err(Error::invalid_input(
            field,
            format!("contains a NUL character (byte {at}); text may not contain NUL"),
        )),
        None => Ok(()),
    }
}

/// Refuses JSON holding a NUL character in any string or key.
pub fn check_json(field: &str, value: &Value) -> Result<()> {
    if has_nul(value) {
        return Err(Error::invalid_input(
            field,
            "contains a NUL character (\\u0000) in a string; JSON text may not contain NUL",
        ));
    }
    Ok(())
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(value: Value) -> Value {
    if !has_nul(&value) {
        return value;
    }
    let fix = |s: String| s.replace('\0', "\u{FFFD}");
    match value {
        Value::String(s) => Value::String(fix(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (fix(k), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_and_outputs_are_bounded_with_a_marker() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bound_error(&long);
        assert!(cut.len() < MAX_ERROR_BYTES + 64);
        assert!(cut.ends_with(&format!("[truncated, {} bytes in all]", long.len())));
        assert_eq!(bound_error("short"), "short");
        let big = Value::String("x".repeat(MAX_OUTPUT_BYTES + 1));
        let b = bound_output(big);
        assert_eq!(b["owlclaw_truncated"], true);
        assert_eq!(b["preview"].as_str().unwrap().len(), 1024);
        assert_eq!(bound_output(json!({"a": 1})), json!({"a": 1}));
        assert!(check_input(&Value::String("y".repeat(MAX_INPUT_BYTES))).is_err());
        assert!(check_input(&json!([1, 2])).is_ok());
        assert_eq!(truncated_bytes(&b), Some(MAX_OUTPUT_BYTES as u64 + 3));
        assert_eq!(truncated_bytes(&json!({"a": 1})), None);
    }

    #[test]
    fn nul_is_refused_in_input_and_replaced_in_output() {
        assert!(check_text("task", "a\0b")
            .unwrap_err()
            .to_string()
            .contains("task"));
        assert!(check_text("task", "ab").is_ok());
        assert!(check_json("input", &json!({"k": ["x\0"]})).is_err());
        assert!(check_json("input", &json!({"k\0": 1})).is_err());
        assert!(check_json("input", &json!({"k": "fine"})).is_ok());
        assert_eq!(
            bound_output(json!({"k\0": "a\0"})),
            json!({"k\u{FFFD}": "a\u{FFFD}"})
        );
        assert_eq!(bound_error("a\0b"), "a\u{FFFD}b");
    }
}
