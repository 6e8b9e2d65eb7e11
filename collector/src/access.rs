//! Who may send: write keys, the origins a publishable key is tied to, and rate limits per key
//! and per client IP.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

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
    per_key: Option<KeyedLimit<String>>,
    /// Keyed by [`client_network`], not by the whole address.
    per_ip: Option<KeyedLimit<IpAddr>>,
}

/// Checks between two prunings of a [`KeyedLimit`]: often enough that the map holds little
/// more than the keys seen within a few thousand requests, rarely enough that walking it costs
/// nothing per request.
const PRUNE_EVERY_CHECKS: usize = 4096;

/// A rate limit per key that forgets idle keys. Every key ever seen keeps an entry until pruned,
/// and client IPs are chosen by the clients, so without pruning the map grows with every
/// address that ever sent a request.
struct KeyedLimit<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    checks_since_prune: AtomicUsize,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimit<K, C> {
    /// `per_sec` requests a second with bursts of `burst` (the rate when 0); `None` when
    /// `per_sec` is 0 (no limit).
    fn new(per_sec: u32, burst: u32, clock: C) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(KeyedLimit {
            limiter: RateLimiter::dashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                clock.clone(),
            ),
            clock,
            checks_since_prune: AtomicUsize::new(0),
        })
    }

    /// Counts one request of `key`; refused with the wait until the next one is allowed.
    fn check(&self, key: &K) -> Result<(), CollectorError> {
        if self.checks_since_prune.fetch_add(1, Ordering::Relaxed) + 1 >= PRUNE_EVERY_CHECKS {
            self.checks_since_prune.store(0, Ordering::Relaxed);
            self.prune();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| too_many(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets the keys whose bucket is full again: for them a fresh entry limits the same.
    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn keys_held(&self) -> usize {
        self.limiter.len()
    }
}

/// The address a per-IP limit counts under: an IPv4 address (also when it arrives mapped into
/// IPv6) as is, an IPv6 address as its /64. A client is given a whole /64 and can pick any of
/// its 2^64 addresses, so counting each one would neither limit it nor bound the map.
fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
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
            per_key: KeyedLimit::new(rl.per_key_per_sec, rl.burst, DefaultClock::default()),
            per_ip: KeyedLimit::new(rl.per_ip_per_sec, rl.burst, DefaultClock::default()),
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
        // The address first: a client refused for its own rate spends nothing of its key's
        // (one address holding a shop's public key cannot use up every shopper's share), and
        // guessing keys is limited like anything else.
        if let (Some(limit), Some(ip)) = (&self.per_ip, client_ip) {
            limit.check(&client_network(ip))?;
        }
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
        if let Some(limit) = &self.per_key {
            limit.check(&caller.key_name)?;
        }
        Ok(caller)
    }

    /// Whether a browser on `origin` may read answers for requests made with `key` (CORS), the
    /// key from the query string or the headers (`None`: a preflight, or a key in the body).
    pub fn cors_allows(&self, key: Option<&str>, origin: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let publishable_for = |k: &WriteKeyConfig| {
            k.kind == KeyKind::Publishable && origin_allowed(&k.origins, origin)
        };
        match key {
            Some(key) => self.keys.get(key).is_some_and(publishable_for),
            // A preflight cannot carry the header the key comes in: the request is judged
            // against its key's origins when it comes.
            None => self.keys.values().any(publishable_for),
        }
    }
}

/// Retry-After counts whole seconds: rounded up, so that a client waiting as told is let in.
fn too_many(wait: Duration) -> CollectorError {
    CollectorError::RateLimited {
        retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
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
        // Without a key in the query (it is in a header): an origin some publishable key lists.
        assert!(access.cors_allows(None, "https://shop.example"));
        assert!(!access.cors_allows(None, "https://elsewhere.example"));
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

    use governor::clock::FakeRelativeClock;

    /// One request a second, no burst beyond it, on a clock the test moves.
    fn one_per_sec() -> (KeyedLimit<IpAddr, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limit = KeyedLimit::new(1, 1, clock.clone()).expect("a limit");
        (limit, clock)
    }

    #[test]
    fn pruning_forgets_idle_addresses_and_keeps_limiting_active_ones() {
        let (limit, clock) = one_per_sec();
        let idle: IpAddr = "192.0.2.1".parse().unwrap();
        let active: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limit.check(&idle).is_ok());
        clock.advance(Duration::from_secs(2));
        assert!(limit.check(&active).is_ok());
        assert_eq!(limit.keys_held(), 2);

        limit.prune();
        assert_eq!(limit.keys_held(), 1, "the idle address is forgotten");
        assert!(
            matches!(
                limit.check(&active),
                Err(CollectorError::RateLimited { .. })
            ),
            "the active address is still limited"
        );
    }

    #[test]
    fn pruning_happens_on_its_own_as_requests_come() {
        let (limit, clock) = one_per_sec();
        for last_byte in 0..=255u8 {
            assert!(limit
                .check(&IpAddr::from([198, 51, 100, last_byte]))
                .is_ok());
        }
        clock.advance(Duration::from_secs(2));
        let active: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..PRUNE_EVERY_CHECKS {
            let _ = limit.check(&active);
        }
        assert_eq!(limit.keys_held(), 1);
    }

    #[test]
    fn a_client_refused_for_its_own_rate_spends_nothing_of_its_keys() {
        let access = Access::new(&CollectorConfig {
            rate_limit: RateLimitConfig {
                per_key_per_sec: 2,
                per_ip_per_sec: 1,
                burst: 0,
            },
            ..config()
        });
        let admit = |key: &str, ip: &str| {
            access.admit(Some(key), None, Some(ip.parse().unwrap()), KeyKind::Secret)
        };
        assert!(admit("sk_shop", "192.0.2.1").is_ok());
        for _ in 0..5 {
            assert!(matches!(
                admit("sk_shop", "192.0.2.1"),
                Err(CollectorError::RateLimited { .. })
            ));
        }
        assert!(
            admit("sk_shop", "192.0.2.2").is_ok(),
            "the key's second share"
        );
        assert!(matches!(
            admit("sk_shop", "192.0.2.3"),
            Err(CollectorError::RateLimited { .. })
        ));
        // Guessing keys from one address is limited too.
        assert!(matches!(
            admit("sk_guess", "198.51.100.1"),
            Err(CollectorError::UnknownKey)
        ));
        assert!(matches!(
            admit("sk_guess2", "198.51.100.1"),
            Err(CollectorError::RateLimited { .. })
        ));
    }

    #[test]
    fn retry_after_rounds_the_wait_up() {
        let secs = |wait| match too_many(wait) {
            CollectorError::RateLimited { retry_after_secs } => retry_after_secs,
            other => panic!("{other:?}"),
        };
        assert_eq!(secs(Duration::from_millis(1900)), 2);
        assert_eq!(secs(Duration::from_secs(3)), 3);
        assert_eq!(secs(Duration::from_millis(10)), 1);
        assert_eq!(secs(Duration::ZERO), 1);
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_ipv4_by_its_address() {
        let access = Access::new(&CollectorConfig {
            rate_limit: RateLimitConfig {
                per_key_per_sec: 0,
                per_ip_per_sec: 1,
                burst: 1,
            },
            ..config()
        });
        let admit = |ip: &str| {
            access.admit(
                Some("sk_shop"),
                None,
                Some(ip.parse().unwrap()),
                KeyKind::Secret,
            )
        };
        assert!(admit("2001:db8:1:2::1").is_ok());
        assert!(
            admit("2001:db8:1:2:ffff::9").is_err(),
            "another address of the same /64"
        );
        assert!(admit("2001:db8:1:3::1").is_ok(), "another /64");
        // IPv4 clients of a dual-stack socket arrive mapped into IPv6: each counts on its own.
        assert!(admit("::ffff:192.0.2.7").is_ok());
        assert!(admit("::ffff:192.0.2.8").is_ok());
        assert!(admit("192.0.2.7").is_err(), "the same client, unmapped");
    }
}
