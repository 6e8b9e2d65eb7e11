// RetailMind script-tag stub: queues calls until the tracker has loaded, then replays them in
// order. Never throws: without wasm or with the tracker blocked, calls just go nowhere.
// <script src="/stub.js" data-pkg="/pkg/retailmind_sdk.js"></script>
(function (w, d) {
  var q = [];
  var mod;
  var P = w.Promise;
  var rm = (w.retailmind = w.retailmind || {});
  var s = d.currentScript;
  var pkg = (s && s.getAttribute('data-pkg')) || '/pkg/retailmind_sdk.js';
  function call(c) {
    try {
      P.resolve(mod[c[0]].apply(null, c[1])).then(c[2], c[3]);
    } catch (e) {
      c[3](e);
    }
  }
  // No tracker coming: waiting calls resolve, later ones at once.
  function fail(e) {
    if (q) q.forEach(function (c) { c[2](); });
    q = null;
    if (e && w.console) console.warn('retailmind: tracker not loaded', e);
  }
  'init page track identify reset productView addToCart removeFromCart checkoutStarted purchase search optOut optIn setConsent flush queued anonymousId recommendations'
    .split(' ')
    .forEach(function (m) {
      rm[m] = function () {
        var a = arguments;
        // No Promise: too old a browser for the tracker anyway.
        return P && new P(function (ok, no) {
          var c = [m, a, ok, no];
          // Loaded: straight through (a page may keep this object).
          mod ? call(c) : q ? q.push(c) : ok();
        });
      };
    });
  try {
    if (typeof WebAssembly != 'object' || !P) throw 0;
    // Through Function, so a browser without dynamic import fails here, inside the try, rather
    // than refusing to parse the stub.
    new Function('p', 'return import(p)')(pkg)
      .then(function (m) {
        return m.default().then(function () {
          mod = m;
          w.retailmind = m;
          w.retailmindReady = true;
          q.forEach(call);
          q = [];
        });
      })
      .catch(fail);
  } catch (e) {
    fail(e);
  }
})(window, document);
