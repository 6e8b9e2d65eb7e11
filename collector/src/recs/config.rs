//! How recommendations are served: strategies per placement, the model to read, the session
//! memory's size.

use serde::{Deserialize, Serialize};

/// The `[recommendations]` table of the collector's configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// The model's name in the model store (the processor's `model_name`).
    pub model_name: String,
    /// How often the stored model's version is polled (one key read); a newer one is loaded.
    pub reload_interval_ms: u64,
    /// Strategies per placement, tried in order: the first whose answer holds at least one
    /// item of its own (not only the popularity fill) is served. Names as in
    /// `retailmind_recommend::strategy::NAMES`.
    pub strategies: PlacementStrategies,
    /// Live sessions remembered from ingested batches (about 1 KB each).
    pub memory_max_sessions: usize,
    /// Product views remembered per session.
    pub memory_clicks_per_session: usize,
    /// Minutes after which an idle session may be forgotten.
    pub memory_idle_minutes: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementStrategies {
    pub home: Vec<String>,
    pub product: Vec<String>,
    pub cart: Vec<String>,
    pub post_purchase: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for PlacementStrategies {
    fn default() -> Self {
        // STAN+SR had the best HR@20/MRR@20 offline (`cargo xtask eval-recs`); trending suits a
        // home page with no context; co-purchases suit the cart and the order confirmation,
        // with the session's clicks next when the cart's items were never bought with others.
        PlacementStrategies {
            home: names(&["trending"]),
            product: names(&["stan+sr"]),
            cart: names(&["bought-together", "stan+sr"]),
            post_purchase: names(&["bought-together", "stan+sr"]),
        }
    }
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        RecommendationsConfig {
            model_name: "recommendations".into(),
            reload_interval_ms: 200,
            strategies: PlacementStrategies::default(),
            memory_max_sessions: 100_000,
            memory_clicks_per_session: 20,
            memory_idle_minutes: 30,
        }
    }
}
