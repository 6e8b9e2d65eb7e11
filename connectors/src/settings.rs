//! Loading a binary's typed configuration: defaults, then a TOML file, then environment
//! variables, later ones winning.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `T` from `retailmind.toml` (or the file named by `RETAILMIND_CONFIG`) and from
/// `RETAILMIND_*` environment variables; `__` separates nested keys, so
/// `RETAILMIND_BACKEND__KIND=aws` sets `backend.kind`.
pub fn load<T: DeserializeOwned + Serialize + Default>() -> Result<T, Box<figment::Error>> {
    let file = std::env::var_os("RETAILMIND_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("retailmind.toml"));
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::file(file))
        .merge(Env::prefixed("RETAILMIND_").split("__"))
        .extract()
        .map_err(Box::new)
}

/// A numeric setting outside the range its service can run with, named as in `retailmind.toml`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} is {value}: it must be between {min} and {max}")]
pub struct OutOfRange {
    pub field: &'static str,
    pub value: i64,
    pub min: i64,
    pub max: i64,
}

/// The first of `(field, value, min, max)` whose value is outside `min..=max`.
pub fn check_ranges(ranges: &[(&'static str, i64, i64, i64)]) -> Result<(), OutOfRange> {
    match ranges
        .iter()
        .find(|(_, value, min, max)| !(min..=max).contains(&value))
    {
        Some(&(field, value, min, max)) => Err(OutOfRange {
            field,
            value,
            min,
            max,
        }),
        None => Ok(()),
    }
}

/// A setting's count as the `i64` that [`check_ranges`] compares (saturating, never wrapping).
pub fn count(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}
