// The storefront's one script: renders the page from the catalogue, starts the RetailMind
// tracker through the script-tag stub (`stub.js`, which queues calls until the wasm has loaded)
// and wires the shop events. The page works even if the tracker fails to load.

import {
  CATALOG, CURRENCY, addToCart, cartCount, findProduct, formatPrice, readCart, trackedProduct, writeCart,
} from '/catalog.js';

const page = document.body.dataset.page;
const $ = (sel) => document.querySelector(sel);

/** Calls the tracker (or its stub, which queues the call); a tracking problem must never
 * break the shop. */
function track(fn) {
  if (!window.retailmind) return;
  try {
    const done = fn(window.retailmind);
    if (done && done.catch) done.catch((e) => console.warn('retailmind:', e));
  } catch (e) {
    console.warn('retailmind:', e);
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function tile(p, big = false) {
  return el('div', { class: big ? 'tile tile-big' : 'tile', style: `--hue:${p.hue}` }, p.emoji);
}

function updateCartBadge() {
  const badge = $('#cart-count');
  if (badge) badge.textContent = String(cartCount());
}

// ---- pages ---------------------------------------------------------------------------------

function renderHome() {
  const grid = $('#products');
  const show = (products) => {
    grid.replaceChildren(...products.map((p) => el('a', {
      class: 'card', id: `product-link-${p.product_id}`, href: `product.html?id=${encodeURIComponent(p.product_id)}`,
    }, tile(p), el('span', { class: 'card-name' }, p.name), el('span', { class: 'price' }, formatPrice(p.price_minor)))));
    $('#no-results').hidden = products.length > 0;
  };
  show(CATALOG);
  $('#search').addEventListener('submit', (e) => {
    e.preventDefault();
    const query = $('#q').value.trim();
    const q = query.toLowerCase();
    const hits = CATALOG.filter((p) => !q || p.name.toLowerCase().includes(q) || p.category.includes(q));
    show(hits);
    if (query) track((t) => t.search(query, hits.length));
  });
  $('#clear-search').addEventListener('click', () => {
    $('#q').value = '';
    show(CATALOG);
  });
}

function renderProduct() {
  const id = new URLSearchParams(location.search).get('id');
  const p = findProduct(id);
  if (!p) {
    $('#product').replaceChildren(el('p', {}, 'This product does not exist. ', el('a', { href: '/' }, 'Back to the shop')));
    return null;
  }
  document.title = `${p.name} · RetailMind Outfitters`;
  $('#product-tile').replaceWith(tile(p, true));
  $('#product-name').textContent = p.name;
  $('#product-category').textContent = p.category;
  $('#product-price').textContent = formatPrice(p.price_minor);
  $('#add-to-cart').addEventListener('click', () => {
    addToCart(p.product_id, 1);
    updateCartBadge();
    $('#added').hidden = false;
    track((t) => t.addToCart({ ...trackedProduct(p), quantity: 1 }));
  });
  return p;
}

function cartLines() {
  return readCart().map((l) => ({ ...trackedProduct(findProduct(l.product_id)), quantity: l.quantity }));
}

function renderCart() {
  const lines = cartLines();
  const total = lines.reduce((sum, l) => sum + l.price_minor * l.quantity, 0);
  const list = $('#cart-lines');
  list.replaceChildren(...lines.map((l) => el('li', { class: 'line' },
    tile(findProduct(l.product_id)),
    el('span', { class: 'line-name' }, l.name),
    el('span', { class: 'qty' }, `× ${l.quantity}`),
    el('span', { class: 'price' }, formatPrice(l.price_minor * l.quantity)),
    removeButton(l))));
  $('#cart-total').textContent = formatPrice(total);
  $('#cart-empty').hidden = lines.length > 0;
  $('#cart-summary').hidden = lines.length === 0;
}

function removeButton(line) {
  const button = el('button', { class: 'link-button', id: `remove-${line.product_id}` }, 'Remove');
  button.addEventListener('click', () => {
    writeCart(readCart().filter((l) => l.product_id !== line.product_id));
    track((t) => t.removeFromCart(line));
    renderCart();
    updateCartBadge();
  });
  return button;
}

function wireCheckout() {
  $('#checkout').addEventListener('click', () => {
    const items = cartLines();
    if (items.length === 0) return;
    const value = items.reduce((sum, l) => sum + l.price_minor * l.quantity, 0);
    const orderId = `O${Date.now().toString(36).toUpperCase()}`;
    track((t) => {
      t.checkoutStarted({ value_minor: value, currency: CURRENCY, items });
      t.purchase({ order_id: orderId, revenue_minor: value, currency: CURRENCY, items });
    });
    writeCart([]);
    renderCart();
    updateCartBadge();
    $('#thanks').hidden = false;
    $('#order-id').textContent = orderId;
  });
}

/** "Recommended for you": asks the collector through the tracker, shows the items, and tracks
 * the impression and any click with the recommendation id, so the lake can attribute them. */
function showRecommendations(placement, contextItem) {
  if (!window.retailmind || !window.retailmind.recommendations) return;
  const cart = readCart().map((l) => l.product_id);
  Promise.resolve(window.retailmind.recommendations({ placement, contextItem, cart, n: 4 }))
    .then((answer) => {
      const items = (answer.items || []).map((i) => findProduct(i.product_id)).filter(Boolean);
      if (items.length === 0) return;
      const id = answer.recommendation_id;
      $('#recommended-items').replaceChildren(...items.map((p, position) => {
        const link = el('a', {
          class: 'card', id: `recommended-${p.product_id}`,
          href: `product.html?id=${encodeURIComponent(p.product_id)}`,
        }, tile(p), el('span', { class: 'name' }, p.name), el('span', { class: 'price' }, formatPrice(p.price_minor)));
        link.addEventListener('click', () => track((t) => t.track('recommendation_click', {
          recommendation_id: id, product_id: p.product_id, position, placement,
        })));
        return link;
      }));
      $('#recommended').hidden = false;
      track((t) => t.track('recommendation_impression', {
        recommendation_id: id, placement, strategy: answer.strategy,
        product_ids: items.map((p) => p.product_id),
      }));
    })
    .catch((e) => console.warn('retailmind: no recommendations', e));
}

// ---- start -----------------------------------------------------------------------------------

updateCartBadge();
let product = null;
if (page === 'home') renderHome();
if (page === 'product') product = renderProduct();
if (page === 'cart') {
  renderCart();
  wireCheckout();
}

track((t) => t.init(window.RETAILMIND_CONFIG));
if (product) track((t) => t.productView(trackedProduct(product)));
if (product) showRecommendations('product', product.product_id);
if (page === 'cart') showRecommendations('cart');
