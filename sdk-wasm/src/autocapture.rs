//! What the tracker hooks into the page: the click listener, the page-exit listeners and the
//! flush timer. Held by the tracker; dropping them unhooks everything.

use js_sys::{Function, Reflect};
use retailmind_schema::{Click, Limits, Payload};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, Event, EventTarget, HtmlElement, Node, VisibilityState, Window};

use crate::browser;
use crate::clicks::{clean_text, is_outbound, split_classes, CLICKABLE_SELECTOR, IGNORE_SELECTOR};
use crate::config::Config;
use crate::delivery;
use crate::text::{fit_bytes, non_empty};
use crate::tracker;

type Handler = Closure<dyn FnMut(Event)>;

pub struct Listeners {
    window: Window,
    document: Option<Document>,
    click: Option<Handler>,
    visibility: Handler,
    pagehide: Handler,
    _timer: Closure<dyn FnMut()>,
    interval: Option<i32>,
}

impl Listeners {
    /// Hooks clicks (when autocaptured), page exit and the flush timer into `window`.
    pub fn install(window: &Window, config: &Config) -> Listeners {
        let document = window.document();
        let click = config.autocapture.clicks.then(|| {
            let handler: Handler = Closure::new(on_click);
            if let Some(doc) = &document {
                // Capture phase: seen even when the shop's own handler stops propagation.
                let _ = doc.add_event_listener_with_callback_and_bool(
                    "click",
                    handler.as_ref().unchecked_ref(),
                    true,
                );
            }
            handler
        });
        let visibility: Handler = Closure::new(|_: Event| {
            let hidden = web_sys::window()
                .and_then(|w| w.document())
                .is_some_and(|d| d.visibility_state() == VisibilityState::Hidden);
            // Hidden is often the last moment a mobile page gets: it may be killed unseen.
            if hidden {
                delivery::send_everything_now();
            }
        });
        if let Some(doc) = &document {
            let _ = doc.add_event_listener_with_callback(
                "visibilitychange",
                visibility.as_ref().unchecked_ref(),
            );
        }
        let pagehide: Handler = Closure::new(|_: Event| delivery::send_everything_now());
        let _ =
            window.add_event_listener_with_callback("pagehide", pagehide.as_ref().unchecked_ref());
        let timer: Closure<dyn FnMut()> = Closure::new(delivery::on_timer);
        let interval = window
            .set_interval_with_callback_and_timeout_and_arguments_0(
                timer.as_ref().unchecked_ref(),
                i32::try_from(config.flush_interval_ms).unwrap_or(i32::MAX),
            )
            .ok();
        Listeners {
            window: window.clone(),
            document,
            click,
            visibility,
            pagehide,
            _timer: timer,
            interval,
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        if let Some(id) = self.interval {
            self.window.clear_interval_with_handle(id);
        }
        let _ = self.window.remove_event_listener_with_callback(
            "pagehide",
            self.pagehide.as_ref().unchecked_ref::<Function>(),
        );
        if let Some(doc) = &self.document {
            let _ = doc.remove_event_listener_with_callback(
                "visibilitychange",
                self.visibility.as_ref().unchecked_ref::<Function>(),
            );
            if let Some(click) = &self.click {
                let _ = doc.remove_event_listener_with_callback_and_bool(
                    "click",
                    click.as_ref().unchecked_ref::<Function>(),
                    true,
                );
            }
        }
    }
}

fn on_click(event: Event) {
    let Some(click) = click_from_event(&event) else {
        return;
    };
    // A click must never break the shop's page: problems go to the console.
    if let Err(e) = tracker::record(Payload::Click(click)) {
        browser::warn(&e.to_string());
    }
}

/// The click on the link or button the event's target is in, unless it is inside an element
/// marked `data-rm-ignore` or on nothing clickable.
pub fn click_from_event(event: &Event) -> Option<Click> {
    click_from_target(event.target()?)
}

/// [`click_from_event`] for a known target.
pub fn click_from_target(target: EventTarget) -> Option<Click> {
    // A click on text reports the text node; its element is what counts.
    let start = match target.dyn_into::<Element>() {
        Ok(element) => element,
        Err(target) => target.dyn_into::<Node>().ok()?.parent_element()?,
    };
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
