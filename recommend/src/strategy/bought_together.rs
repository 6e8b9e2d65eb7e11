//! "Bought together": items that shared orders with the ones the shopper has at hand (the
//! product on screen, the cart, what they just bought), for product, cart and post-purchase
//! placements. Without any of those it starts from the session's last click.

use super::{Needs, ScoreSum, Strategy};
use crate::model::ModelState;
use crate::query::QueryContext;
use crate::ItemIx;

/// Co-purchase counts summed over the seed items.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoughtTogether;

impl Strategy for BoughtTogether {
    fn name(&self) -> &str {
        "bought-together"
    }

    fn needs(&self) -> Needs {
        Needs {
            orders: true,
            ..Needs::default()
        }
    }

    fn score(&self, model: &ModelState, ctx: &QueryContext, _n: usize) -> Vec<(ItemIx, f64)> {
        let seeds = if ctx.seeds.is_empty() {
            ctx.clicks
                .last()
                .map(std::slice::from_ref)
                .unwrap_or_default()
        } else {
            &ctx.seeds[..]
        };
        let mut sum = ScoreSum::default();
        for &seed in seeds {
            for &(item, count) in model.co_purchases().row(seed) {
                sum.add(item, f64::from(count));
            }
        }
        sum.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::query::Query;

    fn model() -> ModelState {
        let mut model = ModelState::new(ModelConfig::default());
        model.observe_order(&["phone", "case", "charger"]);
        model.observe_order(&["phone", "case"]);
        model.observe_order(&["laptop", "charger", "bag"]);
        model
    }

    fn ranked(model: &ModelState, query: &Query<'_>) -> Vec<(String, f64)> {
        let ctx = QueryContext::resolve(model, query);
        crate::strategy::top_k(BoughtTogether.score(model, &ctx, 10), 10)
            .into_iter()
            .map(|(ix, s)| (model.items().id(ix).to_owned(), s))
            .collect()
    }

    #[test]
    fn sums_co_purchases_over_the_context_item_and_cart() {
        let m = model();
        let on_phone_page = Query {
            context_item: Some("phone"),
            ..Query::default()
        };
        assert_eq!(
            ranked(&m, &on_phone_page),
            [("case".to_owned(), 2.0), ("charger".to_owned(), 1.0)]
        );
        let cart = Query {
            cart: &["phone", "laptop"],
            ..Query::default()
        };
        let got: Vec<String> = ranked(&m, &cart).into_iter().map(|e| e.0).collect();
        // case 2, charger 1 + 1, bag 1: seeds themselves are removed later by the rules.
        assert_eq!(got, ["case", "charger", "bag"]);
    }

    #[test]
    fn falls_back_to_the_last_click_without_seeds() {
        let m = model();
        let browsing = Query {
            clicks: &["bag", "laptop"],
            ..Query::default()
        };
        let got: Vec<String> = ranked(&m, &browsing).into_iter().map(|e| e.0).collect();
        // After laptop: charger and bag once each (tie: the item known first).
        assert_eq!(got, ["charger", "bag"]);
        assert!(ranked(&m, &Query::default()).is_empty());
    }
}
