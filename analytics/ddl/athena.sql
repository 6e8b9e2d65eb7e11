CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`events` (
  `event_id` string COMMENT 'UUIDv7 made by the sender; unique in the table',
  `event_type` string COMMENT 'page_view, click, product_view, add_to_cart, remove_from_cart, checkout_started, purchase, search or custom',
  `anonymous_id` string COMMENT 'persistent id of the browser or device',
  `user_id` string COMMENT 'customer id given by the shop, once known',
  `session_id` string COMMENT 'session id of the tracker',
  `timestamp_ms` bigint COMMENT 'event time, ms since the Unix epoch (UTC); dt is its day',
  `received_at_ms` bigint COMMENT 'when the collector accepted the event, ms since the Unix epoch',
  `page_url` string COMMENT 'URL of the page',
  `page_referrer` string COMMENT 'referrer of the page',
  `page_title` string COMMENT 'title of the page',
  `page_category` string COMMENT 'page_view: page category named by the shop',
  `utm_source` string COMMENT 'campaign source',
  `utm_medium` string COMMENT 'campaign medium',
  `utm_campaign` string COMMENT 'campaign name',
  `utm_term` string COMMENT 'campaign term',
  `utm_content` string COMMENT 'campaign content',
  `device` string COMMENT 'desktop, mobile, tablet, bot or unknown, from the user agent',
  `user_agent` string COMMENT 'browser user agent',
  `locale` string COMMENT 'BCP 47 language tag',
  `timezone` string COMMENT 'IANA time zone',
  `screen_width` int COMMENT 'screen width in CSS pixels',
  `screen_height` int COMMENT 'screen height in CSS pixels',
  `library` string COMMENT 'the tracking library and its version',
  `product_id` string COMMENT 'product_view, add_to_cart, remove_from_cart: the product',
  `product_name` string COMMENT 'name of the product',
  `product_category` string COMMENT 'category of the product',
  `price_minor` bigint COMMENT 'unit price in minor units of currency',
  `quantity` int COMMENT 'add_to_cart, remove_from_cart: units',
  `currency` string COMMENT 'ISO 4217 code of every amount of the row',
  `order_id` string COMMENT 'purchase: the order',
  `cart_id` string COMMENT 'checkout_started: the cart',
  `value_minor` bigint COMMENT 'checkout_started: cart value; purchase: order revenue (minor units)',
  `item_count` int COMMENT 'checkout_started, purchase: number of lines (see event_items)',
  `click_element` string COMMENT 'click: tag name',
  `click_text` string COMMENT 'click: text of the element',
  `click_href` string COMMENT 'click: link target',
  `click_outbound` boolean COMMENT 'click: the link leaves the shop',
  `search_query` string COMMENT 'search: the query',
  `search_results` int COMMENT 'search: number of results',
  `custom_name` string COMMENT 'custom: the event name the shop chose',
  `custom_props` string COMMENT 'custom: properties as JSON text'
)
COMMENT 'Every valid tracked event once (deduplicated by event_id), one row per event, kind-specific properties flattened into columns.'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/events/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/events/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`event_items` (
  `event_id` string COMMENT 'the event the line belongs to',
  `event_type` string COMMENT 'checkout_started or purchase',
  `anonymous_id` string COMMENT 'persistent id of the browser or device',
  `user_id` string COMMENT 'customer id given by the shop, once known',
  `session_id` string COMMENT 'session id of the tracker',
  `timestamp_ms` bigint COMMENT 'event time, ms since the Unix epoch (UTC)',
  `order_id` string COMMENT 'purchase: the order',
  `line_no` int COMMENT 'position of the line in the event, from 0',
  `product_id` string COMMENT 'the product',
  `product_name` string COMMENT 'name of the product',
  `product_category` string COMMENT 'category of the product',
  `price_minor` bigint COMMENT 'unit price in minor units',
  `quantity` int COMMENT 'units',
  `currency` string COMMENT 'ISO 4217 code (of the event when the line has none)'
)
COMMENT 'The lines of checkout_started and purchase events, one row per line, for product revenue without unnesting.'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/event_items/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/event_items/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`rec_impressions` (
  `event_id` string COMMENT 'the recommendation_impression or recommendation_click event',
  `action` string COMMENT 'impression or click',
  `recommendation_id` string COMMENT 'the recommendation answer the products came from',
  `anonymous_id` string COMMENT 'persistent id of the browser or device',
  `session_id` string COMMENT 'session id of the tracker',
  `timestamp_ms` bigint COMMENT 'event time, ms since the Unix epoch (UTC)',
  `placement` string COMMENT 'where the products were shown (product, cart, home, ...)',
  `strategy` string COMMENT 'impression: the strategy that chose the products',
  `product_id` string COMMENT 'the product shown or followed',
  `position` int COMMENT 'its position in the list, from 0'
)
COMMENT 'Recommended products shown (one row per product of a recommendation_impression event) and followed (recommendation_click).'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/rec_impressions/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/rec_impressions/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`sessions` (
  `session_id` string COMMENT 'event id of the first event of the session',
  `anonymous_id` string COMMENT 'persistent id of the browser or device',
  `user_id` string COMMENT 'customer id given by the shop, once known',
  `start_ms` bigint COMMENT 'event time of the first event',
  `end_ms` bigint COMMENT 'event time of the last event',
  `event_count` int COMMENT 'events in the session',
  `page_views` int COMMENT 'page views',
  `entry_url` string COMMENT 'first page',
  `exit_url` string COMMENT 'last page',
  `referrer` string COMMENT 'referrer of the first page',
  `utm_source` string COMMENT 'campaign source',
  `utm_medium` string COMMENT 'campaign medium',
  `utm_campaign` string COMMENT 'campaign name',
  `products_viewed` int COMMENT 'product views',
  `cart_adds` int COMMENT 'add-to-cart events',
  `purchases` int COMMENT 'orders (each counted once, however many purchase events report it)',
  `revenue_minor` bigint COMMENT 'revenue of the purchases in currency, in its minor units',
  `engaged` boolean COMMENT 'over 10 s of engaged time (of the span when none is reported), 2+ pages or a purchase',
  `bounce` boolean COMMENT 'one page and not engaged',
  `device` string COMMENT 'desktop, mobile, tablet, bot or unknown',
  `session_number` int COMMENT '1 for the first session of the visitor, 2 for the next, ...',
  `duration_ms` bigint COMMENT 'end_ms - start_ms',
  `engaged_ms` bigint COMMENT 'time on the pages with the tab visible and focused; null when the sender reports none',
  `currency` string COMMENT 'currency of revenue_minor: that of the first order; null before any order',
  `other_revenue` string COMMENT 'JSON object of the revenue in other currencies, e.g. {"GBP":3000}; null when none'
)
COMMENT 'Snapshots of the sessions the processor built (dt: day of the session start).'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/sessions/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/sessions/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`orders` (
  `order_id` string COMMENT 'order id given by the shop',
  `customer_id` string COMMENT 'opaque customer id given by the shop',
  `anonymous_id` string COMMENT 'browser the order was placed from',
  `placed_at_ms` bigint COMMENT 'when the order was placed',
  `currency` string COMMENT 'ISO 4217 code of every amount',
  `subtotal_minor` bigint COMMENT 'sum of the lines',
  `discount_minor` bigint COMMENT 'order discount',
  `tax_minor` bigint COMMENT 'tax',
  `shipping_minor` bigint COMMENT 'shipping',
  `total_minor` bigint COMMENT 'what the customer paid',
  `shipping_method` string COMMENT 'shipping method',
  `shipping_country` string COMMENT 'ISO 3166 country of delivery',
  `payment_method` string COMMENT 'payment method',
  `payment_status` string COMMENT 'payment status',
  `status` string COMMENT 'order status'
)
COMMENT 'Orders from the transactions store (dt: day the order was placed). No address, card or contact data.'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/orders/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/orders/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`order_lines` (
  `order_id` string COMMENT 'the order',
  `line_no` int COMMENT 'line number',
  `product_id` string COMMENT 'the product',
  `name` string COMMENT 'product name',
  `category` string COMMENT 'product category',
  `unit_price_minor` bigint COMMENT 'unit price',
  `quantity` int COMMENT 'units',
  `discount_minor` bigint COMMENT 'discount on the line'
)
COMMENT 'Lines of the orders (dt: day the order was placed).'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '${lake}/tables/order_lines/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/tables/order_lines/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`customers` (
  `customer_id` string COMMENT 'opaque customer id given by the shop',
  `email_sha256` string COMMENT 'hex SHA-256 of the trimmed, lower-cased email',
  `created_at_ms` bigint COMMENT 'first seen',
  `updated_at_ms` bigint COMMENT 'last change'
)
COMMENT 'Customer profiles, pseudonymised: the opaque id given by the shop and the SHA-256 of the email, never the email or the name. One current snapshot.'
STORED AS PARQUET
LOCATION '${lake}/tables/customers/'
TBLPROPERTIES (
  'classification' = 'parquet',
  'parquet.compression' = 'SNAPPY'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`quarantine_events` (
  `source` string COMMENT 'raw object the line came from',
  `line_no` bigint COMMENT 'line number in it, from 1',
  `reason` string COMMENT 'why it was refused, naming the field',
  `raw` string COMMENT 'the line as it was'
)
COMMENT 'Raw lines the ETL refused, with the reason (JSON lines under quarantine/events/).'
PARTITIONED BY (`dt` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION '${lake}/quarantine/events/'
TBLPROPERTIES (
  'classification' = 'json',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '${lake}/quarantine/events/dt=${dt}/'
);
