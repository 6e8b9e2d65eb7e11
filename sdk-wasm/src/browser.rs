//! What the tracker reads from the browser: the clock, randomness, new ids and the page context
//! that goes with every event.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use js_sys::{Array, Date, Math};
use retailmind_schema::{Context, Limits, Page, Screen};
use wasm_bindgen::prelude::*;

use crate::text::{fit_bytes, fit_chars, non_empty};
use crate::utm::utm_from_params;

/// `context.library` of every event.
pub const LIBRARY: &str = concat!("retailmind-sdk-wasm/", env!("CARGO_PKG_VERSION"));

#[wasm_bindgen]
extern "C" {}

/// There is a `window` (not a worker).
pub fn has_window() -> bool {
    crate::glue::has_window()
}

pub fn now_ms() -> i64 {
    Date::now() as i64
}

/// In `[0, 1)`, for retry jitter only.
pub fn jitter() -> f64 {
    Math::random()
}

/// Bytes from `crypto.getRandomValues`, with `Math.random` as the last resort where Web Crypto
/// is missing, so that a tracker never fails for want of an id.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if !crate::glue::random_fill(&mut bytes) {
        for b in &mut bytes {
            *b = (Math::random() * 256.0) as u8;
        }
    }
    bytes
}

/// The page's last event id's millisecond and counter, as `ms << 12 | counter` (one thread:
/// relaxed is a plain load and store).
static LAST_ID: AtomicU64 = AtomicU64::new(0);

/// A UUIDv7 for now: sortable by time, which keeps the collector's dedup index compact. Ids
/// made in one millisecond (or after the clock stepped back) count up in their 12 bits after
/// the version (RFC 9562, method 1; a full counter carries into the millisecond), so a page's
/// ids sort in the order its events were recorded: the queue is read, and batches are cut, in
/// id order.
pub fn new_event_id() -> String {
    let mut bytes = random_bytes();
    let now = u64::try_from(now_ms()).unwrap_or(0);
    // A new millisecond starts its counter at random, with room to count up.
    let start = u64::from(u16::from_be_bytes([bytes[6], bytes[7]]) & 0x7ff);
    let id = ((now << 12) | start).max(LAST_ID.load(Relaxed) + 1);
    LAST_ID.store(id, Relaxed);
    // 48 bits of milliseconds, the version's 4 (set below), the counter's 12.
    bytes[..8].copy_from_slice(&(((id >> 12) << 16) | (id & 0xfff)).to_be_bytes());
    uuid_text(bytes, 7)
}

/// A random (v4) id, for the anonymous id: it should not reveal when the browser first came.
pub fn new_random_id() -> String {
    uuid_text(random_bytes(), 4)
}

/// `bytes` with the `version` and the RFC 9562 variant set, as a lower-case hyphenated UUID
/// (written here: the `uuid` crate and `fmt` cost the wasm more than the tracker's ids need).
pub fn uuid_text(mut bytes: [u8; 16], version: u8) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
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

    /// `navigator.doNotTrack == "1"` or `navigator.globalPrivacyControl == true`.
    pub fn do_not_track(&self) -> bool {
        self.text(9) == "1" || self.0.get(10).is_truthy()
    }

    /// Page, campaign and device, cut to the collector's limits. `referrer` replaces
    /// `document.referrer` after a single-page-app navigation, where the previous page is the
    /// real referrer.
    pub fn context(&self, referrer: Option<&str>) -> Context {
        let limits = Limits::default();
        let text = |s: String| non_empty(fit_chars(s, limits.max_text_len));
        let referrer = Some(referrer.map_or_else(|| self.text(2), str::to_owned))
            // `android-app://…` and the like would get the whole event refused.
            .filter(|r| retailmind_schema::validate::is_http_url(r))
            .map(|r| fit_bytes(r, limits.max_url_len));
        let size = |i| u32::try_from(self.0.get(i).as_f64().unwrap_or(0.0) as i64).unwrap_or(0);
        let (width, height) = (size(5), size(6));
        // The query's names and values as the browser decoded them (`URLSearchParams`).
        let query: Array = self.0.get(1).unchecked_into();
        Context {
            page: Page {
                url: fit_bytes(self.href(), limits.max_url_len),
                referrer,
                title: text(self.title()),
            },
            utm: utm_from_params(|i| query.get(i).as_string()),
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

#[cfg(test)]
mod tests {
    use uuid::{Builder, Uuid};

    use super::*;

    #[test]
    fn ids_are_the_uuid_crates_spelling() {
        let bytes: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        assert_eq!(
            uuid_text(bytes, 4),
            Builder::from_random_bytes(bytes).into_uuid().to_string()
        );
        let mut v7 = bytes;
        v7[..6].copy_from_slice(&1_732_530_000_123u64.to_be_bytes()[2..]);
        let ours = uuid_text(v7, 7);
        let theirs =
            Builder::from_unix_timestamp_millis(1_732_530_000_123, &bytes[6..].try_into().unwrap())
                .into_uuid();
        assert_eq!(ours, theirs.to_string());
        assert_eq!(Uuid::parse_str(&ours).map(|u| u.get_version_num()), Ok(7));
    }
}
