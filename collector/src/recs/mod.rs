//! `GET /v1/recommendations`: ranked products for a shopper, from the model the processor keeps
//! and saves (`live.rs`, reloaded when its stored version moves) and the shopper's own recent
//! activity that this collector ingested (`memory.rs`, fresh as soon as a batch is acknowledged).
//!
//! Freshness on the embedded default: the shopper's own product views reach their next request
//! through the session memory at once; everyone else's reach the model within the processor's
//! poll (200 ms idle) + save interval (250 ms) + this collector's reload poll (200 ms), 0.65 s at
//! worst on an idle machine (`cargo run --release -p retailmind-tests --example recs_freshness`).

mod config;
pub mod handler;
mod live;
mod memory;
mod params;

use std::sync::Arc;
use std::time::Duration;

use retailmind_recommend::{strategy, Strategy};

pub use config::{PlacementStrategies, RecommendationsConfig};
pub use handler::{get_recommendations, RecommendationsResponse, RecommendedItem};
pub use live::LiveModel;
pub use memory::{relevant, MemoryLimits, SessionMemory};
pub use params::{Placement, RecsParams};

/// Everything the endpoint needs, shared by the requests.
pub struct Recommender {
    pub live: Arc<LiveModel>,
    pub memory: SessionMemory,
    pub model_name: String,
    pub reload_interval: Duration,
    home: Vec<Box<dyn Strategy>>,
    product: Vec<Box<dyn Strategy>>,
    cart: Vec<Box<dyn Strategy>>,
    post_purchase: Vec<Box<dyn Strategy>>,
}

/// The strategies `names` name; unknown names are logged and left out, and an empty list
/// becomes popularity, so a typo in the configuration degrades rather than fails requests.
fn resolve(placement: &str, names: &[String]) -> Vec<Box<dyn Strategy>> {
    let mut chosen: Vec<Box<dyn Strategy>> = names
        .iter()
        .filter_map(|name| {
            let found = strategy::by_name(name);
            if found.is_none() {
                tracing::error!(placement, name, known = ?strategy::NAMES, "unknown recommendation strategy; ignored");
            }
            found
        })
        .collect();
    if chosen.is_empty() {
        chosen.extend(strategy::by_name("popular"));
    }
    chosen
}

impl Recommender {
    pub fn new(config: &RecommendationsConfig) -> Self {
        let s = &config.strategies;
        Recommender {
            live: Arc::new(LiveModel::default()),
            memory: SessionMemory::new(MemoryLimits {
                max_sessions: config.memory_max_sessions.max(1),
                clicks_per_session: config.memory_clicks_per_session.max(1),
                idle: Duration::from_secs(config.memory_idle_minutes * 60),
                max_categories: 1_000_000,
            }),
            model_name: config.model_name.clone(),
            reload_interval: Duration::from_millis(config.reload_interval_ms.max(10)),
            home: resolve("home", &s.home),
            product: resolve("product", &s.product),
            cart: resolve("cart", &s.cart),
            post_purchase: resolve("post_purchase", &s.post_purchase),
        }
    }

    /// The strategies of `placement`, in the order they are tried.
    pub fn strategies(&self, placement: Placement) -> &[Box<dyn Strategy>] {
        match placement {
            Placement::Home => &self.home,
            Placement::Product => &self.product,
            Placement::Cart => &self.cart,
            Placement::PostPurchase => &self.post_purchase,
        }
    }
}
