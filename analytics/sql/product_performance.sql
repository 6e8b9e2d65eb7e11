-- Product performance: views, viewers, add-to-cart events and rate, and what was sold
-- (orders, units, revenue from the purchase lines) with the conversion of views to orders.
-- A row per product and currency, as minor units of two currencies do not add up: a product
-- a shop prices in two currencies has a row for each, its views and cart adds in the currency
-- they showed (none when the event had no price). An order's lines count once, from its first
-- purchase event, even if the shop reported it again.
WITH interactions AS (
    SELECT product_id,
           currency,
           SUM(CASE WHEN event_type = 'product_view' THEN 1 ELSE 0 END) AS views,
           COUNT(DISTINCT CASE WHEN event_type = 'product_view' THEN anonymous_id END) AS viewers,
           SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds
    FROM events
    WHERE event_type IN ('product_view', 'add_to_cart')
      AND product_id IS NOT NULL
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY product_id, currency
),
purchase_lines AS (
    SELECT product_id,
           currency,
           order_id,
           quantity,
           price_minor,
           -- Every line of an order's first report ranks 1.
           RANK() OVER (PARTITION BY order_id ORDER BY timestamp_ms, event_id) AS report
    FROM event_items
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
),
sold AS (
    SELECT product_id,
           currency,
           COUNT(DISTINCT order_id) AS orders,
           SUM(quantity) AS units,
           SUM(price_minor * quantity) AS revenue_minor
    FROM purchase_lines
    WHERE report = 1
    GROUP BY product_id, currency
),
products AS (
    SELECT product_id, currency FROM interactions
    UNION
    SELECT product_id, currency FROM sold
)
SELECT p.product_id,
       p.currency,
       COALESCE(i.views, 0) AS views,
       COALESCE(i.viewers, 0) AS viewers,
       COALESCE(i.cart_adds, 0) AS cart_adds,
       CASE WHEN i.views > 0 THEN CAST(i.cart_adds AS DOUBLE) / i.views END AS add_to_cart_rate,
       COALESCE(s.orders, 0) AS orders,
       COALESCE(s.units, 0) AS units,
       COALESCE(s.revenue_minor, 0) AS revenue_minor,
       CASE WHEN i.views > 0 THEN CAST(COALESCE(s.orders, 0) AS DOUBLE) / i.views END AS conversion_rate
FROM products p
LEFT JOIN interactions i
  ON p.product_id = i.product_id
 AND p.currency IS NOT DISTINCT FROM i.currency
LEFT JOIN sold s
  ON p.product_id = s.product_id
 AND p.currency IS NOT DISTINCT FROM s.currency
ORDER BY revenue_minor DESC, views DESC, p.product_id, p.currency