//! The tracker's settings as the page passes them to `init(config)`, and the rules they follow.
//!
//! Pure: the JS object is decoded in `api.rs`; everything here builds and tests natively.

use std::fmt;

use serde::Deserialize;

/// Events per batch when the page does not say.
pub const DEFAULT_BATCH_SIZE: u32 = 20;
/// How often queued events are sent when the page does not say.
pub const DEFAULT_FLUSH_INTERVAL_MS: u32 = 1000;
/// More events per request only makes a lost request costlier; the byte limit applies anyway.
pub const MAX_BATCH_SIZE: u32 = 500;
/// Below this the timer would mostly find nothing to send.
pub const MIN_FLUSH_INTERVAL_MS: u32 = 100;
pub const MAX_FLUSH_INTERVAL_MS: u32 = 3_600_000;

/// `init(config)` exactly as the page wrote it (camelCase keys). Every optional key may be
/// missing, `undefined` or `null`, so they are all `Option`s and the defaults come in
/// [`Config::from_raw`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    /// Required: where the collector listens, e.g. `https://collect.shop.example`.
    pub collector_url: String,
    #[serde(default)]
    pub write_key: Option<String>,
    #[serde(default)]
    pub batch_size: Option<u32>,
    #[serde(default)]
    pub flush_interval_ms: Option<u32>,
    #[serde(default)]
    pub autocapture: Option<RawAutocapture>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAutocapture {
    #[serde(default)]
    pub page_views: Option<bool>,
    #[serde(default)]
    pub clicks: Option<bool>,
}

/// The settings the tracker runs with, defaults applied and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Collector base URL without a trailing `/`.
    pub collector_url: String,
    /// Identifies the shop to the collector; sent as a query parameter because a header would
    /// make every batch a CORS preflight plus the request.
    pub write_key: Option<String>,
    /// A batch is sent as soon as this many events wait, and never holds more.
    pub batch_size: usize,
    /// Waiting events are sent at least this often.
    pub flush_interval_ms: u32,
    pub autocapture: Autocapture,
}

/// What the tracker records without being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Autocapture {
    /// One `page_view` when `init` runs.
    pub page_views: bool,
    /// Clicks on links and buttons.
    pub clicks: bool,
}

/// A setting that was refused, with the name the page used for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retailmind config: `{}` {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let collector_url = raw.collector_url.trim().trim_end_matches('/').to_owned();
        if !retailmind_schema::validate::is_http_url(&collector_url) {
            return Err(ConfigError {
                field: "collectorUrl",
                reason: "must be an absolute http:// or https:// URL",
            });
        }
        let write_key = raw.write_key.filter(|k| !k.trim().is_empty());
        let batch_size = raw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(ConfigError {
                field: "batchSize",
                reason: "must be between 1 and 500",
            });
        }
        let flush_interval_ms = raw.flush_interval_ms.unwrap_or(DEFAULT_FLUSH_INTERVAL_MS);
        if !(MIN_FLUSH_INTERVAL_MS..=MAX_FLUSH_INTERVAL_MS).contains(&flush_interval_ms) {
            return Err(ConfigError {
                field: "flushIntervalMs",
                reason: "must be between 100 and 3600000 (one hour)",
            });
        }
        let auto = raw.autocapture.unwrap_or_default();
        Ok(Config {
            collector_url,
            write_key,
            batch_size: batch_size as usize,
            flush_interval_ms,
            autocapture: Autocapture {
                page_views: auto.page_views.unwrap_or(true),
                clicks: auto.clicks.unwrap_or(true),
            },
        })
    }

    /// Where batches are posted: `<collectorUrl>/v1/batch`, plus `?key=` when there is one (the
    /// collector reads the key there, and its CORS answer depends on it). `encode` percent-encodes a query value (the browser's `encodeURIComponent` in the
    /// wasm build).
    pub fn batch_endpoint(&self, encode: impl Fn(&str) -> String) -> String {
        let mut url = self.collector_url.clone();
        url.push_str("/v1/batch");
        if let Some(key) = &self.write_key {
            url.push_str("?key=");
            url.push_str(&encode(key));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawConfig {
        RawConfig {
            collector_url: url.into(),
            ..RawConfig::default()
        }
    }

    #[test]
    fn defaults_apply_when_only_the_url_is_given() {
        let c = Config::from_raw(raw("https://c.example/")).expect("valid");
        assert_eq!(c.collector_url, "https://c.example");
        assert_eq!(c.batch_size, 20);
        assert_eq!(c.flush_interval_ms, 1000);
        assert_eq!(c.write_key, None);
        assert!(c.autocapture.page_views && c.autocapture.clicks);
    }

    #[test]
    fn refusals_name_the_field_as_the_page_wrote_it() {
        assert_eq!(
            Config::from_raw(raw("ftp://c.example")).map_err(|e| e.field),
            Err("collectorUrl")
        );
        let mut r = raw("http://c.example");
        r.batch_size = Some(0);
        assert_eq!(Config::from_raw(r).map_err(|e| e.field), Err("batchSize"));
        let mut r = raw("http://c.example");
        r.flush_interval_ms = Some(5);
        let err = Config::from_raw(r).expect_err("too fast");
        assert_eq!(err.field, "flushIntervalMs");
        assert!(err.to_string().contains("`flushIntervalMs`"));
    }

    #[test]
    fn autocapture_can_be_switched_off_one_kind_at_a_time() {
        let mut r = raw("http://c.example");
        r.autocapture = Some(RawAutocapture {
            page_views: None,
            clicks: Some(false),
        });
        let c = Config::from_raw(r).expect("valid");
        assert_eq!(
            c.autocapture,
            Autocapture {
                page_views: true,
                clicks: false
            }
        );
    }

    #[test]
    fn endpoint_carries_the_write_key_encoded() {
        let mut r = raw("http://c.example:8700");
        assert_eq!(
            Config::from_raw(r.clone())
                .expect("valid")
                .batch_endpoint(|s| s.into()),
            "http://c.example:8700/v1/batch"
        );
        r.write_key = Some("a b".into());
        let c = Config::from_raw(r).expect("valid");
        assert_eq!(
            c.batch_endpoint(|s| s.replace(' ', "%20")),
            "http://c.example:8700/v1/batch?key=a%20b"
        );
    }
}
