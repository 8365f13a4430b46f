//! `${VAR}` and `${VAR:-default}` in the string values of the YAML file.
//!
//! The expansion itself is `shellexpand`'s. Around it, this module keeps the documented rules that
//! a shell's syntax does not have: only the braced forms are references (a bare `$name` or `$$`
//! stays as written, so that a password holding `$` is safe), `$${` writes a literal `${`, a
//! malformed reference or a default holding `${` is an error, and an unset variable without a
//! default is an error naming it.

use std::cell::Cell;

/// The environment, as the public functions take it: `None` for an unset variable.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a string value could not be substituted. `reference` is the text as written (`${NAME}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SubstError {
    /// `${` without a closing `}`.
    Unclosed { reference: String },
    /// The name is empty or not made of letters, digits and `_` (not starting with a digit).
    BadName { reference: String },
    /// The default of `${NAME:-...}` holds `${`: substitutions do not nest.
    NestedDefault { name: String, reference: String },
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset { name: String, reference: String },
}

impl SubstError {
    /// The reference as written, to find its line in the file.
    pub(super) fn reference(&self) -> &str {
        match self {
            SubstError::Unclosed { reference }
            | SubstError::BadName { reference }
            | SubstError::NestedDefault { reference, .. }
            | SubstError::Unset { reference, .. } => reference,
        }
    }
}

/// One `${...}` found in a value, in order.
struct Reference<'t> {
    text: &'t str,
    has_default: bool,
}

/// Substitutes the references of one string value. A value without `$` is returned as it is.
pub(super) fn substitute(value: &str, env: Env<'_>) -> Result<String, SubstError> {
    if !value.contains('$') {
        return Ok(value.to_owned());
    }
    let (escaped, references) = escape_and_check(value)?;
    // `shellexpand` asks for each `${...}` in order: the index tells which reference is asked
    // about, hence whether it has a default.
    let index = Cell::new(0);
    let expanded = shellexpand::env_with_context(&escaped, |name: &str| {
        let has_default = references.get(index.get()).is_some_and(|r| r.has_default);
        index.set(index.get() + 1);
        match env(name) {
            // Set but empty: the default if there is one, else the empty value.
            Some(value) if value.is_empty() && has_default => Ok(None),
            Some(value) => Ok(Some(value)),
            None => Err(()),
        }
    });
    match expanded {
        Ok(text) => Ok(text.into_owned()),
        Err(err) => Err(SubstError::Unset {
            reference: index
                .get()
                .checked_sub(1)
                .and_then(|i| references.get(i))
                .map_or_else(|| format!("${{{}}}", err.var_name), |r| r.text.to_owned()),
            name: err.var_name,
        }),
    }
}

/// Checks every `${...}` of `value`, and writes it for `shellexpand`: a `$` that does not start a
/// reference is doubled (its escape), and `$${` is kept (it becomes `${`).
fn escape_and_check(value: &str) -> Result<(String, Vec<Reference<'_>>), SubstError> {
    let mut escaped = String::with_capacity(value.len() + 8);
    let mut references = Vec::new();
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        escaped.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if rest.starts_with("$${") {
            escaped.push_str("$${");
            rest = &rest[3..];
        } else if rest.starts_with("${") {
            let Some(end) = rest.find('}') else {
                return Err(SubstError::Unclosed {
                    reference: rest.to_owned(),
                });
            };
            let text = &rest[..=end];
            let (name, default) = match rest[2..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&rest[2..end], None),
            };
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(SubstError::BadName {
                    reference: text.to_owned(),
                });
            }
            if default.is_some_and(|d| d.contains("${")) {
                return Err(SubstError::NestedDefault {
                    name: name.to_owned(),
                    reference: text.to_owned(),
                });
            }
            references.push(Reference {
                text,
                has_default: default.is_some(),
            });
            escaped.push_str(text);
            rest = &rest[end + 1..];
        } else {
            escaped.push_str("$$");
            rest = &rest[1..];
        }
    }
    escaped.push_str(rest);
    Ok((escaped, references))
}

/// The number (from 1) of the first line of `text` that holds `reference` outside a comment.
pub(super) fn line_of(text: &str, reference: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(index, line)| {
        let at = line.find(reference)?;
        let comment = line
            .match_indices('#')
            .map(|(c, _)| c)
            .find(|&c| c == 0 || line[..c].ends_with([' ', '\t']));
        comment.is_none_or(|c| c > at).then_some(index + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn only_braced_references_are_substituted() {
        let env = |name: &str| (name == "X" || name == "x").then(|| "value".to_owned());
        assert_eq!(
            substitute("${X} $${X} $$ $x $", &env).unwrap(),
            "value ${X} $$ $x $"
        );
        assert_eq!(substitute("$$${X}", &env).unwrap(), "$${X}");
        assert_eq!(substitute("no dollar", &no_env).unwrap(), "no dollar");
    }

    #[test]
    fn defaults_replace_unset_and_empty_variables() {
        let env = |name: &str| (name == "EMPTY").then(String::new);
        assert_eq!(substitute("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(substitute("${UNSET:-a:-b}", &env).unwrap(), "a:-b");
        assert_eq!(substitute("${EMPTY}", &env).unwrap(), "");
        assert_eq!(substitute("[${EMPTY}${UNSET:-}]", &env).unwrap(), "[]");
    }

    #[test]
    fn substitution_is_not_recursive() {
        let env = |name: &str| (name == "A").then(|| "${B}".to_owned());
        assert_eq!(substitute("x: ${A}", &env).unwrap(), "x: ${B}");
        let err = substitute("x: ${A:-${B}}", &no_env).unwrap_err();
        assert!(matches!(err, SubstError::NestedDefault { ref name, .. } if name == "A"));
    }

    #[test]
    fn syntax_errors_and_unset_variables() {
        assert_eq!(
            substitute("${OPEN", &no_env).unwrap_err(),
            SubstError::Unclosed {
                reference: "${OPEN".into()
            }
        );
        for bad in ["${1BAD}", "${}", "${:-x}", "${A B}"] {
            let err = substitute(bad, &no_env).unwrap_err();
            assert_eq!(err.reference(), bad);
            assert!(matches!(err, SubstError::BadName { .. }), "{bad}");
        }
        let env = |name: &str| (name == "SET").then(|| "v".to_owned());
        assert_eq!(
            substitute("${SET}/${NOPE}", &env).unwrap_err(),
            SubstError::Unset {
                name: "NOPE".into(),
                reference: "${NOPE}".into()
            }
        );
    }

    #[test]
    fn line_of_skips_comments() {
        let text = "# a: ${T}\nb: 1 # ${T}\nc: \"x#${T}\"\nd: ${T}\n";
        assert_eq!(line_of(text, "${T}"), Some(3));
        assert_eq!(line_of("a: 1\n", "${T}"), None);
        assert_eq!(line_of("a: 1\nb: ${T} # ${T}\n", "${T}"), Some(2));
    }
}
