//! A shard's records as read and decoded, and the batch window that gathers several reads into
//! one batch before it is written.
//!
//! Read live, a stream hands out a few records per read, five reads a second: written read by
//! read, nearly every event rewrites its session's snapshot, and every read costs a checkpoint
//! write and a lake file. With `batch_window_ms` the reads of a shard are gathered until the
//! window has passed since the first of them (or the batch is full, or the shard ended) and
//! written as one batch, as the Lambda event source mapping's batching window does: a visitor's
//! events within it make one snapshot. Gathered records are not checkpointed, so a crash or a
//! lost lease reads them again from the checkpoint.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use retailmind_connectors::clock::now_ms;
use retailmind_connectors::{ReadBatch, StreamEntry, UndecodableRecord};
use retailmind_schema::Event;
use uuid::Uuid;

/// One or more consecutive reads of a shard, after `after`, decoded.
pub(crate) struct Fetched {
    pub after: Option<String>,
    pub batch: ReadBatch,
    pub events: Vec<DecodedEvent>,
    pub undecodable: Vec<UndecodableRecord>,
    /// When it was read (decoded right after): a batch window opens then, also for a batch
    /// read ahead while the one before it was written.
    pub read_at: Instant,
    /// The ids of `events`, so that a repeat in a later read is dropped as one within the
    /// batch is.
    event_ids: HashSet<Uuid>,
}

/// A stream record that holds an event.
pub(crate) struct DecodedEvent {
    pub event: Event,
    /// The record's bytes: the lake keeps them as they came.
    pub data: bytes::Bytes,
    /// Where the record is in its batch's entries (for its sequence number).
    pub record: usize,
}

/// Stream records split into events (with their original bytes, which go to the lake as they
/// are) and records that are not events. Repeats of an event id are dropped.
pub(crate) struct Decoded {
    pub events: Vec<DecodedEvent>,
    pub undecodable: Vec<UndecodableRecord>,
    event_ids: HashSet<Uuid>,
}

impl Decoded {
    pub fn of(entries: &[StreamEntry]) -> Self {
        let mut decoded = Decoded {
            events: Vec::with_capacity(entries.len()),
            undecodable: Vec::new(),
            event_ids: HashSet::with_capacity(entries.len()),
        };
        for (record, entry) in entries.iter().enumerate() {
            match serde_json::from_slice::<Event>(&entry.data) {
                Ok(event) => {
                    if decoded.event_ids.insert(event.event_id) {
                        decoded.events.push(DecodedEvent {
                            event,
                            data: entry.data.clone(),
                            record,
                        });
                    }
                }
                Err(e) => decoded.undecodable.push(UndecodableRecord {
                    received_at_ms: now_ms(),
                    reason: format!("sequence {}: {e}", entry.sequence),
                    data: entry.data.clone(),
                }),
            }
        }
        decoded
    }
}

impl Fetched {
    /// `batch`, read after `after` just now, decoded.
    pub fn decode(after: Option<String>, batch: ReadBatch) -> Self {
        let Decoded {
            events,
            undecodable,
            event_ids,
        } = Decoded::of(&batch.entries);
        Fetched {
            after,
            batch,
            events,
            undecodable,
            read_at: Instant::now(),
            event_ids,
        }
    }

    /// The batch's records.
    pub fn len(&self) -> usize {
        self.batch.entries.len()
    }

    /// The sequence number reading on continues after: the last record's, or `after`.
    pub fn last_sequence(&self) -> Option<&str> {
        self.batch
            .entries
            .last()
            .map(|entry| entry.sequence.as_str())
            .or(self.after.as_deref())
    }

    /// Takes in `later`, the read that came right after this batch: one batch of both.
    pub fn extend(&mut self, later: Fetched) {
        let offset = self.batch.entries.len();
        self.batch.entries.extend(later.batch.entries);
        self.batch.millis_behind_latest = later
            .batch
            .millis_behind_latest
            .or(self.batch.millis_behind_latest);
        self.batch.shard_ended = later.batch.shard_ended;
        for mut decoded in later.events {
            if self.event_ids.insert(decoded.event.event_id) {
                decoded.record += offset;
                self.events.push(decoded);
            }
        }
        self.undecodable.extend(later.undecodable);
    }
}

/// A shard's reads gathered while its batch window is open, which opened when the first of them
/// was read (`read_at`, which later reads leave as it is).
pub(crate) struct Gathered {
    pub fetched: Fetched,
}

impl Gathered {
    /// The window opened by `first`, the first read of a batch.
    pub fn open(first: Fetched) -> Self {
        Gathered { fetched: first }
    }

    /// Whether the batch is to be written now: its window has passed, it holds `batch_size`
    /// records, or its shard ended (nothing more will come).
    pub fn is_due(&self, window: Duration, batch_size: usize, now: Instant) -> bool {
        now >= self.due_at(window)
            || self.fetched.len() >= batch_size
            || self.fetched.batch.shard_ended
    }

    /// When the window closes.
    pub fn due_at(&self, window: Duration) -> Instant {
        self.fetched.read_at + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u32, event: Option<u32>) -> StreamEntry {
        let data = match event {
            Some(n) => format!(
                r#"{{"event_id":"01936a1c-3b5e-7cc4-9a1e-{n:012x}","type":"page_view","anonymous_id":"a","timestamp":1764064800000,"context":{{"page":{{"url":"https://shop.example/"}}}},"properties":{{"url":"https://shop.example/"}}}}"#
            ),
            None => "not an event".to_owned(),
        };
        StreamEntry {
            sequence: format!("{sequence:05}"),
            partition_key: "a".into(),
            data: data.into(),
        }
    }

    fn read(after: Option<&str>, entries: Vec<StreamEntry>, lag: Option<i64>) -> Fetched {
        Fetched::decode(
            after.map(str::to_owned),
            ReadBatch {
                entries,
                millis_behind_latest: lag,
                shard_ended: false,
            },
        )
    }

    #[test]
    fn a_later_read_joins_the_batch_with_its_records_numbered_on() {
        let mut batch = read(
            Some("00000"),
            vec![entry(1, Some(1)), entry(2, None)],
            Some(900),
        );
        let mut later = read(
            Some("00002"),
            vec![entry(3, Some(3)), entry(4, Some(4))],
            Some(100),
        );
        later.batch.shard_ended = true;
        batch.extend(later);

        assert_eq!(batch.after.as_deref(), Some("00000"));
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.last_sequence(), Some("00004"));
        let at: Vec<&str> = batch
            .events
            .iter()
            .map(|e| batch.batch.entries[e.record].sequence.as_str())
            .collect();
        assert_eq!(at, ["00001", "00003", "00004"]);
        assert_eq!(batch.undecodable.len(), 1);
        assert_eq!(batch.batch.millis_behind_latest, Some(100));
        assert!(batch.batch.shard_ended);
    }

    #[test]
    fn an_event_id_seen_in_an_earlier_read_is_dropped_as_a_repeat() {
        let mut batch = read(None, vec![entry(1, Some(7)), entry(2, Some(7))], None);
        assert_eq!(batch.events.len(), 1, "a repeat within a read");
        batch.extend(read(Some("00002"), vec![entry(3, Some(7))], None));
        assert_eq!(batch.events.len(), 1, "a repeat in a later read");
        assert_eq!(batch.len(), 3, "every record stays, for the checkpoint");
    }

    #[test]
    fn a_batch_is_due_when_its_window_passed_it_is_full_or_its_shard_ended() {
        let now = Instant::now();
        let window = Duration::from_secs(5);
        let gathered = |records: u32, ended: bool| {
            let mut fetched = read(
                None,
                (1..=records).map(|n| entry(n, Some(n))).collect(),
                None,
            );
            fetched.batch.shard_ended = ended;
            fetched.read_at = now;
            Gathered::open(fetched)
        };
        assert!(!gathered(2, false).is_due(window, 3, now));
        assert!(!gathered(2, false).is_due(window, 3, now + window / 2));
        assert!(gathered(2, false).is_due(window, 3, now + window));
        assert!(gathered(3, false).is_due(window, 3, now));
        assert!(gathered(2, true).is_due(window, 3, now));
        assert_eq!(gathered(1, false).due_at(window), now + window);
    }
}
