//! Merging new events into a day's partition: one record per event id, the same one whatever
//! the order the copies were read in, clustered by event type and then sorted by event time.
//! Pure.

use std::collections::HashMap;

use crate::event_rows::{EventItemRow, EventRecord, EventRow, RecRow};

/// A day's records after a merge.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// One record per event id, by (event type, event time, event id).
    pub records: Vec<EventRecord>,
    /// Copies dropped because their event id was already there.
    pub duplicates: usize,
}

/// Keeps one record per event id out of `existing` (the partition as stored) and `new`.
pub fn merge(existing: Vec<EventRecord>, new: Vec<EventRecord>) -> Merged {
    let total = existing.len() + new.len();
    let mut by_id: HashMap<String, EventRecord> = HashMap::with_capacity(total);
    for record in existing.into_iter().chain(new) {
        match by_id.get_mut(&record.event.event_id) {
            Some(kept) => {
                if record.preference_key() < kept.preference_key() {
                    *kept = record;
                }
            }
            None => {
                by_id.insert(record.event.event_id.clone(), record);
            }
        }
    }
    let mut records: Vec<EventRecord> = by_id.into_values().collect();
    // Clustered by type, the rows of one type share a few pages of each column, so a query
    // filtering on `event_type` (every analysis does) skips the rest by their statistics;
    // sorted by time only, every type's rows are spread over every page.
    records.sort_by(|a, b| {
        let (a, b) = (&a.event, &b.event);
        (&a.event_type, a.timestamp_ms, &a.event_id).cmp(&(
            &b.event_type,
            b.timestamp_ms,
            &b.event_id,
        ))
    });
    Merged {
        duplicates: total - records.len(),
        records,
    }
}

/// The three tables' rows of `records`, in record order.
pub fn split(records: &[EventRecord]) -> (Vec<&EventRow>, Vec<&EventItemRow>, Vec<&RecRow>) {
    let events = records.iter().map(|r| &r.event).collect();
    let items = records.iter().flat_map(|r| &r.items).collect();
    let recs = records.iter().flat_map(|r| &r.recs).collect();
    (events, items, recs)
}

/// Records again from the three tables' rows of one partition (items and recommendation rows
/// go back to their event by id).
pub fn join(
    events: Vec<EventRow>,
    items: Vec<EventItemRow>,
    recs: Vec<RecRow>,
) -> Vec<EventRecord> {
    let mut items_of: HashMap<String, Vec<EventItemRow>> = HashMap::new();
    for item in items {
        items_of
            .entry(item.event_id.clone())
            .or_default()
            .push(item);
    }
    let mut recs_of: HashMap<String, Vec<RecRow>> = HashMap::new();
    for rec in recs {
        recs_of.entry(rec.event_id.clone()).or_default().push(rec);
    }
    events
        .into_iter()
        .map(|event| EventRecord {
            items: items_of.remove(&event.event_id).unwrap_or_default(),
            recs: recs_of.remove(&event.event_id).unwrap_or_default(),
            event,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ts: i64, received: Option<i64>, title: &str) -> EventRecord {
        EventRecord {
            event: EventRow {
                event_id: id.into(),
                timestamp_ms: ts,
                received_at_ms: received,
                page_title: Some(title.into()),
                ..EventRow::default()
            },
            items: vec![EventItemRow {
                event_id: id.into(),
                product_id: format!("p-{title}"),
                ..EventItemRow::default()
            }],
            recs: vec![],
        }
    }

    #[test]
    fn one_record_per_id_the_first_accepted_copy_whatever_the_order() {
        let a1 = record("a", 5, Some(100), "first");
        let a2 = record("a", 5, Some(90), "earlier accepted");
        let b = record("b", 1, Some(50), "b");
        let one = merge(vec![a1.clone()], vec![b.clone(), a2.clone()]);
        let other = merge(vec![a2.clone(), b.clone()], vec![a1.clone()]);
        assert_eq!(one, other);
        assert_eq!(one.duplicates, 1);
        assert_eq!(one.records, vec![b, a2]);
    }

    #[test]
    fn a_merge_of_the_stored_partition_with_itself_changes_nothing() {
        let stored = merge(
            vec![],
            vec![record("x", 3, None, "x"), record("y", 2, Some(1), "y")],
        );
        let again = merge(stored.records.clone(), stored.records.clone());
        assert_eq!(again.records, stored.records);
        assert_eq!(again.duplicates, 2);
    }

    #[test]
    fn a_partition_is_clustered_by_event_type_then_in_time_order() {
        let typed = |id: &str, ts: i64, event_type: &str| {
            let mut r = record(id, ts, None, id);
            r.event.event_type = event_type.into();
            r
        };
        let merged = merge(
            vec![
                typed("v2", 40, "product_view"),
                typed("c1", 30, "add_to_cart"),
            ],
            vec![
                typed("v1", 10, "product_view"),
                typed("p1", 50, "purchase"),
                typed("c0", 20, "add_to_cart"),
            ],
        );
        let order: Vec<&str> = merged
            .records
            .iter()
            .map(|r| r.event.event_id.as_str())
            .collect();
        assert_eq!(order, ["c0", "c1", "v1", "v2", "p1"]);
    }

    #[test]
    fn split_and_join_give_the_records_back() {
        let records = merge(
            vec![],
            vec![record("x", 3, None, "x"), record("y", 2, Some(1), "y")],
        )
        .records;
        let (e, i, r) = split(&records);
        let joined = join(
            e.into_iter().cloned().collect(),
            i.into_iter().cloned().collect(),
            r.into_iter().cloned().collect(),
        );
        assert_eq!(joined, records);
    }
}
