//! The sessions table on DynamoDB: hash key `anonymous_id` (S), range key `start_ms` (N), one
//! attribute per [`Session`] field (see [`super::session_item`]).
//!
//! Reads are strongly consistent Queries on the key: `sessions_of` and `sessions_since`
//! ascending, page after page; `latest_before` descending with `Limit=1`. Strong consistency
//! lets a processor read back what it wrote, so its next conditional write does not lose to
//! itself.
//!
//! With `session_ttl_days` set, every item carries `expires_at` (epoch seconds), the table's
//! TTL attribute, that many days after the session's last event.
//!
//! Writes are conditional PutItems, one per snapshot, 16 sessions at a time and the snapshots of
//! one session in the given order (a batch may hold two of them): version 1 only if no item has
//! the key, any later version only if the stored item has the version before it. (BatchWriteItem
//! would take 25 to a call but checks no condition; it deletes a forgotten visitor's sessions.) A later version whose start moved (a late
//! event before the session's first one) replaces the item under the old start in one
//! TransactWriteItems: delete on the version before, put where no item is. A session that
//! absorbed others is written in one TransactWriteItems with their deletes, each on the version
//! read.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures::StreamExt;
use retailmind_schema::Session;

use super::batch_write;
use super::errors::{conditional_put, sdk_error};
use super::pages::all_items;
use super::session_item::{
    expires_at, from_item, number, string, to_item, ANONYMOUS_ID, END_MS, EXPIRES_AT, START_MS,
    VERSION,
};
use crate::error::{ConnectorError, Result};
use crate::sessions::{Merge, SessionScan, SessionStore};

const SERVICE: &str = "dynamodb";

/// Sessions written at once by one `put`.
const PUTS_IN_FLIGHT: usize = 16;

/// The most writes one TransactWriteItems takes.
const TRANSACTION_ITEMS: usize = 100;

pub(crate) struct DynamoSessions {
    client: Client,
    table: String,
    ttl_days: Option<u32>,
}

impl DynamoSessions {
    pub(crate) fn new(client: Client, table: impl Into<String>, ttl_days: Option<u32>) -> Self {
        DynamoSessions {
            client,
            table: table.into(),
            ttl_days,
        }
    }

    /// The item of `session`, with its expiry when a TTL is set.
    fn item(&self, session: &Session) -> super::session_item::Item {
        let mut item = to_item(session);
        if let Some(days) = self.ttl_days {
            item.insert(EXPIRES_AT.into(), number(expires_at(session.end_ms, days)));
        }
        item
    }

    async fn put_one(&self, session: &Session) -> Result<()> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(session)));
        let request = match session.version {
            0 => {
                return Err(ConnectorError::Misconfigured(format!(
                    "session {} of {:?} has version 0; versions start at 1",
                    session.session_id, session.anonymous_id
                )))
            }
            1 => request.condition_expression(format!("attribute_not_exists({ANONYMOUS_ID})")),
            version => request
                .condition_expression("#version = :previous")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":previous", number(version - 1)),
        };
        let what = || {
            format!(
                "session of {:?} starting at {} (writing version {})",
                session.anonymous_id, session.start_ms, session.version
            )
        };
        match conditional_put(request.send().await, what) {
            Err(ConnectorError::Conflict { .. }) if session.version > 1 => {
                self.put_moved(session).await
            }
            other => other,
        }
    }

    /// A later snapshot whose start moved (a late event before its first one joined it): the
    /// item is keyed by the start, so the version before it is stored under the old start. In
    /// one transaction: that item deleted, on its version, and this one put where no item is.
    /// `Conflict` when there is no such item either.
    async fn put_moved(&self, session: &Session) -> Result<()> {
        // A start only ever moves earlier, so the version before is stored at or after this
        // one's start: the visitor's older sessions, however many, are not read.
        let stored = self
            .query_ascending(&session.anonymous_id, Some(session.start_ms))
            .await?;
        let Some(before) = stored
            .iter()
            .find(|s| s.session_id == session.session_id && s.start_ms != session.start_ms)
        else {
            return Err(ConnectorError::Conflict {
                what: format!(
                    "session {} of {:?}: stored at another version than {}",
                    session.session_id,
                    session.anonymous_id,
                    session.version - 1
                ),
            });
        };
        let items = vec![
            self.delete_at(&session.anonymous_id, before.start_ms, session.version - 1)?,
            self.put_where_none(session)?,
        ];
        self.transact(items, || {
            format!(
                "session {} of {:?}: changed while its start moved",
                session.session_id, session.anonymous_id
            )
        })
        .await
    }

    /// Deletes the visitor's item starting at `start_ms` if it holds `version`.
    fn delete_at(
        &self,
        anonymous_id: &str,
        start_ms: i64,
        version: u64,
    ) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(ANONYMOUS_ID, string(anonymous_id))
            .key(START_MS, number(start_ms))
            .condition_expression("#version = :previous")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":previous", number(version))
            .build()
            .map_err(|e| super::errors::build_error(SERVICE, e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Puts `session` where no item has its key.
    fn put_where_none(&self, session: &Session) -> Result<TransactWriteItem> {
        self.put_if(session, None)
    }

    /// Puts `session` over the item with its key if that one holds `previous`, or where none
    /// is when `previous` is `None`.
    fn put_if(&self, session: &Session, previous: Option<u64>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(session)));
        let put = match previous {
            None => put.condition_expression(format!("attribute_not_exists({ANONYMOUS_ID})")),
            Some(version) => put
                .condition_expression("#version = :previous")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":previous", number(version)),
        };
        let put = put
            .build()
            .map_err(|e| super::errors::build_error(SERVICE, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs `items` in one TransactWriteItems; a failed condition is a `Conflict`.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if items.len() > TRANSACTION_ITEMS {
            return Err(ConnectorError::Misconfigured(format!(
                "{}: {} writes, more than the {TRANSACTION_ITEMS} of one DynamoDB transaction",
                what(),
                items.len()
            )));
        }
        let answer = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let e = match answer {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
            e.as_service_error()
        else {
            return Err(sdk_error(SERVICE, e));
        };
        // DynamoDB cancels a transaction for a failed condition and for throughput or a
        // concurrent transaction on the same items too; only the first is a lost race.
        let reasons: Vec<&str> = canceled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|code| *code != "None")
            .collect();
        if reasons.contains(&"ConditionalCheckFailed") {
            return Err(ConnectorError::Conflict { what: what() });
        }
        let detail = format!("{} cancelled: {}", what(), reasons.join(", "));
        let passing = [
            "ThrottlingError",
            "ProvisionedThroughputExceeded",
            "TransactionConflict",
        ];
        if reasons.iter().any(|code| passing.contains(code)) {
            Err(ConnectorError::Throttled {
                service: SERVICE,
                detail,
            })
        } else {
            Err(ConnectorError::unavailable(SERVICE, detail))
        }
    }

    /// The visitor's sessions, oldest first, from `from_ms` on if given; every page of them.
    async fn query_ascending(
        &self,
        anonymous_id: &str,
        from_ms: Option<i64>,
    ) -> Result<Vec<Session>> {
        let items = all_items(|start_key| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#anon", ANONYMOUS_ID)
                .expression_attribute_values(":anon", string(anonymous_id))
                .scan_index_forward(true)
                .consistent_read(true)
                .set_exclusive_start_key(start_key);
            let request = match from_ms {
                Some(from_ms) => request
                    .key_condition_expression("#anon = :anon AND #start >= :from")
                    .expression_attribute_names("#start", START_MS)
                    .expression_attribute_values(":from", number(from_ms)),
                None => request.key_condition_expression("#anon = :anon"),
            };
            request.send()
        })
        .await?;
        items.iter().map(from_item).collect()
    }
}

#[async_trait]
impl SessionStore for DynamoSessions {
    async fn latest_before(&self, anonymous_id: &str, at_ms: i64) -> Result<Option<Session>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#anon = :anon AND #start <= :at")
            .expression_attribute_names("#anon", ANONYMOUS_ID)
            .expression_attribute_names("#start", START_MS)
            .expression_attribute_values(":anon", string(anonymous_id))
            .expression_attribute_values(":at", number(at_ms))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, e))?;
        output.items().first().map(from_item).transpose()
    }

    async fn put(&self, sessions: &[Session]) -> Result<()> {
        // One PutItem is a round trip and a batch writes hundreds of sessions: different
        // sessions go side by side, the snapshots of one session in the order given.
        let mut by_session: Vec<Vec<usize>> = Vec::new();
        let mut position: HashMap<(&str, &str), usize> = HashMap::new();
        for (at, session) in sessions.iter().enumerate() {
            let key = (session.anonymous_id.as_str(), session.session_id.as_str());
            let group = *position.entry(key).or_insert_with(|| {
                by_session.push(Vec::new());
                by_session.len() - 1
            });
            by_session[group].push(at);
        }
        let outcomes: Vec<Result<()>> = futures::stream::iter(by_session)
            .map(|snapshots| async move {
                for at in snapshots {
                    self.put_one(&sessions[at]).await?;
                }
                Ok(())
            })
            .buffer_unordered(PUTS_IN_FLIGHT)
            .collect()
            .await;
        // Any other failure first (throttling wants a backoff before anything is re-read);
        // then a lost race, after which the caller re-reads those visitors and writes again.
        let mut conflict = None;
        for outcome in outcomes {
            match outcome {
                Err(lost @ ConnectorError::Conflict { .. }) => {
                    conflict.get_or_insert(lost);
                }
                Err(other) => return Err(other),
                Ok(()) => {}
            }
        }
        if let Some(conflict) = conflict {
            return Err(conflict);
        }
        tracing::debug!(table = %self.table, sessions = sessions.len(), "sessions written");
        Ok(())
    }

    async fn merge(&self, merge: &Merge) -> Result<()> {
        let survivor = &merge.survivor;
        let mut items = Vec::with_capacity(merge.absorbed.len() + 2);
        let previous = survivor.version.saturating_sub(1);
        match merge.survivor_read_start {
            None => items.push(self.put_where_none(survivor)?),
            Some(start) if start == survivor.start_ms => {
                items.push(self.put_if(survivor, Some(previous))?);
            }
            // Its start moved earlier with the same late events: the item under the old start
            // goes in the same transaction.
            Some(start) => {
                items.push(self.delete_at(&survivor.anonymous_id, start, previous)?);
                items.push(self.put_where_none(survivor)?);
            }
        }
        for absorbed in &merge.absorbed {
            items.push(self.delete_at(
                &absorbed.anonymous_id,
                absorbed.start_ms,
                absorbed.version,
            )?);
        }
        self.transact(items, || {
            format!(
                "session {} of {:?} absorbing {} others",
                survivor.session_id,
                survivor.anonymous_id,
                merge.absorbed.len()
            )
        })
        .await?;
        tracing::debug!(table = %self.table, session = %survivor.session_id, absorbed = merge.absorbed.len(), "sessions merged");
        Ok(())
    }

    async fn sessions_since(&self, anonymous_id: &str, from_ms: i64) -> Result<Vec<Session>> {
        self.query_ascending(anonymous_id, Some(from_ms)).await
    }

    async fn sessions_of(&self, anonymous_id: &str) -> Result<Vec<Session>> {
        self.query_ascending(anonymous_id, None).await
    }

    async fn forget_visitor(&self, anonymous_id: &str) -> Result<usize> {
        let sessions = self.query_ascending(anonymous_id, None).await?;
        let deletes = sessions
            .iter()
            .map(|session| {
                let key = HashMap::from([
                    (ANONYMOUS_ID.to_owned(), string(&session.anonymous_id)),
                    (START_MS.to_owned(), number(session.start_ms)),
                ]);
                let delete = DeleteRequest::builder().set_key(Some(key)).build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<std::result::Result<Vec<_>, BuildError>>()
            .map_err(|e| super::errors::build_error(SERVICE, e))?;
        // Erasure asks for no condition: whatever version is stored goes.
        batch_write::write_all(&self.client, &self.table, deletes).await?;
        Ok(sessions.len())
    }

    async fn scan(&self, scan: SessionScan) -> Result<Vec<Session>> {
        let items = all_items(|start_key| {
            let request = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start_key);
            let request = match scan {
                SessionScan::StartedIn { from_ms, to_ms } => request
                    .filter_expression("#start >= :from AND #start < :to")
                    .expression_attribute_names("#start", START_MS)
                    .expression_attribute_values(":from", number(from_ms))
                    .expression_attribute_values(":to", number(to_ms)),
                SessionScan::EndedSince { since_ms } => request
                    .filter_expression("#end >= :since")
                    .expression_attribute_names("#end", END_MS)
                    .expression_attribute_values(":since", number(since_ms)),
            };
            request.send()
        })
        .await?;
        items.iter().map(from_item).collect()
    }
}
