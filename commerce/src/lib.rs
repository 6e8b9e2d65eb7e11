//! Orders and customer profiles: the second and third data sources beside the clickstream.
//!
//! - [`order`]: the order shops send from their backend, its checks (totals, card numbers,
//!   shapes) and status rules, and the purchase event it becomes on the stream. Pure.
//! - [`profile`]: the customer profile and the rules that build it (traits with the email
//!   hashed, loyalty tiers, favourite categories, facts from the stream). Pure.
//! - [`store`]: [`CommerceStore`] and its one SQL implementation over PostgreSQL (Amazon RDS)
//!   and SQLite (embedded default).

pub mod card;
mod config;
mod error;
pub mod order;
pub mod profile;
pub mod store;

pub use config::CommerceConfig;
pub use error::{CommerceError, Problem, Result};
pub use order::{NewOrder, Order, OrderStatus, StatusChange};
pub use profile::{CustomerProfile, Traits, VisitFacts};
pub use store::{CommerceStore, CustomerSummary, DeletionRequest, Forgotten, Placed, SqlCommerce};

/// Wall-clock ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
