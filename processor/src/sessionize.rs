//! Sessionization in event time, as a pure function: a visitor's known sessions plus new events
//! in, the sessions that changed out. No I/O, so every rule is tested directly.
//!
//! Rules: a session ends after `inactivity_ms` without events (30 minutes by default), once it
//! would last longer than `max_duration_ms`, or once it holds `max_events` events (two safety
//! valves against bots that never stop; the second also bounds a session's size, which must fit
//! one DynamoDB item of 400 KB with its event ids).
//! There is no split at midnight or on a campaign change. An event whose id a session already
//! holds is not counted again, so replaying the stream changes nothing. An event that reached
//! the collector more than `allowed_lateness_ms` after it happened is [`too_late`]: measured by
//! its own two times, so a replay judges it as the first pass did.

use retailmind_schema::{
    device_class, Event, Payload, Session, ENGAGED_MS, MAX_SESSION_EVENTS, PAGE_ENGAGEMENT,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRules {
    pub inactivity_ms: i64,
    pub max_duration_ms: i64,
    pub allowed_lateness_ms: i64,
    pub max_events: u32,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            inactivity_ms: 30 * 60 * 1000,
            max_duration_ms: 12 * 3600 * 1000,
            allowed_lateness_ms: 72 * 3600 * 1000,
            max_events: MAX_SESSION_EVENTS,
        }
    }
}

/// Whether `event` reached the collector too long after it happened to change a session. An
/// event without a receive time (not through a collector) is on time.
pub fn too_late(event: &Event, rules: &SessionRules) -> bool {
    event.received_at.is_some_and(|received| {
        received.saturating_sub(event.timestamp) > rules.allowed_lateness_ms
    })
}

/// What [`sessionize`] made of one visitor's events.
#[derive(Debug, Default)]
pub struct Sessionized {
    /// Every session that changed, each with its version bumped once.
    pub changed: Vec<Session>,
    /// Events kept out of every session because they fell within the span of a session that
    /// already holds `max_events` (after it, a new session starts; within it, one would overlap).
    pub over_cap: u64,
}

/// Folds `events` (one visitor's, any order) into `known` (that visitor's stored sessions around
/// the events' time).
pub fn sessionize(known: Vec<Session>, events: &[&Event], rules: &SessionRules) -> Sessionized {
    let mut over_cap = 0;
    let mut sessions: Vec<(Session, bool)> = known.into_iter().map(|s| (s, false)).collect();
    sessions.sort_by_key(|(s, _)| s.start_ms);
    let mut ordered: Vec<&Event> = events.to_vec();
    ordered.sort_by_key(|e| (e.timestamp, e.event_id));

    for event in ordered {
        if sessions
            .iter()
            .any(|(s, _)| s.event_ids.contains(&event.event_id))
        {
            continue;
        }
        match home(&sessions, event.timestamp, rules).map(|at| &mut sessions[at]) {
            Some((session, _)) if session.event_count >= rules.max_events => over_cap += 1,
            Some((session, changed)) => {
                fold(session, event);
                *changed = true;
            }
            None => {
                let pos = sessions.partition_point(|(s, _)| s.start_ms <= event.timestamp);
                let number = pos
                    .checked_sub(1)
                    .map_or(1, |prev| sessions[prev].0.session_number + 1);
                let mut new = start(event);
                new.session_number = number;
                sessions.insert(pos, (new, true));
                // A late event may open a session before stored ones: they move up one place.
                // Every later session is at hand (the stores read all sessions after the
                // window's start), so the numbers stay a sequence.
                for (later, changed) in &mut sessions[pos + 1..] {
                    later.session_number += 1;
                    *changed = true;
                }
            }
        }
    }

    let changed = sessions
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(mut s, _)| {
            s.settle();
            s.version += 1;
            s
        })
        .collect();
    Sessionized { changed, over_cap }
}

/// The session (its position in `sessions`, sorted by start) an event at `ts` joins: the one
/// whose span holds it, else the nearer of its two neighbours that accepts it, else none.
///
/// Only a neighbour may grow: a session further away would grow over the one between, and a
/// visitor's sessions must stay disjoint. Stores read only the latest session starting before a
/// batch's window and every later one, which finds all that can take its events only when no
/// two overlap; and a start moved onto another session's start would collide with its key.
fn home(sessions: &[(Session, bool)], ts: i64, rules: &SessionRules) -> Option<usize> {
    if let Some(at) = sessions
        .iter()
        .rposition(|(s, _)| s.start_ms <= ts && ts <= s.end_ms)
    {
        return Some(at);
    }
    // No span holds `ts`: every session ends before it or starts after it.
    let right = sessions.partition_point(|(s, _)| s.start_ms < ts);
    let before = right
        .checked_sub(1)
        .filter(|&at| accepts(&sessions[at].0, ts, rules));
    let after =
        Some(right).filter(|&at| sessions.get(at).is_some_and(|(s, _)| accepts(s, ts, rules)));
    match (before, after) {
        (Some(b), Some(a)) => {
            let (gap_before, gap_after) = (ts - sessions[b].0.end_ms, sessions[a].0.start_ms - ts);
            Some(if gap_after < gap_before { a } else { b })
        }
        (b, a) => b.or(a),
    }
}

/// Whether an event at `ts` belongs to `s`: within the inactivity gap of its span, the span
/// stays under the maximum length, and `s` has room for another event.
fn accepts(s: &Session, ts: i64, rules: &SessionRules) -> bool {
    if s.event_count >= rules.max_events {
        return false;
    }
    let within_gap = ts >= s.start_ms - rules.inactivity_ms && ts <= s.end_ms + rules.inactivity_ms;
    let new_start = s.start_ms.min(ts);
    let new_end = s.end_ms.max(ts);
    within_gap && new_end - new_start <= rules.max_duration_ms
}

fn start(event: &Event) -> Session {
    let mut s = Session {
        session_id: event.event_id.to_string(),
        anonymous_id: event.anonymous_id.clone(),
        start_ms: event.timestamp,
        end_ms: event.timestamp,
        ..Session::default()
    };
    take_entry(&mut s, event);
    s.exit_url = event.context.page.url.clone();
    count(&mut s, event);
    s
}

fn fold(s: &mut Session, event: &Event) {
    if event.timestamp < s.start_ms {
        s.start_ms = event.timestamp;
        take_entry(s, event);
    }
    if event.timestamp >= s.end_ms {
        s.end_ms = event.timestamp;
        s.exit_url = event.context.page.url.clone();
    }
    count(s, event);
}

/// The first event decides how the visitor arrived.
fn take_entry(s: &mut Session, event: &Event) {
    let ctx = &event.context;
    s.entry_url = ctx.page.url.clone();
    s.device = device_class(ctx.user_agent.as_deref()).to_owned();
    s.referrer = ctx.page.referrer.clone().filter(|r| !r.is_empty());
    let utm = ctx.utm.as_ref();
    s.utm_source = utm.and_then(|u| u.source.clone());
    s.utm_medium = utm.and_then(|u| u.medium.clone());
    s.utm_campaign = utm.and_then(|u| u.campaign.clone());
}

fn count(s: &mut Session, event: &Event) {
    s.event_ids.push(event.event_id);
    s.event_count += 1;
    if let Some(user) = &event.user_id {
        s.user_id = Some(user.clone());
    }
    match &event.payload {
        Payload::PageView(_) => s.page_views += 1,
        Payload::ProductView(_) => s.products_viewed += 1,
        Payload::AddToCart(_) => s.cart_adds += 1,
        Payload::Purchase(p) => {
            s.purchases += 1;
            s.revenue_minor += p.revenue_minor;
        }
        Payload::Custom(c) if c.name == PAGE_ENGAGEMENT => {
            // A report without a usable figure still says the sender measures engaged time.
            let ms = c
                .props
                .get(ENGAGED_MS)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            s.engaged_ms = Some(s.engaged_ms.unwrap_or(0).saturating_add(ms));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
