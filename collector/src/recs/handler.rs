//! The handler: admit the caller like ingestion does, check the parameters, build the query from
//! the request, the session memory and the model, try the placement's strategies, answer.
//!
//! This instance's memory has the freshest view of a session (the batches it acknowledged a
//! moment ago); the model has what the processor folded from every instance's batches and keeps
//! across restarts. A session's clicks are the model's followed by the memory's that it does
//! not have yet; what the session bought comes from both. An order the shop's server sent names no session,
//! only the visitor (its anonymous id, or the customer id when it had none), so what was bought
//! under the request's anonymous id or user id is left out too.

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query as QueryParams;
use axum::Json;
use retailmind_recommend::{PageContext, Query};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::params::{Placement, RecsParams};
use crate::error::{CollectorError, ErrorBody};
use crate::handlers::Front;
use crate::metrics as m;

/// The answer of `GET /v1/recommendations`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RecommendationsResponse {
    /// New for every answer (UUIDv7); send it with impressions and clicks of these items so
    /// the lake can attribute them.
    pub recommendation_id: Uuid,
    /// The strategy that produced the items.
    pub strategy: String,
    pub placement: Placement,
    /// The version of the stored model answered from (0: none loaded yet).
    pub model_version: u64,
    /// Best first.
    pub items: Vec<RecommendedItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RecommendedItem {
    pub product_id: String,
    /// The strategy's score, higher is better; 0 for popularity fill.
    pub score: f64,
    /// Filled in from popularity, not from the strategy named.
    pub fallback: bool,
}

/// A session's clicks as the model holds them (up to its last save) followed by those this
/// instance remembers (its latest, from some point on) that the model does not have yet: where
/// the model's last clicks are the memory's first, they are the same clicks.
fn joined_clicks<'a>(stored: Vec<&'a str>, remembered: &'a [String]) -> Vec<&'a str> {
    let overlap = (0..=stored.len().min(remembered.len()))
        .rev()
        .find(|&k| {
            stored[stored.len() - k..]
                .iter()
                .zip(&remembered[..k])
                .all(|(a, b)| *a == b.as_str())
        })
        .unwrap_or(0);
    let mut clicks = stored;
    clicks.extend(remembered[overlap..].iter().map(String::as_str));
    clicks
}

/// Ranked products for a shopper and a placement.
#[utoipa::path(
    get,
    path = "/v1/recommendations",
    params(RecsParams),
    responses(
        (status = 200, description = "Ranked products", body = RecommendationsResponse),
        (status = 400, description = "A parameter is missing or invalid; `error.field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown key", body = ErrorBody),
        (status = 403, description = "Origin not allowed for this key", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ),
    tag = "recommendations"
)]
pub async fn get_recommendations(
    front: Front,
    params: Result<QueryParams<RecsParams>, QueryRejection>,
) -> Result<Json<RecommendationsResponse>, CollectorError> {
    let started = Instant::now();
    let meta = front.meta();
    front.admit(None, &meta, crate::config::KeyKind::Publishable)?;
    let state = front.state();
    let QueryParams(params) = params.map_err(|e| CollectorError::InvalidParameter {
        field: "query",
        reason: e.body_text(),
    })?;
    let request = params.check(state.limits.max_id_len)?;
    let recs = &state.recommender;
    let loaded = recs.live.current();
    let model = &loaded.model;
    let session = recs.memory.view(&request.session_id);
    let (stored_clicks, mut purchased) = model
        .session_history(&request.session_id)
        .unwrap_or_default();
    let buyers = [
        Some(request.anonymous_id.as_str()),
        request.user_id.as_deref(),
    ];
    let buyers: Vec<&str> = buyers.into_iter().flatten().collect();
    let remembered: Vec<_> = buyers.iter().map(|b| recs.memory.view(b)).collect();
    for buyer in &buyers {
        if let Some((_, bought)) = model.session_history(buyer) {
            purchased.extend(bought);
        }
    }
    purchased.extend(
        [&session]
            .into_iter()
            .chain(&remembered)
            .flat_map(|view| view.purchased.iter().map(String::as_str)),
    );
    purchased.sort_unstable();
    purchased.dedup();

    let clicks = joined_clicks(stored_clicks, &session.clicks);
    let page = PageContext::new(
        clicks,
        request.context_item.as_deref(),
        request.placement == Placement::Product,
    );
    let mut cart: Vec<&str> = request.cart.iter().map(String::as_str).collect();
    cart.extend(session.cart.iter().map(String::as_str));
    let category = request.category.as_deref();
    let in_category = |product: &str| {
        category.is_some_and(|wanted| match recs.memory.category_of(product) {
            Some(remembered) => remembered == wanted,
            None => model.category_of(product) == Some(wanted),
        })
    };
    let query = Query {
        session_id: Some(&request.session_id),
        clicks: &page.clicks,
        time: None,
        context_item: page.context_item,
        cart: &cart,
        purchased: &purchased,
        allow: category.map(|_| &in_category as &dyn Fn(&str) -> bool),
    };

    let strategies = recs.strategies(request.placement);
    let mut answer = None;
    for (i, strategy) in strategies.iter().enumerate() {
        let items = loaded.model.recommend(strategy.as_ref(), &query, request.n);
        let last = i + 1 == strategies.len();
        if last || items.iter().any(|s| !s.fallback) {
            answer = Some((strategy.name().to_owned(), items));
            break;
        }
    }
    let (strategy, items) = answer.unwrap_or_default();
    let response = RecommendationsResponse {
        recommendation_id: Uuid::now_v7(),
        placement: request.placement,
        model_version: loaded.version,
        items: items
            .into_iter()
            .map(|s| RecommendedItem {
                product_id: s.item.to_owned(),
                score: s.score,
                fallback: s.fallback,
            })
            .collect(),
        strategy,
    };
    let placement = request.placement.as_str();
    metrics::histogram!(m::RECOMMENDATION_SECONDS, "placement" => placement)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::RECOMMENDATIONS, "placement" => placement, "strategy" => response.strategy.clone())
        .increment(1);
    Ok(Json(response))
}

#[cfg(test)]
mod tests {
    use super::joined_clicks;

    fn owned(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_models_clicks_then_the_memorys_newer_ones() {
        // A restarted instance: the model has the start, the memory only what came since.
        assert_eq!(
            joined_clicks(vec!["a", "b"], &owned(&["c"])),
            ["a", "b", "c"]
        );
        // The memory saw the end of what the model has, and more.
        assert_eq!(
            joined_clicks(vec!["a", "b", "c"], &owned(&["b", "c", "d"])),
            ["a", "b", "c", "d"]
        );
        // The model is up to date, or the memory has nothing, or the model nothing.
        assert_eq!(
            joined_clicks(vec!["a", "b"], &owned(&["a", "b"])),
            ["a", "b"]
        );
        assert_eq!(joined_clicks(vec!["a"], &[]), ["a"]);
        assert_eq!(joined_clicks(vec![], &owned(&["a", "a"])), ["a", "a"]);
    }
}
