//! What the collector remembers of live sessions from the batches it accepts: the last product
//! views, the cart and the purchases, per session, plus each product's category.
//!
//! This is the shopper's own freshness: a product view is in the next recommendation request
//! as soon as its batch was acknowledged, whatever the processor's delay. Memory is bounded
//! (sessions idle longer than `idle` are forgotten first) and per instance: behind a load
//! balancer without stickiness, a shopper's requests can land on an instance that did not ingest
//! their last batch, and then freshness falls back to the processor's path.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use retailmind_schema::{Event, Payload};

/// Sizes of the session memory.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimits {
    pub max_sessions: usize,
    /// Product views kept per session (the most recent).
    pub clicks_per_session: usize,
    /// A session not heard from for this long may be forgotten.
    pub idle: Duration,
    /// Products whose category is remembered.
    pub max_categories: usize,
}

#[derive(Default)]
struct Recent {
    clicks: VecDeque<String>,
    cart: Vec<String>,
    purchased: Vec<String>,
    touched: Option<Instant>,
}

/// One session as remembered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionView {
    /// Product views, oldest first.
    pub clicks: Vec<String>,
    pub cart: Vec<String>,
    pub purchased: Vec<String>,
}

pub struct SessionMemory {
    limits: MemoryLimits,
    sessions: Mutex<HashMap<String, Recent>>,
    categories: Mutex<HashMap<String, String>>,
}

/// Whether `event` is something the memory keeps (so ingestion keeps only those).
pub fn relevant(event: &Event) -> bool {
    matches!(
        event.payload,
        Payload::ProductView(_)
            | Payload::AddToCart(_)
            | Payload::RemoveFromCart(_)
            | Payload::Purchase(_)
    )
}

impl SessionMemory {
    pub fn new(limits: MemoryLimits) -> Self {
        SessionMemory {
            limits,
            sessions: Mutex::new(HashMap::new()),
            categories: Mutex::new(HashMap::new()),
        }
    }

    /// Folds accepted events in, in order.
    pub fn observe<'e>(&self, events: impl IntoIterator<Item = &'e Event>) {
        let now = Instant::now();
        let (Ok(mut sessions), Ok(mut categories)) = (self.sessions.lock(), self.categories.lock())
        else {
            return;
        };
        for event in events {
            let key = event.session_id.as_deref().unwrap_or(&event.anonymous_id);
            let mut remember_category = |product: &retailmind_schema::Product| {
                if let Some(category) = &product.category {
                    if categories.len() < self.limits.max_categories
                        || categories.contains_key(&product.product_id)
                    {
                        categories.insert(product.product_id.clone(), category.clone());
                    }
                }
            };
            let recent = match &event.payload {
                Payload::ProductView(product) => {
                    remember_category(product);
                    let recent = sessions.entry(key.to_owned()).or_default();
                    recent.clicks.push_back(product.product_id.clone());
                    while recent.clicks.len() > self.limits.clicks_per_session {
                        recent.clicks.pop_front();
                    }
                    recent
                }
                Payload::AddToCart(line) => {
                    remember_category(&line.product);
                    let recent = sessions.entry(key.to_owned()).or_default();
                    if !recent.cart.contains(&line.product.product_id) {
                        recent.cart.push(line.product.product_id.clone());
                    }
                    recent
                }
                Payload::RemoveFromCart(line) => {
                    let recent = sessions.entry(key.to_owned()).or_default();
                    recent.cart.retain(|p| *p != line.product.product_id);
                    recent
                }
                Payload::Purchase(purchase) => {
                    let recent = sessions.entry(key.to_owned()).or_default();
                    for line in &purchase.items {
                        recent.cart.retain(|p| *p != line.product.product_id);
                        if !recent.purchased.contains(&line.product.product_id) {
                            recent.purchased.push(line.product.product_id.clone());
                        }
                    }
                    recent
                }
                _ => continue,
            };
            recent.touched = Some(now);
        }
        if sessions.len() > self.limits.max_sessions {
            self.forget(&mut sessions, now);
        }
    }

    /// Forgets idle sessions, then, if still too many, the least recently touched half.
    fn forget(&self, sessions: &mut HashMap<String, Recent>, now: Instant) {
        sessions.retain(|_, r| r.touched.is_some_and(|t| now - t < self.limits.idle));
        if sessions.len() > self.limits.max_sessions {
            let mut touched: Vec<Instant> = sessions.values().filter_map(|r| r.touched).collect();
            touched.sort_unstable();
            let cut = touched[touched.len() / 2];
            sessions.retain(|_, r| r.touched.is_some_and(|t| t > cut));
        }
    }

    /// What is remembered of `session`.
    pub fn view(&self, session: &str) -> SessionView {
        let Ok(sessions) = self.sessions.lock() else {
            return SessionView::default();
        };
        sessions
            .get(session)
            .map(|r| SessionView {
                clicks: r.clicks.iter().cloned().collect(),
                cart: r.cart.clone(),
                purchased: r.purchased.clone(),
            })
            .unwrap_or_default()
    }

    /// The category of `product`, when a product event named it.
    pub fn category_of(&self, product: &str) -> Option<String> {
        self.categories.lock().ok()?.get(product).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, session: &str, properties: serde_json::Value) -> Event {
        serde_json::from_value(serde_json::json!({
            "event_id": uuid::Uuid::now_v7(), "type": kind, "anonymous_id": "a-1",
            "session_id": session, "timestamp": 1_764_064_800_000i64,
            "context": {"page": {"url": "https://shop.example/"}}, "properties": properties
        }))
        .expect("a valid event")
    }

    fn limits(max_sessions: usize) -> MemoryLimits {
        MemoryLimits {
            max_sessions,
            clicks_per_session: 2,
            idle: Duration::from_secs(1800),
            max_categories: 10,
        }
    }

    #[test]
    fn keeps_recent_clicks_cart_and_purchases_per_session() {
        let memory = SessionMemory::new(limits(10));
        let line = |p: &str| serde_json::json!({"product_id": p, "quantity": 1});
        memory.observe(&[
            event(
                "product_view",
                "s-1",
                serde_json::json!({"product_id": "p-1", "category": "shoes"}),
            ),
            event(
                "product_view",
                "s-1",
                serde_json::json!({"product_id": "p-2"}),
            ),
            event(
                "product_view",
                "s-1",
                serde_json::json!({"product_id": "p-3"}),
            ),
            event("add_to_cart", "s-1", line("p-2")),
            event("add_to_cart", "s-1", line("p-3")),
            event("remove_from_cart", "s-1", line("p-3")),
            event(
                "purchase",
                "s-1",
                serde_json::json!({"order_id": "o", "revenue_minor": 1,
                "currency": "EUR", "items": [line("p-2")]}),
            ),
            event(
                "product_view",
                "s-2",
                serde_json::json!({"product_id": "p-9"}),
            ),
        ]);
        let s1 = memory.view("s-1");
        assert_eq!(s1.clicks, ["p-2", "p-3"]);
        assert!(s1.cart.is_empty(), "bought items leave the cart");
        assert_eq!(s1.purchased, ["p-2"]);
        assert_eq!(memory.view("s-2").clicks, ["p-9"]);
        assert_eq!(memory.category_of("p-1").as_deref(), Some("shoes"));
    }

    #[test]
    fn stays_bounded() {
        let memory = SessionMemory::new(limits(4));
        for i in 0..20 {
            let p = serde_json::json!({"product_id": "p"});
            memory.observe(&[event("product_view", &format!("s-{i}"), p)]);
        }
        let kept = memory.sessions.lock().unwrap().len();
        assert!(kept <= 4, "{kept} sessions kept");
        assert_eq!(memory.view("s-19").clicks, ["p"], "the latest is kept");
    }
}
