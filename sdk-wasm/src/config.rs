//! The tracker's settings as the page passes them to `init(config)`, and the rules they follow.
//!
//! Pure: `api.rs` reads the JS object into a [`RawConfig`]; everything here builds and tests
//! natively.

/// Events per batch when the page does not say.
pub const DEFAULT_BATCH_SIZE: u32 = 20;
/// How often queued events are sent when the page does not say.
pub const DEFAULT_FLUSH_INTERVAL_MS: u32 = 1000;
/// More events per request only makes a lost request costlier; the byte limit applies anyway.
pub const MAX_BATCH_SIZE: u32 = 500;
/// Below this the timer would mostly find nothing to send.
pub const MIN_FLUSH_INTERVAL_MS: u32 = 100;
pub const MAX_FLUSH_INTERVAL_MS: u32 = 3_600_000;
/// Inactivity after which the next event starts a new session, unless the page says otherwise.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 30 * 60 * 1000;

/// `init(config)` as the page wrote it (camelCase keys in JS). Missing, `undefined` and `null`
/// keys are `None`; the defaults come in [`Config::from_raw`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawConfig {
    /// Required: where the collector listens, e.g. `https://c.shop.example`.
    pub collector_url: Option<String>,
    pub write_key: Option<String>,
    pub batch_size: Option<f64>,
    pub flush_interval_ms: Option<f64>,
    pub session_timeout_ms: Option<f64>,
    /// Share of browsers tracked, `0..=1`.
    pub sample_rate: Option<f64>,
    /// Nothing is stored or sent until `setConsent(true)`.
    pub require_consent: Option<bool>,
    /// Do-Not-Track and Global Privacy Control signals count as an opt-out.
    pub respect_do_not_track: Option<bool>,
    pub page_views: Option<bool>,
    pub clicks: Option<bool>,
    pub engagement: Option<bool>,
}

/// The settings the tracker runs with, defaults applied and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Collector base URL without a trailing `/`.
    pub collector_url: String,
    /// Identifies the shop to the collector; sent as a query parameter because a header would
    /// make every batch a CORS preflight plus the request (and beacons cannot carry headers).
    pub write_key: Option<String>,
    /// A batch is sent as soon as this many events wait, and never holds more.
    pub batch_size: usize,
    /// Waiting events are sent at least this often.
    pub flush_interval_ms: u32,
    pub session_timeout_ms: u32,
    pub sample_rate: f64,
    pub require_consent: bool,
    pub respect_do_not_track: bool,
    pub autocapture: Autocapture,
}

/// What the tracker records without being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Autocapture {
    /// A `page_view` at `init`, on every single-page-app navigation and on a back/forward
    /// cache restore.
    pub page_views: bool,
    /// Clicks on links and buttons. Elements tagged `data-rm-event` are recorded either way:
    /// the shop asked for those events, autocapture or not.
    pub clicks: bool,
    /// A `page_engagement` custom event (engaged time, scroll depth) when a page is left or
    /// hidden. Off by default: it is one more event per page.
    pub engagement: bool,
}

/// A setting that was refused, with the name the page used for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl ConfigError {
    pub fn message(&self) -> String {
        crate::text::cat(&["retailmind config: `", self.field, "` ", self.reason])
    }
}

fn whole(
    value: Option<f64>,
    default: u32,
    min: u32,
    max: u32,
    field: &'static str,
    reason: &'static str,
) -> Result<u32, ConfigError> {
    let v = value.unwrap_or(f64::from(default));
    if v.fract() != 0.0 || v < f64::from(min) || v > f64::from(max) {
        return Err(ConfigError { field, reason });
    }
    Ok(v as u32)
}

impl Config {
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let url = raw.collector_url.unwrap_or_default();
        let mut collector_url = url.trim();
        while let Some(rest) = collector_url.strip_suffix('/') {
            collector_url = rest;
        }
        let collector_url = collector_url.to_owned();
        if !retailmind_schema::validate::is_http_url(&collector_url) {
            return Err(ConfigError {
                field: "collectorUrl",
                reason: "must be an absolute http:// or https:// URL",
            });
        }
        let batch_size = whole(
            raw.batch_size,
            DEFAULT_BATCH_SIZE,
            1,
            MAX_BATCH_SIZE,
            "batchSize",
            "must be a whole number between 1 and 500",
        )?;
        let flush_interval_ms = whole(
            raw.flush_interval_ms,
            DEFAULT_FLUSH_INTERVAL_MS,
            MIN_FLUSH_INTERVAL_MS,
            MAX_FLUSH_INTERVAL_MS,
            "flushIntervalMs",
            "must be between 100 and 3600000 (one hour)",
        )?;
        let session_timeout_ms = whole(
            raw.session_timeout_ms,
            DEFAULT_SESSION_TIMEOUT_MS,
            60_000,
            86_400_000,
            "sessionTimeoutMs",
            "must be between 60000 (a minute) and 86400000 (a day)",
        )?;
        let sample_rate = raw.sample_rate.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_rate) {
            return Err(ConfigError {
                field: "sampleRate",
                reason: "must be between 0 and 1",
            });
        }
        Ok(Config {
            collector_url,
            write_key: raw.write_key.filter(|k| !k.trim().is_empty()),
            batch_size: batch_size as usize,
            flush_interval_ms,
            session_timeout_ms,
            sample_rate,
            require_consent: raw.require_consent.unwrap_or(false),
            respect_do_not_track: raw.respect_do_not_track.unwrap_or(false),
            autocapture: Autocapture {
                page_views: raw.page_views.unwrap_or(true),
                clicks: raw.clicks.unwrap_or(true),
                engagement: raw.engagement.unwrap_or(false),
            },
        })
    }

    /// Where batches are posted: `<collectorUrl>/v1/batch`, plus `?key=` when there is one (the
    /// collector reads the key there, and its CORS answer depends on it). The path holds none of
    /// the words ad blockers match. `encode` percent-encodes a query value (the browser's
    /// `encodeURIComponent` in the wasm build).
    pub fn batch_endpoint(&self, encode: impl Fn(&str) -> String) -> String {
        self.collector_path("/v1/batch", &[], encode)
    }

    /// `GET <collectorUrl>/v1/recommendations?key=…&<params>`, the parameters with a value only.
    pub fn recommendations_url(
        &self,
        params: &[(&str, Option<&str>)],
        encode: impl Fn(&str) -> String,
    ) -> String {
        self.collector_path("/v1/recommendations", params, encode)
    }

    fn collector_path(
        &self,
        path: &str,
        params: &[(&str, Option<&str>)],
        encode: impl Fn(&str) -> String,
    ) -> String {
        let mut url = self.collector_url.clone();
        url.push_str(path);
        let key = self.write_key.as_deref().map(|k| ("key", Some(k)));
        let mut sep = '?';
        for (name, value) in key.iter().chain(params) {
            if let Some(value) = value {
                url.push(sep);
                url.push_str(name);
                url.push('=');
                url.push_str(&encode(value));
                sep = '&';
            }
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawConfig {
        RawConfig {
            collector_url: Some(url.into()),
            ..RawConfig::default()
        }
    }

    #[test]
    fn defaults_apply_when_only_the_url_is_given() {
        let c = Config::from_raw(raw("https://c.example/")).expect("valid");
        assert_eq!(c.collector_url, "https://c.example");
        assert_eq!(c.batch_size, 20);
        assert_eq!(c.flush_interval_ms, 1000);
        assert_eq!(c.session_timeout_ms, 30 * 60 * 1000);
        assert_eq!(c.sample_rate, 1.0);
        assert_eq!(c.write_key, None);
        assert!(!c.require_consent && !c.respect_do_not_track);
        assert!(c.autocapture.page_views && c.autocapture.clicks && !c.autocapture.engagement);
    }

    #[test]
    fn refusals_name_the_field_as_the_page_wrote_it() {
        let field = |r: RawConfig| Config::from_raw(r).map_err(|e| e.field);
        assert_eq!(field(raw("ftp://c.example")), Err("collectorUrl"));
        assert_eq!(field(RawConfig::default()), Err("collectorUrl"));
        for (size, ok) in [(0.0, false), (1.5, false), (501.0, false), (500.0, true)] {
            let mut r = raw("http://c.example");
            r.batch_size = Some(size);
            assert_eq!(field(r).is_ok(), ok, "{size}");
        }
        let mut r = raw("http://c.example");
        r.flush_interval_ms = Some(5.0);
        let err = Config::from_raw(r).expect_err("too fast");
        assert_eq!(err.field, "flushIntervalMs");
        assert!(err.message().contains("`flushIntervalMs`"));
        let mut r = raw("http://c.example");
        r.sample_rate = Some(1.5);
        assert_eq!(field(r), Err("sampleRate"));
        let mut r = raw("http://c.example");
        r.session_timeout_ms = Some(10.0);
        assert_eq!(field(r), Err("sessionTimeoutMs"));
    }

    #[test]
    fn autocapture_can_be_switched_one_kind_at_a_time() {
        let mut r = raw("http://c.example");
        r.clicks = Some(false);
        r.engagement = Some(true);
        let c = Config::from_raw(r).expect("valid");
        assert_eq!(
            c.autocapture,
            Autocapture {
                page_views: true,
                clicks: false,
                engagement: true
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
        let url = c.batch_endpoint(|s| s.replace(' ', "%20"));
        assert_eq!(url, "http://c.example:8700/v1/batch?key=a%20b");
        for word in ["analytics", "track", "collect", "ingest", "beacon"] {
            assert!(!url.contains(word), "{word}");
        }
    }

    #[test]
    fn recommendations_url_carries_the_key_and_only_the_given_parameters() {
        let config = Config::from_raw(RawConfig {
            write_key: Some("pk 1".into()),
            ..raw("https://c.shop.example")
        })
        .unwrap();
        let encode = |v: &str| v.replace(' ', "%20").replace(',', "%2C");
        assert_eq!(
            config.recommendations_url(
                &[
                    ("placement", Some("product")),
                    ("context_item", None),
                    ("cart", Some("a,b"))
                ],
                encode
            ),
            "https://c.shop.example/v1/recommendations?key=pk%201&placement=product&cart=a%2Cb"
        );
        assert_eq!(
            config.batch_endpoint(encode),
            "https://c.shop.example/v1/batch?key=pk%201"
        );
    }
}
