//! The tracker's client-side session: a visit ends after 30 minutes without an event.
//!
//! The processor sessionizes again in event time; this id lets the shop group a visit's events
//! before that, and is shared by the tabs of one browser through localStorage.

use crate::text::{cut, parse_int};

/// Inactivity after which the next event starts a new session, by default.
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// A session as stored between page loads: its id, when it began and when its last event
/// happened, and how many page views it has had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    pub id: String,
    pub start_ms: i64,
    pub last_activity_ms: i64,
    pub pages: u32,
}

impl SessionState {
    /// Reads the stored form `<id>|<last activity ms>|<start ms>|<pages>`; anything else
    /// counts as no session. The form before start and pages were kept (`<id>|<last activity
    /// ms>`) is no session either: a visit running through the upgrade gets a new id once,
    /// which the processor, sessionizing on its own, does not see.
    pub fn parse(stored: &str) -> Option<SessionState> {
        let (rest, pages) = cut(stored, b'|', true)?;
        let (rest, start) = cut(rest, b'|', true)?;
        let (id, last) = cut(rest, b'|', true)?;
        if id.is_empty() {
            return None;
        }
        Some(SessionState {
            id: id.to_owned(),
            start_ms: parse_int(start)?,
            last_activity_ms: parse_int(last)?,
            pages: parse_int(pages)? as u32,
        })
    }

    pub fn to_stored(&self) -> String {
        let mut s = self.id.clone();
        for n in [self.last_activity_ms, self.start_ms, self.pages.into()] {
            s.push('|');
            crate::json::push_int(&mut s, n);
        }
        s
    }
}

/// The session an event at `now_ms` belongs to: `current` if it was active within `timeout_ms`,
/// otherwise a new one with id `new_id()` that begins now. Either way its last activity becomes
/// `now_ms`, and a page view (`page`) is counted.
pub fn touch(
    current: Option<SessionState>,
    now_ms: i64,
    timeout_ms: i64,
    page: bool,
    new_id: impl FnOnce() -> String,
) -> SessionState {
    let page = u32::from(page);
    match current {
        // A clock that went backwards (an NTP correction) must not split a visit.
        Some(s) if now_ms.saturating_sub(s.last_activity_ms) <= timeout_ms => SessionState {
            last_activity_ms: now_ms.max(s.last_activity_ms),
            pages: s.pages + page,
            ..s
        },
        _ => SessionState {
            id: new_id(),
            start_ms: now_ms,
            last_activity_ms: now_ms,
            pages: page,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, ms: i64) -> Option<SessionState> {
        Some(SessionState {
            id: id.into(),
            start_ms: 0,
            last_activity_ms: ms,
            pages: 1,
        })
    }

    #[test]
    fn no_session_starts_one() {
        let s = touch(None, 5, SESSION_TIMEOUT_MS, false, || "new".into());
        assert_eq!(
            (s.id.as_str(), s.start_ms, s.last_activity_ms),
            ("new", 5, 5)
        );
        assert_eq!(s.pages, 0);
        // Its first page view is its first page.
        assert_eq!(
            touch(None, 5, SESSION_TIMEOUT_MS, true, || "new".into()).pages,
            1
        );
    }

    #[test]
    fn activity_within_thirty_minutes_continues_and_extends() {
        let s = touch(
            at("s1", 0),
            SESSION_TIMEOUT_MS,
            SESSION_TIMEOUT_MS,
            false,
            || "new".into(),
        );
        assert_eq!(s.id, "s1");
        assert_eq!(s.last_activity_ms, SESSION_TIMEOUT_MS);
        // The timeout counts from the last event, not from the session's start.
        let s = touch(
            Some(s),
            2 * SESSION_TIMEOUT_MS,
            SESSION_TIMEOUT_MS,
            true,
            || "new".into(),
        );
        assert_eq!((s.id.as_str(), s.start_ms, s.pages), ("s1", 0, 2));
    }

    #[test]
    fn more_than_thirty_minutes_idle_starts_a_new_session() {
        let later = SESSION_TIMEOUT_MS + 1;
        let s = touch(at("s1", 0), later, SESSION_TIMEOUT_MS, true, || "s2".into());
        assert_eq!((s.id.as_str(), s.start_ms, s.pages), ("s2", later, 1));
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_session() {
        let s = touch(at("s1", 10_000), 4_000, SESSION_TIMEOUT_MS, false, || {
            "new".into()
        });
        assert_eq!((s.id.as_str(), s.last_activity_ms), ("s1", 10_000));
    }

    #[test]
    fn stored_form_round_trips_and_garbage_is_no_session() {
        let s = SessionState {
            id: "0192-ab".into(),
            start_ms: 1_732_529_000_000,
            last_activity_ms: 1_732_530_000_000,
            pages: 7,
        };
        assert_eq!(SessionState::parse(&s.to_stored()), Some(s));
        for bad in [
            "",
            "|",
            "abc",
            "id|",
            "|123",
            "id|12x",
            "id|1|2",
            "id|1|2|x",
            "0192-ab|1732530000000",
        ] {
            assert_eq!(SessionState::parse(bad), None, "{bad:?}");
        }
    }
}
