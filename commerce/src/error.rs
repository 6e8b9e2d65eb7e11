use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::order::OrderStatus;

/// One refused field of an order or a traits document: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// JSON path of the field (`lines[1].quantity`, `payment.card_last4`).
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Error)]
pub enum CommerceError {
    #[error("the request is invalid: {}", list(.0))]
    Invalid(Vec<Problem>),
    #[error("order {order_id} cannot go from {from} to {to}")]
    IllegalTransition {
        order_id: String,
        from: OrderStatus,
        to: OrderStatus,
    },
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("Idempotency-Key {key:?} was used before for a different request")]
    IdempotencyKeyReused { key: String },
    #[error(
        "order {order_id:?} exists already with different content (under another Idempotency-Key)"
    )]
    OrderExists { order_id: String },
    #[error("the order database failed: {0}")]
    Database(#[from] sqlx::Error),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{} {}", p.field, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = CommerceError> = std::result::Result<T, E>;
