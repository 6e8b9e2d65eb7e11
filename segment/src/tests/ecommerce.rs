//! Segment's e-commerce spec names → our shop kinds, and exact money.

use retailmind_schema::{CartLine, Checkout, Custom, Payload, Product, Purchase, Search};
use serde_json::json;

use super::{fields, ok, reason, track, T, URL};
use crate::ecommerce::{minor_digits, to_minor, MoneyError};

#[test]
fn product_viewed_converts_price_exactly() {
    let e = ok(track(
        "Product Viewed",
        json!({"product_id": "42", "name": "Mug", "category": "Kitchen", "price": 19.99, "currency": "EUR"}),
    ));
    assert_eq!(
        e.payload,
        Payload::ProductView(Product {
            product_id: "42".into(),
            name: Some("Mug".into()),
            category: Some("Kitchen".into()),
            price_minor: Some(1999),
            currency: Some("EUR".into()),
        })
    );
    assert_eq!(e.timestamp, T);
    assert_eq!(e.anonymous_id, "a-1");
    assert_eq!(e.context.page.url, URL);
}

#[test]
fn money_follows_the_currency_digits() {
    assert_eq!(to_minor("19.99", 2), Ok(1999));
    assert_eq!(to_minor("0.1", 2), Ok(10));
    assert_eq!(to_minor("19.990", 2), Ok(1999), "trailing zeros are exact");
    assert_eq!(to_minor("1500", 0), Ok(1500));
    assert_eq!(to_minor("1.234", 3), Ok(1234));
    assert_eq!(to_minor("1e3", 2), Ok(100_000));
    assert_eq!(to_minor("1.5E-1", 2), Ok(15));
    assert_eq!(to_minor("-0", 2), Ok(0));
    // A sender's binary floating point error is rounded away (0.1 + 0.2, 19.99 * 2 + 3.75, and
    // 43.73 as a float read back to 17 digits)...
    assert_eq!(to_minor("0.30000000000000004", 2), Ok(30));
    assert_eq!(to_minor("43.730000000000004", 2), Ok(4373));
    assert_eq!(to_minor("43.729999999999997", 2), Ok(4373));
    assert_eq!(to_minor("0.99999999999", 2), Ok(100));
    assert_eq!(to_minor("1e-12", 2), Ok(0));
    assert_eq!(to_minor("1500.0000000001", 0), Ok(1500));
    // ...a real fraction of the minor unit is not.
    assert_eq!(to_minor("1500.5", 0), Err(MoneyError::TooPrecise));
    assert_eq!(to_minor("19.995", 2), Err(MoneyError::TooPrecise));
    assert_eq!(to_minor("19.99001", 2), Err(MoneyError::TooPrecise));
    assert_eq!(to_minor("19.9999", 2), Err(MoneyError::TooPrecise));
    assert_eq!(to_minor("0.001", 2), Err(MoneyError::TooPrecise));
    assert_eq!(to_minor("-1.00", 2), Err(MoneyError::Negative));
    assert_eq!(to_minor("1e400", 2), Err(MoneyError::TooLarge));
    assert_eq!(to_minor("99999999999999999", 2), Err(MoneyError::TooLarge));
    for bad in ["", "abc", "1.", ".5", "1,5", "1e", "--1"] {
        assert_eq!(to_minor(bad, 2), Err(MoneyError::NotANumber), "{bad:?}");
    }
    assert_eq!(minor_digits("JPY"), 0);
    assert_eq!(minor_digits("KWD"), 3);
    assert_eq!(minor_digits("EUR"), 2);
}

#[test]
fn prices_in_zero_and_three_decimal_currencies() {
    let jpy = ok(track(
        "Product Viewed",
        json!({"product_id": 7, "price": 1500, "currency": "jpy"}),
    ));
    let Payload::ProductView(p) = jpy.payload else {
        panic!("kind")
    };
    assert_eq!((p.product_id.as_str(), p.price_minor), ("7", Some(1500)));
    assert_eq!(p.currency.as_deref(), Some("JPY"), "upper-cased");
    let err = reason(
        track(
            "Product Viewed",
            json!({"product_id": "7", "price": 1500.5, "currency": "JPY"}),
        ),
        "properties.price",
    );
    assert!(err.contains("more decimals than JPY"), "{err}");
    let bhd = ok(track(
        "Product Viewed",
        json!({"product_id": "7", "price": "2.125", "currency": "BHD"}),
    ));
    assert!(matches!(
        bhd.payload,
        Payload::ProductView(Product {
            price_minor: Some(2125),
            ..
        })
    ));
}

#[test]
fn a_price_without_currency_is_refused() {
    let err = reason(
        track("Product Added", json!({"product_id": "42", "price": 5})),
        "properties.currency",
    );
    assert!(err.contains("no default currency"), "{err}");
    // Without a price no currency is needed.
    let e = ok(track("Product Added", json!({"product_id": "42"})));
    assert!(matches!(
        e.payload,
        Payload::AddToCart(CartLine { quantity: 1, .. })
    ));
}

/// A shop that sets its currency: amounts in messages that name none are in it, and a message
/// that names its own keeps it.
#[test]
fn a_shops_default_currency_stands_in_for_a_missing_one() {
    let options = crate::Options {
        default_currency: Some("SEK".into()),
    };
    let with_default = |msg: serde_json::Value| {
        let raw = super::raw(&msg);
        crate::convert(&raw, None, super::NOW, None, &options).expect("converts")
    };
    let viewed = with_default(track(
        "Product Viewed",
        json!({"product_id": "42", "price": 5}),
    ));
    let Payload::ProductView(product) = viewed.payload else {
        panic!("kind")
    };
    assert_eq!(
        (product.price_minor, product.currency.as_deref()),
        (Some(500), Some("SEK"))
    );
    let order = with_default(track(
        "Order Completed",
        json!({"order_id": "o-1", "total": 1299, "products": [{"product_id": "42", "price": 1299}]}),
    ));
    let Payload::Purchase(purchase) = order.payload else {
        panic!("kind")
    };
    assert_eq!(
        (purchase.revenue_minor, purchase.currency.as_str()),
        (129_900, "SEK")
    );
    let own = with_default(track(
        "Product Viewed",
        json!({"product_id": "42", "price": 5, "currency": "eur"}),
    ));
    let Payload::ProductView(product) = own.payload else {
        panic!("kind")
    };
    assert_eq!(product.currency.as_deref(), Some("EUR"));
}

#[test]
fn cart_events_carry_quantity() {
    let e = ok(track(
        "Product Removed",
        json!({"product_id": "42", "price": 3.5, "currency": "USD", "quantity": 3}),
    ));
    let Payload::RemoveFromCart(line) = e.payload else {
        panic!("kind")
    };
    assert_eq!((line.quantity, line.product.price_minor), (3, Some(350)));
    assert_eq!(
        fields(track(
            "Product Added",
            json!({"product_id": "42", "quantity": 0})
        )),
        ["properties.quantity"]
    );
    assert_eq!(
        fields(track(
            "Product Added",
            json!({"product_id": "42", "quantity": 1.5})
        )),
        ["properties.quantity"]
    );
}

#[test]
fn order_completed_is_a_purchase() {
    let e = ok(track(
        "Order Completed",
        json!({
            "order_id": "o-9", "total": 27.5, "revenue": 25.0, "currency": "EUR",
            "products": [
                {"product_id": "42", "price": 19.99, "quantity": 1},
                {"sku": "S-7", "name": "Tea", "price": 3.75, "quantity": 2},
            ],
        }),
    ));
    let item = |id: &str, name: Option<&str>, price, quantity| CartLine {
        product: Product {
            product_id: id.into(),
            name: name.map(Into::into),
            category: None,
            price_minor: Some(price),
            currency: Some("EUR".into()),
        },
        quantity,
    };
    assert_eq!(
        e.payload,
        Payload::Purchase(Purchase {
            order_id: "o-9".into(),
            revenue_minor: 2750,
            currency: "EUR".into(),
            items: vec![item("42", None, 1999, 1), item("S-7", Some("Tea"), 375, 2)],
        })
    );
}

#[test]
fn order_total_falls_back_to_revenue_then_the_lines() {
    let revenue = ok(track(
        "Order Completed",
        json!({"order_id": 1, "revenue": 10, "currency": "EUR"}),
    ));
    assert!(matches!(
        revenue.payload,
        Payload::Purchase(Purchase {
            revenue_minor: 1000,
            ..
        })
    ));
    let summed = ok(track(
        "Order Completed",
        json!({"order_id": "o", "currency": "EUR",
               "products": [{"product_id": "a", "price": 1.25, "quantity": 2}, {"product_id": "b", "price": 0.5}]}),
    ));
    assert!(matches!(
        summed.payload,
        Payload::Purchase(Purchase {
            revenue_minor: 300,
            ..
        })
    ));
    assert_eq!(
        fields(track("Order Completed", json!({"currency": "EUR"}))),
        ["properties.order_id", "properties.total"]
    );
    assert_eq!(
        fields(track(
            "Order Completed",
            json!({"order_id": "o", "total": 5})
        )),
        ["properties.currency"]
    );
}

#[test]
fn checkout_started_uses_value_and_cart_id() {
    let e = ok(track(
        "Checkout Started",
        json!({"order_id": "o-1", "value": 12, "revenue": 10, "currency": "CHF",
               "products": [{"product_id": "42", "quantity": 2}]}),
    ));
    assert_eq!(
        e.payload,
        Payload::CheckoutStarted(Checkout {
            cart_id: Some("o-1".into()),
            value_minor: 1200,
            currency: "CHF".into(),
            items: vec![CartLine {
                product: Product {
                    product_id: "42".into(),
                    ..Product::default()
                },
                quantity: 2,
            }],
        })
    );
}

#[test]
fn problems_in_products_name_the_segment_path() {
    let errs = fields(track(
        "Order Completed",
        json!({"order_id": "o", "total": 1, "currency": "EUR",
               "products": [{"product_id": "a", "price": -1}, {"price": 1.001}, "x"]}),
    ));
    assert_eq!(
        errs,
        [
            "properties.products[0].price",
            "properties.products[1].price",
            "properties.products[1].product_id",
            "properties.products[2]",
        ]
    );
}

#[test]
fn products_searched_is_a_search() {
    let e = ok(track("Products Searched", json!({"query": "blue mug"})));
    assert_eq!(
        e.payload,
        Payload::Search(Search {
            query: "blue mug".into(),
            results: None
        })
    );
    assert_eq!(
        fields(track("Products Searched", json!({}))),
        ["properties.query"]
    );
}

#[test]
fn names_match_ignoring_case_and_v1_names() {
    for name in ["product viewed", "Viewed Product"] {
        let e = ok(track(name, json!({"product_id": "1"})));
        assert_eq!(e.payload.kind(), "product_view", "{name}");
    }
    let e = ok(track(
        "Completed Order",
        json!({"order_id": "1", "total": 1, "currency": "EUR"}),
    ));
    assert_eq!(e.payload.kind(), "purchase");
}

#[test]
fn other_track_names_are_custom_events_with_their_properties() {
    let e = ok(track(
        "Newsletter Signed Up",
        json!({"list": "weekly", "nested": {"a": [1, 2]}, "price": 0.1}),
    ));
    assert_eq!(
        e.payload,
        Payload::Custom(Custom {
            name: "Newsletter Signed Up".into(),
            props: json!({"list": "weekly", "nested": {"a": [1, 2]}, "price": 0.1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
    );
    // Names are free text, as Segment's libraries send them, on one line.
    for name in [
        "Signed Up!",
        "Checkout → Payment (step 2)",
        "Clicked \"Buy\"",
    ] {
        let e = ok(track(name, json!({})));
        assert!(
            matches!(&e.payload, Payload::Custom(c) if c.name == name),
            "{name}: {:?}",
            e.payload
        );
    }
    assert_eq!(fields(track("Signed\nUp", json!({}))), ["event"]);
    let mut no_name = track("x", json!({}));
    no_name.as_object_mut().map(|m| m.remove("event"));
    assert_eq!(fields(no_name), ["event"]);
}
