//! The functions of `js/glue.js`: durable queue, flush lock, requests, history hooks and the
//! channel to other tabs. See that file for how each degrades where an API is missing.

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/glue.js")]
extern "C" {
    /// Stores `value` under `key`; writes of one task are committed together.
    #[wasm_bindgen(js_name = qPut)]
    pub fn q_put(key: &str, value: &str);
    /// Stores `value` under `key` before returning (localStorage), for a page going away.
    #[wasm_bindgen(js_name = qPutNow)]
    pub fn q_put_now(key: &str, value: &str);
    /// Every stored `[key, value]`, keys ascending.
    #[wasm_bindgen(js_name = qAll)]
    pub fn q_all() -> Promise;
    /// Removes the records with these keys (comma-separated).
    #[wasm_bindgen(js_name = qDel)]
    pub fn q_del(keys: &str) -> Promise;
    /// Hands a body to the browser for a page going away; true if it was taken.
    #[wasm_bindgen(js_name = postNow)]
    pub fn post_now(url: &str, body: &str) -> bool;
    /// `hub(code)` after every history change.
    #[wasm_bindgen(js_name = hookHistory)]
    pub fn hook_history(code: u32);
    /// `hub(code, message)` for every message from another tab.
    pub fn tabs(code: u32);
    /// Sends `message` to the other tabs.
    pub fn tell(message: &str);
    /// The localStorage entries whose keys start with `prefix`, as lines of `<rest of the
    /// key>,<value>`.
    #[wasm_bindgen(js_name = sentNotes)]
    pub fn sent_notes(prefix: &str) -> String;
    /// `[href, search, referrer, title, userAgent, screenWidth, screenHeight, language,
    /// timeZone, doNotTrack, globalPrivacyControl]` of the page now.
    #[wasm_bindgen(js_name = pageFacts)]
    pub fn page_facts() -> Array;
    /// The one function glue.js calls back: `hub(code, arg, n)` (see `autocapture::hub`).
    #[wasm_bindgen(js_name = setHub)]
    pub fn set_hub(hub: &Function);
    /// `hub(code, event)` on every `name` event of the document (`doc`) or the window.
    pub fn listen(code: u32, name: &str, doc: bool, capture: bool);
    /// `hub(code)` every `ms`, replacing the previous timer.
    pub fn every(code: u32, ms: u32);
    /// `hub(code)` once the current task is over.
    pub fn soon(code: u32);
    /// A localStorage value; `None` where there is none or storage is blocked.
    #[wasm_bindgen(js_name = lsGet)]
    pub fn ls_get(key: &str) -> Option<String>;
    /// Writes `value` under `key` (`None` removes it); failures are ignored.
    #[wasm_bindgen(js_name = lsSet)]
    pub fn ls_set(key: &str, value: Option<&str>);
    /// `[visible, focused, scrollY, innerHeight, page height]` now.
    #[wasm_bindgen(js_name = viewFacts)]
    pub fn view_facts() -> Array;
    /// The closest element around `target` matching `selector`, unless it is inside one
    /// matching `ignore`.
    pub fn closest(target: &JsValue, selector: &str, ignore: &str) -> JsValue;
    /// `[tagName, text (with `with_text`), id, href property, location.host, ...values of the
    /// attributes `names` (comma-separated; null where missing), and with a `prefix` an object
    /// of the attributes starting with it: name without the prefix, value]` of `element`.
    #[wasm_bindgen(js_name = elementFacts)]
    pub fn element_facts(element: &JsValue, with_text: bool, names: &str, prefix: &str) -> Array;
    /// There is a `window` (not a worker).
    #[wasm_bindgen(js_name = hasWindow)]
    pub fn has_window() -> bool;
    /// `obj[key]`; undefined where reading it throws (not an object, a throwing getter).
    pub fn get(obj: &JsValue, key: &str) -> JsValue;
    /// `JSON.stringify(value)`; `None` where it cannot (a cycle) or gives nothing.
    pub fn json(value: &JsValue) -> Option<String>;
    /// Fills `bytes` from `crypto.getRandomValues`; false where Web Crypto is missing.
    #[wasm_bindgen(js_name = randomFill)]
    pub fn random_fill(bytes: &mut [u8]) -> bool;
    /// GETs `url` and resolves with its JSON; rejects with the collector's error message.
    #[wasm_bindgen(js_name = getJson)]
    pub fn get_json(url: &str) -> Promise;
    /// Runs a send cycle after this page's previous one, under the flush lock; `patient`: wait
    /// for the lock and for batches in their quiet time. Rejects with the reason it stopped.
    pub fn send(patient: bool) -> Promise;
}
