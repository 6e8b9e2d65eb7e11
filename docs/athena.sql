-- Athena (Glue Data Catalog) tables over the RetailMind lake's raw zone, as delivered.
--
-- The clean, de-duplicated Parquet tables the ETL builds from it (events, event_items,
-- rec_impressions, sessions, orders, ...) and the analyses use are generated from
-- analytics/src/tables.rs into analytics/ddl/athena.sql; these raw tables are named raw_* so the
-- two sets live side by side in one database.
--
-- Firehose writes newline-delimited JSON by event time under
--   s3://<lake-bucket>/events/dt=YYYY-MM-DD/hour=HH/
-- (dynamic partitioning, see connectors/src/aws/provision.rs). Partition projection computes the
-- partitions from the path, so no crawler or MSCK REPAIR is needed. Replace <lake-bucket>.
-- Replays can put an event in the lake twice: count DISTINCT event_id here (the ETL's Parquet
-- tables hold each event once).

CREATE EXTERNAL TABLE IF NOT EXISTS retailmind.raw_events (
  event_id      string,
  type          string,
  anonymous_id  string,
  user_id       string,
  session_id    string,
  `timestamp`   bigint,   -- client event time, ms since the Unix epoch
  received_at   bigint,   -- collector receive time, ms
  context struct<
    page: struct<url: string, referrer: string, title: string>,
    utm: struct<source: string, medium: string, campaign: string, term: string, content: string>,
    user_agent: string,
    screen: struct<width: int, height: int>,
    locale: string,
    timezone: string,
    ip: string,
    library: string
  >,
  -- Kind-specific fields; read with json_extract_scalar(properties, '$.product_id') etc.
  properties    string
)
PARTITIONED BY (dt string, hour string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true', 'mapping.timestamp' = 'timestamp')
LOCATION 's3://<lake-bucket>/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://<lake-bucket>/events/dt=${dt}/hour=${hour}/'
);

-- Sessions have no raw table: the lake job (`retailmind-etl run`) exports the session store's
-- snapshots straight into the Parquet table `sessions` (tables/sessions/dt=YYYY-MM-DD/, by session
-- start), defined with the other clean tables in analytics/ddl/athena.sql.

-- Undecodable stream records kept by the processor, with the reason.
CREATE EXTERNAL TABLE IF NOT EXISTS retailmind.stream_errors (
  received_at_ms       bigint,
  reason               string,
  data_base64          string,  -- the record's first 512 KiB
  truncated_from_bytes bigint   -- the record's size when it was larger, else NULL
)
PARTITIONED BY (dt string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://<lake-bucket>/errors/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<lake-bucket>/errors/dt=${dt}/'
);
