//! Where the tracker remembers small things between page loads (ids, session, privacy choices):
//! localStorage, or this page's memory when storage is unavailable (blocked cookies, some
//! private modes, quota exceeded) or not yet allowed (consent mode). The event queue itself
//! lives in `glue.js`.

use crate::glue::{ls_get, ls_set};

/// The browser's anonymous id (made once, kept until `reset()`).
pub const ANONYMOUS_ID_KEY: &str = "retailmind.anonymous_id";
/// The current session as `<id>|<last activity ms>` (see `session.rs`).
pub const SESSION_KEY: &str = "retailmind.session";
/// The id given to `identify`.
pub const USER_ID_KEY: &str = "retailmind.user_id";
/// `"1"` after `optOut()`.
pub const OPT_OUT_KEY: &str = "retailmind.opt_out";
/// `"1"` or `"0"`: the last `setConsent` answer.
pub const CONSENT_KEY: &str = "retailmind.consent";

pub struct Store {
    /// Writes go to memory only (consent not given yet); reads still see localStorage, where
    /// only earlier choices can be.
    memory_only: bool,
    /// A handful of keys: a list is smaller in the wasm than a hash map.
    memory: Vec<(&'static str, String)>,
}

impl Store {
    /// Where storage is blocked (even reading `window.localStorage` throws), memory it is.
    pub fn open() -> Store {
        Store {
            memory_only: false,
            memory: Vec::new(),
        }
    }

    /// Keeps new values in memory until [`Store::persist`].
    pub fn hold(&mut self) {
        self.memory_only = true;
    }

    /// Writes what was held to localStorage, and everything from now on.
    pub fn persist(&mut self) {
        self.memory_only = false;
        for (k, v) in &self.memory {
            ls_set(k, Some(v));
        }
    }

    /// This page's memory first (it holds what was written last), then localStorage, so tabs
    /// see each other's session.
    pub fn get(&self, key: &'static str) -> Option<String> {
        let mine = self
            .memory
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        if self.memory_only {
            mine.or_else(|| ls_get(key))
        } else {
            ls_get(key).or(mine)
        }
    }

    pub fn set(&mut self, key: &'static str, value: &str) {
        match self.memory.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.memory.push((key, value.to_owned())),
        }
        if !self.memory_only {
            // A full or blocked storage leaves the value in memory for this page.
            ls_set(key, Some(value));
        }
    }

    /// Writes `value` to localStorage even while holding: for the privacy choices themselves,
    /// which must outlive the page.
    pub fn set_choice(&mut self, key: &'static str, value: &str) {
        let held = self.memory_only;
        self.memory_only = false;
        self.set(key, value);
        self.memory_only = held;
    }

    pub fn remove(&mut self, key: &'static str) {
        self.memory.retain(|(k, _)| *k != key);
        ls_set(key, None);
    }
}
