//! V-SKNN, the vector multiplication session-kNN of Ludewig and Jannach ("Evaluation of
//! session-based recommendation algorithms", 2018): the standard baseline for session-based
//! recommendation, and still hard to beat.
//!
//! The current session is a vector whose items weigh more the more recently they were clicked
//! (position `p` of `l` weighs `p / l`). Among the `sample` most recent sessions sharing an item,
//! the `k` with the largest dot product (divided by the number of distinct current items) are the
//! neighbours. Each neighbour adds its similarity to each of its items, discounted by `1/s`, where
//! `s` is how many steps back the latest click it shares with the current session is.

use super::neighbourhood::nearest_sessions;
use super::{Needs, ScoreSum, Strategy};
use crate::model::ModelState;
use crate::query::{latest_positions, QueryContext};
use crate::ItemIx;

/// Vector multiplication session-kNN.
#[derive(Clone, Copy, Debug)]
pub struct VSkNN {
    /// Neighbours used.
    pub k: usize,
    /// Recent sessions sharing an item that are compared with the current one.
    pub sample: usize,
}

impl Default for VSkNN {
    fn default() -> Self {
        VSkNN {
            k: 100,
            sample: 500,
        }
    }
}

impl Strategy for VSkNN {
    fn name(&self) -> &str {
        "v-sknn"
    }

    fn needs(&self) -> Needs {
        Needs::SESSION_INDEX
    }

    /// Nothing for a session without known clicks: no session shares an item with it.
    fn score(&self, model: &ModelState, ctx: &QueryContext, _n: usize) -> Vec<(ItemIx, f64)> {
        let current = ctx.latest_positions();
        let len = ctx.clicks.len() as f64;
        let distinct = current.len() as f64;
        let neighbours = nearest_sessions(model, ctx, self.sample, self.k, |n| {
            let shared = current.iter().filter(|(item, _)| n.items.contains(item));
            shared.map(|&(_, pos)| pos as f64 / len).sum::<f64>() / distinct
        });
        let mut sum = ScoreSum::default();
        for (n, sim) in neighbours {
            let steps_back = ctx
                .clicks
                .iter()
                .rev()
                .position(|item| n.items.contains(item))
                .map_or(len, |p| (p + 1) as f64);
            for (item, _) in latest_positions(&n.items) {
                sum.add(item, sim / steps_back);
            }
        }
        sum.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_support::{model_of, ranked};

    #[test]
    fn recommends_what_sessions_sharing_the_recent_click_contain() {
        let model = model_of(&[&["a", "b", "c"], &["a", "b", "c"], &["d", "e"], &["a", "f"]]);
        // Current session [d, a]: a (weight 1) is shared by three sessions, d (weight 1/2) by one.
        // sims: s0 = s1 = s3 = 1/2 (a, over 2 distinct items), s2 = 1/4 (d), decayed by 1/2 as
        // d is one step back. Items: a = 3/2, b = c = 1, f = 1/2, d = e = 1/8.
        let got = ranked(&model, &VSkNN::default(), &["d", "a"]);
        assert_eq!(got, ["a", "b", "c", "f", "d", "e"]);
    }

    #[test]
    fn keeps_only_the_k_most_similar_neighbours() {
        let model = model_of(&[&["x", "y", "z"], &["z", "w"], &["y", "z", "v"]]);
        // Current [y, z]: s0 and s2 share both (sim 3/4), s1 shares only z (sim 1/2).
        let strategy = VSkNN { k: 2, sample: 10 };
        let got = ranked(&model, &strategy, &["y", "z"]);
        assert!(!got.contains(&"w".to_owned()), "{got:?}");
        assert_eq!(got[..2], ["y", "z"]);
        let all = ranked(&model, &VSkNN { k: 3, sample: 10 }, &["y", "z"]);
        assert!(all.contains(&"w".to_owned()), "{all:?}");
    }

    #[test]
    fn the_sample_keeps_the_most_recent_sessions() {
        // Same similarity, but only the newest session (s1) is sampled.
        let model = model_of(&[&["a", "old"], &["a", "new"]]);
        let got = ranked(&model, &VSkNN { k: 10, sample: 1 }, &["a"]);
        assert_eq!(got, ["a", "new"]);
    }

    #[test]
    fn unknown_items_and_empty_sessions_give_nothing() {
        let model = model_of(&[&["a", "b"]]);
        assert!(ranked(&model, &VSkNN::default(), &[]).is_empty());
        assert!(ranked(&model, &VSkNN::default(), &["zzz"]).is_empty());
    }
}
