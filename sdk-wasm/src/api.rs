//! The JavaScript API, exactly what `retailmind_sdk.js` exports. Thin: read the arguments,
//! call the tracker, turn its errors into thrown `Error`s.
//!
//! Shop objects use the event's wire field names (`product_id`, `price_minor`, `quantity`, …),
//! the same as in the stored events; only `init`'s config is camelCase. They are read field by
//! field (`glue::get`) into the schema's types, not with serde, which would cost the wasm build
//! more than the rest of the tracker.

use js_sys::{Array, Promise};
use retailmind_schema::{CartLine, Checkout, Product, Purchase, Search};
use wasm_bindgen::prelude::*;

use crate::config::{Config, RawConfig};
use crate::text::cat;
use crate::tracker::{self, TrackerError};
use crate::{autocapture, delivery, glue, json, wire};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** `init`'s settings. Only `collectorUrl` is required. */
export interface RetailMindConfig {
  /** Where the collector listens, e.g. `https://c.shop.example`. */
  collectorUrl: string;
  /** The shop's publishable write key, sent as `?key=`. */
  writeKey?: string;
  /** Events per batch (1–500, default 20). */
  batchSize?: number;
  /** How often waiting events are sent, in ms (100–3600000, default 1000). */
  flushIntervalMs?: number;
  /** Inactivity that ends a session, in ms (default 1800000, 30 minutes). */
  sessionTimeoutMs?: number;
  /** Share of browsers tracked, 0–1 (default 1), decided once per browser. */
  sampleRate?: number;
  /** Store and send nothing until `setConsent(true)` (default false). */
  requireConsent?: boolean;
  /** Treat Do-Not-Track and Global Privacy Control as an opt-out (default false). */
  respectDoNotTrack?: boolean;
  autocapture?: {
    /** Page views at init, on SPA navigations and on back/forward-cache restores (default true). */
    pageViews?: boolean;
    /** Clicks on links and buttons (default true). Elements tagged `data-rm-event` are
     * recorded either way: the shop asked for those events. */
    clicks?: boolean;
    /** A `page_engagement` event with engaged time and scroll depth per page (default false). */
    engagement?: boolean;
  };
}

/** A product; prices are integer minor units (cents). */
export interface Product {
  product_id: string;
  name?: string;
  category?: string;
  price_minor?: number;
  /** ISO 4217, e.g. `EUR`. */
  currency?: string;
}

export interface CartLine extends Product {
  quantity: number;
}

export interface Checkout {
  cart_id?: string;
  value_minor: number;
  currency: string;
  items?: CartLine[];
}

export interface Purchase {
  order_id: string;
  revenue_minor: number;
  currency: string;
  items?: CartLine[];
}

/** JSON-like properties of a custom event. */
export type Properties = Record<string, unknown>;

/** What `recommendations()` asks the collector for. */
export interface RecommendationsOptions {
  /** Where they are shown; each place has its own strategy. */
  placement: 'home' | 'product' | 'cart' | 'post_purchase';
  /** The product on screen (left out of the answer). */
  contextItem?: string;
  /** Product ids in the cart (left out of the answer). */
  cart?: string[];
  /** Only products of this category. */
  category?: string;
  /** How many, 1-50 (default 10). */
  n?: number;
}

/** The collector's answer. Track impressions and clicks with `recommendation_id`. */
export interface Recommendations {
  recommendation_id: string;
  strategy: string;
  items: { product_id: string; score: number; fallback: boolean }[];
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "RetailMindConfig")]
    pub type ConfigArg;
    #[wasm_bindgen(typescript_type = "Product")]
    pub type ProductArg;
    #[wasm_bindgen(typescript_type = "CartLine")]
    pub type CartLineArg;
    #[wasm_bindgen(typescript_type = "Checkout")]
    pub type CheckoutArg;
    #[wasm_bindgen(typescript_type = "Purchase")]
    pub type PurchaseArg;
    #[wasm_bindgen(typescript_type = "Properties")]
    pub type PropsArg;
    #[wasm_bindgen(typescript_type = "RecommendationsOptions")]
    pub type RecommendationsArg;
    #[wasm_bindgen(typescript_type = "Promise<Recommendations>")]
    pub type RecommendationsPromise;
}

/// Starts tracking. Throws an `Error` naming the bad field. Calling it again applies the new
/// config and keeps the queued events.
#[wasm_bindgen]
pub fn init(config: ConfigArg) -> Result<(), JsError> {
    let config: &JsValue = &config;
    if !config.is_object() {
        return Err(JsError::new(
            "retailmind config: init(config) needs an object like {collectorUrl: 'https://…'}",
        ));
    }
    let what = "retailmind config";
    let auto = field(config, "autocapture");
    let auto_flag = |key: &'static str| -> Result<Option<bool>, JsError> {
        if auto.is_object() {
            opt_bool(&auto, key, what)
        } else {
            Ok(None)
        }
    };
    let raw = RawConfig {
        collector_url: opt_string(config, "collectorUrl", what)?,
        write_key: opt_string(config, "writeKey", what)?,
        batch_size: opt_number(config, "batchSize", what)?,
        flush_interval_ms: opt_number(config, "flushIntervalMs", what)?,
        session_timeout_ms: opt_number(config, "sessionTimeoutMs", what)?,
        sample_rate: opt_number(config, "sampleRate", what)?,
        require_consent: opt_bool(config, "requireConsent", what)?,
        respect_do_not_track: opt_bool(config, "respectDoNotTrack", what)?,
        page_views: auto_flag("pageViews")?,
        clicks: auto_flag("clicks")?,
        engagement: auto_flag("engagement")?,
    };
    let config = Config::from_raw(raw).map_err(|e| JsError::new(&e.message()))?;
    let interval = config.flush_interval_ms;
    let first = tracker::start(config).map_err(js_error)?;
    if first {
        autocapture::install();
    }
    autocapture::start_timer(interval);
    autocapture::check_page();
    // Events an earlier page (or a closed tab) left in the queue.
    delivery::kick(false);
    Ok(())
}

/// A page view, optionally with the shop's page category (`home`, `product`, …).
#[wasm_bindgen]
pub fn page(category: Option<String>) -> Result<(), JsError> {
    record("page_view", category.as_deref().unwrap_or_default())
}

/// A custom event named by the shop, with JSON-like properties.
#[wasm_bindgen]
pub fn track(name: &str, props: Option<PropsArg>) -> Result<(), JsError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(JsError::new("retailmind: track(name) needs a name"));
    }
    let props = props.map_or(JsValue::UNDEFINED, Into::into);
    record("custom", &wire::custom(name, &props_json(&props)?))
}

/// `{product_id, name?, category?, price_minor?, currency?}`
#[wasm_bindgen(js_name = productView)]
pub fn product_view(product: ProductArg) -> Result<(), JsError> {
    let p = read_product(&product, "retailmind product")?;
    record("product_view", &wire::product(&p))
}

/// `{product_id, …, quantity}`
#[wasm_bindgen(js_name = addToCart)]
pub fn add_to_cart(line: CartLineArg) -> Result<(), JsError> {
    record_line("add_to_cart", &line)
}

#[wasm_bindgen(js_name = removeFromCart)]
pub fn remove_from_cart(line: CartLineArg) -> Result<(), JsError> {
    record_line("remove_from_cart", &line)
}

/// A cart line event of `kind`; one function for both kinds.
#[inline(never)]
fn record_line(kind: &str, line: &JsValue) -> Result<(), JsError> {
    let l = read_line(line, "retailmind cart line")?;
    record(kind, &wire::cart_line(&l))
}

/// `{cart_id?, value_minor, currency, items: [cart line, …]}`
#[wasm_bindgen(js_name = checkoutStarted)]
pub fn checkout_started(checkout: CheckoutArg) -> Result<(), JsError> {
    let what = "retailmind checkout";
    let c: &JsValue = &checkout;
    let checkout = Checkout {
        cart_id: opt_string(c, "cart_id", what)?,
        value_minor: req_int(c, "value_minor", what)?,
        currency: req_string(c, "currency", what)?,
        items: read_lines(c, what)?,
    };
    record("checkout_started", &wire::checkout(&checkout))
}

/// `{order_id, revenue_minor, currency, items: [cart line, …]}`
#[wasm_bindgen]
pub fn purchase(order: PurchaseArg) -> Result<(), JsError> {
    let what = "retailmind purchase";
    let o: &JsValue = &order;
    let purchase = Purchase {
        order_id: req_string(o, "order_id", what)?,
        revenue_minor: req_int(o, "revenue_minor", what)?,
        currency: req_string(o, "currency", what)?,
        items: read_lines(o, what)?,
    };
    record("purchase", &wire::purchase(&purchase))
}

#[wasm_bindgen]
pub fn search(query: String, results: Option<u32>) -> Result<(), JsError> {
    record("search", &wire::search(&Search { query, results }))
}

/// Ties this browser's events, from now on and on later page loads, to the shop's customer id.
/// `traits`, when given, are sent once as an `identify` custom event.
#[wasm_bindgen]
pub fn identify(user_id: &str, traits: Option<PropsArg>) -> Result<(), JsError> {
    tracker::identify(user_id).map_err(js_error)?;
    if let Some(traits) = traits {
        record("custom", &wire::custom("identify", &props_json(&traits)?))?;
    }
    Ok(())
}

/// Forgets the user id and starts a new anonymous id and session (call it at logout).
#[wasm_bindgen]
pub fn reset() -> Result<(), JsError> {
    tracker::reset().map_err(js_error)
}

/// Stops tracking in this browser, for good (remembered), and drops this page's unsent events.
#[wasm_bindgen(js_name = optOut)]
pub fn opt_out() -> Result<(), JsError> {
    tracker::set_opted_out(true).map_err(js_error)
}

/// Undoes `optOut()`.
#[wasm_bindgen(js_name = optIn)]
pub fn opt_in() -> Result<(), JsError> {
    tracker::set_opted_out(false).map_err(js_error)
}

/// The shopper's consent answer (remembered). With `requireConsent`, nothing is stored or sent
/// before `setConsent(true)`; `setConsent(false)` forgets what was held.
#[wasm_bindgen(js_name = setConsent)]
pub fn set_consent(granted: bool) -> Result<(), JsError> {
    tracker::set_consent(granted).map_err(js_error)
}

/// Sends everything queued (this tab's, other tabs' and earlier pages'); resolves once the
/// collector acknowledged it, rejects with the reason otherwise (the events then stay queued,
/// except those the collector refused).
#[wasm_bindgen]
pub fn flush() -> Promise {
    delivery::flush()
}

/// Product recommendations for this shopper and session from the collector. Rejects naming
/// a bad option, when tracking is off (the request would identify the shopper), or with the
/// collector's error.
#[wasm_bindgen]
pub fn recommendations(options: RecommendationsArg) -> RecommendationsPromise {
    let reject = |e: JsError| Promise::reject(&e.into()).unchecked_into();
    let options: &JsValue = &options;
    let what = "retailmind recommendations";
    // The request's parameters with a value, in this order: option name, query name.
    let mut values: Vec<(&str, String)> = Vec::new();
    for (i, (key, param)) in [
        ("placement", "placement"),
        ("contextItem", "context_item"),
        ("cart", "cart"),
        ("category", "category"),
        ("n", "n"),
    ]
    .into_iter()
    .enumerate()
    {
        let value = match i {
            2 => cart_ids(options),
            4 => opt_number(options, key, what).map(|n| n.map(|n| json::int_text(n as i64))),
            _ => opt_string(options, key, what),
        };
        match value {
            Ok(Some(v)) => values.push((param, v)),
            Ok(None) => {}
            Err(e) => return reject(e),
        }
    }
    match tracker::recommendations_url(&values) {
        Ok(Some(url)) => glue::get_json(&url).unchecked_into(),
        Ok(None) => reject(JsError::new(
            "retailmind: tracking is off (consent, opt-out or sampling); no recommendations asked",
        )),
        Err(e) => reject(js_error(e)),
    }
}

/// `options.cart`, an array of product ids, as `id,id,…` (what is not a string left out).
fn cart_ids(options: &JsValue) -> Result<Option<String>, JsError> {
    let cart = field(options, "cart");
    if cart.is_undefined() || cart.is_null() {
        return Ok(None);
    }
    if !Array::is_array(&cart) {
        return Err(JsError::new(
            "retailmind recommendations: cart must be an array of product ids",
        ));
    }
    let cart: Array = cart.unchecked_into();
    let mut ids = String::new();
    for i in 0..cart.length() {
        let Some(id) = cart.get(i).as_string() else {
            continue;
        };
        if !ids.is_empty() {
            ids.push(',');
        }
        ids.push_str(&id);
    }
    Ok(Some(ids))
}

/// How many of this page's events the collector has not acknowledged yet.
#[wasm_bindgen]
pub fn queued() -> u32 {
    u32::try_from(tracker::queued()).unwrap_or(u32::MAX)
}

/// This browser's anonymous id (empty before `init`).
#[wasm_bindgen(js_name = anonymousId)]
pub fn anonymous_id() -> String {
    tracker::anonymous_id().unwrap_or_default()
}

fn record(kind: &str, properties: &str) -> Result<(), JsError> {
    tracker::record(kind, properties).map_err(js_error)
}

fn js_error(e: TrackerError) -> JsError {
    JsError::new(&e.message())
}

fn field(obj: &JsValue, key: &str) -> JsValue {
    glue::get(obj, key)
}

fn refused(what: &str, key: &str, must: &str) -> JsError {
    JsError::new(&cat(&[what, ": `", key, "` ", must]))
}

fn opt_string(obj: &JsValue, key: &str, what: &str) -> Result<Option<String>, JsError> {
    let v = field(obj, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| refused(what, key, "must be a string"))
}

fn req_string(obj: &JsValue, key: &str, what: &str) -> Result<String, JsError> {
    opt_string(obj, key, what)?.ok_or_else(|| refused(what, key, "is required"))
}

fn opt_number(obj: &JsValue, key: &str, what: &str) -> Result<Option<f64>, JsError> {
    let v = field(obj, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_f64()
        .map(Some)
        .ok_or_else(|| refused(what, key, "must be a number"))
}

fn opt_bool(obj: &JsValue, key: &str, what: &str) -> Result<Option<bool>, JsError> {
    let v = field(obj, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_bool()
        .map(Some)
        .ok_or_else(|| refused(what, key, "must be true or false"))
}

/// Largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

fn opt_int(obj: &JsValue, key: &str, what: &str) -> Result<Option<i64>, JsError> {
    match opt_number(obj, key, what)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE => Ok(Some(n as i64)),
        Some(_) => Err(refused(what, key, "must be a whole number (minor units)")),
    }
}

fn req_int(obj: &JsValue, key: &str, what: &str) -> Result<i64, JsError> {
    opt_int(obj, key, what)?.ok_or_else(|| refused(what, key, "is required"))
}

fn read_product(obj: &JsValue, what: &str) -> Result<Product, JsError> {
    if !obj.is_object() {
        return Err(JsError::new(&cat(&[what, ": needs an object"])));
    }
    Ok(Product {
        product_id: req_string(obj, "product_id", what)?,
        name: opt_string(obj, "name", what)?,
        category: opt_string(obj, "category", what)?,
        price_minor: opt_int(obj, "price_minor", what)?,
        currency: opt_string(obj, "currency", what)?,
    })
}

fn read_line(obj: &JsValue, what: &str) -> Result<CartLine, JsError> {
    let product = read_product(obj, what)?;
    let quantity = req_int(obj, "quantity", what)?;
    let quantity =
        u32::try_from(quantity).map_err(|_| refused(what, "quantity", "must not be negative"))?;
    Ok(CartLine { product, quantity })
}

fn read_lines(obj: &JsValue, what: &str) -> Result<Vec<CartLine>, JsError> {
    let items = field(obj, "items");
    if items.is_undefined() || items.is_null() {
        return Ok(Vec::new());
    }
    if !Array::is_array(&items) {
        return Err(refused(what, "items", "must be an array of cart lines"));
    }
    // Read in place by index: no copy of the array, no iterator and `collect` into a `Result`.
    let items: Array = items.unchecked_into();
    let mut lines = Vec::new();
    for i in 0..items.length() {
        lines.push(read_line(&items.get(i), what)?);
    }
    Ok(lines)
}

/// The properties as JSON object text, printed by the browser's own `JSON.stringify`.
fn props_json(props: &JsValue) -> Result<String, JsError> {
    if props.is_undefined() || props.is_null() {
        return Ok("{}".into());
    }
    if !props.is_object() || Array::is_array(props) {
        return Err(JsError::new("retailmind: properties must be an object"));
    }
    glue::json(props)
        .ok_or_else(|| JsError::new("retailmind: properties cannot be written as JSON (a cycle?)"))
}
