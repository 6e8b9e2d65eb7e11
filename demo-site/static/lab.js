// The lab page: starts the tracker with the demo's config plus overrides from `?cfg=<json>`,
// and routes its links with the History API like a single-page app's router.

import init, * as rm from '/pkg/retailmind_sdk.js';

const params = new URLSearchParams(location.search);
let overrides = {};
try {
  overrides = JSON.parse(params.get('cfg') || '{}');
} catch (e) {
  console.warn('lab: bad cfg', e);
}

// `?exit=keepalive` takes fetchLater away, as in browsers without it, so a leaving page sends
// with keepalive fetch; `?exit=beacon` also makes keepalive fetch throw once the page is
// leaving, so only sendBeacon is left. This listener comes before the tracker's.
const exit = params.get('exit');
if (exit === 'keepalive' || exit === 'beacon') window.fetchLater = undefined;
if (exit === 'beacon') {
  const fetch = window.fetch;
  let leaving = false;
  const leave = () => { leaving = leaving || document.visibilityState === 'hidden'; };
  addEventListener('pagehide', () => { leaving = true; });
  document.addEventListener('visibilitychange', leave);
  window.fetch = (url, init) => {
    if (leaving && init && init.keepalive) throw new TypeError('lab: no keepalive fetch');
    return fetch(url, init);
  };
}

// `?storage=local` takes IndexedDB away, so the queue lives in localStorage; `?storage=memory`
// blocks localStorage too, as some private modes and cookie settings do.
const storage = params.get('storage');
if (storage === 'local' || storage === 'memory') {
  Object.defineProperty(window, 'indexedDB', { value: undefined, configurable: true });
}
if (storage === 'memory') {
  Object.defineProperty(window, 'localStorage', {
    get() { throw new DOMException('lab: storage blocked', 'SecurityError'); },
    configurable: true,
  });
}

// What the page warned about, for the tests to read.
window.labWarnings = [];
const warn = console.warn;
console.warn = (...args) => {
  window.labWarnings.push(args.map(String).join(' '));
  warn.apply(console, args);
};

/** The URL of `view` keeping the other query parameters (the lab's config). */
window.labUrl = (view) => {
  const p = new URLSearchParams(location.search);
  p.set('view', view);
  return '?' + p;
};

/** A router's navigation: replaceState for the current entry's state, then pushState. */
window.labNavigate = (view) => {
  history.replaceState({ scroll: scrollY }, '', location.href);
  history.pushState({ view }, '', window.labUrl(view));
  document.title = 'Lab · ' + view;
  document.getElementById('view').textContent = 'View ' + view;
};

document.addEventListener('click', (e) => {
  const link = e.target.closest('a[data-spa]');
  if (!link) return;
  e.preventDefault();
  window.labNavigate(new URL(link.href).searchParams.get('view'));
});

try {
  await init();
  rm.init({ ...window.RETAILMIND_CONFIG, flushIntervalMs: 200, ...overrides });
  window.retailmind = rm;
  window.retailmindReady = true;
  document.body.dataset.ready = 'yes';
} catch (e) {
  window.labError = String(e);
  document.body.dataset.ready = window.labError;
  console.error('lab: tracker did not start', e);
}
