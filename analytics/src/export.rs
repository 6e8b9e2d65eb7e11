//! The exports (the Glue job's second part): the session store's sessions and the transactions
//! store's orders, order lines and customers, copied into the lake's Parquet tables so they
//! can be joined with the events.
//!
//! Incremental, and idempotent like the events ETL (a partition is always rewritten whole from
//! the store, so a repeat gives the same files):
//! - `sessions/dt=D/` holds the sessions that started on day D. A session changes only when its
//!   events arrive, so a run rewrites the days the events ETL just wrote to, the day before each
//!   (a session may start before midnight) and the day after (a late event may move a session's
//!   start, or join it to an earlier one, from there to its own day), and rewrites them once
//!   more in the next run (the processor may update a session just after its events reached
//!   the lake). The first run writes every day the events table has.
//! - `orders/dt=D/` and `order_lines/dt=D/` hold the orders placed on day D. The store stamps
//!   every change with its clock, so a run rewrites the days of orders changed since the last
//!   run began, less a margin for transactions still open then.
//! - `customers/` is one current snapshot, rewritten every run (a forgotten customer leaves it).
//!
//! The manifest is written last: a crash repeats the work, which is harmless.

use std::collections::BTreeSet;

use bytes::Bytes;
use retailmind_commerce::{CommerceError, CommerceStore};
use retailmind_connectors::{ConnectorError, SessionScan, SessionStore};
use serde::{Deserialize, Serialize};

use crate::day::{day_end_ms, day_of, day_start_ms, next_day, previous_day};
use crate::etl::{write_rows, write_table, EtlError};
use crate::export_rows::{CustomerRow, OrderLineRow, OrderRow, SessionRow};
use crate::store::LakeStore;
use crate::tables::{CUSTOMERS, ORDERS, ORDER_LINES, SESSIONS};

/// Where the exports' manifest lives.
pub const EXPORT_MANIFEST_KEY: &str = "tables/_etl/exports-manifest.json";

/// Orders changed this long before a run began are written again by the next run: a
/// transaction open when the run read the store commits with a time before the run's start.
pub const ORDER_CLOCK_MARGIN_MS: i64 = 10 * 60 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// Session days the last run wrote, which the next run writes once more.
    pub session_days_again: BTreeSet<String>,
    /// The next run writes the days of orders changed at or after this (the store's clock);
    /// unset before the first run.
    pub orders_changed_since_ms: Option<i64>,
}

/// What an export run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Days of `sessions` rewritten, and the sessions in them.
    pub session_days: Vec<String>,
    pub sessions: usize,
    /// Days of `orders` and `order_lines` rewritten, and the rows in them.
    pub order_days: Vec<String>,
    pub orders: usize,
    pub order_lines: usize,
    /// Rows of the `customers` snapshot; `None` without a transactions store.
    pub customers: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Lake(#[from] EtlError),
    #[error("reading sessions from the session store: {0}")]
    Sessions(#[from] ConnectorError),
    #[error("reading orders and customers from the transactions store: {0}")]
    Commerce(#[from] CommerceError),
    #[error("export manifest {key} is not readable: {reason}")]
    Manifest { key: String, reason: String },
}

/// The stores the exports read; either may be absent (no transactions store configured).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub sessions: Option<&'a dyn SessionStore>,
    pub commerce: Option<&'a dyn CommerceStore>,
}

/// One export run. `event_days_written` are the days the events ETL rewrote just before;
/// `event_days` every day the events table has (the first run's sessions). `now_ms` is the
/// wall clock, in the transactions store's time.
pub async fn run(
    lake: &dyn LakeStore,
    sources: Sources<'_>,
    event_days_written: &[String],
    event_days: &BTreeSet<String>,
    now_ms: i64,
    max_rows_per_file: usize,
) -> Result<ExportReport, ExportError> {
    let previous = match lake
        .get(EXPORT_MANIFEST_KEY)
        .await
        .map_err(EtlError::from)?
    {
        Some(bytes) => Some(
            serde_json::from_slice::<ExportManifest>(&bytes).map_err(|e| {
                ExportError::Manifest {
                    key: EXPORT_MANIFEST_KEY.into(),
                    reason: e.to_string(),
                }
            })?,
        ),
        None => None,
    };
    let mut report = ExportReport::default();
    let mut next = ExportManifest::default();

    if let Some(sessions) = sources.sessions {
        let days = session_days(previous.as_ref(), event_days_written, event_days);
        for day in &days {
            let (Some(from_ms), Some(to_ms)) = (day_start_ms(day), day_end_ms(day)) else {
                continue;
            };
            let mut rows: Vec<SessionRow> = sessions
                .scan(SessionScan::StartedIn { from_ms, to_ms })
                .await?
                .iter()
                .map(SessionRow::from)
                .collect();
            rows.sort_by(|a, b| (a.start_ms, &a.session_id).cmp(&(b.start_ms, &b.session_id)));
            let refs: Vec<&SessionRow> = rows.iter().collect();
            write_table(lake, &SESSIONS, day, &refs, max_rows_per_file).await?;
            report.sessions += rows.len();
        }
        next.session_days_again = event_days_written
            .iter()
            .flat_map(|d| sessions_touched_by(d))
            .collect();
        report.session_days = days.into_iter().collect();
    }

    if let Some(commerce) = sources.commerce {
        let since = previous
            .as_ref()
            .and_then(|m| m.orders_changed_since_ms)
            .unwrap_or(i64::MIN);
        let days: BTreeSet<String> = commerce
            .placed_at_of_orders_changed_since(since)
            .await?
            .into_iter()
            .map(day_of)
            .collect();
        for day in &days {
            let (Some(from_ms), Some(to_ms)) = (day_start_ms(day), day_end_ms(day)) else {
                continue;
            };
            let orders = commerce.orders_placed_between(from_ms, to_ms).await?;
            let rows: Vec<OrderRow> = orders.iter().map(OrderRow::from).collect();
            let lines: Vec<OrderLineRow> = orders.iter().flat_map(OrderLineRow::of).collect();
            write_table(
                lake,
                &ORDERS,
                day,
                &rows.iter().collect::<Vec<_>>(),
                max_rows_per_file,
            )
            .await?;
            write_table(
                lake,
                &ORDER_LINES,
                day,
                &lines.iter().collect::<Vec<_>>(),
                max_rows_per_file,
            )
            .await?;
            report.orders += rows.len();
            report.order_lines += lines.len();
        }
        report.order_days = days.into_iter().collect();
        next.orders_changed_since_ms = Some(now_ms.saturating_sub(ORDER_CLOCK_MARGIN_MS));

        let customers: Vec<CustomerRow> = commerce
            .customer_summaries()
            .await?
            .iter()
            .map(CustomerRow::from)
            .collect();
        let prefix = format!("{}/", CUSTOMERS.prefix);
        write_rows(
            lake,
            &prefix,
            &customers.iter().collect::<Vec<_>>(),
            max_rows_per_file,
        )
        .await?;
        report.customers = Some(customers.len());
    }

    let body = serde_json::to_vec_pretty(&next).expect("the manifest serializes");
    lake.put(EXPORT_MANIFEST_KEY, Bytes::from(body))
        .await
        .map_err(EtlError::from)?;
    Ok(report)
}

/// The session days a run rewrites: every event day on the first run; afterwards the days the
/// events ETL just wrote with their neighbours, and the last run's days once more. Pure.
pub fn session_days(
    previous: Option<&ExportManifest>,
    event_days_written: &[String],
    event_days: &BTreeSet<String>,
) -> BTreeSet<String> {
    let Some(previous) = previous else {
        return event_days
            .iter()
            .flat_map(|d| sessions_touched_by(d))
            .collect();
    };
    let mut days = previous.session_days_again.clone();
    for day in event_days_written {
        days.extend(sessions_touched_by(day));
    }
    days
}

/// The days whose sessions an event of `day` may change: a session that holds it may have
/// started the day before, and one that started the next day (at most an inactivity gap, at
/// most a day, after it) may have moved to it or been joined to an earlier one.
fn sessions_touched_by(day: &str) -> impl Iterator<Item = String> {
    [previous_day(day), Some(day.to_owned()), next_day(day)]
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(days: &[&str]) -> BTreeSet<String> {
        days.iter().map(|d| (*d).to_owned()).collect()
    }

    #[test]
    fn the_first_run_writes_every_event_day_and_the_days_around_each() {
        let days = session_days(None, &[], &set(&["2024-03-01", "2024-03-05"]));
        assert_eq!(
            days,
            set(&[
                "2024-02-29",
                "2024-03-01",
                "2024-03-02",
                "2024-03-04",
                "2024-03-05",
                "2024-03-06"
            ])
        );
    }

    #[test]
    fn later_runs_write_the_new_days_and_the_last_runs_days_again() {
        let previous = ExportManifest {
            session_days_again: set(&["2024-03-01"]),
            orders_changed_since_ms: Some(0),
        };
        let days = session_days(
            Some(&previous),
            &["2024-03-10".to_owned()],
            &set(&["2024-03-01", "2024-03-10"]),
        );
        assert_eq!(
            days,
            set(&["2024-03-01", "2024-03-09", "2024-03-10", "2024-03-11"])
        );
        let quiet = session_days(Some(&ExportManifest::default()), &[], &set(&["2024-03-01"]));
        assert!(
            quiet.is_empty(),
            "nothing new, nothing rewritten: {quiet:?}"
        );
    }
}
