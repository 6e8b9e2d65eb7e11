//! Sequential rules (SR; Kamehkhosh, Jannach and Ludewig 2017): "after `a`, shoppers clicked `b`
//! within a few steps", weighted `1/d` for a gap of `d` clicks, scored from the session's last
//! click. Cheap, and strong on short sessions where the next click follows the last one.

use super::{Needs, Strategy};
use crate::model::ModelState;
use crate::query::QueryContext;
use crate::ItemIx;

/// Items that followed the session's last click in training sessions.
#[derive(Clone, Copy, Debug)]
pub struct SequentialRules {
    /// How many earlier clicks each click links back to (the model's `rule_window`).
    pub window: usize,
}

impl Default for SequentialRules {
    fn default() -> Self {
        SequentialRules { window: 10 }
    }
}

impl Strategy for SequentialRules {
    fn name(&self) -> &str {
        "sr"
    }

    fn needs(&self) -> Needs {
        Needs {
            rules: self.window,
            ..Needs::default()
        }
    }

    fn score(&self, model: &ModelState, ctx: &QueryContext, _n: usize) -> Vec<(ItemIx, f64)> {
        let Some(&last) = ctx.clicks.last() else {
            return Vec::new();
        };
        model
            .rules()
            .row(last)
            .iter()
            .map(|&(item, weight)| (item, f64::from(weight)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_support::{model_of, ranked};

    #[test]
    fn follows_the_last_click_weighted_by_closeness() {
        // After x: y directly twice (2.0), z directly once and two steps on once (1.5),
        // q directly once (1.0), w two steps on (0.5).
        let model = model_of(&[&["x", "y", "w"], &["x", "y"], &["x", "z"], &["x", "q", "z"]]);
        assert_eq!(
            ranked(&model, &SequentialRules::default(), &["a", "x"]),
            ["y", "z", "q", "w"]
        );
        // Only the last click counts.
        assert_eq!(
            ranked(&model, &SequentialRules::default(), &["x", "w"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn empty_session_scores_nothing() {
        let model = model_of(&[&["x", "y"]]);
        assert!(ranked(&model, &SequentialRules::default(), &[]).is_empty());
    }
}
