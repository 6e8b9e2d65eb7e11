-- Recommendation attribution per placement and strategy: products shown, clicks, click-through
-- rate, and the purchase lines (and their revenue) of a product the same visitor followed from
-- a recommendation before buying it; a line is credited to the latest such click only.
-- An order's lines count once, from its first purchase event, even if the shop reported it
-- again. Revenue adds minor units whatever their currency: impressions and clicks have none,
-- and a row per currency would split a placement's impressions, so a shop selling in several
-- currencies compares placements by purchased lines.
WITH shown AS (
    SELECT recommendation_id,
           MIN(placement) AS placement,
           MIN(strategy) AS strategy,
           COUNT(*) AS impressions
    FROM rec_impressions
    WHERE action = 'impression'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY recommendation_id
),
clicks AS (
    SELECT recommendation_id, anonymous_id, product_id, timestamp_ms, event_id
    FROM rec_impressions
    WHERE action = 'click'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
),
purchase_lines AS (
    SELECT event_id, line_no, anonymous_id, product_id, timestamp_ms,
           price_minor * quantity AS revenue_minor,
           -- Every line of an order's first report ranks 1.
           RANK() OVER (PARTITION BY order_id ORDER BY timestamp_ms, event_id) AS report
    FROM event_items
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
),
bought AS (
    SELECT event_id, line_no, anonymous_id, product_id, timestamp_ms, revenue_minor
    FROM purchase_lines
    WHERE report = 1
),
credited AS (
    SELECT b.event_id,
           b.line_no,
           b.revenue_minor,
           c.recommendation_id,
           ROW_NUMBER() OVER (
               PARTITION BY b.event_id, b.line_no
               ORDER BY c.timestamp_ms DESC, c.event_id DESC
           ) AS n
    FROM bought b
    JOIN clicks c
      ON b.anonymous_id = c.anonymous_id
     AND b.product_id = c.product_id
     AND c.timestamp_ms <= b.timestamp_ms
),
per_recommendation AS (
    SELECT recommendation_id, COUNT(*) AS lines, SUM(revenue_minor) AS revenue_minor
    FROM credited
    WHERE n = 1
    GROUP BY recommendation_id
),
click_counts AS (
    SELECT recommendation_id, COUNT(*) AS clicks
    FROM clicks
    GROUP BY recommendation_id
)
SELECT COALESCE(s.placement, '(unknown)') AS placement,
       COALESCE(s.strategy, '(unknown)') AS strategy,
       SUM(s.impressions) AS impressions,
       SUM(COALESCE(k.clicks, 0)) AS clicks,
       CAST(SUM(COALESCE(k.clicks, 0)) AS DOUBLE) / SUM(s.impressions) AS ctr,
       SUM(COALESCE(p.lines, 0)) AS purchased_lines,
       SUM(COALESCE(p.revenue_minor, 0)) AS revenue_minor
FROM shown s
LEFT JOIN click_counts k ON s.recommendation_id = k.recommendation_id
LEFT JOIN per_recommendation p ON s.recommendation_id = p.recommendation_id
GROUP BY COALESCE(s.placement, '(unknown)'), COALESCE(s.strategy, '(unknown)')
ORDER BY placement, strategy
