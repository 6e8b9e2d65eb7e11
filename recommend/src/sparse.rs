//! A sparse item × item weight matrix: the sequential rules ("b was clicked soon after a") and the
//! orders' co-purchases ("a and b were bought together") are both one of these.
//!
//! Each row is a vector of `(column, weight)` sorted by column, so adding a weight is a binary
//! search and reading a row is a slice. Rows are capped: when one grows past twice
//! `max_row_len`, only its `max_row_len` heaviest entries are kept, so a catalogue of n items
//! never costs n² memory.

use crate::ItemIx;

/// Weighted links from one item to others.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseRows {
    rows: Vec<Vec<(ItemIx, f32)>>,
    max_row_len: usize,
}

impl SparseRows {
    pub(crate) fn new(max_row_len: usize) -> Self {
        SparseRows {
            rows: Vec::new(),
            max_row_len,
        }
    }

    /// Rebuilds from stored rows; `None` unless every row is sorted by column without repeats.
    pub(crate) fn from_rows(max_row_len: usize, rows: Vec<Vec<(ItemIx, f32)>>) -> Option<Self> {
        let sorted = rows
            .iter()
            .all(|row| row.windows(2).all(|w| w[0].0 < w[1].0));
        sorted.then_some(SparseRows { rows, max_row_len })
    }

    /// Adds `weight` to the link `from → to`.
    pub(crate) fn add(&mut self, from: ItemIx, to: ItemIx, weight: f32) {
        let f = from as usize;
        if self.rows.len() <= f {
            self.rows.resize_with(f + 1, Vec::new);
        }
        let row = &mut self.rows[f];
        match row.binary_search_by_key(&to, |e| e.0) {
            Ok(at) => row[at].1 += weight,
            Err(at) => row.insert(at, (to, weight)),
        }
        if row.len() > 2 * self.max_row_len {
            row.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            row.truncate(self.max_row_len);
            row.sort_unstable_by_key(|e| e.0);
        }
    }

    /// The links from `from`, sorted by target item.
    pub fn row(&self, from: ItemIx) -> &[(ItemIx, f32)] {
        self.rows.get(from as usize).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn rows(&self) -> &[Vec<(ItemIx, f32)>] {
        &self.rows
    }

    /// Number of stored links.
    pub fn links(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let entries: usize = self
            .rows
            .iter()
            .map(|r| r.capacity() * std::mem::size_of::<(ItemIx, f32)>())
            .sum();
        entries + self.rows.capacity() * std::mem::size_of::<Vec<(ItemIx, f32)>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_weights_per_link() {
        let mut m = SparseRows::new(10);
        m.add(2, 5, 1.0);
        m.add(2, 1, 0.5);
        m.add(2, 5, 0.25);
        assert_eq!(m.row(2), &[(1, 0.5), (5, 1.25)]);
        assert_eq!(m.row(0), &[]);
        assert_eq!(m.row(9), &[]);
        assert_eq!(m.links(), 2);
    }

    #[test]
    fn a_full_row_keeps_its_heaviest_links() {
        let mut m = SparseRows::new(2);
        for (to, w) in [(1, 5.0), (2, 1.0), (3, 4.0), (4, 2.0), (5, 3.0)] {
            m.add(0, to, w);
        }
        // The fifth link overflows 2 × 2: the two heaviest stay.
        assert_eq!(m.row(0), &[(1, 5.0), (3, 4.0)]);
        assert!(SparseRows::from_rows(2, vec![vec![(3, 1.0), (1, 1.0)]]).is_none());
    }
}
