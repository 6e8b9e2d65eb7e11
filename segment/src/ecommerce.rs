//! Segment `track` calls → our shop event kinds, following Segment's e-commerce spec v2
//! (<https://segment.com/docs/connections/spec/ecommerce/v2/>), and exact money conversion.
//!
//! Money: Segment sends decimal major units (`19.99`); we store integer minor units of the currency
//! (`1999`). The conversion works on the number's original JSON text, never on a float, and refuses
//! a value with more (non-zero) decimals than the currency has, rather than rounding it.

use retailmind_schema::{CartLine, Checkout, Custom, Payload, Product, Purchase, Search};
use serde_json::{Map, Value};

use super::fields::{get, join, Obj, Problems};

/// Maps a `track` call named `event` with `properties` to a payload. Names are matched ignoring
/// ASCII case, and the legacy v1 names ("Viewed Product", "Completed Order", …) are accepted
/// too; every other name becomes a custom event carrying the properties (`custom_props`) as they
/// came.
pub(super) fn track(
    p: &mut Problems,
    event: &str,
    props: &Obj<'_>,
    custom_props: impl FnOnce() -> Map<String, Value>,
) -> Payload {
    let name = event.to_ascii_lowercase();
    match name.as_str() {
        "product viewed" | "viewed product" => {
            let currency = currency(p, props);
            let product = product(p, props, "properties", currency.as_deref());
            Payload::ProductView(Product {
                // A viewed product keeps the currency even without a price (schema allows it).
                currency: product.currency.clone().or(currency),
                ..product
            })
        }
        "product added" | "added product" => Payload::AddToCart(single_line(p, props)),
        "product removed" | "removed product" => Payload::RemoveFromCart(single_line(p, props)),
        "checkout started" | "started order" => Payload::CheckoutStarted(checkout(p, props)),
        "order completed" | "completed order" => Payload::Purchase(purchase(p, props)),
        "products searched" | "searched products" => {
            let query = p.text(props, "query", "properties.query");
            if query.is_none() {
                p.fail("properties.query", "is required for Products Searched");
            }
            Payload::Search(Search {
                query: query.unwrap_or_default(),
                results: None,
            })
        }
        _ => Payload::Custom(Custom {
            name: event.to_owned(),
            props: custom_props(),
        }),
    }
}

/// `properties.currency`, upper-cased (`eur` is a common slip and unambiguous).
fn currency(p: &mut Problems, props: &Obj<'_>) -> Option<String> {
    p.text(props, "currency", "properties.currency")
        .map(|c| c.trim().to_ascii_uppercase())
        .or_else(|| p.default_currency.clone())
}

/// Reports a missing currency once per message. None is assumed unless the shop set its own
/// (Segment's destinations differ on whether USD is implied, and a wrong currency corrupts
/// revenue silently).
fn require_currency(p: &mut Problems, currency: Option<&str>, what: &str) {
    let reported = p.found.iter().any(|e| e.field == "properties.currency");
    if currency.is_none() && !reported {
        p.fail(
            "properties.currency",
            format!(
                "is required when {what} (no default currency is assumed unless the collector \
                 sets segment.default_currency)"
            ),
        );
    }
}

/// One product at `path` (`properties` or `properties.products[3]`). Its id is `product_id`, or
/// the v1 spec's `id`, or `sku`.
fn product(p: &mut Problems, obj: &Obj<'_>, path: &str, currency: Option<&str>) -> Product {
    let product_id = p
        .id(obj, "product_id", &join(path, "product_id"))
        .or_else(|| p.id(obj, "id", &join(path, "id")))
        .or_else(|| p.id(obj, "sku", &join(path, "sku")));
    if product_id.is_none() {
        p.fail(join(path, "product_id"), "is required (or id, or sku)");
    }
    let price_path = join(path, "price");
    let price_minor = if get(obj, "price").is_some() && currency.is_none() {
        require_currency(p, None, &format!("{price_path} is given"));
        None
    } else {
        currency.and_then(|c| money(p, obj, "price", &price_path, c))
    };
    Product {
        product_id: product_id.unwrap_or_default(),
        name: p.text(obj, "name", &join(path, "name")),
        category: p.text(obj, "category", &join(path, "category")),
        currency: price_minor.and(currency.map(str::to_owned)),
        price_minor,
    }
}

/// A product with its quantity; Segment's quantity is optional and means 1 when absent.
fn line(p: &mut Problems, obj: &Obj<'_>, path: &str, currency: Option<&str>) -> CartLine {
    let product = product(p, obj, path, currency);
    let quantity_path = join(path, "quantity");
    let quantity = p.count(obj, "quantity", &quantity_path).unwrap_or(1);
    if quantity == 0 {
        p.fail(quantity_path, "must be at least 1");
    }
    CartLine { product, quantity }
}

fn single_line(p: &mut Problems, props: &Obj<'_>) -> CartLine {
    let currency = currency(p, props);
    line(p, props, "properties", currency.as_deref())
}

fn lines(p: &mut Problems, props: &Obj<'_>, currency: Option<&str>) -> Vec<CartLine> {
    p.objects(props, "products", "properties.products")
        .into_iter()
        .map(|(path, obj)| line(p, &obj, &path, currency))
        .collect()
}

/// The first of `keys` that is present, converted; else the sum of the lines when every line has
/// a price; else a problem reported at the first key.
fn total(
    p: &mut Problems,
    props: &Obj<'_>,
    keys: &[&str],
    items: &[CartLine],
    currency: &str,
    what: &str,
) -> i64 {
    if let Some(key) = keys.iter().find(|k| get(props, k).is_some()) {
        return money(p, props, key, &join("properties", key), currency).unwrap_or_default();
    }
    let sum = items.iter().try_fold(0i64, |acc, l| {
        l.product
            .price_minor?
            .checked_mul(i64::from(l.quantity))?
            .checked_add(acc)
    });
    match sum {
        Some(sum) if !items.is_empty() => sum,
        _ => {
            let others = keys[1..].join(", or ");
            p.fail(
                join("properties", keys[0]),
                format!("is required for {what} (or {others}, or a price on every product)"),
            );
            0
        }
    }
}

/// "Checkout Started": the cart value is `value`, else `revenue`, else `total`. Our `cart_id` is
/// Segment's `cart_id`, else its `order_id` (the spec's id for the checkout).
fn checkout(p: &mut Problems, props: &Obj<'_>) -> Checkout {
    let currency = currency(p, props);
    let items = lines(p, props, currency.as_deref());
    let cart_id = p
        .id(props, "cart_id", "properties.cart_id")
        .or_else(|| p.id(props, "order_id", "properties.order_id"));
    let value_minor = match currency.as_deref() {
        Some(c) => total(
            p,
            props,
            &["value", "revenue", "total"],
            &items,
            c,
            "a checkout",
        ),
        None => {
            require_currency(p, None, "a checkout is sent");
            0
        }
    };
    Checkout {
        cart_id,
        value_minor,
        currency: currency.unwrap_or_default(),
        items,
    }
}

/// "Order Completed": the order total is `total` (what the customer paid, after discounts), else
/// `revenue`, else `value`.
fn purchase(p: &mut Problems, props: &Obj<'_>) -> Purchase {
    let currency = currency(p, props);
    let items = lines(p, props, currency.as_deref());
    let order_id = p.id(props, "order_id", "properties.order_id");
    if order_id.is_none() {
        p.fail("properties.order_id", "is required for Order Completed");
    }
    let revenue_minor = match currency.as_deref() {
        Some(c) => total(
            p,
            props,
            &["total", "revenue", "value"],
            &items,
            c,
            "an order",
        ),
        None => {
            require_currency(p, None, "an order is sent");
            0
        }
    };
    Purchase {
        order_id: order_id.unwrap_or_default(),
        revenue_minor,
        currency: currency.unwrap_or_default(),
        items,
    }
}

/// The amount at `key` in minor units of `currency`. Accepts a JSON number or a string holding
/// one (`"19.99"`, which some shops send).
fn money(p: &mut Problems, obj: &Obj<'_>, key: &str, path: &str, currency: &str) -> Option<i64> {
    let raw = get(obj, key)?.get().trim();
    let text = if raw.starts_with('"') {
        match serde_json::from_str::<String>(raw) {
            Ok(s) => s,
            Err(_) => {
                p.fail(path, "must be a number");
                return None;
            }
        }
    } else {
        raw.to_owned()
    };
    match to_minor(text.trim(), minor_digits(currency)) {
        Ok(minor) => Some(minor),
        Err(MoneyError::NotANumber) => {
            p.fail(path, "must be a decimal number of major units, e.g. 19.99");
            None
        }
        Err(MoneyError::Negative) => {
            p.fail(path, "must not be negative");
            None
        }
        Err(MoneyError::TooPrecise) => {
            p.fail(
                path,
                format!(
                    "has more decimals than {currency} has ({}); only a float's rounding error \
                     (under a millionth of the smallest unit) is rounded",
                    minor_digits(currency)
                ),
            );
            None
        }
        Err(MoneyError::TooLarge) => {
            p.fail(path, "is too large");
            None
        }
    }
}

/// Leading zeros or nines of the digits below the minor unit that make them float noise: within
/// a millionth of a minor unit of a whole one.
const FLOAT_NOISE_DIGITS: usize = 6;

/// Whether `dropped` (digits below the minor unit, not all zero) is a float's error around a
/// whole minor unit: `Some(false)` just above it (rounded down), `Some(true)` just below the
/// next (rounded up), `None` for a real fraction.
fn float_noise(dropped: &str) -> Option<bool> {
    let lead = dropped.as_bytes().get(..FLOAT_NOISE_DIGITS)?;
    if lead.iter().all(|&b| b == b'0') {
        Some(false)
    } else if lead.iter().all(|&b| b == b'9') {
        Some(true)
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum MoneyError {
    NotANumber,
    Negative,
    TooPrecise,
    TooLarge,
}

/// Exact decimal text (JSON number grammar: `-`, digits, `.digits`, `e±digits`) → integer amount in
/// units of 10^-`digits`.
pub(super) fn to_minor(text: &str, digits: u32) -> Result<i64, MoneyError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let exp = rest[at + 1..].strip_prefix('+').unwrap_or(&rest[at + 1..]);
            // Bounded so a silly exponent cannot make us build a huge string below.
            let exp: i64 = exp.parse().map_err(|_| MoneyError::NotANumber)?;
            if exp.abs() > 400 {
                return Err(MoneyError::TooLarge);
            }
            (&rest[..at], exp)
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (mantissa.contains('.') && frac.is_empty())
    {
        return Err(MoneyError::NotANumber);
    }
    // value = digits × 10^(exponent − frac.len()); minor = value × 10^digits.
    let mut number: String = format!("{int}{frac}").trim_start_matches('0').to_owned();
    let shift = exponent - frac.len() as i64 + i64::from(digits);
    let mut round_up = false;
    if shift < 0 {
        let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
        // The dropped digits, as a fraction of one minor unit, padded with the leading zeros
        // the number's text did not spell.
        let padding = drop.saturating_sub(number.len());
        let kept = number.len() - drop.min(number.len());
        let dropped = format!(
            "{}{}",
            "0".repeat(padding.min(FLOAT_NOISE_DIGITS)),
            &number[kept..]
        );
        if dropped.bytes().any(|b| b != b'0') {
            // Binary floating point arithmetic in the sender (19.99 * 2 + 3.75 is
            // 43.730000000000004 in JavaScript and Python) is off by far less than a millionth
            // of a minor unit; anything larger is a real fraction, which is not rounded.
            match float_noise(&dropped) {
                Some(up) => round_up = up,
                None => return Err(MoneyError::TooPrecise),
            }
        }
        number.truncate(kept);
    } else if !number.is_empty() {
        number.extend(std::iter::repeat_n('0', shift as usize));
    }
    let minor = if number.is_empty() {
        0
    } else if number.len() > 18 {
        return Err(MoneyError::TooLarge);
    } else {
        number.parse::<i64>().map_err(|_| MoneyError::TooLarge)?
    };
    let minor = minor + i64::from(round_up);
    if negative && minor != 0 {
        return Err(MoneyError::Negative);
    }
    Ok(minor)
}

/// Decimal places of an ISO 4217 currency (the standard's "minor unit"); 2 for all not listed.
pub(super) fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}
