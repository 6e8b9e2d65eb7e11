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

    /// Records that `item` now has `score`, which must not be lower than its previous score.
    pub(crate) fn raise(&mut self, item: ItemIx, score: f64) {
        if let Some(pos) = self.entries.iter().position(|e| e.0 == item) {
            self.entries[pos].1 = score;
            let mut pos = pos;
            while pos > 0 && ranks_before(self.entries[pos], self.entries[pos - 1]) {
                self.entries.swap(pos, pos - 1);
                pos -= 1;
            }
            return;
        }
        let full = self.entries.len() >= self.capacity;
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
        for (item, score) in [(0, 1.0), (1, 1.0), (2, 2.0), (3, 1.0), (0, 3.0), (4, 1.5)] {
            board.raise(item, score);
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
                scores[item as usize] += bump;
                raised[item as usize] = true;
                board.raise(item, scores[item as usize]);
            }
            let scores = scores.iter().zip(raised).map(|(&s, r)| r.then_some(s));
            let rebuilt = Leaderboard::from_scores(capacity, scores);
            prop_assert_eq!(board.entries(), rebuilt.entries());
        }
    }
}
