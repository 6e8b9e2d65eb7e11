//! What the tracker reads from the browser: the clock, randomness, new ids and the page context
//! that goes with every event.

use js_sys::{Array, Date, Math};
use retailmind_schema::{Context, Limits, Page, Screen};
use uuid::{Builder, Uuid};
use wasm_bindgen::JsValue;

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

/// The page's facts as `glue.js` reads them in one call (one crossing instead of a dozen).
pub struct PageFacts(Array);

impl PageFacts {
    pub fn now() -> PageFacts {
        PageFacts(crate::glue::page_facts())
    }

    fn text(&self, i: u32) -> String {
        self.0.get(i).as_string().unwrap_or_default()
    }

    pub fn href(&self) -> String {
        self.text(0)
    }

    pub fn title(&self) -> String {
        self.text(3)
    }

    /// Page, campaign and device, cut to the collector's limits. `referrer` replaces
    /// `document.referrer` after a single-page-app navigation, where the previous page is the
    /// real referrer.
    pub fn context(&self, referrer: Option<String>) -> Context {
        let limits = Limits::default();
        let text = |s: String| non_empty(fit_chars(s, limits.max_text_len));
        let referrer = Some(referrer.unwrap_or_else(|| self.text(2)))
            // `android-app://…` and the like would get the whole event refused.
            .filter(|r| retailmind_schema::validate::is_http_url(r))
            .map(|r| fit_bytes(r, limits.max_url_len));
        let size = |i| u32::try_from(self.0.get(i).as_f64().unwrap_or(0.0) as i64).unwrap_or(0);
        let (width, height) = (size(5), size(6));
        Context {
            page: Page {
                url: fit_bytes(self.href(), limits.max_url_len),
                referrer,
                title: text(self.title()),
            },
            utm: parse_utm(&self.text(1)),
            user_agent: text(self.text(4)),
            screen: (width > 0 && height > 0).then_some(Screen { width, height }),
            locale: non_empty(fit_chars(self.text(7), 35)),
            timezone: non_empty(fit_chars(self.text(8), 64)),
            ip: None,
            library: Some(LIBRARY.to_owned()),
        }
    }
}

pub fn warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}
