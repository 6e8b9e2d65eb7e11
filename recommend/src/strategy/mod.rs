//! The strategies: each scores candidate items for a query from the shared model state.
//!
//! A strategy only scores; the business rules (exclusions, filter, de-duplication, popularity
//! fill) are applied once for all of them by [`ModelState::recommend`](crate::ModelState::recommend),
//! so a new strategy cannot forget one.

mod bought_together;
mod hybrid;
mod neighbourhood;
mod popularity;
mod sequential_rules;
mod stan;
mod vsknn;

use std::collections::HashMap;

pub use bought_together::BoughtTogether;
pub use hybrid::Hybrid;
pub use popularity::{Popular, Trending};
pub use sequential_rules::SequentialRules;
pub use stan::Stan;
pub use vsknn::VSkNN;

use crate::model::ModelState;
use crate::query::QueryContext;
use crate::ItemIx;

/// The parts of the model a strategy reads (beyond the item table, which every model has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Sessions with the item → sessions index (neighbourhood strategies).
    pub session_index: bool,
    /// Sequential rules with this window (0: none).
    pub rules: usize,
    /// Co-purchases from orders.
    pub orders: bool,
}

impl Needs {
    /// Sessions and their item index only.
    pub const SESSION_INDEX: Needs = Needs {
        session_index: true,
        rules: 0,
        orders: false,
    };

    /// What both `self` and `other` need.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            session_index: self.session_index || other.session_index,
            rules: self.rules.max(other.rules),
            orders: self.orders || other.orders,
        }
    }
}

/// A way to score items for a query.
pub trait Strategy: Send + Sync {
    /// Short name, as used in configuration and reports.
    fn name(&self) -> &str;

    /// The parts of the model it reads.
    fn needs(&self) -> Needs;

    /// Candidate items with scores (higher is better), in any order, each item at most once.
    /// `n` is how many the caller will keep; a strategy may return more or fewer.
    fn score(&self, model: &ModelState, ctx: &QueryContext, n: usize) -> Vec<(ItemIx, f64)>;
}

/// The strategies with their default parameters, by name: `popular`, `trending`, `v-sknn`,
/// `sr`, `stan`, `sr+v-sknn`, `stan+sr`, `bought-together`.
///
/// The hybrids' weights were chosen on a hold-out split of the training log (its last day of
/// sessions, trained on the days before), never on the evaluation log: SR at 0.1 to 0.2 adds to a
/// neighbourhood method, SR at 0.5 or more starts to hurt it.
pub fn by_name(name: &str) -> Option<Box<dyn Strategy>> {
    let strategy: Box<dyn Strategy> = match name {
        "popular" => Box::new(Popular),
        "trending" => Box::new(Trending),
        "v-sknn" => Box::new(VSkNN::default()),
        "sr" => Box::new(SequentialRules::default()),
        "stan" => Box::new(Stan::default()),
        "sr+v-sknn" => Box::new(Hybrid::new(vec![
            (Box::new(SequentialRules::default()), 0.2),
            (Box::new(VSkNN::default()), 0.8),
        ])),
        "stan+sr" => Box::new(Hybrid::new(vec![
            (Box::new(Stan::default()), 0.9),
            (Box::new(SequentialRules::default()), 0.1),
        ])),
        "bought-together" => Box::new(BoughtTogether),
        _ => return None,
    };
    Some(strategy)
}

/// Names accepted by [`by_name`].
pub const NAMES: &[&str] = &[
    "popular",
    "trending",
    "v-sknn",
    "sr",
    "stan",
    "sr+v-sknn",
    "stan+sr",
    "bought-together",
];

/// The `k` best of `scored` by score (ties: lower index first), best first.
pub(crate) fn top_k<T: Copy + Ord>(mut scored: Vec<(T, f64)>, k: usize) -> Vec<(T, f64)> {
    let order = |a: &(T, f64), b: &(T, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, order);
    }
    scored.truncate(k);
    scored.sort_unstable_by(order);
    scored
}

/// Sums scores per item.
#[derive(Default)]
pub(crate) struct ScoreSum(HashMap<ItemIx, f64>);

impl ScoreSum {
    pub(crate) fn add(&mut self, item: ItemIx, score: f64) {
        *self.0.entry(item).or_insert(0.0) += score;
    }

    pub(crate) fn into_vec(self) -> Vec<(ItemIx, f64)> {
        self.0.into_iter().filter(|e| e.1 > 0.0).collect()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Small hand-made logs shared by the strategies' tests.

    use crate::model::{Click, ModelConfig, ModelState};
    use crate::query::{Query, QueryContext};
    use crate::strategy::Strategy;

    /// A model from sessions given as item lists; session `i` clicks at `1000 i + position`.
    pub(crate) fn model_of(sessions: &[&[&str]]) -> ModelState {
        let keys: Vec<String> = (0..sessions.len()).map(|i| format!("s{i}")).collect();
        let mut log = Vec::new();
        for (i, items) in sessions.iter().enumerate() {
            for (pos, item) in items.iter().enumerate() {
                log.push(Click {
                    session: &keys[i],
                    item,
                    time: (1000 * i + pos) as f64,
                });
            }
        }
        ModelState::from_clicks(ModelConfig::default(), log)
    }

    /// The strategy's raw ranking (no business rules) for a session of `clicks`, as ids.
    pub(crate) fn ranked(
        model: &ModelState,
        strategy: &dyn Strategy,
        clicks: &[&str],
    ) -> Vec<String> {
        let ctx = QueryContext::resolve(
            model,
            &Query {
                clicks,
                ..Query::default()
            },
        );
        super::top_k(strategy.score(model, &ctx, 100), 100)
            .into_iter()
            .map(|(ix, _)| model.items().id(ix).to_owned())
            .collect()
    }
}
