// The demo storefront with the tracker taken from its npm package (wasm-pack's `bundler`
// target) and bundled by webpack, as a shop's build would do it. It replaces the script-tag stub
// and `/app.js` on the same pages (the demo server swaps the tags): the tracker is ready before
// the storefront's script runs, so nothing needs queueing.
import * as retailmind from 'retailmind-sdk';

window.retailmind = retailmind;
// The storefront's own script, served as it is, not bundled. "Ready", as with the stub, once
// both the tracker and the page are there.
import(/* webpackIgnore: true */ '/app.js').then(() => {
  window.retailmindReady = true;
});
