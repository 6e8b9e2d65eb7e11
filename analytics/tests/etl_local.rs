//! The events ETL on the local lake folder: compaction into day partitions, re-runs that change
//! nothing, incremental runs, replayed duplicates, quarantine with reasons and late data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use retailmind_analytics::day::{day_of, day_start_ms};
use retailmind_analytics::etl::decode::QuarantinedLine;
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::event_rows::EventRow;
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::store::{LakeStore, LocalStore};
use retailmind_analytics::tables::EVENTS;
use retailmind_schema::{Event, Payload};

fn shop() -> Vec<Event> {
    generate::shop(&ShopOptions {
        visitors: 120,
        days: 4,
        ..ShopOptions::default()
    })
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

async fn event_rows(store: &dyn LakeStore, days: &BTreeSet<String>) -> Vec<EventRow> {
    let mut rows = Vec::new();
    for day in days {
        rows.extend(
            etl::read_table::<EventRow>(store, &EVENTS, day)
                .await
                .unwrap(),
        );
    }
    rows
}

fn days_of(events: &[Event]) -> BTreeSet<String> {
    events.iter().map(|e| day_of(e.timestamp)).collect()
}

#[tokio::test]
async fn raw_events_are_compacted_into_one_file_per_day_and_table() {
    let lake = tempfile::tempdir().unwrap();
    let events = shop();
    let objects = generate::raw_objects(&events, 7);
    generate::write_local(lake.path(), &objects).unwrap();
    let store = LocalStore::new(lake.path());

    let report = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(report.files_read, objects.len());
    assert_eq!(report.lines_read, events.len());
    assert_eq!(report.events_valid, events.len());
    assert_eq!((report.quarantined, report.duplicates_dropped), (0, 0));
    let days = days_of(&events);
    assert_eq!(
        report.days_rewritten,
        days.iter().cloned().collect::<Vec<_>>()
    );

    let rows = event_rows(&store, &days).await;
    let ids: BTreeSet<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let expected: BTreeSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, expected);
    assert_eq!(rows.len(), events.len(), "no event twice");
    for row in &rows {
        let e = events
            .iter()
            .find(|e| e.event_id.to_string() == row.event_id)
            .unwrap();
        assert_eq!(row.event_type, e.payload.kind());
        assert_eq!(row.timestamp_ms, e.timestamp);
    }

    // Many small raw files became one Parquet file per day and table.
    let tables = snapshot(&lake.path().join("tables"));
    for day in &days {
        for table in ["events", "event_items", "rec_impressions"] {
            let files: Vec<&String> = tables
                .keys()
                .filter(|k| k.starts_with(&format!("{table}/dt={day}/")))
                .collect();
            assert_eq!(files.len(), 1, "{table} {day}: {files:?}");
            assert!(files[0].ends_with("part-00000.parquet"));
        }
    }
    assert!(
        objects.len() > 4 * days.len(),
        "the input really was many small files"
    );

    // Lines of checkouts and purchases are in event_items, recommendations in rec_impressions.
    let mut items = 0;
    let mut recs = 0;
    for e in &events {
        match &e.payload {
            Payload::CheckoutStarted(c) => items += c.items.len(),
            Payload::Purchase(p) => items += p.items.len(),
            Payload::Custom(c) if c.name == "recommendation_impression" => {
                recs += c.props["product_ids"].as_array().unwrap().len()
            }
            Payload::Custom(c) if c.name == "recommendation_click" => recs += 1,
            _ => {}
        }
    }
    let mut stored_items = 0;
    let mut stored_recs = 0;
    for day in &days {
        let records = etl::read_partition(&store, day).await.unwrap();
        stored_items += records.iter().map(|r| r.items.len()).sum::<usize>();
        stored_recs += records.iter().map(|r| r.recs.len()).sum::<usize>();
    }
    assert!(items > 0 && recs > 0);
    assert_eq!((stored_items, stored_recs), (items, recs));
}

#[tokio::test]
async fn a_rerun_reads_nothing_and_changes_no_byte() {
    let lake = tempfile::tempdir().unwrap();
    let events = shop();
    generate::write_local(lake.path(), &generate::raw_objects(&events, 50)).unwrap();
    let store = LocalStore::new(lake.path());
    etl::run(&store, &EtlOptions::default()).await.unwrap();
    let before = snapshot(lake.path());

    let again = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(again.files_read, 0);
    assert!(again.days_rewritten.is_empty());
    assert_eq!(snapshot(lake.path()), before);

    // Losing the manifest (a crash before it was written) re-reads everything, and the merge
    // still leaves every table byte for byte as it was.
    std::fs::remove_file(lake.path().join(etl::manifest::MANIFEST_KEY)).unwrap();
    let repeat = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(repeat.duplicates_dropped, events.len());
    assert_eq!(snapshot(lake.path()), before);
}

#[tokio::test]
async fn new_objects_with_replays_add_only_the_new_events_as_a_full_rebuild_would() {
    let events = shop();
    let (first, second) = events.split_at(events.len() / 2);
    let incremental = tempfile::tempdir().unwrap();
    let store = LocalStore::new(incremental.path());
    generate::write_local(incremental.path(), &generate::raw_objects(first, 20)).unwrap();
    etl::run(&store, &EtlOptions::default()).await.unwrap();

    // The second delivery repeats a tenth of the first (a replayed stream) and brings the rest.
    let mut delivery: Vec<Event> = first.iter().step_by(10).cloned().collect();
    let replayed = delivery.len();
    delivery.extend_from_slice(second);
    let body: Vec<u8> = delivery
        .iter()
        .flat_map(|e| {
            let mut line = serde_json::to_vec(e).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    let key = "events/dt=2024-11-30/hour=23/part-zz-replay.json";
    store.put(key, body.into()).await.unwrap();
    let report = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(report.files_read, 1, "only the new object is read");
    assert_eq!(report.events_valid, delivery.len());
    assert_eq!(report.duplicates_dropped, replayed);
    let rows = event_rows(&store, &days_of(&events)).await;
    assert_eq!(rows.len(), events.len());

    // The same tables as one run over everything at once.
    let rebuilt = tempfile::tempdir().unwrap();
    let mut all = generate::raw_objects(first, 20);
    all.insert(key.into(), store.get(key).await.unwrap().unwrap().to_vec());
    generate::write_local(rebuilt.path(), &all).unwrap();
    etl::run(&LocalStore::new(rebuilt.path()), &EtlOptions::default())
        .await
        .unwrap();
    assert_eq!(
        snapshot(&incremental.path().join("tables/events")),
        snapshot(&rebuilt.path().join("tables/events"))
    );
    assert_eq!(
        snapshot(&incremental.path().join("tables/event_items")),
        snapshot(&rebuilt.path().join("tables/event_items"))
    );
}

fn event_json(id_ms: i64, ts: i64) -> serde_json::Value {
    let id = uuid::Builder::from_unix_timestamp_millis(id_ms as u64, &[7; 10]).into_uuid();
    serde_json::json!({
        "event_id": id, "type": "product_view", "anonymous_id": "a-1", "timestamp": ts,
        "received_at": ts + 1000,
        "context": {"page": {"url": "https://shop.example/p/1"}},
        "properties": {"product_id": "P1", "price_minor": 100, "currency": "EUR"}
    })
}

async fn quarantined(store: &LocalStore) -> Vec<QuarantinedLine> {
    let mut out = Vec::new();
    for object in store.list("quarantine/events/").await.unwrap() {
        let body = store.get(&object.key).await.unwrap().unwrap();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn bad_lines_go_to_the_quarantine_with_the_field_and_the_reason() {
    let lake = tempfile::tempdir().unwrap();
    let store = LocalStore::new(lake.path());
    let ts = day_start_ms("2024-11-25").unwrap() + 3_600_000;
    let good = event_json(ts, ts);
    let mut bad_currency = event_json(ts + 1, ts + 1);
    bad_currency["properties"]["currency"] = "eur".into();
    let mut no_anonymous_id = event_json(ts + 2, ts + 2);
    no_anonymous_id
        .as_object_mut()
        .unwrap()
        .remove("anonymous_id");
    let mut not_v7 = event_json(ts + 3, ts + 3);
    not_v7["event_id"] = uuid::Uuid::from_u64_pair(1, 2).to_string().into();
    let mut wrong_type = event_json(ts + 4, ts + 4);
    wrong_type["timestamp"] = "yesterday".into();
    let lines = [
        good.to_string(),
        "{not json".to_owned(),
        bad_currency.to_string(),
        no_anonymous_id.to_string(),
        String::new(),
        not_v7.to_string(),
        wrong_type.to_string(),
    ];
    let key = "events/dt=2024-11-25/hour=01/part-1.json";
    store
        .put(key, lines.join("\n").into_bytes().into())
        .await
        .unwrap();

    let report = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(
        (report.lines_read, report.events_valid, report.quarantined),
        (6, 1, 5)
    );
    let mut bad = quarantined(&store).await;
    bad.sort_by_key(|l| l.line_no);
    let found: Vec<(i64, &str)> = bad.iter().map(|l| (l.line_no, l.reason.as_str())).collect();
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(bad.iter().all(|l| l.source == key));
    assert_eq!(bad[0].line_no, 2);
    assert!(bad[0].reason.starts_with("not JSON"), "{}", bad[0].reason);
    assert_eq!(bad[0].raw, "{not json");
    assert_eq!(bad[1].line_no, 3);
    assert!(
        bad[1].reason.contains("properties.currency"),
        "{}",
        bad[1].reason
    );
    assert!(bad[1].reason.contains("ISO 4217"), "{}", bad[1].reason);
    assert_eq!(bad[2].line_no, 4);
    assert!(bad[2].reason.contains("anonymous_id"), "{}", bad[2].reason);
    assert_eq!(bad[3].line_no, 6);
    assert!(
        bad[3].reason.contains("event_id") && bad[3].reason.contains("version 7"),
        "{}",
        bad[3].reason
    );
    assert_eq!(bad[4].line_no, 7);
    assert!(bad[4].reason.contains("timestamp"), "{}", bad[4].reason);
    // Filed under the day of the source (the refused lines have no usable event time) …
    let keys: Vec<String> = store
        .list("quarantine/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("quarantine/events/dt=2024-11-25/")),
        "{keys:?}"
    );
    // … and only the good line reached the table.
    let rows = event_rows(&store, &BTreeSet::from(["2024-11-25".to_owned()])).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, good["event_id"].as_str().unwrap());
}

#[tokio::test]
async fn late_events_are_merged_into_their_day_within_the_window_and_quarantined_after() {
    let lake = tempfile::tempdir().unwrap();
    let store = LocalStore::new(lake.path());
    let options = EtlOptions {
        late_window_hours: 24,
        ..EtlOptions::default()
    };
    let hour = 3_600_000;
    let day1 = day_start_ms("2024-11-25").unwrap();
    let put = |key: &'static str, events: Vec<serde_json::Value>| {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        let store = &store;
        async move { store.put(key, body.into_bytes().into()).await.unwrap() }
    };
    put(
        "events/a.json",
        vec![
            event_json(day1 + hour, day1 + hour),
            event_json(day1 + 30 * hour, day1 + 30 * hour),
        ],
    )
    .await;
    etl::run(&store, &options).await.unwrap();
    let day = BTreeSet::from(["2024-11-25".to_owned()]);
    assert_eq!(event_rows(&store, &day).await.len(), 1);

    // Day 1 ended 6 h before the newest event: a late event for it is still merged in.
    put(
        "events/b.json",
        vec![event_json(day1 + 2 * hour, day1 + 2 * hour)],
    )
    .await;
    let report = etl::run(&store, &options).await.unwrap();
    assert_eq!((report.events_valid, report.too_late), (1, 0));
    assert_eq!(report.days_rewritten, ["2024-11-25"]);
    let rows = event_rows(&store, &day).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms),
        "sorted by time"
    );

    // Events of day 3 move the watermark past day 1's end + 24 h: day 1 is closed.
    put(
        "events/c.json",
        vec![event_json(day1 + 49 * hour, day1 + 49 * hour)],
    )
    .await;
    etl::run(&store, &options).await.unwrap();
    put(
        "events/d.json",
        vec![event_json(day1 + 3 * hour, day1 + 3 * hour)],
    )
    .await;
    let report = etl::run(&store, &options).await.unwrap();
    assert_eq!(
        (report.events_valid, report.too_late, report.quarantined),
        (0, 1, 1)
    );
    assert_eq!(event_rows(&store, &day).await.len(), 2, "day 1 unchanged");
    let late = quarantined(&store).await;
    assert_eq!(late.len(), 1);
    assert!(
        late[0]
            .reason
            .starts_with("too late: day 2024-11-25 closed"),
        "{}",
        late[0].reason
    );
    assert_eq!(late[0].source, "events/d.json");
}
