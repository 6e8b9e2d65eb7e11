-- Conversion funnel: visitors who viewed a product, then added to cart, then started a
-- checkout, then purchased, each step at or after the visitor's first time at the step
-- before; with the visitors lost at each step and the drop-off rate.
-- One chain, each step referenced once: neither engine materialises a CTE, so a step named
-- by two later ones would be computed twice (and the first step four times). The step's
-- events are the build side of each join (the smaller one); every viewer is kept and counted.
WITH viewed AS (
    SELECT anonymous_id, MIN(timestamp_ms) AS viewed_at
    FROM events
    WHERE event_type = 'product_view'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY anonymous_id
),
carted AS (
    SELECT v.anonymous_id, MIN(e.timestamp_ms) AS carted_at
    FROM events e
    RIGHT JOIN viewed v
      ON e.anonymous_id = v.anonymous_id
     AND e.event_type = 'add_to_cart'
     AND e.dt BETWEEN '{{from}}' AND '{{to}}'
     AND e.timestamp_ms >= v.viewed_at
    GROUP BY v.anonymous_id
),
checked_out AS (
    SELECT c.anonymous_id, MIN(c.carted_at) AS carted_at, MIN(e.timestamp_ms) AS checked_out_at
    FROM events e
    RIGHT JOIN carted c
      ON e.anonymous_id = c.anonymous_id
     AND e.event_type = 'checkout_started'
     AND e.dt BETWEEN '{{from}}' AND '{{to}}'
     AND e.timestamp_ms >= c.carted_at
    GROUP BY c.anonymous_id
),
purchased AS (
    SELECT k.anonymous_id, MIN(k.carted_at) AS carted_at, MIN(k.checked_out_at) AS checked_out_at,
           MIN(e.timestamp_ms) AS purchased_at
    FROM events e
    RIGHT JOIN checked_out k
      ON e.anonymous_id = k.anonymous_id
     AND e.event_type = 'purchase'
     AND e.dt BETWEEN '{{from}}' AND '{{to}}'
     AND e.timestamp_ms >= k.checked_out_at
    GROUP BY k.anonymous_id
),
totals AS (
    SELECT COUNT(*) AS viewed,
           COUNT(carted_at) AS carted,
           COUNT(checked_out_at) AS checked_out,
           COUNT(purchased_at) AS purchased
    FROM purchased
),
steps AS (
    SELECT s.step, s.name,
           CASE s.step WHEN 1 THEN t.viewed WHEN 2 THEN t.carted WHEN 3 THEN t.checked_out ELSE t.purchased END AS visitors
    FROM totals t
    CROSS JOIN (VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'checkout_started'), (4, 'purchase')) AS s (step, name)
)
SELECT step, name, visitors,
       LAG(visitors) OVER (ORDER BY step) - visitors AS dropped,
       CASE WHEN LAG(visitors) OVER (ORDER BY step) > 0
            THEN 1 - CAST(visitors AS DOUBLE) / LAG(visitors) OVER (ORDER BY step) END AS drop_off_rate
FROM steps
ORDER BY step
