//! What the tracker reads from the browser: the clock, randomness, new ids and the page context
//! that goes with every event.

use js_sys::{Array, Date, Math, Object, Reflect};
use retailmind_schema::{Context, Limits, Page, Screen};
use uuid::{Builder, Uuid};
use wasm_bindgen::JsValue;
use web_sys::Window;

use crate::text::{fit_bytes, fit_chars, non_empty};
use crate::utm::parse_utm;

/// `context.library` of every event.
pub const LIBRARY: &str = concat!("retailmind-sdk-wasm/", env!("CARGO_PKG_VERSION"));

pub fn now_ms() -> i64 {
    Date::now() as i64
}

/// In `[0, 1)`, for retry jitter only.
pub fn jitter() -> f64 {
    Math::random()
}

/// Bytes from `crypto.getRandomValues`, with `Math.random` as the last resort where Web Crypto
/// is missing, so that a tracker never fails for want of an id.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        for b in &mut bytes {
            *b = (Math::random() * 256.0) as u8;
        }
    }
    bytes
}

/// A UUIDv7 for now: sortable by time, which keeps the collector's dedup index compact.
pub fn new_event_id() -> Uuid {
    let millis = u64::try_from(now_ms()).unwrap_or(0);
    Builder::from_unix_timestamp_millis(millis, &random_bytes()).into_uuid()
}

/// A random (v4) id, for the anonymous id: it should not reveal when the browser first came.
pub fn new_random_id() -> Uuid {
    Builder::from_random_bytes(random_bytes()).into_uuid()
}

/// Lower-case hyphenated form, without going through `fmt`.
pub fn id_string(id: Uuid) -> String {
    let mut buf = Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

/// Page, campaign and device of an event happening now, cut to the collector's limits.
pub fn page_context(window: &Window) -> Context {
    let limits = Limits::default();
    let text = |s: String| non_empty(fit_chars(s, limits.max_text_len));
    let location = window.location();
    let document = window.document();
    let navigator = window.navigator();
    let referrer = document
        .as_ref()
        .map(|d| d.referrer())
        // `android-app://…` and the like would get the whole event refused.
        .filter(|r| retailmind_schema::validate::is_http_url(r))
        .map(|r| fit_bytes(r, limits.max_url_len));
    Context {
        page: Page {
            url: fit_bytes(location.href().unwrap_or_default(), limits.max_url_len),
            referrer,
            title: document.map(|d| d.title()).and_then(text),
        },
        utm: location.search().ok().and_then(|s| parse_utm(&s)),
        user_agent: navigator.user_agent().ok().and_then(text),
        screen: screen(window),
        locale: navigator
            .language()
            .map(|l| fit_chars(l, 35))
            .and_then(non_empty),
        timezone: time_zone().map(|z| fit_chars(z, 64)).and_then(non_empty),
        ip: None,
        library: Some(LIBRARY.to_owned()),
    }
}

fn screen(window: &Window) -> Option<Screen> {
    let screen = window.screen().ok()?;
    Some(Screen {
        width: u32::try_from(screen.width().ok()?).ok()?,
        height: u32::try_from(screen.height().ok()?).ok()?,
    })
}

/// `Intl.DateTimeFormat().resolvedOptions().timeZone`, e.g. `Europe/Zurich`.
fn time_zone() -> Option<String> {
    let format = js_sys::Intl::DateTimeFormat::new(&Array::new(), &Object::new());
    Reflect::get(&format.resolved_options(), &JsValue::from_str("timeZone"))
        .ok()?
        .as_string()
}

pub fn warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}
