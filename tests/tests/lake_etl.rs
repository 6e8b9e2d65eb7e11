//! The events ETL against S3 (moto): raw objects in both layouts the lake has (the processor's
//! `events/dt=…/hour=…/` and Firehose's static `events/YYYY/MM/DD/HH/` on emulators) become the
//! same Parquet tables, byte for byte, as on the local lake; a re-run reads nothing and changes
//! nothing; replayed events are dropped and bad lines quarantined with their reason.

use std::collections::BTreeMap;

use retailmind_analytics::etl::decode::QuarantinedLine;
use retailmind_analytics::etl::{self, EtlOptions};
use retailmind_analytics::generate::{self, ShopOptions};
use retailmind_analytics::store::{LakeStore, LocalStore, S3Store};
use retailmind_tests::moto::MotoServer;

const BUCKET: &str = "retailmind-lake";

/// The generated raw lake: half the hours in the processor's layout, half as Firehose on
/// moto writes them; plus a replay of some events and one bad line.
fn raw_lake() -> (BTreeMap<String, Vec<u8>>, usize, usize) {
    let events = generate::shop(&ShopOptions {
        visitors: 80,
        days: 3,
        ..ShopOptions::default()
    });
    let mut objects = BTreeMap::new();
    for (i, (key, body)) in generate::raw_objects(&events, 25).into_iter().enumerate() {
        let key = if i % 2 == 0 {
            key
        } else {
            // events/dt=2024-11-01/hour=09/part-00000.json -> events/2024/11/01/09/retailmind-lake-…
            let rest = key.trim_start_matches("events/dt=");
            let (day, rest) = rest.split_once("/hour=").unwrap();
            let (hour, name) = rest.split_once('/').unwrap();
            format!(
                "events/{}/{hour}/retailmind-lake-{name}",
                day.replace('-', "/")
            )
        };
        objects.insert(key, body);
    }
    let replay: Vec<_> = events.iter().step_by(4).cloned().collect();
    let mut replay_body = Vec::new();
    for e in &replay {
        replay_body.extend(serde_json::to_vec(e).unwrap());
        replay_body.push(b'\n');
    }
    // A line that is an event but for its id.
    let mut bad = serde_json::to_value(&events[0]).unwrap();
    bad["event_id"] = "nope".into();
    replay_body.extend(bad.to_string().into_bytes());
    replay_body.push(b'\n');
    objects.insert(
        "events/dt=2024-11-02/hour=23/replayed.json".into(),
        replay_body,
    );
    (objects, events.len(), replay.len())
}

/// The event time in the first quarantined line's raw text.
fn line_timestamp(body: &[u8]) -> i64 {
    let line: QuarantinedLine =
        serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&line.raw).unwrap();
    raw["timestamp"].as_i64().unwrap()
}

#[tokio::test]
async fn the_etl_on_s3_builds_the_same_tables_as_on_the_local_lake_and_reruns_change_nothing() {
    let moto = MotoServer::start().await;
    let s3 = moto.s3();
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let (objects, unique, replayed) = raw_lake();
    for (key, body) in &objects {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
    let store = S3Store::new(s3.clone(), BUCKET);

    let report = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(report.files_read, objects.len());
    assert_eq!(report.events_valid, unique + replayed);
    assert_eq!(report.duplicates_dropped, replayed);
    assert_eq!(report.quarantined, 1);

    let mut rows = 0;
    for day in &report.days_rewritten {
        rows += etl::read_partition(&store, day).await.unwrap().len();
    }
    assert_eq!(rows, unique);

    let quarantine = moto.objects(BUCKET, "quarantine/events/").await;
    assert_eq!(quarantine.len(), 1);
    let bad_day = retailmind_analytics::day::day_of(line_timestamp(&quarantine[0].1));
    assert!(quarantine[0]
        .0
        .starts_with(&format!("quarantine/events/dt={bad_day}/")));
    let line: QuarantinedLine =
        serde_json::from_slice(quarantine[0].1.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line.source, "events/dt=2024-11-02/hour=23/replayed.json");
    assert!(line.reason.contains("event_id"), "{}", line.reason);

    // A re-run lists, finds nothing new, and leaves every table object as it was.
    let tables = moto.objects(BUCKET, "tables/").await;
    let again = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!((again.files_read, again.days_rewritten.len()), (0, 0));
    assert_eq!(moto.objects(BUCKET, "tables/").await, tables);

    // A new object is read on its own, and only its new events are added.
    let key = "events/2024/11/03/23/retailmind-lake-late";
    let (more, _, _) = raw_lake();
    let first = more.values().next().unwrap().clone();
    store.put(key, first.into()).await.unwrap();
    let next = etl::run(&store, &EtlOptions::default()).await.unwrap();
    assert_eq!(next.files_read, 1);
    assert_eq!(
        next.duplicates_dropped, next.events_valid,
        "all of them were there"
    );
    let mut after = moto.objects(BUCKET, "tables/").await;
    after.retain(|(k, _)| !k.starts_with("tables/_etl/"));
    let mut before = tables;
    before.retain(|(k, _)| !k.starts_with("tables/_etl/"));
    assert_eq!(after, before, "replays change no table");

    // The local lake, given the same raw objects, writes the same table files.
    let dir = tempfile::tempdir().unwrap();
    generate::write_local(dir.path(), &objects).unwrap();
    let local = LocalStore::new(dir.path());
    etl::run(&local, &EtlOptions::default()).await.unwrap();
    for (key, body) in &before {
        let stored = local.get(key).await.unwrap();
        assert_eq!(stored.as_deref(), Some(body.as_slice()), "{key}");
    }
    assert_eq!(
        local.list("tables/").await.unwrap().len(),
        before.len() + 1,
        "the same files, and the manifest"
    );
}
