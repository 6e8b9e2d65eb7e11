// RetailMind script-tag stub: queues calls until the tracker has loaded, then replays them in
// order. Never throws: without wasm or with the tracker blocked, calls just go nowhere.
// <script src="/stub.js" data-pkg="/pkg/retailmind_sdk.js"></script>
(function (w, d) {
  var q = [];
  var rm = (w.retailmind = w.retailmind || {});
  var s = d.currentScript;
  var pkg = (s && s.getAttribute('data-pkg')) || '/pkg/retailmind_sdk.js';
  'init page track identify reset productView addToCart removeFromCart checkoutStarted purchase search optOut optIn setConsent flush queued anonymousId recommendations'
    .split(' ')
    .forEach(function (m) {
      rm[m] = function () {
        var a = arguments;
        return new Promise(function (ok, no) {
          q.push([m, a, ok, no]);
        });
      };
    });
  try {
    if (typeof WebAssembly != 'object') return;
    // Through Function, so a browser without dynamic import fails here, inside the try, rather
    // than refusing to parse the stub.
    new Function('p', 'return import(p)')(pkg)
      .then(function (mod) {
        return mod.default().then(function () {
          w.retailmind = mod;
          w.retailmindReady = true;
          q.forEach(function (c) {
            try {
              Promise.resolve(mod[c[0]].apply(null, c[1])).then(c[2], c[3]);
            } catch (e) {
              c[3](e);
            }
          });
          q = [];
        });
      })
      .catch(function (e) {
        console.warn('retailmind: tracker not loaded', e);
      });
  } catch (e) {
    // Old browser without dynamic import: stay a stub.
  }
})(window, document);
