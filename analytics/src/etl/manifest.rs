//! What the events ETL has done so far, kept as one JSON object in the lake: the raw objects
//! already read (so a run reads only new ones), the event-time watermark (the newest event
//! seen, which closes old days) and the days that have a table partition. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::day::day_end_ms;

/// Where the manifest of the events ETL lives.
pub const MANIFEST_KEY: &str = "tables/_etl/events-manifest.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Raw keys already read, with their size then (an object never changes once written;
    /// a changed size is reported, not silently re-read).
    pub processed: BTreeMap<String, u64>,
    /// Event time of the newest valid event seen, ms since the Unix epoch.
    pub watermark_ms: Option<i64>,
    /// Days that have a partition in `tables/events/`.
    pub days: BTreeSet<String>,
}

/// A raw object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawObject {
    pub key: String,
    pub size: u64,
}

impl RawObject {
    pub fn new(key: impl Into<String>, size: u64) -> RawObject {
        RawObject {
            key: key.into(),
            size,
        }
    }
}

impl Manifest {
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // BTree maps and sets: the same manifest always serialises to the same bytes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The objects of `listing` not read yet, in key order (which is write order for the
    /// lake's UUIDv7 names), and those read before whose size changed since.
    pub fn pending<'a>(
        &self,
        listing: &'a [RawObject],
    ) -> (Vec<&'a RawObject>, Vec<&'a RawObject>) {
        let mut new = Vec::new();
        let mut changed = Vec::new();
        for object in listing {
            match self.processed.get(&object.key) {
                None => new.push(object),
                Some(size) if *size != object.size => changed.push(object),
                Some(_) => {}
            }
        }
        new.sort_by(|a, b| a.key.cmp(&b.key));
        (new, changed)
    }

    /// Whether `dt` is closed: it ended at least `late_window_hours` before the watermark, so
    /// an event for it arriving now is too late to be merged.
    pub fn is_closed(&self, dt: &str, late_window_hours: u32) -> bool {
        match (self.watermark_ms, day_end_ms(dt)) {
            (Some(watermark), Some(end)) => {
                end + i64::from(late_window_hours) * 3_600_000 <= watermark
            }
            _ => false,
        }
    }

    pub fn record(&mut self, object: &RawObject) {
        self.processed.insert(object.key.clone(), object.size);
    }

    pub fn advance_watermark(&mut self, event_time_ms: i64) {
        self.watermark_ms = Some(
            self.watermark_ms
                .map_or(event_time_ms, |w| w.max(event_time_ms)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day::day_start_ms;

    #[test]
    fn only_unread_objects_are_pending_and_changed_ones_are_reported() {
        let mut m = Manifest::default();
        m.record(&RawObject::new("events/dt=2024-11-25/hour=09/a.json", 10));
        m.record(&RawObject::new("events/dt=2024-11-25/hour=09/b.json", 20));
        let listing = vec![
            RawObject::new("events/dt=2024-11-25/hour=10/c.json", 5),
            RawObject::new("events/dt=2024-11-25/hour=09/b.json", 21),
            RawObject::new("events/dt=2024-11-25/hour=09/a.json", 10),
            RawObject::new("events/dt=2024-11-24/hour=23/z.json", 1),
        ];
        let (new, changed) = m.pending(&listing);
        let new: Vec<&str> = new.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            new,
            [
                "events/dt=2024-11-24/hour=23/z.json",
                "events/dt=2024-11-25/hour=10/c.json"
            ]
        );
        assert_eq!(changed, [&listing[1]]);
    }

    #[test]
    fn a_day_closes_once_the_watermark_passed_its_end_by_the_window() {
        let mut m = Manifest::default();
        assert!(
            !m.is_closed("2024-11-25", 0),
            "no watermark, nothing closed"
        );
        let end = day_start_ms("2024-11-26").unwrap();
        m.advance_watermark(end + 47 * 3_600_000);
        assert!(!m.is_closed("2024-11-25", 48));
        m.advance_watermark(end + 48 * 3_600_000);
        assert!(m.is_closed("2024-11-25", 48));
        assert!(!m.is_closed("2024-11-26", 48));
        m.advance_watermark(0);
        assert_eq!(
            m.watermark_ms,
            Some(end + 48 * 3_600_000),
            "never moves back"
        );
    }

    #[test]
    fn serialises_the_same_way_every_time() {
        let mut a = Manifest::default();
        a.record(&RawObject::new("b", 2));
        a.record(&RawObject::new("a", 1));
        a.days.insert("2024-11-25".into());
        let mut b = Manifest::default();
        b.days.insert("2024-11-25".into());
        b.record(&RawObject::new("a", 1));
        b.record(&RawObject::new("b", 2));
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(Manifest::from_json(&a.to_json()).unwrap(), a);
    }
}
