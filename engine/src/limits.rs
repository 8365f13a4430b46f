//! Size limits that keep a run's snapshot bounded. Documented in the README ("Limits").

use owlclaw_core::{Error, Result};
use serde_json::{json, Value};

/// Largest run input, serialized: 1 MiB.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Largest stored output (run or step), serialized: 1 MiB. A larger one is replaced by a marker.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Longest stored error message: 16 KiB. A longer one is cut, with a marker.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Refuses an input larger than [`MAX_INPUT_BYTES`].
pub(crate) fn check_input(input: &Value) -> Result<()> {
    let len = serde_json::to_string(input).map(|s| s.len()).unwrap_or(0);
    if len > MAX_INPUT_BYTES {
        return Err(Error::invalid_input(
            "input",
            format!("{len} bytes of JSON; at most {MAX_INPUT_BYTES} (store large payloads elsewhere and pass a reference)"),
        ));
    }
    Ok(())
}

/// An output larger than [`MAX_OUTPUT_BYTES`] becomes
/// `{"owlclaw_truncated": true, "bytes": N, "preview": "<first 1 KiB>"}`.
pub(crate) fn bound_output(output: Value) -> Value {
    let text = serde_json::to_string(&output).unwrap_or_default();
    if text.len() <= MAX_OUTPUT_BYTES {
        return output;
    }
    json!({ "owlclaw_truncated": true, "bytes": text.len(), "preview": cut(&text, 1024) })
}

/// An error longer than [`MAX_ERROR_BYTES`] is cut and ends with `… [truncated, N bytes in all]`.
pub(crate) fn bound_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_string();
    }
    format!(
        "{}… [truncated, {} bytes in all]",
        cut(error, MAX_ERROR_BYTES),
        error.len()
    )
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
    }
}
