// The demo shop's catalogue and its cart (kept in localStorage). Prices are integer cents, as in
// RetailMind events.

export const CURRENCY = 'EUR';

export const CATALOG = [
  { product_id: 'P1001', name: 'Trail Runner Shoes', category: 'shoes', price_minor: 8990, emoji: '👟', hue: 12 },
  { product_id: 'P1002', name: 'Merino Hoodie', category: 'apparel', price_minor: 6450, emoji: '🧥', hue: 210 },
  { product_id: 'P1003', name: 'Canvas Backpack', category: 'bags', price_minor: 4900, emoji: '🎒', hue: 32 },
  { product_id: 'P1004', name: 'Insulated Bottle', category: 'outdoor', price_minor: 2490, emoji: '🧴', hue: 160 },
  { product_id: 'P1005', name: 'Wool Beanie', category: 'apparel', price_minor: 1990, emoji: '🧢', hue: 280 },
  { product_id: 'P1006', name: 'Camp Lantern', category: 'outdoor', price_minor: 3590, emoji: '🏮', hue: 48 },
];

export function findProduct(id) {
  return CATALOG.find((p) => p.product_id === id);
}

/** The product as RetailMind's `Product` (no display-only fields). */
export function trackedProduct(p) {
  return {
    product_id: p.product_id,
    name: p.name,
    category: p.category,
    price_minor: p.price_minor,
    currency: CURRENCY,
  };
}

export function formatPrice(minor) {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: CURRENCY }).format(minor / 100);
}

const CART_KEY = 'demo.cart';

/** `[{product_id, quantity}]`; an unreadable cart is an empty one. */
export function readCart() {
  try {
    const lines = JSON.parse(localStorage.getItem(CART_KEY) || '[]');
    return Array.isArray(lines) ? lines.filter((l) => findProduct(l.product_id) && l.quantity > 0) : [];
  } catch {
    return [];
  }
}

export function writeCart(lines) {
  try {
    localStorage.setItem(CART_KEY, JSON.stringify(lines));
  } catch {
    // Storage blocked: the cart lives only as long as the page.
  }
}

export function addToCart(productId, quantity = 1) {
  const lines = readCart();
  const line = lines.find((l) => l.product_id === productId);
  if (line) line.quantity += quantity;
  else lines.push({ product_id: productId, quantity });
  writeCart(lines);
  return lines;
}

export function cartCount() {
  return readCart().reduce((n, l) => n + l.quantity, 0);
}
