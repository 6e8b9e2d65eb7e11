//! Recent sessions as item sequences, and the item → sessions index the neighbourhood
//! strategies search.
//!
//! Sessions get a sequence number when their first click arrives; the store keeps the newest
//! `max_sessions` and forgets the oldest first, so memory stays bounded on an endless stream.
//! The index lists, per item, the sequence numbers of the sessions that clicked it, ascending, and
//! keeps only the newest `max_sessions_per_item`: neighbour search samples the most recent
//! sessions anyway, and a very popular item would otherwise make every query scan its whole past.
//! Forgotten sessions are skipped lazily when the index is read.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::ItemIx;

/// A session's sequence number: its position in the order sessions were first seen.
pub type SessionSeq = u32;

/// Limits of the session store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionLimits {
    /// Sessions kept; the oldest are forgotten first. 0 keeps no session history at all.
    pub max_sessions: usize,
    /// Clicks kept per session: the latest, so a long session is still queried and learned
    /// from by what it did last.
    pub max_session_len: usize,
    /// Whether to keep the item → sessions index (needed by the neighbourhood strategies only).
    pub index: bool,
    /// Newest sessions listed per item in the index.
    pub max_sessions_per_item: usize,
}

/// One stored session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// The caller's session id.
    pub key: Box<str>,
    /// Clicked items, oldest first, repeats included.
    pub items: Vec<ItemIx>,
    /// Items bought in the session, each once, in the order first bought.
    pub purchased: Vec<ItemIx>,
    /// Time of the latest click or purchase (Unix seconds).
    pub last_time: f64,
}

/// Recent sessions and the item → sessions index.
#[derive(Clone, Debug)]
pub struct SessionStore {
    limits: SessionLimits,
    /// Sequence number of `sessions[0]`.
    first_seq: SessionSeq,
    sessions: VecDeque<SessionRecord>,
    by_key: HashMap<Box<str>, SessionSeq>,
    by_item: Vec<Vec<SessionSeq>>,
}

impl SessionStore {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        SessionStore {
            limits,
            first_seq: 0,
            sessions: VecDeque::new(),
            by_key: HashMap::new(),
            by_item: Vec::new(),
        }
    }

    /// Rebuilds a store (and its index) from stored sessions, oldest first.
    pub(crate) fn from_parts(
        limits: SessionLimits,
        first_seq: SessionSeq,
        sessions: Vec<SessionRecord>,
    ) -> Self {
        let mut store = SessionStore::new(limits);
        store.first_seq = first_seq;
        for (seq, record) in (first_seq..).zip(&sessions) {
            store.by_key.insert(record.key.clone(), seq);
            if limits.index {
                for (pos, &item) in record.items.iter().enumerate() {
                    if !record.items[..pos].contains(&item) {
                        store.index(item, seq);
                    }
                }
            }
        }
        store.sessions = sessions.into();
        store
    }

    /// Records a click; returns the session's sequence number, or `None` when no history is kept.
    pub(crate) fn observe(&mut self, key: &str, item: ItemIx, time: f64) -> Option<SessionSeq> {
        let seq = self.touch(key, time)?;
        let max_len = self.limits.max_session_len;
        let record = self.record_mut(seq).expect("keys map to live sessions");
        if max_len == 0 {
            return Some(seq);
        }
        if record.items.len() >= max_len {
            // The oldest click makes room. The item stays in the index: neighbour search
            // reads the session's items themselves, so a stale entry only costs a candidate.
            record.items.remove(0);
        }
        let first_time = !record.items.contains(&item);
        record.items.push(item);
        if first_time && self.limits.index {
            self.index(item, seq);
        }
        Some(seq)
    }

    /// Records that the session bought `items` (up to `max_session_len` of them are kept).
    pub(crate) fn observe_purchase(&mut self, key: &str, items: &[ItemIx], time: f64) {
        let Some(seq) = self.touch(key, time) else {
            return;
        };
        let max_len = self.limits.max_session_len;
        let record = self.record_mut(seq).expect("keys map to live sessions");
        for &item in items {
            if record.purchased.len() < max_len && !record.purchased.contains(&item) {
                record.purchased.push(item);
            }
        }
    }

    /// The session's sequence number (opened if new) with its last time moved on to `time`, or
    /// `None` when no history is kept.
    fn touch(&mut self, key: &str, time: f64) -> Option<SessionSeq> {
        if self.limits.max_sessions == 0 {
            return None;
        }
        let seq = match self.by_key.get(key) {
            Some(&seq) => seq,
            None => self.open(key, time),
        };
        let record = self.record_mut(seq).expect("keys map to live sessions");
        record.last_time = record.last_time.max(time);
        Some(seq)
    }

    fn open(&mut self, key: &str, time: f64) -> SessionSeq {
        while self.sessions.len() >= self.limits.max_sessions {
            if let Some(old) = self.sessions.pop_front() {
                self.by_key.remove(&old.key);
                self.first_seq += 1;
            }
        }
        let seq = self.first_seq + SessionSeq::try_from(self.sessions.len()).expect("u32 seqs");
        self.sessions.push_back(SessionRecord {
            key: key.into(),
            items: Vec::new(),
            purchased: Vec::new(),
            last_time: time,
        });
        self.by_key.insert(key.into(), seq);
        seq
    }

    /// Adds `seq` to the item's list, keeping it ascending and within its cap.
    fn index(&mut self, item: ItemIx, seq: SessionSeq) {
        let i = item as usize;
        if self.by_item.len() <= i {
            self.by_item.resize_with(i + 1, Vec::new);
        }
        let list = &mut self.by_item[i];
        // Listed already when the item comes back after rolling out of the session's clicks.
        if list.binary_search(&seq).is_ok() {
            return;
        }
        let at = list.len() - list.iter().rev().take_while(|&&s| s > seq).count();
        list.insert(at, seq);
        let cap = self.limits.max_sessions_per_item;
        // Saturating: the cap comes from a snapshot, which may be corrupt.
        if list.len() > cap.saturating_add(cap / 2) {
            list.drain(..list.len() - cap);
        }
    }

    /// The live session with this sequence number.
    pub fn record(&self, seq: SessionSeq) -> Option<&SessionRecord> {
        let offset = seq.checked_sub(self.first_seq)?;
        self.sessions.get(offset as usize)
    }

    fn record_mut(&mut self, seq: SessionSeq) -> Option<&mut SessionRecord> {
        let offset = seq.checked_sub(self.first_seq)?;
        self.sessions.get_mut(offset as usize)
    }

    /// The live session with this id.
    pub fn seq_of(&self, key: &str) -> Option<SessionSeq> {
        self.by_key.get(key).copied()
    }

    /// Up to `sample` sessions that clicked any of `items`, the most recently active first
    /// (ties: the newer session first), leaving out `exclude` (the asking session itself).
    ///
    /// Only the newest `sample` live sessions of each item's list are considered, which is exact
    /// whenever sessions are short compared with the gaps between session starts.
    pub fn recent_sessions_with(
        &self,
        items: &[ItemIx],
        exclude: Option<SessionSeq>,
        sample: usize,
    ) -> Vec<SessionSeq> {
        let mut seen = HashSet::new();
        for &item in items {
            let Some(list) = self.by_item.get(item as usize) else {
                continue;
            };
            let live = list
                .iter()
                .rev()
                .take_while(|&&s| s >= self.first_seq)
                .filter(|&&s| Some(s) != exclude)
                .take(sample);
            seen.extend(live);
        }
        let mut found: Vec<(SessionSeq, f64)> = seen
            .into_iter()
            .filter_map(|s| self.record(s).map(|r| (s, r.last_time)))
            .collect();
        let newest_first =
            |a: &(SessionSeq, f64), b: &(SessionSeq, f64)| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0));
        if found.len() > sample && sample > 0 {
            found.select_nth_unstable_by(sample - 1, newest_first);
        }
        found.truncate(sample);
        found.sort_unstable_by(newest_first);
        found.into_iter().map(|(s, _)| s).collect()
    }

    /// The limits the store keeps to.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    pub(crate) fn first_seq(&self) -> SessionSeq {
        self.first_seq
    }

    /// Live sessions, oldest first.
    pub(crate) fn records(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.iter()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is kept.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Estimated heap bytes of the sessions, the key map and the index.
    pub(crate) fn heap_bytes(&self) -> usize {
        let records: usize = self
            .sessions
            .iter()
            .map(|r| 2 * r.key.len() + (r.items.capacity() + r.purchased.capacity()) * 4)
            .sum();
        let index: usize = self.by_item.iter().map(|l| l.capacity() * 4).sum();
        records
            + self.sessions.capacity() * std::mem::size_of::<SessionRecord>()
            + self.by_key.capacity() * (std::mem::size_of::<(Box<str>, SessionSeq)>() + 1)
            + self.by_item.capacity() * std::mem::size_of::<Vec<SessionSeq>>()
            + index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_sessions: usize) -> SessionLimits {
        SessionLimits {
            max_sessions,
            max_session_len: 3,
            index: true,
            max_sessions_per_item: 2,
        }
    }

    #[test]
    fn groups_clicks_by_session_and_indexes_each_item_once() {
        let mut store = SessionStore::new(limits(10));
        assert_eq!(store.observe("s1", 7, 1.0), Some(0));
        assert_eq!(store.observe("s2", 7, 2.0), Some(1));
        assert_eq!(store.observe("s1", 7, 3.0), Some(0));
        let s1 = store.record(0).unwrap();
        assert_eq!((&s1.items[..], s1.last_time), (&[7, 7][..], 3.0));
        // s1 was active last, so it comes first.
        assert_eq!(store.recent_sessions_with(&[7], None, 10), vec![0, 1]);
        assert_eq!(store.recent_sessions_with(&[7], Some(0), 10), vec![1]);
    }

    #[test]
    fn forgets_the_oldest_session_first() {
        let mut store = SessionStore::new(limits(2));
        store.observe("s1", 1, 1.0);
        store.observe("s2", 1, 2.0);
        store.observe("s3", 1, 3.0);
        assert_eq!(store.seq_of("s1"), None);
        assert_eq!(store.record(0), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.recent_sessions_with(&[1], None, 10), vec![2, 1]);
        // A forgotten session that clicks again starts afresh.
        assert_eq!(store.observe("s1", 1, 4.0), Some(3));
    }

    #[test]
    fn caps_session_length_and_index_lists() {
        let mut store = SessionStore::new(limits(10));
        for (t, item) in [1, 2, 3, 4].into_iter().enumerate() {
            store.observe("s", item, t as f64);
        }
        // The latest clicks are kept; an item that came back is listed once.
        assert_eq!(store.record(0).unwrap().items, vec![2, 3, 4]);
        assert_eq!(store.recent_sessions_with(&[4], None, 10), vec![0]);
        store.observe("s", 1, 4.0);
        assert_eq!(store.record(0).unwrap().items, vec![3, 4, 1]);
        assert_eq!(store.by_item[1], vec![0]);
        for s in 0..5 {
            store.observe(&format!("t{s}"), 9, 10.0 + f64::from(s));
        }
        // At most cap + cap/2 = 3 kept per item: the newest ones.
        assert_eq!(store.recent_sessions_with(&[9], None, 10), vec![5, 4, 3]);
    }

    #[test]
    fn keeps_what_a_session_bought_once_each_and_indexes_none_of_it() {
        let mut store = SessionStore::new(limits(10));
        store.observe("s", 1, 1.0);
        store.observe_purchase("s", &[2, 1, 2], 2.0);
        // A session that only bought (an order from the shop's server) is opened for it.
        store.observe_purchase("t", &[5, 6, 7, 8], 3.0);
        let s = store.record(store.seq_of("s").unwrap()).unwrap();
        assert_eq!((&s.purchased[..], s.last_time), (&[2, 1][..], 2.0));
        let t = store.record(store.seq_of("t").unwrap()).unwrap();
        assert_eq!(t.purchased, [5, 6, 7], "capped at max_session_len");
        assert!(t.items.is_empty());
        assert_eq!(
            store.recent_sessions_with(&[2, 5], None, 10),
            Vec::<SessionSeq>::new()
        );
    }

    #[test]
    fn samples_the_most_recently_active() {
        let mut store = SessionStore::new(limits(10));
        store.observe("a", 1, 5.0);
        store.observe("b", 2, 1.0);
        store.observe("c", 1, 3.0);
        assert_eq!(store.recent_sessions_with(&[1, 2], None, 2), vec![0, 2]);
    }

    #[test]
    fn rebuilding_from_records_gives_the_same_index() {
        let mut store = SessionStore::new(limits(3));
        for (k, item, t) in [("a", 1, 1.0), ("b", 1, 2.0), ("a", 2, 3.0), ("c", 2, 4.0)] {
            store.observe(k, item, t);
        }
        store.observe("d", 1, 5.0);
        let records: Vec<SessionRecord> = store.records().cloned().collect();
        let rebuilt = SessionStore::from_parts(store.limits(), store.first_seq(), records);
        for item in [1, 2] {
            assert_eq!(
                rebuilt.recent_sessions_with(&[item], None, 10),
                store.recent_sessions_with(&[item], None, 10)
            );
        }
        assert_eq!(rebuilt.seq_of("d"), Some(3));
    }
}
