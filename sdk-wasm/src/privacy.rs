//! Whether the tracker may store and send: consent mode, opt-out, Do-Not-Track and Global
//! Privacy Control, and sampling. Pure; `tracker.rs` reads the signals from the browser.

use crate::config::Config;

/// What the tracker does with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Store it and send it.
    Track,
    /// Consent mode and no answer yet: keep it in this page's memory only, to be queued if
    /// consent comes and forgotten if it does not.
    AwaitConsent,
    /// Drop it: opted out, consent refused or a privacy signal.
    Off,
    /// Drop it, as this browser is outside the sample. Its anonymous id is stored all the
    /// same (storage is allowed): the sample is decided on that id, and a browser that got a
    /// new one on every page would roll again each time, and end up in.
    SampledOut,
}

/// What the browser and the shopper said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// `optOut()` was called (remembered in storage).
    pub opted_out: bool,
    /// `setConsent(…)`'s last answer, if any.
    pub consent: Option<bool>,
    /// `navigator.doNotTrack == "1"` or `navigator.globalPrivacyControl`.
    pub do_not_track: bool,
}

pub fn permission(config: &Config, signals: Signals, sampled_in: bool) -> Permission {
    if signals.opted_out
        || signals.consent == Some(false)
        || (config.respect_do_not_track && signals.do_not_track)
    {
        return Permission::Off;
    }
    if config.require_consent && signals.consent != Some(true) {
        return Permission::AwaitConsent;
    }
    if !sampled_in {
        return Permission::SampledOut;
    }
    Permission::Track
}

/// Whether the browser with `anonymous_id` is in the sample: a hash of the id below `rate`, so
/// a browser is in or out for good, not event by event (which would cut sessions apart).
pub fn sampled_in(anonymous_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    // FNV-1a: tiny, and spreads UUID text well enough for a share.
    let mut h: u32 = 0x811c_9dc5;
    for b in anonymous_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    f64::from(h) / 4_294_967_296.0 < rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn config(require_consent: bool, respect: bool) -> Config {
        Config::from_raw(RawConfig {
            collector_url: Some("http://c.example".into()),
            require_consent: Some(require_consent),
            respect_do_not_track: Some(respect),
            ..RawConfig::default()
        })
        .expect("valid")
    }

    #[test]
    fn consent_mode_waits_for_a_yes() {
        let c = config(true, false);
        let none = Signals::default();
        assert_eq!(permission(&c, none, true), Permission::AwaitConsent);
        let yes = Signals {
            consent: Some(true),
            ..none
        };
        assert_eq!(permission(&c, yes, true), Permission::Track);
        let no = Signals {
            consent: Some(false),
            ..none
        };
        assert_eq!(permission(&c, no, true), Permission::Off);
        assert_eq!(
            permission(&config(false, false), none, true),
            Permission::Track
        );
    }

    #[test]
    fn opt_out_and_signals_switch_tracking_off() {
        let c = config(false, true);
        let yes = Signals {
            consent: Some(true),
            ..Signals::default()
        };
        let out = Signals {
            opted_out: true,
            ..yes
        };
        assert_eq!(permission(&c, out, true), Permission::Off);
        let dnt = Signals {
            do_not_track: true,
            ..yes
        };
        assert_eq!(permission(&c, dnt, true), Permission::Off);
        // Only when the shop asked for it.
        assert_eq!(
            permission(&config(false, false), dnt, true),
            Permission::Track
        );
        assert_eq!(permission(&c, yes, false), Permission::SampledOut);
        // Nothing is stored before consent, sampled out or not.
        assert_eq!(
            permission(&config(true, false), Signals::default(), false),
            Permission::AwaitConsent
        );
        assert_eq!(permission(&c, out, false), Permission::Off);
    }

    #[test]
    fn sampling_is_stable_per_browser_and_near_the_rate() {
        let ids: Vec<String> = (0..2000)
            .map(|n| ["0192abcd-0000-4000-8000-", &format!("{n:012}")].concat())
            .collect();
        let share = ids.iter().filter(|id| sampled_in(id, 0.25)).count();
        assert!((400..600).contains(&share), "{share}");
        assert!(ids.iter().all(|id| sampled_in(id, 1.0)));
        assert!(!ids.iter().any(|id| sampled_in(id, 0.0)));
        assert_eq!(sampled_in(&ids[7], 0.5), sampled_in(&ids[7], 0.5));
    }
}
