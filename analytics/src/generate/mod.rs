//! A deterministic shop (same seed, same events) for the tests and the benchmark: visitors with
//! sessions from several traffic sources who view products, follow recommendations, fill carts,
//! check out and buy (optionally some in a second currency, and some orders reported twice, as
//! shops do); and the raw lake objects the processor would have written for them, built
//! in memory or, for a large shop, streamed to disk ([`RawLakeWriter`]).

mod raw;

pub use raw::{raw_objects, write_local, RawLake, RawLakeWriter};

use retailmind_schema::{
    CartLine, Checkout, Context, Custom, Event, Page, PageView, Payload, Product, Purchase, Search,
    Utm,
};
use serde_json::json;

use crate::day::day_start_ms;

/// SplitMix64: small, fast and the same everywhere; good enough for made-up shoppers.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// As [`Rng::chance`], but draws nothing when `p` is zero: a shop option left at zero
    /// leaves the rest of the shop as it was.
    fn chance_if(&mut self, p: f64) -> bool {
        p > 0.0 && self.chance(p)
    }
}

#[derive(Clone, Debug)]
pub struct ShopOptions {
    pub seed: u64,
    /// First day (`YYYY-MM-DD`); sessions fall on `days` days from it.
    pub start_day: String,
    pub days: u32,
    pub visitors: usize,
    pub products: usize,
    /// Each visitor comes back for 1 to this many sessions.
    pub sessions_per_visitor: u32,
    /// Share of orders the shop reports twice: the thank-you page reloaded a little later
    /// sends a second purchase event (a new event id) for the same order.
    pub reported_twice: f64,
    /// Share of visitors who shop in pounds (`GBP`) rather than euros.
    pub pound_shoppers: f64,
}

impl Default for ShopOptions {
    fn default() -> Self {
        ShopOptions {
            seed: 42,
            start_day: "2024-11-01".into(),
            days: 7,
            visitors: 300,
            products: 40,
            sessions_per_visitor: 3,
            reported_twice: 0.0,
            pound_shoppers: 0.0,
        }
    }
}

const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)",
];
const CATEGORIES: [&str; 4] = ["wine", "cheese", "bread", "oil"];
const SHOP: &str = "https://shop.example";

struct Visit<'a> {
    rng: &'a mut Rng,
    anonymous_id: String,
    user_id: Option<String>,
    session_id: String,
    at: i64,
    utm: Option<Utm>,
    referrer: Option<String>,
    agent: &'static str,
    currency: &'static str,
    reported_twice: f64,
    events: Vec<Event>,
}

impl Visit<'_> {
    fn emit(&mut self, url: String, payload: Payload) {
        self.at += 5_000 + self.rng.below(55_000) as i64;
        let mut random = [0u8; 10];
        for b in &mut random {
            *b = self.rng.below(256) as u8;
        }
        let event_id =
            uuid::Builder::from_unix_timestamp_millis(self.at as u64, &random).into_uuid();
        let first = self.events.is_empty();
        self.events.push(Event {
            event_id,
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
            session_id: Some(self.session_id.clone()),
            timestamp: self.at,
            received_at: Some(self.at + 200 + self.rng.below(3_000) as i64),
            context: Context {
                page: Page {
                    url,
                    referrer: if first {
                        self.referrer.clone()
                    } else {
                        Some(SHOP.into())
                    },
                    title: None,
                },
                utm: if first { self.utm.clone() } else { None },
                user_agent: Some(self.agent.into()),
                ..Context::default()
            },
            payload,
        });
    }
}

fn product(i: usize, currency: &str) -> Product {
    Product {
        product_id: format!("P{:04}", 1000 + i),
        name: Some(format!("Product {i}")),
        category: Some(CATEGORIES[i % CATEGORIES.len()].into()),
        price_minor: Some(500 + (i as i64 * 731) % 9_500),
        currency: Some(currency.into()),
    }
}

/// The shop's events, in no particular order.
pub fn shop(options: &ShopOptions) -> Vec<Event> {
    visitors(options).flatten().collect()
}

/// The shop one visitor at a time: the same events as [`shop`], in the same order, for a shop
/// too large to hold in memory at once.
pub fn visitors(options: &ShopOptions) -> Visitors {
    Visitors {
        rng: Rng::new(options.seed),
        start: day_start_ms(&options.start_day).unwrap_or(0),
        days: u64::from(options.days.max(1)),
        products: options.products.max(4),
        sessions_per_visitor: u64::from(options.sessions_per_visitor.max(1)),
        reported_twice: options.reported_twice,
        pound_shoppers: options.pound_shoppers,
        next: 0,
        visitors: options.visitors,
    }
}

/// See [`visitors`]: yields the events of each visitor's sessions.
#[derive(Clone, Debug)]
pub struct Visitors {
    rng: Rng,
    start: i64,
    days: u64,
    products: usize,
    sessions_per_visitor: u64,
    reported_twice: f64,
    pound_shoppers: f64,
    next: usize,
    visitors: usize,
}

impl Iterator for Visitors {
    type Item = Vec<Event>;

    fn next(&mut self) -> Option<Vec<Event>> {
        if self.next >= self.visitors {
            return None;
        }
        let v = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        let mut events = Vec::new();
        let anonymous_id = format!("a-{v:06}");
        let user_id = rng.chance(0.4).then(|| format!("c-{v:06}"));
        let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize];
        let currency = if rng.chance_if(self.pound_shoppers) {
            "GBP"
        } else {
            "EUR"
        };
        let sessions = 1 + rng.below(self.sessions_per_visitor);
        for k in 0..sessions {
            let day = rng.below(self.days) as i64;
            let (utm, referrer) = match rng.below(4) {
                0 => (Some(("google", "cpc")), None),
                1 => (Some(("newsletter", "email")), None),
                2 => (
                    None,
                    Some("https://www.facebook.com/groups/food".to_owned()),
                ),
                _ => (None, None),
            };
            let mut visit = Visit {
                anonymous_id: anonymous_id.clone(),
                user_id: user_id.clone(),
                session_id: format!("s-{v:06}-{k}"),
                at: self.start + day * 86_400_000 + rng.below(86_000_000) as i64,
                utm: utm.map(|(source, medium)| Utm {
                    source: Some(source.into()),
                    medium: Some(medium.into()),
                    campaign: Some("autumn".into()),
                    ..Utm::default()
                }),
                referrer,
                agent,
                currency,
                reported_twice: self.reported_twice,
                events: Vec::new(),
                rng: &mut *rng,
            };
            one_session(&mut visit, self.products, &format!("o-{v:06}-{k}"));
            events.append(&mut visit.events);
        }
        Some(events)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.visitors - self.next;
        (left, Some(left))
    }
}

fn one_session(visit: &mut Visit<'_>, products: usize, order_id: &str) {
    visit.emit(
        format!("{SHOP}/"),
        Payload::PageView(PageView {
            category: Some("home".into()),
            ..PageView::default()
        }),
    );
    let mut cart: Vec<CartLine> = Vec::new();
    if visit.rng.chance(0.05) {
        // Straight into the cart from a listing, without a product view first.
        let p = product(visit.rng.below(products as u64) as usize, visit.currency);
        let line = CartLine {
            product: p,
            quantity: 1,
        };
        visit.emit(format!("{SHOP}/list"), Payload::AddToCart(line.clone()));
        cart.push(line);
    }
    if visit.rng.chance(0.15) {
        visit.emit(
            format!("{SHOP}/search"),
            Payload::Search(Search {
                query: "olive".into(),
                results: Some(3),
            }),
        );
    }
    let views = 1 + visit.rng.below(4);
    for _ in 0..views {
        let p = product(visit.rng.below(products as u64) as usize, visit.currency);
        view_and_maybe_add(visit, p, &mut cart);
        if visit.rng.chance(0.3) {
            let recommendation_id =
                uuid::Uuid::from_u64_pair(visit.rng.next_u64(), visit.rng.next_u64()).to_string();
            let shown: Vec<Product> = (0..4)
                .map(|_| product(visit.rng.below(products as u64) as usize, visit.currency))
                .collect();
            let placement = if visit.rng.chance(0.5) {
                "product"
            } else {
                "home"
            };
            let strategy = if visit.rng.chance(0.5) {
                "co_view"
            } else {
                "popular"
            };
            visit.emit(
                format!("{SHOP}/p"),
                custom(
                    "recommendation_impression",
                    json!({"recommendation_id": recommendation_id, "placement": placement,
                           "strategy": strategy,
                           "product_ids": shown.iter().map(|p| p.product_id.clone()).collect::<Vec<_>>()}),
                ),
            );
            if visit.rng.chance(0.4) {
                let position = visit.rng.below(4) as usize;
                let p = shown[position].clone();
                visit.emit(
                    format!("{SHOP}/p"),
                    custom(
                        "recommendation_click",
                        json!({"recommendation_id": recommendation_id, "product_id": p.product_id,
                               "position": position, "placement": placement}),
                    ),
                );
                view_and_maybe_add(visit, p, &mut cart);
            }
        }
    }
    if cart.is_empty() || !visit.rng.chance(0.5) {
        return;
    }
    let value: i64 = cart
        .iter()
        .map(|l| l.product.price_minor.unwrap_or(0) * i64::from(l.quantity))
        .sum();
    visit.emit(
        format!("{SHOP}/checkout"),
        Payload::CheckoutStarted(Checkout {
            cart_id: Some(format!("cart-{order_id}")),
            value_minor: value,
            currency: visit.currency.into(),
            items: cart.clone(),
        }),
    );
    if visit.rng.chance(0.6) {
        let purchase = Payload::Purchase(Purchase {
            order_id: order_id.into(),
            revenue_minor: value,
            currency: visit.currency.into(),
            items: cart,
        });
        visit.emit(format!("{SHOP}/thanks"), purchase.clone());
        if visit.rng.chance_if(visit.reported_twice) {
            visit.emit(format!("{SHOP}/thanks"), purchase);
        }
    }
}

fn view_and_maybe_add(visit: &mut Visit<'_>, p: Product, cart: &mut Vec<CartLine>) {
    let url = format!("{SHOP}/p/{}", p.product_id);
    visit.emit(url.clone(), Payload::ProductView(p.clone()));
    if visit.rng.chance(0.3) {
        let line = CartLine {
            product: p,
            quantity: 1 + visit.rng.below(3) as u32,
        };
        visit.emit(url, Payload::AddToCart(line.clone()));
        cart.push(line);
    }
}

fn custom(name: &str, props: serde_json::Value) -> Payload {
    Payload::Custom(Custom {
        name: name.into(),
        props: match props {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    })
}
