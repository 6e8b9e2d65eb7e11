//! `docs/athena.sql` declares the raw lake's tables by hand; this keeps it true to what the lake
//! holds. Every field of an event with every optional part set, and of an error line, must be a
//! column of the right kind, and every column must be a field: a column missing from the table is
//! data analysts cannot see, and a column no line has is one that reads NULL for ever.

use bytes::Bytes;
use retailmind_connectors::lake::error_line;
use retailmind_connectors::UndecodableRecord;
use retailmind_schema::Event;
use serde_json::{json, Value};

const DDL: &str = include_str!("../../docs/athena.sql");

/// A Hive column type as far as these tables use them.
#[derive(Debug)]
enum HiveType {
    Scalar(String),
    Struct(Vec<(String, HiveType)>),
}

/// `text` split at the commas outside `<…>`.
fn top_level_items(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, ch) in text.char_indices() {
        match ch {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                items.push(text[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(text[start..].trim());
    items.into_iter().filter(|i| !i.is_empty()).collect()
}

fn parse_type(text: &str) -> HiveType {
    let text = text.trim();
    match text
        .strip_prefix("struct<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        Some(fields) => HiveType::Struct(
            top_level_items(fields)
                .into_iter()
                .map(|field| {
                    let (name, ty) = field
                        .split_once(':')
                        .unwrap_or_else(|| panic!("a struct field without a type: {field}"));
                    (name.trim().to_owned(), parse_type(ty))
                })
                .collect(),
        ),
        None => HiveType::Scalar(text.to_owned()),
    }
}

/// The columns of `retailmind.<table>` in `docs/athena.sql` (partition keys not included).
fn columns(table: &str) -> HiveType {
    let head = format!("CREATE EXTERNAL TABLE IF NOT EXISTS retailmind.{table} (");
    let start = DDL
        .find(&head)
        .unwrap_or_else(|| panic!("no table {table}"))
        + head.len();
    let end = start
        + DDL[start..]
            .find("\n)")
            .unwrap_or_else(|| panic!("the column list of {table} does not end"));
    let body: String = DDL[start..end]
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    HiveType::Struct(
        top_level_items(&body)
            .into_iter()
            .map(|column| {
                let (name, ty) = column
                    .split_once(char::is_whitespace)
                    .unwrap_or_else(|| panic!("a column without a type: {column}"));
                (name.trim_matches('`').to_owned(), parse_type(ty))
            })
            .collect(),
    )
}

/// What differs between the declared type and a line's value, each with its path.
fn differences(path: &str, declared: &HiveType, value: &Value, found: &mut Vec<String>) {
    match (declared, value) {
        (HiveType::Struct(fields), Value::Object(object)) => {
            for (key, inner) in object {
                let at = format!("{path}{key}");
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, ty)) => differences(&format!("{at}."), ty, inner, found),
                    None => found.push(format!("{at} is in the lake but not a column")),
                }
            }
            for (name, _) in fields {
                if !object.contains_key(name) {
                    found.push(format!("{path}{name} is a column that no line has"));
                }
            }
        }
        (HiveType::Scalar(ty), value) => {
            let fits = match ty.as_str() {
                "string" => value.is_string(),
                "bigint" | "int" => value.is_i64() || value.is_u64(),
                other => panic!("no check for the type {other}"),
            };
            if !fits {
                found.push(format!(
                    "{} is {ty} but holds {value}",
                    path.trim_end_matches('.')
                ));
            }
        }
        (HiveType::Struct(_), other) => found.push(format!(
            "{} is a struct but holds {other}",
            path.trim_end_matches('.')
        )),
    }
}

#[test]
fn raw_events_has_a_column_for_every_field_of_an_event() {
    // Every optional part set; as the collector writes it to the stream and the lake.
    let sent = json!({
        "event_id": "01936a1c-3b5e-7cc4-9a1e-000000000001",
        "type": "product_view",
        "anonymous_id": "a-1",
        "user_id": "u-1",
        "session_id": "s-1",
        "timestamp": 1_764_064_800_000_i64,
        "received_at": 1_764_064_800_100_i64,
        "context": {
            "page": {"url": "https://shop.example/p/1", "referrer": "https://search.example/", "title": "Boots"},
            "utm": {"source": "news", "medium": "email", "campaign": "bf", "term": "boots", "content": "a"},
            "user_agent": "Mozilla/5.0",
            "screen": {"width": 390, "height": 844},
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
            "ip": "203.0.113.0",
            "library": "retailmind-sdk/0.1.0"
        },
        "properties": {"product_id": "p-1", "price_minor": 4999, "currency": "EUR"}
    });
    let event: Event = serde_json::from_value(sent).expect("a valid event");
    let mut line = serde_json::to_value(&event).unwrap();
    // Kind-specific fields are one JSON text for json_extract: the SerDe reads the object as
    // its text into a string column.
    line["properties"] = Value::String(line["properties"].to_string());
    let mut found = Vec::new();
    differences("", &columns("raw_events"), &line, &mut found);
    assert!(found.is_empty(), "docs/athena.sql raw_events: {found:#?}");
}

#[test]
fn stream_errors_has_a_column_for_every_field_of_an_error_line() {
    let record = UndecodableRecord {
        received_at_ms: 5,
        reason: "expected value at line 1 column 1".into(),
        data: Bytes::from(vec![
            b'x';
            retailmind_connectors::lake::ERROR_DATA_BYTES + 1
        ]),
    };
    let line: Value = serde_json::from_slice(&error_line(&record)).unwrap();
    let mut found = Vec::new();
    differences("", &columns("stream_errors"), &line, &mut found);
    assert!(
        found.is_empty(),
        "docs/athena.sql stream_errors: {found:#?}"
    );
}
