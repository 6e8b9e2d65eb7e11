use std::net::SocketAddr;

pub use retailmind_commerce::CommerceConfig;
use retailmind_connectors::settings::{check_ranges, count, OutOfRange};
use retailmind_connectors::BackendConfig;
pub use retailmind_connectors::ValidationLimits;
use retailmind_connectors::MAX_PARTITION_KEY_CHARS;
use retailmind_recommend::strategy;
use serde::{Deserialize, Serialize};

pub use crate::recs::{PlacementStrategies, RecommendationsConfig};

/// The collector's configuration (see `retailmind_connectors::settings::load`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct CollectorConfig {
    /// Address to listen on (`RETAILMIND_LISTEN`).
    pub listen: SocketAddr,
    pub backend: BackendConfig,
    /// Write keys. With none configured the collector runs open (any key or none, any origin),
    /// which is meant for local development only and logged as a warning at start.
    pub keys: Vec<WriteKeyConfig>,
    /// Largest request body accepted, in bytes, before and after gzip decompression (413).
    pub max_body_bytes: usize,
    /// Most events in one batch (400 beyond).
    pub max_events_per_batch: usize,
    /// Largest single event, in bytes of JSON (the event is rejected beyond).
    pub max_event_bytes: usize,
    pub validation: ValidationLimits,
    /// What to do with fields of an event (in the tracker's format) that the schema does not
    /// know: `ignore` them (the default: an older collector takes a newer tracker's events; a
    /// record copied from the text keeps them as sent, unread, see `retailmind_schema::record`)
    /// or `reject` the event, naming each field. Segment messages carry many fields we do not
    /// map, so this applies to native events only.
    pub unknown_fields: UnknownFields,
    pub rate_limit: RateLimitConfig,
    /// Proxies in front of the collector that append to `X-Forwarded-For` (a load balancer: 1).
    /// The client IP is the address that many hops from the right; 0 ignores the header, since
    /// anything a client writes there can be forged.
    pub trusted_proxy_hops: usize,
    /// Store client IPs truncated (IPv4 to /24, IPv6 to /48) instead of whole.
    pub truncate_ip: bool,
    /// A batch id seen again within this many seconds is answered from memory, and an event id
    /// already written is dropped from any batch: neither is written twice. 0 turns both off.
    pub dedup_window_secs: u64,
    /// Event ids remembered for that at least, the newest (about 100 bytes each): older ones
    /// are forgotten in bulk, once twice as many were written.
    pub dedup_max_events: usize,
    /// Batch answers remembered at most, the newest (and at most 64 MiB of them). Under load
    /// this and `dedup_max_events`, not the window, decide how far back the memories reach:
    /// `collector_dedup_memory_seconds` tells.
    pub dedup_max_batches: usize,
    /// Requests handled at once; beyond, requests get 503 at once instead of queueing in memory.
    pub max_in_flight_requests: usize,
    /// Longest a request waits for the stream (and the dead letters) to acknowledge its events;
    /// then it answers 503 with Retry-After while the write goes on, its events still held so
    /// that a retry does not write them again. Below API Gateway's 29 s, so the sender gets the
    /// collector's answer rather than a gateway timeout.
    pub write_timeout_secs: u64,
    /// When set, events the stream cannot take are fsynced here and acknowledged, then replayed
    /// once the stream recovers (meant for the AWS backend; the embedded one is local already).
    pub spool_dir: Option<std::path::PathBuf>,
    /// Most bytes the spool holds; beyond, the outage is answered with 503.
    pub spool_max_bytes: u64,
    /// With a spool, how long a write waits for the stream before spooling (below
    /// `write_timeout_secs`): a slow stream is absorbed like one that is down.
    pub spool_after_secs: u64,
    /// `GET /v1/recommendations`: strategies per placement, model reloads, session memory.
    pub recommendations: RecommendationsConfig,
    /// Orders and customer profiles (`/v1/transactions`, `/v1/customers`).
    pub commerce: CommerceConfig,
    /// Segment-spec messages (`/v1/track`, `/v1/batch` with `batch`, …).
    pub segment: SegmentConfig,
}

/// What the shop says about the Segment messages it sends.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// The currency of amounts in messages that name none (Segment's spec leaves `currency`
    /// optional): an ISO 4217 code such as `EUR`. Unset, such an amount refuses its event,
    /// naming `properties.currency`.
    pub default_currency: Option<String>,
}

/// The policy for fields the event schema does not know.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    #[default]
    Ignore,
    Reject,
}

/// A key that identifies who sends events.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WriteKeyConfig {
    pub key: String,
    /// What the key is for, e.g. the shop's name; shown in logs instead of the key.
    pub name: String,
    pub kind: KeyKind,
    /// Page origins (`https://shop.example`) a publishable key may be used from; `*` allows any.
    #[serde(default)]
    pub origins: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Embedded in web pages: can only send events, and only from its origins.
    Publishable,
    /// Server-to-server: can send anything from anywhere, never put in a page.
    Secret,
}

/// Requests per second allowed, with a burst allowance; 0 turns a limit off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_key_per_sec: u32,
    pub per_ip_per_sec: u32,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_key_per_sec: 0,
            per_ip_per_sec: 0,
            burst: 50,
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            backend: BackendConfig::default(),
            keys: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_events_per_batch: 500,
            max_event_bytes: 32 * 1024,
            validation: ValidationLimits::default(),
            unknown_fields: UnknownFields::default(),
            rate_limit: RateLimitConfig::default(),
            trusted_proxy_hops: 0,
            truncate_ip: false,
            dedup_window_secs: 600,
            dedup_max_events: 250_000,
            dedup_max_batches: 100_000,
            max_in_flight_requests: 4096,
            write_timeout_secs: 20,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            spool_after_secs: 5,
            recommendations: RecommendationsConfig::default(),
            commerce: CommerceConfig::default(),
            segment: SegmentConfig::default(),
        }
    }
}

/// A setting the collector cannot run with, named as in `retailmind.toml`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("keys[{index}] has an empty `{field}`")]
    EmptyKeyField { index: usize, field: &'static str },
    #[error("keys[{index}] has a `name` over {max} characters: it keys the dead letters' stream records")]
    KeyNameTooLong { index: usize, max: usize },
    #[error(
        "keys[{index}] repeats the `{field}` of keys[{first}]: each key and name must be unique"
    )]
    RepeatedKey {
        index: usize,
        first: usize,
        field: &'static str,
    },
    #[error(
        "keys[{index}] ({name}) is publishable with no `origins`: every page would get 403; list \
         the shop's origins, or \"*\" for any"
    )]
    NoOrigins { index: usize, name: String },
    #[error(
        "keys[{index}].origins has {origin:?}, which is no origin a shop's page sends: an \
         origin is a scheme and a host in ASCII, with a port only if not the scheme's own \
         (\"https://shop.example\", \"http://localhost:8080\"), or \"*\" for any"
    )]
    NotAnOrigin { index: usize, origin: String },
    #[error(
        "recommendations.strategies.{placement} names {name:?}, which is none of {}",
        strategy::NAMES.join(", ")
    )]
    UnknownStrategy {
        placement: &'static str,
        name: String,
    },
    #[error("commerce.default_page_url is {0:?}: it must be an absolute http(s) URL of at most validation.max_url_len bytes, the page of the purchase events of orders that name none")]
    NotAPageUrl(String),
    #[error("segment.default_currency is {0:?}: it must be an ISO 4217 code of three capital letters, such as \"EUR\"")]
    NotACurrency(String),
}

/// Largest event accepted: with the server's fields added it must fit one record of the stream
/// (Kinesis: 1 MiB) and of the lake's delivery stream (Firehose: 1,000 KiB), or it could never
/// be written and its batch would be retried forever.
const MAX_EVENT_BYTES: i64 = 1_000_000;
/// Kinesis's most bytes per record, the partition key included.
const KINESIS_RECORD_BYTES: i64 = 1 << 20;
/// What the server writes into an event besides the User-Agent (`received_at`, `context.ip`,
/// their keys), with room to spare.
const SERVER_FIELDS_BYTES: i64 = 1024;

/// The largest event whose record still fits one Kinesis record once the server's fields are
/// in: among them the request's User-Agent, cut to `max_text_len` characters, each of which
/// JSON may escape to two (`"`, `\`, a tab; `to_str` lets no other character that needs
/// escaping through).
fn record_room(max_text_len: usize) -> i64 {
    KINESIS_RECORD_BYTES - MAX_PARTITION_KEY_CHARS - SERVER_FIELDS_BYTES - 2 * count(max_text_len)
}

/// Largest body: API Gateway takes at most 10 MB.
const MAX_BODY_BYTES: i64 = 10 * 1024 * 1024;
/// Most events in a batch.
const MAX_EVENTS_PER_BATCH: i64 = 10_000;
/// Longest dedup window: a retry comes within minutes; beyond a week the id memory, not the
/// window, decides what is remembered anyway.
const MAX_DEDUP_WINDOW_SECS: i64 = 7 * 86_400;
/// Longest key name: the dead letters' stream records are keyed by it, and a Kinesis partition
/// key is at most 256 characters (a longer one would make every letter of the key fail, and
/// its batches answer 503 for ever).
const MAX_KEY_NAME_CHARS: usize = 256;
/// Most batch answers remembered (their ids and order about 100 bytes each besides the 64 MiB
/// of answers: 500 MB).
const MAX_DEDUP_BATCHES: i64 = 5_000_000;
/// Most event ids remembered (about 100 bytes each: 5 GB).
const MAX_DEDUP_EVENTS: i64 = 50_000_000;
/// Most live sessions remembered for recommendations (about 1 KB each: 10 GB).
const MAX_MEMORY_SESSIONS: i64 = 10_000_000;

/// Whether `origin` can match a browser's `Origin` header as [`crate::access`] compares it:
/// `*`, or `scheme://host[:port]` with nothing after the host (trailing `/`s are forgiven, as
/// when comparing), the host in ASCII (browsers send punycode), the port in digits and not the
/// scheme's own (browsers leave that out).
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = rest.trim_end_matches('/');
    // An IPv6 literal is bracketed ([::1]:8080); any other host has no colon but the port's.
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, "")) => (address, None),
            Some((address, rest)) => match rest.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
        && port.is_none_or(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
                && Some(p) != default_port
        })
}

impl CollectorConfig {
    /// The first setting the collector could not run sensibly with; run at start so that a
    /// mistake stops the service naming the field instead of refusing every request later.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.backend.check()?;
        let v = &self.validation;
        v.check()?;
        let r = &self.recommendations;
        check_ranges(&[
            (
                "max_body_bytes",
                count(self.max_body_bytes),
                1024,
                MAX_BODY_BYTES,
            ),
            (
                "max_events_per_batch",
                count(self.max_events_per_batch),
                1,
                MAX_EVENTS_PER_BATCH,
            ),
            (
                "max_event_bytes",
                count(self.max_event_bytes),
                256,
                MAX_EVENT_BYTES
                    .min(count(self.max_body_bytes))
                    .min(record_room(v.max_text_len)),
            ),
            (
                "max_in_flight_requests",
                count(self.max_in_flight_requests),
                1,
                i64::MAX,
            ),
            (
                "write_timeout_secs",
                count(self.write_timeout_secs),
                1,
                3_600,
            ),
            (
                "dedup_window_secs",
                count(self.dedup_window_secs),
                0,
                MAX_DEDUP_WINDOW_SECS,
            ),
            (
                "dedup_max_events",
                count(self.dedup_max_events),
                1,
                MAX_DEDUP_EVENTS,
            ),
            (
                "dedup_max_batches",
                count(self.dedup_max_batches),
                1,
                MAX_DEDUP_BATCHES,
            ),
            (
                "recommendations.reload_interval_ms",
                count(r.reload_interval_ms),
                10,
                3_600_000,
            ),
            (
                "recommendations.memory_max_sessions",
                count(r.memory_max_sessions),
                1,
                MAX_MEMORY_SESSIONS,
            ),
            (
                "recommendations.memory_clicks_per_session",
                count(r.memory_clicks_per_session),
                1,
                1_000,
            ),
            (
                "recommendations.memory_idle_minutes",
                count(r.memory_idle_minutes),
                1,
                7 * 24 * 60,
            ),
        ])?;
        if self.spool_dir.is_some() {
            // A spool that cannot hold one request's events never spools any. A request may wait
            // for another's claim on its events, then for the stream and the dead letters, each
            // up to spool_after_secs before spooling: all within write_timeout_secs, or a write
            // the spools took would still answer 503.
            check_ranges(&[
                (
                    "spool_max_bytes",
                    count(self.spool_max_bytes),
                    count(self.max_body_bytes),
                    i64::MAX,
                ),
                (
                    "spool_after_secs",
                    count(self.spool_after_secs),
                    1,
                    (count(self.write_timeout_secs)
                        - count(crate::ingest::IN_FLIGHT_PATIENCE.as_secs())
                        - 1)
                        / 2,
                ),
            ])?;
        }
        let page_url = &self.commerce.default_page_url;
        if !retailmind_schema::is_http_url(page_url) || page_url.len() > v.max_url_len {
            return Err(ConfigError::NotAPageUrl(page_url.clone()));
        }
        if let Some(code) = &self.segment.default_currency {
            if !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(ConfigError::NotACurrency(code.clone()));
            }
        }
        let s = &r.strategies;
        for (placement, names) in [
            ("home", &s.home),
            ("product", &s.product),
            ("cart", &s.cart),
            ("post_purchase", &s.post_purchase),
        ] {
            if let Some(name) = names
                .iter()
                .find(|n| !strategy::NAMES.contains(&n.as_str()))
            {
                return Err(ConfigError::UnknownStrategy {
                    placement,
                    name: name.clone(),
                });
            }
        }
        for (index, key) in self.keys.iter().enumerate() {
            for (field, value) in [("key", &key.key), ("name", &key.name)] {
                if value.trim().is_empty() {
                    return Err(ConfigError::EmptyKeyField { index, field });
                }
            }
            if key.name.chars().count() > MAX_KEY_NAME_CHARS {
                return Err(ConfigError::KeyNameTooLong {
                    index,
                    max: MAX_KEY_NAME_CHARS,
                });
            }
            let earlier = &self.keys[..index];
            for (field, same) in [
                ("key", earlier.iter().position(|k| k.key == key.key)),
                ("name", earlier.iter().position(|k| k.name == key.name)),
            ] {
                if let Some(first) = same {
                    return Err(ConfigError::RepeatedKey {
                        index,
                        first,
                        field,
                    });
                }
            }
            if key.kind == KeyKind::Publishable && key.origins.is_empty() {
                return Err(ConfigError::NoOrigins {
                    index,
                    name: key.name.clone(),
                });
            }
            if let Some(origin) = key.origins.iter().find(|o| !is_origin(o)) {
                return Err(ConfigError::NotAnOrigin {
                    index,
                    origin: origin.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str, name: &str, kind: KeyKind, origins: &[&str]) -> WriteKeyConfig {
        WriteKeyConfig {
            key: key.into(),
            name: name.into(),
            kind,
            origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn every_setting_is_known_to_the_shared_file() {
        // The file every binary reads refuses keys no binary knows.
        assert_eq!(
            retailmind_connectors::settings::unlisted_settings::<CollectorConfig>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_defaults_pass_the_check() {
        assert_eq!(CollectorConfig::default().check(), Ok(()));
    }

    #[test]
    fn a_default_currency_must_be_an_iso_code() {
        let mut config = CollectorConfig::default();
        config.segment.default_currency = Some("eur".into());
        assert_eq!(config.check(), Err(ConfigError::NotACurrency("eur".into())));
        config.segment.default_currency = Some("EUR".into());
        assert_eq!(config.check(), Ok(()));
    }

    #[test]
    fn an_origin_must_be_one_a_page_can_send() {
        for good in [
            "*",
            "https://shop.example",
            "https://shop.example/",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(is_origin(good), "{good}");
        }
        assert!(is_origin("https://shop.example//"));
        for bad in [
            "shop.example",
            "https://",
            "https://shop.example/checkout",
            "https://shop.example:port",
            "https://shop.example:+80",
            "https://shop.example:443",
            "http://shop.example:80",
            "https://*.shop.example",
            "https://bücher.example",
            "https://user@shop.example",
            "//shop.example",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        let mut config = CollectorConfig {
            keys: vec![key(
                "pk_1",
                "shop",
                KeyKind::Publishable,
                &["https://a.example", "shop.example"],
            )],
            ..CollectorConfig::default()
        };
        let refused = config.check().unwrap_err();
        assert_eq!(
            refused,
            ConfigError::NotAnOrigin {
                index: 0,
                origin: "shop.example".into()
            }
        );
        assert!(refused
            .to_string()
            .starts_with("keys[0].origins has \"shop.example\""));
        config.keys[0].origins[1] = "https://shop.example".into();
        assert_eq!(config.check(), Ok(()));
    }

    #[test]
    fn the_default_page_of_orders_must_be_a_url_their_events_may_carry() {
        let mut config = CollectorConfig::default();
        for bad in [
            "/thanks",
            "https://",
            &format!("https://shop.example/{}", "a".repeat(4096)),
        ] {
            config.commerce.default_page_url = bad.to_owned();
            assert_eq!(
                config.check(),
                Err(ConfigError::NotAPageUrl(bad.to_owned()))
            );
        }
        config.commerce.default_page_url = "https://shop.example/thanks".into();
        assert_eq!(config.check(), Ok(()));
    }

    #[test]
    fn an_event_limit_no_record_can_hold_is_refused() {
        let config = CollectorConfig {
            max_body_bytes: 8 << 20,
            max_event_bytes: 2 << 20,
            ..CollectorConfig::default()
        };
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "max_event_bytes is 2097152: it must be between 256 and 1000000"
        );
        // With a User-Agent of up to 65,536 characters written into every event, an event of
        // 1,000,000 bytes could make a record over Kinesis's 1 MiB, refused on every retry.
        let mut config = CollectorConfig {
            max_event_bytes: 1_000_000,
            ..CollectorConfig::default()
        };
        config.validation.max_text_len = 65_536;
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "max_event_bytes is 1000000: it must be between 256 and 916224"
        );
        config.max_event_bytes = 916_224;
        assert_eq!(config.check(), Ok(()));
        // An id is a Kinesis partition key: 256 characters at most.
        let mut config = CollectorConfig::default();
        config.validation.max_id_len = 257;
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "validation.max_id_len is 257: it must be between 1 and 256"
        );
        let config = CollectorConfig {
            max_events_per_batch: 0,
            ..CollectorConfig::default()
        };
        assert!(matches!(
            config.check(),
            Err(ConfigError::OutOfRange(OutOfRange {
                field: "max_events_per_batch",
                ..
            }))
        ));
    }

    #[test]
    fn a_misspelt_strategy_or_a_spool_too_small_for_a_request_is_refused() {
        let mut config = CollectorConfig::default();
        config.recommendations.strategies.cart = vec!["bought-together".into(), "stan-sr".into()];
        let error = config.check().unwrap_err();
        assert_eq!(
            error,
            ConfigError::UnknownStrategy {
                placement: "cart",
                name: "stan-sr".into()
            }
        );
        assert!(error.to_string().contains("stan+sr"), "{error}");

        let config = CollectorConfig {
            spool_dir: Some("/var/spool/retailmind".into()),
            spool_max_bytes: 1000,
            ..CollectorConfig::default()
        };
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "spool_max_bytes is 1000: it must be between 1048576 and 9223372036854775807"
        );
        let config = CollectorConfig {
            spool_dir: Some("/var/spool/retailmind".into()),
            spool_after_secs: 8,
            ..CollectorConfig::default()
        };
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "spool_after_secs is 8: it must be between 1 and 7"
        );
        let mut config = CollectorConfig::default();
        config.recommendations.reload_interval_ms = 0;
        assert!(matches!(
            config.check(),
            Err(ConfigError::OutOfRange(OutOfRange {
                field: "recommendations.reload_interval_ms",
                ..
            }))
        ));
    }

    #[test]
    fn keys_must_be_unique_named_and_tied_to_origins() {
        let shop = key(
            "pk_shop",
            "shop",
            KeyKind::Publishable,
            &["https://shop.example"],
        );
        let server = key("sk_server", "server", KeyKind::Secret, &[]);
        let with = |keys: Vec<WriteKeyConfig>| CollectorConfig {
            keys,
            ..CollectorConfig::default()
        };
        assert_eq!(with(vec![shop.clone(), server.clone()]).check(), Ok(()));
        assert_eq!(
            with(vec![
                shop.clone(),
                key("pk_shop", "other", KeyKind::Secret, &[])
            ])
            .check(),
            Err(ConfigError::RepeatedKey {
                index: 1,
                first: 0,
                field: "key"
            })
        );
        assert_eq!(
            with(vec![
                server.clone(),
                key("sk_2", "server", KeyKind::Secret, &[])
            ])
            .check(),
            Err(ConfigError::RepeatedKey {
                index: 1,
                first: 0,
                field: "name"
            })
        );
        assert_eq!(
            with(vec![key(" ", "blank", KeyKind::Secret, &[])]).check(),
            Err(ConfigError::EmptyKeyField {
                index: 0,
                field: "key"
            })
        );
        assert_eq!(
            with(vec![key("sk_long", &"n".repeat(257), KeyKind::Secret, &[])]).check(),
            Err(ConfigError::KeyNameTooLong { index: 0, max: 256 })
        );
        let error = with(vec![server, key("pk_2", "blog", KeyKind::Publishable, &[])])
            .check()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "keys[1] (blog) is publishable with no `origins`: every page would get 403; list \
             the shop's origins, or \"*\" for any"
        );
    }
}
