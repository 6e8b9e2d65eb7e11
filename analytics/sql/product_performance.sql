-- Product performance: views, viewers, add-to-cart events and rate, and what was sold
-- (orders, units, revenue from the purchase lines) with the conversion of views to orders.
WITH interactions AS (
    SELECT product_id,
           SUM(CASE WHEN event_type = 'product_view' THEN 1 ELSE 0 END) AS views,
           COUNT(DISTINCT CASE WHEN event_type = 'product_view' THEN anonymous_id END) AS viewers,
           SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds
    FROM events
    WHERE event_type IN ('product_view', 'add_to_cart')
      AND product_id IS NOT NULL
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY product_id
),
sold AS (
    SELECT product_id,
           COUNT(DISTINCT order_id) AS orders,
           SUM(quantity) AS units,
           SUM(price_minor * quantity) AS revenue_minor
    FROM event_items
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY product_id
),
products AS (
    SELECT product_id FROM interactions
    UNION
    SELECT product_id FROM sold
)
SELECT p.product_id,
       COALESCE(i.views, 0) AS views,
       COALESCE(i.viewers, 0) AS viewers,
       COALESCE(i.cart_adds, 0) AS cart_adds,
       CASE WHEN i.views > 0 THEN CAST(i.cart_adds AS DOUBLE) / i.views END AS add_to_cart_rate,
       COALESCE(s.orders, 0) AS orders,
       COALESCE(s.units, 0) AS units,
       COALESCE(s.revenue_minor, 0) AS revenue_minor,
       CASE WHEN i.views > 0 THEN CAST(COALESCE(s.orders, 0) AS DOUBLE) / i.views END AS conversion_rate
FROM products p
LEFT JOIN interactions i ON p.product_id = i.product_id
LEFT JOIN sold s ON p.product_id = s.product_id
ORDER BY revenue_minor DESC, views DESC, p.product_id
