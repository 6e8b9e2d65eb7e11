//! A shopper's visit as the processor builds it: the row of the sessions table and the lake's
//! `sessions` export.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The event id of the session's first event: stable, so a replay rebuilds the same session.
    pub session_id: String,
    pub anonymous_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Event time of the first and last event, ms since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub event_count: u32,
    pub page_views: u32,
    pub entry_url: String,
    pub exit_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    pub products_viewed: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    pub revenue_minor: i64,
    /// Ids of every event folded in, so a replayed event is counted once.
    pub event_ids: Vec<Uuid>,
    /// Bumped on every write; stores write only when the stored version is the one read.
    pub version: u64,
}

impl Session {
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}
