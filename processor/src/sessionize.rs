//! Sessionization in event time, as a pure function: a visitor's known sessions plus new events
//! in, the sessions that changed out. No I/O, so every rule is tested directly.
//!
//! Rules: a session ends after `inactivity_ms` without events (30 minutes by default), once it
//! would last longer than `max_duration_ms`, or once it holds `max_events` events (two safety
//! valves against bots that never stop; the second also bounds a session's size, which must fit
//! one DynamoDB item of 400 KB with its event ids).
//! There is no split at midnight or on a campaign change. A late event that closes the gap
//! between two sessions joins them into one, the earlier absorbing the later: while neither
//! valve acts, the sessions are then the same whatever order and batches the events came in. An event whose id a session
//! already holds is not counted again, so replaying the stream changes nothing. An event that
//! reached the collector more than `allowed_lateness_ms` after it happened is [`too_late`]:
//! measured by its own two times, so a replay judges it as the first pass did.

use retailmind_connectors::{Merge, StoredAt, MAX_ABSORBED};
use retailmind_schema::{
    device_class, Event, Payload, Session, SessionOrder, ENGAGED_MS, MAX_SESSION_EVENTS,
    MAX_SESSION_ORDERS, PAGE_ENGAGEMENT,
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
    /// Every session that changed, each with its version bumped once, except those in `merged`.
    pub changed: Vec<Session>,
    /// Sessions that absorbed stored ones, each to be written together with their deletion.
    pub merged: Vec<Merge>,
    /// Events kept out of every session because they fell within the span of a session that
    /// already holds `max_events` (after it, a new session starts; within it, one would overlap).
    pub over_cap: u64,
    /// Stored sessions that already held some of these events and did not change: a batch
    /// applied again after its session write landed (and something after it failed) finds its
    /// sessions here, so what follows that write (the customer profiles) still hears of them.
    pub replayed: Vec<Session>,
}

impl Sessionized {
    /// Adds another visitor's outcome to this one.
    pub fn add(&mut self, other: Sessionized) {
        let Sessionized {
            changed,
            merged,
            over_cap,
            replayed,
        } = other;
        self.changed.extend(changed);
        self.merged.extend(merged);
        self.over_cap += over_cap;
        self.replayed.extend(replayed);
    }
}

/// A visitor's session while events are folded in.
struct Slot {
    session: Session,
    changed: bool,
    /// It already held one of the events.
    replayed: bool,
    /// Its stored start and version, as read; `None` for one these events opened.
    stored: Option<(i64, u64)>,
    /// Stored sessions this one absorbed.
    absorbed: Vec<StoredAt>,
}

/// Folds `events` (one visitor's, any order) into `known` (that visitor's stored sessions around
/// the events' time).
pub fn sessionize(known: Vec<Session>, events: &[&Event], rules: &SessionRules) -> Sessionized {
    let mut over_cap = 0;
    let mut slots: Vec<Slot> = known
        .into_iter()
        .map(|session| Slot {
            stored: Some((session.start_ms, session.version)),
            session,
            changed: false,
            replayed: false,
            absorbed: Vec::new(),
        })
        .collect();
    slots.sort_by_key(|slot| slot.session.start_ms);
    let mut ordered: Vec<&Event> = events.to_vec();
    ordered.sort_by_key(|e| (e.timestamp, e.event_id));

    for event in ordered {
        if let Some(slot) = slots
            .iter_mut()
            .find(|slot| slot.session.event_ids.contains(&event.event_id))
        {
            slot.replayed = true;
            continue;
        }
        match home(&slots, event.timestamp, rules).map(|at| &mut slots[at]) {
            Some(slot) if slot.session.event_count >= rules.max_events => over_cap += 1,
            Some(slot) => {
                fold(&mut slot.session, event);
                slot.changed = true;
            }
            None => {
                let pos = slots.partition_point(|slot| slot.session.start_ms <= event.timestamp);
                let slot = Slot {
                    session: start(event),
                    changed: true,
                    replayed: false,
                    stored: None,
                    absorbed: Vec::new(),
                };
                slots.insert(pos, slot);
            }
        }
    }
    join_bridged(&mut slots, rules);
    // Around a change, and around a replay too: the replayed batch may have failed after some
    // of its sessions were stored one by one and before the renumbered ones were. A replay of a
    // batch stored whole finds every number right and writes nothing; so does one among
    // sessions stored before they were numbered (0), which a real change numbers.
    let numbered = slots.iter().all(|slot| slot.session.session_number > 0);
    if slots
        .iter()
        .any(|slot| slot.changed || (slot.replayed && numbered))
    {
        renumber(&mut slots);
    }

    let mut out = Sessionized {
        over_cap,
        ..Sessionized::default()
    };
    for slot in slots {
        if !slot.changed {
            if slot.replayed {
                out.replayed.push(slot.session);
            }
            continue;
        }
        let mut session = slot.session;
        session.settle();
        session.version += 1;
        if slot.absorbed.is_empty() {
            out.changed.push(session);
        } else {
            out.merged.push(Merge {
                survivor: session,
                survivor_read_start: slot.stored.map(|(start_ms, _)| start_ms),
                absorbed: slot.absorbed,
            });
        }
    }
    out
}

/// Joins neighbours that new events brought within the inactivity gap of each other, as long
/// as the joined session keeps to the maximum length and event count. The earlier absorbs the
/// later, keeping its id and key.
fn join_bridged(slots: &mut Vec<Slot>, rules: &SessionRules) {
    let mut at = 1;
    while at < slots.len() {
        let (earlier, later) = (&slots[at - 1], &slots[at]);
        // Two stored sessions that no event touched were apart when written (under these rules
        // or earlier ones); only a change may join them.
        let touched = earlier.changed || later.changed;
        // Past this many, the rest wait for the visitor's next events (each join is a write).
        let deletes =
            earlier.absorbed.len() + later.absorbed.len() + usize::from(later.stored.is_some());
        let room = deletes <= MAX_ABSORBED;
        if touched && room && joinable(&earlier.session, &later.session, rules) {
            let later = slots.remove(at);
            let earlier = &mut slots[at - 1];
            earlier.changed = true;
            earlier.absorbed.extend(later.absorbed);
            if let Some((start_ms, version)) = later.stored {
                earlier.absorbed.push(StoredAt {
                    anonymous_id: later.session.anonymous_id.clone(),
                    start_ms,
                    session_id: later.session.session_id.clone(),
                    version,
                });
            }
            absorb(&mut earlier.session, later.session);
        } else {
            at += 1;
        }
    }
}

fn joinable(earlier: &Session, later: &Session, rules: &SessionRules) -> bool {
    later.start_ms - earlier.end_ms <= rules.inactivity_ms
        && earlier.end_ms.max(later.end_ms) - earlier.start_ms <= rules.max_duration_ms
        && earlier.event_count + later.event_count <= rules.max_events
}

/// Adds `later`'s events to `s`, as if each had been folded in.
fn absorb(s: &mut Session, later: Session) {
    if later.end_ms >= s.end_ms {
        s.end_ms = later.end_ms;
        s.exit_url = later.exit_url;
    }
    if later.user_id.is_some() {
        s.user_id = later.user_id;
    }
    s.event_ids.extend(later.event_ids);
    s.event_count += later.event_count;
    s.page_views += later.page_views;
    s.products_viewed += later.products_viewed;
    s.cart_adds += later.cart_adds;
    s.purchases += later.purchases;
    s.add_revenue(
        later.currency.as_deref().unwrap_or_default(),
        later.revenue_minor,
    );
    for other in &later.other_revenue {
        s.add_revenue(&other.currency, other.revenue_minor);
    }
    for order in later.orders {
        // Counted in both: once, at the larger revenue of the two.
        match s.orders.iter().position(|o| o.order_id == order.order_id) {
            Some(at) => {
                s.purchases = s.purchases.saturating_sub(1);
                let counted = &mut s.orders[at];
                let twice = counted.revenue_minor.min(order.revenue_minor);
                counted.revenue_minor = counted.revenue_minor.max(order.revenue_minor);
                s.add_revenue(&order.currency, -twice);
            }
            None => {
                if s.orders.len() < MAX_SESSION_ORDERS {
                    s.orders.push(order);
                }
            }
        }
    }
    s.engaged_ms = match (s.engaged_ms, later.engaged_ms) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
}

/// Numbers the sessions on from the first one at hand, which keeps its number (1 when it is
/// new). Every later session is at hand (the stores read all sessions after the window's
/// start), so a session opened or absorbed before others moves their numbers, and a number left
/// wrong by an interrupted write is put right by the visitor's next event.
fn renumber(slots: &mut [Slot]) {
    let mut previous = None;
    for slot in slots.iter_mut() {
        let number = match previous {
            Some(number) => number + 1,
            None => slot.session.session_number.max(1),
        };
        if slot.session.session_number != number {
            slot.session.session_number = number;
            slot.changed = true;
        }
        previous = Some(number);
    }
}

/// The session (its position in `slots`, sorted by start) an event at `ts` joins: the one
/// whose span holds it, else the nearer of its two neighbours that accepts it, else none.
///
/// Only a neighbour may grow: a session further away would grow over the one between, and a
/// visitor's sessions must stay disjoint. Stores read only the latest session starting before a
/// batch's window and every later one, which finds all that can take its events only when no
/// two overlap; and a start moved onto another session's start would collide with its key.
fn home(slots: &[Slot], ts: i64, rules: &SessionRules) -> Option<usize> {
    if let Some(at) = slots
        .iter()
        .rposition(|slot| slot.session.start_ms <= ts && ts <= slot.session.end_ms)
    {
        return Some(at);
    }
    // No span holds `ts`: every session ends before it or starts after it.
    let right = slots.partition_point(|slot| slot.session.start_ms < ts);
    let before = right
        .checked_sub(1)
        .filter(|&at| accepts(&slots[at].session, ts, rules));
    let after = Some(right).filter(|&at| {
        slots
            .get(at)
            .is_some_and(|slot| accepts(&slot.session, ts, rules))
    });
    match (before, after) {
        (Some(b), Some(a)) => {
            let (gap_before, gap_after) =
                (ts - slots[b].session.end_ms, slots[a].session.start_ms - ts);
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
        // One order is one purchase however many events report it, counted at the largest
        // revenue reported (the server's total, with tax and shipping, where a page may send
        // less): the same whichever report comes first, or in which batch.
        Payload::Purchase(p) => match s.orders.iter().position(|o| o.order_id == p.order_id) {
            Some(at) => {
                let counted = &mut s.orders[at];
                if p.revenue_minor > counted.revenue_minor {
                    let more = p.revenue_minor - counted.revenue_minor;
                    counted.revenue_minor = p.revenue_minor;
                    let currency = counted.currency.clone();
                    s.add_revenue(&currency, more);
                }
            }
            None => {
                if s.orders.len() < MAX_SESSION_ORDERS {
                    s.orders.push(SessionOrder {
                        order_id: p.order_id.clone(),
                        revenue_minor: p.revenue_minor,
                        currency: p.currency.clone(),
                    });
                }
                s.purchases += 1;
                s.add_revenue(&p.currency, p.revenue_minor);
            }
        },
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
