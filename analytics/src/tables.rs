//! The lake's tables, defined once: the arrow schema of their Parquet files and the Athena
//! (Glue) DDL both come from the [`TableDef`]s here, so the two cannot drift apart.
//!
//! Types are the few every engine reads alike: text, 64- and 32-bit integers, booleans. Times are
//! ms since the Unix epoch (`BIGINT`) and money integer minor units, as everywhere in RetailMind;
//! the day is the `dt` partition (`YYYY-MM-DD`, UTC), a folder `dt=…/` rather than a column
//! in the files, projected by Athena so no `MSCK REPAIR` or crawler is needed.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// The type of one column, in arrow and in Athena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int64,
    Int32,
    Bool,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Bool => DataType::Boolean,
        }
    }

    pub fn athena(self) -> &'static str {
        match self {
            ColumnType::Text => "string",
            ColumnType::Int64 => "bigint",
            ColumnType::Int32 => "int",
            ColumnType::Bool => "boolean",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// `false`: every row has a value (the ETL refuses a row without one).
    pub nullable: bool,
    /// Shown as the column's comment in Athena.
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        doc,
    }
}

const fn req(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        doc,
    }
}

use ColumnType::{Bool, Int32, Int64, Text};

/// One table of the lake.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: &'static [Column],
    /// Partitioned by day (`dt=YYYY-MM-DD/` folders); otherwise one current snapshot.
    pub partitioned: bool,
    /// Where the table lives in the lake, without a trailing slash (`tables/events`).
    pub prefix: &'static str,
    pub storage: Storage,
}

/// How a table's objects are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Parquet files (Snappy), the analytics tables.
    Parquet,
    /// Newline JSON, the quarantine (kept readable as it was refused).
    JsonLines,
}

/// Name of the partition column of every partitioned table.
pub const PARTITION_COLUMN: &str = "dt";

/// The earliest day Athena's partition projection considers.
pub const PROJECTION_START: &str = "2024-01-01";

impl TableDef {
    /// The schema of the table's Parquet files (without the partition column, which is the
    /// folder name).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// `CREATE EXTERNAL TABLE` for Athena over `<lake>/<prefix>/`, `lake` like `s3://bucket`
    /// (no trailing slash). Partitioned tables use partition projection on `dt` (daily, from
    /// [`PROJECTION_START`] until today).
    pub fn athena_ddl(&self, database: &str, location: &str) -> String {
        let location = location.trim_end_matches('/');
        let mut ddl = String::new();
        let _ = writeln!(
            ddl,
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{}` (",
            self.name
        );
        let last = self.columns.len() - 1;
        for (i, c) in self.columns.iter().enumerate() {
            let comma = if i == last { "" } else { "," };
            let _ = writeln!(
                ddl,
                "  `{}` {} COMMENT '{}'{comma}",
                c.name,
                c.ty.athena(),
                c.doc
            );
        }
        let _ = writeln!(ddl, ")");
        let _ = writeln!(ddl, "COMMENT '{}'", self.doc);
        if self.partitioned {
            let _ = writeln!(ddl, "PARTITIONED BY (`{PARTITION_COLUMN}` string)");
        }
        match self.storage {
            Storage::Parquet => {
                let _ = writeln!(ddl, "STORED AS PARQUET");
            }
            Storage::JsonLines => {
                let _ = writeln!(ddl, "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'");
            }
        }
        let _ = writeln!(ddl, "LOCATION '{location}/{}/'", self.prefix);
        let _ = write!(
            ddl,
            "TBLPROPERTIES (\n  'classification' = '{}'",
            match self.storage {
                Storage::Parquet => "parquet",
                Storage::JsonLines => "json",
            }
        );
        if self.storage == Storage::Parquet {
            let _ = write!(ddl, ",\n  'parquet.compression' = 'SNAPPY'");
        }
        if self.partitioned {
            let _ = write!(
                ddl,
                ",\n  'projection.enabled' = 'true',\n  \
                 'projection.dt.type' = 'date',\n  \
                 'projection.dt.format' = 'yyyy-MM-dd',\n  \
                 'projection.dt.range' = '{PROJECTION_START},NOW',\n  \
                 'projection.dt.interval' = '1',\n  \
                 'projection.dt.interval.unit' = 'DAYS',\n  \
                 'storage.location.template' = '{location}/{}/dt=${{dt}}/'",
                self.prefix
            );
        }
        let _ = writeln!(ddl, "\n);");
        ddl
    }
}

/// The DDL of every table, one statement after another: what `analytics/ddl/athena.sql` holds
/// (with the placeholders `${database}` and `${location}` that [`athena_ddl`] fills in).
pub fn athena_ddl(database: &str, location: &str) -> String {
    ALL.iter()
        .map(|t| t.athena_ddl(database, location))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table, in the order the DDL lists them.
pub const ALL: [&TableDef; 8] = [
    &EVENTS,
    &EVENT_ITEMS,
    &REC_IMPRESSIONS,
    &SESSIONS,
    &ORDERS,
    &ORDER_LINES,
    &CUSTOMERS,
    &QUARANTINE,
];

/// Looks a table up by name.
pub fn by_name(name: &str) -> Option<&'static TableDef> {
    ALL.iter().copied().find(|t| t.name == name)
}

pub static EVENTS: TableDef = TableDef {
    name: "events",
    prefix: "tables/events",
    storage: Storage::Parquet,
    doc: "Every valid tracked event once (deduplicated by event_id), one row per event, kind-specific properties flattened into columns.",
    partitioned: true,
    columns: &[
        req("event_id", Text, "UUIDv7 made by the sender; unique in the table"),
        req("event_type", Text, "page_view, click, product_view, add_to_cart, remove_from_cart, checkout_started, purchase, search or custom"),
        req("anonymous_id", Text, "persistent id of the browser or device"),
        col("user_id", Text, "customer id given by the shop, once known"),
        col("session_id", Text, "session id of the tracker"),
        req("timestamp_ms", Int64, "event time, ms since the Unix epoch (UTC); dt is its day"),
        col("received_at_ms", Int64, "when the collector accepted the event, ms since the Unix epoch"),
        req("page_url", Text, "URL of the page"),
        col("page_referrer", Text, "referrer of the page"),
        col("page_title", Text, "title of the page"),
        col("page_category", Text, "page_view: page category named by the shop"),
        col("utm_source", Text, "campaign source"),
        col("utm_medium", Text, "campaign medium"),
        col("utm_campaign", Text, "campaign name"),
        col("utm_term", Text, "campaign term"),
        col("utm_content", Text, "campaign content"),
        req("device", Text, "desktop, mobile, tablet, bot or unknown, from the user agent"),
        col("user_agent", Text, "browser user agent"),
        col("locale", Text, "BCP 47 language tag"),
        col("timezone", Text, "IANA time zone"),
        col("screen_width", Int32, "screen width in CSS pixels"),
        col("screen_height", Int32, "screen height in CSS pixels"),
        col("library", Text, "the tracking library and its version"),
        col("product_id", Text, "product_view, add_to_cart, remove_from_cart: the product"),
        col("product_name", Text, "name of the product"),
        col("product_category", Text, "category of the product"),
        col("price_minor", Int64, "unit price in minor units of currency"),
        col("quantity", Int32, "add_to_cart, remove_from_cart: units"),
        col("currency", Text, "ISO 4217 code of every amount of the row"),
        col("order_id", Text, "purchase: the order"),
        col("cart_id", Text, "checkout_started: the cart"),
        col("value_minor", Int64, "checkout_started: cart value; purchase: order revenue (minor units)"),
        col("item_count", Int32, "checkout_started, purchase: number of lines (see event_items)"),
        col("click_element", Text, "click: tag name"),
        col("click_text", Text, "click: text of the element"),
        col("click_href", Text, "click: link target"),
        col("click_outbound", Bool, "click: the link leaves the shop"),
        col("search_query", Text, "search: the query"),
        col("search_results", Int32, "search: number of results"),
        col("custom_name", Text, "custom: the event name the shop chose"),
        col("custom_props", Text, "custom: properties as JSON text"),
    ],
};

pub static EVENT_ITEMS: TableDef = TableDef {
    name: "event_items",
    prefix: "tables/event_items",
    storage: Storage::Parquet,
    doc: "The lines of checkout_started and purchase events, one row per line, for product revenue without unnesting.",
    partitioned: true,
    columns: &[
        req("event_id", Text, "the event the line belongs to"),
        req("event_type", Text, "checkout_started or purchase"),
        req("anonymous_id", Text, "persistent id of the browser or device"),
        col("user_id", Text, "customer id given by the shop, once known"),
        col("session_id", Text, "session id of the tracker"),
        req("timestamp_ms", Int64, "event time, ms since the Unix epoch (UTC)"),
        col("order_id", Text, "purchase: the order"),
        req("line_no", Int32, "position of the line in the event, from 0"),
        req("product_id", Text, "the product"),
        col("product_name", Text, "name of the product"),
        col("product_category", Text, "category of the product"),
        col("price_minor", Int64, "unit price in minor units"),
        req("quantity", Int32, "units"),
        col("currency", Text, "ISO 4217 code (of the event when the line has none)"),
    ],
};

pub static REC_IMPRESSIONS: TableDef = TableDef {
    name: "rec_impressions",
    prefix: "tables/rec_impressions",
    storage: Storage::Parquet,
    doc: "Recommended products shown (one row per product of a recommendation_impression event) and followed (recommendation_click).",
    partitioned: true,
    columns: &[
        req("event_id", Text, "the recommendation_impression or recommendation_click event"),
        req("action", Text, "impression or click"),
        req("recommendation_id", Text, "the recommendation answer the products came from"),
        req("anonymous_id", Text, "persistent id of the browser or device"),
        col("session_id", Text, "session id of the tracker"),
        req("timestamp_ms", Int64, "event time, ms since the Unix epoch (UTC)"),
        col("placement", Text, "where the products were shown (product, cart, home, ...)"),
        col("strategy", Text, "impression: the strategy that chose the products"),
        req("product_id", Text, "the product shown or followed"),
        col("position", Int32, "its position in the list, from 0"),
    ],
};

pub static SESSIONS: TableDef = TableDef {
    name: "sessions",
    prefix: "tables/sessions",
    storage: Storage::Parquet,
    doc: "Snapshots of the sessions the processor built (dt: day of the session start).",
    partitioned: true,
    columns: &[
        req(
            "session_id",
            Text,
            "event id of the first event of the session",
        ),
        req(
            "anonymous_id",
            Text,
            "persistent id of the browser or device",
        ),
        col("user_id", Text, "customer id given by the shop, once known"),
        req("start_ms", Int64, "event time of the first event"),
        req("end_ms", Int64, "event time of the last event"),
        req("event_count", Int32, "events in the session"),
        req("page_views", Int32, "page views"),
        req("entry_url", Text, "first page"),
        req("exit_url", Text, "last page"),
        col("referrer", Text, "referrer of the first page"),
        col("utm_source", Text, "campaign source"),
        col("utm_medium", Text, "campaign medium"),
        col("utm_campaign", Text, "campaign name"),
        req("products_viewed", Int32, "product views"),
        req("cart_adds", Int32, "add-to-cart events"),
        req(
            "purchases",
            Int32,
            "orders (each counted once, however many purchase events report it)",
        ),
        req(
            "revenue_minor",
            Int64,
            "revenue of the purchases in currency, in its minor units",
        ),
        req(
            "engaged",
            Bool,
            "over 10 s of engaged time (of the span when none is reported), 2+ pages or a purchase",
        ),
        req("bounce", Bool, "one page and not engaged"),
        req("device", Text, "desktop, mobile, tablet, bot or unknown"),
        req(
            "session_number",
            Int32,
            "1 for the first session of the visitor, 2 for the next, ...",
        ),
        // Nullable and last, as every column added later: files written before them still read.
        col("duration_ms", Int64, "end_ms - start_ms"),
        col(
            "engaged_ms",
            Int64,
            "time on the pages with the tab visible and focused; null when the sender reports none",
        ),
        col(
            "currency",
            Text,
            "currency of revenue_minor: that of the first order; null before any order",
        ),
        col(
            "other_revenue",
            Text,
            "JSON object of the revenue in other currencies, e.g. {\"GBP\":3000}; null when none",
        ),
    ],
};

pub static ORDERS: TableDef = TableDef {
    name: "orders",
    prefix: "tables/orders",
    storage: Storage::Parquet,
    doc: "Orders from the transactions store (dt: day the order was placed). No address, card or contact data.",
    partitioned: true,
    columns: &[
        req("order_id", Text, "order id given by the shop"),
        col("customer_id", Text, "opaque customer id given by the shop"),
        col("anonymous_id", Text, "browser the order was placed from"),
        req("placed_at_ms", Int64, "when the order was placed"),
        req("currency", Text, "ISO 4217 code of every amount"),
        req("subtotal_minor", Int64, "sum of the lines"),
        req("discount_minor", Int64, "order discount"),
        req("tax_minor", Int64, "tax"),
        req("shipping_minor", Int64, "shipping"),
        req("total_minor", Int64, "what the customer paid"),
        col("shipping_method", Text, "shipping method"),
        col("shipping_country", Text, "ISO 3166 country of delivery"),
        req("payment_method", Text, "payment method"),
        req("payment_status", Text, "payment status"),
        req("status", Text, "order status"),
    ],
};

pub static ORDER_LINES: TableDef = TableDef {
    name: "order_lines",
    prefix: "tables/order_lines",
    storage: Storage::Parquet,
    doc: "Lines of the orders (dt: day the order was placed).",
    partitioned: true,
    columns: &[
        req("order_id", Text, "the order"),
        req("line_no", Int32, "line number"),
        req("product_id", Text, "the product"),
        req("name", Text, "product name"),
        col("category", Text, "product category"),
        req("unit_price_minor", Int64, "unit price"),
        req("quantity", Int32, "units"),
        req("discount_minor", Int64, "discount on the line"),
    ],
};

pub static CUSTOMERS: TableDef = TableDef {
    name: "customers",
    prefix: "tables/customers",
    storage: Storage::Parquet,
    doc: "Customer profiles, pseudonymised: the opaque id given by the shop and the SHA-256 of the email, never the email or the name. One current snapshot.",
    partitioned: false,
    columns: &[
        req("customer_id", Text, "opaque customer id given by the shop"),
        col("email_sha256", Text, "hex SHA-256 of the trimmed, lower-cased email"),
        req("created_at_ms", Int64, "first seen"),
        req("updated_at_ms", Int64, "last change"),
    ],
};

/// Raw lines the ETL refused, kept as newline JSON under `quarantine/events/`; listed as a
/// table so Athena can read the reasons next to the clean data.
pub static QUARANTINE: TableDef = TableDef {
    name: "quarantine_events",
    prefix: "quarantine/events",
    storage: Storage::JsonLines,
    doc: "Raw lines the ETL refused, with the reason (JSON lines under quarantine/events/).",
    partitioned: true,
    columns: &[
        req("source", Text, "raw object the line came from"),
        req("line_no", Int64, "line number in it, from 1"),
        req("reason", Text, "why it was refused, naming the field"),
        req("raw", Text, "the line as it was"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_ddl_is_what_the_definitions_generate() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ddl/athena.sql");
        let stored = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            stored == athena_ddl("${database}", "${lake}"),
            "{path} is out of date: regenerate it with `cargo xtask etl ddl`"
        );
    }

    #[test]
    fn comments_need_no_quoting_in_hive_ddl() {
        // Athena's DDL parser and Trino quote differently; a comment without quotes or
        // backslashes reads the same in both.
        for table in ALL {
            let docs = std::iter::once(table.doc).chain(table.columns.iter().map(|c| c.doc));
            for doc in docs {
                assert!(!doc.contains(['\'', '\\']), "{}: {doc}", table.name);
            }
        }
    }

    #[test]
    fn schemas_and_ddl_list_the_same_columns() {
        for table in ALL {
            let schema = table.arrow_schema();
            let ddl = table.athena_ddl("db", "s3://lake");
            assert_eq!(schema.fields().len(), table.columns.len());
            for (field, column) in schema.fields().iter().zip(table.columns) {
                assert_eq!(field.name(), column.name);
                assert!(
                    ddl.contains(&format!("`{}` {} ", column.name, column.ty.athena())),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
            assert!(
                schema.fields().iter().all(|f| f.name() != PARTITION_COLUMN),
                "dt is the folder, not a column in the files"
            );
            assert_eq!(by_name(table.name).map(|t| t.prefix), Some(table.prefix));
        }
    }

    #[test]
    fn partitioned_tables_project_dt_onto_their_folders() {
        let ddl = EVENTS.athena_ddl("retailmind", "s3://lake/");
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `retailmind`.`events` ("));
        assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
        assert!(ddl.contains("STORED AS PARQUET"));
        assert!(ddl.contains("LOCATION 's3://lake/tables/events/'"));
        assert!(ddl.contains("'storage.location.template' = 's3://lake/tables/events/dt=${dt}/'"));
        assert!(ddl.contains("'projection.dt.type' = 'date'"));
        let customers = CUSTOMERS.athena_ddl("retailmind", "s3://lake");
        assert!(!customers.contains("PARTITIONED BY") && !customers.contains("projection"));
        assert!(!CUSTOMERS
            .columns
            .iter()
            .any(|c| c.name.contains("email") && c.name != "email_sha256"));
        let quarantine = QUARANTINE.athena_ddl("retailmind", "s3://lake");
        assert!(quarantine.contains("JsonSerDe") && !quarantine.contains("STORED AS PARQUET"));
    }
}
