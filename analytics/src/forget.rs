//! The right to be forgotten, in the lake. `DELETE /v1/customers/{id}` removes the customer
//! from the transactions store and the session store and queues a deletion request; this step
//! of the lake job carries it out everywhere the lake holds their events: the raw Firehose
//! objects, the quarantine, the event tables and the sessions table, then marks the request
//! done. (The orders stay, unlinked, and the customers snapshot loses them through the exports.)
//!
//! A line or row belongs to the customer when its user id is the customer's id or its anonymous
//! id is one of the customer's browsers. A raw object already read by the events ETL is
//! recorded in its manifest with its new size, so the ETL neither reports it as changed nor
//! reads it again; one not read yet is simply read later in its filtered form.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use retailmind_commerce::{CommerceError, CommerceStore, DeletionRequest};
use serde::Serialize;

use crate::day::day_in_key;
use crate::etl::decode::{self, QuarantinedLine};
use crate::etl::manifest::{Manifest, RawObject, MANIFEST_KEY};
use crate::etl::{self, read_partition, write_partition, EtlError, RAW_EVENTS_PREFIX};
use crate::export_rows::SessionRow;
use crate::store::LakeStore;
use crate::tables::{QUARANTINE, SESSIONS};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForgetReport {
    /// Deletion requests carried out (and marked done).
    pub requests: usize,
    pub raw_objects_rewritten: usize,
    pub raw_lines_removed: usize,
    pub quarantine_lines_removed: usize,
    pub event_rows_removed: usize,
    pub session_rows_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error(transparent)]
    Lake(#[from] EtlError),
    #[error("reading or closing deletion requests: {0}")]
    Commerce(#[from] CommerceError),
}

/// Whose data is to go: the customers' ids and their browsers' anonymous ids.
#[derive(Clone, Debug, Default)]
pub struct Subjects {
    user_ids: HashSet<String>,
    anonymous_ids: HashSet<String>,
}

impl Subjects {
    pub fn of(requests: &[DeletionRequest]) -> Subjects {
        let mut s = Subjects::default();
        for r in requests {
            s.user_ids.insert(r.customer_id.clone());
            s.anonymous_ids.extend(r.anonymous_ids.iter().cloned());
        }
        s
    }

    /// Whether a record with these ids belongs to one of the subjects.
    pub fn own(&self, anonymous_id: &str, user_id: Option<&str>) -> bool {
        self.anonymous_ids.contains(anonymous_id)
            || user_id.is_some_and(|u| self.user_ids.contains(u))
    }

    /// Whether a raw line belongs to a subject: by its fields when it is a JSON object, else
    /// (a line the ETL could not read) by any of their ids appearing in it.
    pub fn own_line(&self, line: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Ids {
            #[serde(default)]
            anonymous_id: Option<String>,
            #[serde(default)]
            user_id: Option<String>,
        }
        match serde_json::from_slice::<Ids>(line) {
            Ok(ids) => {
                ids.anonymous_id
                    .as_deref()
                    .is_some_and(|a| self.anonymous_ids.contains(a))
                    || ids
                        .user_id
                        .as_deref()
                        .is_some_and(|u| self.user_ids.contains(u))
            }
            Err(_) => self.mentioned_in(&String::from_utf8_lossy(line)),
        }
    }

    fn mentioned_in(&self, text: &str) -> bool {
        self.user_ids
            .iter()
            .chain(&self.anonymous_ids)
            .any(|id| !id.is_empty() && text.contains(id.as_str()))
    }
}

/// The lines of `body` that do not belong to `subjects`, and how many were dropped. Pure.
pub fn without_subjects(body: &[u8], subjects: &Subjects) -> (Vec<u8>, usize) {
    let mut kept = Vec::with_capacity(body.len());
    let mut removed = 0;
    for line in body.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if subjects.own_line(line) {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    (kept, removed)
}

/// Carries out every pending deletion request of `commerce` in `lake`.
pub async fn run(
    lake: &dyn LakeStore,
    commerce: &dyn CommerceStore,
    now_ms: i64,
    max_rows_per_file: usize,
) -> Result<ForgetReport, ForgetError> {
    let requests = commerce.pending_deletions().await?;
    let mut report = ForgetReport::default();
    if requests.is_empty() {
        return Ok(report);
    }
    let subjects = Subjects::of(&requests);
    let mut manifest = match lake.get(MANIFEST_KEY).await.map_err(EtlError::from)? {
        Some(bytes) => Manifest::from_json(&bytes).map_err(|e| EtlError::Manifest {
            key: MANIFEST_KEY.into(),
            reason: e.to_string(),
        })?,
        None => Manifest::default(),
    };

    for object in lake.list(RAW_EVENTS_PREFIX).await.map_err(EtlError::from)? {
        let Some(body) = lake.get(&object.key).await.map_err(EtlError::from)? else {
            continue;
        };
        let (kept, removed) = without_subjects(&body, &subjects);
        if removed == 0 {
            continue;
        }
        let size = kept.len() as u64;
        lake.put(&object.key, Bytes::from(kept))
            .await
            .map_err(EtlError::from)?;
        if manifest.processed.contains_key(&object.key) {
            manifest.record(&RawObject::new(object.key.clone(), size));
        }
        report.raw_objects_rewritten += 1;
        report.raw_lines_removed += removed;
    }
    lake.put(MANIFEST_KEY, Bytes::from(manifest.to_json()))
        .await
        .map_err(EtlError::from)?;

    let quarantine = format!("{}/", QUARANTINE.prefix);
    for object in lake.list(&quarantine).await.map_err(EtlError::from)? {
        let Some(body) = lake.get(&object.key).await.map_err(EtlError::from)? else {
            continue;
        };
        let mut kept = Vec::new();
        let mut removed = 0;
        for (_, line) in decode::lines(&body) {
            let own = match serde_json::from_slice::<QuarantinedLine>(line) {
                Ok(q) => subjects.own_line(q.raw.as_bytes()),
                Err(_) => subjects.own_line(line),
            };
            if own {
                removed += 1;
            } else {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
        if removed > 0 {
            lake.put(&object.key, Bytes::from(kept))
                .await
                .map_err(EtlError::from)?;
            report.quarantine_lines_removed += removed;
        }
    }

    for day in &manifest.days {
        let records = read_partition(lake, day).await?;
        let before = records.len();
        let kept: Vec<_> = records
            .into_iter()
            .filter(|r| !subjects.own(&r.event.anonymous_id, r.event.user_id.as_deref()))
            .collect();
        if kept.len() != before {
            write_partition(lake, day, &kept, max_rows_per_file).await?;
            report.event_rows_removed += before - kept.len();
        }
    }

    let session_days: BTreeSet<String> = lake
        .list(&format!("{}/", SESSIONS.prefix))
        .await
        .map_err(EtlError::from)?
        .iter()
        .filter_map(|o| day_in_key(&o.key))
        .collect();
    for day in &session_days {
        let rows: Vec<SessionRow> = etl::read_table(lake, &SESSIONS, day).await?;
        let before = rows.len();
        let kept: Vec<&SessionRow> = rows
            .iter()
            .filter(|s| !subjects.own(&s.anonymous_id, s.user_id.as_deref()))
            .collect();
        if kept.len() != before {
            etl::write_table(lake, &SESSIONS, day, &kept, max_rows_per_file).await?;
            report.session_rows_removed += before - kept.len();
        }
    }

    for request in &requests {
        commerce.deletion_done(&request.request_id, now_ms).await?;
    }
    report.requests = requests.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Subjects {
        Subjects::of(&[DeletionRequest {
            request_id: "r".into(),
            customer_id: "cust-9".into(),
            anonymous_ids: vec!["anon-9".into()],
            requested_at: 0,
        }])
    }

    #[test]
    fn lines_of_the_subjects_go_by_either_id_and_others_stay_byte_for_byte() {
        let body = b"{\"anonymous_id\":\"anon-1\",\"x\":1}\n\
{\"anonymous_id\":\"anon-9\"}\n\
{\"anonymous_id\":\"anon-2\",\"user_id\":\"cust-9\"}\n\
\n\
{\"anonymous_id\":\"anon-3\",\"user_id\":\"cust-1\"}\n";
        let (kept, removed) = without_subjects(body, &subjects());
        assert_eq!(removed, 2);
        assert_eq!(
            kept,
            b"{\"anonymous_id\":\"anon-1\",\"x\":1}\n{\"anonymous_id\":\"anon-3\",\"user_id\":\"cust-1\"}\n"
        );
    }

    #[test]
    fn an_unreadable_line_goes_when_it_mentions_a_subject() {
        let s = subjects();
        assert!(s.own_line(b"{broken anon-9"));
        assert!(!s.own_line(b"{broken anon-1"));
        assert!(!s.own("anon-1", None));
        assert!(s.own("anon-1", Some("cust-9")));
    }
}
