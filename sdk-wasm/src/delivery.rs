//! Getting the durable queue to the collector: one batch at a time from one tab at a time while
//! pages live, this page's events all at once when it goes away, and `flush()` to wait on.
//!
//! An event leaves the queue only after a 2xx (or a 4xx refusing its batch as malformed). A
//! send cycle reads the whole queue, so it also delivers what other tabs and earlier pages left.

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::backoff::{verdict_for_status, wait_ms, Verdict};
use crate::browser::{self, jitter, new_event_id, now_ms};
use crate::glue;
use crate::privacy::Permission;
use crate::queue::{self, SentNote, Stored, MAX_BODY_BYTES};
use crate::text::{cat, cut, parse_int, parts};
use crate::tracker;
use crate::{json, wire};

/// Largest body sent while a page goes away: two fit in the browser's 64 KiB keepalive budget,
/// so a batch already in flight does not stop the page's last events.
pub const EXIT_BODY_BYTES: usize = 30_000;

/// Starts a send cycle unless one runs in this page, tracking is off, or (unless `force`) the
/// backoff after a failure has not passed. Another tab holding the lock makes it a no-op.
pub fn kick(force: bool) {
    if claim(false, force) == Ok(true) {
        // Its outcome is kept for flush(); nobody waits on a timed send.
        let _ = glue::send(false);
    }
}

/// Marks a send cycle as running in this page if tracking is on and, unless `patient` (a flush,
/// which waits for a running cycle), none runs and (unless `force`) the backoff has passed.
fn claim(patient: bool, force: bool) -> Result<bool, tracker::TrackerError> {
    tracker::with(|t| {
        let start = t.permission == Permission::Track
            && (patient || !t.delivery.running && (force || now_ms() >= t.delivery.retry_at_ms));
        if start {
            t.delivery.running = true;
        }
        start
    })
}

/// The timer's tick: sends this page's waiting events, and now and then looks for events other
/// tabs or earlier pages left behind.
pub fn on_timer() {
    let due = tracker::with(|t| {
        t.delivery.ticks = t.delivery.ticks.wrapping_add(1);
        !t.pending.is_empty() || t.delivery.leftovers || t.delivery.ticks % 30 == 1
    });
    if due == Ok(true) {
        kick(false);
    }
}

/// Sends everything queued and resolves once the collector has answered; waits for this page's
/// running cycle and for another tab's lock rather than skipping, and for batches in their quiet
/// time. Rejects, leaving the events queued, at the first network error or retryable status; a
/// refused (4xx) batch is dropped and reported once the rest is sent.
pub fn flush() -> Promise {
    match claim(true, false) {
        Ok(true) => glue::send(true),
        Ok(false) => Promise::reject(
            &JsError::new(
                "retailmind: tracking is off (consent, opt-out or sampling); nothing to send",
            )
            .into(),
        ),
        Err(e) => Promise::reject(&JsError::new(&e.message()).into()),
    }
}

/// The end of a cycle: `undefined`, or the reason it stopped (a failure to retry, or a batch the
/// collector refused), for flush() to reject with.
pub(crate) fn cycle_done() -> JsValue {
    let last = tracker::with(|t| {
        t.delivery.running = false;
        t.delivery.last.take()
    });
    match last {
        Ok(Some(Err(reason))) | Ok(Some(Ok(Some(reason)))) => JsValue::from(reason),
        _ => JsValue::UNDEFINED,
    }
}

/// Where a note of a sent batch is kept in localStorage, followed by the batch id; the value is
/// `<ms>,<event id>,…`. Written synchronously, so every tab (and a page going away) sees it.
const NOTE: &str = "retailmind.sent.";

/// The cycle's next step, given the queue's records as lines of `<key>\t<value>` (stored values
/// hold JSON text, which has no raw tab or line break): `<endpoint>\n<body>` of the batch to
/// post, sealed already; else the ms until a batch in its quiet time may go again (`glue.js`
/// waits that long when patient); else `null`: nothing left to send.
pub(crate) fn plan_next(all: JsValue) -> JsValue {
    let all = all.as_string().unwrap_or_default();
    let mut records: Vec<Stored> = parts(&all, b'\n')
        .filter_map(|line| {
            let (key, value) = cut(line, b'\t', false)?;
            Stored::parse(key.to_owned(), value)
        })
        .collect();
    let Ok((endpoint, batch_size)) = tracker::with(|t| (t.endpoint.clone(), t.config.batch_size))
    else {
        return JsValue::NULL;
    };
    // A tab or page may have sent some of these as its own batch, and (a page going away) not
    // lived to store that in the queue: its note says so. Those events go again as that batch.
    for i in queue::adopt_notes(&mut records, &sent_notes()) {
        glue::q_put(&records[i].id, &records[i].value());
    }
    let now = now_ms();
    let Some(next) = queue::plan(&records, batch_size, MAX_BODY_BYTES, now, new_event_id)
        .into_iter()
        .next()
    else {
        let quiet = queue::quiet_left_ms(&records, now);
        let _ = tracker::with(|t| t.delivery.leftovers = quiet.is_some());
        return quiet.map_or(JsValue::NULL, |ms| JsValue::from_f64(ms as f64));
    };
    let ids = seal(
        &next.batch_id,
        now,
        next.new,
        &mut records,
        &next.members,
        false,
    );
    let body = wire::batch(
        &next.batch_id,
        now,
        next.members.iter().map(|&i| records[i].json.as_str()),
    );
    let _ = tracker::with(|t| t.delivery.sending = Some((next.batch_id, ids)));
    cat(&[&endpoint, "\n", &body]).into()
}

/// What became of the batch [`plan_next`] handed out: `answer` is the HTTP status (with the
/// collector's `Retry-After` in seconds), or the reason there was no answer. Returns the promise
/// of removing its events from the queue when they are done with (`glue.js` then goes on), or
/// `null` to stop the cycle.
pub(crate) fn settle(answer: JsValue, retry_after_s: f64) -> JsValue {
    let Ok(Some((batch_id, ids))) = tracker::with(|t| t.delivery.sending.take()) else {
        return JsValue::NULL;
    };
    if let Some(reason) = answer.as_string() {
        backoff(0.0);
        set_last(Err(waiting(&cat(&[
            "could not reach the collector (",
            &reason,
            ")",
        ]))));
        return JsValue::NULL;
    }
    let status = answer.as_f64().unwrap_or(0.0) as u16;
    match verdict_for_status(status) {
        Verdict::Retry => {
            backoff(retry_after_s);
            set_last(Err(waiting(&cat(&[
                "the collector answered HTTP ",
                &json::int_text(status.into()),
            ]))));
            JsValue::NULL
        }
        verdict => {
            let removed = glue::q_del(&ids);
            glue::ls_set(&cat(&[NOTE, &batch_id]), None);
            acknowledged(&ids);
            glue::tell(&cat(&["a,", &ids]));
            if verdict == Verdict::Drop {
                let message = cat(&[
                    "retailmind: the collector refused a batch with HTTP ",
                    &json::int_text(status.into()),
                    "; its ",
                    &json::int_text(parts(&ids, b',').count() as i64),
                    " events were dropped",
                ]);
                browser::warn(&message);
                set_last(Ok(Some(message)));
            }
            removed.into()
        }
    }
}

/// How this cycle ended, for `cycle_done`.
fn set_last(last: Result<Option<String>, String>) {
    let _ = tracker::with(|t| t.delivery.last = Some(last));
}

fn waiting(what: &str) -> String {
    let left = json::int_text(tracker::queued() as i64);
    cat(&["retailmind: ", what, "; ", &left, " events stay queued"])
}

/// Records a failure: the next timed cycle waits for the backoff or the collector's
/// `Retry-After`, whichever is longer.
fn backoff(retry_after_s: f64) {
    let _ = tracker::with(|t| {
        let d = &mut t.delivery;
        d.failures = d.failures.saturating_add(1);
        d.retry_at_ms = now_ms() + wait_ms(d.failures, jitter(), retry_after_s);
    });
}

/// The collector took (or refused) the events with these ids (comma-separated): they leave this
/// page's list.
pub fn acknowledged(ids: &str) {
    let _ = tracker::with(|t| {
        t.pending.retain(|r| !parts(ids, b',').any(|id| id == r.id));
        t.delivery.failures = 0;
        t.delivery.retry_at_ms = 0;
    });
}

/// Every tab's notes of the batches it sent and that were not acknowledged yet (`glue.js`
/// gives them as lines of `<batch id>,<ms>,<event id>,…`).
fn sent_notes() -> Vec<SentNote> {
    let notes = glue::sent_notes(NOTE);
    parts(&notes, b'\n').filter_map(parse_note).collect()
}

/// A note of a sent batch: `<batch id>,<ms>,<event id>,…`.
fn parse_note(note: &str) -> Option<SentNote> {
    let (batch_id, rest) = cut(note, b',', false)?;
    let (ms, ids) = cut(rest, b',', false).unwrap_or((rest, ""));
    Some(SentNote {
        batch_id: batch_id.to_owned(),
        sent_ms: parse_int(ms).unwrap_or(0),
        event_ids: parts(ids, b',').map(str::to_owned).collect(),
    })
}

/// Before a batch's first send (`new`), stores the batch id with each member (synchronously
/// with `now`: the page is going away), notes it for every tab and tells the other tabs, so
/// that whoever sends these events again sends them as this batch. Either way this page's copy
/// learns when the batch left, so a page exit now does not send it a second time. Returns the
/// members' ids, comma-separated.
fn seal(
    batch_id: &str,
    ms: i64,
    new: bool,
    records: &mut [Stored],
    members: &[usize],
    now: bool,
) -> String {
    let mut ids = String::new();
    for &i in members {
        let r = &mut records[i];
        if new || now {
            r.batch = Some(batch_id.to_owned());
            r.sent_ms = ms;
            if now {
                glue::q_put_now(&r.id, &r.value());
            } else {
                glue::q_put(&r.id, &r.value());
            }
        }
        if !ids.is_empty() {
            ids.push(',');
        }
        ids.push_str(&r.id);
    }
    let mut note = json::int_text(ms);
    note.push(',');
    note.push_str(&ids);
    glue::ls_set(&cat(&[NOTE, batch_id]), Some(&note));
    let message = cat(&["s,", batch_id, ",", &note]);
    if !now {
        sealed_elsewhere(&message[2..]);
    }
    glue::tell(&message);
    ids
}

/// Another tab (or this page's cycle) sent events as a batch: `<batch id>,<ms>,<event id>,…`.
fn sealed_elsewhere(note: &str) {
    let Some(note) = parse_note(note) else {
        return;
    };
    let _ = tracker::with(|t| {
        for r in t.pending.iter_mut() {
            if note.event_ids.contains(&r.id) {
                r.batch = Some(note.batch_id.clone());
                r.sent_ms = note.sent_ms;
            }
        }
    });
}

/// A message from another tab: `a,<ids…>` acknowledged, `s,<batch>,<ms>,<ids…>` sent.
pub fn on_tab_message(message: JsValue) {
    let m = message.as_string().unwrap_or_default();
    match cut(&m, b',', false) {
        Some(("a", ids)) => acknowledged(ids),
        Some(("s", note)) => sealed_elsewhere(note),
        _ => {}
    }
}

/// The page is being hidden or left: hands every event of this page not yet acknowledged to
/// the browser right now (`fetchLater`, keepalive `fetch` or `sendBeacon`), cut to fit the
/// keepalive budget. They stay queued: if the page lives on, or on the next visit, they are
/// sent again under the same batch ids and the collector answers the repeat as a duplicate.
pub fn send_everything_now() {
    // What other tabs sent of this page's events, in case their messages have not arrived.
    let notes = sent_notes();
    let Ok(Some((endpoint, bodies))) = tracker::with(|t| {
        queue::adopt_notes(&mut t.pending, &notes);
        if t.permission != Permission::Track || t.pending.is_empty() {
            return None;
        }
        let now = now_ms();
        // Batches on their way (this page's cycle, an earlier exit event) are left alone.
        let plans = queue::plan(
            &t.pending,
            t.config.batch_size,
            EXIT_BODY_BYTES,
            now,
            new_event_id,
        );
        let mut bodies = Vec::with_capacity(plans.len());
        for p in &plans {
            bodies.push(wire::batch(
                &p.batch_id,
                now,
                p.members.iter().map(|&i| t.pending[i].json.as_str()),
            ));
            // Stored with the time it left, so the next page waits for this copy's answer
            // before sending the batch again.
            seal(&p.batch_id, now, true, &mut t.pending, &p.members, true);
        }
        Some((t.endpoint.clone(), bodies))
    }) else {
        return;
    };
    for body in bodies {
        // Refused: the budget is spent; the rest waits in the queue for the next visit.
        if !glue::post_now(&endpoint, &body) {
            break;
        }
    }
}
