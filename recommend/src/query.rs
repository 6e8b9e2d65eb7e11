//! What a caller asks for (a [`Query`] in item ids) and what strategies see (a [`QueryContext`] in
//! item indexes), and the answer ([`Scored`]).

use std::collections::HashSet;

use crate::model::ModelState;
use crate::sessions::SessionSeq;
use crate::ItemIx;

/// A request for recommendations, in the caller's ids.
///
/// Items the model has never seen are ignored, so a brand-new product or a typo does not fail a
/// request; an empty query gets the popularity fallback.
#[derive(Clone, Copy, Default)]
pub struct Query<'q> {
    /// The shopper's current session id: that session is left out of its own neighbours when the
    /// model already holds its clicks.
    pub session_id: Option<&'q str>,
    /// The current session's clicked items, most recent last.
    pub clicks: &'q [&'q str],
    /// "Now" in Unix seconds, for time-aware strategies; the model's latest click if absent.
    pub time: Option<f64>,
    /// The product the shopper is looking at (product page placement): a seed for "bought
    /// together", never recommended itself.
    pub context_item: Option<&'q str>,
    /// Items in the cart: seeds for "bought together", never recommended.
    pub cart: &'q [&'q str],
    /// Items already bought: never recommended again.
    pub purchased: &'q [&'q str],
    /// Category filter or allowed set: only ids it accepts are recommended.
    pub allow: Option<&'q dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for Query<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("session_id", &self.session_id)
            .field("clicks", &self.clicks)
            .field("time", &self.time)
            .field("context_item", &self.context_item)
            .field("cart", &self.cart)
            .field("purchased", &self.purchased)
            .field("allow", &self.allow.map(|_| "<filter>"))
            .finish()
    }
}

/// What a placement shows beside: the session's clicks as a query reads them, and the product on
/// screen.
///
/// The collector builds every query from this and `cargo xtask eval-recs` scores the product
/// placement through it, so the offline figures exclude what the product page excludes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageContext<'a> {
    /// The session's clicks, most recent last, ending with the product the page named.
    pub clicks: Vec<&'a str>,
    /// The product on screen: a seed for "bought together", never recommended.
    pub context_item: Option<&'a str>,
}

impl<'a> PageContext<'a> {
    /// The context of a request from the session's clicks (most recent last), the product the
    /// page named, if any, and whether the placement is a product page.
    ///
    /// The named product counts as the latest click even before its product view has reached
    /// the session. On a product page that names nothing, the latest click is the product on
    /// screen: a product page is reached by clicking the product.
    pub fn new(
        session_clicks: impl IntoIterator<Item = &'a str>,
        named_item: Option<&'a str>,
        product_page: bool,
    ) -> Self {
        let mut clicks: Vec<&'a str> = session_clicks.into_iter().collect();
        if let Some(item) = named_item {
            if clicks.last() != Some(&item) {
                clicks.push(item);
            }
        }
        let context_item = named_item.or_else(|| clicks.last().copied().filter(|_| product_page));
        PageContext {
            clicks,
            context_item,
        }
    }
}

/// One recommended item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored<'m> {
    /// The item id.
    pub item: &'m str,
    /// The strategy's score (higher is better); 0 for items filled in from popularity.
    pub score: f64,
    /// True when the item came from the popularity fill, not from the strategy asked for.
    pub fallback: bool,
}

/// A [`Query`] resolved against the model: known items only, as indexes.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryContext {
    /// Known clicked items, oldest first, repeats kept.
    pub clicks: Vec<ItemIx>,
    /// The asking session in the model's session store, if it is there.
    pub session: Option<SessionSeq>,
    /// "Now" in Unix seconds.
    pub time: f64,
    /// Items the shopper has at hand: the context item, the cart, then the purchases.
    pub seeds: Vec<ItemIx>,
    /// Items that must not be recommended: the context item, the cart and the purchases.
    pub excluded: HashSet<ItemIx>,
}

impl QueryContext {
    /// Resolves `query` against `model`.
    pub fn resolve(model: &ModelState, query: &Query<'_>) -> Self {
        let known = |ids: &[&str]| -> Vec<ItemIx> {
            ids.iter().filter_map(|id| model.items().get(id)).collect()
        };
        let clicks = known(query.clicks);
        let cart = known(query.cart);
        let purchased = known(query.purchased);
        let mut seeds: Vec<ItemIx> = query
            .context_item
            .and_then(|id| model.items().get(id))
            .into_iter()
            .collect();
        for &item in cart.iter().chain(&purchased) {
            if !seeds.contains(&item) {
                seeds.push(item);
            }
        }
        let excluded = seeds.iter().copied().collect();
        QueryContext {
            clicks,
            session: query.session_id.and_then(|s| model.sessions().seq_of(s)),
            time: query.time.unwrap_or(model.latest_time()),
            seeds,
            excluded,
        }
    }

    /// The distinct clicked items, each with the 1-based position of its latest click.
    pub fn latest_positions(&self) -> Vec<(ItemIx, usize)> {
        latest_positions(&self.clicks)
    }
}

/// The distinct items of a click sequence, in order of first click, each with the 1-based
/// position of its latest click.
pub(crate) fn latest_positions(items: &[ItemIx]) -> Vec<(ItemIx, usize)> {
    let mut out: Vec<(ItemIx, usize)> = Vec::with_capacity(items.len());
    for (pos, &item) in items.iter().enumerate() {
        match out.iter_mut().find(|e| e.0 == item) {
            Some(e) => e.1 = pos + 1,
            None => out.push((item, pos + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Click, ModelConfig};

    #[test]
    fn resolves_known_items_and_drops_unknown_ones() {
        let log = ["a", "b", "c"].map(|item| Click {
            session: "s",
            item,
            time: 10.0,
        });
        let model = ModelState::from_clicks(ModelConfig::default(), log);
        let query = Query {
            session_id: Some("s"),
            clicks: &["a", "zzz", "b", "a"],
            context_item: Some("c"),
            cart: &["b", "nope"],
            purchased: &["c"],
            ..Query::default()
        };
        let ctx = QueryContext::resolve(&model, &query);
        assert_eq!(ctx.clicks, vec![0, 1, 0]);
        assert_eq!(ctx.session, Some(0));
        assert_eq!(ctx.time, 10.0);
        assert_eq!(ctx.seeds, vec![2, 1]);
        assert_eq!(ctx.excluded, HashSet::from([1, 2]));
        assert_eq!(ctx.latest_positions(), vec![(0, 3), (1, 2)]);
    }

    #[test]
    fn on_a_product_page_the_latest_click_is_the_product_on_screen() {
        let page = PageContext::new(["a", "b"], None, true);
        assert_eq!(page.clicks, ["a", "b"]);
        assert_eq!(page.context_item, Some("b"));
        // Elsewhere the latest click is only history.
        let home = PageContext::new(["a", "b"], None, false);
        assert_eq!(
            (home.clicks.as_slice(), home.context_item),
            (&["a", "b"][..], None)
        );
        assert_eq!(PageContext::new([], None, true), PageContext::default());
    }

    #[test]
    fn a_named_product_is_the_context_and_the_latest_click_once() {
        // Its product view has not reached the session yet.
        let page = PageContext::new(["a", "b"], Some("c"), true);
        assert_eq!(
            (page.clicks.as_slice(), page.context_item),
            (&["a", "b", "c"][..], Some("c"))
        );
        // It has: not counted twice.
        let page = PageContext::new(["a", "c"], Some("c"), true);
        assert_eq!(page.clicks, ["a", "c"]);
        // A named product is the context on any placement.
        let cart = PageContext::new(["a"], Some("c"), false);
        assert_eq!(
            (cart.clicks.as_slice(), cart.context_item),
            (&["a", "c"][..], Some("c"))
        );
    }
}
