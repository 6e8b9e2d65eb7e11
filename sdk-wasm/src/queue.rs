//! The durable queue's rules: how an event is stored, and how stored events are cut into
//! batches. Pure; `glue.js` does the storing (IndexedDB, localStorage or memory) and
//! `delivery.rs` the sending.
//!
//! A stored event is `key = event id`, `value = "<batch id>,<last send ms>|<event JSON>"`, batch
//! id and time empty until the event is first cut into a batch. From then on the batch keeps its id and its events
//! through every resend, from this page or a later one, so the collector can answer a repeat as
//! a duplicate. A batch id is never given to an event that was not in its first send: the
//! collector drops a repeated batch whole, so a batch that grew would lose the new events.

/// Browsers allow 64 KiB of `keepalive` request bodies in flight per page; stay below it with
/// room for a second, small request.
pub const MAX_BODY_BYTES: usize = 60_000;

use crate::text::{cut, parse_int};
/// `{"batch_id":"<36 chars>","sent_at":<ms>,"events":[]}` with room to spare.
pub const ENVELOPE_BYTES: usize = 96;
/// A batch handed to the browser less than this long ago is not sent again yet: two copies in
/// flight at once could both be stored, since the collector only recognises a batch id it has
/// finished writing. Page exit fires `visibilitychange` and `pagehide` back to back, and the next
/// page starts while the exit's requests are still on their way.
pub const QUIET_MS: i64 = 5_000;
/// A page that cannot reach the collector must not grow its own part of the queue without
/// bound.
pub const MAX_PENDING_EVENTS: usize = 1_000;

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The event id, also the storage key.
    pub id: String,
    /// The batch it was first sent in, if it was.
    pub batch: Option<String>,
    /// When that batch was last handed to the browser, in ms.
    pub sent_ms: i64,
    pub json: String,
}

impl Stored {
    /// Reads a stored value; `None` for anything this version did not write.
    pub fn parse(id: String, value: &str) -> Option<Stored> {
        let (head, json) = cut(value, b'|', false)?;
        if !json.starts_with('{') {
            return None;
        }
        let (batch, sent) = cut(head, b',', false).unwrap_or((head, ""));
        Some(Stored {
            id,
            batch: (!batch.is_empty()).then(|| batch.to_owned()),
            sent_ms: parse_int(sent).unwrap_or(0),
            json: json.to_owned(),
        })
    }

    /// The stored value.
    pub fn value(&self) -> String {
        let mut v = String::with_capacity(60 + self.json.len());
        if let Some(batch) = &self.batch {
            v.push_str(batch);
            v.push(',');
            crate::json::push_int(&mut v, self.sent_ms);
        }
        v.push('|');
        v.push_str(&self.json);
        v
    }

    /// Sent less than [`QUIET_MS`] before `now_ms`: probably still on its way.
    pub fn in_flight(&self, now_ms: i64) -> bool {
        self.batch.is_some() && now_ms.saturating_sub(self.sent_ms) < QUIET_MS
    }
}

/// A batch to send: its id and the positions of its events in the records it was cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub batch_id: String,
    pub members: Vec<usize>,
    /// Cut just now: its events must be stored with the batch id before it is sent.
    pub new: bool,
    /// Size of its body.
    pub bytes: usize,
}

/// Cuts `records` into batches, oldest first: batches already sent keep their members; the
/// others are cut in order, at most `batch_size` events and `max_body` bytes per body. An event
/// too big for any body gets a batch of its own (the collector refuses it, which drops it).
/// Batches sent within [`QUIET_MS`] before `now_ms` are left out.
pub fn plan(
    records: &[Stored],
    batch_size: usize,
    max_body: usize,
    now_ms: i64,
    mut new_id: impl FnMut() -> String,
) -> Vec<Planned> {
    // Resends first: they were cut before anything that waits.
    let mut resends: Vec<Planned> = Vec::new();
    let mut fresh: Vec<Planned> = Vec::new();
    let mut open: Option<Planned> = None;
    for (i, r) in records.iter().enumerate() {
        let bytes = r.json.len() + 1;
        match &r.batch {
            Some(_) if r.in_flight(now_ms) => {}
            Some(id) => match resends.iter_mut().find(|p| &p.batch_id == id) {
                Some(p) => {
                    p.members.push(i);
                    p.bytes += bytes;
                }
                None => resends.push(Planned {
                    batch_id: id.clone(),
                    members: vec![i],
                    new: false,
                    bytes: ENVELOPE_BYTES + bytes,
                }),
            },
            None => {
                let full = |p: &mut Planned| {
                    p.members.len() >= batch_size.max(1) || p.bytes + bytes > max_body
                };
                if let Some(p) = open.take_if(full) {
                    fresh.push(p);
                }
                let p = open.get_or_insert_with(|| Planned {
                    batch_id: new_id(),
                    members: Vec::new(),
                    new: true,
                    bytes: ENVELOPE_BYTES,
                });
                p.members.push(i);
                p.bytes += bytes;
            }
        }
    }
    resends.append(&mut fresh);
    if let Some(p) = open {
        resends.push(p);
    }
    resends
}

/// How long until the first batch now in its quiet time may be sent again; `None` when none is.
pub fn quiet_left_ms(records: &[Stored], now_ms: i64) -> Option<i64> {
    records
        .iter()
        .filter(|r| r.in_flight(now_ms))
        .map(|r| r.sent_ms + QUIET_MS - now_ms)
        .min()
}

/// A note, kept in shared storage by whichever tab or page sent a batch, of its id, when it left
/// and its members. Written synchronously, so it survives a page that went away before its queue
/// write of the same batch was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentNote {
    pub batch_id: String,
    pub sent_ms: i64,
    pub event_ids: Vec<String>,
}

/// Gives records named in a note that note's batch and send time, so they are sent again as that
/// batch (after its quiet time), never cut into a new one: the collector could then store them
/// twice. A record already in another batch keeps it. Returns the positions of the records that
/// changed, to be stored again.
pub fn adopt_notes(records: &mut [Stored], notes: &[SentNote]) -> Vec<usize> {
    let mut changed = Vec::new();
    for (i, r) in records.iter_mut().enumerate() {
        let Some(note) = notes.iter().find(|n| n.event_ids.contains(&r.id)) else {
            continue;
        };
        let same_batch = r.batch.as_deref() == Some(note.batch_id.as_str());
        if r.batch.is_none() || (same_batch && note.sent_ms > r.sent_ms) {
            r.batch = Some(note.batch_id.clone());
            r.sent_ms = note.sent_ms;
            changed.push(i);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize, batch: Option<&str>, bytes: usize) -> Stored {
        let mut json = String::from("{");
        json.push_str(&"x".repeat(bytes.saturating_sub(2)));
        json.push('}');
        Stored {
            id: n.to_string(),
            batch: batch.map(str::to_owned),
            sent_ms: 0,
            json,
        }
    }

    const NOW: i64 = 1_000_000;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            ["new", &n.to_string()].concat()
        }
    }

    fn members(plans: &[Planned]) -> Vec<(String, Vec<usize>, bool)> {
        plans
            .iter()
            .map(|p| (p.batch_id.clone(), p.members.clone(), p.new))
            .collect()
    }

    #[test]
    fn stored_values_round_trip_and_foreign_values_are_skipped() {
        let r = Stored {
            id: "e1".into(),
            batch: Some("b1".into()),
            sent_ms: 1_732_530_000_000,
            json: r#"{"a":"x|y"}"#.into(),
        };
        assert_eq!(r.value(), r#"b1,1732530000000|{"a":"x|y"}"#);
        assert_eq!(Stored::parse("e1".into(), &r.value()), Some(r.clone()));
        let fresh = Stored {
            batch: None,
            sent_ms: 0,
            ..r
        };
        assert_eq!(fresh.value(), r#"|{"a":"x|y"}"#);
        assert_eq!(Stored::parse("e1".into(), &fresh.value()), Some(fresh));
        assert_eq!(Stored::parse("e".into(), "garbage"), None);
        assert_eq!(Stored::parse("e".into(), "b|not json"), None);
    }

    #[test]
    fn cuts_by_count_in_order() {
        let recs: Vec<Stored> = (0..5).map(|n| rec(n, None, 10)).collect();
        let plans = plan(&recs, 2, MAX_BODY_BYTES, NOW, ids());
        assert_eq!(
            members(&plans),
            [
                ("new1".into(), vec![0, 1], true),
                ("new2".into(), vec![2, 3], true),
                ("new3".into(), vec![4], true)
            ]
        );
    }

    #[test]
    fn cuts_by_bytes() {
        let recs: Vec<Stored> = (0..4).map(|n| rec(n, None, 99)).collect();
        // Envelope + two events of 99 bytes and their commas: 296.
        let plans = plan(&recs, 100, 296, NOW, ids());
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].members, [0, 1]);
        assert_eq!(plans[0].bytes, 296);
        assert!(plans.iter().all(|p| p.bytes <= 296));
    }

    #[test]
    fn an_event_too_big_for_any_body_goes_alone() {
        let recs = vec![rec(0, None, 10), rec(1, None, 500), rec(2, None, 10)];
        let plans = plan(&recs, 10, 200, NOW, ids());
        let m: Vec<Vec<usize>> = plans.iter().map(|p| p.members.clone()).collect();
        assert_eq!(m, [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn sent_batches_keep_their_id_and_members_and_go_first() {
        let recs = vec![
            rec(0, None, 10),
            rec(1, Some("b1"), 10),
            rec(2, Some("b2"), 10),
            rec(3, Some("b1"), 10),
            rec(4, None, 10),
        ];
        let plans = plan(&recs, 1, MAX_BODY_BYTES, NOW, ids());
        assert_eq!(
            members(&plans),
            [
                ("b1".into(), vec![1, 3], false),
                ("b2".into(), vec![2], false),
                ("new1".into(), vec![0], true),
                ("new2".into(), vec![4], true)
            ]
        );
        // A resent batch is never topped up, whatever the batch size.
        let plans = plan(&recs, 50, MAX_BODY_BYTES, NOW, ids());
        assert_eq!(plans[0].members, [1, 3]);
        assert_eq!(plans[2].members, [0, 4]);
    }

    #[test]
    fn a_batch_sent_moments_ago_waits_until_it_is_surely_answered() {
        let mut recs = vec![
            rec(0, Some("b1"), 10),
            rec(1, Some("b1"), 10),
            rec(2, None, 10),
        ];
        recs[0].sent_ms = NOW - 100;
        recs[1].sent_ms = NOW - 100;
        let plans = plan(&recs, 20, MAX_BODY_BYTES, NOW, ids());
        assert_eq!(members(&plans), [("new1".into(), vec![2], true)]);
        let later = plan(&recs, 20, MAX_BODY_BYTES, NOW - 100 + QUIET_MS, ids());
        assert_eq!(later[0].members, [0, 1]);
        assert!(!later[0].new);
    }

    #[test]
    fn nothing_queued_is_nothing_to_send() {
        assert!(plan(&[], 20, MAX_BODY_BYTES, NOW, ids()).is_empty());
    }

    fn note(batch: &str, sent_ms: i64, ids: &[usize]) -> SentNote {
        SentNote {
            batch_id: batch.into(),
            sent_ms,
            event_ids: ids.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn records_named_in_a_note_join_its_batch_and_wait_out_its_quiet_time() {
        // A page sealed events 0 and 1 as b1 and went away before its queue write committed:
        // only the note says so.
        let mut recs: Vec<Stored> = (0..3).map(|n| rec(n, None, 10)).collect();
        let changed = adopt_notes(&mut recs, &[note("b1", NOW - 100, &[0, 1])]);
        assert_eq!(changed, [0, 1]);
        assert_eq!(recs[0].batch.as_deref(), Some("b1"));
        assert_eq!(recs[1].sent_ms, NOW - 100);
        assert_eq!(recs[2].batch, None);
        // Still in flight: only the unnoted event is cut into a new batch.
        let plans = plan(&recs, 20, MAX_BODY_BYTES, NOW, ids());
        assert_eq!(members(&plans), [("new1".into(), vec![2], true)]);
        // Once quiet, b1 goes again whole, under its own id.
        let later = plan(&recs, 20, MAX_BODY_BYTES, NOW + QUIET_MS, ids());
        assert_eq!(later[0].batch_id, "b1");
        assert_eq!(later[0].members, [0, 1]);
        assert!(!later[0].new);
    }

    #[test]
    fn a_note_never_moves_an_event_to_another_batch_and_only_refreshes_its_own() {
        let mut recs = vec![rec(0, Some("b0"), 10), rec(1, Some("b1"), 10)];
        recs[1].sent_ms = 50;
        let notes = [note("b9", 70, &[0]), note("b1", 60, &[1])];
        assert_eq!(adopt_notes(&mut recs, &notes), [1]);
        assert_eq!(recs[0].batch.as_deref(), Some("b0"));
        assert_eq!(recs[1].sent_ms, 60);
        // An older note of the same batch changes nothing.
        assert!(adopt_notes(&mut recs, &[note("b1", 10, &[1])]).is_empty());
    }

    #[test]
    fn the_wait_for_quiet_batches_is_until_the_first_may_go() {
        let mut recs = vec![
            rec(0, Some("b1"), 10),
            rec(1, Some("b2"), 10),
            rec(2, None, 10),
        ];
        recs[0].sent_ms = NOW - 1_000;
        recs[1].sent_ms = NOW - 4_000;
        assert_eq!(quiet_left_ms(&recs, NOW), Some(QUIET_MS - 4_000));
        assert_eq!(quiet_left_ms(&recs, NOW + QUIET_MS), None);
        assert_eq!(quiet_left_ms(&[rec(0, None, 10)], NOW), None);
    }
}
