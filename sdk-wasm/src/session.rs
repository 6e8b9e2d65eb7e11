//! The tracker's client-side session: a visit ends after 30 minutes without an event.
//!
//! The processor sessionizes again in event time; this id lets the shop group a visit's events
//! before that, and is shared by the tabs of one browser through localStorage.

use crate::text::{cut, parse_int};

/// Inactivity after which the next event starts a new session, by default.
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// A session as stored between page loads: its id and when its last event happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    pub id: String,
    pub last_activity_ms: i64,
}

impl SessionState {
    /// Reads the stored form `<id>|<last activity ms>`; anything else counts as no session.
    pub fn parse(stored: &str) -> Option<SessionState> {
        let (id, last) = cut(stored, b'|', true)?;
        let last_activity_ms = parse_int(last)?;
        if id.is_empty() {
            return None;
        }
        Some(SessionState {
            id: id.to_owned(),
            last_activity_ms,
        })
    }

    pub fn to_stored(&self) -> String {
        let mut s = self.id.clone();
        s.push('|');
        crate::json::push_int(&mut s, self.last_activity_ms);
        s
    }
}

/// The session an event at `now_ms` belongs to: `current` if it was active within `timeout_ms`,
/// otherwise a new one with id `new_id()`. Either way its last activity becomes `now_ms`.
pub fn touch(
    current: Option<SessionState>,
    now_ms: i64,
    timeout_ms: i64,
    new_id: impl FnOnce() -> String,
) -> SessionState {
    match current {
        // A clock that went backwards (an NTP correction) must not split a visit.
        Some(s) if now_ms.saturating_sub(s.last_activity_ms) <= timeout_ms => SessionState {
            id: s.id,
            last_activity_ms: now_ms.max(s.last_activity_ms),
        },
        _ => SessionState {
            id: new_id(),
            last_activity_ms: now_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, ms: i64) -> Option<SessionState> {
        Some(SessionState {
            id: id.into(),
            last_activity_ms: ms,
        })
    }

    #[test]
    fn no_session_starts_one() {
        let s = touch(None, 5, SESSION_TIMEOUT_MS, || "new".into());
        assert_eq!((s.id.as_str(), s.last_activity_ms), ("new", 5));
    }

    #[test]
    fn activity_within_thirty_minutes_continues_and_extends() {
        let s = touch(at("s1", 0), SESSION_TIMEOUT_MS, SESSION_TIMEOUT_MS, || {
            "new".into()
        });
        assert_eq!(s.id, "s1");
        assert_eq!(s.last_activity_ms, SESSION_TIMEOUT_MS);
        // The timeout counts from the last event, not from the session's start.
        let s = touch(Some(s), 2 * SESSION_TIMEOUT_MS, SESSION_TIMEOUT_MS, || {
            "new".into()
        });
        assert_eq!(s.id, "s1");
    }

    #[test]
    fn more_than_thirty_minutes_idle_starts_a_new_session() {
        let s = touch(
            at("s1", 0),
            SESSION_TIMEOUT_MS + 1,
            SESSION_TIMEOUT_MS,
            || "s2".into(),
        );
        assert_eq!(s.id, "s2");
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_session() {
        let s = touch(at("s1", 10_000), 4_000, SESSION_TIMEOUT_MS, || "new".into());
        assert_eq!((s.id.as_str(), s.last_activity_ms), ("s1", 10_000));
    }

    #[test]
    fn stored_form_round_trips_and_garbage_is_no_session() {
        let s = SessionState {
            id: "0192-ab".into(),
            last_activity_ms: 1_732_530_000_000,
        };
        assert_eq!(SessionState::parse(&s.to_stored()), Some(s));
        for bad in ["", "|", "abc", "id|", "|123", "id|12x"] {
            assert_eq!(SessionState::parse(bad), None, "{bad:?}");
        }
    }
}
