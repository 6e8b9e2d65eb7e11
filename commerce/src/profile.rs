//! Customer profiles: one view of a customer from their orders, their identified visits and
//! the traits the shop sends. The rules here are pure; the store aggregates with them.

use retailmind_schema::{Event, Payload, Session};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::card::{contains_card_number, find_card_numbers, find_nul_characters};
use crate::error::{CommerceError, Problem, Result};
use crate::order::hex;

/// `GET /v1/customers/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerProfile {
    pub customer_id: String,
    /// Every anonymous id (browser) linked to the customer by an identify or an order.
    pub anonymous_ids: Vec<String>,
    /// The traits the shop sent, without `email` (kept only as `email_sha256`).
    #[schema(value_type = Object)]
    pub traits: Map<String, Value>,
    /// SHA-256 of the trimmed, lower-cased email address, for joining with the shop's CRM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    pub loyalty: Loyalty,
    /// First and last time the customer was seen (a visit or an order), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Orders that count as revenue (not cancelled or refunded).
    pub lifetime_orders: u64,
    /// Revenue and average order value per currency, largest revenue first.
    pub lifetime_value: Vec<CurrencyValue>,
    /// Categories the customer buys and looks at most, best first (at most 3).
    pub favourite_categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session: Option<SessionSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrencyValue {
    pub currency: String,
    pub orders: u64,
    pub revenue_minor: i64,
    pub average_order_minor: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Loyalty {
    pub tier: LoyaltyTier,
    /// One point per whole unit of currency spent on orders that count as revenue.
    pub points: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoyaltyTier {
    Bronze,
    Silver,
    Gold,
    Platinum,
}

impl Loyalty {
    /// Tiers at 500, 2,000 and 5,000 points.
    pub fn from_points(points: i64) -> Loyalty {
        let tier = match points {
            p if p >= 5_000 => LoyaltyTier::Platinum,
            p if p >= 2_000 => LoyaltyTier::Gold,
            p if p >= 500 => LoyaltyTier::Silver,
            _ => LoyaltyTier::Bronze,
        };
        Loyalty { tier, points }
    }

    /// Points for order totals (minor units, two decimals assumed; currencies without minor
    /// units earn at the same rate per hundred).
    pub fn points_for(total_minor: i64) -> i64 {
        total_minor.max(0) / 100
    }
}

/// The visit a customer made last, from the session store's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionSummary {
    pub session_id: String,
    pub anonymous_id: String,
    pub start: i64,
    pub end: i64,
    pub page_views: u32,
    pub events: u32,
    pub purchases: u32,
    /// In `currency`: the revenue of the session's orders in any other currency is not in it.
    pub revenue_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub device: String,
    pub entry_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
}

impl SessionSummary {
    pub fn of(session: &Session) -> SessionSummary {
        SessionSummary {
            session_id: session.session_id.clone(),
            anonymous_id: session.anonymous_id.clone(),
            start: session.start_ms,
            end: session.end_ms,
            page_views: session.page_views,
            events: session.event_count,
            purchases: session.purchases,
            revenue_minor: session.revenue_minor,
            currency: session.currency.clone(),
            device: session.device.clone(),
            entry_url: session.entry_url.clone(),
            utm_source: session.utm_source.clone(),
        }
    }
}

/// Traits as stored: the email replaced by its hash, nothing that looks like a card number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traits {
    pub values: Map<String, Value>,
    pub email_sha256: Option<String>,
}

const MAX_TRAITS: usize = 100;
const MAX_TRAIT_BYTES: usize = 1024;

/// Checks and normalises traits (from `PUT /v1/customers/{id}/traits` or an identify call).
/// `email` never stays: it becomes `email_sha256`. Values must be scalars or short lists of
/// scalars, so a profile stays a flat record the lake can carry.
pub fn normalise_traits(mut values: Map<String, Value>) -> Result<Traits> {
    let whole = Value::Object(values.clone());
    let mut problems = find_card_numbers(&whole);
    problems.extend(find_nul_characters(&whole));
    if values.len() > MAX_TRAITS {
        problems.push(Problem::new(
            "traits",
            format!("has more than {MAX_TRAITS} keys"),
        ));
    }
    let email = values.remove("email");
    let email_sha256 = match email {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if e.contains('@') => Some(email_hash(&e)),
        Some(_) => {
            problems.push(Problem::new("email", "must be an email address"));
            None
        }
    };
    for (key, value) in &values {
        let scalar = |v: &Value| !matches!(v, Value::Object(_) | Value::Array(_));
        let fits = match value {
            Value::Array(items) => items.len() <= 20 && items.iter().all(scalar),
            v => scalar(v),
        };
        if !fits {
            problems.push(Problem::new(
                key.clone(),
                "must be a string, number, boolean, null or a list of up to 20 of those",
            ));
        } else if value.to_string().len() > MAX_TRAIT_BYTES {
            problems.push(Problem::new(
                key.clone(),
                format!("is longer than {MAX_TRAIT_BYTES} bytes"),
            ));
        }
        if key.is_empty() || key.len() > 64 {
            problems.push(Problem::new(key.clone(), "keys are 1 to 64 bytes"));
        }
    }
    if problems.is_empty() {
        Ok(Traits {
            values,
            email_sha256,
        })
    } else {
        Err(CommerceError::Invalid(problems))
    }
}

/// Traits from an identify call, kept as far as they pass: Segment's own spec nests `address`
/// and `company`, so an object's keys become `address.city`, `company.name` (one level); a
/// trait that still does not pass [`normalise_traits`] is left out with its problem, and the
/// others are kept. A sender cannot fix what it sent long ago, and one bad trait must not cost
/// a customer's email and name. A problem's field never holds a card number (a key can), so
/// the problems can be logged.
pub fn identify_traits(props: &Map<String, Value>) -> (Traits, Vec<Problem>) {
    let mut flat: Vec<(String, &Value)> = Vec::new();
    for (key, value) in props {
        match value {
            Value::Object(inner) => {
                flat.extend(inner.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            _ => flat.push((key.clone(), value)),
        }
    }
    let mut values = Map::new();
    let mut problems = Vec::new();
    for (key, value) in flat {
        if key.ends_with(".email") {
            // Only the customer's own email is kept, and only as its hash.
            problems.push(Problem::new(
                key,
                "an email is kept only as `email`, hashed",
            ));
        } else if values.contains_key(&key) {
            problems.push(Problem::new(
                key,
                "is given both nested and flat; the nested one is kept",
            ));
        } else {
            values.insert(key, value.clone());
        }
    }
    let refused = match normalise_traits(values.clone()) {
        Ok(traits) => return (traits, redacted(problems)),
        Err(CommerceError::Invalid(refused)) => refused,
        Err(other) => vec![Problem::new("traits", other.to_string())],
    };
    // A problem is a key's own, or of a list item under it (`tags[2]`).
    let at_fault = |key: &str| {
        refused.iter().any(|p| {
            p.field == key
                || p.field
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('['))
        })
    };
    values.retain(|key, _| !at_fault(key));
    // Too many keys is no one key's fault: the email and the first others are kept.
    let email = values.remove("email");
    let room = MAX_TRAITS - usize::from(email.is_some());
    let mut values: Map<String, Value> = values.into_iter().take(room).collect();
    if let Some(email) = email {
        values.insert("email".into(), email);
    }
    problems.extend(refused);
    match normalise_traits(values) {
        Ok(traits) => (traits, redacted(problems)),
        Err(_) => (Traits::default(), redacted(problems)),
    }
}

/// `problems` with any field that holds a card number (a trait's key can) written over.
fn redacted(problems: Vec<Problem>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|p| match contains_card_number(&p.field) {
            true => Problem::new("(a key holding a card number)", p.reason),
            false => p,
        })
        .collect()
}

/// Traits from a request body (`PUT /v1/customers/{id}/traits`): a JSON object, normalised.
pub fn decode_traits(body: &[u8]) -> Result<Traits> {
    match crate::order::parse_json(body)? {
        Value::Object(map) => normalise_traits(map),
        _ => Err(CommerceError::Invalid(vec![Problem::new(
            "(body)",
            "must be a JSON object of traits",
        )])),
    }
}

/// SHA-256 (hex) of the trimmed, lower-cased address: the usual form for matching audiences.
pub fn email_hash(email: &str) -> String {
    hex(&Sha256::digest(email.trim().to_lowercase()))
}

/// What a batch of stream events and the sessions they changed tell about identified
/// customers. Every part is keyed so that applying the same facts twice changes nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VisitFacts {
    /// (customer id, anonymous id, when): the browser belongs to the customer.
    pub links: Vec<(String, String, i64)>,
    /// Traits from identify calls: (customer id, traits, when).
    pub traits: Vec<(String, Traits, i64)>,
    /// Product views of identified customers: (customer id, event id, category, when).
    pub category_views: Vec<(String, String, String, i64)>,
    /// Sessions of identified customers: (customer id, summary). A summary replaces every
    /// other row of its visitor that starts within its span: a session it absorbed (a late event
    /// joined them), or itself under another customer.
    pub sessions: Vec<(String, SessionSummary)>,
}

impl VisitFacts {
    /// Facts from events (in stream order) and the sessions that hold them as stored now.
    /// Identify traits that do not pass are left out one by one ([`identify_traits`]; the event
    /// itself was valid and is kept in the lake, whole); the link still counts.
    pub fn gather<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        sessions: impl IntoIterator<Item = &'a Session>,
    ) -> VisitFacts {
        let mut facts = VisitFacts::default();
        for event in events {
            let Some(user) = &event.user_id else { continue };
            let link = (user.clone(), event.anonymous_id.clone(), event.timestamp);
            if !facts
                .links
                .iter()
                .any(|(u, a, _)| u == &link.0 && a == &link.1)
            {
                facts.links.push(link);
            }
            match &event.payload {
                Payload::ProductView(p) => {
                    if let Some(category) = &p.category {
                        facts.category_views.push((
                            user.clone(),
                            event.event_id.to_string(),
                            category.clone(),
                            event.timestamp,
                        ));
                    }
                }
                Payload::Custom(c) if c.name == "identify" => {
                    let (traits, left_out) = identify_traits(&c.props);
                    if !left_out.is_empty() {
                        // Fields (never holding a card number) and reasons, never values.
                        let left_out: Vec<String> = left_out
                            .iter()
                            .map(|p| format!("{}: {}", p.field, p.reason))
                            .collect();
                        tracing::warn!(
                            event_id = %event.event_id,
                            ?left_out,
                            "identify traits left out of the customer profile"
                        );
                    }
                    if left_out.is_empty() || traits != Traits::default() {
                        facts.traits.push((user.clone(), traits, event.timestamp));
                    }
                }
                _ => {}
            }
        }
        for session in sessions {
            if let Some(user) = &session.user_id {
                facts
                    .sessions
                    .push((user.clone(), SessionSummary::of(session)));
            }
        }
        facts
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.traits.is_empty()
            && self.category_views.is_empty()
            && self.sessions.is_empty()
    }
}

/// Favourite categories from purchases (quantity, weighted 3) and product views (weight 1):
/// buying says more than looking. Ties go to the name, so the answer is stable.
pub fn favourite_categories(
    bought: &[(String, i64)],
    viewed: &[(String, i64)],
    n: usize,
) -> Vec<String> {
    let mut scores: Vec<(String, i64)> = Vec::new();
    let mut add = |category: &str, points: i64| match scores.iter_mut().find(|(c, _)| c == category)
    {
        Some((_, s)) => *s += points,
        None => scores.push((category.to_owned(), points)),
    };
    for (c, qty) in bought {
        add(c, qty * 3);
    }
    for (c, views) in viewed {
        add(c, *views);
    }
    scores.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scores.into_iter().take(n).map(|(c, _)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_email_leaves_only_its_hash() {
        let traits = json!({"email": "  Ada@Example.com ", "age_range": "25-34", "city": "Berlin"});
        let t = normalise_traits(traits.as_object().unwrap().clone()).unwrap();
        assert!(!t.values.contains_key("email"));
        assert_eq!(t.email_sha256, Some(email_hash("ada@example.com")));
        // sha256("ada@example.com"), computed outside Rust.
        assert_eq!(
            email_hash("ADA@example.com"),
            "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"
        );
        assert_eq!(t.values["city"], "Berlin");
    }

    #[test]
    fn an_identify_keeps_every_trait_that_passes_and_flattens_segments_objects() {
        let props = json!({
            "email": "ada@example.com",
            "name": "Ada",
            "address": {"city": "Berlin", "geo": {"lat": 52.5}},
            "company": {"name": "Analytical Engines"},
            "note": "card 4111 1111 1111 1111",
            "tags": [1, 2, {"x": 1}]
        });
        let (traits, left_out) = identify_traits(props.as_object().unwrap());
        assert_eq!(traits.email_sha256, Some(email_hash("ada@example.com")));
        assert_eq!(traits.values["name"], "Ada");
        assert_eq!(traits.values["address.city"], "Berlin");
        assert_eq!(traits.values["company.name"], "Analytical Engines");
        let kept: Vec<&str> = traits.values.keys().map(String::as_str).collect();
        assert_eq!(kept, ["address.city", "company.name", "name"]);
        let mut fields: Vec<&str> = left_out.iter().map(|p| p.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["address.geo", "note", "tags"]);
        assert!(
            left_out.iter().all(|p| !p.reason.contains("4111")),
            "no value in a reason: {left_out:?}"
        );

        let clean = json!({"name": "Bo", "plan": "pro"});
        let (traits, left_out) = identify_traits(clean.as_object().unwrap());
        assert!(left_out.is_empty());
        assert_eq!(
            traits,
            normalise_traits(clean.as_object().unwrap().clone()).unwrap()
        );

        let (traits, left_out) = identify_traits(json!({"email": 42}).as_object().unwrap());
        assert_eq!(traits, Traits::default());
        assert_eq!(left_out[0].field, "email");
    }

    #[test]
    fn what_an_identify_leaves_out_never_names_a_card_number_or_keeps_a_second_email() {
        let props = json!({
            "4111 1111 1111 1111": true,
            "plan": "pro",
            "plan.tier": [{"deep": 1}],
            "address": {"city": "Berlin"},
            "address.city": "Bonn",
            "company": {"email": "office@example.com"}
        });
        let (traits, left_out) = identify_traits(props.as_object().unwrap());
        let kept: Vec<&str> = traits.values.keys().map(String::as_str).collect();
        assert_eq!(
            kept,
            ["address.city", "plan"],
            "a sibling's problem is not plan's"
        );
        assert_eq!(traits.values["address.city"], "Berlin");
        assert_eq!(traits.email_sha256, None);
        let logged = format!("{left_out:?}");
        assert!(!logged.contains("4111"), "{logged}");
        let fields: Vec<&str> = left_out.iter().map(|p| p.field.as_str()).collect();
        for field in [
            "(a key holding a card number)",
            "plan.tier",
            "address.city",
            "company.email",
        ] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
    }

    #[test]
    fn nested_traits_and_card_numbers_are_refused_by_name() {
        let traits = json!({"address": {"street": "x"}, "note": "4111 1111 1111 1111"});
        let Err(CommerceError::Invalid(p)) = normalise_traits(traits.as_object().unwrap().clone())
        else {
            panic!("refused")
        };
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"note") && fields.contains(&"address"),
            "{fields:?}"
        );
    }

    #[test]
    fn traits_with_a_nul_character_are_refused_by_name() {
        let traits = json!({"city": "Ber\u{0}lin", "name": "Ada"});
        let Err(CommerceError::Invalid(p)) = normalise_traits(traits.as_object().unwrap().clone())
        else {
            panic!("refused")
        };
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["city"]);
    }

    #[test]
    fn tiers_follow_points() {
        assert_eq!(Loyalty::from_points(0).tier, LoyaltyTier::Bronze);
        assert_eq!(Loyalty::from_points(500).tier, LoyaltyTier::Silver);
        assert_eq!(Loyalty::from_points(1999).tier, LoyaltyTier::Silver);
        assert_eq!(Loyalty::from_points(2000).tier, LoyaltyTier::Gold);
        assert_eq!(Loyalty::from_points(5000).tier, LoyaltyTier::Platinum);
        assert_eq!(Loyalty::points_for(12_395), 123);
    }

    #[test]
    fn buying_weighs_more_than_looking() {
        let bought = [("shoes".to_owned(), 1)];
        let viewed = [("bags".to_owned(), 2), ("hats".to_owned(), 5)];
        assert_eq!(
            favourite_categories(&bought, &viewed, 3),
            ["hats", "shoes", "bags"]
        );
    }
}
