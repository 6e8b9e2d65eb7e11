//! What the tracker hooks into the page, once per page: clicks, page exit (visibility, pagehide),
//! back/forward-cache restores, single-page-app navigations, engagement (focus, scroll), the
//! other tabs and the flush timer. Every handler looks the tracker up when it fires, so a
//! second `init` only changes the config they read.

use js_sys::Array;
use retailmind_schema::{Limits, ENGAGED_MS, PAGE_ENGAGEMENT};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::EventTarget;

use crate::browser;
use crate::clicks::{clean_text, is_outbound, CLICKABLE_SELECTOR, IGNORE_SELECTOR};
use crate::delivery;
use crate::engagement::scroll_percent;
use crate::glue;
use crate::json::Obj;
use crate::text::{cut, fit_bytes, non_empty};
use crate::tracker;
use crate::wire;

/// Elements whose clicks are recorded as the shop's own event: `data-rm-event="name"`, with
/// properties from `data-rm-prop-<key>="value"` attributes.
pub const TAGGED_SELECTOR: &str = "[data-rm-event]";
const TAGGED_ATTR: &str = "data-rm-event";
const PROP_PREFIX: &str = "data-rm-prop-";
/// The attributes a click is described with, in the order `click_from_target` reads them.
const CLICK_ATTRS: &str = "value,href,class";

// What `glue.js` calls `hub` with: 0-2 are the send cycle's steps (see `delivery.rs`).
const CLICK: u32 = 3;
const VISIBILITY: u32 = 4;
const PAGEHIDE: u32 = 5;
const PAGESHOW: u32 = 6;
const FOCUS_OR_BLUR: u32 = 7;
const SCROLL: u32 = 8;
const HISTORY: u32 = 9;
const TAB_MESSAGE: u32 = 10;
const TIMER: u32 = 11;
const PAGE_CHECK: u32 = 12;

/// Every callback from the browser, as the wasm's own export `hub` that `glue.js` calls: one
/// entry point instead of a wasm-bindgen closure per listener and timer, and without the closure
/// machinery (shims and a finalizer in the wasm and its JS glue) that even one would bring.
/// `code` says what happened; the event or message that came with it is `glue::hub_arg()`,
/// taken first, and the answer (of the send cycle's steps) goes back through
/// `glue::hub_answer`, last.
#[export_name = "hub"]
pub extern "C" fn hub(code: u32, n: f64) {
    let arg = glue::hub_arg();
    glue::hub_answer(&on_hub(code, arg, n));
}

fn on_hub(code: u32, arg: JsValue, n: f64) -> JsValue {
    match code {
        0 => return delivery::plan_next(arg),
        1 => return delivery::settle(arg, n),
        2 => return delivery::cycle_done(),
        CLICK => on_click(arg),
        VISIBILITY => on_visibility(),
        PAGEHIDE => on_exit(),
        PAGESHOW => on_pageshow(arg),
        FOCUS_OR_BLUR => engaged_changed(),
        SCROLL => on_scroll(),
        HISTORY => schedule_page_check(),
        TAB_MESSAGE => delivery::on_tab_message(arg),
        TIMER => delivery::on_timer(),
        PAGE_CHECK => {
            let _ = tracker::with(|t| t.page.check_scheduled = false);
            check_page();
        }
        _ => {}
    }
    JsValue::UNDEFINED
}

/// Hooks everything into the page; called by the first `init` only.
pub fn install() {
    glue::set_hub(&wasm_bindgen::exports());
    // Capture phase: seen even when the shop's own handler stops propagation.
    glue::listen(CLICK, "click", true, true);
    glue::listen(VISIBILITY, "visibilitychange", true, false);
    glue::listen(PAGEHIDE, "pagehide", false, false);
    glue::listen(PAGESHOW, "pageshow", false, false);
    glue::listen(FOCUS_OR_BLUR, "focus", false, false);
    glue::listen(FOCUS_OR_BLUR, "blur", false, false);
    glue::listen(SCROLL, "scroll", false, false);
    glue::hook_history(HISTORY);
    glue::tabs(TAB_MESSAGE);
}

/// (Re)starts the flush timer with the configured interval.
pub fn start_timer(interval_ms: u32) {
    glue::every(TIMER, interval_ms);
}

/// `[visible, focused, scrollY, innerHeight, page height]`.
fn view() -> Array {
    glue::view_facts()
}

fn page_visible() -> bool {
    view().get(0).is_truthy()
}

/// Engaged: visible, and the window has focus.
fn engaged_now() -> bool {
    let v = view();
    v.get(0).is_truthy() && v.get(1).is_truthy()
}

fn engaged_changed() {
    let active = engaged_now();
    let _ = tracker::with(|t| t.page.engagement.set_active(active, js_sys::Date::now()));
}

fn on_visibility() {
    engaged_changed();
    // Hidden is often the last moment a mobile page gets: it may be killed unseen.
    if !page_visible() {
        on_exit();
    }
}

fn on_exit() {
    report_engagement();
    delivery::send_everything_now();
}

/// A page restored from the back/forward cache is a new view of it; its timers and listeners
/// survived, its queue may have been left unsent.
fn on_pageshow(event: JsValue) {
    let persisted = glue::get(&event, "persisted").is_truthy();
    if !persisted {
        return;
    }
    let _ = tracker::with(|t| t.page.counted = None);
    engaged_changed();
    check_page();
    delivery::kick(true);
}

fn on_scroll() {
    let v = view();
    let num = |i| v.get(i).as_f64().unwrap_or(0.0);
    let pct = scroll_percent(num(2), num(3), num(4));
    let _ = tracker::with(|t| t.page.engagement.scrolled(pct));
}

/// Sends the current page's engaged time and scroll depth as a `page_engagement` event, when
/// enabled and there is something to report.
fn report_engagement() {
    let props = tracker::with(|t| {
        if !t.config.autocapture.engagement {
            return None;
        }
        let (ms, depth) = t.page.engagement.take(js_sys::Date::now());
        if ms == 0 && depth == 0 {
            return None;
        }
        let mut props = String::new();
        Obj::new(&mut props)
            .opt_str("url", t.page.counted.as_deref())
            .int(ENGAGED_MS, ms)
            .int("scroll_depth_pct", depth.into())
            .end();
        Some(props)
    });
    if let Ok(Some(props)) = props {
        let _ = tracker::record("custom", &wire::custom(PAGE_ENGAGEMENT, &props));
    }
}

/// History changes of one task (a router's replaceState then pushState) are checked once,
/// after the task, when the URL and title are final.
fn schedule_page_check() {
    let schedule = tracker::with(|t| !std::mem::replace(&mut t.page.check_scheduled, true));
    if schedule != Ok(true) {
        return;
    }
    glue::soon(PAGE_CHECK);
}

/// `href` without its `#fragment`: in-page anchors are not page views.
pub fn page_key(href: &str) -> &str {
    cut(href, b'#', false).map_or(href, |(page, _)| page)
}

/// Records a page view if automatic page views are on and the URL (fragment aside) is not the
/// one last counted. The previous page's engagement goes first, and its URL becomes the
/// referrer of what follows.
pub fn check_page() {
    let href = browser::PageFacts::now().href();
    let key = page_key(&href).to_owned();
    let changed = tracker::with(|t| {
        t.config.autocapture.page_views && t.page.counted.as_deref() != Some(key.as_str())
    });
    if changed != Ok(true) {
        return;
    }
    report_engagement();
    let _ = tracker::with(|t| {
        if let Some(previous) = t.page.counted.replace(key) {
            t.page.referrer = Some(previous);
            t.page.forget_context();
        }
        t.page.engagement = crate::engagement::Engagement::new(js_sys::Date::now(), engaged_now());
    });
    let _ = tracker::record("page_view", "");
}

fn on_click(event: JsValue) {
    let target: EventTarget = glue::get(&event, "target").unchecked_into();
    let clicks = tracker::with(|t| t.config.autocapture.clicks).unwrap_or(false);
    if let Some((name, props)) = tagged_event(&target) {
        report(tracker::record("custom", &wire::custom(&name, &props)));
    }
    if clicks {
        if let Some(click) = click_from_target(target) {
            report(tracker::record("click", &click));
        }
    }
}

/// A click must never break the shop's page: problems go to the console.
fn report(result: Result<(), tracker::TrackerError>) {
    if let Err(e) = result {
        browser::warn(&e.message());
    }
}

/// The event named by the closest `data-rm-event` around `target`, with its
/// `data-rm-prop-*` attributes as string properties.
pub fn tagged_event(target: &EventTarget) -> Option<(String, String)> {
    let tagged = glue::closest(target, TAGGED_SELECTOR, IGNORE_SELECTOR);
    if tagged.is_null() {
        return None;
    }
    let facts = glue::element_facts(&tagged, false, TAGGED_ATTR, PROP_PREFIX);
    let name = non_empty(facts.get(5).as_string()?)?;
    // The properties, an object of strings: the browser's JSON is the props' wire format.
    let props = glue::json(&facts.get(6))?;
    Some((name, props))
}

/// The click on the link or button `target` is in, as the JSON of a
/// `retailmind_schema::Click`, unless it is inside an element marked `data-rm-ignore` or on
/// nothing clickable.
pub fn click_from_target(target: EventTarget) -> Option<String> {
    let element = glue::closest(&target, CLICKABLE_SELECTOR, IGNORE_SELECTOR);
    if element.is_null() {
        return None;
    }
    let facts = glue::element_facts(&element, true, CLICK_ATTRS, "");
    let text = |i| facts.get(i).as_string();
    let tag = text(0).unwrap_or_default().to_ascii_lowercase();
    // `innerText` follows the layout (a card's name and price come out as separate words,
    // hidden text stays out); `textContent` runs them together. A submit button's text is its
    // `value`.
    let raw_text = text(if tag == "input" { 5 } else { 1 });
    // The link's absolute URL as the browser resolved it (`a.href`), or the raw attribute where
    // there is no such property (SVG links).
    let href = (tag == "a")
        .then(|| text(3).or_else(|| text(6)))
        .flatten()
        .and_then(non_empty)
        .map(|h| fit_bytes(h, Limits::default().max_url_len));
    let page_host = text(4).unwrap_or_default();
    let outbound = href.as_deref().is_some_and(|h| is_outbound(h, &page_host));
    Some(wire::click(
        &tag,
        raw_text.as_deref().and_then(clean_text).as_deref(),
        non_empty(text(2).unwrap_or_default()).as_deref(),
        &text(7).unwrap_or_default(),
        href.as_deref(),
        outbound,
    ))
}
