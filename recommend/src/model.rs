//! The model state every strategy reads: items with popularity and trending, recent sessions with
//! their item index, sequential rules and co-purchases, all updated one event at a time.
//!
//! The processor feeds it from the stream (`observe_click`, `observe_order`) so a click changes the
//! next recommendations at once; there is no separate training step. Building from a log
//! (`from_clicks`) is the same fold in time order. Every part is bounded by [`ModelConfig`], and
//! the whole state round-trips through bytes ([`crate::snapshot`]) to survive restarts.

use crate::items::ItemTable;
use crate::sessions::{SessionLimits, SessionStore};
use crate::sparse::SparseRows;
use crate::strategy::Needs;
use crate::ItemIx;

/// Sizes and parameters of the model state. The defaults keep every part, for serving.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// Session history kept for the neighbourhood strategies and the rules.
    pub sessions: SessionLimits,
    /// How many earlier clicks of a session each click links back to in the sequential rules;
    /// 0 learns no rules. A link to the click `d` steps back weighs `1/d`.
    pub rule_window: usize,
    /// Links kept per item in the rules and in the co-purchases.
    pub max_links_per_item: usize,
    /// Whether orders are counted into co-purchases ("bought together").
    pub learn_orders: bool,
    /// Half-life of a click's weight in the trending score, in seconds.
    pub trending_half_life_secs: f64,
    /// Items of one order considered for co-purchases (pairs grow with its square).
    pub max_order_items: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            sessions: SessionLimits {
                max_sessions: 1_000_000,
                max_session_len: 200,
                index: true,
                max_sessions_per_item: 5_000,
            },
            rule_window: 10,
            max_links_per_item: 500,
            learn_orders: true,
            trending_half_life_secs: 24.0 * 3600.0,
            max_order_items: 50,
        }
    }
}

impl ModelConfig {
    /// This configuration with only the parts that `needs` asks for (for a model that serves
    /// one strategy, and to measure what each strategy costs).
    pub fn only(mut self, needs: Needs) -> Self {
        if !needs.session_index && needs.rules == 0 {
            self.sessions.max_sessions = 0;
        }
        self.sessions.index = needs.session_index;
        self.rule_window = needs.rules;
        self.learn_orders = needs.orders;
        self
    }
}

/// One click of a click log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Click<'a> {
    /// Session id.
    pub session: &'a str,
    /// Item (product) id.
    pub item: &'a str,
    /// Unix seconds.
    pub time: f64,
}

/// Everything the strategies read.
#[derive(Clone, Debug)]
pub struct ModelState {
    pub(crate) config: ModelConfig,
    pub(crate) items: ItemTable,
    pub(crate) sessions: SessionStore,
    pub(crate) rules: SparseRows,
    pub(crate) co_purchases: SparseRows,
    /// Time of the latest click seen, the default "now" of a query.
    pub(crate) latest_time: f64,
}

impl ModelState {
    /// An empty model.
    pub fn new(config: ModelConfig) -> Self {
        ModelState {
            config,
            items: ItemTable::new(config.trending_half_life_secs),
            sessions: SessionStore::new(config.sessions),
            rules: SparseRows::new(config.max_links_per_item),
            co_purchases: SparseRows::new(config.max_links_per_item),
            latest_time: f64::NEG_INFINITY,
        }
    }

    /// A model fed with `clicks` in time order (the sort is stable, so ties keep log order).
    pub fn from_clicks<'a>(
        config: ModelConfig,
        clicks: impl IntoIterator<Item = Click<'a>>,
    ) -> Self {
        let mut clicks: Vec<Click<'a>> = clicks.into_iter().collect();
        clicks.sort_by(|a, b| a.time.total_cmp(&b.time));
        let mut model = ModelState::new(config);
        for c in clicks {
            model.observe_click(c.session, c.item, c.time);
        }
        model
    }

    /// Folds in one click of `session` on `item` at `time` (Unix seconds). A click with a time
    /// that is not a finite number is ignored: it would poison every time-decayed score.
    pub fn observe_click(&mut self, session: &str, item: &str, time: f64) {
        if !time.is_finite() {
            return;
        }
        let ix = self.items.observe_click(item, time);
        self.latest_time = self.latest_time.max(time);
        let window = self.config.rule_window;
        if window > 0 {
            if let Some(record) = self
                .sessions
                .seq_of(session)
                .and_then(|s| self.sessions.record(s))
            {
                let earlier = record.items.iter().rev().take(window);
                for (steps_back, &prev) in earlier.enumerate() {
                    self.rules.add(prev, ix, 1.0 / (steps_back + 1) as f32);
                }
            }
        }
        self.sessions.observe(session, ix, time);
    }

    /// Folds in one order: every pair of distinct items in it was bought together once.
    pub fn observe_order<S: AsRef<str>>(&mut self, items: &[S]) {
        if !self.config.learn_orders {
            return;
        }
        let mut bought: Vec<ItemIx> = items
            .iter()
            .take(self.config.max_order_items)
            .map(|id| self.items.intern(id.as_ref()))
            .collect();
        bought.sort_unstable();
        bought.dedup();
        for &a in &bought {
            for &b in &bought {
                if a != b {
                    self.co_purchases.add(a, b, 1.0);
                }
            }
        }
    }

    /// Folds in a product view as the stream reports it: a click of `session` on `item`, and
    /// the item's category when the event names one.
    pub fn observe_view(&mut self, session: &str, item: &str, time: f64, category: Option<&str>) {
        self.observe_click(session, item, time);
        if let (Some(category), Some(ix)) = (category, self.items.get(item)) {
            self.items.set_category(ix, category);
        }
    }

    /// Folds in a purchase as the stream reports it: an order (bought together), and the items
    /// bought by `session`, which are not recommended to it again.
    pub fn observe_purchase<S: AsRef<str>>(&mut self, session: &str, items: &[S], time: f64) {
        self.observe_order(items);
        // Every line of a big order is left out, not only those that counted as bought
        // together (`max_order_items`); the session keeps up to `max_session_len`.
        let bought: Vec<ItemIx> = items
            .iter()
            .take(self.config.sessions.max_session_len)
            .map(|id| self.items.intern(id.as_ref()))
            .collect();
        let time = if time.is_finite() {
            time
        } else {
            self.latest_time
        };
        self.sessions.observe_purchase(session, &bought, time);
    }

    /// The clicks (oldest first) and purchases the model holds of `session`, by id.
    pub fn session_history(&self, session: &str) -> Option<(Vec<&str>, Vec<&str>)> {
        let record = self.sessions.record(self.sessions.seq_of(session)?)?;
        let ids = |items: &[ItemIx]| items.iter().map(|&ix| self.items.id(ix)).collect();
        Some((ids(&record.items), ids(&record.purchased)))
    }

    /// The category of `item`, when an event named one.
    pub fn category_of(&self, item: &str) -> Option<&str> {
        self.items.category(self.items.get(item)?)
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The items known, with popularity and trending.
    pub fn items(&self) -> &ItemTable {
        &self.items
    }

    /// The recent sessions and their index.
    pub fn sessions(&self) -> &SessionStore {
        &self.sessions
    }

    /// Sequential rules: row `a` holds the items clicked soon after `a`, weighted by closeness.
    pub fn rules(&self) -> &SparseRows {
        &self.rules
    }

    /// Co-purchases: row `a` holds the items bought in the same orders as `a`, with counts.
    pub fn co_purchases(&self) -> &SparseRows {
        &self.co_purchases
    }

    /// Time of the latest click seen (Unix seconds), or −∞ before any.
    pub fn latest_time(&self) -> f64 {
        self.latest_time
    }

    /// Estimated bytes the model occupies in memory (heap plus the top-level struct).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.items.heap_bytes()
            + self.sessions.heap_bytes()
            + self.rules.heap_bytes()
            + self.co_purchases.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click<'a>(session: &'a str, item: &'a str, time: f64) -> Click<'a> {
        Click {
            session,
            item,
            time,
        }
    }

    #[test]
    fn rules_link_each_click_to_the_earlier_ones_by_closeness() {
        let log = [
            click("s", "a", 1.0),
            click("s", "b", 2.0),
            click("s", "c", 3.0),
        ];
        let model = ModelState::from_clicks(ModelConfig::default(), log);
        let ix = |id| model.items().get(id).unwrap();
        assert_eq!(
            model.rules().row(ix("a")),
            &[(ix("b"), 1.0), (ix("c"), 0.5)]
        );
        assert_eq!(model.rules().row(ix("b")), &[(ix("c"), 1.0)]);
        assert_eq!(model.rules().row(ix("c")), &[]);
    }

    #[test]
    fn building_from_a_log_sorts_it_by_time() {
        let log = [click("s", "b", 2.0), click("s", "a", 1.0)];
        let model = ModelState::from_clicks(ModelConfig::default(), log);
        let a = model.items().get("a").unwrap();
        let b = model.items().get("b").unwrap();
        assert_eq!(model.rules().row(a), &[(b, 1.0)]);
        assert_eq!(model.latest_time(), 2.0);
    }

    #[test]
    fn ignores_clicks_without_a_usable_time() {
        let mut model = ModelState::new(ModelConfig::default());
        model.observe_click("s", "a", f64::NAN);
        model.observe_click("s", "a", f64::INFINITY);
        assert!(model.items().is_empty() && model.sessions().is_empty());
    }

    #[test]
    fn orders_count_each_distinct_pair_both_ways() {
        let mut model = ModelState::new(ModelConfig::default());
        model.observe_order(&["x", "y", "x"]);
        model.observe_order(&["x", "y", "z"]);
        let ix = |id| model.items().get(id).unwrap();
        assert_eq!(
            model.co_purchases().row(ix("x")),
            &[(ix("y"), 2.0), (ix("z"), 1.0)]
        );
        assert_eq!(
            model.co_purchases().row(ix("z")),
            &[(ix("x"), 1.0), (ix("y"), 1.0)]
        );
        // Ordered items are known to the model but were never clicked.
        assert_eq!(model.items().clicks(ix("z")), 0);
    }

    #[test]
    fn every_line_of_a_big_order_is_bought_by_its_session() {
        let config = ModelConfig {
            max_order_items: 2,
            ..ModelConfig::default()
        };
        let mut model = ModelState::new(config);
        model.observe_purchase("s", &["a", "b", "c", "d"], 1.0);
        let (_, bought) = model.session_history("s").unwrap();
        assert_eq!(bought, ["a", "b", "c", "d"]);
        // Bought together: the first two only.
        let a = model.items().get("a").unwrap();
        assert_eq!(model.co_purchases().row(a).len(), 1);
    }

    #[test]
    fn a_config_for_popularity_only_keeps_no_sessions() {
        let config = ModelConfig::default().only(Needs::default());
        let model = ModelState::from_clicks(config, [click("s", "a", 1.0), click("s", "b", 2.0)]);
        assert!(model.sessions().is_empty());
        assert_eq!(model.rules().links(), 0);
        let full = ModelState::from_clicks(
            ModelConfig::default(),
            [click("s", "a", 1.0), click("s", "b", 2.0)],
        );
        assert!(model.memory_bytes() < full.memory_bytes());
    }
}
