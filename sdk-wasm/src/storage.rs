//! Where the tracker remembers ids between page loads: localStorage, or this page's memory when
//! storage is unavailable (blocked cookies, some private modes, quota exceeded).

use web_sys::{Storage, Window};

/// The browser's anonymous id (made once, kept for good).
pub const ANONYMOUS_ID_KEY: &str = "retailmind.anonymous_id";
/// The current session as `<id>|<last activity ms>` (see `session.rs`).
pub const SESSION_KEY: &str = "retailmind.session";
/// The id given to `identify`.
pub const USER_ID_KEY: &str = "retailmind.user_id";

pub struct Store {
    local: Option<Storage>,
    /// Three keys at most: a list is smaller in the wasm than a hash map.
    memory: Vec<(&'static str, String)>,
}

impl Store {
    /// Even reading `window.localStorage` throws where storage is blocked; then memory it is.
    pub fn open(window: &Window) -> Store {
        Store {
            local: window.local_storage().ok().flatten(),
            memory: Vec::new(),
        }
    }

    /// localStorage first, so tabs see each other's session; this page's memory when storage
    /// failed or lost the value.
    pub fn get(&self, key: &'static str) -> Option<String> {
        self.local
            .as_ref()
            .and_then(|s| s.get_item(key).ok().flatten())
            .or_else(|| {
                self.memory
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            })
    }

    pub fn set(&mut self, key: &'static str, value: &str) {
        match self.memory.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.memory.push((key, value.to_owned())),
        }
        if let Some(local) = &self.local {
            // A full or blocked storage leaves the value in memory for this page.
            let _ = local.set_item(key, value);
        }
    }
}
