//! DynamoDB BatchWriteItem answering some requests as `UnprocessedItems`, or refusing a whole
//! call for throughput, and TransactWriteItems cancelled for throughput rather than a failed
//! condition, through the real AWS SDK and HTTP against the in-process fake of
//! `retailmind_tests::fake_aws` (moto carries out every request, and cancels transactions only
//! for conditions). The model store's chunks and a forgotten visitor's sessions are written by
//! BatchWriteItem, a session merge by TransactWriteItems; the normal paths run against moto in
//! `model_store` and `aws_connectors`.

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use retailmind_connectors::aws::{self, batch_write};
use retailmind_connectors::{AwsConfig, ConnectorError, Merge, StoredAt};
use retailmind_schema::Session;
use retailmind_tests::fake_aws::{BatchFault, BatchFaults, FakeAws};
use serde_json::Value;

const TABLE: &str = "retailmind-models";

async fn client(fake: &FakeAws) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&fake.sdk_config())
}

fn key(part: usize) -> [(String, AttributeValue); 2] {
    [
        ("name".into(), AttributeValue::S("model#1".into())),
        ("part".into(), AttributeValue::N(part.to_string())),
    ]
}

fn put(part: usize) -> WriteRequest {
    let mut item: std::collections::HashMap<_, _> = key(part).into_iter().collect();
    item.insert("data".into(), AttributeValue::S(format!("chunk {part}")));
    let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
    WriteRequest::builder().put_request(put).build()
}

fn delete(part: usize) -> WriteRequest {
    let delete = DeleteRequest::builder()
        .set_key(Some(key(part).into_iter().collect()))
        .build()
        .unwrap();
    WriteRequest::builder().delete_request(delete).build()
}

/// The `part` of every request of every call, in order.
fn parts_per_call(fake: &FakeAws) -> Vec<Vec<u64>> {
    fake.with(|s| {
        s.dynamodb
            .calls
            .iter()
            .map(|call| {
                assert_eq!(call.table, TABLE);
                call.requests
                    .iter()
                    .map(|r| {
                        let key = r
                            .get("PutRequest")
                            .map(|p| &p["Item"])
                            .unwrap_or_else(|| &r["DeleteRequest"]["Key"]);
                        key["part"]["N"]
                            .as_str()
                            .and_then(|n| n.parse().ok())
                            .expect("a numeric part")
                    })
                    .collect()
            })
            .collect()
    })
}

#[tokio::test]
async fn unprocessed_items_are_sent_again_and_only_they() {
    let fake = FakeAws::start(1).await;
    fake.with(|s| {
        s.dynamodb.key_attributes = vec!["name".into(), "part".into()];
        s.dynamodb.faults = BatchFaults::then_accept([
            BatchFault::Refuse(vec![0, 3, 24]),
            BatchFault::Refuse(vec![1]),
            // A whole call refused: the SDK's own retry sends it again.
            BatchFault::Throttle,
        ]);
    });
    let client = client(&fake).await;

    let puts: Vec<WriteRequest> = (0..60).map(put).collect();
    batch_write::write_all(&client, TABLE, puts)
        .await
        .expect("every put carried out in the end");

    let calls = parts_per_call(&fake);
    let first: Vec<u64> = (0..25).collect();
    assert_eq!(
        calls,
        [
            first,
            vec![0, 3, 24],
            vec![3],
            (25..50).collect(),
            (50..60).collect()
        ],
        "25 per call; a resend carries only what came back unprocessed"
    );
    fake.with(|s| {
        assert_eq!(s.dynamodb.tables[TABLE].len(), 60);
        assert_eq!(
            s.dynamodb.puts_done.len(),
            60,
            "no put carried out twice: {:?}",
            s.dynamodb.puts_done
        );
        let item: &Value = &s.dynamodb.tables[TABLE]["{\"S\":\"model#1\"}|{\"N\":\"42\"}"];
        assert_eq!(item["data"]["S"], "chunk 42");
    });

    // Deletes the same way.
    fake.with(|s| {
        s.dynamodb.calls.clear();
        s.dynamodb.faults = BatchFaults::then_accept([BatchFault::Refuse(vec![5, 6])]);
    });
    let deletes: Vec<WriteRequest> = (0..30).map(delete).collect();
    batch_write::write_all(&client, TABLE, deletes)
        .await
        .expect("every delete carried out in the end");
    assert_eq!(
        parts_per_call(&fake),
        [
            (0..25).collect::<Vec<u64>>(),
            vec![5, 6],
            (25..30).collect()
        ]
    );
    fake.with(|s| {
        let left: Vec<&String> = s.dynamodb.tables[TABLE].keys().collect();
        assert_eq!(left.len(), 30, "{left:?}");
        assert!(left.iter().all(|k| !k.ends_with("|{\"N\":\"0\"}")));
    });
}

/// Only a failed condition is a lost race (re-read and write again at once); a transaction
/// cancelled for throughput or another transaction on its items is throttling (back off).
#[tokio::test]
async fn a_merge_cancelled_for_throughput_is_throttling_not_a_lost_race() {
    let fake = FakeAws::start(1).await;
    fake.with(|s| {
        s.dynamodb.transaction_cancellations = [
            vec!["None", "ThrottlingError"],
            vec!["TransactionConflict", "None"],
            vec!["None", "ConditionalCheckFailed"],
        ]
        .into();
    });
    let sessions = aws::backend(&fake.sdk_config(), &AwsConfig::new("us-east-1")).sessions;
    let session = |start_ms: i64, version: u64| Session {
        session_id: format!("s-{start_ms}"),
        anonymous_id: "anon-t".into(),
        start_ms,
        end_ms: start_ms + 60_000,
        event_count: 1,
        event_ids: vec![uuid::Uuid::now_v7()],
        version,
        ..Session::default()
    };
    let merge = Merge {
        survivor: session(0, 1),
        survivor_read_start: None,
        absorbed: vec![StoredAt::of(&session(1_200_000, 1))],
    };
    for expected in ["throttled", "throttled", "conflict", "written"] {
        let outcome = match sessions.merge(&merge).await {
            Err(ConnectorError::Throttled { .. }) => "throttled",
            Err(ConnectorError::Conflict { .. }) => "conflict",
            Ok(()) => "written",
            Err(other) => panic!("{other}"),
        };
        assert_eq!(outcome, expected);
    }
    assert_eq!(fake.with(|s| s.dynamodb.transactions), 4);
}
