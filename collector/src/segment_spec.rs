//! The Segment bodies as the OpenAPI document describes them. The converter reads a message
//! field by field (see [`retailmind_segment::convert`]) rather than through these types, so they list the
//! fields it reads; any other field is accepted and ignored.

// Never built nor read: the types exist for their schemas.
#![allow(dead_code)]

use retailmind_schema::Batch;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One Segment-spec message (<https://segment.com/docs/connections/spec/>).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMessage {
    /// `track`, `page`, `identify`, `screen`, `group` or `alias` (any case); on `/v1/track`,
    /// `/v1/page` and `/v1/identify` the route's type when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The event's name, required for `track`: an e-commerce spec name (`Product Viewed`,
    /// `Order Completed`, …) becomes that kind of event, any other a custom event.
    pub event: Option<String>,
    /// Kept as the event id when a UUIDv7, else hashed into one (a retried message keeps its id).
    pub message_id: Option<String>,
    /// Required unless `userId` is given, which then stands in for it.
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    /// ISO-8601 date-time; else `originalTimestamp`, else the collector's clock.
    pub timestamp: Option<String>,
    pub original_timestamp: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
    /// `identify` and `group`: become the custom event's properties.
    #[schema(value_type = Option<Object>)]
    pub traits: Option<Map<String, Value>>,
    /// `context.page.url` is the event's page (required); also read: `page`, `campaign`,
    /// `locale`, `timezone`, `userAgent`, `library`, `screen`.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// `page` and `screen`: the page's or screen's name and category.
    pub name: Option<String>,
    pub category: Option<String>,
    /// Required for `group`.
    pub group_id: Option<String>,
    /// Required for `alias`.
    pub previous_id: Option<String>,
    /// The write key, when not sent as Basic auth user name, `X-Write-Key` or `?key=`.
    pub write_key: Option<String>,
}

/// Segment's batch body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentBatch {
    pub batch: Vec<SegmentMessage>,
    /// Merged into every message's own `context`, key by key; the message's values win.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    pub write_key: Option<String>,
}

/// What `/v1/batch` reads: the tracker's batch (`events`) or Segment's (`batch`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchBody {
    Tracker(Batch),
    Segment(SegmentBatch),
}
