//! Integers in JSON request bodies. JSON Schema (and so the API document) calls `1.0` an integer:
//! a number with no fractional part. These deserializers accept it, and refuse `1.5` or a value out
//! of the field's range with a message that quotes the value. Use with
//! `#[serde(deserialize_with = "crate::int::de")]` (or `crate::int::de_opt` for `Option`).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

struct IntVisitor<T>(PhantomData<T>);

impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::custom(format!("{v} is not an integer")));
        }
        if v >= 0.0 && v < u64::MAX as f64 {
            self.visit_u64(v as u64)
        } else if v < 0.0 && v >= i64::MIN as f64 {
            self.visit_i64(v as i64)
        } else {
            Err(E::custom(format!("{v} is out of range")))
        }
    }
}

/// Reads an integer, also written as a float with no fractional part (`3.0`).
pub fn de<'de, D: Deserializer<'de>, T: TryFrom<i64> + TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(IntVisitor(PhantomData))
}

/// The same for an optional field (`null` or absent is `None`).
pub fn de_opt<'de, D: Deserializer<'de>, T: TryFrom<i64> + TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct OptVisitor<T>(PhantomData<T>);
    impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for OptVisitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            de(d).map(Some)
        }
    }
    d.deserialize_option(OptVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct S {
        #[serde(deserialize_with = "super::de")]
        n: u8,
        #[serde(default, deserialize_with = "super::de_opt")]
        o: Option<i64>,
    }

    fn parse(json: &str) -> Result<S, String> {
        serde_json::from_str::<S>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_are_refused() {
        assert_eq!(parse(r#"{"n": 3}"#).unwrap().n, 3);
        assert_eq!(parse(r#"{"n": 3.0}"#).unwrap().n, 3);
        assert_eq!(parse(r#"{"n": 1, "o": -2.0}"#).unwrap().o, Some(-2));
        assert_eq!(parse(r#"{"n": 1, "o": null}"#).unwrap().o, None);
        assert_eq!(parse(r#"{"n": 1}"#).unwrap().o, None);
        assert!(parse(r#"{"n": 1.5}"#)
            .unwrap_err()
            .contains("1.5 is not an integer"));
        assert!(parse(r#"{"n": 256}"#)
            .unwrap_err()
            .contains("256 is out of range"));
        assert!(parse(r#"{"n": -1}"#).unwrap_err().contains("out of range"));
        assert!(parse(r#"{"n": "3"}"#).unwrap_err().contains("an integer"));
        assert!(parse(r#"{"n": 1, "o": 0.5}"#).is_err());
    }
}
