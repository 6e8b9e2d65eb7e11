//! Orders and customer profiles over HTTP, for the shop's backend (secret keys only):
//!
//! - `POST /v1/transactions`: an order, once per `Idempotency-Key` (default: the order id).
//!   Stored first, then written to the stream as a purchase event whose id derives from the
//!   order id; 201 for a new order, 200 with `Idempotent-Replayed: true` for a repeat. If the
//!   stream cannot take the event, the answer is 503 and a retry with the same key sends it.
//! - `GET /v1/transactions/{order_id}`, `POST /v1/transactions/{order_id}/status` (also
//!   `PATCH /v1/transactions/{order_id}`): the order with its status history; status updates.
//! - `GET /v1/customers/{id}`, `PUT /v1/customers/{id}/traits`, `DELETE /v1/customers/{id}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use retailmind_commerce::order::{
    check_purchase_event, decode_order, decode_status_change, purchase_event,
    too_old_for_the_stream,
};
use retailmind_commerce::profile::decode_traits;
use retailmind_commerce::{
    CommerceError, CommerceStore, CustomerProfile, Forgotten, NewOrder, Order, Problem,
};
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::StreamRecord;

use crate::config::KeyKind;
use crate::error::{CollectorError, ErrorBody};
use crate::handlers::Front;

/// The id in a route's path. axum's own refusal (an id that is not UTF-8 once percent-decoded)
/// is plain text; this one is the service's JSON error, naming the path.
pub struct IdInPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdInPath {
    type Rejection = CollectorError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(IdInPath(id)),
            Err(refused) => Err(CollectorError::InvalidParameter {
                field: "path",
                reason: refused.body_text(),
            }),
        }
    }
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

fn store(front: &Front) -> Result<Arc<dyn CommerceStore>, CollectorError> {
    front
        .state()
        .commerce
        .clone()
        .ok_or(CollectorError::CommerceNotConfigured)
}

/// Admits a secret key and returns the store.
fn admit(front: &Front) -> Result<Arc<dyn CommerceStore>, CollectorError> {
    let meta = front.meta();
    front.admit(None, &meta, KeyKind::Secret)?;
    store(front)
}

/// 200 with the value, or 404 naming what was looked for.
fn found<T>(value: Option<T>, what: &'static str, id: String) -> Result<Json<T>, CollectorError> {
    value
        .map(Json)
        .ok_or_else(|| CommerceError::NotFound { what, id }.into())
}

/// Place an order (server-to-server).
#[utoipa::path(
    post,
    path = "/v1/transactions",
    request_body(content = NewOrder, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "The same key with the same order answers the stored order; default: the order id")),
    responses(
        (status = 201, description = "Stored and written to the stream", body = Order),
        (status = 200, description = "Stored before (header Idempotent-Replayed: true)", body = Order),
        (status = 401, description = "Missing or unknown key", body = ErrorBody),
        (status = 403, description = "Not a secret key", body = ErrorBody),
        (status = 409, description = "The order id exists with other content", body = ErrorBody),
        (status = 422, description = "Invalid order (every problem listed) or Idempotency-Key reused for another order", body = ErrorBody),
        (status = 503, description = "Database or stream unavailable; retry with the same key", body = ErrorBody),
    )
)]
pub async fn post_transaction(front: Front, body: Body) -> Result<Response, CollectorError> {
    let store = admit(&front)?;
    let bytes = front.body(body).await?;
    let now = now_ms();
    let order = decode_order(&bytes, now)?;
    let state = front.state();
    let problems = check_purchase_event(&order, now, &state.commerce_page_url, &state.limits);
    if !problems.is_empty() {
        return Err(CommerceError::Invalid(problems).into());
    }
    let key = match front.header(IDEMPOTENCY_KEY)? {
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN => {
            return Err(CollectorError::InvalidHeader {
                field: "Idempotency-Key",
                reason: format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
            })
        }
        Some(k) => k.to_owned(),
        None => format!("order:{}", order.order_id),
    };
    let placed = store.place_order(&key, &order, now).await?;
    if !placed.emitted {
        emit(&front, &placed.order).await?;
        store.mark_emitted(&placed.order.order.order_id).await?;
    }
    let outcome = if placed.replayed {
        "replayed"
    } else {
        "stored"
    };
    metrics::counter!(crate::metrics::ORDERS, "outcome" => outcome).increment(1);
    let status = if placed.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(placed.order)).into_response();
    if placed.replayed {
        response.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The order's purchase event onto the stream (its id is the same on every attempt).
async fn emit(front: &Front, order: &Order) -> Result<(), CollectorError> {
    let state = front.state();
    let placed_at = order.order.placed_at.unwrap_or(order.created_at);
    let now = now_ms();
    if too_old_for_the_stream(placed_at, now, &state.limits) {
        tracing::info!(
            order_id = %order.order.order_id,
            placed_at,
            "order older than the stream takes events: stored without a purchase event"
        );
        metrics::counter!(crate::metrics::ORDERS_WITHOUT_EVENT).increment(1);
        return Ok(());
    }
    let mut event = purchase_event(&order.order, placed_at, &state.commerce_page_url);
    event.received_at = Some(now);
    let data = serde_json::to_vec(&event).expect("an event serializes");
    let record = StreamRecord {
        partition_key: event.anonymous_id.clone(),
        data: data.into(),
    };
    // Given up on, the event is not marked as sent: the retry with the same key sends it again,
    // under the same id.
    state.append_in_time(&state.sink, record).await?;
    state.recommender.memory.observe([&event]);
    Ok(())
}

/// An order with its status history.
#[utoipa::path(
    get,
    path = "/v1/transactions/{order_id}",
    params(("order_id" = String, Path, description = "The shop's order number")),
    responses(
        (status = 200, body = Order),
        (status = 404, description = "No such order", body = ErrorBody),
    )
)]
pub async fn get_transaction(
    front: Front,
    IdInPath(order_id): IdInPath,
) -> Result<Json<Order>, CollectorError> {
    let store = admit(&front)?;
    found(store.order(&order_id).await?, "order", order_id)
}

/// Move an order to a new status (paid, shipped, delivered, cancelled, refunded).
#[utoipa::path(
    post,
    path = "/v1/transactions/{order_id}/status",
    params(("order_id" = String, Path, description = "The shop's order number")),
    request_body(content = retailmind_commerce::StatusChange, content_type = "application/json"),
    responses(
        (status = 200, description = "The order after the change (a repeat changes nothing)", body = Order),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not allowed from the current status", body = ErrorBody),
        (status = 422, description = "Invalid update", body = ErrorBody),
    )
)]
pub async fn post_transaction_status(
    front: Front,
    IdInPath(order_id): IdInPath,
    body: Body,
) -> Result<Json<Order>, CollectorError> {
    let store = admit(&front)?;
    let bytes = front.body(body).await?;
    let now = now_ms();
    let change = decode_status_change(&bytes, now)?;
    let order = store.change_status(&order_id, &change, now).await?;
    metrics::counter!(crate::metrics::ORDER_STATUS_CHANGES, "status" => change.status.as_str())
        .increment(1);
    Ok(Json(order))
}

/// A customer's profile: identifiers, traits, loyalty, lifetime value, last visit.
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}",
    params(("customer_id" = String, Path, description = "The shop's customer id")),
    responses(
        (status = 200, body = CustomerProfile),
        (status = 404, description = "Nothing is known of this customer", body = ErrorBody),
    )
)]
pub async fn get_customer(
    front: Front,
    IdInPath(customer_id): IdInPath,
) -> Result<Json<CustomerProfile>, CollectorError> {
    let store = admit(&front)?;
    found(store.customer(&customer_id).await?, "customer", customer_id)
}

/// Replace a customer's traits (`email` is stored only as its SHA-256).
#[utoipa::path(
    put,
    path = "/v1/customers/{customer_id}/traits",
    params(("customer_id" = String, Path, description = "The shop's customer id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "The profile after the change", body = CustomerProfile),
        (status = 422, description = "Invalid traits", body = ErrorBody),
    )
)]
pub async fn put_customer_traits(
    front: Front,
    IdInPath(customer_id): IdInPath,
    body: Body,
) -> Result<Json<CustomerProfile>, CollectorError> {
    let store = admit(&front)?;
    let bytes = front.body(body).await?;
    if customer_id.is_empty() || customer_id.len() > 128 {
        return Err(CommerceError::Invalid(vec![Problem::new(
            "customer_id",
            "must be 1 to 128 bytes",
        )])
        .into());
    }
    let traits = decode_traits(&bytes)?;
    let now = now_ms();
    store.put_traits(&customer_id, traits, now).await?;
    let profile = store
        .customer(&customer_id)
        .await?
        .ok_or(CommerceError::NotFound {
            what: "customer",
            id: customer_id,
        })?;
    Ok(Json(profile))
}

/// Forget a customer: the profile, its links and sessions go; orders stay for the books without
/// the link; the lake deletion is queued.
#[utoipa::path(
    delete,
    path = "/v1/customers/{customer_id}",
    params(("customer_id" = String, Path, description = "The shop's customer id")),
    responses(
        (status = 200, description = "Forgotten; the lake deletion is queued", body = Forgotten),
        (status = 404, description = "Nothing is known of this customer", body = ErrorBody),
    )
)]
pub async fn delete_customer(
    front: Front,
    IdInPath(customer_id): IdInPath,
) -> Result<Json<Forgotten>, CollectorError> {
    let store = admit(&front)?;
    // Sessions first: if this fails the profile is still there to find them again on a retry.
    let profile = store
        .customer(&customer_id)
        .await?
        .ok_or_else(|| CommerceError::NotFound {
            what: "customer",
            id: customer_id.clone(),
        })?;
    if let Some(sessions) = &front.state().sessions {
        // The customer's own id too: server-side events without a browser are kept under it.
        for visitor in profile
            .anonymous_ids
            .iter()
            .chain(std::iter::once(&customer_id))
        {
            sessions
                .forget_visitor(visitor)
                .await
                .map_err(CollectorError::SinkUnavailable)?;
        }
    }
    let forgotten = store.forget(&customer_id, now_ms()).await?;
    tracing::info!(request_id = %forgotten.request_id, "customer forgotten");
    Ok(Json(forgotten))
}
