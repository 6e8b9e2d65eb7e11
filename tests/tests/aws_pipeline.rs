//! The same pipeline over the AWS wire protocols: the collector writes to Kinesis, the processor
//! reads Kinesis, keeps sessions and checkpoints in DynamoDB and sends the lake through Firehose
//! into S3, all served by a real moto_server on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use retailmind_connectors::aws::{self, LakeDestination};
use retailmind_connectors::clock::now_ms;
use retailmind_connectors::AwsConfig;
use retailmind_tests::moto::MotoServer;
use retailmind_tests::wait_for;
use serde_json::json;

use common::Pipeline;

const BUCKET: &str = "retailmind-lake";

fn event(anonymous_id: &str, ts: i64, kind: &str, props: serde_json::Value) -> serde_json::Value {
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "type": kind,
        "anonymous_id": anonymous_id,
        "timestamp": ts,
        "context": {"page": {"url": "https://shop.example/p/1", "title": "Shoes"},
                    "utm": {"source": "newsletter"}},
        "properties": props
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_to_the_collector_reach_dynamodb_sessions_and_the_s3_lake() {
    let moto = MotoServer::start().await;
    let sdk = moto.sdk_config();
    moto.s3()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let mut config = AwsConfig::new("us-east-1");
    config.endpoint_url = Some(moto.endpoint.clone());
    aws::provision(
        &sdk,
        &config,
        &LakeDestination {
            bucket_arn: format!("arn:aws:s3:::{BUCKET}"),
            role_arn: "arn:aws:iam::123456789012:role/retailmind-firehose".into(),
            shards: 2,
        },
    )
    .await
    .unwrap();
    let pipeline = Pipeline::start(aws::backend(&sdk, &config)).await;

    let t = now_ms() - 60_000;
    let events = vec![
        event("alice", t, "page_view", json!({})),
        event("bob", t + 1_000, "page_view", json!({})),
        event(
            "alice",
            t + 2_000,
            "product_view",
            json!({"product_id": "p1"}),
        ),
        event(
            "alice",
            t + 3_000,
            "add_to_cart",
            json!({"product_id": "p1", "quantity": 1}),
        ),
        event(
            "bob",
            t + 4_000,
            "purchase",
            json!({"order_id": "o-1", "revenue_minor": 4990, "currency": "EUR"}),
        ),
    ];
    let sent_ids: BTreeSet<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let answer = common::post_batch(&pipeline.collector_url, events).await;
    assert_eq!(answer["accepted"], 5, "{answer}");

    let sessions = pipeline.backend.sessions.clone();
    let (alice, bob) = wait_for("both sessions in DynamoDB", Duration::from_secs(30), || {
        let sessions = sessions.clone();
        async move {
            let alice = sessions.sessions_of("alice").await.ok()?;
            let bob = sessions.sessions_of("bob").await.ok()?;
            let complete = alice.first().is_some_and(|s| s.event_count == 3)
                && bob.first().is_some_and(|s| s.event_count == 2);
            complete.then(|| (alice[0].clone(), bob[0].clone()))
        }
    })
    .await;
    assert_eq!(
        (
            alice.page_views,
            alice.products_viewed,
            alice.cart_adds,
            alice.start_ms
        ),
        (1, 1, 1, t)
    );
    assert_eq!(alice.utm_source.as_deref(), Some("newsletter"));
    assert_eq!((bob.purchases, bob.revenue_minor), (1, 4990));

    let lines: Vec<serde_json::Value> = moto
        .lines_under(BUCKET, "events/", 5, Duration::from_secs(30))
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lake_ids: Vec<String> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lake_ids.len(), 5, "no event twice in the lake");
    assert_eq!(lake_ids.into_iter().collect::<BTreeSet<_>>(), sent_ids);
    assert!(lines.iter().all(|l| l["received_at"].is_i64()));

    pipeline.stop().await;
}
