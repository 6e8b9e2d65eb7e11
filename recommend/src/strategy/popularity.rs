//! Popularity, overall and trending: the cold-start fallback, and the baseline every other
//! strategy must beat.

use super::{Needs, Strategy};
use crate::model::ModelState;
use crate::query::QueryContext;
use crate::ItemIx;

/// The most clicked items overall, whatever the shopper did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Popular;

impl Strategy for Popular {
    fn name(&self) -> &str {
        "popular"
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn score(&self, model: &ModelState, ctx: &QueryContext, n: usize) -> Vec<(ItemIx, f64)> {
        let wanted = n + ctx.excluded.len();
        model
            .items()
            .most_popular()
            .iter()
            .take(wanted)
            .copied()
            .collect()
    }
}

/// The items with the most recent clicks: each click counts `2^-(age / half_life)`, with the
/// model's [`trending_half_life_secs`](crate::ModelConfig::trending_half_life_secs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Trending;

impl Strategy for Trending {
    fn name(&self) -> &str {
        "trending"
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn score(&self, model: &ModelState, ctx: &QueryContext, n: usize) -> Vec<(ItemIx, f64)> {
        let wanted = n + ctx.excluded.len();
        let items = model.items();
        items
            .most_trending()
            .iter()
            .take(wanted)
            .map(|&(ix, _)| (ix, items.trending_score(ix, ctx.time)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Click, ModelConfig};
    use crate::strategy::test_support::{model_of, ranked};

    #[test]
    fn popular_ranks_by_click_count() {
        let model = model_of(&[&["a", "b", "b"], &["c", "b", "c"], &["a"]]);
        assert_eq!(ranked(&model, &Popular, &["zzz"]), ["b", "a", "c"]);
        assert_eq!(ranked(&model, &Popular, &[]), ["b", "a", "c"]);
    }

    #[test]
    fn trending_prefers_recent_clicks() {
        let day = 86_400.0;
        let mut log = Vec::new();
        for t in 0..5 {
            log.push(Click {
                session: "old",
                item: "old-hit",
                time: f64::from(t),
            });
        }
        for t in 0..2 {
            log.push(Click {
                session: "new",
                item: "new-hit",
                time: 3.0 * day + f64::from(t),
            });
        }
        let model = ModelState::from_clicks(ModelConfig::default(), log);
        assert_eq!(ranked(&model, &Trending, &[]), ["new-hit", "old-hit"]);
        assert_eq!(ranked(&model, &Popular, &[]), ["old-hit", "new-hit"]);
        let ctx = QueryContext::resolve(&model, &Default::default());
        let scores = Trending.score(&model, &ctx, 1);
        // Two clicks of about no age, with a one-day half-life.
        assert!((scores[0].1 - 2.0).abs() < 1e-3, "{scores:?}");
    }
}
