//! Product recommendations for RetailMind: the model state, the strategies and the business
//! rules, as a pure library with no I/O.
//!
//! - [`ModelState`] is everything learned from the event stream: items with popularity and
//!   trending, recent sessions with an item → sessions index, sequential rules and co-purchases.
//!   The processor folds events in one at a time ([`ModelState::observe_click`],
//!   [`ModelState::observe_order`]), so a shopper's click shows in their next recommendations;
//!   [`ModelState::to_snapshot`] and [`ModelState::from_snapshot`] persist it.
//! - A [`Strategy`] scores items for a [`Query`] (the session's clicks, the product on screen,
//!   the cart, past purchases, a filter): popularity and trending (the cold-start fallback),
//!   V-SKNN (the session-kNN baseline), sequential rules, STAN, weighted hybrids, and "bought
//!   together".
//! - [`ModelState::recommend`] runs a strategy and applies the business rules in one place:
//!   no cart, purchased or on-screen items, the filter, each item once, popularity fill.
//!
//! The collector serves from this crate and `cargo xtask eval-recs` measures the very same code
//! offline.
//!
//! ```
//! use retailmind_recommend::{strategy, ModelConfig, ModelState, Query};
//!
//! let mut model = ModelState::new(ModelConfig::default());
//! model.observe_click("s1", "phone", 1_764_064_800.0);
//! model.observe_click("s1", "case", 1_764_064_830.0);
//! model.observe_click("s2", "laptop", 1_764_064_900.0);
//!
//! let rules = strategy::by_name("sr").expect("a known strategy");
//! let query = Query { clicks: &["phone"], cart: &["laptop"], ..Query::default() };
//! let recs = model.recommend(rules.as_ref(), &query, 2);
//! // "case" followed "phone"; the popularity fill adds "phone"; "laptop" is in the cart.
//! assert_eq!((recs[0].item, recs[0].fallback), ("case", false));
//! assert_eq!((recs[1].item, recs[1].fallback), ("phone", true));
//!
//! let restored = ModelState::from_snapshot(&model.to_snapshot()).expect("a valid snapshot");
//! assert_eq!(restored.recommend(rules.as_ref(), &query, 2), recs);
//! ```

mod business_rules;
mod items;
mod leaderboard;
mod model;
mod query;
mod sessions;
mod snapshot;
mod sparse;
pub mod strategy;

pub use items::ItemTable;
pub use model::{Click, ModelConfig, ModelState};
pub use query::{PageContext, Query, QueryContext, Scored};
pub use sessions::{SessionLimits, SessionRecord, SessionSeq, SessionStore};
pub use snapshot::SnapshotError;
pub use sparse::SparseRows;
pub use strategy::{Needs, Strategy};

/// An item's index in the model: ids are interned so sessions, rules and indexes hold 4 bytes
/// per item.
pub type ItemIx = u32;
