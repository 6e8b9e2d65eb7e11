-- RFM customer segments over the purchases in the range: recency (whole days from the last
-- order to the end of {{to}}, {{to_end_ms}} in ms), frequency (orders) and monetary value
-- (revenue), each scored 1-3 by fixed thresholds, then named segments. A customer is the
-- shop's user id, else the browser's anonymous id.
-- An order counts once even if the shop sent its purchase event twice, placed at its first
-- report (as in sales_trend.sql: a reloaded thank-you page is not a newer order). Customers
-- are scored per currency, as the monetary thresholds are minor units of one currency: one
-- who bought in two currencies is a customer of each.
WITH purchases AS (
    SELECT COALESCE(user_id, anonymous_id) AS customer,
           order_id,
           MIN(currency) AS currency,
           MIN(timestamp_ms) AS at,
           MAX(value_minor) AS revenue_minor
    FROM events
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
    GROUP BY COALESCE(user_id, anonymous_id), order_id
),
customers AS (
    SELECT customer,
           currency,
           ({{to_end_ms}} - MAX(at)) / 86400000 AS recency_days,
           COUNT(*) AS frequency,
           SUM(revenue_minor) AS monetary_minor
    FROM purchases
    GROUP BY customer, currency
),
scored AS (
    SELECT customer,
           currency,
           recency_days,
           frequency,
           monetary_minor,
           CASE WHEN recency_days <= 30 THEN 3 WHEN recency_days <= 90 THEN 2 ELSE 1 END AS r,
           CASE WHEN frequency >= 5 THEN 3 WHEN frequency >= 2 THEN 2 ELSE 1 END AS f,
           CASE WHEN monetary_minor >= 50000 THEN 3 WHEN monetary_minor >= 10000 THEN 2 ELSE 1 END AS m
    FROM customers
),
segmented AS (
    SELECT customer,
           currency,
           recency_days,
           frequency,
           monetary_minor,
           CASE
               WHEN r = 3 AND f = 3 AND m >= 2 THEN 'champions'
               WHEN r >= 2 AND f >= 2 THEN 'loyal'
               WHEN r = 3 AND f = 1 THEN 'new'
               WHEN r = 1 AND f >= 2 THEN 'at_risk'
               ELSE 'hibernating'
           END AS segment
    FROM scored
)
SELECT segment,
       currency,
       COUNT(*) AS customers,
       SUM(frequency) AS orders,
       SUM(monetary_minor) AS revenue_minor,
       CAST(SUM(recency_days) AS DOUBLE) / COUNT(*) AS avg_recency_days
FROM segmented
GROUP BY segment, currency
ORDER BY currency, revenue_minor DESC, segment
