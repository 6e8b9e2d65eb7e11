//! The wire: JSON bodies made by the browser's own `JSON.stringify`, posted with `fetch`.
//!
//! No serde_json here: serde-wasm-bindgen builds the JS value and the browser prints it, which
//! keeps JSON formatting code out of the wasm.

use js_sys::{Object, Promise, Reflect, JSON};
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response, Window};

/// JSON text of `value`. `json_compatible` so that i64 timestamps become numbers, not BigInts
/// (which `JSON.stringify` refuses), and maps become plain objects.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, JsValue> {
    let js = value.serialize(&serde_wasm_bindgen::Serializer::json_compatible())?;
    JSON::stringify(&js).map(String::from)
}

/// Starts `POST url` with `body` and returns fetch's promise. Started here, synchronously, so
/// that a page-exit handler has the request on its way before the handler returns.
pub fn post(window: &Window, url: &str, body: &str) -> Promise {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    // A "simple" content type: the browser sends the request without a CORS preflight.
    let headers = Object::new();
    let _ = Reflect::set(
        &headers,
        &JsValue::from_str("Content-Type"),
        &JsValue::from_str("text/plain;charset=UTF-8"),
    );
    init.set_headers(&headers);
    // Lets the request outlive the page; web-sys has no setter for it.
    let _ = Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    window.fetch_with_str_and_init(url, &init)
}

/// The HTTP status of a started request, or why there was none (network error, CORS refusal,
/// keepalive budget exceeded).
pub async fn status(request: Promise) -> Result<u16, String> {
    let response = JsFuture::from(request).await.map_err(|e| describe(&e))?;
    response
        .dyn_into::<Response>()
        .map(|r| r.status())
        .map_err(|_| "fetch did not return a Response".to_owned())
}

/// A readable message for a thrown JS value.
pub fn describe(error: &JsValue) -> String {
    if let Some(e) = error.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    error
        .as_string()
        .unwrap_or_else(|| "unknown error".to_owned())
}
