// The tracker's browser edge, imported by the wasm (see src/glue.rs). Written by hand because
// these APIs cost far fewer bytes here than as wasm-bindgen imports plus Rust futures:
// - the durable queue: IndexedDB, else localStorage, else this page's memory;
// - the flush lock: Web Locks, else a lease in localStorage;
// - requests: fetch while the page lives, fetchLater → keepalive fetch → sendBeacon on exit;
// - history hooks for single-page apps, and a channel to the other tabs.
// Nothing here throws to the caller: a blocked API degrades to the next one.

const DB = 'retailmind';
const STORE = 'q';
const LS_PREFIX = 'retailmind.q.';
const LEASE = 'retailmind.lease';
const TYPE = { 'Content-Type': 'text/plain;charset=UTF-8' };
// Browsers allow 64 KiB of keepalive bodies in flight per page; keep a little for headers.
const KEEPALIVE_BUDGET = 63000;

let db;
let mode = 0; // 0 IndexedDB, 1 localStorage, 2 memory
// From pagehide until the page shows again no IndexedDB work starts: a page frozen in the
// back/forward cache in the middle of a transaction would block the next page's queue (its
// transactions on the same store wait for ours). Writes go to localStorage meanwhile.
let leaving = false;
addEventListener('pagehide', () => {
  leaving = true;
});
addEventListener('pageshow', () => {
  leaving = false;
});
// A transaction that does not finish in this time (a frozen page holding the store) fails the
// step: the send cycle ends, lets go of the lock and a later one tries again.
const IDB_PATIENCE_MS = 5000;
const patient = (promise, fallback) =>
  new Promise((done, fail) => {
    const t = setTimeout(() => (fallback ? done(fallback()) : fail(new Error('IndexedDB did not answer'))), IDB_PATIENCE_MS);
    promise.then(
      (v) => {
        clearTimeout(t);
        done(v);
      },
      (e) => {
        clearTimeout(t);
        fail(e);
      },
    );
  });
const memory = new Map();
let writes = [];
let keepaliveBytes = 0;
const tab = Math.random().toString(36).slice(2);

function local() {
  try {
    const s = localStorage;
    s.setItem(LEASE + '.t', '1');
    s.removeItem(LEASE + '.t');
    return s;
  } catch (e) {
    return null;
  }
}

function open() {
  if (!db) {
    // Opening can wait on another page's connection (one frozen mid-upgrade in the
    // back/forward cache): past the patience, this page keeps its queue in localStorage.
    db = patient(new Promise((done) => {
      try {
        const r = indexedDB.open(DB, 1);
        r.onupgradeneeded = () => r.result.createObjectStore(STORE);
        r.onsuccess = () => done(r.result);
        r.onerror = r.onblocked = () => done(null);
      } catch (e) {
        done(null);
      }
    }), () => null).then((d) => {
      mode = d ? 0 : local() ? 1 : 2;
      return d;
    });
  }
  return db;
}

function idb(d, fn) {
  if (leaving) return Promise.reject(new Error('page is leaving'));
  return patient(new Promise((done, fail) => {
    try {
      const t = d.transaction(STORE, 'readwrite');
      fn(t.objectStore(STORE));
      t.oncomplete = done;
      t.onerror = t.onabort = () => fail(t.error);
    } catch (e) {
      fail(e);
    }
  }));
}

/** Queues `[key, value]` pairs for writing; all puts of one task go in one transaction. */
export function qPut(key, value) {
  writes.push([key, value]);
  if (writes.length === 1) queueMicrotask(flushWrites);
}

function flushWrites() {
  const batch = writes;
  writes = [];
  const keep = () => {
    const s = local();
    batch.forEach(([k, v]) => {
      memory.set(k, v);
      try {
        if (s) s.setItem(LS_PREFIX + k, v);
      } catch (e) {
        // Full: the value stays in memory for this page.
      }
    });
  };
  return open()
    .then((d) => (d && !leaving ? idb(d, (s) => batch.forEach(([k, v]) => s.put(v, k))) : keep()))
    // IndexedDB failed, timed out or the page is leaving: localStorage (which qAll moves back
    // into IndexedDB) keeps the records.
    .catch(keep);
}

/** Stores `[key, value]` synchronously, for a page that is going away: an IndexedDB write begun
 * in `pagehide` may be cut off with the page, a localStorage write is done when it returns.
 * `qAll` moves such records back into IndexedDB. */
export function qPutNow(key, value) {
  const s = local();
  try {
    if (s) return s.setItem(LS_PREFIX + key, value);
  } catch (e) {
    // Full: the asynchronous write is the remaining chance.
  }
  qPut(key, value);
}

/** The localStorage entries whose keys start with `prefix` (the notes of sent batches, which
 * the Rust side writes and reads), as lines of `<rest of the key>,<value>`. */
export function sentNotes(prefix) {
  const out = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k && k.startsWith(prefix)) out.push(k.slice(prefix.length) + ',' + localStorage.getItem(k));
    }
  } catch (e) {
    // No storage, no notes.
  }
  return out.join('\n');
}

/** Every stored record as `[key, value]`, keys in ascending order. */
export function qAll() {
  return flushWrites().then(open).then((d) => {
    const s = local();
    const saved = new Map();
    if (s) {
      for (let i = 0; i < s.length; i++) {
        const k = s.key(i);
        if (k && k.startsWith(LS_PREFIX)) saved.set(k.slice(LS_PREFIX.length), s.getItem(k));
      }
    }
    if (!d) {
      saved.forEach((v, k) => memory.set(k, v));
      return [...memory].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    }
    if (leaving) return [...saved];
    return patient(new Promise((done) => {
      try {
        const t = d.transaction(STORE, 'readwrite');
        const st = t.objectStore(STORE);
        // Records saved synchronously at a page exit win over the (older) IndexedDB copy.
        saved.forEach((v, k) => st.put(v, k));
        const k = st.getAllKeys();
        const v = st.getAll();
        t.oncomplete = () => {
          saved.forEach((_, key) => s.removeItem(LS_PREFIX + key));
          done(k.result.map((key, i) => [key, v.result[i]]));
        };
        t.onerror = t.onabort = () => done([...saved]);
      } catch (e) {
        done([...saved]);
      }
    }), () => [...saved]);
  });
}

/** Removes the records with these keys (comma-separated). */
export function qDel(list) {
  const keys = list.split(',');
  return flushWrites().then(open).then((d) => {
    const s = local();
    keys.forEach((k) => {
      memory.delete(k);
      if (s) s.removeItem(LS_PREFIX + k);
    });
    if (d) return idb(d, (st) => keys.forEach((k) => st.delete(k)));
  }).catch(() => {});
}

// A page that goes into the back/forward cache holding the lock would be evicted as soon as
// another page asks for it ("weblocks-contention"): the lock is let go at pagehide.
let hidden;
const hide = () => {
  let release;
  const p = new Promise((done) => {
    release = done;
  });
  addEventListener('pagehide', () => release(true), { once: true });
  hidden = p.then(() => {
    hide();
    return true;
  });
};
hide();

/** Runs `fn` (returning a promise) holding the flush lock. `wait`: queue for the lock rather
 * than give up when another tab holds it. Resolves true if `fn` ran. */
function withLock(wait, fn) {
  const run = () => Promise.resolve().then(fn).then(() => true, () => true);
  const locks = navigator.locks;
  if (locks) {
    return locks.request('retailmind-flush', { ifAvailable: !wait }, (l) => (l ? Promise.race([run(), hidden]) : false))
      .catch(() => false);
  }
  const s = local();
  if (!s) return run();
  const now = Date.now();
  const [owner, until] = (s.getItem(LEASE) || '|0').split('|');
  if (owner !== tab && +until > now) return Promise.resolve(false);
  // A lease outlives a tab that died holding it by at most 30 s.
  s.setItem(LEASE, tab + '|' + (now + 30000));
  return run().then((ran) => {
    if ((s.getItem(LEASE) || '').startsWith(tab + '|')) s.removeItem(LEASE);
    return ran;
  });
}

/** POSTs `body` while the page lives. Resolves `[status, retryAfterSeconds]`, rejects with a
 * reason when there was no answer. */
function post(url, body) {
  const keepalive = keepaliveBytes + body.length <= KEEPALIVE_BUDGET;
  if (keepalive) keepaliveBytes += body.length;
  const done = () => {
    if (keepalive) keepaliveBytes -= body.length;
  };
  // A request that never answers must not hold the flush lock for good.
  const signal = AbortSignal.timeout ? AbortSignal.timeout(30000) : undefined;
  return fetch(url, { method: 'POST', body, headers: TYPE, keepalive, credentials: 'omit', signal }).then(
    (r) => {
      const answer = () => {
        done();
        const after = r.headers.get('Retry-After');
        let secs = after == null ? NaN : +after;
        if (after && isNaN(secs)) secs = (Date.parse(after) - Date.now()) / 1000;
        return [r.status, secs > 0 ? secs : 0];
      };
      // Read to its end: until then Chromium counts a keepalive request against the page's
      // 64 KiB budget, and once that is full every keepalive fetch fails.
      return r.arrayBuffer().then(answer, answer);
    },
    (e) => {
      done();
      throw String((e && e.message) || e);
    },
  );
}

/** Hands `body` to the browser for a page that is going away, synchronously. True if some
 * mechanism took it. The events stay queued: only a later answer removes them. */
export function postNow(url, body) {
  try {
    if (typeof fetchLater === 'function') {
      fetchLater(url, { method: 'POST', body, headers: TYPE, activateAfter: 0 });
      return true;
    }
  } catch (e) {
    // Over fetchLater's quota (or refused by policy): try the next way.
  }
  if (keepaliveBytes + body.length <= KEEPALIVE_BUDGET) {
    try {
      keepaliveBytes += body.length;
      fetch(url, { method: 'POST', body, headers: TYPE, keepalive: true, credentials: 'omit' })
        .catch(() => {})
        .then(() => {
          keepaliveBytes -= body.length;
        });
      return true;
    } catch (e) {
      keepaliveBytes -= body.length;
    }
  }
  try {
    return navigator.sendBeacon(url, body);
  } catch (e) {
    return false;
  }
}

/** GETs `url` (no cookies) and resolves with its JSON, or rejects with an Error carrying the
 * collector's message: it names the parameter that was wrong. */
export function getJson(url) {
  return fetch(url, { credentials: 'omit' }).then((r) =>
    r.json().then(
      (body) => {
        if (r.ok) return body;
        const why = (body && body.error && body.error.message) || 'HTTP ' + r.status;
        throw new Error('retailmind: ' + why);
      },
      () => {
        throw new Error('retailmind: HTTP ' + r.status);
      },
    ),
  );
}

/** Calls the Rust side (`hub`) with `code` after pushState/replaceState, popstate and Navigation
 * API navigations. */
export function hookHistory(code) {
  const h = history;
  const cb = () => hub(code);
  for (const name of ['pushState', 'replaceState']) {
    const orig = h[name];
    h[name] = function (...args) {
      const r = orig.apply(this, args);
      cb();
      return r;
    };
  }
  addEventListener('popstate', cb);
  if (window.navigation) navigation.addEventListener('navigatesuccess', cb);
}

let channel;
/** Messages from the other tabs of this origin (`BroadcastChannel`) go to `hub(code, data)`.
 * Closed while the page is hidden away: a message to a page in the back/forward cache evicts
 * it. */
export function tabs(code) {
  const open = () => {
    try {
      channel = new BroadcastChannel('retailmind');
      channel.onmessage = (m) => hub(code, m.data);
    } catch (e) {
      channel = null;
    }
  };
  open();
  addEventListener('pagehide', () => {
    if (channel) channel.close();
    channel = null;
  });
  addEventListener('pageshow', (e) => {
    if (e.persisted && !channel) open();
  });
}

export function tell(message) {
  try {
    if (channel) channel.postMessage(message);
  } catch (e) {
    // Another tab misses a hint; it only saves a duplicate send.
  }
}

let zone;
function lookUpZone() {
  if (zone === undefined) {
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
    } catch (e) {
      zone = '';
    }
  }
}
// A page's first Intl call loads the locale data: 15-25 ms measured in headless Chromium, more
// than the rest of init() together. Done in a task of its own while the wasm is still being
// fetched and compiled, it is off init's task; an init that comes first looks it up itself.
setTimeout(lookUpZone, 0);

let search;
let query;
/** What an event's context is made of, in one call: `[href, query, referrer, title, userAgent,
 * screenWidth, screenHeight, language, timeZone, doNotTrack, globalPrivacyControl]`, `query` the
 * parameters of `location.search` as the browser decodes them, `[name, value, name, value, …]`
 * (leading `?`s stripped; decoded again only when the search changes, not for every event). The
 * rules applied to them are Rust's. */
export function pageFacts() {
  lookUpZone();
  const s = window.screen || {};
  const n = navigator;
  if (location.search !== search) {
    search = location.search;
    query = [...new URLSearchParams(search.replace(/^\?+/, ''))].flat();
  }
  return [location.href, query, document.referrer, document.title, n.userAgent || '',
    s.width || 0, s.height || 0, n.language || '', zone, n.doNotTrack, n.globalPrivacyControl];
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// The Rust side: one call, `hub(code, arg, n)`, for every listener, timer and step of the send
// cycle. Codes 0-2 are the cycle's. It is the wasm's plain export `hub(code, n)`, not a
// wasm-bindgen closure (whose machinery costs the wasm and its glue more than the rest of this
// file's plumbing): the Rust side takes `arg` with `hubArg()` before anything else, and hands its
// answer to `hubAnswer` last, so a call made while another runs cannot mix theirs up.
let wasm;
let arg;
let answer;
/** `exports`: the wasm instance's exports. */
export function setHub(exports) {
  wasm = exports;
}
function hub(code, a, n) {
  arg = a;
  wasm.hub(code, n);
  const r = answer;
  arg = answer = undefined;
  return r;
}
export const hubArg = () => arg;
export function hubAnswer(v) {
  answer = v;
}

/** `hub(code, event)` on every `name` event of the document (`doc`) or the window. */
export function listen(code, name, doc, capture) {
  (doc ? document : window).addEventListener(name, (e) => hub(code, e), capture);
}

let timer;
/** `hub(code)` every `ms`, replacing the previous timer. */
export function every(code, ms) {
  clearInterval(timer);
  timer = setInterval(() => hub(code), ms);
}

/** `hub(code)` once the current task is over. */
export function soon(code) {
  setTimeout(() => hub(code), 0);
}

export const hasWindow = () => typeof window == 'object';

/** `obj[key]`, or undefined where reading it throws (not an object, a throwing getter). */
export function get(obj, key) {
  try {
    return Reflect.get(obj, key);
  } catch (e) {
    // Nothing to read.
  }
}

/** The browser's own `JSON.stringify(value)`; undefined where it cannot (a cycle). */
export function json(value) {
  try {
    return JSON.stringify(value);
  } catch (e) {
    // Not JSON.
  }
}

/** Fills `bytes` from `crypto.getRandomValues`; false where Web Crypto is missing. */
export function randomFill(bytes) {
  try {
    crypto.getRandomValues(bytes);
    return true;
  } catch (e) {
    return false;
  }
}

/** localStorage for the tracker's small settings: null where there is nothing or no storage. */
export function lsGet(k) {
  try {
    return localStorage.getItem(k);
  } catch (e) {
    return null;
  }
}

/** Writes `v` under `k`, or removes `k` when `v` is undefined. Full or blocked storage is
 * ignored: the tracker keeps the value in memory. */
export function lsSet(k, v) {
  try {
    v === undefined ? localStorage.removeItem(k) : localStorage.setItem(k, v);
  } catch (e) {
    // Memory keeps it.
  }
}

/** `[visible, focused, scrollY, innerHeight, page height]` now, for engagement. */
export function viewFacts() {
  const d = document;
  const e = d.documentElement;
  return [d.visibilityState == 'visible', d.hasFocus(), scrollY, innerHeight, e ? e.scrollHeight : 0];
}

/** The closest element around a click's `target` (the target itself, or a text node's parent)
 * that matches `selector`, unless it lies in one matching `ignore`; else null. The selectors are
 * the Rust side's rules. */
export function closest(target, selector, ignore) {
  try {
    const el = (target.closest ? target : target.parentElement).closest(selector);
    return el && !el.closest(ignore) ? el : null;
  } catch (e) {
    return null;
  }
}

/** What a click is made of, in one call: `[tagName, text, id, href, location.host, ...values of
 * the attributes `names` (comma-separated)]` of `el`, and with a `prefix` an object of the
 * attributes starting with it (name after the prefix: value). Which attributes: the Rust side's
 * rules. `text` (with `withText`): `innerText`, which follows the layout, else `textContent`
 * (SVG); `href`: the link as the browser resolved it, if a string. */
export function elementFacts(el, withText, names, prefix) {
  const out = [el.tagName, withText ? el.innerText ?? el.textContent : null, el.id, el.href, location.host];
  for (const n of names.split(',')) out.push(el.getAttribute(n));
  if (prefix) {
    // No prototype: an attribute `<prefix>__proto__` is a property like any other.
    const props = Object.create(null);
    for (const a of el.attributes) if (a.name.startsWith(prefix)) props[a.name.slice(prefix.length)] = a.value;
    out.push(props);
  }
  return out;
}

let last = Promise.resolve();
/** A send cycle, after this page's previous one, under the flush lock: the queue is read, the
 * Rust side (`hub`) picks and seals the next batch (`<endpoint>\n<body>`), it is posted, and its
 * answer (status and Retry-After, or the reason there was none) settled, until nothing is due or
 * a send failed. Rejects with the reason the cycle stopped. */
export function send(patient) {
  // A page that is leaving stops its cycle: what is left goes with the exit send and the queue.
  // Records go over as lines of `key\tvalue`: stored JSON holds no raw tab or line break.
  const step = () => (leaving ? null : qAll().then((records) => {
    const next = hub(0, records.map((r) => r[0] + '\t' + r[1]).join('\n'));
    if (typeof next === 'number') return patient ? sleep(next + 50).then(step) : null;
    if (!next) return null;
    const at = next.indexOf('\n');
    // In an array: a promise returned from a `then` callback would be adopted, not passed on.
    return post(next.slice(0, at), next.slice(at + 1))
      .then((a) => [hub(1, a[0], a[1])], (e) => [hub(1, e || 'error')])
      .then((r) => r[0] && r[0].then(step));
  }));
  const done = () => hub(2);
  const run = () => withLock(patient, step).then(done, done);
  const p = last.then(run, run);
  last = p;
  return p.then((why) => {
    if (why) throw new Error(why);
  });
}
