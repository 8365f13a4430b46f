//! The shape of `owlclaw.yaml` as serde structs. Unknown keys are errors (`deny_unknown_fields`),
//! and every value is read as text (a YAML number is written back as text) to be parsed and
//! checked afterwards, so that `heartbeat: "30"` and `heartbeat: 30` get the same error.
//!
//! Empty values never reach these structs: the providers leave them out (see `providers.rs`).

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// The top level of `owlclaw.yaml`. The environment variables give the same shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
pub(super) struct FileConfig {
    #[serde(default, deserialize_with = "string")]
    pub(super) mode: Option<String>,
    #[serde(default, deserialize_with = "string")]
    pub(super) server_url: Option<String>,
    #[serde(default, deserialize_with = "string")]
    pub(super) api_token: Option<String>,
    #[serde(default, deserialize_with = "string")]
    pub(super) namespace: Option<String>,
    #[serde(default, deserialize_with = "string")]
    pub(super) database_url: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) retention: Option<String>,
    #[serde(default, deserialize_with = "worker")]
    pub(super) worker: WorkerFile,
    #[serde(default, deserialize_with = "tls")]
    pub(super) tls: TlsFile,
}

/// The `worker:` map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkerFile {
    #[serde(default, deserialize_with = "whole_number")]
    pub(super) slots: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) shutdown_grace: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) heartbeat: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) lease: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub(super) suspend_threshold: Option<String>,
}

/// The `tls:` map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    #[serde(default, deserialize_with = "string")]
    pub(super) ca_file: Option<String>,
}

fn worker<'de, D: Deserializer<'de>>(d: D) -> Result<WorkerFile, D::Error> {
    d.deserialize_map(Section(PhantomData, "a mapping of worker settings"))
}

fn tls<'de, D: Deserializer<'de>>(d: D) -> Result<TlsFile, D::Error> {
    d.deserialize_map(Section(PhantomData, "a mapping of TLS settings"))
}

/// A section (`worker:`, `tls:`) from a mapping only: serde's derived `Deserialize` would also
/// take a sequence of the values in order (`worker: [4, 30s]`).
struct Section<T>(PhantomData<T>, &'static str);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Section<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(Scalar("a string")).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(Scalar("a duration such as \"30s\""))
        .map(Some)
}

fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(Scalar("a whole number")).map(Some)
}

/// Reads a string or a number as text; anything else is a type error expecting `.0`.
struct Scalar(&'static str);

impl Visitor<'_> for Scalar {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}
