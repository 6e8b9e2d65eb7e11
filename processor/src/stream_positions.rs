//! Which records of the stream the model holds, so that records handed out again are not
//! learned twice.
//!
//! Per shard, ranges of sequence numbers with both ends included, kept in order and apart. A
//! single high-water mark would not do: an instance that takes over a shard from a checkpoint
//! past what the stored model holds skips records that another instance folded but had not
//! saved yet, and claiming them would drop them from that instance's later merge. Kinesis
//! sequence numbers have gaps, so two ranges join only when a batch is known to follow a record
//! inside one of them (the polling loop knows where each read began; Lambda does not say).

use std::cmp::Ordering;

use retailmind_connectors::stream::sequence_cmp;
use retailmind_connectors::StreamPositions;

/// Ranges kept per shard. Past this the oldest is forgotten: its records are the first the
/// stream trims, so the least likely to be handed out again, and forgetting them can at worst
/// count one of them twice, where joining it to the next range would claim the gap between,
/// whose records may be another instance's, not saved yet.
const MAX_RANGES: usize = 16;

/// What a batch of records comes right after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follows<'a> {
    /// The batch was read from the oldest record of the shard.
    ShardStart,
    /// The batch was read after this sequence number.
    Record(&'a str),
    /// Not known (a Lambda invocation's batch).
    Unknown,
}

/// Where a batch of one shard's records lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span<'a> {
    pub shard: &'a str,
    pub follows: Follows<'a>,
    /// The sequence number of the batch's first record.
    pub first: &'a str,
    /// The sequence number of the batch's last record.
    pub last: &'a str,
}

fn within((first, last): &(String, String), sequence: &str) -> bool {
    sequence_cmp(first, sequence) != Ordering::Greater
        && sequence_cmp(sequence, last) != Ordering::Greater
}

/// Whether `positions` hold the record at `sequence` of `shard`.
pub fn holds(positions: &StreamPositions, shard: &str, sequence: &str) -> bool {
    positions
        .get(shard)
        .is_some_and(|ranges| ranges.iter().any(|range| within(range, sequence)))
}

/// Records that `positions` hold the records of `span` up to `last`, the whole batch or the
/// part folded so far; returns whether that changed them.
pub fn add(positions: &mut StreamPositions, span: Span<'_>, last: &str) -> bool {
    let ranges = match positions.get_mut(span.shard) {
        Some(ranges) => ranges,
        None => positions.entry(span.shard.to_owned()).or_default(),
    };
    let first = match span.follows {
        Follows::ShardStart => String::new(),
        Follows::Record(after) => match ranges.iter().find(|range| within(range, after)) {
            // Nothing lies between `after` and the batch: it continues that range.
            Some((first, _)) => first.clone(),
            None => span.first.to_owned(),
        },
        Follows::Unknown => span.first.to_owned(),
    };
    let before = ranges.clone();
    ranges.push((first, last.to_owned()));
    normalize(ranges);
    *ranges != before
}

/// Adds everything `other` holds to `positions`.
pub fn union(positions: &mut StreamPositions, other: &StreamPositions) {
    for (shard, theirs) in other {
        let ranges = positions.entry(shard.clone()).or_default();
        ranges.extend(theirs.iter().cloned());
        normalize(ranges);
    }
}

/// Sorts `ranges`, joins those that overlap, and keeps at most [`MAX_RANGES`].
fn normalize(ranges: &mut Vec<(String, String)>) {
    ranges.sort_by(|a, b| sequence_cmp(&a.0, &b.0));
    let mut joined: Vec<(String, String)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges.drain(..) {
        match joined.last_mut() {
            Some(previous) if sequence_cmp(&first, &previous.1) != Ordering::Greater => {
                if sequence_cmp(&last, &previous.1) == Ordering::Greater {
                    previous.1 = last;
                }
            }
            _ => joined.push((first, last)),
        }
    }
    if joined.len() > MAX_RANGES {
        joined.drain(..joined.len() - MAX_RANGES);
    }
    *ranges = joined;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(positions: &StreamPositions, shard: &str) -> Vec<(String, String)> {
        positions.get(shard).cloned().unwrap_or_default()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }

    fn span<'a>(follows: Follows<'a>, first: &'a str) -> Span<'a> {
        Span {
            shard: "s",
            follows,
            first,
            last: first,
        }
    }

    #[test]
    fn a_read_from_the_start_holds_everything_up_to_its_last_record() {
        let mut p = StreamPositions::new();
        add(&mut p, span(Follows::ShardStart, "3"), "40");
        assert!(holds(&p, "s", "1") && holds(&p, "s", "40"));
        assert!(!holds(&p, "s", "41") && !holds(&p, "t", "1"));
        // Numbers, not text: 100 comes after 40.
        assert!(!holds(&p, "s", "100"));
    }

    #[test]
    fn a_batch_after_a_held_record_continues_its_range() {
        let mut p = StreamPositions::new();
        add(&mut p, span(Follows::ShardStart, "1"), "40");
        add(&mut p, span(Follows::Record("40"), "45"), "90");
        // A checkpoint inside the range (a restart) continues it too.
        add(&mut p, span(Follows::Record("20"), "21"), "95");
        assert_eq!(ranges(&p, "s"), pairs(&[("", "95")]));
        // A range that began past the shard's start keeps its start.
        let mut p = StreamPositions::new();
        add(&mut p, span(Follows::Unknown, "10"), "20");
        add(&mut p, span(Follows::Record("20"), "24"), "30");
        assert_eq!(ranges(&p, "s"), pairs(&[("10", "30")]));
    }

    #[test]
    fn a_batch_after_a_record_not_held_starts_a_range_of_its_own() {
        let mut p = StreamPositions::new();
        add(&mut p, span(Follows::ShardStart, "1"), "40");
        add(&mut p, span(Follows::Record("60"), "61"), "90");
        assert_eq!(ranges(&p, "s"), pairs(&[("", "40"), ("61", "90")]));
        assert!(!holds(&p, "s", "50") && !holds(&p, "s", "60") && holds(&p, "s", "61"));
        // Another instance's ranges that cover the gap join them.
        let mut theirs = StreamPositions::new();
        add(&mut theirs, span(Follows::Record("30"), "35"), "70");
        union(&mut p, &theirs);
        assert_eq!(ranges(&p, "s"), pairs(&[("", "90")]));
    }

    #[test]
    fn batches_of_unknown_place_join_only_when_they_overlap() {
        let mut p = StreamPositions::new();
        add(&mut p, span(Follows::Unknown, "10"), "20");
        add(&mut p, span(Follows::Unknown, "21"), "30");
        add(&mut p, span(Follows::Unknown, "15"), "25");
        assert_eq!(ranges(&p, "s"), pairs(&[("10", "30")]));
        // Added again as the batch goes on, the part folded so far only grows.
        add(&mut p, span(Follows::Unknown, "40"), "41");
        add(&mut p, span(Follows::Unknown, "40"), "49");
        assert_eq!(ranges(&p, "s"), pairs(&[("10", "30"), ("40", "49")]));
    }

    #[test]
    fn past_the_limit_the_oldest_range_is_forgotten_and_no_gap_claimed() {
        let mut p = StreamPositions::new();
        for n in 1..=MAX_RANGES + 1 {
            let (first, last) = ((n * 10).to_string(), (n * 10 + 5).to_string());
            add(&mut p, span(Follows::Unknown, &first), &last);
        }
        let held = ranges(&p, "s");
        assert_eq!(held.len(), MAX_RANGES);
        assert_eq!(held[0], ("20".to_owned(), "25".to_owned()));
        assert!(!holds(&p, "s", "12") && !holds(&p, "s", "27") && holds(&p, "s", "22"));
    }

    #[test]
    fn says_whether_it_changed_anything() {
        let mut p = StreamPositions::new();
        assert!(add(&mut p, span(Follows::ShardStart, "1"), "40"));
        assert!(!add(&mut p, span(Follows::ShardStart, "1"), "40"));
        assert!(!add(&mut p, span(Follows::Record("10"), "11"), "30"));
        assert!(add(&mut p, span(Follows::Record("40"), "41"), "41"));
    }
}
