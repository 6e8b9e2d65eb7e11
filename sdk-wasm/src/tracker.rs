//! The running tracker: its settings, who the shopper is, what may be tracked, this page's
//! queued events and the current page, held once per page.
//!
//! wasm in the browser is single-threaded, so the state lives in a thread-local slot; every
//! access goes through [`with`], which takes it out for the call and never across an `await`.

use std::cell::Cell;

use crate::browser::{self, new_event_id, new_random_id, now_ms};
use crate::config::Config;
use crate::engagement::Engagement;
use crate::glue;
use crate::privacy::{self, Permission, Signals};
use crate::queue::{Stored, ENVELOPE_BYTES, MAX_BODY_BYTES, MAX_PENDING_EVENTS};
use crate::session::{self, SessionState};
use crate::storage::{Store, ANONYMOUS_ID_KEY, CONSENT_KEY, OPT_OUT_KEY, SESSION_KEY, USER_ID_KEY};
use crate::{json, wire};

/// Longest id the collector accepts (`Limits::max_id_len`).
const MAX_ID_CHARS: usize = 128;
/// Events kept in memory while waiting for consent.
const MAX_HELD_EVENTS: usize = 200;

pub struct Tracker {
    pub(crate) config: Config,
    /// `<collectorUrl>/v1/batch[?key=…]`.
    pub(crate) endpoint: String,
    store: Store,
    anonymous_id: String,
    user_id: Option<String>,
    signals: Signals,
    pub(crate) permission: Permission,
    /// This page's events the collector has not acknowledged: what the page-exit send sends.
    /// The durable queue holds them too, with every other tab's and earlier pages' events.
    pub pending: Vec<Stored>,
    /// Events recorded while waiting for consent, in memory only.
    held: Vec<Stored>,
    pub(crate) page: PageState,
    pub(crate) delivery: DeliveryState,
    session_written_ms: i64,
    warned_full: bool,
}

/// The page being viewed, for page views, context and engagement.
#[derive(Default)]
pub struct PageState {
    /// URL of the last page view, without its `#fragment`.
    pub(crate) counted: Option<String>,
    /// Replaces `document.referrer` after a single-page-app navigation.
    pub(crate) referrer: Option<String>,
    /// The context JSON and the `(href, title)` it was made for: rebuilt only when they change.
    context: String,
    context_for: (String, String),
    pub(crate) engagement: Engagement,
    /// A page check is scheduled (history changes in one task count once).
    pub(crate) check_scheduled: bool,
}

impl PageState {
    /// The next event rebuilds the context (its referrer changed).
    pub fn forget_context(&mut self) {
        self.context.clear();
    }
}

/// The sending side: backoff, and the cycle running in this page.
#[derive(Default)]
pub struct DeliveryState {
    pub(crate) failures: u32,
    pub(crate) retry_at_ms: i64,
    /// A timed send cycle runs in this page.
    pub(crate) running: bool,
    /// How the last cycle ended: `Err` a reason to retry, `Ok(Some)` a refused batch.
    pub(crate) last: Option<Result<Option<String>, String>>,
    pub(crate) ticks: u32,
    /// The last cycle left events in the queue (another page's, waiting out their quiet time).
    pub(crate) leftovers: bool,
    /// The batch this page's cycle is posting: its id and its events' ids, comma-separated.
    pub(crate) sending: Option<(String, String)>,
}

thread_local! {
    /// The tracker, while no call has it out (see [`with`]).
    static TRACKER: Cell<Option<Box<Tracker>>> = const { Cell::new(None) };
    /// `start` has put a tracker in the slot: an empty slot then means a call has it out.
    static STARTED: Cell<bool> = const { Cell::new(false) };
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

impl TrackerError {
    pub fn message(&self) -> String {
        match self {
            TrackerError::NotStarted => "retailmind: call init(config) first".into(),
            TrackerError::Busy => "retailmind: tracker is busy (re-entrant call)".into(),
            TrackerError::NoWindow => "retailmind: needs a browser window".into(),
            TrackerError::Invalid(why) => why.clone(),
        }
    }
}

/// Runs `f` on the tracker. The tracker is taken out of its slot for the call, so a call from
/// inside `f` finds the slot empty and is refused as [`TrackerError::Busy`]. The taking and
/// putting back are functions of their own: the ~30 instances of `with` are little more than
/// their closures (a `RefCell` borrow in each cost the wasm 3.2 KB, 0.6 KB gzip).
pub fn with<R>(f: impl FnOnce(&mut Tracker) -> R) -> Result<R, TrackerError> {
    let mut tracker = take()?;
    let r = f(&mut tracker);
    TRACKER.set(Some(tracker));
    Ok(r)
}

#[inline(never)]
fn take() -> Result<Box<Tracker>, TrackerError> {
    TRACKER.take().ok_or_else(|| {
        if STARTED.get() {
            TrackerError::Busy
        } else {
            TrackerError::NotStarted
        }
    })
}

pub fn is_started() -> bool {
    with(|_| ()).is_ok()
}

/// Starts the tracker, or applies a new config to the running one (its queue and page state
/// are kept). Returns whether this was the first start, which installs the listeners.
pub fn start(config: Config) -> Result<bool, TrackerError> {
    if !browser::has_window() {
        return Err(TrackerError::NoWindow);
    }
    let endpoint = config.batch_endpoint(|v| String::from(js_sys::encode_uri_component(v)));
    let restarted = with(|t| {
        t.config = config.clone();
        t.endpoint = endpoint.clone();
        t.refresh_permission();
    });
    match restarted {
        Ok(()) => return Ok(false),
        Err(TrackerError::NotStarted) => {}
        Err(e) => return Err(e),
    }
    let store = Store::open();
    let signals = Signals {
        opted_out: store.get(OPT_OUT_KEY).is_some_and(|v| v == "1"),
        consent: store.get(CONSENT_KEY).map(|v| v == "1"),
        do_not_track: browser::PageFacts::now().do_not_track(),
    };
    let mut tracker = Tracker {
        config,
        endpoint,
        store,
        anonymous_id: String::new(),
        user_id: None,
        signals,
        permission: Permission::Off,
        pending: Vec::new(),
        held: Vec::new(),
        page: PageState::default(),
        delivery: DeliveryState::default(),
        session_written_ms: 0,
        warned_full: false,
    };
    tracker.refresh_permission();
    tracker.load_identity();
    TRACKER.set(Some(Box::new(tracker)));
    STARTED.set(true);
    Ok(true)
}

/// Queues an event of `kind` with `properties` (JSON object text). Events are dropped, not
/// refused, when tracking is off or the queue is full: tracking must never break the shop.
///
/// A `page_view` is the one exception: its `properties` is the page category as plain text
/// (`""` for none), and its JSON is written once the event is placed in its session, whose
/// page count and start it carries (`wire::page_view`). A second parameter for that one kind
/// cost the wasm more than this convention.
pub fn record(kind: &str, properties: &str) -> Result<(), TrackerError> {
    let send_now = with(|t| t.record(kind, properties))??;
    if send_now {
        crate::delivery::kick(false);
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
        if t.permission != Permission::Off {
            t.store.set(USER_ID_KEY, user_id);
        }
    })
}

/// Forgets the user id and starts a new anonymous id and session (a shopper logged out).
pub fn reset() -> Result<(), TrackerError> {
    with(|t| {
        t.user_id = None;
        t.store.remove(USER_ID_KEY);
        t.store.remove(ANONYMOUS_ID_KEY);
        t.store.remove(SESSION_KEY);
        t.load_identity();
    })
}

/// `optOut()` (`false`) and `optIn()` (`true`), remembered in storage.
pub fn set_opted_out(out: bool) -> Result<(), TrackerError> {
    with(|t| {
        t.signals.opted_out = out;
        if out {
            t.store.set_choice(OPT_OUT_KEY, "1");
            t.forget_unsent();
        } else {
            t.store.remove(OPT_OUT_KEY);
        }
        t.refresh_permission();
    })
}

/// The shopper's answer in consent mode. A yes queues what was held; a no forgets it.
pub fn set_consent(granted: bool) -> Result<(), TrackerError> {
    let send = with(|t| {
        t.signals.consent = Some(granted);
        t.store
            .set_choice(CONSENT_KEY, if granted { "1" } else { "0" });
        if !granted {
            t.forget_unsent();
        }
        t.refresh_permission();
        t.permission == Permission::Track && !t.pending.is_empty()
    })?;
    if send {
        crate::delivery::kick(false);
    }
    Ok(())
}

pub fn anonymous_id() -> Result<String, TrackerError> {
    with(|t| t.anonymous_id.clone())
}

/// The URL of a recommendations request with `params`, for this shopper and the session now
/// (the stored one while it runs; the anonymous id stands in before the first event). `None`
/// while tracking is off or awaits consent: the request would identify the shopper. A browser
/// outside the sample still gets them: sampling thins the data, not the shop.
pub fn recommendations_url(params: &[(&str, String)]) -> Result<Option<String>, TrackerError> {
    with(|t| {
        if !matches!(t.permission, Permission::Track | Permission::SampledOut) {
            return None;
        }
        let session = t
            .store
            .get(SESSION_KEY)
            .and_then(|s| SessionState::parse(&s))
            .filter(|s| {
                now_ms().saturating_sub(s.last_activity_ms)
                    <= i64::from(t.config.session_timeout_ms)
            })
            .map_or_else(|| t.anonymous_id.clone(), |s| s.id);
        let mut all: Vec<(&str, Option<&str>)> = vec![
            ("anonymous_id", Some(&t.anonymous_id)),
            ("user_id", t.user_id.as_deref()),
            ("session_id", Some(&session)),
        ];
        all.extend(params.iter().map(|(k, v)| (*k, Some(v.as_str()))));
        Some(
            t.config
                .recommendations_url(&all, |v| String::from(js_sys::encode_uri_component(v))),
        )
    })
}

/// This page's events not yet acknowledged by the collector; 0 before `init`.
pub fn queued() -> usize {
    with(|t| t.pending.len() + t.held.len()).unwrap_or(0)
}

impl Tracker {
    /// Works out what may be done now, and acts on a change: storage is only written once
    /// tracking is allowed, and held events are queued then.
    fn refresh_permission(&mut self) {
        let sampled = privacy::sampled_in(&self.anonymous_id, self.config.sample_rate);
        let before = self.permission;
        self.permission = privacy::permission(&self.config, self.signals, sampled);
        match self.permission {
            Permission::Track => {
                self.store.persist();
                if before != Permission::Track {
                    for r in std::mem::take(&mut self.held) {
                        glue::q_put(&r.id, &r.value());
                        self.pending.push(r);
                    }
                }
            }
            Permission::AwaitConsent => self.store.hold(),
            Permission::SampledOut => {
                self.store.persist();
                self.held.clear();
            }
            Permission::Off => {
                self.store.hold();
                self.held.clear();
            }
        }
        // Sampling depends on the id, which a first start has not read yet: decided again
        // in `load_identity`.
    }

    /// Reads (or makes) the anonymous id and user id, then decides the sample.
    fn load_identity(&mut self) {
        self.anonymous_id = match self
            .store
            .get(ANONYMOUS_ID_KEY)
            .filter(|id| is_usable_id(id))
        {
            Some(id) => id,
            None => {
                let id = new_random_id();
                self.store.set(ANONYMOUS_ID_KEY, &id);
                id
            }
        };
        self.user_id = self.store.get(USER_ID_KEY).filter(|id| is_usable_id(id));
        self.refresh_permission();
    }

    /// Drops this page's unsent events from the queue (opt-out, consent refused).
    fn forget_unsent(&mut self) {
        let mut keys = String::new();
        for r in self.pending.drain(..) {
            if !keys.is_empty() {
                keys.push(',');
            }
            keys.push_str(&r.id);
        }
        let _ = glue::q_del(&keys);
        self.held.clear();
    }

    fn record(&mut self, kind: &str, properties: &str) -> Result<bool, TrackerError> {
        if matches!(self.permission, Permission::Off | Permission::SampledOut) {
            return Ok(false);
        }
        let id = new_event_id();
        let json = self.event_json(&id, kind, properties);
        if json.len() + ENVELOPE_BYTES > MAX_BODY_BYTES {
            return Err(TrackerError::Invalid(crate::text::cat(&[
                "retailmind: event is ",
                &json::int_text(json.len() as i64),
                " bytes of JSON, too big to send",
            ])));
        }
        let stored = Stored {
            id,
            batch: None,
            sent_ms: 0,
            json,
        };
        if self.permission == Permission::AwaitConsent {
            if self.held.len() < MAX_HELD_EVENTS {
                self.held.push(stored);
            }
            return Ok(false);
        }
        if self.pending.len() >= MAX_PENDING_EVENTS {
            if !self.warned_full {
                self.warned_full = true;
                browser::warn("retailmind: 1000 events are waiting for the collector; new events are dropped until it answers");
            }
            return Ok(false);
        }
        self.warned_full = false;
        glue::q_put(&stored.id, &stored.value());
        self.pending.push(stored);
        Ok(self.pending.len() >= self.config.batch_size)
    }

    fn event_json(&mut self, id: &str, kind: &str, properties: &str) -> String {
        let now = now_ms();
        let stored = self
            .store
            .get(SESSION_KEY)
            .and_then(|s| SessionState::parse(&s));
        let previous = stored.as_ref().map(|s| s.id.clone());
        // Only page views say `page_view`: custom events are `custom`.
        let page = kind == "page_view";
        // A new session is named after its first event, as the processor names its sessions.
        let session = session::touch(
            stored,
            now,
            i64::from(self.config.session_timeout_ms),
            page,
            || id.to_owned(),
        );
        // Written when it changes or once a second: enough for a 30-minute timeout, and
        // cheaper than a storage write per event. A page count is written at once, for the
        // next page (or tab) to count on.
        if page
            || previous.as_deref() != Some(session.id.as_str())
            || now - self.session_written_ms >= 1000
        {
            self.store.set(SESSION_KEY, &session.to_stored());
            self.session_written_ms = now;
        }
        let context = self.context();
        let page_view;
        wire::event(&wire::Envelope {
            event_id: id,
            anonymous_id: &self.anonymous_id,
            user_id: self.user_id.as_deref(),
            session_id: Some(&session.id),
            timestamp: now,
            context: &context,
            kind,
            properties: if page {
                let category = Some(properties).filter(|c| !c.is_empty());
                page_view = wire::page_view(category, session.pages, session.start_ms);
                &page_view
            } else {
                properties
            },
        })
    }

    /// The page context's JSON, rebuilt only when the URL or title changed.
    fn context(&mut self) -> String {
        let facts = browser::PageFacts::now();
        let (href, title) = (facts.href(), facts.title());
        if self.page.context.is_empty()
            || self.page.context_for.0 != href
            || self.page.context_for.1 != title
        {
            let ctx = facts.context(self.page.referrer.as_deref());
            self.page.context = wire::context(&ctx);
            self.page.context_for = (href, title);
        }
        self.page.context.clone()
    }
}

fn is_usable_id(id: &str) -> bool {
    !id.trim().is_empty() && crate::text::char_end(id, MAX_ID_CHARS).is_none()
}
