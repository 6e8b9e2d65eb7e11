//! Loading a binary's typed configuration: defaults, then a TOML file, then environment
//! variables, later ones winning.
//!
//! Every binary reads the same `retailmind.toml`, so a key one binary does not read may be
//! another's: [`SETTINGS`] lists the top-level keys of all of them, and a key of the file outside
//! it is refused, naming the key and the closest known one. Nested tables refuse unknown keys by
//! themselves (`deny_unknown_fields`). Environment variables cannot be held to that: tools and
//! tests use the `RETAILMIND_` prefix for their own variables. One that looks like a misspelt
//! setting (`RETAILMIND_BACKEND_KIND` for `RETAILMIND_BACKEND__KIND`) is logged as a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The environment variable naming the configuration file.
pub const CONFIG_VAR: &str = "RETAILMIND_CONFIG";
/// The configuration file read from the working directory when [`CONFIG_VAR`] is not set.
pub const DEFAULT_FILE: &str = "retailmind.toml";
const ENV_PREFIX: &str = "RETAILMIND_";

/// The top-level keys of every RetailMind binary's configuration (the collector's, the
/// processor's, the analytics jobs' and dashboard's). Each crate's tests check that its own keys
/// are here.
pub const SETTINGS: &[&str] = &[
    // Every binary.
    "backend",
    "commerce",
    // The collector.
    "listen",
    "keys",
    "max_body_bytes",
    "max_events_per_batch",
    "max_event_bytes",
    "validation",
    "unknown_fields",
    "rate_limit",
    "trusted_proxy_hops",
    "truncate_ip",
    "dedup_window_secs",
    "dedup_max_events",
    "dedup_max_batches",
    "max_in_flight_requests",
    "write_timeout_secs",
    "spool_dir",
    "spool_max_bytes",
    "spool_after_secs",
    "recommendations",
    "segment",
    // The processor.
    "consumer",
    "batch_size",
    "batch_window_ms",
    "idle_poll_ms",
    "min_read_interval_ms",
    "session_inactivity_minutes",
    "session_max_hours",
    "session_max_events",
    "session_lateness_hours",
    "instance_id",
    "lease_duration_ms",
    "model_name",
    "model_save_interval_ms",
    "metrics_listen",
    // The analytics jobs and the dashboard.
    "lake_bucket",
    "late_window_hours",
    "max_rows_per_file",
    "max_batch_mib",
    "dashboard",
];

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{CONFIG_VAR} names {}, which cannot be read: {reason}", path.display())]
    UnreadableFile { path: PathBuf, reason: String },
    #[error("{} sets `{key}`, which is no RetailMind setting{}", file.display(), did_you_mean(suggestion))]
    UnknownKey {
        file: PathBuf,
        key: String,
        suggestion: Option<String>,
    },
    #[error(transparent)]
    Invalid(Box<figment::Error>),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(known) => format!(" (did you mean `{known}`?)"),
        None => String::new(),
    }
}

/// Reads `T` from `retailmind.toml` in the working directory (or the file named by
/// `RETAILMIND_CONFIG`, which must exist) and from `RETAILMIND_*` environment variables; `__`
/// separates nested keys, so `RETAILMIND_BACKEND__KIND=aws` sets `backend.kind`.
pub fn load<T: DeserializeOwned + Serialize + Default>() -> Result<T, SettingsError> {
    load_from(config_file(std::env::var_os(CONFIG_VAR))?.as_deref())
}

/// The file to read, given [`CONFIG_VAR`]'s value: the one it names, which must be there, or
/// else [`DEFAULT_FILE`] if the working directory has one.
fn config_file(named: Option<std::ffi::OsString>) -> Result<Option<PathBuf>, SettingsError> {
    // Set empty is how env files and `docker run -e` unset a variable.
    match named.filter(|named| !named.is_empty()) {
        Some(named) => {
            let path = PathBuf::from(named);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(Some(path)),
                Ok(_) => Err(SettingsError::UnreadableFile {
                    path,
                    reason: "it is not a file".into(),
                }),
                Err(e) => Err(SettingsError::UnreadableFile {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
        // Only the working directory's: figment's own search would also take a
        // `retailmind.toml` from any folder above it, unannounced.
        None => Ok(Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file())),
    }
}

/// [`load`] with the file given (`None`: no file).
pub fn load_from<T: DeserializeOwned + Serialize + Default>(
    file: Option<&Path>,
) -> Result<T, SettingsError> {
    let env = || Env::prefixed(ENV_PREFIX).split("__");
    let defaults = Figment::from(Serialized::defaults(T::default()));
    let nested = nested_keys(&top_level(&defaults)?);
    let mut figment = defaults;
    if let Some(file) = file {
        let from_file = top_level(&Figment::from(Toml::file_exact(file)))?;
        if let Some((key, suggestion)) = unknown_keys(from_file.into_keys(), &nested).next() {
            return Err(SettingsError::UnknownKey {
                file: file.to_owned(),
                key,
                suggestion,
            });
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let from_env = top_level(&Figment::from(env()))?;
    for (key, suggestion) in unknown_keys(from_env.into_keys(), &nested) {
        if let Some(setting) = suggestion {
            tracing::warn!(
                variable = %format!("{ENV_PREFIX}{}", key.to_uppercase()),
                %setting,
                "ignoring an environment variable that looks like a misspelt setting (`__` nests)"
            );
        }
    }
    figment
        .merge(env())
        .extract()
        .map_err(|e| SettingsError::Invalid(Box::new(e)))
}

/// The top-level keys of `T` missing from [`SETTINGS`]: for each binary's tests, so that a
/// file setting them is not refused.
pub fn unlisted_settings<T: Serialize + Default>() -> Vec<String> {
    // JSON, not figment's values, which leave out what is `None`.
    let serde_json::Value::Object(keys) =
        serde_json::to_value(T::default()).expect("defaults serialize")
    else {
        panic!("the configuration is not a table");
    };
    keys.into_iter()
        .map(|(key, _)| key)
        .filter(|key| !SETTINGS.contains(&key.as_str()))
        .collect()
}

fn top_level(figment: &Figment) -> Result<BTreeMap<String, Value>, SettingsError> {
    figment
        .extract()
        .map_err(|e| SettingsError::Invalid(Box::new(e)))
}

/// `table.key` for every key of every table among `settings`.
fn nested_keys(settings: &BTreeMap<String, Value>) -> Vec<String> {
    settings
        .iter()
        .filter_map(|(table, value)| Some((table, value.as_dict()?)))
        .flat_map(|(table, keys)| keys.keys().map(move |key| format!("{table}.{key}")))
        .collect()
}

/// The keys that are no setting, each with the setting it most likely meant: a table's key
/// written with one `_` where nesting takes `__` (`backend_kind` for `backend.kind`, among
/// `nested`), or a known key a typo or two away.
fn unknown_keys<'a>(
    keys: impl Iterator<Item = String> + 'a,
    nested: &'a [String],
) -> impl Iterator<Item = (String, Option<String>)> + 'a {
    keys.filter(|key| !SETTINGS.contains(&key.as_str()))
        .map(move |key| {
            let flat = |path: &&String| path.replace('.', "_") == key;
            let near = || {
                SETTINGS
                    .iter()
                    .map(|known| (edit_distance(&key, known), *known))
                    .filter(|&(distance, known)| distance <= 2 && distance < known.len() / 3)
                    .min()
                    .map(|(_, known)| known.to_owned())
            };
            let suggestion = nested.iter().find(flat).cloned().or_else(near);
            (key, suggestion)
        })
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendConfig;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default)]
    struct Sample {
        backend: BackendConfig,
        truncate_ip: bool,
    }

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retailmind.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn refused(text: &str) -> (String, Option<String>, String) {
        let (_dir, path) = file_with(text);
        match load_from::<Sample>(Some(&path)) {
            Err(e @ SettingsError::UnknownKey { .. }) => {
                let message = e.to_string();
                let SettingsError::UnknownKey {
                    key, suggestion, ..
                } = e
                else {
                    unreachable!()
                };
                (key, suggestion, message)
            }
            other => panic!("{text:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_key_of_the_file_that_no_binary_reads_is_refused_with_the_closest_setting() {
        let (key, suggestion, message) = refused("truncate_ips = true\n");
        assert_eq!(
            (key.as_str(), suggestion.as_deref()),
            ("truncate_ips", Some("truncate_ip"))
        );
        assert!(
            message.contains(
                "sets `truncate_ips`, which is no RetailMind setting (did you mean `truncate_ip`?)"
            ),
            "{message}"
        );

        let (key, suggestion, _) = refused("backend_kind = \"aws\"\n");
        assert_eq!(
            (key.as_str(), suggestion.as_deref()),
            ("backend_kind", Some("backend.kind"))
        );

        let (key, suggestion, message) = refused("colour = \"blue\"\n");
        assert_eq!((key.as_str(), suggestion), ("colour", None));
        assert!(
            message.ends_with("which is no RetailMind setting"),
            "{message}"
        );
    }

    #[test]
    fn a_key_another_binary_reads_is_left_to_it() {
        let (_dir, path) = file_with(
            "truncate_ip = true\nconsumer = \"sessions\"\n[dashboard]\nrefresh_secs = 5\n",
        );
        let sample: Sample = load_from(Some(&path)).unwrap();
        assert!(sample.truncate_ip);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let (_dir, path) = file_with("truncate_ip = \"often\"\n");
        let message = load_from::<Sample>(Some(&path)).unwrap_err().to_string();
        assert!(message.contains("truncate_ip"), "{message}");
    }

    #[test]
    fn the_file_named_must_be_there_and_empty_names_none() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("prod.toml");
        let message = config_file(Some(missing.clone().into_os_string()))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "RETAILMIND_CONFIG names {}, which cannot be read",
                missing.display()
            )),
            "{message}"
        );
        let message = config_file(Some(dir.path().as_os_str().to_owned()))
            .unwrap_err()
            .to_string();
        assert!(message.ends_with("it is not a file"), "{message}");
        let (_dir, path) = file_with("");
        assert_eq!(
            config_file(Some(path.clone().into_os_string())).unwrap(),
            Some(path)
        );
        // As if unset: the working directory's retailmind.toml, if any.
        assert_eq!(
            config_file(Some("".into())).unwrap(),
            config_file(None).unwrap()
        );
    }

    #[test]
    fn a_variable_is_taken_for_a_misspelt_setting_only_when_it_looks_like_one() {
        let nested = vec!["backend.kind".to_owned(), "dashboard.assets_dir".to_owned()];
        let judged: Vec<_> = unknown_keys(
            [
                "backend_kind",
                "consumr",
                "dashboard_assets",
                "python",
                "config",
                "listen",
            ]
            .map(String::from)
            .into_iter(),
            &nested,
        )
        .collect();
        assert_eq!(
            judged,
            [
                ("backend_kind".to_owned(), Some("backend.kind".to_owned())),
                ("consumr".to_owned(), Some("consumer".to_owned())),
                ("dashboard_assets".to_owned(), None),
                ("python".to_owned(), None),
                ("config".to_owned(), None),
            ]
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("truncate_ips", "truncate_ip"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
