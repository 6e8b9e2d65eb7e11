//! The catalogue as the model knows it: item ids interned as dense `u32` indexes, each with its
//! click count (popularity), a time-decayed click count (trending) and its category.
//!
//! Everything else in the model refers to items by index, so a session or a rule costs four bytes
//! per item instead of a string. Trending is kept as `ln Σ 2^((t − epoch) / half_life)` over the
//! item's clicks: measured against a fixed epoch, the decayed count only grows, its ranking is the
//! same at any "now" after the clicks, and the log keeps it finite over years of clicks.

use std::collections::HashMap;

use crate::leaderboard::Leaderboard;
use crate::ItemIx;

/// How many items the popularity and trending boards keep ready, best first.
pub(crate) const BOARD_CAPACITY: usize = 512;

/// Interned item ids with their popularity and trending scores.
#[derive(Clone, Debug)]
pub struct ItemTable {
    ids: Vec<Box<str>>,
    index: HashMap<Box<str>, ItemIx>,
    clicks: Vec<u32>,
    trend_log: Vec<f64>,
    /// Per item, its category's place in `category_names`, or [`NO_CATEGORY`].
    category: Vec<u32>,
    category_names: Vec<Box<str>>,
    category_index: HashMap<Box<str>, u32>,
    /// Time of the first click the model saw; the trending scores are measured from it.
    epoch: Option<f64>,
    half_life_secs: f64,
    popular: Leaderboard,
    trending: Leaderboard,
}

/// An item whose category no event named.
pub(crate) const NO_CATEGORY: u32 = u32::MAX;

/// Numerically stable `ln(e^a + e^b)`.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

impl ItemTable {
    pub(crate) fn new(half_life_secs: f64) -> Self {
        ItemTable {
            ids: Vec::new(),
            index: HashMap::new(),
            clicks: Vec::new(),
            trend_log: Vec::new(),
            category: Vec::new(),
            category_names: Vec::new(),
            category_index: HashMap::new(),
            epoch: None,
            half_life_secs,
            popular: Leaderboard::new(BOARD_CAPACITY),
            trending: Leaderboard::new(BOARD_CAPACITY),
        }
    }

    /// Rebuilds a table from its stored columns (snapshot loading); `None` if an id repeats.
    pub(crate) fn from_parts(
        half_life_secs: f64,
        epoch: Option<f64>,
        ids: Vec<Box<str>>,
        clicks: Vec<u32>,
        trend_log: Vec<f64>,
        categories: (Vec<Box<str>>, Vec<u32>),
    ) -> Option<Self> {
        let (category_names, category) = categories;
        if category.len() != ids.len()
            || category
                .iter()
                .any(|&c| c != NO_CATEGORY && c as usize >= category_names.len())
        {
            return None;
        }
        let mut category_index = HashMap::with_capacity(category_names.len());
        for (c, name) in (0..).zip(&category_names) {
            if category_index.insert(name.clone(), c).is_some() {
                return None;
            }
        }
        let mut index = HashMap::with_capacity(ids.len());
        for (ix, id) in (0..).zip(&ids) {
            if index.insert(id.clone(), ix).is_some() {
                return None;
            }
        }
        let clicked = |ix: usize| clicks[ix] > 0;
        let popular = Leaderboard::from_scores(
            BOARD_CAPACITY,
            clicks.iter().map(|&c| (c > 0).then_some(f64::from(c))),
        );
        let trending = Leaderboard::from_scores(
            BOARD_CAPACITY,
            trend_log
                .iter()
                .enumerate()
                .map(|(ix, &t)| clicked(ix).then_some(t)),
        );
        Some(ItemTable {
            ids,
            index,
            clicks,
            trend_log,
            category,
            category_names,
            category_index,
            epoch,
            half_life_secs,
            popular,
            trending,
        })
    }

    /// The index of `id`, adding it (with no clicks) if it is new.
    pub(crate) fn intern(&mut self, id: &str) -> ItemIx {
        if let Some(&ix) = self.index.get(id) {
            return ix;
        }
        let ix = ItemIx::try_from(self.ids.len()).expect("fewer than 2^32 items");
        self.ids.push(id.into());
        self.index.insert(id.into(), ix);
        self.clicks.push(0);
        self.trend_log.push(f64::NEG_INFINITY);
        self.category.push(NO_CATEGORY);
        ix
    }

    /// Records `item`'s category, as the latest event naming one said.
    pub(crate) fn set_category(&mut self, ix: ItemIx, name: &str) {
        let c = match self.category_index.get(name) {
            Some(&c) => c,
            None => {
                let c = u32::try_from(self.category_names.len())
                    .ok()
                    .filter(|&c| c != NO_CATEGORY)
                    .expect("fewer than 2^32 - 1 categories");
                self.category_names.push(name.into());
                self.category_index.insert(name.into(), c);
                c
            }
        };
        self.category[ix as usize] = c;
    }

    /// Counts one click on `id` at `time` (Unix seconds) and returns the item's index.
    pub(crate) fn observe_click(&mut self, id: &str, time: f64) -> ItemIx {
        let ix = self.intern(id);
        let i = ix as usize;
        let previous = f64::from(self.clicks[i]);
        self.clicks[i] = self.clicks[i].saturating_add(1);
        self.popular.raise(ix, previous, f64::from(self.clicks[i]));
        let epoch = *self.epoch.get_or_insert(time);
        let exponent = (time - epoch) / self.half_life_secs * std::f64::consts::LN_2;
        let previous = self.trend_log[i];
        self.trend_log[i] = log_add_exp(previous, exponent);
        self.trending.raise(ix, previous, self.trend_log[i]);
        ix
    }

    /// The index of a known item id.
    pub fn get(&self, id: &str) -> Option<ItemIx> {
        self.index.get(id).copied()
    }

    /// The id of an item index. Panics on an index the table did not hand out.
    pub fn id(&self, ix: ItemIx) -> &str {
        &self.ids[ix as usize]
    }

    /// Number of items known.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no item is known yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Clicks counted on an item.
    pub fn clicks(&self, ix: ItemIx) -> u32 {
        self.clicks[ix as usize]
    }

    /// The item's category, when an event named one.
    pub fn category(&self, ix: ItemIx) -> Option<&str> {
        let c = self.category[ix as usize];
        (c != NO_CATEGORY).then(|| &*self.category_names[c as usize])
    }

    /// The item's decayed click count as of `now` (Unix seconds): each click counts
    /// `2^-(age / half_life)`.
    pub fn trending_score(&self, ix: ItemIx, now: f64) -> f64 {
        let Some(epoch) = self.epoch else { return 0.0 };
        let shift = (now - epoch) / self.half_life_secs * std::f64::consts::LN_2;
        (self.trend_log[ix as usize] - shift).exp()
    }

    /// The most clicked items (at most [`BOARD_CAPACITY`]), best first, with their click counts.
    pub(crate) fn most_popular(&self) -> &[(ItemIx, f64)] {
        self.popular.entries()
    }

    /// The most trending items (at most [`BOARD_CAPACITY`]), best first.
    pub(crate) fn most_trending(&self) -> &[(ItemIx, f64)] {
        self.trending.entries()
    }

    /// Every item by falling popularity; the slow path for when the board ran out.
    pub(crate) fn all_by_popularity(&self) -> Vec<ItemIx> {
        let mut all: Vec<ItemIx> = (0..).take(self.ids.len()).collect();
        all.sort_unstable_by(|&a, &b| {
            self.clicks[b as usize]
                .cmp(&self.clicks[a as usize])
                .then(a.cmp(&b))
        });
        all
    }

    pub(crate) fn epoch(&self) -> Option<f64> {
        self.epoch
    }

    pub(crate) fn ids(&self) -> &[Box<str>] {
        &self.ids
    }

    pub(crate) fn click_counts(&self) -> &[u32] {
        &self.clicks
    }

    pub(crate) fn trend_logs(&self) -> &[f64] {
        &self.trend_log
    }

    /// The category names, and each item's place among them (or [`NO_CATEGORY`]).
    pub(crate) fn categories(&self) -> (&[Box<str>], &[u32]) {
        (&self.category_names, &self.category)
    }

    /// Estimated heap bytes: the id strings twice (list and map), the columns and the boards.
    pub(crate) fn heap_bytes(&self) -> usize {
        let strings: usize = self.ids.iter().map(|id| id.len()).sum();
        let map_entry = std::mem::size_of::<(Box<str>, ItemIx)>() + 1;
        2 * strings
            + self.ids.capacity() * std::mem::size_of::<Box<str>>()
            + self.index.capacity() * map_entry
            + self.clicks.capacity() * 4
            + self.trend_log.capacity() * 8
            + self.category.capacity() * 4
            + 2 * self.category_names.iter().map(|c| c.len()).sum::<usize>()
            + self.category_index.capacity() * map_entry
            + self.popular.heap_bytes()
            + self.trending.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_each_id_once() {
        let mut items = ItemTable::new(3600.0);
        let a = items.observe_click("a", 0.0);
        let b = items.observe_click("b", 1.0);
        assert_eq!((a, b), (0, 1));
        assert_eq!(items.observe_click("a", 2.0), a);
        assert_eq!(items.len(), 2);
        assert_eq!(items.clicks(a), 2);
        assert_eq!(items.id(b), "b");
        assert_eq!(items.get("c"), None);
    }

    #[test]
    fn keeps_the_latest_category_named_per_item() {
        let mut items = ItemTable::new(3600.0);
        let a = items.observe_click("a", 0.0);
        let b = items.observe_click("b", 0.0);
        assert_eq!(items.category(a), None);
        items.set_category(a, "shoes");
        items.set_category(b, "shoes");
        items.set_category(a, "boots");
        assert_eq!(
            (items.category(a), items.category(b)),
            (Some("boots"), Some("shoes"))
        );
        assert_eq!(items.categories().0.len(), 2, "each name kept once");
    }

    #[test]
    fn trending_halves_per_half_life() {
        let mut items = ItemTable::new(100.0);
        let a = items.observe_click("a", 1000.0);
        items.observe_click("a", 1100.0);
        // At t = 1200: 2^-2 + 2^-1.
        assert!((items.trending_score(a, 1200.0) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn recent_clicks_outrank_more_but_older_clicks_in_trending() {
        let mut items = ItemTable::new(3600.0);
        for t in 0..10 {
            items.observe_click("old", f64::from(t));
        }
        for t in 0..3 {
            items.observe_click("new", 86_400.0 + f64::from(t));
        }
        let old = items.get("old").unwrap();
        let new = items.get("new").unwrap();
        assert_eq!(items.most_popular()[0].0, old);
        assert_eq!(items.most_trending()[0].0, new);
        assert_eq!(items.all_by_popularity(), vec![old, new]);
    }
}
