//! The best few items by a score that only ever grows, kept up to date one change at a time.
//!
//! Popularity (a click count) and trending (a decayed count measured against a fixed epoch) both
//! only increase, so the top `capacity` items can be maintained exactly without re-sorting the
//! catalogue: an item outside the board can only enter by beating the last entry, and an item on
//! the board can only move up. Serving the cold-start fallback is then a slice read.

use crate::ItemIx;

/// The `capacity` highest-scoring items, best first; ties go to the lower item index.
#[derive(Clone, Debug)]
pub(crate) struct Leaderboard {
    capacity: usize,
    entries: Vec<(ItemIx, f64)>,
}

/// True when `a` ranks before `b`: higher score, then lower item index.
fn ranks_before(a: (ItemIx, f64), b: (ItemIx, f64)) -> bool {
    a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
}

impl Leaderboard {
    pub(crate) fn new(capacity: usize) -> Self {
        Leaderboard {
            capacity,
            entries: Vec::with_capacity(capacity + 1),
        }
    }

    /// Builds the board from every item's current score, `None` for items never raised (used
    /// after loading a snapshot).
    pub(crate) fn from_scores(capacity: usize, scores: impl Iterator<Item = Option<f64>>) -> Self {
        let mut all: Vec<(ItemIx, f64)> = (0..)
            .zip(scores)
            .filter_map(|(ix, score)| Some((ix, score?)))
            .collect();
        all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(capacity);
        Leaderboard {
            capacity,
            entries: all,
        }
    }

    /// Records that `item` now has `score`; `previous` is the score it was last raised to
    /// (any score below every possible one, such as minus infinity, when never), and `score`
    /// must not be lower. The board is sorted, so an item is found by its previous score in
    /// log time rather than by a walk over the board, which at 512 entries was most of the cost
    /// of keeping the boards.
    pub(crate) fn raise(&mut self, item: ItemIx, previous: f64, score: f64) {
        let full = self.entries.len() >= self.capacity;
        let at = self
            .entries
            .partition_point(|&e| ranks_before(e, (item, previous)));
        if self.entries.get(at).is_some_and(|e| e.0 == item) {
            // On the board: it can only move up, to before every entry it now outranks.
            let to = self.entries[..at].partition_point(|&e| ranks_before(e, (item, score)));
            self.entries[at].1 = score;
            self.entries[to..=at].rotate_right(1);
            return;
        }
        if full
            && !self
                .entries
                .last()
                .is_some_and(|&l| ranks_before((item, score), l))
        {
            return;
        }
        let at = self
            .entries
            .partition_point(|&e| ranks_before(e, (item, score)));
        self.entries.insert(at, (item, score));
        self.entries.truncate(self.capacity);
    }

    /// The board, best first.
    pub(crate) fn entries(&self) -> &[(ItemIx, f64)] {
        &self.entries
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(ItemIx, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_the_best_in_order_with_ties_to_the_lower_index() {
        let mut board = Leaderboard::new(3);
        let mut previous = [f64::NEG_INFINITY; 5];
        for (item, score) in [(0, 1.0), (1, 1.0), (2, 2.0), (3, 1.0), (0, 3.0), (4, 1.5)] {
            board.raise(item, previous[item as usize], score);
            previous[item as usize] = score;
        }
        assert_eq!(board.entries(), &[(0, 3.0), (2, 2.0), (4, 1.5)]);
    }

    proptest! {
        /// The incrementally kept board equals a full sort of the final scores.
        #[test]
        fn matches_a_full_sort(bumps in proptest::collection::vec((0u32..20, 0.0f64..5.0), 0..200),
                               capacity in 1usize..8) {
            let mut scores = [0.0f64; 20];
            let mut raised = [false; 20];
            let mut board = Leaderboard::new(capacity);
            for (item, bump) in bumps {
                let previous = if raised[item as usize] { scores[item as usize] } else { f64::NEG_INFINITY };
                scores[item as usize] += bump;
                raised[item as usize] = true;
                board.raise(item, previous, scores[item as usize]);
            }
            let scores = scores.iter().zip(raised).map(|(&s, r)| r.then_some(s));
            let rebuilt = Leaderboard::from_scores(capacity, scores);
            prop_assert_eq!(board.entries(), rebuilt.entries());
        }
    }
}
