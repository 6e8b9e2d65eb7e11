//! The query parameters of `GET /v1/recommendations`, checked into a [`RecsRequest`]; every
//! refusal names the parameter and why.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CollectorError;

/// Most items one request may ask for.
pub const MAX_N: usize = 50;
/// Items asked for when `n` is absent.
pub const DEFAULT_N: usize = 10;
/// Most cart items one request may list.
pub const MAX_CART_ITEMS: usize = 100;

/// Where on the storefront the recommendations are shown; each has its strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Home,
    Product,
    Cart,
    PostPurchase,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Home => "home",
            Placement::Product => "product",
            Placement::Cart => "cart",
            Placement::PostPurchase => "post_purchase",
        }
    }
}

impl FromStr for Placement {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "home" => Ok(Placement::Home),
            "product" => Ok(Placement::Product),
            "cart" => Ok(Placement::Cart),
            "post_purchase" => Ok(Placement::PostPurchase),
            _ => Err(()),
        }
    }
}

/// The parameters as they arrive: all text, all optional, so that checking them is ours and
/// every refusal says which one is wrong. An unknown one is refused (naming it and the known
/// ones): `limit=5` or `categroy=shoes` would otherwise answer ten unfiltered items.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecsParams {
    /// The shopper's anonymous id (required).
    pub anonymous_id: Option<String>,
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// The tracker's current session id (required).
    pub session_id: Option<String>,
    /// `home`, `product`, `cart` or `post_purchase` (required).
    pub placement: Option<String>,
    /// The product on screen (product page).
    pub context_item: Option<String>,
    /// Product ids in the cart, comma separated.
    pub cart: Option<String>,
    /// Only products of this category (as sent in product events).
    pub category: Option<String>,
    /// How many items, 1 to 50; 10 when absent.
    pub n: Option<String>,
    /// The publishable key (also accepted as `X-Write-Key`).
    pub key: Option<String>,
}

/// A checked request.
#[derive(Clone, Debug, PartialEq)]
pub struct RecsRequest {
    pub anonymous_id: String,
    pub user_id: Option<String>,
    pub session_id: String,
    pub placement: Placement,
    pub context_item: Option<String>,
    pub cart: Vec<String>,
    pub category: Option<String>,
    pub n: usize,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CollectorError {
    CollectorError::InvalidParameter {
        field,
        reason: reason.into(),
    }
}

/// An id: not empty, not longer than `max_len` bytes, no control characters.
fn id(field: &'static str, value: &str, max_len: usize) -> Result<String, CollectorError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(invalid(
            field,
            format!("is {} bytes, at most {max_len} allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

fn required(
    field: &'static str,
    value: Option<String>,
    max_len: usize,
) -> Result<String, CollectorError> {
    let value = value.ok_or_else(|| invalid(field, "is required"))?;
    id(field, &value, max_len)
}

fn optional(
    field: &'static str,
    value: Option<String>,
    max_len: usize,
) -> Result<Option<String>, CollectorError> {
    value.map(|v| id(field, &v, max_len)).transpose()
}

impl RecsParams {
    /// Checks every parameter; ids may be at most `max_id_len` bytes.
    pub fn check(self, max_id_len: usize) -> Result<RecsRequest, CollectorError> {
        let anonymous_id = required("anonymous_id", self.anonymous_id, max_id_len)?;
        let user_id = optional("user_id", self.user_id, max_id_len)?;
        let session_id = required("session_id", self.session_id, max_id_len)?;
        let placement = self
            .placement
            .ok_or_else(|| invalid("placement", "is required"))?;
        let placement = placement.parse().map_err(|()| {
            invalid(
                "placement",
                format!("{placement:?} is not one of home, product, cart, post_purchase"),
            )
        })?;
        let context_item = optional("context_item", self.context_item, max_id_len)?;
        let cart = match self.cart.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => {
                let items: Vec<&str> = list.split(',').collect();
                if items.len() > MAX_CART_ITEMS {
                    return Err(invalid(
                        "cart",
                        format!(
                            "lists {} items, at most {MAX_CART_ITEMS} allowed",
                            items.len()
                        ),
                    ));
                }
                items
                    .into_iter()
                    .map(|item| id("cart", item.trim(), max_id_len))
                    .collect::<Result<_, _>>()?
            }
        };
        let category = optional("category", self.category, max_id_len)?;
        let n = match self.n.as_deref() {
            None => DEFAULT_N,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_N).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "n",
                        format!("{n:?} is not a whole number from 1 to {MAX_N}"),
                    ))
                }
            },
        };
        Ok(RecsRequest {
            anonymous_id,
            user_id,
            session_id,
            placement,
            context_item,
            cart,
            category,
            n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> RecsParams {
        RecsParams {
            anonymous_id: Some("a-1".into()),
            session_id: Some("s-1".into()),
            placement: Some("cart".into()),
            ..RecsParams::default()
        }
    }

    fn refused_field(p: RecsParams) -> &'static str {
        match p.check(20) {
            Err(CollectorError::InvalidParameter { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_lists() {
        let r = RecsParams {
            cart: Some("p-1, p-2".into()),
            ..params()
        }
        .check(20)
        .unwrap();
        assert_eq!(r.n, DEFAULT_N);
        assert_eq!(r.placement, Placement::Cart);
        assert_eq!(r.cart, ["p-1", "p-2"]);
    }

    #[test]
    fn every_refusal_names_its_parameter() {
        let missing_anon = RecsParams {
            anonymous_id: None,
            ..params()
        };
        assert_eq!(refused_field(missing_anon), "anonymous_id");
        let missing_session = RecsParams {
            session_id: None,
            ..params()
        };
        assert_eq!(refused_field(missing_session), "session_id");
        for bad in ["0", "51", "ten", "-1"] {
            let p = RecsParams {
                n: Some(bad.into()),
                ..params()
            };
            assert_eq!(refused_field(p), "n", "n={bad}");
        }
        let placement = RecsParams {
            placement: Some("footer".into()),
            ..params()
        };
        assert_eq!(refused_field(placement), "placement");
        let cart = RecsParams {
            cart: Some("p-1,,p-2".into()),
            ..params()
        };
        assert_eq!(refused_field(cart), "cart");
        let long = RecsParams {
            context_item: Some("x".repeat(21)),
            ..params()
        };
        assert_eq!(refused_field(long), "context_item");
    }
}
