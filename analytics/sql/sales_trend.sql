-- Sales trend: orders, revenue and average order value per day and currency, from the
-- purchase events. An order counts once even if the shop sent its purchase event twice.
-- Runs unchanged on Athena (Trino) and DataFusion; {{from}} and {{to}} are days (YYYY-MM-DD).
WITH purchases AS (
    SELECT order_id,
           MIN(dt) AS dt,
           MIN(currency) AS currency,
           MAX(value_minor) AS revenue_minor
    FROM events
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY order_id
)
SELECT dt,
       currency,
       COUNT(*) AS orders,
       SUM(revenue_minor) AS revenue_minor,
       CAST(SUM(revenue_minor) AS DOUBLE) / COUNT(*) AS aov_minor
FROM purchases
GROUP BY dt, currency
ORDER BY dt, currency
