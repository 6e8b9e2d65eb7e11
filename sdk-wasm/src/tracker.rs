//! The running tracker: its settings, who the shopper is, and the outbox, held once per page.
//!
//! wasm in the browser is single-threaded, so the state lives in a thread-local `RefCell`; every
//! access goes through [`with`], which never holds the borrow across an `await`.

use std::cell::RefCell;
use std::fmt;

use js_sys::Promise;
use retailmind_schema::{Event, PageView, Payload};
use uuid::Uuid;
use web_sys::Window;

use crate::autocapture::Listeners;
use crate::browser::{self, id_string, new_event_id, new_random_id, now_ms};
use crate::config::Config;
use crate::delivery;
use crate::outbox::{Outbox, PushError};
use crate::session::{self, SessionState};
use crate::storage::{Store, ANONYMOUS_ID_KEY, SESSION_KEY, USER_ID_KEY};
use crate::transport;

/// Longest id the collector accepts (`Limits::max_id_len`).
const MAX_ID_CHARS: usize = 128;

pub struct Tracker {
    /// `<collectorUrl>/v1/batch[?key=…]`.
    pub(crate) endpoint: String,
    pub(crate) window: Window,
    store: Store,
    anonymous_id: String,
    user_id: Option<String>,
    pub(crate) outbox: Outbox,
    /// Requests on their way, by batch id: `flush()` waits for them.
    pub(crate) sends: Vec<(Uuid, Promise)>,
    /// Dropping them detaches autocapture and the timer (on a second `init`).
    listeners: Option<Listeners>,
    warned_full: bool,
}

thread_local! {
    static TRACKER: RefCell<Option<Tracker>> = const { RefCell::new(None) };
}

/// Why a tracker call could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerError {
    NotStarted,
    /// Called from inside another tracker call (a listener firing synchronously).
    Busy,
    NoWindow,
    /// The caller handed in something that cannot be sent.
    Invalid(String),
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::NotStarted => f.write_str("retailmind: call init(config) first"),
            TrackerError::Busy => f.write_str("retailmind: tracker is busy (re-entrant call)"),
            TrackerError::NoWindow => f.write_str("retailmind: needs a browser window"),
            TrackerError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TrackerError {}

/// Runs `f` on the tracker.
pub fn with<R>(f: impl FnOnce(&mut Tracker) -> R) -> Result<R, TrackerError> {
    TRACKER.with(|slot| {
        let mut slot = slot.try_borrow_mut().map_err(|_| TrackerError::Busy)?;
        slot.as_mut().map(f).ok_or(TrackerError::NotStarted)
    })
}

/// Starts the tracker, or restarts it with a new config. Events still queued from before are
/// kept; identity comes from storage, so it survives page loads and restarts alike.
pub fn start(config: Config) -> Result<(), TrackerError> {
    let window = web_sys::window().ok_or(TrackerError::NoWindow)?;
    let mut store = Store::open(&window);
    let anonymous_id = match store.get(ANONYMOUS_ID_KEY).filter(|id| is_usable_id(id)) {
        Some(id) => id,
        None => {
            let id = id_string(new_random_id());
            store.set(ANONYMOUS_ID_KEY, &id);
            id
        }
    };
    let user_id = store.get(USER_ID_KEY).filter(|id| is_usable_id(id));
    let endpoint = config.batch_endpoint(|v| String::from(js_sys::encode_uri_component(v)));

    TRACKER.with(|slot| {
        let mut slot = slot.try_borrow_mut().map_err(|_| TrackerError::Busy)?;
        let (outbox, sends) = match slot.take() {
            Some(mut old) => {
                old.outbox.set_batch_size(config.batch_size);
                (old.outbox, old.sends)
            }
            None => (Outbox::new(config.batch_size), Vec::new()),
        };
        *slot = Some(Tracker {
            endpoint,
            window: window.clone(),
            store,
            anonymous_id,
            user_id,
            outbox,
            sends,
            listeners: None,
            warned_full: false,
        });
        Ok(())
    })?;

    // Installed after the tracker is in place: the handlers look it up when they fire.
    let listeners = Listeners::install(&window, &config);
    with(|t| t.listeners = Some(listeners))?;
    if config.autocapture.page_views {
        record(Payload::PageView(PageView::default()))?;
    }
    Ok(())
}

/// Builds an event of kind `payload` from the current page and queues it. A full queue is
/// reported on the console, not to the caller: tracking must never break the shop's page.
pub fn record(payload: Payload) -> Result<(), TrackerError> {
    let send_now = with(|t| -> Result<bool, TrackerError> {
        let event = t.build_event(payload);
        let json = transport::to_json(&event)
            .map_err(|e| TrackerError::Invalid(transport::describe(&e)))?;
        match t.outbox.push(event, json.len()) {
            Ok(()) => Ok(t.outbox.has_full_batch()),
            Err(PushError::TooLarge { bytes, max }) => Err(TrackerError::Invalid(
                [
                    "retailmind: event is ",
                    &bytes.to_string(),
                    " bytes of JSON, at most ",
                    &max.to_string(),
                    " allowed",
                ]
                .concat(),
            )),
            Err(PushError::Full { max }) => {
                if !t.warned_full {
                    t.warned_full = true;
                    browser::warn(
                        &["retailmind: ", &max.to_string(), " events are waiting for the collector; new events are dropped until it answers"]
                            .concat(),
                    );
                }
                Ok(false)
            }
        }
    })??;
    if send_now {
        delivery::send_next(false);
    }
    Ok(())
}

/// Remembers the shop's id for this shopper on this and later page loads.
pub fn identify(user_id: &str) -> Result<(), TrackerError> {
    let user_id = user_id.trim();
    if !is_usable_id(user_id) {
        return Err(TrackerError::Invalid(
            "retailmind: identify(userId) needs a non-empty id of at most 128 characters".into(),
        ));
    }
    with(|t| {
        t.user_id = Some(user_id.to_owned());
        t.store.set(USER_ID_KEY, user_id);
    })
}

/// The event `payload` would become now, with ids, session and page context filled in, without
/// queueing it. Also what the browser tests inspect.
pub fn build_event(payload: Payload) -> Result<Event, TrackerError> {
    with(|t| t.build_event(payload))
}

pub fn anonymous_id() -> Result<String, TrackerError> {
    with(|t| t.anonymous_id.clone())
}

/// Events not yet acknowledged by the collector; 0 before `init`.
pub fn queued() -> usize {
    with(|t| t.outbox.len()).unwrap_or(0)
}

impl Tracker {
    fn build_event(&mut self, payload: Payload) -> Event {
        let now = now_ms();
        let event_id = new_event_id();
        let stored = self
            .store
            .get(SESSION_KEY)
            .and_then(|s| SessionState::parse(&s));
        // A new session is named after its first event, as the processor names its sessions.
        let session = session::touch(stored, now, || id_string(event_id));
        self.store.set(SESSION_KEY, &session.to_stored());
        if self.outbox.is_empty() {
            self.warned_full = false;
        }
        Event {
            event_id,
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
            session_id: Some(session.id),
            timestamp: now,
            received_at: None,
            context: browser::page_context(&self.window),
            payload,
        }
    }
}

fn is_usable_id(id: &str) -> bool {
    !id.trim().is_empty() && id.chars().count() <= MAX_ID_CHARS
}
