//! Who may send: write keys, the origins a publishable key is tied to, and rate limits per key
//! and per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{CollectorConfig, KeyKind, WriteKeyConfig};
use crate::error::CollectorError;

/// The sender of a request, once its key checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's name (never the key itself, which must not reach logs).
    pub key_name: String,
    pub kind: KeyKind,
    pub client_ip: Option<IpAddr>,
}

pub struct Access {
    keys: HashMap<String, WriteKeyConfig>,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_sec: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Access {
    pub fn new(config: &CollectorConfig) -> Self {
        let rl = &config.rate_limit;
        Access {
            keys: config
                .keys
                .iter()
                .map(|k| (k.key.clone(), k.clone()))
                .collect(),
            per_key: limiter(rl.per_key_per_sec, rl.burst),
            per_ip: limiter(rl.per_ip_per_sec, rl.burst),
        }
    }

    /// No keys configured: development mode, everything allowed.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the presented key against `need`, the page origin against the key's origins, and
    /// the rate limits.
    pub fn admit(
        &self,
        presented: Option<&str>,
        origin: Option<&str>,
        client_ip: Option<IpAddr>,
        need: KeyKind,
    ) -> Result<Caller, CollectorError> {
        let caller = if self.is_open() {
            Caller {
                key_name: "open".into(),
                kind: KeyKind::Secret,
                client_ip,
            }
        } else {
            let key = presented
                .filter(|k| !k.is_empty())
                .ok_or(CollectorError::MissingKey)?;
            let found = self.keys.get(key).ok_or(CollectorError::UnknownKey)?;
            if need == KeyKind::Secret && found.kind != KeyKind::Secret {
                return Err(CollectorError::SecretKeyRequired);
            }
            if found.kind == KeyKind::Publishable {
                if let Some(origin) = origin {
                    if !origin_allowed(&found.origins, origin) {
                        return Err(CollectorError::OriginNotAllowed {
                            origin: origin.to_owned(),
                        });
                    }
                }
            }
            Caller {
                key_name: found.name.clone(),
                kind: found.kind,
                client_ip,
            }
        };
        if let Some(limiter) = &self.per_key {
            if let Err(not_until) = limiter.check_key(&caller.key_name) {
                return Err(too_many(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ));
            }
        }
        if let (Some(limiter), Some(ip)) = (&self.per_ip, client_ip) {
            if let Err(not_until) = limiter.check_key(&ip) {
                return Err(too_many(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ));
            }
        }
        Ok(caller)
    }

    /// Whether a browser on `origin` may read answers for requests made with `key` (CORS).
    pub fn cors_allows(&self, key: Option<&str>, origin: &str) -> bool {
        if self.is_open() {
            return true;
        }
        match key.and_then(|k| self.keys.get(k)) {
            Some(k) if k.kind == KeyKind::Publishable => origin_allowed(&k.origins, origin),
            _ => false,
        }
    }
}

fn too_many(wait: Duration) -> CollectorError {
    CollectorError::RateLimited {
        retry_after_secs: wait.as_secs().max(1),
    }
}

fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitConfig;

    fn config() -> CollectorConfig {
        CollectorConfig {
            keys: vec![
                WriteKeyConfig {
                    key: "pk_shop".into(),
                    name: "shop web".into(),
                    kind: KeyKind::Publishable,
                    origins: vec!["https://shop.example".into()],
                },
                WriteKeyConfig {
                    key: "sk_shop".into(),
                    name: "shop backend".into(),
                    kind: KeyKind::Secret,
                    origins: vec![],
                },
            ],
            ..CollectorConfig::default()
        }
    }

    #[test]
    fn keys_and_origins_are_checked() {
        let access = Access::new(&config());
        let ok = access
            .admit(
                Some("pk_shop"),
                Some("https://shop.example"),
                None,
                KeyKind::Publishable,
            )
            .unwrap();
        assert_eq!(ok.key_name, "shop web");
        assert!(matches!(
            access.admit(Some("pk_other"), None, None, KeyKind::Publishable),
            Err(CollectorError::UnknownKey)
        ));
        assert!(matches!(
            access.admit(None, None, None, KeyKind::Publishable),
            Err(CollectorError::MissingKey)
        ));
        assert!(matches!(
            access.admit(
                Some("pk_shop"),
                Some("https://evil.example"),
                None,
                KeyKind::Publishable
            ),
            Err(CollectorError::OriginNotAllowed { .. })
        ));
        assert!(matches!(
            access.admit(Some("pk_shop"), None, None, KeyKind::Secret),
            Err(CollectorError::SecretKeyRequired)
        ));
        // A secret key is not tied to origins.
        assert!(access
            .admit(
                Some("sk_shop"),
                Some("https://anywhere.example"),
                None,
                KeyKind::Secret
            )
            .is_ok());
        assert!(access.cors_allows(Some("pk_shop"), "https://shop.example"));
        assert!(!access.cors_allows(Some("sk_shop"), "https://shop.example"));
    }

    #[test]
    fn rate_limits_answer_with_a_wait() {
        let access = Access::new(&CollectorConfig {
            rate_limit: RateLimitConfig {
                per_key_per_sec: 0,
                per_ip_per_sec: 1,
                burst: 2,
            },
            ..config()
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let admit = || access.admit(Some("sk_shop"), None, Some(ip), KeyKind::Secret);
        assert!(admit().is_ok());
        assert!(admit().is_ok());
        match admit() {
            Err(CollectorError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another IP is not affected.
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(access
            .admit(Some("sk_shop"), None, Some(other), KeyKind::Secret)
            .is_ok());
    }
}
