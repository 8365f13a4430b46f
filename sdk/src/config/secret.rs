//! [`Secret`]: a string that never prints.

use std::fmt;

/// A secret string, such as an API token: `Debug` and `Display` print `***`.
///
/// The value is only reachable through [`Secret::expose`], so that it does not end up in logs
/// by accident.
///
/// ```
/// use owlclaw::config::Secret;
/// let token = Secret::new("s3cret");
/// assert_eq!(token.expose(), "s3cret");
/// assert_eq!(format!("{token} {token:?}"), "*** ***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}
