//! What the tracker hooks into the page, once per page: clicks, page exit (visibility, pagehide),
//! back/forward-cache restores, single-page-app navigations, engagement (focus, scroll), the
//! other tabs and the flush timer. Every handler looks the tracker up when it fires, so a
//! second `init` only changes the config they read.

use js_sys::{Array, Function, Reflect};
use retailmind_schema::{Click, Limits};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Element, Event, EventTarget, HtmlElement, Node, VisibilityState, Window};

use crate::browser;
use crate::clicks::{clean_text, is_outbound, split_classes, CLICKABLE_SELECTOR, IGNORE_SELECTOR};
use crate::delivery;
use crate::engagement::scroll_percent;
use crate::glue;
use crate::json::Obj;
use crate::text::{fit_bytes, non_empty};
use crate::tracker;
use crate::wire;

/// Elements whose clicks are recorded as the shop's own event: `data-rm-event="name"`, with
/// properties from `data-rm-prop-<key>="value"` attributes.
pub const TAGGED_SELECTOR: &str = "[data-rm-event]";
const PROP_PREFIX: &str = "data-rm-prop-";

fn listen(target: &EventTarget, kind: &str, f: impl FnMut(Event) + 'static, capture: bool) {
    let handler = Closure::<dyn FnMut(Event)>::new(f);
    let _ = target.add_event_listener_with_callback_and_bool(
        kind,
        handler.as_ref().unchecked_ref(),
        capture,
    );
    // Listeners live as long as the page.
    handler.forget();
}

/// Hooks everything into `window`; called by the first `init` only.
pub fn install(window: &Window) {
    let doc = window.document();
    if let Some(doc) = &doc {
        // Capture phase: seen even when the shop's own handler stops propagation.
        listen(doc, "click", on_click, true);
        listen(doc, "visibilitychange", |_| on_visibility(), false);
    }
    listen(window, "pagehide", |_| on_exit(), false);
    listen(window, "pageshow", on_pageshow, false);
    listen(window, "focus", |_| engaged_changed(), false);
    listen(window, "blur", |_| engaged_changed(), false);
    listen(window, "scroll", |_| on_scroll(), false);
    let history = Closure::<dyn FnMut()>::new(schedule_page_check);
    glue::hook_history(history.as_ref().unchecked_ref());
    history.forget();
    let tabs = Closure::<dyn FnMut(JsValue)>::new(delivery::on_tab_message);
    glue::tabs(tabs.as_ref().unchecked_ref());
    tabs.forget();
}

/// (Re)starts the flush timer with the configured interval.
pub fn start_timer(window: &Window, interval_ms: u32) {
    thread_local! {
        static TICK: Function = Closure::<dyn FnMut()>::new(delivery::on_timer).into_js_value().unchecked_into();
    }
    let old = tracker::with(|t| t.delivery.interval.take()).ok().flatten();
    if let Some(id) = old {
        window.clear_interval_with_handle(id);
    }
    let id = TICK.with(|tick| {
        window
            .set_interval_with_callback_and_timeout_and_arguments_0(
                tick,
                i32::try_from(interval_ms).unwrap_or(i32::MAX),
            )
            .ok()
    });
    let _ = tracker::with(|t| t.delivery.interval = id);
}

fn page_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == VisibilityState::Visible)
}

/// Engaged: visible, and the window has focus.
fn engaged_now() -> bool {
    page_visible()
        && web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.has_focus().unwrap_or(true))
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
fn on_pageshow(event: Event) {
    let persisted = Reflect::get(&event, &"persisted".into()).is_ok_and(|p| p.is_truthy());
    if !persisted {
        return;
    }
    let _ = tracker::with(|t| t.page.counted = None);
    engaged_changed();
    check_page();
    delivery::kick(true);
}

fn on_scroll() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let num = |v: Result<JsValue, JsValue>| v.ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let height = window
        .document()
        .and_then(|d| d.document_element())
        .map_or(0.0, |e| f64::from(e.scroll_height()));
    let pct = scroll_percent(
        num(window.scroll_y().map(JsValue::from)),
        num(window.inner_height()),
        height,
    );
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
            .int("engaged_ms", ms)
            .int("scroll_depth_pct", depth.into())
            .end();
        Some(props)
    });
    if let Ok(Some(props)) = props {
        let _ = tracker::record("custom", &wire::custom("page_engagement", &props));
    }
}

/// History changes of one task (a router's replaceState then pushState) are checked once,
/// after the task, when the URL and title are final.
fn schedule_page_check() {
    let schedule = tracker::with(|t| !std::mem::replace(&mut t.page.check_scheduled, true));
    if schedule != Ok(true) {
        return;
    }
    thread_local! {
        static CHECK: Function = Closure::<dyn FnMut()>::new(|| {
            let _ = tracker::with(|t| t.page.check_scheduled = false);
            check_page();
        }).into_js_value().unchecked_into();
    }
    if let Some(w) = web_sys::window() {
        CHECK.with(|f| {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(f, 0);
        });
    }
}

/// `href` without its `#fragment`: in-page anchors are not page views.
pub fn page_key(href: &str) -> &str {
    href.split('#').next().unwrap_or(href)
}

/// Records a page view if automatic page views are on and the URL (fragment aside) is not the
/// one last counted. The previous page's engagement goes first, and its URL becomes the
/// referrer of what follows.
pub fn check_page() {
    let Some(href) = web_sys::window().and_then(|w| w.location().href().ok()) else {
        return;
    };
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
    let _ = tracker::record("page_view", &wire::page_view(None));
}

fn on_click(event: Event) {
    let Some(target) = event.target() else {
        return;
    };
    let clicks = tracker::with(|t| t.config.autocapture.clicks).unwrap_or(false);
    if let Some((name, props)) = tagged_event(&target) {
        report(tracker::record("custom", &wire::custom(&name, &props)));
    }
    if clicks {
        if let Some(click) = click_from_target(target) {
            report(tracker::record("click", &wire::click(&click)));
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
    let start = element_of(target.clone())?;
    let tagged = start.closest(TAGGED_SELECTOR).ok()??;
    if tagged.closest(IGNORE_SELECTOR).ok()?.is_some() {
        return None;
    }
    let name = non_empty(tagged.get_attribute("data-rm-event")?)?;
    let mut props = String::new();
    let mut o = Obj::new(&mut props);
    for attr in Array::from(&tagged.get_attribute_names()).iter() {
        let Some(attr) = attr.as_string() else {
            continue;
        };
        if let Some(key) = attr.strip_prefix(PROP_PREFIX) {
            if let Some(value) = tagged.get_attribute(&attr) {
                o.str(key, &value);
            }
        }
    }
    o.end();
    Some((name, props))
}

fn element_of(target: EventTarget) -> Option<Element> {
    // A click on text reports the text node; its element is what counts.
    match target.dyn_into::<Element>() {
        Ok(element) => Some(element),
        Err(target) => target.dyn_into::<Node>().ok()?.parent_element(),
    }
}

/// The click on the link or button `target` is in, unless it is inside an element marked
/// `data-rm-ignore` or on nothing clickable.
pub fn click_from_target(target: EventTarget) -> Option<Click> {
    let start = element_of(target)?;
    let element = start.closest(CLICKABLE_SELECTOR).ok()??;
    if element.closest(IGNORE_SELECTOR).ok()?.is_some() {
        return None;
    }
    let page_host = web_sys::window()
        .and_then(|w| w.location().host().ok())
        .unwrap_or_default();
    Some(describe(&element, &page_host))
}

/// The click payload for `element` on a page served from `page_host`.
pub fn describe(element: &Element, page_host: &str) -> Click {
    let tag = element.tag_name().to_ascii_lowercase();
    let raw_text = if tag == "input" {
        element.get_attribute("value")
    } else {
        // `innerText` follows the layout (a card's name and price come out as separate words,
        // hidden text stays out); `textContent` runs them together.
        element
            .dyn_ref::<HtmlElement>()
            .map(HtmlElement::inner_text)
            .or_else(|| element.text_content())
    };
    let href = (tag == "a").then(|| link_href(element)).flatten();
    let outbound = href.as_deref().is_some_and(|h| is_outbound(h, page_host));
    Click {
        text: raw_text.as_deref().and_then(clean_text),
        id: non_empty(element.id()),
        classes: element
            .get_attribute("class")
            .map(|c| split_classes(&c))
            .unwrap_or_default(),
        href: href.map(|h| fit_bytes(h, Limits::default().max_url_len)),
        outbound,
        element: tag,
    }
}

/// The link's absolute URL as the browser resolved it (`a.href`), or the raw attribute where
/// there is no such property (SVG links).
fn link_href(element: &Element) -> Option<String> {
    Reflect::get(element, &JsValue::from_str("href"))
        .ok()
        .and_then(|h| h.as_string())
        .or_else(|| element.get_attribute("href"))
        .and_then(non_empty)
}
