//! Values the unit tests of several stores share.

use retailmind_schema::{CurrencyRevenue, Session, SessionOrder};
use uuid::Uuid;

/// A session with every field set (none left at its default).
pub fn full_session() -> Session {
    Session {
        session_id: "0192f0c1-0000-7000-8000-000000000001".into(),
        anonymous_id: "a-1".into(),
        user_id: Some("u-9".into()),
        start_ms: 1_732_527_000_000,
        end_ms: 1_732_527_600_000,
        event_count: 7,
        page_views: 4,
        entry_url: "https://shop.example/".into(),
        exit_url: "https://shop.example/cart".into(),
        referrer: Some("https://search.example/".into()),
        utm_source: Some("news".into()),
        utm_medium: Some("email".into()),
        utm_campaign: Some("bf".into()),
        products_viewed: 3,
        cart_adds: 2,
        purchases: 2,
        revenue_minor: 4_999,
        currency: Some("EUR".into()),
        other_revenue: vec![CurrencyRevenue {
            currency: "GBP".into(),
            revenue_minor: 2_500,
        }],
        engaged_ms: Some(42_000),
        event_ids: vec![Uuid::now_v7(), Uuid::now_v7()],
        orders: vec![
            SessionOrder {
                order_id: "A-1001".into(),
                revenue_minor: 4_999,
                currency: "EUR".into(),
            },
            SessionOrder {
                order_id: "A-1002".into(),
                revenue_minor: 2_500,
                currency: "GBP".into(),
            },
        ],
        version: 3,
        engaged: true,
        bounce: false,
        device: "mobile".into(),
        session_number: 4,
    }
}
