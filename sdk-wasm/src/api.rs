//! The JavaScript API, exactly what `retailmind_sdk.js` exports. Thin: decode the arguments,
//! call the tracker, turn its errors into thrown `Error`s.
//!
//! Shop objects use the event's wire field names (`product_id`, `price_minor`, `quantity`, …),
//! the same as in the stored events; only `init`'s config is camelCase.

use js_sys::Promise;
use retailmind_schema::{CartLine, Checkout, PageView, Payload, Product, Purchase, Search};
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::config::{Config, RawConfig};
use crate::delivery;
use crate::tracker::{self, TrackerError};

/// Starts tracking: `init({collectorUrl, writeKey?, batchSize?, flushIntervalMs?,
/// autocapture?: {pageViews?, clicks?}})`. Throws an `Error` naming the bad field. Calling it
/// again applies the new config and keeps the queued events.
#[wasm_bindgen]
pub fn init(config: JsValue) -> Result<(), JsError> {
    if !config.is_object() {
        return Err(JsError::new(
            "retailmind config: init(config) needs an object like {collectorUrl: 'https://…'}",
        ));
    }
    let raw: RawConfig = config_from_js(config)?;
    let config = Config::from_raw(raw).map_err(|e| JsError::new(&e.to_string()))?;
    tracker::start(config).map_err(js_error)
}

/// A page view, optionally with the shop's page category (`home`, `product`, …).
#[wasm_bindgen]
pub fn page(category: Option<String>) -> Result<(), JsError> {
    record(Payload::PageView(PageView { category }))
}

/// A custom event named by the shop, with any JSON-like properties.
#[wasm_bindgen]
pub fn track(name: String, props: JsValue) -> Result<(), JsError> {
    if name.trim().is_empty() {
        return Err(JsError::new("retailmind: track(name) needs a name"));
    }
    let props = if props.is_undefined() || props.is_null() {
        serde_json::Map::new()
    } else {
        from_js(props, "retailmind track props")?
    };
    record(Payload::Custom(retailmind_schema::Custom { name, props }))
}

/// `{product_id, name?, category?, price_minor?, currency?}`
#[wasm_bindgen(js_name = productView)]
pub fn product_view(product: JsValue) -> Result<(), JsError> {
    record(Payload::ProductView(from_js::<Product>(
        product,
        "retailmind product",
    )?))
}

/// `{product_id, …, quantity}`
#[wasm_bindgen(js_name = addToCart)]
pub fn add_to_cart(line: JsValue) -> Result<(), JsError> {
    record(Payload::AddToCart(from_js::<CartLine>(
        line,
        "retailmind cart line",
    )?))
}

#[wasm_bindgen(js_name = removeFromCart)]
pub fn remove_from_cart(line: JsValue) -> Result<(), JsError> {
    record(Payload::RemoveFromCart(from_js::<CartLine>(
        line,
        "retailmind cart line",
    )?))
}

/// `{cart_id?, value_minor, currency, items: [cart line, …]}`
#[wasm_bindgen(js_name = checkoutStarted)]
pub fn checkout_started(checkout: JsValue) -> Result<(), JsError> {
    record(Payload::CheckoutStarted(from_js::<Checkout>(
        checkout,
        "retailmind checkout",
    )?))
}

/// `{order_id, revenue_minor, currency, items: [cart line, …]}`
#[wasm_bindgen]
pub fn purchase(order: JsValue) -> Result<(), JsError> {
    record(Payload::Purchase(from_js::<Purchase>(
        order,
        "retailmind purchase",
    )?))
}

#[wasm_bindgen]
pub fn search(query: String, results: Option<u32>) -> Result<(), JsError> {
    record(Payload::Search(Search { query, results }))
}

/// Ties this browser's events, from now on and on later page loads, to the shop's customer id.
#[wasm_bindgen]
pub fn identify(user_id: String) -> Result<(), JsError> {
    tracker::identify(&user_id).map_err(js_error)
}

/// Sends everything queued; resolves once the collector acknowledged it, rejects with the
/// reason otherwise (the events then stay queued, except those the collector refused).
#[wasm_bindgen]
pub fn flush() -> Promise {
    future_to_promise(async {
        delivery::flush()
            .await
            .map(|()| JsValue::UNDEFINED)
            .map_err(|reason| js_sys::Error::new(&reason).into())
    })
}

/// How many events the collector has not acknowledged yet.
#[wasm_bindgen]
pub fn queued() -> u32 {
    u32::try_from(tracker::queued()).unwrap_or(u32::MAX)
}

fn record(payload: Payload) -> Result<(), JsError> {
    tracker::record(payload).map_err(js_error)
}

fn js_error(e: TrackerError) -> JsError {
    JsError::new(&e.to_string())
}

/// Decodes a shop object (product, cart line, …). serde's messages name a missing field; a
/// wrong type is named by the caller's `what`.
fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| JsError::new(&[what, ": ", serde_message(&e.to_string())].concat()))
}

/// Decodes `init`'s config, naming the offending key on failure (`retailmind config:
/// `batchSize` invalid type …`). The path tracking is kept to this one type: it costs code size
/// for every type it wraps.
fn config_from_js(value: JsValue) -> Result<RawConfig, JsError> {
    let deserializer = serde_wasm_bindgen::Deserializer::from(value);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = serde_message(&inner);
        let message = if path == "." {
            ["retailmind config: ", inner].concat()
        } else {
            ["retailmind config: `", &path, "` ", inner].concat()
        };
        JsError::new(&message)
    })
}

/// serde-wasm-bindgen's errors print as JS errors do (`Error: invalid type …`); the prefix would
/// be repeated in the `Error` we throw.
fn serde_message(message: &str) -> &str {
    message.strip_prefix("Error: ").unwrap_or(message)
}
