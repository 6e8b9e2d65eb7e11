-- Conversion funnel: visitors who viewed a product, then added to cart, then started a
-- checkout, then purchased, each step at or after the visitor's first time at the step
-- before; with the visitors lost at each step and the drop-off rate.
WITH viewed AS (
    SELECT anonymous_id, MIN(timestamp_ms) AS at
    FROM events
    WHERE event_type = 'product_view'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY anonymous_id
),
carted AS (
    SELECT e.anonymous_id, MIN(e.timestamp_ms) AS at
    FROM events e
    JOIN viewed v ON e.anonymous_id = v.anonymous_id
    WHERE e.event_type = 'add_to_cart'
      AND e.dt BETWEEN '{{from}}' AND '{{to}}'
      AND e.timestamp_ms >= v.at
    GROUP BY e.anonymous_id
),
checked_out AS (
    SELECT e.anonymous_id, MIN(e.timestamp_ms) AS at
    FROM events e
    JOIN carted c ON e.anonymous_id = c.anonymous_id
    WHERE e.event_type = 'checkout_started'
      AND e.dt BETWEEN '{{from}}' AND '{{to}}'
      AND e.timestamp_ms >= c.at
    GROUP BY e.anonymous_id
),
purchased AS (
    SELECT e.anonymous_id, MIN(e.timestamp_ms) AS at
    FROM events e
    JOIN checked_out k ON e.anonymous_id = k.anonymous_id
    WHERE e.event_type = 'purchase'
      AND e.dt BETWEEN '{{from}}' AND '{{to}}'
      AND e.timestamp_ms >= k.at
    GROUP BY e.anonymous_id
),
steps AS (
    SELECT 1 AS step, 'product_view' AS name, COUNT(*) AS visitors FROM viewed
    UNION ALL
    SELECT 2 AS step, 'add_to_cart' AS name, COUNT(*) AS visitors FROM carted
    UNION ALL
    SELECT 3 AS step, 'checkout_started' AS name, COUNT(*) AS visitors FROM checked_out
    UNION ALL
    SELECT 4 AS step, 'purchase' AS name, COUNT(*) AS visitors FROM purchased
)
SELECT step,
       name,
       visitors,
       LAG(visitors) OVER (ORDER BY step) - visitors AS dropped,
       CASE
           WHEN LAG(visitors) OVER (ORDER BY step) > 0
           THEN 1 - CAST(visitors AS DOUBLE) / LAG(visitors) OVER (ORDER BY step)
       END AS drop_off_rate
FROM steps
ORDER BY step
