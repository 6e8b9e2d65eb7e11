-- Traffic sources: sessions (the tracker's session id) by where their first event came from:
-- the UTM source and medium, else the referrer's host ('referral'), else '(direct)'; with
-- visitors, orders, revenue and the share of sessions that bought.
-- An order counts once, in the session of its first purchase event, even if the shop reported
-- it again; its revenue is the largest reported, as in sales_trend.sql, so the totals agree.
-- Revenue adds minor units whatever their currency: sessions and visitors have none, and a row
-- per currency would split a source's sessions, so a shop selling in several currencies reads
-- its revenue per currency from sales_trend.sql.
WITH ranked AS (
    SELECT session_id,
           anonymous_id,
           utm_source,
           utm_medium,
           page_referrer,
           ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY timestamp_ms, event_id) AS n
    FROM events
    WHERE session_id IS NOT NULL
      AND dt BETWEEN '{{from}}' AND '{{to}}'
),
entries AS (
    SELECT session_id,
           anonymous_id,
           COALESCE(utm_source, NULLIF(split_part(page_referrer, '/', 3), ''), '(direct)') AS source,
           COALESCE(
               utm_medium,
               CASE WHEN page_referrer IS NULL OR page_referrer = '' THEN '(none)' ELSE 'referral' END
           ) AS medium
    FROM ranked
    WHERE n = 1
),
reports AS (
    SELECT session_id,
           MAX(value_minor) OVER (PARTITION BY order_id) AS revenue_minor,
           ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY timestamp_ms, event_id) AS report
    FROM events
    WHERE event_type = 'purchase'
      AND dt BETWEEN '{{from}}' AND '{{to}}'
),
sales AS (
    SELECT session_id,
           COUNT(*) AS orders,
           SUM(revenue_minor) AS revenue_minor
    FROM reports
    WHERE report = 1
      AND session_id IS NOT NULL
    GROUP BY session_id
)
SELECT e.source,
       e.medium,
       COUNT(*) AS sessions,
       COUNT(DISTINCT e.anonymous_id) AS visitors,
       COALESCE(SUM(s.orders), 0) AS orders,
       COALESCE(SUM(s.revenue_minor), 0) AS revenue_minor,
       CAST(COUNT(s.session_id) AS DOUBLE) / COUNT(*) AS conversion_rate
FROM entries e
LEFT JOIN sales s ON e.session_id = s.session_id
GROUP BY e.source, e.medium
ORDER BY sessions DESC, e.source, e.medium
