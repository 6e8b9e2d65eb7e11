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
