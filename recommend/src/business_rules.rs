//! The one entry point that serves recommendations, and the business rules every strategy's
//! output goes through, in this one place:
//!
//! 1. never recommend what is in the cart, was already bought, or is the product on screen;
//! 2. only items the query's filter (category, allowed set) accepts;
//! 3. each item once;
//! 4. when the strategy has fewer than `n` such items, fill up from overall popularity (marked
//!    `fallback`), so a placement is never half empty, even for a brand-new shopper.

use std::collections::HashSet;

use crate::model::ModelState;
use crate::query::{Query, QueryContext, Scored};
use crate::strategy::{top_k, Strategy};
use crate::ItemIx;

impl ModelState {
    /// Up to `n` items for `query` from `strategy`, best first, after the business rules.
    ///
    /// Fewer than `n` only when the model knows fewer admissible items.
    pub fn recommend<'m>(
        &'m self,
        strategy: &dyn Strategy,
        query: &Query<'_>,
        n: usize,
    ) -> Vec<Scored<'m>> {
        let ctx = QueryContext::resolve(self, query);
        let candidates = strategy.score(self, &ctx, n);
        apply(self, &ctx, query.allow, candidates, n)
    }
}

/// Applies the rules to a strategy's candidates.
fn apply<'m>(
    model: &'m ModelState,
    ctx: &QueryContext,
    allow: Option<&dyn Fn(&str) -> bool>,
    candidates: Vec<(ItemIx, f64)>,
    n: usize,
) -> Vec<Scored<'m>> {
    let items = model.items();
    let admissible = |ix: ItemIx| {
        !ctx.excluded.contains(&ix) && allow.is_none_or(|accepts| accepts(items.id(ix)))
    };
    // Without a filter only the excluded items can push a candidate out of the first n.
    let keep = if allow.is_none() {
        n + ctx.excluded.len()
    } else {
        candidates.len()
    };
    let mut chosen: HashSet<ItemIx> = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for (ix, score) in top_k(candidates, keep) {
        if out.len() == n {
            return out;
        }
        if admissible(ix) && chosen.insert(ix) {
            out.push(Scored {
                item: items.id(ix),
                score,
                fallback: false,
            });
        }
    }
    let board = items.most_popular().iter().map(|&(ix, _)| ix);
    let mut fill = |ix: ItemIx, out: &mut Vec<Scored<'m>>| {
        if admissible(ix) && chosen.insert(ix) {
            out.push(Scored {
                item: items.id(ix),
                score: 0.0,
                fallback: true,
            });
        }
        out.len() == n
    };
    for ix in board {
        if out.len() == n || fill(ix, &mut out) {
            return out;
        }
    }
    if items.most_popular().len() < items.len() {
        for ix in items.all_by_popularity() {
            if out.len() == n || fill(ix, &mut out) {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use crate::model::{Click, ModelConfig, ModelState};
    use crate::query::Query;
    use crate::strategy::{self, test_support::model_of, SequentialRules};

    fn ids(recs: &[crate::Scored<'_>]) -> Vec<String> {
        recs.iter().map(|r| r.item.to_owned()).collect()
    }

    /// Rules after x: a (2), b (1), c (1). Popularity: x 4, p 3, a 2, b 1, c 1.
    fn model() -> ModelState {
        model_of(&[
            &["x", "a"],
            &["x", "a"],
            &["x", "b"],
            &["x", "c"],
            &["p", "p", "p"],
        ])
    }

    #[test]
    fn excludes_cart_purchases_and_the_product_on_screen() {
        let m = model();
        let sr = SequentialRules::default();
        let query = Query {
            clicks: &["x"],
            ..Query::default()
        };
        assert_eq!(ids(&m.recommend(&sr, &query, 3)), ["a", "b", "c"]);
        let query = Query {
            clicks: &["x"],
            cart: &["a"],
            purchased: &["b"],
            context_item: Some("x"),
            ..Query::default()
        };
        let recs = m.recommend(&sr, &query, 3);
        assert_eq!(ids(&recs), ["c", "p"]);
        assert!(recs[1].fallback && !recs[0].fallback);
    }

    #[test]
    fn applies_the_filter_and_fills_from_popularity() {
        let m = model();
        let no_c = |id: &str| id != "c";
        let query = Query {
            clicks: &["x"],
            allow: Some(&no_c),
            ..Query::default()
        };
        let recs = m.recommend(&SequentialRules::default(), &query, 4);
        // a, b from the rules; then x and p by popularity (c refused by the filter).
        assert_eq!(ids(&recs), ["a", "b", "x", "p"]);
        assert_eq!(recs.iter().filter(|r| r.fallback).count(), 2);
    }

    #[test]
    fn a_new_shopper_gets_popular_items() {
        let m = model();
        let recs = m.recommend(&SequentialRules::default(), &Query::default(), 2);
        assert_eq!(ids(&recs), ["x", "p"]);
        assert!(recs.iter().all(|r| r.fallback && r.score == 0.0));
    }

    #[test]
    fn never_more_than_the_catalogue() {
        let m = model();
        assert_eq!(
            m.recommend(&SequentialRules::default(), &Query::default(), 50)
                .len(),
            5
        );
    }

    fn arb_log() -> impl Strategy<Value = Vec<(u8, u8, u16)>> {
        proptest::collection::vec((0u8..6, 0u8..12, 0u16..500), 1..80)
    }

    proptest! {
        /// For every strategy and any log: n items (or the whole admissible catalogue), each
        /// once, none excluded, all accepted by the filter, strategy items before fallback ones.
        #[test]
        fn rules_hold_for_every_strategy(
            log in arb_log(),
            clicks in proptest::collection::vec(0u8..14, 0..6),
            cart in proptest::collection::vec(0u8..14, 0..3),
            n in 1usize..15,
        ) {
            let keys: Vec<String> = (0..6).map(|s| format!("s{s}")).collect();
            let names: Vec<String> = (0..14).map(|i| format!("i{i}")).collect();
            let mut model = ModelState::from_clicks(
                ModelConfig::default(),
                log.iter().map(|&(s, i, t)| Click {
                    session: &keys[s as usize],
                    item: &names[i as usize],
                    time: f64::from(t),
                }),
            );
            model.observe_order(&[&names[0], &names[1]]);
            let clicks: Vec<&str> = clicks.iter().map(|&i| names[i as usize].as_str()).collect();
            let cart: Vec<&str> = cart.iter().map(|&i| names[i as usize].as_str()).collect();
            let even = |id: &str| id.trim_start_matches('i').parse::<u32>().is_ok_and(|v| v % 2 == 0);
            let query = Query { clicks: &clicks, cart: &cart, allow: Some(&even), ..Query::default() };
            let admissible: HashSet<&str> = (0..model.items().len() as u32)
                .map(|ix| model.items().id(ix))
                .filter(|id| even(id) && !cart.contains(id))
                .collect();
            for name in strategy::NAMES {
                let s = strategy::by_name(name).unwrap();
                let recs = model.recommend(s.as_ref(), &query, n);
                prop_assert_eq!(recs.len(), n.min(admissible.len()), "{}", s.name());
                let distinct: HashSet<&str> = recs.iter().map(|r| r.item).collect();
                prop_assert_eq!(distinct.len(), recs.len());
                prop_assert!(recs.iter().all(|r| admissible.contains(r.item)));
                let first_fallback = recs.iter().position(|r| r.fallback).unwrap_or(recs.len());
                prop_assert!(recs[first_fallback..].iter().all(|r| r.fallback));
            }
        }
    }
}
