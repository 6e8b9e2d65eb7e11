//! Weighted hybrids: several strategies' scores, each scaled to a maximum of 1, summed with
//! weights. Ludewig and Jannach found such combinations of a rule-based and a neighbourhood
//! method among the strongest on e-commerce logs: rules know what follows the last click, the
//! neighbourhood knows the whole session.

use super::{Needs, ScoreSum, Strategy};
use crate::model::ModelState;
use crate::query::QueryContext;
use crate::ItemIx;

/// A weighted sum of max-normalised strategy scores.
pub struct Hybrid {
    name: String,
    parts: Vec<(Box<dyn Strategy>, f64)>,
}

impl Hybrid {
    /// Combines `parts` (strategy, weight); the name joins theirs with `+`.
    pub fn new(parts: Vec<(Box<dyn Strategy>, f64)>) -> Self {
        let name = parts
            .iter()
            .map(|(s, _)| s.name())
            .collect::<Vec<_>>()
            .join("+");
        Hybrid { name, parts }
    }
}

impl std::fmt::Debug for Hybrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let weights: Vec<(&str, f64)> = self.parts.iter().map(|(s, w)| (s.name(), *w)).collect();
        f.debug_struct("Hybrid").field("parts", &weights).finish()
    }
}

impl Strategy for Hybrid {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs(&self) -> Needs {
        self.parts
            .iter()
            .fold(Needs::default(), |acc, (s, _)| acc.union(s.needs()))
    }

    fn score(&self, model: &ModelState, ctx: &QueryContext, n: usize) -> Vec<(ItemIx, f64)> {
        let mut sum = ScoreSum::default();
        for (strategy, weight) in &self.parts {
            let scores = strategy.score(model, ctx, n);
            let max = scores.iter().map(|s| s.1).fold(0.0, f64::max);
            if max > 0.0 {
                for (item, score) in scores {
                    sum.add(item, weight * score / max);
                }
            }
        }
        sum.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_support::{model_of, ranked};
    use crate::strategy::{Popular, SequentialRules};

    #[test]
    fn sums_normalised_scores_with_weights() {
        // Rules after x: y (1.0). Popularity: z (3 clicks) > x (2) > y (1).
        let model = model_of(&[&["x", "y"], &["z", "z", "z", "x"]]);
        let mostly_rules = Hybrid::new(vec![
            (Box::new(SequentialRules::default()), 0.7),
            (Box::new(Popular), 0.3),
        ]);
        assert_eq!(mostly_rules.name(), "sr+popular");
        // y: 0.7 + 0.3·1/3 = 0.8; z: 0.3; x: 0.3·2/3 = 0.2.
        assert_eq!(ranked(&model, &mostly_rules, &["x"]), ["y", "z", "x"]);
        let mostly_popular = Hybrid::new(vec![
            (Box::new(SequentialRules::default()), 0.1),
            (Box::new(Popular), 0.9),
        ]);
        // z: 0.9; x: 0.6; y: 0.1 + 0.9·1/3 = 0.4.
        assert_eq!(ranked(&model, &mostly_popular, &["x"]), ["z", "x", "y"]);
        assert_eq!(mostly_popular.needs(), SequentialRules::default().needs());
    }
}
